//! Lint: every `.nix` file in the repository parses (`nix-instantiate --parse`),
//! and so does every `.nix.in` template (its `@placeholders@` sit in strings).

use std::path::{Path, PathBuf};

use super::Finding;
use crate::tools;

/// `.nix` files under `root`, skipping `.git`, `target` and `result*` links.
pub fn nix_files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    walk(root, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let n = e.file_name().to_string_lossy().into_owned();
        let Ok(ty) = e.file_type() else { continue };
        if ty.is_dir() {
            if !(n.starts_with('.')
                || n == "target"
                || n == "node_modules"
                || n.starts_with("result"))
            {
                walk(&p, out);
            }
        } else if ty.is_file() && (n.ends_with(".nix") || n.ends_with(".nix.in")) {
            out.push(p);
        }
    }
}

pub async fn check(root: &Path) -> Vec<Finding> {
    let files = nix_files(root);
    if files.is_empty() {
        return vec![];
    }
    let bin = match tools::find("nix-instantiate") {
        Ok(b) => b,
        Err(e) => return vec![super::missing_tool("nix-parse", e)],
    };
    let mut out = vec![];
    for f in files {
        let r = tokio::process::Command::new(&bin)
            .arg("--parse")
            .arg(&f)
            .stdout(std::process::Stdio::null())
            .output()
            .await;
        match r {
            Ok(o) if o.status.success() => {}
            Ok(o) => out.push(Finding::new(
                "nix-parse",
                &f,
                None,
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            )),
            Err(e) => out.push(Finding::new(
                "nix-parse",
                &f,
                None,
                format!("cannot run {}: {e}", bin.display()),
            )),
        }
    }
    out
}

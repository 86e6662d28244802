//! Lint: `shellcheck` on every variant's rendered user-data and startup
//! script, and on `push-all.sh` and `ci/*.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Finding;
use crate::template::render::{self, Rendered};
use crate::tools;

/// Run shellcheck on `file`; `None` when clean.
pub async fn shellcheck_file(
    bin: &Path,
    file: &Path,
    shell: Option<&str>,
) -> Result<Option<String>, String> {
    let mut c = tokio::process::Command::new(bin);
    c.arg("--format=gcc").arg("--external-sources");
    if let Some(s) = shell {
        c.arg(format!("--shell={s}"));
    }
    let o = c
        .arg(file)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if o.status.success() {
        Ok(None)
    } else {
        let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&o.stderr));
        Ok(Some(s.trim().to_string()))
    }
}

/// The repository's own shell scripts.
pub fn repo_scripts(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    if root.join("push-all.sh").is_file() {
        v.push(root.join("push-all.sh"));
    }
    if let Ok(rd) = std::fs::read_dir(root.join("ci")) {
        v.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sh")),
        );
    }
    v.sort();
    v
}

pub async fn check(root: &Path, rendered: &BTreeMap<String, Rendered>) -> Vec<Finding> {
    let bin = match tools::find("shellcheck") {
        Ok(b) => b,
        Err(e) => return vec![super::missing_tool("shellcheck", e)],
    };
    let mut out = vec![];
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return vec![Finding::new("shellcheck", "tempdir", None, e.to_string())],
    };
    for (name, r) in rendered {
        for output in ["user_data", "startup_script"] {
            let Ok(text) = r.string(output) else {
                out.push(Finding::new(
                    "shellcheck",
                    render::bootstrap_dir(root),
                    Some(&format!("{name}.{output}")),
                    format!("the bootstrap module has no string output `{output}`"),
                ));
                continue;
            };
            let f = tmp.path().join(format!("{name}.{output}.sh"));
            if let Err(e) = std::fs::write(&f, text) {
                out.push(Finding::new("shellcheck", &f, None, e.to_string()));
                continue;
            }
            // A script without a shebang (startup script) is run by bash.
            let shell = (!text.starts_with("#!")).then_some("bash");
            match shellcheck_file(&bin, &f, shell).await {
                Ok(None) => {}
                Ok(Some(msg)) => out.push(Finding::new(
                    "shellcheck",
                    render::bootstrap_dir(root),
                    Some(&format!("{name}.{output}")),
                    msg.replace(&f.display().to_string(), &format!("rendered {output}")),
                )),
                Err(e) => out.push(Finding::new("shellcheck", &f, None, e)),
            }
        }
    }
    for s in repo_scripts(root) {
        match shellcheck_file(&bin, &s, None).await {
            Ok(None) => {}
            Ok(Some(msg)) => out.push(Finding::new("shellcheck", &s, None, msg)),
            Err(e) => out.push(Finding::new("shellcheck", &s, None, e)),
        }
    }
    out
}

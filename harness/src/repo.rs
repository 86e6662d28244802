//! Locating the repository: `values/`, `templates/`, `features/`, `nixos-vm/`.

use std::path::{Path, PathBuf};

/// The repository root, found from `HARNESS_REPO`, else by walking up from
/// the current directory (then from this crate's source) to a directory
/// holding both `values/` and `templates/`.
pub fn root() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("HARNESS_REPO") {
        let p = PathBuf::from(p);
        anyhow::ensure!(
            is_root(&p),
            "HARNESS_REPO={} has no values/ and templates/",
            p.display()
        );
        return Ok(p);
    }
    let cwd = std::env::current_dir()?;
    for start in [cwd.as_path(), Path::new(env!("CARGO_MANIFEST_DIR"))] {
        if let Some(found) = start.ancestors().find(|d| is_root(d)) {
            return Ok(found.to_path_buf());
        }
    }
    anyhow::bail!(
        "cannot find the repository root (a directory with values/ and templates/) above {}; \
         run from inside the repository or set HARNESS_REPO",
        cwd.display()
    )
}

fn is_root(d: &Path) -> bool {
    d.join("values").is_dir() && d.join("templates").is_dir()
}

/// `target/` of the repository (or `CARGO_TARGET_DIR`), for caches and reports.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

//! Locating the repository (`values/`, `templates/`, `features/`,
//! `nixos-vm/`) and its build caches, and the lock processes sharing a
//! cache take.

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

/// Takes an exclusive `flock` on `path` (created if missing), released
/// when the returned file is dropped; calls `on_wait` first when another
/// process holds it.  Blocking: async callers use `spawn_blocking`.
pub fn lock_exclusive(path: &Path, on_wait: impl FnOnce()) -> anyhow::Result<std::fs::File> {
    use anyhow::Context as _;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open lock {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => return Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => on_wait(),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("lock {}", path.display()))
        }
    }
    f.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(f)
}

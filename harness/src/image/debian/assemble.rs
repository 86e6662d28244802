//! Assembling a guest built from Debian packages: the check that its root
//! filesystem has every shared library its binaries need, and the gzip'd
//! newc initramfs (`cpio`).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// Every `NEEDED` library of every ELF file in the tree must be present in
/// one of the loader's directories: catches a package missing from the list.
pub fn check_libraries(root: &Path) -> anyhow::Result<()> {
    let mut libs: HashSet<String> = HashSet::new();
    let mut elves = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() || ft.is_symlink() {
                if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    libs.insert(n.to_string());
                }
                if ft.is_file() {
                    let mut magic = [0u8; 4];
                    use std::io::Read;
                    if std::fs::File::open(&p)
                        .and_then(|mut f| f.read_exact(&mut magic))
                        .is_ok()
                        && &magic == b"\x7fELF"
                    {
                        elves.push(p);
                    }
                }
            }
        }
    }
    let mut missing = Vec::new();
    for chunk in elves.chunks(64) {
        let out = Command::new("readelf")
            .arg("-dW")
            .args(chunk)
            .output()
            .context("cannot run readelf (apt-get install binutils)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut current = String::new();
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("File: ") {
                current = f.trim().to_string();
            }
            if line.contains("(NEEDED)") {
                if let Some(lib) = line.split('[').nth(1).and_then(|s| s.split(']').next()) {
                    if !libs.contains(lib) {
                        missing.push(format!("{lib} (needed by {current})"));
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        bail!(
            "the guest's root filesystem lacks shared libraries; add their Debian \
             packages to image::contract::packages::ROOTFS_PACKAGES:\n  {}",
            missing.join("\n  ")
        );
    }
    Ok(())
}

/// A gzip'd newc cpio of `tree` (owner root), written to `out_file`.
pub fn cpio_gz(tree: &Path, out_file: &Path) -> anyhow::Result<()> {
    crate::tools::find("cpio")?;
    crate::tools::find("gzip").map_err(anyhow::Error::from)?;
    let script =
        "set -e; find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -9n > \"$1\"";
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(out_file)
        .current_dir(tree)
        .output()
        .context("cannot run sh/cpio/gzip")?;
    if !out.status.success() {
        bail!(
            "building the initramfs with cpio failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_check_finds_a_missing_library() {
        // A real ELF from the host that needs libc; without libc in the tree
        // the check must fail and name it.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::copy("/bin/ls", d.path().join("bin/ls")).unwrap();
        let e = check_libraries(d.path()).unwrap_err().to_string();
        assert!(e.contains("libc.so.6"), "{e}");
    }
}

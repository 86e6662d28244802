//! Disks of a QEMU instance: a qcow2 overlay over the read-only base image
//! (the base is never written), a blank home disk kept across stop/start,
//! and a writable copy of the UEFI variables for aarch64.

use std::path::Path;
use std::process::Command;

use crate::tools;

fn qemu_img(args: &[&str]) -> anyhow::Result<()> {
    let bin = tools::find("qemu-img")?;
    let out = Command::new(&bin).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-img {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Create `overlay` backed by `base` (format `base_format`).
pub fn create_overlay(base: &Path, base_format: &str, overlay: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        base.is_file(),
        "base image {} does not exist",
        base.display()
    );
    let base = base.canonicalize()?;
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format,
        "-b",
        &base.display().to_string(),
        &overlay.display().to_string(),
    ])
}

/// Create a blank qcow2 home disk of `gib` GiB (sparse: costs nothing until written).
pub fn create_home(path: &Path, gib: u32) -> anyhow::Result<()> {
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        &path.display().to_string(),
        &format!("{gib}G"),
    ])
}

/// Copy the UEFI VARS template so the guest can write its variables.
pub fn copy_uefi_vars(dst: &Path) -> anyhow::Result<()> {
    let src = Path::new(super::argv::AAVMF_VARS);
    anyhow::ensure!(
        src.is_file(),
        "{} is missing: {}",
        src.display(),
        tools::install_hint("qemu-system-aarch64")
    );
    std::fs::copy(src, dst)?;
    Ok(())
}

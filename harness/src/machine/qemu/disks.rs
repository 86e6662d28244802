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

/// Create `overlay` backed by `base` (format `base_format`), as large as the base.
pub fn create_overlay(base: &Path, base_format: &str, overlay: &Path) -> anyhow::Result<()> {
    create_overlay_sized(base, base_format, overlay, None)
}

/// Virtual size in bytes of a disk image (`qemu-img info --output=json`).
pub fn virtual_size(image: &Path, format: &str) -> anyhow::Result<u64> {
    let bin = tools::find("qemu-img")?;
    let out = Command::new(&bin)
        .args(["info", "--output=json", "-f", format])
        .arg(image)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-img info {} failed: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_virtual_size(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| anyhow::anyhow!("qemu-img info {}: no virtual-size", image.display()))
}

/// `virtual-size` from `qemu-img info --output=json`.
pub fn parse_virtual_size(json: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()?
        .get("virtual-size")?
        .as_u64()
}

/// The overlay size argument for `qemu-img create`: `min_gib` GiB when
/// that is larger than the base, else none (the overlay is the base's
/// size; a smaller size would cut the base's end off).
pub fn overlay_size_arg(base_bytes: u64, min_gib: Option<u32>) -> Option<String> {
    let want = u64::from(min_gib?) << 30;
    (want > base_bytes).then(|| format!("{want}"))
}

/// Create `overlay` backed by `base`, grown to `min_gib` GiB if the base is
/// smaller (sparse: costs nothing until written). A guest that grows its
/// root partition and filesystem on boot (NixOS `boot.growPartition`,
/// `fileSystems."/".autoResize`, both set by amazon-image.nix) then has the
/// room, like an EC2 root volume larger than the AMI.
pub fn create_overlay_sized(
    base: &Path,
    base_format: &str,
    overlay: &Path,
    min_gib: Option<u32>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        base.is_file(),
        "base image {} does not exist",
        base.display()
    );
    let base = base.canonicalize()?;
    let size = match min_gib {
        Some(_) => overlay_size_arg(virtual_size(&base, base_format)?, min_gib),
        None => None,
    };
    let base_s = base.display().to_string();
    let overlay_s = overlay.display().to_string();
    let mut args = vec![
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format,
        "-b",
        &base_s,
        &overlay_s,
    ];
    if let Some(s) = &size {
        args.push(s.as_str());
    }
    qemu_img(&args)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_grows_only_past_the_base() {
        let gib = 1u64 << 30;
        assert_eq!(
            overlay_size_arg(3 * gib, Some(16)).as_deref(),
            Some("17179869184")
        );
        assert_eq!(overlay_size_arg(20 * gib, Some(16)), None);
        assert_eq!(overlay_size_arg(16 * gib, Some(16)), None);
        assert_eq!(overlay_size_arg(3 * gib, None), None);
        assert_eq!(
            parse_virtual_size(r#"{"virtual-size": 3221225472, "format": "qcow2"}"#),
            Some(3 * gib)
        );
        assert_eq!(parse_virtual_size("{}"), None);
    }

    #[test]
    fn a_grown_overlay_is_larger_than_its_base_and_a_plain_one_is_not() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.qcow2");
        create_home(&base, 1).unwrap();
        let grown = d.path().join("grown.qcow2");
        create_overlay_sized(&base, "qcow2", &grown, Some(3)).unwrap();
        assert_eq!(virtual_size(&grown, "qcow2").unwrap(), 3 << 30);
        let plain = d.path().join("plain.qcow2");
        create_overlay(&base, "qcow2", &plain).unwrap();
        assert_eq!(virtual_size(&plain, "qcow2").unwrap(), 1 << 30);
        // Never smaller than the base.
        let small = d.path().join("small.qcow2");
        create_overlay_sized(&grown, "qcow2", &small, Some(2)).unwrap();
        assert_eq!(virtual_size(&small, "qcow2").unwrap(), 3 << 30);
    }
}

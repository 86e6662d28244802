//! The `path` image provider: a disk image file the user supplies
//! (e.g. a NixOS image built elsewhere).  Checks that it exists and
//! detects its format from magic bytes: qcow2 (`QFI\xfb` header), VHD
//! (`conectix` footer, QEMU format `vpc`), otherwise raw.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;

use super::{BootImage, BootMethod, ImageKind};
use crate::template::variant::Arch;

/// qcow2 magic: "QFI" followed by 0xfb.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// VHD (QEMU "vpc") footer cookie, in the last 512 bytes (or first 512 for dynamic disks).
const VHD_COOKIE: [u8; 8] = *b"conectix";

/// Detect the QEMU format name (`qcow2`, `vpc` or `raw`) from the first
/// and last bytes of an image.
pub fn detect_format_bytes(head: &[u8], tail: &[u8]) -> &'static str {
    if head.starts_with(&QCOW2_MAGIC) {
        "qcow2"
    } else if head.starts_with(&VHD_COOKIE) || tail.starts_with(&VHD_COOKIE) {
        "vpc"
    } else {
        "raw"
    }
}

/// Detect the QEMU format of the file at `path`.
pub fn detect_format(path: &Path) -> anyhow::Result<&'static str> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 8];
    let n = f.read(&mut head)?;
    let mut tail = [0u8; 8];
    let mut tn = 0;
    if len >= 512 {
        f.seek(SeekFrom::Start(len - 512))?;
        tn = f.read(&mut tail)?;
    }
    Ok(detect_format_bytes(&head[..n], &tail[..tn]))
}

/// A user-supplied firmware-booting image for `arch`.
pub fn image(path: &Path, arch: Arch, kind: ImageKind) -> anyhow::Result<BootImage> {
    if !path.is_file() {
        anyhow::bail!(
            "image file not found: expected a disk image (qcow2, raw or VHD) at {}, seen {}; \
             build one with `nix build ./nixos-vm#packages.{}.ec2-image` or fix the path",
            path.display(),
            if path.exists() {
                "something that is not a regular file"
            } else {
                "nothing"
            },
            arch.nix_system()
        );
    }
    let format = detect_format(path)?;
    Ok(BootImage {
        arch,
        kind,
        // Absolute: qemu-img resolves a relative backing file against the
        // overlay's directory, not the caller's.
        base: path
            .canonicalize()
            .with_context(|| format!("cannot resolve image path {}", path.display()))?,
        base_format: format.to_string(),
        boot: BootMethod::Firmware,
        description: format!("{} image {} ({format})", kind.as_str(), path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect_format_bytes(b"QFI\xfb\0\0\0\x03", b""), "qcow2");
        assert_eq!(detect_format_bytes(b"\0\0\0\0", b"conectix"), "vpc");
        assert_eq!(detect_format_bytes(b"\xeb\x63\x90\0", b"\0\0"), "raw");
        assert_eq!(detect_format_bytes(b"", b""), "raw");
    }

    #[test]
    fn files_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("a.qcow2");
        let mut data = b"QFI\xfb".to_vec();
        data.resize(4096, 0);
        std::fs::write(&q, &data).unwrap();
        let img = image(&q, Arch::X86_64, ImageKind::Path).unwrap();
        assert_eq!(img.base_format, "qcow2");
        assert_eq!(img.boot, BootMethod::Firmware);

        let v = dir.path().join("b.vhd");
        let mut data = vec![0u8; 4096];
        data[4096 - 512..4096 - 504].copy_from_slice(b"conectix");
        std::fs::write(&v, &data).unwrap();
        assert_eq!(detect_format(&v).unwrap(), "vpc");

        let r = dir.path().join("c.img");
        std::fs::write(&r, vec![0u8; 1024]).unwrap();
        assert_eq!(detect_format(&r).unwrap(), "raw");

        let err = image(&dir.path().join("nope"), Arch::Aarch64, ImageKind::Path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("seen nothing"), "{err}");
        assert!(err.contains("aarch64-linux"), "{err}");
    }
}

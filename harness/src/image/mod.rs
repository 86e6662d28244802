//! Guest images: the Debian fixture guest, NixOS images via `nix build`,
//! or a user-supplied path.  Every provider yields a [`BootImage`], which
//! the QEMU launcher boots unchanged.

pub mod apt_root;
pub mod contract;
pub mod fixture;
pub mod nixos;
pub mod path;

use std::path::PathBuf;

use crate::template::variant::Arch;

/// What kind of guest an image is; reports say so plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The Debian busybox fixture guest: proves machinery and checks only.
    Fixture,
    /// The contract guest (`image::contract`): Debian + real systemd keeping
    /// the NixOS AMI's user-data contract; a named double, not NixOS.
    Contract,
    /// A NixOS test image built from `nixos-vm/` (behaves like the AMI).
    Nixos,
    /// An image file the user supplied.
    Path,
}

impl ImageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Fixture => "fixture",
            ImageKind::Contract => "contract",
            ImageKind::Nixos => "nixos",
            ImageKind::Path => "path",
        }
    }
}

/// How the guest's kernel is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMethod {
    /// `-kernel`/`-initrd`/`-append` (fixture guest).
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// Firmware boot from the root disk: SeaBIOS on x86_64, UEFI (AAVMF
    /// pflash with a writable VARS copy) on aarch64, as on Graviton.
    Firmware,
}

/// A bootable guest image for one architecture.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub arch: Arch,
    pub kind: ImageKind,
    /// Read-only base of the root disk; each instance gets a qcow2 overlay.
    pub base: PathBuf,
    /// Format of `base` (`qcow2` or `raw`).
    pub base_format: String,
    pub boot: BootMethod,
    /// Human description for progress and reports (store path, cache key…).
    pub description: String,
}

/// Takes the exclusive build lock of one image cache directory (a `flock`
/// released when the file is dropped), saying so when another process holds
/// it.  Blocking; image builds run in `spawn_blocking`.
pub(crate) fn lock_build(path: &std::path::Path, arch: Arch) -> anyhow::Result<std::fs::File> {
    use anyhow::Context as _;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open lock {}", path.display()))?;
    if let Err(std::fs::TryLockError::WouldBlock) = f.try_lock() {
        eprintln!(
            "image [{arch}]: waiting for another build of this image ({})",
            path.display()
        );
    }
    f.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(f)
}

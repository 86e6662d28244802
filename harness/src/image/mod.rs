//! Guest images: the contract guest (a double of the NixOS AMI, built from
//! Debian packages by [`debian`]), NixOS images via `nix build`, or a
//! user-supplied path.  Every provider yields a [`BootImage`], which
//! the QEMU launcher boots unchanged.

pub mod apt_root;
pub mod contract;
pub mod debian;
pub mod nixos;
pub mod path;
pub mod probe_unit;

use std::path::PathBuf;

use crate::template::variant::Arch;

/// What kind of guest an image is; reports say so plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
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
            ImageKind::Contract => "contract",
            ImageKind::Nixos => "nixos",
            ImageKind::Path => "path",
        }
    }
}

/// How the guest's kernel is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMethod {
    /// `-kernel`/`-initrd`/`-append` (the contract guest).
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

/// The cache protocol every built guest image follows: the image for `key`
/// lives in `arch_dir/<key>` and is complete once `cached` finds it (its
/// manifest is written last).  A miss takes the arch's build lock
/// (another process may be building the same key: then its result is
/// used), clears temp dirs an interrupted build left, builds into a fresh
/// `.tmp-*` dir and renames it into place, so a reader never sees half an
/// image.  Blocking; image builds run in `spawn_blocking`.
pub(crate) fn build_once<T>(
    arch_dir: &std::path::Path,
    key: &str,
    progress: impl Fn(&str),
    cached: impl Fn(&std::path::Path) -> Option<T>,
    build_into: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<T> {
    use anyhow::Context as _;
    let dir = arch_dir.join(key);
    if let Some(img) = cached(&dir) {
        progress(&format!("cached: {}", dir.display()));
        return Ok(img);
    }
    std::fs::create_dir_all(arch_dir).with_context(|| format!("create {}", arch_dir.display()))?;
    let _lock = crate::repo::lock_exclusive(&arch_dir.join(".lock"), || {
        progress("waiting for another build of this image")
    })?;
    if let Some(img) = cached(&dir) {
        progress(&format!(
            "built meanwhile by another process: {}",
            dir.display()
        ));
        return Ok(img);
    }
    // Left over by an interrupted build (we hold the lock, so none is running).
    for e in std::fs::read_dir(arch_dir)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(arch_dir)
        .with_context(|| format!("create a temp dir in {}", arch_dir.display()))?;
    let started = std::time::Instant::now();
    build_into(tmp.path())?;
    let built = tmp.keep();
    if let Err(e) = std::fs::rename(&built, &dir) {
        let _ = std::fs::remove_dir_all(&built);
        if cached(&dir).is_none() {
            return Err(e).with_context(|| format!("rename into {}", dir.display()));
        }
    }
    progress(&format!(
        "done in {:.0?}: {}",
        started.elapsed(),
        dir.display()
    ));
    cached(&dir).context("the image just built is incomplete")
}

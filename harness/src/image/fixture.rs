//! The fixture guest image: a Debian cloud kernel, a tiny initramfs that
//! loads the virtio modules, and an ext4 root disk with busybox, dropbear,
//! real sudo and e2fsprogs, built from Debian packages only (`apt-get
//! download` + `dpkg -x` + `mkfs.ext4 -d` + `cpio`; no mount, chroot or loop
//! devices).  It is a test double: it proves the VM machinery and the
//! checks, never the NixOS template.  Packages are Debian bookworm's, fetched
//! through the private apt root ([`super::apt_root`]), never the host's apt.
//!
//! Cache: `<target>/fixture-images/<arch>/<key>/{vmlinuz,initrd.img,root.raw,manifest.json}`,
//! where `key` hashes the resolved package versions and the guest files;
//! builds happen in a `.tmp-*` sibling renamed into place, under a lock.

pub mod assemble;
pub mod kmod;
pub mod packages;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use self::assemble::GuestFile;
use self::packages::Pkg;
use super::apt_root::AptRoot;
use super::{BootImage, BootMethod, ImageKind};
use crate::template::variant::Arch;

/// The build recipe itself (this module's source), so changing how the image
/// is built also changes the cache key.
const RECIPE: [&str; 4] = [
    include_str!("fixture.rs"),
    include_str!("fixture/assemble.rs"),
    include_str!("fixture/kmod.rs"),
    include_str!("fixture/packages.rs"),
];
/// Size of the (sparse) root disk image.
const ROOT_MIB: u64 = 1024;

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str =
    "root:x:0:\ntty:x:5:\nwheel:x:10:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n";
// `*`: no password login (not `!`, which dropbear treats as a locked account).
const SHADOW: &str = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n";
const SHELLS: &str = "/bin/sh\n/bin/ash\n/bin/bash\n";
const HOSTS: &str = "127.0.0.1 localhost fixture\n::1 localhost\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";
const PAM_SUDO: &str = "#%PAM-1.0\n@include common-auth\n@include common-account\n@include common-session-noninteractive\n";
const MARKER: &str = "harness fixture guest: Debian cloud kernel + busybox + dropbear + sudo.\n\
                      A test double that proves the harness machinery; NOT a NixOS image.\n";

/// The guest files (scripts from `harness/fixture-guest/`, plus /etc).
pub fn guest_files() -> Vec<GuestFile> {
    macro_rules! guest {
        ($path:expr, $mode:expr, $file:expr) => {
            GuestFile {
                path: $path,
                mode: $mode,
                content: include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixture-guest/",
                    $file
                )),
            }
        };
    }
    let etc = |path, mode, content| GuestFile {
        path,
        mode,
        content,
    };
    vec![
        guest!("sbin/init", 0o755, "init"),
        guest!("etc/inittab", 0o644, "inittab"),
        guest!("etc/fixture/amazon-init", 0o755, "amazon-init"),
        guest!("etc/fixture/probe-shell", 0o755, "probe-shell"),
        guest!("etc/fixture/shutdown", 0o755, "shutdown"),
        guest!("etc/fixture/udhcpc.script", 0o755, "udhcpc.script"),
        guest!("etc/acpi/PWRF/00000080", 0o755, "power-button"),
        etc("etc/passwd", 0o644, PASSWD),
        etc("etc/group", 0o644, GROUP),
        etc("etc/shadow", 0o600, SHADOW),
        etc("etc/shells", 0o644, SHELLS),
        etc("etc/hosts", 0o644, HOSTS),
        etc("etc/hostname", 0o644, "fixture\n"),
        etc("etc/nsswitch.conf", 0o644, NSSWITCH),
        etc("etc/pam.d/sudo", 0o644, PAM_SUDO),
        etc("etc/pam.d/sudo-i", 0o644, PAM_SUDO),
        etc("etc/pam.d/common-auth", 0o644, "auth required pam_unix.so nullok\n"),
        etc("etc/pam.d/common-account", 0o644, "account required pam_unix.so\n"),
        etc("etc/pam.d/common-session", 0o644, "session required pam_unix.so\n"),
        etc("etc/pam.d/common-session-noninteractive", 0o644, "session required pam_unix.so\n"),
        etc("etc/pam.d/common-password", 0o644, "password required pam_unix.so yescrypt\n"),
        etc("etc/pam.d/other", 0o644, "auth required pam_deny.so\naccount required pam_deny.so\npassword required pam_deny.so\nsession required pam_deny.so\n"),
        etc("etc/environment", 0o644, ""),
        etc("etc/harness-fixture", 0o644, MARKER),
    ]
}

/// The initramfs's /init.
const INITRAMFS_INIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixture-guest/initramfs-init"
));

/// Kernel command line: the serial console per arch.
pub fn append(arch: Arch) -> String {
    let console = match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    format!("console={console} panic=-1")
}

/// Where fixture images are cached for a repository.
pub fn cache_root(repo_root: &Path) -> PathBuf {
    crate::repo::target_dir(repo_root).join("fixture-images")
}

/// The cache key: recipe, arch, every package (name, version, arch, sha256),
/// the modules wanted, the kernel command line and every guest file.
pub fn cache_key(arch: Arch, kernel: &Pkg, pkgs: &[Pkg]) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for r in RECIPE {
        field(r);
    }
    field(arch.as_str());
    field(&ROOT_MIB.to_string());
    field(&append(arch));
    for p in std::iter::once(kernel).chain(pkgs) {
        field(&format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256));
    }
    for (m, req) in kmod::wanted(arch) {
        field(&format!("{m} {req}"));
    }
    field(INITRAMFS_INIT);
    for f in guest_files() {
        field(f.path);
        field(&format!("{:o}", f.mode));
        field(f.content);
    }
    hex::encode(&h.finalize()[..10])
}

fn progress(arch: Arch, msg: &str) {
    eprintln!("fixture image [{arch}]: {msg}");
}

/// Builds (or finds in the cache) the fixture image for `arch` of the
/// repository at `repo_root`.  Blocking; call from `spawn_blocking` in
/// async code.
pub fn build(repo_root: &Path, arch: Arch) -> anyhow::Result<BootImage> {
    build_in(&cache_root(repo_root), arch)
}

/// [`build`] with an explicit cache directory; the apt root is the shared
/// one beside it (`<cache>/../apt-root`).
pub fn build_in(cache: &Path, arch: Arch) -> anyhow::Result<BootImage> {
    let apt = AptRoot::shared(cache.parent().unwrap_or(cache))?;
    build_with(cache, &apt, arch)
}

/// [`build`] with an explicit cache directory and apt root.
pub fn build_with(cache: &Path, apt: &AptRoot, arch: Arch) -> anyhow::Result<BootImage> {
    packages::check_host()?;
    crate::tools::find("mkfs.ext4")?;
    crate::tools::find("cpio")?;
    progress(
        arch,
        &format!(
            "resolving Debian {} packages (apt root {}, mirror {} from {})",
            super::apt_root::SUITE,
            apt.dir().display(),
            apt.mirror().archive,
            apt.mirror().origin
        ),
    );
    apt.ensure_updated()?;
    let kernel_name = packages::resolve_kernel_package(apt, arch)?;
    let mut names: Vec<String> = packages::ROOTFS_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.push(kernel_name.clone());
    let mut pkgs = packages::resolve(apt, &names, arch)?;
    let kpos = pkgs
        .iter()
        .position(|p| p.name == kernel_name)
        .context("kernel package vanished from the resolution")?;
    let kernel = pkgs.remove(kpos);
    let key = cache_key(arch, &kernel, &pkgs);
    super::build_once(
        &cache.join(arch.as_str()),
        &key,
        |msg| progress(arch, msg),
        |dir| cached(dir, arch, &kernel, &key),
        |out| build_into(out, apt, arch, &kernel, &pkgs, &key),
    )
}

/// The image in `dir`, if complete (the manifest is written last).
fn cached(dir: &Path, arch: Arch, kernel: &Pkg, key: &str) -> Option<BootImage> {
    let files = ["vmlinuz", "initrd.img", "root.raw", "manifest.json"];
    if !files.iter().all(|f| dir.join(f).is_file()) {
        return None;
    }
    Some(BootImage {
        arch,
        kind: ImageKind::Fixture,
        base: dir.join("root.raw"),
        base_format: "raw".into(),
        boot: BootMethod::Direct {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            append: append(arch),
        },
        description: format!(
            "fixture guest (Debian {} {}, busybox; not NixOS), cache {key}",
            kernel.name, kernel.version
        ),
    })
}

fn build_into(
    out: &Path,
    apt: &AptRoot,
    arch: Arch,
    kernel: &Pkg,
    pkgs: &[Pkg],
    key: &str,
) -> anyhow::Result<()> {
    let work = out.join("work");
    let debs_dir = work.join("debs");
    let ktree = work.join("kernel");
    let rootfs = work.join("rootfs");
    let initramfs = work.join("initramfs");
    for d in [&debs_dir, &ktree, &rootfs, &initramfs] {
        std::fs::create_dir_all(d)?;
    }

    progress(
        arch,
        &format!("apt-get download: {} packages", pkgs.len() + 1),
    );
    let mut all = vec![kernel.clone()];
    all.extend_from_slice(pkgs);
    let debs = packages::download(apt, &all, &debs_dir)?;

    progress(arch, &format!("dpkg -x {} {}", kernel.name, kernel.version));
    packages::extract(&debs[0], &ktree)?;
    progress(arch, "dpkg -x root filesystem packages");
    for deb in &debs[1..] {
        packages::extract(deb, &rootfs)?;
    }

    // Kernel.
    let release = kernel
        .name
        .strip_prefix("linux-image-")
        .context("kernel package is not linux-image-*")?
        .to_string();
    let vmlinuz = ktree.join("boot").join(format!("vmlinuz-{release}"));
    std::fs::copy(&vmlinuz, out.join("vmlinuz"))
        .with_context(|| format!("copy {}", vmlinuz.display()))?;

    // Initramfs: busybox, /init, the modules in load order.
    progress(arch, "initramfs: virtio modules + busybox");
    let mod_dir = ktree.join("lib/modules").join(&release);
    let files = kmod::index(&mod_dir.join("kernel"))?;
    let builtin: HashSet<String> = kmod::builtin(&mod_dir);
    let deps_of = |p: &Path| {
        kmod::depends(&kmod::read_module(p)?).with_context(|| format!("modinfo of {}", p.display()))
    };
    let order = kmod::load_order(&kmod::wanted(arch), &files, &builtin, &deps_of)
        .with_context(|| format!("kernel {release}"))?;
    std::fs::create_dir_all(initramfs.join("bin"))?;
    std::fs::create_dir_all(initramfs.join("lib/modules"))?;
    std::fs::copy(rootfs.join("bin/busybox"), initramfs.join("bin/busybox"))
        .context("busybox-static has no /bin/busybox")?;
    let mut list = String::new();
    for m in &order {
        std::fs::write(
            initramfs.join(format!("lib/modules/{m}.ko")),
            kmod::read_module(&files[m])?,
        )?;
        list.push_str(&format!("{m}.ko\n"));
    }
    std::fs::write(initramfs.join("modules.order"), &list)?;
    assemble::write_files(
        &initramfs,
        &[GuestFile {
            path: "init",
            mode: 0o755,
            content: INITRAMFS_INIT,
        }],
    )?;
    assemble::cpio_gz(&initramfs, &out.join("initrd.img"))?;

    // Root filesystem.
    progress(
        arch,
        "root filesystem: guest files, library check, mkfs.ext4 -d",
    );
    assemble::finish_rootfs(&rootfs)?;
    assemble::write_files(&rootfs, &guest_files())?;
    assemble::check_libraries(&rootfs)?;
    assemble::mkfs_ext4(&rootfs, &out.join("root.raw"), ROOT_MIB)?;

    std::fs::remove_dir_all(&work)?;
    let manifest = serde_json::json!({
        "kind": "fixture",
        "note": "test double: Debian kernel + busybox guest, not NixOS",
        "arch": arch.as_str(),
        "key": key,
        "kernel": { "package": kernel.name, "version": kernel.version, "release": release },
        "append": append(arch),
        "modules": order,
        "packages": pkgs.iter().map(|p| format!("{}:{}={}", p.name, p.arch, p.version)).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Pkg {
        Pkg {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "00".into(),
        }
    }

    #[test]
    fn cache_key_is_stable_and_tracks_inputs() {
        let k = pkg("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2");
        let base = vec![
            pkg("sudo", "1.9.13p3-1+deb12u4"),
            pkg("busybox-static", "1:1.35.0-4"),
        ];
        let a = cache_key(Arch::X86_64, &k, &base);
        assert_eq!(a, cache_key(Arch::X86_64, &k, &base), "deterministic");
        assert_eq!(a.len(), 20);
        assert_ne!(a, cache_key(Arch::Aarch64, &k, &base), "arch");
        let mut bumped = base.clone();
        bumped[0].version = "1.9.13p3-1+deb12u5".into();
        assert_ne!(a, cache_key(Arch::X86_64, &k, &bumped), "package version");
        let k2 = pkg("linux-image-6.1.0-57-cloud-amd64", "6.1.200-1");
        assert_ne!(a, cache_key(Arch::X86_64, &k2, &base), "kernel");
        let mut resigned = base.clone();
        resigned[1].sha256 = "11".into();
        assert_ne!(a, cache_key(Arch::X86_64, &k, &resigned), "package hash");
    }

    #[test]
    fn guest_files_cover_the_contract() {
        let files = guest_files();
        let get = |p: &str| {
            files
                .iter()
                .find(|f| f.path == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert!(get("sbin/init").content.contains("/dev/xvdb"));
        assert!(get("etc/fixture/probe-shell")
            .content
            .contains("harness-probe: ready"));
        let ai = get("etc/fixture/amazon-init").content;
        for s in [
            "PUT",
            "X-aws-ec2-metadata-token-ttl-seconds: 21600",
            "X-aws-ec2-metadata-token:",
            "user-data exit=",
            "sshd up",
            "imds ok",
        ] {
            assert!(ai.contains(s), "amazon-init lacks {s}");
        }
        assert!(get("etc/fixture/shutdown")
            .content
            .contains("harness-fixture: powering off"));
        assert_eq!(get("etc/shadow").mode, 0o600);
        assert!(INITRAMFS_INIT.contains("switch_root"));
        for f in &files {
            if f.mode & 0o111 != 0 {
                assert!(
                    f.content.starts_with("#!"),
                    "{} is executable without #!",
                    f.path
                );
            }
        }
    }

    #[test]
    fn append_names_the_serial_console() {
        assert!(append(Arch::X86_64).contains("console=ttyS0"));
        assert!(append(Arch::Aarch64).contains("console=ttyAMA0"));
    }
}

//! Debian packages of the contract guest: the explicit list, its dependency
//! closure as apt's own resolver computes it against an EMPTY dpkg status
//! (`apt-get -s install` with `Dir::State::Status` pointing at an empty
//! file, so the host's installed packages never leak in), and the nixpkgs
//! name each package's executables are filed under in the guest's store.
//!
//! Versions, hashes, downloads and `dpkg -x` reuse the shared Debian
//! functions (`image::debian::packages`), so one private apt root
//! replaces the mirror in one place.

use std::path::Path;

use anyhow::{bail, Context};

use crate::image::apt_root::Pkg;
use crate::image::debian::packages::deb_arch;
use crate::template::variant::Arch;

/// What the guest is built from (same names on both arches); their
/// `Depends`/`Pre-Depends` closure is added by [`closure`].
pub const ROOTFS_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "libpam-systemd",
    "util-linux",
    "mount",
    "e2fsprogs",
    "sudo",
    "openssh-server",
    "curl",
    "bash",
    "coreutils",
    "findutils",
    "grep",
    "sed",
    "gzip",
    "tar",
    "xz-utils",
    "git",
    "iproute2",
    "kmod",
    "libpam-modules",
    "libpam-runtime",
    "diffutils",
    "procps",
    "less",
    "jq",
    "passwd",
    "gawk",
    "libc-bin",
];

/// The nixpkgs attribute a Debian package's executables are filed under
/// (`/nix/store/<hash>-<name>-<version>/bin`).  Several Debian packages
/// make one nixpkgs package (systemd = systemd + systemd-sysv + udev);
/// unlisted packages keep their Debian name.
pub fn nix_name(deb: &str) -> &str {
    match deb {
        "systemd" | "systemd-sysv" | "udev" | "libpam-systemd" => "systemd",
        "grep" => "gnugrep",
        "sed" => "gnused",
        "tar" => "gnutar",
        "xz-utils" => "xz",
        "util-linux" | "util-linux-extra" | "mount" | "bsdutils" => "util-linux",
        "e2fsprogs" | "logsave" => "e2fsprogs",
        "openssh-server" | "openssh-client" | "openssh-sftp-server" => "openssh",
        "dbus" | "dbus-bin" | "dbus-daemon" => "dbus",
        "passwd" => "shadow",
        // glibc's programs (getent, getconf, ldd, iconv, locale, …): on
        // NixOS they come from `stdenv.cc.libc` in system-path.
        "libc-bin" => "glibc",
        "perl-base" | "perl" => "perl",
        "libcap2-bin" => "libcap",
        other => other,
    }
}

/// A nixpkgs package that one executable of a Debian package belongs to
/// when it is not the package's own: Debian's debianutils ships `which`
/// (as `which.debianutils`, named `which` by its postinst's alternative),
/// nixpkgs has it as the package `which` (NixOS's system-path has it; the
/// rest of debianutils is Debian's).
pub fn exe_group(deb: &str, exe: &str) -> Option<&'static str> {
    match (deb, exe) {
        ("debianutils", "which.debianutils") => Some("which"),
        _ => None,
    }
}

/// The dependency closure of `names` for `arch` (names only; versions come
/// from `debian::packages::resolve`).  apt's resolver runs as a
/// simulation against an empty status file: the host's installed packages
/// neither satisfy nor shadow anything.
pub fn closure(
    apt: &crate::image::apt_root::AptRoot,
    names: &[String],
    arch: Arch,
) -> anyhow::Result<Vec<String>> {
    let da = deb_arch(arch);
    // The private apt root's own status file is empty, so the simulation
    // resolves against nothing installed; its lists, not the host's.
    let out = apt
        .command("apt-get")
        .arg("-s")
        .args(["-o", &format!("APT::Architecture={da}")])
        .args([
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Get::Show-Versions=0",
        ])
        .args(["install", "--no-install-recommends"])
        .args(names.iter().map(|n| format!("{n}:{da}")))
        .output()
        .context("cannot run apt-get -s install")?;
    if !out.status.success() {
        bail!(
            "apt-get -s install (dependency closure of the contract guest, {da}) failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let mut pkgs = parse_sim(&String::from_utf8_lossy(&out.stdout));
    pkgs.sort();
    pkgs.dedup();
    if pkgs.is_empty() {
        bail!("apt-get -s install printed no `Inst` lines for the contract guest's packages");
    }
    Ok(pkgs)
}

/// What the private apt root resolves the guest to: its kernel, busybox
/// (the initramfs) and the root file system's packages, each with version
/// and hash. Resolving costs one `apt-get -s` and a few `apt-cache` runs,
/// 3–5 CPU-s in every process that needs the image (a sampled
/// `ci/test.sh`: 17 `apt-get` and 47 `apt-cache` processes, 72 CPU-s), so
/// it is kept beside the images under the key of what it depends on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolution {
    /// [`resolution_key`] it was made under.
    pub key: String,
    pub kernel: Pkg,
    pub busybox: Pkg,
    pub pkgs: Vec<Pkg>,
}

/// The code that resolves (this file, the image build, the apt root and
/// the Debian package queries): a change to how packages are resolved
/// is a new key even when apt's lists stay the same.
const RESOLVER: &[&str] = &[
    include_str!("packages.rs"),
    include_str!("mod.rs"),
    include_str!("../apt_root.rs"),
    include_str!("../debian/packages.rs"),
];

/// The key of a resolution: the apt root's lists (`lists_fingerprint`),
/// the arch, the kernel metapackage, [`ROOTFS_PACKAGES`] and the resolving
/// code.
pub fn resolution_key(lists_fingerprint: &str, arch: Arch, kernel_meta: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in [lists_fingerprint, arch.as_str(), kernel_meta]
        .into_iter()
        .chain(ROOTFS_PACKAGES.iter().copied())
        .chain(RESOLVER.iter().copied())
    {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    hex::encode(&h.finalize()[..16])
}

/// The resolution kept in `file` when it was made under `key`, else
/// `resolve()`'s, which is then kept there (written to a temporary file
/// and renamed: a reader never sees half of it). A file that cannot be
/// read or parsed counts as absent.
pub fn memo(
    file: &Path,
    key: &str,
    resolve: impl FnOnce() -> anyhow::Result<Resolution>,
) -> anyhow::Result<(Resolution, bool)> {
    if let Some(r) = std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Resolution>(&b).ok())
        .filter(|r| r.key == key)
    {
        return Ok((r, true));
    }
    let r = resolve()?;
    anyhow::ensure!(
        r.key == key,
        "a resolution made under key {} offered for key {key}",
        r.key
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).ok();
        let tmp = dir.join(format!(".resolution-{}", std::process::id()));
        if std::fs::write(&tmp, serde_json::to_vec_pretty(&r)?).is_ok() {
            std::fs::rename(&tmp, file).ok();
        }
    }
    Ok((r, false))
}

/// Package names from `apt-get -s` output (`Inst name[:arch] (…)`).
pub fn parse_sim(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolution(key: &str, kernel_version: &str) -> Resolution {
        let p = |n: &str, v: &str| Pkg {
            name: n.into(),
            version: v.into(),
            arch: "amd64".into(),
            sha256: "00".into(),
        };
        Resolution {
            key: key.into(),
            kernel: p("linux-image-6.1.0-1-cloud-amd64", kernel_version),
            busybox: p("busybox-static", "1.35"),
            pkgs: vec![p("systemd", "252"), p("sudo", "1.9")],
        }
    }

    #[test]
    fn a_resolution_is_kept_under_its_key_only() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("x86_64/resolution.json");
        let k1 = resolution_key("lists-1", Arch::X86_64, "linux-image-cloud-amd64");
        let (r, kept) = memo(&file, &k1, || Ok(resolution(&k1, "6.1.1"))).unwrap();
        assert!(!kept);
        assert_eq!(r, resolution(&k1, "6.1.1"));
        // the same key: kept, apt is not asked
        let (r, kept) = memo(&file, &k1, || panic!("resolved again under the same key")).unwrap();
        assert!(kept);
        assert_eq!(r, resolution(&k1, "6.1.1"));
        // other lists, arch or kernel metapackage: another key, resolved anew
        let k2 = resolution_key("lists-2", Arch::X86_64, "linux-image-cloud-amd64");
        assert_ne!(k2, k1);
        assert_ne!(
            resolution_key("lists-1", Arch::Aarch64, "linux-image-cloud-amd64"),
            k1
        );
        assert_ne!(
            resolution_key("lists-1", Arch::X86_64, "linux-image-cloud-arm64"),
            k1
        );
        let (r, kept) = memo(&file, &k2, || Ok(resolution(&k2, "6.1.2"))).unwrap();
        assert!(!kept);
        assert_eq!(r.kernel.version, "6.1.2");
        // a damaged file counts as absent; a failed resolution keeps nothing
        std::fs::write(&file, "{").unwrap();
        assert!(memo(&file, &k2, || anyhow::bail!("apt failed")).is_err());
        let (_, kept) = memo(&file, &k2, || Ok(resolution(&k2, "6.1.2"))).unwrap();
        assert!(!kept);
        // a resolution under another key is refused, not kept
        let e = memo(&file, &k1, || Ok(resolution(&k2, "6.1.2"))).unwrap_err();
        assert!(e.to_string().contains("offered for key"), "{e}");
        let (_, kept) = memo(&file, &k2, || panic!("kept file lost")).unwrap();
        assert!(kept);
    }

    #[test]
    fn sim_parsing() {
        let out = "NOTE: x\nInst libc6 (2.36-9 Debian:12 [amd64])\nInst sudo:arm64 (1.9 Debian [arm64])\nConf libc6 (2.36)\n";
        assert_eq!(parse_sim(out), vec!["libc6", "sudo"]);
    }

    #[test]
    fn amazon_init_path_tools_come_from_listed_packages() {
        for p in [
            "systemd",
            "grep",
            "git",
            "tar",
            "gzip",
            "sed",
            "xz-utils",
            "coreutils",
            "findutils",
            "sudo",
            "curl",
            "bash",
        ] {
            assert!(ROOTFS_PACKAGES.contains(&p), "{p} missing");
        }
        assert_eq!(nix_name("grep"), "gnugrep");
        assert_eq!(nix_name("udev"), "systemd");
        assert_eq!(nix_name("curl"), "curl");
    }
}

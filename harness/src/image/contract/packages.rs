//! Debian packages of the contract guest: the explicit list, its dependency
//! closure as apt's own resolver computes it against an EMPTY dpkg status
//! (`apt-get -s install` with `Dir::State::Status` pointing at an empty
//! file, so the host's installed packages never leak in), and the nixpkgs
//! name each package's executables are filed under in the guest's store.
//!
//! Versions, hashes, downloads and `dpkg -x` reuse the shared Debian
//! functions (`image::debian::packages`), so one private apt root
//! replaces the mirror in one place.

use anyhow::{bail, Context};

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

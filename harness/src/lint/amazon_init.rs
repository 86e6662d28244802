//! amazon-init's PATH: the only programs the template's user-data may use.
//!
//! nixpkgs `nixos/modules/virtualisation/amazon-init.nix` (read at commit
//! 637b7c60) runs user-data that starts with `#!` as
//! `exec ${pkgs.runtimeShell} $userData` after
//! `export PATH=${makeBinPath [ nix systemd gnugrep git gnutar gzip gnused xz nixos-rebuild ]}:$PATH`,
//! and `$PATH` is the default path NixOS gives every declared service
//! (`nixos/modules/system/boot/systemd.nix`: coreutils, findutils, gnugrep,
//! gnused, systemd). So `cmp` (diffutils), `mountpoint`/`findmnt`
//! (util-linux), `curl`, `jq`, … are NOT available to user-data.
//!
//! [`AMAZON_INIT_PATH`] is that list, in PATH order; [`debian_package`]
//! maps each entry to the Debian package that ships the same programs (none
//! for the NixOS-only ones, which a test stubs and [`stubbable`] names).
//! The static gate builds a directory of exactly these programs
//! ([`toolbox`]) and runs the rendered user-data with nothing else on PATH.
//! The contract guest (issue 13) can reuse the same list for its
//! amazon-init unit.

use std::path::Path;

/// nixpkgs packages whose `bin/` make up amazon-init's PATH, in order.
pub const AMAZON_INIT_PATH: &[&str] = &[
    // amazon-init.nix's own `export PATH=…`
    "nix",
    "systemd",
    "gnugrep",
    "git",
    "gnutar",
    "gzip",
    "gnused",
    "xz",
    "nixos-rebuild",
    // the default service path (systemd.nix)
    "coreutils",
    "findutils",
    "gnugrep",
    "gnused",
    "systemd",
];

/// The Debian package with the same programs as nixpkgs package `pkg`;
/// `None` for the NixOS/systemd ones a static test stubs.
pub fn debian_package(pkg: &str) -> Option<&'static str> {
    Some(match pkg {
        "gnugrep" => "grep",
        "git" => "git",
        "gnutar" => "tar",
        "gzip" => "gzip",
        "gnused" => "sed",
        "xz" => "xz-utils",
        "coreutils" => "coreutils",
        "findutils" => "findutils",
        _ => return None,
    })
}

/// Programs of the stubbed packages that a static test may replace with a
/// stub (a stub of anything else would hide a missing tool).
pub fn stubbable(program: &str) -> bool {
    matches!(
        program,
        // systemd
        "systemctl" | "systemd-run" | "journalctl" | "udevadm" | "loginctl"
        // nixos-rebuild
        | "nixos-rebuild"
        // nix
        | "nix" | "nix-build" | "nix-env" | "nix-instantiate" | "nix-store" | "nix-channel"
    )
}

/// Fill `dir` with symlinks to this machine's copies of every program of
/// the Debian equivalents of [`AMAZON_INIT_PATH`] (per `dpkg-query -L`).
pub fn toolbox(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut seen = std::collections::BTreeSet::new();
    for pkg in AMAZON_INIT_PATH.iter().filter_map(|p| debian_package(p)) {
        if !seen.insert(pkg) {
            continue;
        }
        let out = std::process::Command::new("dpkg-query")
            .args(["-L", pkg])
            .output()
            .map_err(|e| anyhow::anyhow!("dpkg-query -L {pkg}: {e} (a Debian-based machine is needed to build amazon-init's PATH)"))?;
        anyhow::ensure!(
            out.status.success(),
            "dpkg-query -L {pkg}: {} (install it: apt-get install {pkg})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let p = Path::new(line);
            let in_bin = p
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d == "bin" || d == "sbin");
            let Some(name) = p.file_name() else { continue };
            if !in_bin || !p.is_file() {
                continue;
            }
            let link = dir.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(p, &link)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolbox_has_what_amazon_init_has_and_not_more() {
        let t = tempfile::tempdir().unwrap();
        toolbox(t.path()).unwrap();
        for have in [
            "sha256sum",
            "base64",
            "install",
            "readlink",
            "grep",
            "sed",
            "find",
            "tar",
            "git",
            "xz",
        ] {
            assert!(t.path().join(have).exists(), "{have} missing");
        }
        for lacks in [
            "cmp",
            "diff",
            "mountpoint",
            "findmnt",
            "curl",
            "jq",
            "sudo",
            "awk",
        ] {
            assert!(
                !t.path().join(lacks).exists(),
                "{lacks} is not on amazon-init's PATH"
            );
        }
        assert!(stubbable("systemd-run") && !stubbable("cmp") && !stubbable("install"));
    }
}

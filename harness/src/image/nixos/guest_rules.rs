//! Static rules for the NixOS test image's Nix files (`nixos-vm/`).
//!
//! No network interface may be named: the image uses predictable interface
//! names (`ens3`, `enp0s…`, depending on the QEMU machine), so a
//! kernel-style name such as `eth0` never appears, and NixOS options keyed
//! by an interface (`networking.interfaces.<name>`) create units bound to
//! `sys-subsystem-net-devices-<name>.device` that wait out systemd's 90 s
//! device timeout on every boot. A machine-specific predictable name would
//! differ between x86_64 (q35) and aarch64 (virt). Nothing the image needs
//! is per-interface: QEMU's `net=169.0.0.0/8` already puts 169.254.169.254
//! on-link.

use std::path::{Path, PathBuf};

/// One rule violation: file, 1-based line, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: PathBuf,
    pub line: usize,
    pub found: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: names a network interface ({}); expected no interface names in the NixOS test image (predictable names differ per machine, and a missing device stalls boot for 90 s)",
            self.file.display(),
            self.line,
            self.found
        )
    }
}

/// Kernel-style and predictable interface name prefixes followed by a digit.
const NAME_PREFIXES: &[&str] = &["eth", "ens", "enp", "eno", "enx", "wlan", "wlp"];

/// Interface names referenced on one line (comments stripped).
pub fn names_in_line(line: &str) -> Vec<String> {
    let code = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    };
    let mut found = Vec::new();
    if let Some(i) = code.find("networking.interfaces.") {
        let rest = &code[i + "networking.interfaces.".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "_-\"".contains(*c))
            .collect();
        found.push(format!("networking.interfaces.{name}"));
    }
    let bytes = code.as_bytes();
    for p in NAME_PREFIXES {
        let mut from = 0;
        while let Some(off) = code[from..].find(p) {
            let at = from + off;
            let end = at + p.len();
            let word_start = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            if word_start && bytes.get(end).is_some_and(u8::is_ascii_digit) {
                let tok: String = code[at..]
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                found.push(tok);
            }
            from = end;
        }
    }
    found
}

/// Every violation in the `.nix` and `.nix.in` files under `dir`.
pub fn check_dir(dir: &Path) -> anyhow::Result<Vec<Violation>> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let mut out = Vec::new();
    for file in crate::lint::nix::nix_files(dir) {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            for found in names_in_line(line) {
                out.push(Violation {
                    file: file.clone(),
                    line: i + 1,
                    found,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interface_names_in_code_not_in_comments() {
        assert_eq!(
            names_in_line(r#"  networking.interfaces.eth0.ipv4.routes = [ ];"#),
            ["networking.interfaces.eth0", "eth0"]
        );
        assert_eq!(
            names_in_line(r#"  systemd.network.links."10-x".matchConfig.Name = "ens3";"#),
            ["ens3"]
        );
        assert_eq!(names_in_line("  x = \"enp0s3\";"), ["enp0s3"]);
        assert!(names_in_line("  # the old route named eth0 is gone").is_empty());
        assert!(
            names_in_line("  boot.initrd.availableKernelModules = [ \"virtio_net\" ];").is_empty()
        );
        assert!(names_in_line("  meth1 = 2; tokens3 = 1;").is_empty());
        assert_eq!(
            names_in_line("networking.interfaces.\"my-if\".useDHCP = true;"),
            ["networking.interfaces.\"my-if\""]
        );
    }

    #[test]
    fn a_copy_with_the_old_route_fails_and_the_real_image_passes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("qemu-glue.nix"),
            "{ ... }:\n{\n  # route\n  networking.interfaces.eth0.ipv4.routes = [ { address = \"169.254.169.254\"; prefixLength = 32; } ];\n}\n",
        )
        .unwrap();
        let v = check_dir(d.path()).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].line, 4);
        assert!(v[0].to_string().contains("qemu-glue.nix:4"), "{}", v[0]);
        assert!(v[0].to_string().contains("90 s"), "{}", v[0]);

        let real = crate::repo::root().unwrap().join("nixos-vm");
        let v = check_dir(&real).unwrap();
        assert!(
            v.is_empty(),
            "{}",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(check_dir(&d.path().join("missing")).is_err());
    }
}

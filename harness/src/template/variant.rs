//! A template variant: one `values/<name>.yml` file, typed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// CPU architecture of a variant, spelled as in `values/*.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The spelling used in values files, Nix systems and `uname -m`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Coder's / Go's name for the architecture (`coder_agent.arch`).
    pub fn coder_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Debian's name for the architecture (`dpkg --print-architecture`).
    pub fn debian_arch(self) -> &'static str {
        self.coder_arch()
    }

    /// The architecture this harness binary runs on, if it is one of ours.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The Nix system double, e.g. `x86_64-linux`.
    pub fn nix_system(self) -> String {
        format!("{}-linux", self.as_str())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error for an architecture name that is neither `x86_64` nor `aarch64`.
#[derive(Debug, thiserror::Error)]
#[error("unknown arch `{0}`: expected one of x86_64, aarch64")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Aarch64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

/// One template variant, discovered from `values/<name>.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Template name: the values file's stem, e.g. `aws-nixos-graviton-spot`.
    pub name: String,
    pub arch: Arch,
    pub is_spot: bool,
    /// Every key of the values file (including `arch` and `is_spot`), as
    /// Terraform variables for the template.
    pub values: BTreeMap<String, serde_json::Value>,
    /// The values file this variant came from.
    pub source: PathBuf,
}

impl Variant {
    /// `spot` or `on-demand`, as used in tags and reports.
    pub fn market(&self) -> &'static str {
        if self.is_spot {
            "spot"
        } else {
            "on-demand"
        }
    }

    /// A string-valued template variable from the values file, if set.
    pub fn value_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.as_str())
    }
}

/// The JSON shape of `harness variants --json`: exactly these three keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariantSummary {
    pub name: String,
    pub arch: Arch,
    pub is_spot: bool,
}

impl From<&Variant> for VariantSummary {
    fn from(v: &Variant) -> Self {
        VariantSummary {
            name: v.name.clone(),
            arch: v.arch,
            is_spot: v.is_spot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_round_trips_and_maps_to_coder_names() {
        for a in Arch::ALL {
            assert_eq!(a.as_str().parse::<Arch>().unwrap(), a);
        }
        assert_eq!(Arch::X86_64.coder_arch(), "amd64");
        assert_eq!(Arch::Aarch64.coder_arch(), "arm64");
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("riscv64") && err.contains("x86_64"), "{err}");
    }
}

//! Evidence tiers: which kind of run produced a verdict.
//!
//! A pass in one tier never stands for another: the contract guest is a
//! double of the NixOS AMI that keeps NixOS's contract, `twin` applies the real template with its
//! real providers against moto (a double of AWS), and only `nixos` and
//! `ec2` run the real image.  [`Tier::derive`] is the one place a tier is decided from what a
//! row ran against; static gate rows (lint, render, `terraform test`,
//! `coder-import`, checkov) are [`Tier::Static`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tier that produced a verdict, lowest evidence first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Files, real Terraform, shellcheck, nix-instantiate: no guest.
    #[default]
    Static,
    /// The template's real user-data on the systemd guest that keeps NixOS's
    /// contract (a double of the NixOS AMI).
    Contract,
    /// Real Terraform with the real hashicorp/aws and coder providers,
    /// applied against moto (the AWS peer: a double of AWS).
    Twin,
    /// A real NixOS image and a real Coder, on QEMU.
    Nixos,
    /// The real NixOS AMI on EC2.
    Ec2,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Static,
        Tier::Contract,
        Tier::Twin,
        Tier::Nixos,
        Tier::Ec2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Static => "static",
            Tier::Contract => "contract",
            Tier::Twin => "twin",
            Tier::Nixos => "nixos",
            Tier::Ec2 => "ec2",
        }
    }

    /// One line saying what a pass in this tier proves.
    pub fn meaning(self) -> &'static str {
        match self {
            Tier::Static => "files and real Terraform, no guest",
            Tier::Contract => "the template's user-data on the NixOS-contract guest (a double of the NixOS AMI)",
            Tier::Twin => "real Terraform and the real aws and coder providers applied against moto (a double of AWS)",
            Tier::Nixos => "a real NixOS image and a real Coder on QEMU",
            Tier::Ec2 => "the real NixOS AMI on EC2",
        }
    }

    /// The tier of a run row, from what it ran against: `backend` is `qemu`
    /// or `ec2`, `image` is `contract`, `twin`, `nixos` or `path` (its
    /// first word counts, so `twin (moto)` and `nixos AMI` are read too).
    /// Anything on EC2 is `ec2`; a NixOS image or an image path on QEMU is
    /// `nixos`.  An image this function does not know (e.g. `fixture`, the
    /// retired busybox guest, in an old summary) is counted as `contract`,
    /// the weakest guest tier, so an unknown name never claims more than a
    /// double proves; `static` (or no image) is `static`.
    pub fn derive(image: &str, backend: &str) -> Tier {
        if backend.trim().eq_ignore_ascii_case("ec2") {
            return Tier::Ec2;
        }
        let first = image
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_ascii_lowercase();
        match first.as_str() {
            "" | "static" => Tier::Static,
            "contract" => Tier::Contract,
            "twin" => Tier::Twin,
            "nixos" | "path" => Tier::Nixos,
            _ => Tier::Contract,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Passed / failed / skipped counts of one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Counts per tier, every tier present (zeros included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally(pub BTreeMap<Tier, Counts>);

/// What a row contributes to a tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    Skipped,
}

impl Tally {
    pub fn new<I: IntoIterator<Item = (Tier, Verdict)>>(rows: I) -> Tally {
        let mut m: BTreeMap<Tier, Counts> =
            Tier::ALL.iter().map(|t| (*t, Counts::default())).collect();
        for (t, v) in rows {
            let c = m.entry(t).or_default();
            match v {
                Verdict::Passed => c.passed += 1,
                Verdict::Failed => c.failed += 1,
                Verdict::Skipped => c.skipped += 1,
            }
        }
        Tally(m)
    }

    /// `static 40 passed · contract 28 passed, 1 FAILED · twin 16 passed · nixos 0 (30 skipped) · ec2 0 (1 skipped)`:
    /// every tier named, so a count of passes can never be read as another
    /// tier's; neighbouring tiers without a single row share their `0`
    /// (the line stays within a 120-column screen with five tiers).
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut empty: Vec<&str> = Vec::new();
        for (t, c) in &self.0 {
            if *c == Counts::default() {
                empty.push(t.as_str());
                continue;
            }
            if !empty.is_empty() {
                parts.push(format!("{} 0", empty.join(", ")));
                empty.clear();
            }
            let mut s = format!("{t} {}", c.passed);
            if c.passed > 0 {
                s.push_str(" passed");
            }
            if c.failed > 0 {
                s.push_str(&format!(", {} FAILED", c.failed));
            }
            if c.skipped > 0 {
                s.push_str(&format!(" ({} skipped)", c.skipped));
            }
            parts.push(s);
        }
        if !empty.is_empty() {
            parts.push(format!("{} 0", empty.join(", ")));
        }
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_names_the_tier_of_every_known_row_shape() {
        let cases = [
            ("contract", "qemu", Tier::Contract),
            ("twin (moto)", "moto", Tier::Twin),
            ("nixos", "qemu", Tier::Nixos),
            ("path", "qemu", Tier::Nixos),
            ("nixos AMI", "ec2", Tier::Ec2),
            ("nixos", "ec2", Tier::Ec2),
            ("contract", "ec2", Tier::Ec2),
            ("static", "", Tier::Static),
            ("", "", Tier::Static),
            // Unknown images (the retired busybox `fixture` guest of an
            // old summary too) never claim more than the contract double.
            ("something-new", "qemu", Tier::Contract),
            ("fixture (double)", "qemu", Tier::Contract),
        ];
        for (image, backend, want) in cases {
            assert_eq!(Tier::derive(image, backend), want, "{image} on {backend}");
        }
    }

    #[test]
    fn tiers_are_ordered_by_the_strength_of_their_evidence() {
        let mut sorted = Tier::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, Tier::ALL);
        assert_eq!(
            Tier::ALL.map(Tier::as_str),
            ["static", "contract", "twin", "nixos", "ec2"]
        );
    }

    #[test]
    fn serde_uses_the_lowercase_names() {
        for t in Tier::ALL {
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(j, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Tier>(&j).unwrap(), t);
        }
        assert!(serde_json::from_str::<Tier>("\"NixOS\"").is_err());
    }

    #[test]
    fn the_tally_line_names_every_tier_even_with_no_rows() {
        let t = Tally::new([
            (Tier::Static, Verdict::Passed),
            (Tier::Static, Verdict::Passed),
            (Tier::Contract, Verdict::Passed),
            (Tier::Contract, Verdict::Failed),
            (Tier::Nixos, Verdict::Skipped),
        ]);
        assert_eq!(
            t.line(),
            "static 2 passed · contract 1 passed, 1 FAILED · twin 0 · nixos 0 (1 skipped) · ec2 0"
        );
        assert_eq!(
            Tally::new([]).line(),
            "static, contract, twin, nixos, ec2 0"
        );
        assert_eq!(
            Tally::new([(Tier::Twin, Verdict::Failed)]).line(),
            "static, contract 0 · twin 0, 1 FAILED · nixos, ec2 0"
        );
    }
}

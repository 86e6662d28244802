//! The e2e run summary (`target/e2e/summary.json`): one row per scenario
//! with variant, check, outcome, skip reason, timings and where the
//! evidence is.  The cucumber runner writes it; `harness report` and
//! `harness gate` read it, so CI and the gate print the same table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::matrix::{Item, Matrix};
use crate::report::tier::{Tier, Verdict};

/// File name of the summary inside the e2e output directory.
pub const FILE: &str = "summary.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub variant: String,
    pub arch: String,
    /// `qemu` or `ec2`.
    pub backend: String,
    /// What the checks ran against: `contract` (a double of the NixOS
    /// AMI), `twin (moto)`, `nixos`, `nixos AMI`, `path`.
    pub image: String,
    /// The evidence tier of this verdict.  Written by [`Summary::save`];
    /// files without it (older runs) get it from [`Row::tier`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The check or feature, e.g. `home mount`, `agent user`.
    pub check: String,
    pub scenario: String,
    pub outcome: Outcome,
    /// Why it was skipped or how it failed (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_agent_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_ready_s: Option<f64>,
    /// Per-scenario evidence folder (serial log, IMDS log, rebuild log, agent logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<PathBuf>,
}

impl Row {
    /// The tier that produced this verdict: the one recorded, else derived
    /// from `image` and `backend` by [`Tier::derive`].
    pub fn tier(&self) -> Tier {
        self.tier
            .unwrap_or_else(|| Tier::derive(&self.image, &self.backend))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub rows: Vec<Row>,
}

impl Summary {
    pub fn load(dir: &Path) -> anyhow::Result<Summary> {
        let p = dir.join(FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            anyhow::anyhow!(
                "no e2e summary at {} ({e}); run the scenarios first: \
                 cargo test -p harness --features e2e --test e2e",
                p.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    }

    /// Write `summary.json`, every row with its tier spelled out.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let p = dir.join(FILE);
        let mut explicit = self.clone();
        for r in &mut explicit.rows {
            r.tier = Some(r.tier());
        }
        std::fs::write(&p, serde_json::to_string_pretty(&explicit)?)?;
        Ok(p)
    }

    /// The rows as a variant × check [`Matrix`] (text, Markdown, HTML).
    pub fn matrix(&self) -> Matrix {
        Matrix::new(
            self.rows
                .iter()
                .map(|r| Item {
                    variant: r.variant.clone(),
                    arch: Some(r.arch.clone()),
                    check: r.check.clone(),
                    scenario: Some(r.scenario.clone()),
                    tier: r.tier(),
                    verdict: match r.outcome {
                        Outcome::Passed => Verdict::Passed,
                        Outcome::Failed => Verdict::Failed,
                        Outcome::Skipped => Verdict::Skipped,
                    },
                    message: r.reason.clone(),
                    warning: None,
                    seconds: r.seconds,
                    time_to_agent_s: r.time_to_agent_s,
                    time_to_ready_s: r.time_to_ready_s,
                    artifacts: r.artifacts.clone(),
                })
                .collect(),
        )
    }

    pub fn count(&self, o: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == o).count()
    }

    /// Markdown (the CI job summary): passes per tier, variant × check
    /// with each cell's tier, time to agent and to ready, each distinct skip
    /// reason once with what to do, then every failure with its evidence.
    pub fn markdown(&self) -> String {
        self.matrix().markdown("e2e")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, check: &str, outcome: Outcome, reason: Option<&str>) -> Row {
        Row {
            variant: variant.into(),
            arch: "x86_64".into(),
            backend: "qemu".into(),
            image: "nixos".into(),
            tier: None,
            check: check.into(),
            scenario: format!("{check} on {variant}"),
            outcome,
            reason: reason.map(str::to_string),
            seconds: 1.0,
            time_to_agent_s: Some(42.0),
            time_to_ready_s: None,
            artifacts: Some(PathBuf::from("target/e2e/x")),
        }
    }

    #[test]
    fn markdown_shows_every_variant_check_and_reason() {
        let s = Summary {
            rows: vec![
                row("a", "home mount", Outcome::Passed, None),
                row("a", "agent user", Outcome::Failed, Some("ran as root")),
                row("b", "home mount", Outcome::Skipped, Some("no NixOS image")),
            ],
        };
        let md = s.markdown();
        assert!(
            md.contains("static, contract, twin 0 · nixos 1 passed, 1 FAILED (1 skipped) · ec2 0"),
            "{md}"
        );
        assert!(md.contains("| variant | home mount | agent user |"), "{md}");
        assert!(
            md.contains("| a | ✅ nixos | ❌ nixos | 42 s | – |"),
            "{md}"
        );
        assert!(md.contains("| b | ⏭ nixos [1] | – |"), "{md}");
        assert!(
            md.contains("- **[1]** no NixOS image (1 row) → set HARNESS_IMAGE_X86_64"),
            "{md}"
        );
        assert!(
            md.contains("| a | nixos | agent user on a | ran as root | `target/e2e/x` |"),
            "{md}"
        );
    }

    #[test]
    fn round_trips_through_disk_and_explains_a_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let e = Summary::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("summary.json") && e.contains("--features e2e"),
            "{e}"
        );
        let s = Summary {
            rows: vec![row("a", "ssh fallback", Outcome::Passed, None)],
        };
        s.save(d.path()).unwrap();
        let back = Summary::load(d.path()).unwrap();
        // Saved with its tier spelled out; otherwise the same.
        assert_eq!(back.rows[0].tier, Some(Tier::Nixos));
        let mut old = back.clone();
        old.rows[0].tier = None;
        assert_eq!(old, s);
    }

    #[test]
    fn the_tier_is_read_when_present_and_derived_when_absent() {
        let old = r#"{"rows":[{"variant":"a","arch":"x86_64","backend":"qemu","image":"fixture (double)","check":"home mount","scenario":"s","outcome":"passed","seconds":1.0}]}"#;
        let s: Summary = serde_json::from_str(old).unwrap();
        assert_eq!(s.rows[0].tier(), Tier::Contract);
        let new = old.replace(
            r#""image":"fixture (double)""#,
            r#""image":"nixos","tier":"twin""#,
        );
        let s: Summary = serde_json::from_str(&new).unwrap();
        assert_eq!(s.rows[0].tier(), Tier::Twin);
        let bad = old.replace(r#""seconds""#, r#""tier":"NixOS","seconds""#);
        let e = serde_json::from_str::<Summary>(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `NixOS`"), "{e}");
    }
}

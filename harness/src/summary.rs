//! The e2e run summary (`target/e2e/summary.json`): one row per scenario
//! with variant, check, outcome, skip reason, timings and where the
//! evidence is.  The cucumber runner writes it; `harness report` and
//! `harness gate` read it, so CI and the gate print the same table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// What the checks ran against: `nixos`, `fixture` (a double), `path`.
    pub image: String,
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

    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let p = dir.join(FILE);
        std::fs::write(&p, serde_json::to_string_pretty(self)?)?;
        Ok(p)
    }

    pub fn count(&self, o: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == o).count()
    }

    /// Rows grouped as variant → check → rows (sorted, stable).
    fn grid(&self) -> BTreeMap<&str, BTreeMap<&str, Vec<&Row>>> {
        let mut g: BTreeMap<&str, BTreeMap<&str, Vec<&Row>>> = BTreeMap::new();
        for r in &self.rows {
            g.entry(&r.variant)
                .or_default()
                .entry(&r.check)
                .or_default()
                .push(r);
        }
        g
    }

    fn checks(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.rows.iter().map(|r| r.check.as_str()).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Markdown: variant × check, then time-to-agent per variant, then
    /// every skip and failure with its reason.
    pub fn markdown(&self) -> String {
        let checks = self.checks();
        let mut out = String::new();
        out.push_str(&format!(
            "### e2e: {} passed, {} failed, {} skipped\n\n",
            self.count(Outcome::Passed),
            self.count(Outcome::Failed),
            self.count(Outcome::Skipped)
        ));
        out.push_str("| variant | ran against |");
        for c in &checks {
            out.push_str(&format!(" {c} |"));
        }
        out.push_str(" time to agent | time to ready |\n|---|---|");
        for _ in &checks {
            out.push_str("---|");
        }
        out.push_str("---|---|\n");
        for (variant, by_check) in self.grid() {
            let rows: Vec<&Row> = by_check.values().flatten().copied().collect();
            let mut images: Vec<String> = rows
                .iter()
                .map(|r| format!("{}/{}", r.backend, r.image))
                .collect();
            images.sort();
            images.dedup();
            out.push_str(&format!("| {variant} | {} |", images.join(", ")));
            for c in &checks {
                out.push_str(&format!(" {} |", cell(by_check.get(c))));
            }
            let max = |f: fn(&Row) -> Option<f64>| {
                rows.iter()
                    .filter_map(|r| f(r))
                    .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
                    .map(|s| format!("{s:.0} s"))
                    .unwrap_or_else(|| "–".into())
            };
            out.push_str(&format!(
                " {} | {} |\n",
                max(|r| r.time_to_agent_s),
                max(|r| r.time_to_ready_s)
            ));
        }
        let notes: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.outcome != Outcome::Passed)
            .collect();
        if !notes.is_empty() {
            out.push_str(
                "\n| outcome | variant | scenario | reason | evidence |\n|---|---|---|---|---|\n",
            );
            for r in notes {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    r.outcome.as_str(),
                    r.variant,
                    r.scenario.replace('|', "\\|"),
                    r.reason.as_deref().unwrap_or("").replace('|', "\\|"),
                    r.artifacts
                        .as_ref()
                        .map(|p| format!("`{}`", p.display()))
                        .unwrap_or_default()
                ));
            }
        }
        out
    }
}

/// One table cell: ✅ all passed, ❌ any failed, ⏭ skipped (with counts).
fn cell(rows: Option<&Vec<&Row>>) -> String {
    let Some(rows) = rows else {
        return "–".into();
    };
    let n = |o| rows.iter().filter(|r| r.outcome == o).count();
    let (p, f, s) = (n(Outcome::Passed), n(Outcome::Failed), n(Outcome::Skipped));
    if f > 0 {
        format!("❌ {f} failed")
    } else if s > 0 && p == 0 {
        format!("⏭ skipped ({s})")
    } else if s > 0 {
        format!("✅ {p} passed, ⏭ {s} skipped")
    } else {
        format!("✅ {p} passed")
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
        assert!(md.contains("1 passed, 1 failed, 1 skipped"), "{md}");
        assert!(md.contains("| a | qemu/nixos |"), "{md}");
        assert!(md.contains("❌ 1 failed"), "{md}");
        assert!(md.contains("⏭ skipped (1)"), "{md}");
        assert!(
            md.contains("ran as root") && md.contains("no NixOS image"),
            "{md}"
        );
        assert!(md.contains("42 s"), "{md}");
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
        assert_eq!(Summary::load(d.path()).unwrap(), s);
    }
}

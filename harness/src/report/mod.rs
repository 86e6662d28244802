//! Verdict tables and machine-readable reports (gate table, JSON timings).
//!
//! A [`Report`] is a list of rows: variant × check → passed / failed /
//! skipped-with-reason, with timings and the evidence [`Tier`] that
//! produced the verdict (`static`, `contract`, `twin`, `nixos`, `ec2`).
//! The submodules hold what every report shares: [`tier`] (the one place a
//! tier is derived), [`reasons`] (skip reasons keyed once, with the action
//! to take), [`matrix`] (the variant × check table in text and Markdown),
//! [`html`] (`harness report --html`), [`summary`] (the e2e run's
//! `summary.json` rows), [`gate`] (the release gate's static half, whose
//! rows open the gate table) and [`timeline`] (where a scenario's time
//! went).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

pub mod cost;
pub mod gate;
pub mod html;
pub mod matrix;
pub mod reasons;
pub mod summary;
pub mod tier;
pub mod timeline;

pub use tier::Tier;

/// Outcome of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed(String),
    Skipped(String),
    /// Passed, with something to act on soon (e.g. the NixOS release's end
    /// of life is near): counts as a pass, and the warning is printed.
    Warned(String),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed(_) => "FAILED",
            Status::Skipped(_) => "skipped",
            Status::Warned(_) => "passed with a warning",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Status::Passed => "",
            Status::Failed(r) | Status::Skipped(r) | Status::Warned(r) => r,
        }
    }
}

/// What a check ran against: the evidence tier (see [`tier`]).  The old
/// name stays so code that pushes `Target::Static` rows keeps compiling.
pub type Target = Tier;

/// One line of the gate table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Variant name, or `*` for repository-wide checks.
    pub variant: String,
    pub check: String,
    #[serde(flatten)]
    pub status: Status,
    pub tier: Tier,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// All rows of one gate run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn push(
        &mut self,
        variant: &str,
        check: &str,
        status: Status,
        tier: Tier,
        elapsed: Duration,
    ) {
        self.rows.push(Row {
            variant: variant.to_string(),
            check: check.to_string(),
            status,
            tier,
            elapsed,
        });
    }

    pub fn failed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.status, Status::Failed(_)))
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.status, Status::Skipped(_)))
            .count()
    }

    /// 0 only when nothing failed and (unless `allow_skips`) nothing was skipped.
    pub fn exit_code(&self, allow_skips: bool) -> i32 {
        if self.failed() > 0 || (!allow_skips && self.skipped() > 0) {
            1
        } else {
            0
        }
    }

    /// The rows as a variant × check [`matrix::Matrix`].
    pub fn matrix(&self) -> matrix::Matrix {
        matrix::Matrix::new(
            self.rows
                .iter()
                .map(|r| matrix::Item {
                    variant: r.variant.clone(),
                    arch: None,
                    check: r.check.clone(),
                    scenario: None,
                    tier: r.tier,
                    verdict: match r.status {
                        Status::Passed | Status::Warned(_) => tier::Verdict::Passed,
                        Status::Failed(_) => tier::Verdict::Failed,
                        Status::Skipped(_) => tier::Verdict::Skipped,
                    },
                    message: match &r.status {
                        Status::Passed | Status::Warned(_) => None,
                        Status::Failed(m) | Status::Skipped(m) => Some(m.clone()),
                    },
                    warning: match &r.status {
                        Status::Warned(m) => Some(m.clone()),
                        _ => None,
                    },
                    seconds: r.elapsed.as_secs_f64(),
                    time_to_agent_s: None,
                    time_to_ready_s: None,
                    artifacts: None,
                })
                .collect(),
        )
    }

    /// The human table: tier × check lines by variant column, each distinct
    /// skip reason once with what to do, one line per failure, and the
    /// passes counted per tier on the last line.
    pub fn table(&self) -> String {
        self.matrix().text()
    }

    /// Full failure reasons (multi-line), for after the table.
    pub fn details(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            if let Status::Failed(reason) = &r.status {
                let _ = writeln!(
                    s,
                    "--- FAILED {} / {} ({}):\n{}",
                    r.variant,
                    r.check,
                    r.tier,
                    reason.trim_end()
                );
            }
        }
        s
    }
}

/// A file or folder name for evidence (a scenario's artifacts, a build's
/// log): lower-case ASCII letters and digits, every other run of
/// characters one `-`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words_joined_by_one_dash() {
        assert_eq!(
            slug("The agent runs as \"dev\" (aws-nixos-graviton)"),
            "the-agent-runs-as-dev-aws-nixos-graviton"
        );
        assert_eq!(slug("--a__B--"), "a-b");
    }

    #[test]
    fn exit_code_and_table() {
        let mut r = Report::default();
        r.push(
            "*",
            "lint",
            Status::Passed,
            Target::Static,
            Duration::from_millis(1500),
        );
        assert_eq!(r.exit_code(false), 0);
        r.push(
            "a",
            "boot",
            Status::Skipped("no KVM".into()),
            Target::Nixos,
            Duration::ZERO,
        );
        assert_eq!(r.exit_code(false), 1);
        assert_eq!(r.exit_code(true), 0);
        r.push(
            "a",
            "render",
            Status::Failed("boom\nmore".into()),
            Target::Static,
            Duration::ZERO,
        );
        assert_eq!(r.exit_code(true), 1);
        let t = r.table();
        assert!(
            t.contains("nixos   boot    skip[1]") && t.contains("static  render  FAIL"),
            "{t}"
        );
        assert!(t.contains("[1] no KVM (1 row)"), "{t}");
        assert!(t.contains("FAILED a / render (static): boom"), "{t}");
        assert_eq!(
            t.lines().last(),
            Some("static 1 passed, 1 FAILED · contract, twin 0 · nixos 0 (1 skipped) · ec2 0"),
            "{t}"
        );
        assert!(r.details().contains("more"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["rows"][1]["status"], "skipped");
        assert_eq!(j["rows"][1]["reason"], "no KVM");
        assert_eq!(j["rows"][1]["tier"], "nixos");
    }
}

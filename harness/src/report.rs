//! Verdict tables and machine-readable reports (gate table, JSON timings).
//!
//! A [`Report`] is a list of rows: variant × check → passed / failed /
//! skipped-with-reason, with timings and what the check ran against
//! (static analysis, the NixOS image, the fixture guest, a double).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Outcome of one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed(String),
    Skipped(String),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed(_) => "FAILED",
            Status::Skipped(_) => "skipped",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Status::Passed => "",
            Status::Failed(r) | Status::Skipped(r) => r,
        }
    }
}

/// What a check ran against — so a double's pass is never read as the real thing's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Static: files and real Terraform/shellcheck/nix-instantiate, no guest.
    Static,
    /// A real NixOS guest (QEMU or EC2).
    Nixos,
    /// The Debian fixture guest (proves machinery, not the template).
    Fixture,
    /// A named test double.
    Double(String),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::Static => "static".into(),
            Target::Nixos => "NixOS".into(),
            Target::Fixture => "fixture".into(),
            Target::Double(d) => format!("double: {d}"),
        }
    }
}

/// One line of the gate table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Variant name, or `*` for repository-wide checks.
    pub variant: String,
    pub check: String,
    #[serde(flatten)]
    pub status: Status,
    pub target: Target,
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
        target: Target,
        elapsed: Duration,
    ) {
        self.rows.push(Row {
            variant: variant.to_string(),
            check: check.to_string(),
            status,
            target,
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

    /// The human table plus a one-line summary.
    pub fn table(&self) -> String {
        let head = ["variant", "check", "result", "against", "time", "reason"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.variant.clone(),
                    r.check.clone(),
                    r.status.word().to_string(),
                    r.target.label(),
                    format!("{:.1}s", r.elapsed.as_secs_f64()),
                    r.status.reason().lines().next().unwrap_or("").to_string(),
                ]
            })
            .collect();
        let mut w = head.map(str::len);
        for c in &cells {
            for i in 0..5 {
                w[i] = w[i].max(c[i].chars().count());
            }
        }
        let mut s = String::new();
        let line = |s: &mut String, c: &[String; 6]| {
            let _ = writeln!(
                s,
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {:>w4$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            );
        };
        line(&mut s, &head.map(str::to_string));
        for c in &cells {
            line(&mut s, c);
        }
        let _ = writeln!(
            s,
            "{} passed, {} failed, {} skipped",
            self.rows.len() - self.failed() - self.skipped(),
            self.failed(),
            self.skipped()
        );
        s
    }

    /// Full failure reasons (multi-line), for after the table.
    pub fn details(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            if let Status::Failed(reason) = &r.status {
                let _ = writeln!(s, "--- {} / {}:\n{}", r.variant, r.check, reason.trim_end());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            t.contains("no KVM") && t.contains("FAILED") && t.contains("NixOS"),
            "{t}"
        );
        assert!(t.contains("1 passed, 1 failed, 1 skipped"), "{t}");
        assert!(r.details().contains("more"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["rows"][1]["status"], "skipped");
        assert_eq!(j["rows"][1]["reason"], "no KVM");
    }
}

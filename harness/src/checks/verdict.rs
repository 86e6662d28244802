//! A check's verdict and its evidence.

use std::fmt;
use std::path::PathBuf;

use crate::machine::probe::ExecOutput;

/// One thing that was looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// How it was seen, e.g. `probe: cat /proc/self/mountinfo` or `ssh alice@…`.
    pub how: String,
    pub output: String,
}

impl From<&ExecOutput> for Evidence {
    fn from(o: &ExecOutput) -> Self {
        let mut output = o.stdout.trim_end().to_string();
        if !o.stderr.trim().is_empty() {
            output.push_str(&format!("\n[stderr] {}", o.stderr.trim_end()));
        }
        Evidence {
            how: format!("probe (exit {}): {}", o.status, o.command),
            output,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub check: &'static str,
    pub passed: bool,
    pub expected: String,
    pub seen: String,
    pub evidence: Vec<Evidence>,
    /// Where the logs are (serial console, IMDS log, …).
    pub logs: Option<PathBuf>,
}

impl Verdict {
    pub fn new(check: &'static str, expected: impl Into<String>) -> Verdict {
        Verdict {
            check,
            passed: false,
            expected: expected.into(),
            seen: String::new(),
            evidence: Vec::new(),
            logs: None,
        }
    }

    pub fn pass(mut self, seen: impl Into<String>) -> Verdict {
        self.passed = true;
        self.seen = seen.into();
        self
    }

    pub fn fail(mut self, seen: impl Into<String>) -> Verdict {
        self.passed = false;
        self.seen = seen.into();
        self
    }

    pub fn with(mut self, e: impl Into<Evidence>) -> Verdict {
        self.evidence.push(e.into());
        self
    }

    pub fn logs(mut self, p: Option<PathBuf>) -> Verdict {
        self.logs = p;
        self
    }

    /// `Ok` when passed, else the full explanation as an error.
    pub fn into_result(self) -> anyhow::Result<Verdict> {
        if self.passed {
            Ok(self)
        } else {
            Err(anyhow::anyhow!("{self}"))
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}",
            self.check,
            if self.passed { "PASSED" } else { "FAILED" }
        )?;
        writeln!(f, "  expected: {}", self.expected)?;
        writeln!(f, "  seen:     {}", self.seen)?;
        for e in &self.evidence {
            writeln!(f, "  how:      {}", e.how)?;
            for l in e.output.lines().take(15) {
                writeln!(f, "            | {l}")?;
            }
        }
        if let Some(p) = &self.logs {
            writeln!(f, "  logs:     {}", p.display())?;
        }
        Ok(())
    }
}

//! `harness lint`: values vs `templates/variables.tf`, AMI coverage, the NixOS release's support calendar, provider pins, the home disk's declaration, the provisioner's IAM policy, agent user rules, Coder resources, attributes read from the AWS provider's resources, user-data size, fmt, nix parse, shellcheck.
//!
//! Each check lives in its own file and returns [`Finding`]s; any finding
//! is an error.  A missing tool is a finding naming the tool and its
//! install hint, never a silent skip.

pub mod agent_user;
pub mod amazon_init;
pub mod ami;
pub mod checkov;
pub mod coder_resources;
pub mod fmt;
pub mod home_disk;
pub mod iam_policy;
pub mod instance_type;
pub mod nix;
pub mod provider_pins;
pub mod provider_reads;
pub mod release;
pub mod shellcheck;
pub mod user_data;
pub mod values;
pub mod variables;

use std::collections::BTreeMap;
use std::fmt as stdfmt;
use std::path::{Path, PathBuf};

use crate::template::render::{self, Rendered};
use crate::template::variant::Variant;

/// One lint error: where (file, key) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The check that produced it (`values`, `ami`, `shellcheck`, …).
    pub check: &'static str,
    pub file: PathBuf,
    /// The key, variant or line inside `file`, if any.
    pub key: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn new(
        check: &'static str,
        file: impl Into<PathBuf>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            file: file.into(),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}

impl stdfmt::Display for Finding {
    fn fmt(&self, f: &mut stdfmt::Formatter<'_>) -> stdfmt::Result {
        write!(f, "[{}] {}", self.check, self.file.display())?;
        if let Some(k) = &self.key {
            write!(f, ":{k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of one named check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: &'static str,
    pub findings: Vec<Finding>,
    pub elapsed: std::time::Duration,
    /// Time spent per variant, for checks that run once per variant.
    pub per_variant: BTreeMap<String, std::time::Duration>,
}

/// Variants that loaded, plus findings for values files that did not.
pub fn load_variants(root: &Path) -> (Vec<Variant>, Vec<Finding>) {
    let dir = root.join("values");
    let files = match crate::template::values::files(&dir) {
        Ok(f) => f,
        Err(e) => {
            return (
                vec![],
                vec![Finding::new("values", &dir, None, e.to_string())],
            )
        }
    };
    let mut ok = vec![];
    let mut bad = vec![];
    for f in files {
        match crate::template::values::load(&f) {
            Ok(v) => ok.push(v),
            Err(e) => bad.push(values::finding_from_error(&f, e)),
        }
    }
    (ok, bad)
}

/// Render every variant's bootstrap outputs (findings for failures).
pub async fn render_variants(
    root: &Path,
    variants: &[Variant],
) -> (BTreeMap<String, Rendered>, Vec<Finding>) {
    let (out, bad, _) = render_variants_timed(root, variants).await;
    (out, bad)
}

/// [`render_variants`], plus the time each variant took.
pub async fn render_variants_timed(
    root: &Path,
    variants: &[Variant],
) -> (
    BTreeMap<String, Rendered>,
    Vec<Finding>,
    BTreeMap<String, std::time::Duration>,
) {
    let mut out = BTreeMap::new();
    let mut bad = vec![];
    let mut times = BTreeMap::new();
    for v in variants {
        let t = std::time::Instant::now();
        match render::render_all(root, v, &BTreeMap::new()).await {
            Ok(r) => {
                out.insert(v.name.clone(), r);
            }
            Err(e) => bad.push(Finding::new(
                "render",
                render::bootstrap_dir(root),
                Some(&v.name),
                format!("{e:#}"),
            )),
        }
        times.insert(v.name.clone(), t.elapsed());
    }
    (out, bad, times)
}

/// Run every lint check on the repository at `root`.
pub async fn run_all(root: &Path) -> Vec<CheckResult> {
    let mut results = vec![];
    let t = std::time::Instant::now();
    let (variants, mut load_findings) = load_variants(root);
    load_findings.extend(values::check(root));
    // `values::check` re-reports load failures; keep one of each.
    load_findings.dedup_by(|a, b| a == b);
    let mut seen = std::collections::BTreeSet::new();
    load_findings.retain(|f| seen.insert(f.to_string()));
    results.push(CheckResult {
        name: "values",
        findings: load_findings,
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });

    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "instance-type",
        findings: instance_type::check(root, &variants),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "ami-coverage",
        findings: ami::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });

    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: home_disk::CHECK,
        findings: home_disk::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: iam_policy::CHECK,
        findings: iam_policy::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: provider_pins::CHECK,
        findings: provider_pins::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "agent-user",
        findings: agent_user::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "coder-resources",
        findings: {
            let mut f = coder_resources::check(root);
            f.extend(coder_resources::defaults_check(root, &variants));
            f
        },
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });

    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: provider_reads::CHECK,
        findings: provider_reads::check(root),
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    let (rendered, render_findings, render_times) = render_variants_timed(root, &variants).await;
    results.push(CheckResult {
        name: "render",
        findings: render_findings,
        elapsed: t.elapsed(),
        per_variant: render_times,
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "user-data-size",
        findings: user_data::check(root, &variants, &rendered).await,
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "terraform-fmt",
        findings: fmt::check(root).await,
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "nix-parse",
        findings: nix::check(root).await,
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    let t = std::time::Instant::now();
    results.push(CheckResult {
        name: "shellcheck",
        findings: shellcheck::check(root, &rendered).await,
        elapsed: t.elapsed(),
        per_variant: BTreeMap::new(),
    });
    results
}

/// A finding for a missing external tool.
pub fn missing_tool(check: &'static str, e: crate::tools::MissingTool) -> Finding {
    Finding::new(check, PathBuf::from(&e.tool), None, e.to_string())
}

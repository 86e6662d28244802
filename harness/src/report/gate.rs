//! The release gate: lint, render, terraform test, e2e matrix, optional EC2 tier; one table of variant × check.
//!
//! This file runs the static half; later tiers append rows to the same
//! [`Report`] (variant × check, with what each ran against).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::lint::{self, Finding};
use crate::report::{Report, Status, Tier};
use crate::template::terraform::Terraform;

/// Checks that produce one row per variant (findings keyed by variant).
const PER_VARIANT: [&str; 4] = ["instance-type", "render", "user-data-size", "shellcheck"];

fn findings_text(f: &[&Finding]) -> String {
    f.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run lint + render of every variant + `terraform test`, appending rows.
pub async fn run_static(root: &Path, report: &mut Report) {
    eprintln!(
        "gate: lint + render ({}), this renders every variant with real terraform…",
        root.display()
    );
    let (variants, _) = lint::load_variants(root);
    let results = lint::run_all(root).await;
    for r in &results {
        if PER_VARIANT.contains(&r.name) {
            let mut matched = vec![false; r.findings.len()];
            for v in &variants {
                let mine: Vec<&Finding> = r
                    .findings
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        f.file == v.source
                            || f.key.as_deref().is_some_and(|k| {
                                k == v.name || k.starts_with(&format!("{}.", v.name))
                            })
                    })
                    .map(|(i, f)| {
                        matched[i] = true;
                        f
                    })
                    .collect();
                let status = if mine.is_empty() {
                    Status::Passed
                } else {
                    Status::Failed(findings_text(&mine))
                };
                // Per-variant time when measured, else an even share.
                let elapsed = r
                    .per_variant
                    .get(&v.name)
                    .copied()
                    .unwrap_or(r.elapsed / variants.len().max(1) as u32);
                report.push(&v.name, r.name, status, Tier::Static, elapsed);
            }
            let rest: Vec<&Finding> = r
                .findings
                .iter()
                .zip(&matched)
                .filter(|(_, m)| !**m)
                .map(|(f, _)| f)
                .collect();
            if !rest.is_empty() || variants.is_empty() {
                let status = if rest.is_empty() {
                    Status::Skipped("no variant loaded".into())
                } else {
                    Status::Failed(findings_text(&rest))
                };
                report.push("*", r.name, status, Tier::Static, r.elapsed);
            }
        } else {
            let all: Vec<&Finding> = r.findings.iter().collect();
            let status = if all.is_empty() {
                Status::Passed
            } else {
                Status::Failed(findings_text(&all))
            };
            report.push("*", r.name, status, Tier::Static, r.elapsed);
        }
    }
    // The NixOS release against its support calendar, today: a warning
    // from 30 days before its end of life, a failure after it.
    let t = Instant::now();
    let release = lint::release::check_today(root);
    report.push(
        "*",
        lint::release::CHECK,
        release.status(),
        Tier::Static,
        t.elapsed(),
    );
    eprintln!("gate: terraform test…");
    for (dir, why_not) in test_modules(root) {
        let name = format!(
            "terraform-test {}",
            dir.strip_prefix(root).unwrap_or(&dir).display()
        );
        let t = Instant::now();
        let status = match why_not {
            Some(reason) => Status::Skipped(reason),
            None => match terraform_test(root, &dir).await {
                Ok(()) => Status::Passed,
                Err(e) => Status::Failed(format!("{e:#}")),
            },
        };
        report.push("*", &name, status, Tier::Static, t.elapsed());
    }
    run_coder_import_and_checkov(root, report).await;
}

/// The template as Coder imports and builds it (real coder provider, one
/// `coder-import` and one `coder-import-aws` row per variant), and checkov.
pub async fn run_coder_import_and_checkov(root: &Path, report: &mut Report) {
    crate::template::coder_import::run(root, report).await;
    eprintln!("gate: checkov…");
    let t = Instant::now();
    let status = crate::lint::checkov::check(root).await;
    report.push(
        "*",
        crate::lint::checkov::CHECK,
        status,
        Tier::Static,
        t.elapsed(),
    );
}

async fn terraform_test(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut tf = Terraform::new()?;
    if needs_providers(dir).is_some() {
        // Only hashicorp/aws gets here (see test_modules): from its mirror.
        let mirror =
            crate::machine::ec2::terraform_tests::aws_mirror().map_err(anyhow::Error::msg)?;
        let cfg = crate::machine::ec2::terraform_tests::write_cli_config(tf.tmp_dir(), &mirror)?;
        tf.set_env("TF_CLI_CONFIG_FILE", cfg);
    }
    tf.test(&root.join("templates"), dir).await?;
    Ok(())
}

/// Module dirs with `.tftest.hcl` files, each with `Some(reason)` when it
/// cannot run offline (it needs providers).
pub fn test_modules(root: &Path) -> Vec<(PathBuf, Option<String>)> {
    let mut dirs = vec![root.join("templates")];
    if let Ok(rd) = std::fs::read_dir(root.join("templates/modules")) {
        let mut m: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        m.sort();
        dirs.extend(m);
    }
    dirs.into_iter()
        .filter(|d| has_tests(d))
        .map(|d| {
            let why = needs_providers(&d).and_then(|p| {
                if p == "aws" {
                    // A mocked aws provider needs only the provider binary.
                    return crate::machine::ec2::terraform_tests::aws_mirror().err();
                }
                Some(format!("needs provider(s) {p}, which cannot be installed offline; its logic is tested through the provider-free modules"))
            });
            (d, why)
        })
        .collect()
}

fn has_tests(d: &Path) -> bool {
    let any = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tftest.hcl"))
            })
            .unwrap_or(false)
    };
    any(d) || any(&d.join("tests"))
}

/// Provider names a module's `required_providers` or resources need, if any.
fn needs_providers(d: &Path) -> Option<String> {
    let mut names = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(d).ok()?.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "tf") {
            continue;
        }
        let Ok(body) = std::fs::read_to_string(&p)
            .map_err(|_| ())
            .and_then(|s| hcl::parse(&s).map_err(|_| ()))
        else {
            continue;
        };
        let body: hcl::Body = body;
        for b in body.blocks() {
            match b.identifier() {
                "terraform" => {
                    for rp in b
                        .body()
                        .blocks()
                        .filter(|x| x.identifier() == "required_providers")
                    {
                        names.extend(rp.body().attributes().map(|a| a.key().to_string()));
                    }
                }
                "resource" | "data" => {
                    if let Some(t) = b.labels().first() {
                        let prov = t.as_str().split('_').next().unwrap_or("").to_string();
                        if prov != "terraform" {
                            names.insert(prov);
                        }
                    }
                }
                "provider" => {
                    if let Some(t) = b.labels().first() {
                        names.insert(t.as_str().to_string());
                    }
                }
                _ => {}
            }
        }
    }
    (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join(", "))
}

/// Run `fut` until it finishes or Ctrl-C arrives; on Ctrl-C the future is
/// dropped (temp dirs removed, `kill_on_drop` children killed) and the exit
/// code is 130.
pub async fn until_ctrl_c(
    fut: impl std::future::Future<Output = anyhow::Result<i32>>,
) -> anyhow::Result<i32> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: cleaning up");
            Ok(130)
        }
    }
}

/// The e2e tier: runs the cucumber scenarios in this process (the same
/// runner `cargo test --features e2e` runs, `crate::e2e`), then turns
/// `target/e2e/summary.json` into one row per variant × check, saying
/// which tier each ran in. `reuse`: read the summary the run that just
/// finished wrote instead (CI runs the identical scenarios right before).
pub async fn run_e2e(root: &Path, report: &mut Report, backend: &str, reuse: bool) {
    let start = std::time::Instant::now();
    let label = format!("e2e ({backend})");
    let out_dir = crate::repo::target_dir(root).join("e2e");
    if reuse {
        eprintln!(
            "gate: {label}: reusing {}",
            out_dir.join(crate::report::summary::FILE).display()
        );
        return add_e2e_rows(report, &label, &out_dir, Ok(()), start);
    }
    let ran = run_e2e_in_process(&out_dir, backend).await;
    add_e2e_rows(report, &label, &out_dir, ran, start);
}

#[cfg(feature = "e2e")]
async fn run_e2e_in_process(out_dir: &Path, backend: &str) -> Result<(), String> {
    eprintln!("gate: e2e ({backend}): the cucumber scenarios (progress below)");
    let _ = std::fs::remove_file(out_dir.join(crate::report::summary::FILE));
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the harness binary: {e}"))?;
    let mut opts = crate::e2e::Options::from_env(exe, vec!["harness gate".into()])
        .map_err(|e| format!("{e:#}"))?;
    opts.backend =
        crate::machine::backend::Backend::parse(Some(backend)).map_err(|e| format!("{e:#}"))?;
    // The gate judges skips itself (--allow-skips / HARNESS_STRICT).
    opts.strict = false;
    match crate::e2e::run(opts).await {
        0 => Ok(()),
        code => Err(format!("the e2e runner exited with {code}")),
    }
}

#[cfg(not(feature = "e2e"))]
async fn run_e2e_in_process(_out_dir: &Path, _backend: &str) -> Result<(), String> {
    Err("this harness was built without the `e2e` feature (the cucumber runner); rebuild with default features".into())
}

/// The tier of rows about the e2e run as a whole (runner missing or
/// crashed): the weakest tier the run on `backend` produces.
pub fn run_tier(backend: &str) -> Tier {
    Tier::derive("contract", backend)
}

fn add_e2e_rows(
    report: &mut Report,
    label: &str,
    out_dir: &Path,
    ran: Result<(), String>,
    start: std::time::Instant,
) {
    let backend = label.trim_start_matches("e2e (").trim_end_matches(')');
    let summary = match crate::report::summary::Summary::load(out_dir) {
        Ok(s) => s,
        Err(e) => {
            report.push(
                "*",
                label,
                Status::Failed(format!("the e2e run produced no summary ({ran:?}): {e}")),
                run_tier(backend),
                start.elapsed(),
            );
            return;
        }
    };
    for r in &summary.rows {
        let status = match r.outcome {
            crate::report::summary::Outcome::Passed => Status::Passed,
            crate::report::summary::Outcome::Failed => Status::Failed(format!(
                "{}: {} (evidence: {})",
                r.scenario,
                r.reason.clone().unwrap_or_default(),
                r.artifacts
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )),
            crate::report::summary::Outcome::Skipped => {
                Status::Skipped(r.reason.clone().unwrap_or_default())
            }
        };
        // The scenario is named in failure messages; the matrix groups by check.
        report.push(
            &r.variant,
            &r.check,
            status,
            r.tier(),
            std::time::Duration::from_secs_f64(r.seconds),
        );
    }
    if let (Err(why), 0) = (&ran, summary.count(crate::report::summary::Outcome::Failed)) {
        report.push(
            "*",
            label,
            Status::Failed(why.clone()),
            run_tier(backend),
            start.elapsed(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The gate's rows on the Debian build machine: the static checks it
    /// runs, the recorded e2e summary (contract passes and one failure, 30
    /// nixos skips, ec2 skips) and the EC2 tier's skip row.
    fn this_machine() -> Report {
        let mut r = Report::default();
        let variants = [
            "aws-nixos",
            "aws-nixos-graviton",
            "aws-nixos-graviton-spot",
            "aws-nixos-spot",
        ];
        for check in [
            "values",
            "ami-coverage",
            "home-disk",
            "iam-policy",
            "provider-pins",
            "terraform-fmt",
            "nix-parse",
        ] {
            r.push("*", check, Status::Passed, Tier::Static, Duration::ZERO);
        }
        r.push(
            "*",
            crate::lint::release::CHECK,
            crate::lint::release::verdict(
                "26.05",
                crate::lint::release::parse_date("2026-12-06").unwrap(),
            )
            .status(),
            Tier::Static,
            Duration::ZERO,
        );
        for check in ["instance-type", "render", "user-data-size", "shellcheck"] {
            for v in variants {
                r.push(v, check, Status::Passed, Tier::Static, Duration::ZERO);
            }
        }
        for v in variants {
            r.push(
                "*",
                &format!("coder-import {v}"),
                Status::Passed,
                Tier::Static,
                Duration::ZERO,
            );
        }
        for m in [
            "templates",
            "templates/modules/bootstrap",
            "templates/modules/market",
        ] {
            r.push(
                "*",
                &format!("terraform-test {m}"),
                Status::Passed,
                Tier::Static,
                Duration::ZERO,
            );
        }
        r.push(
            "*",
            "terraform-test templates/modules/ec2-instance",
            Status::Skipped("needs provider(s) aws, which cannot be installed offline; its logic is tested through the provider-free modules".into()),
            Tier::Static,
            Duration::ZERO,
        );
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report");
        add_e2e_rows(&mut r, "e2e (qemu)", &fixture, Ok(()), Instant::now());
        r.push(
            "*",
            "e2e (ec2)",
            Status::Skipped("no AWS credentials: expected the standard chain to yield credentials, seen: no credentials found in chain. Attempted:   Environment: not set   Profile: not enabled; export AWS_PROFILE=<profile>".into()),
            run_tier("ec2"),
            Duration::ZERO,
        );
        r
    }

    #[test]
    fn the_gate_output_for_this_machine_fits_one_screen() {
        let r = this_machine();
        // One line per row (the old table) could never fit a screen.
        assert!(r.rows.len() > 60, "{} rows", r.rows.len());
        let m = r.matrix();
        let out = format!(
            "{}{}{}{}\n",
            m.table_text(),
            m.reasons.text(),
            m.warnings_text(),
            m.tally().line()
        );
        let lines: Vec<&str> = out.lines().collect();
        // The table and its reasons, plus one warning (4 lines).
        assert!(lines.len() <= 48, "{} lines:\n{out}", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() <= 120), "{out}");
        // Every tier named on every row and in the last line; each reason once.
        for l in &lines[2..lines.len() - 1] {
            if l.starts_with("skipped, why") || l.starts_with("WARNING") {
                break;
            }
            assert!(
                Tier::ALL.iter().any(|t| l.starts_with(t.as_str())),
                "row without a tier: {l}\n{out}"
            );
        }
        assert_eq!(
            lines.last().copied(),
            Some("static 31 passed (1 skipped) · contract 9 passed, 1 FAILED · twin 0 · nixos 0 (30 skipped) · ec2 0 (5 skipped)")
        );
        assert_eq!(
            out.matches("no NixOS image + no Docker daemon").count(),
            1,
            "{out}"
        );
        assert!(!out.contains("Attempted"), "{out}");
        assert!(out.contains("static    coder-import"), "{out}");
        assert!(
            out.contains("WARNING repo / nixos-release (static):\n    NixOS 26.05 reaches its end of life on 2026-12-31, in 25 days"),
            "{out}"
        );
        assert!(out.contains("ec2       e2e (ec2)"), "{out}");
        println!("{out}");
    }
}

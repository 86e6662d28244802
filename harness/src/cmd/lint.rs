//! `harness lint`: every static check; prints each finding as `file:key`.

/// Arguments of `harness lint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::report::gate::until_ctrl_c(run_inner(args)).await
}

async fn run_inner(_args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let results = crate::lint::run_all(&root).await;
    let mut errors = 0;
    for r in &results {
        for f in &r.findings {
            println!("error: {f}");
            errors += 1;
        }
    }
    for r in &results {
        eprintln!(
            "lint {:15} {} ({:.1}s)",
            r.name,
            if r.findings.is_empty() {
                "ok".to_string()
            } else {
                format!("{} error(s)", r.findings.len())
            },
            r.elapsed.as_secs_f64()
        );
    }
    // The NixOS release against its support calendar: a warning is printed,
    // not counted as an error.
    match crate::lint::release::check_today(&root) {
        crate::lint::release::Verdict::Ok(m) => {
            eprintln!("lint {:15} ok: {m}", crate::lint::release::CHECK)
        }
        crate::lint::release::Verdict::Warn(m) => {
            println!("warning: [{}] {m}", crate::lint::release::CHECK)
        }
        crate::lint::release::Verdict::Fail(m) => {
            println!("error: [{}] {m}", crate::lint::release::CHECK);
            errors += 1;
        }
    }
    // Rows that can be skipped (coder provider or checkov unavailable):
    // a skip is an error under HARNESS_STRICT=1, never a pass.
    let strict = std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1");
    let mut rows = crate::report::Report::default();
    crate::report::gate::run_coder_import_and_checkov(&root, &mut rows).await;
    for r in &rows.rows {
        let what = format!("{} {}", r.check, r.variant);
        match &r.status {
            crate::report::Status::Passed => {}
            crate::report::Status::Failed(why) => {
                println!("error: [{what}] {why}");
                errors += 1;
            }
            crate::report::Status::Warned(why) => println!("warning: [{what}] {why}"),
            crate::report::Status::Skipped(why) => {
                println!(
                    "{}: [{what}] skipped: {why}",
                    if strict { "error" } else { "warning" }
                );
                errors += usize::from(strict);
            }
        }
        eprintln!(
            "lint {:15} {} ({:.1}s)",
            what,
            r.status.word(),
            r.elapsed.as_secs_f64()
        );
    }
    if errors > 0 {
        eprintln!("lint: {errors} error(s)");
        Ok(1)
    } else {
        eprintln!("lint: all checks passed");
        Ok(0)
    }
}

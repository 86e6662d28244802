//! `harness lint`: every static check; prints each finding as `file:key`.

/// Arguments of `harness lint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::gate::until_ctrl_c(run_inner(args)).await
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
    if errors > 0 {
        eprintln!("lint: {errors} error(s)");
        Ok(1)
    } else {
        eprintln!("lint: all checks passed");
        Ok(0)
    }
}

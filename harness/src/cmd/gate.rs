//! `harness gate`: the release gate (static half for now); prints one table.

use crate::report::Report;

/// Arguments of `harness gate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit 0 even when some rows were skipped (failures still fail).
    #[arg(long)]
    pub allow_skips: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::gate::until_ctrl_c(run_inner(args)).await
}

async fn run_inner(args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let strict = std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1");
    let allow_skips = args.allow_skips && !strict;
    let mut report = Report::default();
    crate::gate::run_static(&root, &mut report).await;
    print!("{}", report.table());
    let details = report.details();
    if !details.is_empty() {
        println!("\nfailures:\n{details}");
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
    }
    let code = report.exit_code(allow_skips);
    if code != 0 && report.failed() == 0 {
        println!(
            "gate: {} skipped row(s) and no --allow-skips: failing",
            report.skipped()
        );
    }
    Ok(code)
}

//! `harness gate`: the release gate. In order, stopping at the first failure:
//! lint, render, `terraform test`, the e2e matrix on QEMU, optionally EC2
//! (`--ec2`: skipped with the reason when credentials, region or AMI are missing);
//! prints one table of variant × check → passed / failed / skipped-with-reason.

use crate::report::Report;

/// Arguments of `harness gate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit 0 even when some rows were skipped (failures still fail).
    #[arg(long)]
    pub allow_skips: bool,
    /// Only lint, render and terraform test (no VM boots).
    #[arg(long)]
    pub static_only: bool,
    /// Use the results of the e2e run that just finished (target/e2e/summary.json)
    /// instead of running it again; CI runs the identical command right before.
    #[arg(long)]
    pub reuse_e2e: bool,
    /// Also run the EC2 tier (needs AWS credentials).
    #[arg(long)]
    pub ec2: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::report::gate::until_ctrl_c(run_inner(args)).await
}

async fn run_inner(args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let strict = std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1");
    let allow_skips = args.allow_skips && !strict;
    let mut report = Report::default();
    crate::report::gate::run_static(&root, &mut report).await;
    // Stop on the first failure: no VM boots when the static half failed.
    if !args.static_only && report.failed() == 0 {
        crate::report::gate::run_e2e(&root, &mut report, "qemu", args.reuse_e2e).await;
        if args.ec2 && report.failed() == 0 {
            run_ec2(&root, &mut report).await;
        }
    }
    // Table and the distinct skip reasons first (one screen), then the
    // full failure texts, and the passes per tier as the last line.
    let matrix = report.matrix();
    print!("{}", matrix.table_text());
    print!("{}", matrix.reasons.text());
    print!("{}", matrix.warnings_text());
    let details = report.details();
    if !details.is_empty() {
        println!("\nfailures:\n{details}");
    }
    println!("{}", matrix.tally().line());
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

/// The EC2 tier: the same e2e run with `HARNESS_BACKEND=ec2`, or one
/// skipped row saying exactly why it cannot run here (credentials, region,
/// verified AMI), found without creating anything.  Never reuses a summary.
async fn run_ec2(root: &std::path::Path, report: &mut Report) {
    let start = std::time::Instant::now();
    let mut arches: Vec<crate::template::variant::Arch> =
        match crate::template::values::discover_repo(root) {
            Ok(vs) => vs.iter().map(|v| v.arch).collect(),
            Err(_) => crate::template::variant::Arch::ALL.to_vec(),
        };
    arches.sort();
    arches.dedup();
    match crate::machine::backend::ec2_skip_reason(root, &arches).await {
        Some(reason) => report.push(
            "*",
            "e2e (ec2)",
            crate::report::Status::Skipped(reason),
            crate::report::gate::run_tier("ec2"),
            start.elapsed(),
        ),
        None => crate::report::gate::run_e2e(root, report, "ec2", false).await,
    }
}

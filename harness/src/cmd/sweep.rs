//! `harness sweep`: delete EC2 resources tagged `harness:run-id`, and what
//! the template built through Coder for the owner's Coder user
//! (`Coder_Provisioned=true`, `coder_owner`; logic in `ec2::sweep`).
//! Ctrl-C lets the deletion in flight finish, prints what is left, exits 130.

use crate::machine::ec2::config::Ec2Ctx;
use crate::machine::ec2::stop::Stop;
use crate::machine::ec2::sweep::{self, SweepOptions};

/// Arguments of `harness sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only resources whose `harness:created-at` tag (template-built: EC2's launch or create time) is at least this old (`0s`, `30m`, `2h`, `1d`).
    #[arg(long, default_value = "2h", value_parser = sweep::parse_duration)]
    pub older_than: std::time::Duration,
    /// Print what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Region to sweep (default: HARNESS_EC2_REGION, then the AWS chain).
    #[arg(long, conflicts_with = "all_regions")]
    pub region: Option<String>,
    /// Sweep every region enabled for the account.
    #[arg(long)]
    pub all_regions: bool,
    /// Only the resources of this run id (`harness:run-id`; the template's
    /// resources carry none, so this skips them).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Only resources tagged `harness:owner` = this, or built by the template
    /// for this owner's Coder user (`coder_owner`; default: HARNESS_OWNER,
    /// else $USER@hostname, the owner this machine's runs are tagged with).
    #[arg(long, conflicts_with = "all_owners")]
    pub owner: Option<String>,
    /// Every owner's resources (the janitor's sweep; parallel jobs must not use it).
    #[arg(long)]
    pub all_owners: bool,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let stop = Stop::new();
    let watcher = tokio::spawn(stop_on_ctrl_c(stop.clone()));
    let r = run_inner(args, &stop).await;
    watcher.abort();
    r
}

/// First Ctrl-C: finish the deletion in flight, then stop; second: exit now.
async fn stop_on_ctrl_c(stop: Stop) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("sweep: interrupted: finishing the call in flight, then stopping (Ctrl-C again to quit at once)");
    stop.stop();
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("sweep: interrupted twice: exiting now; run `harness sweep` again to delete what is left");
        std::process::exit(130);
    }
}

async fn run_inner(args: Args, stop: &Stop) -> anyhow::Result<i32> {
    let Some(ctx) = stop.race(Ec2Ctx::load(args.region.as_deref())).await else {
        eprintln!("sweep: interrupted before anything was done");
        return Ok(130);
    };
    let ctx = ctx?;
    let opts = SweepOptions {
        older_than: args.older_than,
        dry_run: args.dry_run,
        run_id: args.run_id,
        owner: if args.all_owners {
            None
        } else {
            Some(
                args.owner
                    .unwrap_or_else(crate::machine::ec2::default_owner),
            )
        },
    };
    eprintln!(
        "sweep: owner {}",
        opts.owner
            .as_deref()
            .unwrap_or("(all owners: --all-owners)")
    );
    let regions = if args.all_regions {
        sweep::all_regions(&ctx).await?
    } else {
        vec![ctx.region.clone()]
    };
    let planned = if opts.dry_run { " planned" } else { "" };
    let mut total = 0;
    let mut failed: Vec<String> = Vec::new();
    for (n, r) in regions.iter().enumerate() {
        let mut left = Vec::new();
        if stop.is_stopped() {
            left.extend(regions[n..].iter().map(|r| format!("{r}: not swept")));
        } else {
            tracing::info!(region = %r, older_than = ?opts.older_than, dry_run = opts.dry_run, "sweeping");
            let swept = sweep::sweep_region_until(&ctx.for_region(r), &opts, stop).await?;
            total += swept
                .actions
                .iter()
                .filter(|a| !a.verb.starts_with("skip"))
                .count();
            failed.extend(swept.failed);
            let Some(l) = swept.left else { continue };
            left = l;
            left.extend(regions[n + 1..].iter().map(|r| format!("{r}: not swept")));
        }
        eprintln!("sweep: interrupted after {total} action(s){planned} (listed above); left:");
        for l in failed.iter().chain(&left) {
            eprintln!("  {l}");
        }
        eprintln!("run `harness sweep` again (same options) to finish");
        return Ok(130);
    }
    eprintln!(
        "sweep: {total} action(s){planned} in {}",
        regions.join(", ")
    );
    if !failed.is_empty() {
        eprintln!("sweep: left (AWS refused or did not finish; logged above):");
        for l in &failed {
            eprintln!("  {l}");
        }
        eprintln!("run `harness sweep` again (same options) once the cause is fixed");
        return Ok(1);
    }
    if stop.is_stopped() {
        eprintln!("sweep: interrupted, but the sweep had already finished: nothing left");
        return Ok(130);
    }
    Ok(0)
}

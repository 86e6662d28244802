//! `harness sweep`: delete EC2 resources tagged `harness:run-id` (logic in `ec2::sweep`).

use crate::ec2::config::Ec2Ctx;
use crate::ec2::sweep::{self, SweepOptions};

/// Arguments of `harness sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only resources whose `harness:created-at` tag is at least this old (`0s`, `30m`, `2h`, `1d`).
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
    /// Only the resources of this run id.
    #[arg(long)]
    pub run_id: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let ctx = Ec2Ctx::load(args.region.as_deref()).await?;
    let opts = SweepOptions {
        older_than: args.older_than,
        dry_run: args.dry_run,
        run_id: args.run_id,
    };
    let regions = if args.all_regions {
        sweep::all_regions(&ctx).await?
    } else {
        vec![ctx.region.clone()]
    };
    let mut total = 0;
    for r in &regions {
        tracing::info!(region = %r, older_than = ?opts.older_than, dry_run = opts.dry_run, "sweeping");
        total += sweep::sweep_region(&ctx.for_region(r), &opts)
            .await?
            .iter()
            .filter(|a| !a.verb.starts_with("skip"))
            .count();
    }
    eprintln!(
        "sweep: {total} action(s){} in {}",
        if opts.dry_run { " planned" } else { "" },
        regions.join(", ")
    );
    Ok(0)
}

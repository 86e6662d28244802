//! `harness ec2-launch <variant> [--hold]` (hidden): launch one variant's
//! instance and home volume on EC2 (or moto), print the ids, and with
//! `--hold` sleep until Ctrl-C so tests can SIGKILL it and prove
//! `harness sweep` deletes what it left.  Without `--hold` (or on Ctrl-C)
//! the run's drop guard terminates everything before exiting.

use std::collections::BTreeMap;

use crate::machine::ec2::config::Ec2Ctx;
use crate::machine::ec2::plan::{self, PlanOptions};
use crate::machine::ec2::RunTags;

/// Arguments of `harness ec2-launch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Variant name (a `values/<name>.yml` stem).
    pub variant: String,
    /// Keep the resources until interrupted (Ctrl-C cleans up; SIGKILL leaves them to `sweep`).
    #[arg(long)]
    pub hold: bool,
    /// Region (default: HARNESS_EC2_REGION, then the AWS chain).
    #[arg(long)]
    pub region: Option<String>,
    /// Override the variant's `default_instance_type`.
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Spot max price in USD/hour (spot variants only).
    #[arg(long)]
    pub spot_max_price: Option<String>,
    /// Override a bootstrap module input, as in `harness render`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::template::render::parse_var)]
    pub vars: Vec<(String, String)>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    crate::report::gate::until_ctrl_c(run_inner(args)).await
}

async fn run_inner(args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let variant = crate::template::values::find(&root, &args.variant)?;
    // Everything that can fail without AWS is checked first: nothing is
    // created until the region, credentials, AMI and user-data are known good.
    let ctx = Ec2Ctx::load(args.region.as_deref()).await?;
    let release = crate::template::ami::release(&root)?;
    let ami =
        crate::template::ami::resolve(&ctx.client, &ctx.region, &release, variant.arch).await?;
    let vars: BTreeMap<String, String> = args.vars.into_iter().collect();
    let user_data = crate::template::render::render_user_data(&root, &variant, &vars).await?;
    let tags = RunTags::new("ec2-launch");
    let opts = PlanOptions {
        instance_type: args.instance_type,
        spot_max_price: args.spot_max_price,
    };
    let plan = plan::plan(&variant, &ctx.region, &ami, &user_data, tags, &opts)?;
    let artifacts = crate::repo::target_dir(&root)
        .join("ec2")
        .join(&plan.tags.run_id);
    let mut launched = crate::machine::ec2::launch::launch(&ctx, plan, &artifacts).await?;
    println!(
        "run {} instance {} volume {} az {} key {} group {}",
        launched.guard.run_id(),
        launched.instance_id,
        launched.volume_id,
        launched.az,
        launched.key_name,
        launched.security_group_id
    );
    if let Err(e) = crate::machine::ec2::lifecycle::save_console_output(
        &ctx.client,
        &launched.instance_id,
        &artifacts,
    )
    .await
    {
        tracing::warn!("{e:#}");
    }
    if args.hold {
        eprintln!("holding run {} until Ctrl-C", launched.guard.run_id());
        std::future::pending::<()>().await;
    }
    launched.guard.cleanup().await?;
    Ok(0)
}

//! `harness variants [--json]`: the variants defined by `values/*.yml`.

use crate::template::variant::VariantSummary;
use crate::{repo, template::values};

/// Arguments of `harness variants`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array of `{name, arch, is_spot}` objects (for scripts and CI matrices).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let root = repo::root()?;
    let variants = values::discover_repo(&root)?;
    let summaries: Vec<VariantSummary> = variants.iter().map(VariantSummary::from).collect();
    if args.json {
        println!("{}", serde_json::to_string(&summaries)?);
    } else {
        println!("{:<28} {:<8} market", "name", "arch");
        for v in &variants {
            println!("{:<28} {:<8} {}", v.name, v.arch, v.market());
        }
    }
    Ok(0)
}

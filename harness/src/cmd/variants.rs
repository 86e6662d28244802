//! `harness variants`: the variants defined by `values/*.yml`.

use crate::variant::VariantSummary;

/// Arguments of `harness variants`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array of {name, arch, is_spot} (for scripts and CI).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let root = crate::repo::root()?;
    let all = crate::values::discover_repo(&root)?;
    if args.json {
        let s: Vec<VariantSummary> = all.iter().map(VariantSummary::from).collect();
        println!("{}", serde_json::to_string(&s)?);
    } else {
        let w = all.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
        println!("{:w$}  {:7}  market", "name", "arch");
        for v in &all {
            println!("{:w$}  {:7}  {}", v.name, v.arch.as_str(), v.market());
        }
    }
    Ok(0)
}

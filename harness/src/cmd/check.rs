//! `harness check`.

/// Arguments of `harness check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness check` is not implemented yet")
}

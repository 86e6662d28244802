//! `harness relay`.

/// Arguments of `harness relay`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness relay` is not implemented yet")
}

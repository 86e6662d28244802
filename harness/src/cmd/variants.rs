//! `harness variants`.

/// Arguments of `harness variants`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness variants` is not implemented yet")
}

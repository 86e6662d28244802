//! `harness lint`.

/// Arguments of `harness lint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness lint` is not implemented yet")
}

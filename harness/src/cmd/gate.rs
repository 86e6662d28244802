//! `harness gate`.

/// Arguments of `harness gate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness gate` is not implemented yet")
}

//! `harness bench`.

/// Arguments of `harness bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness bench` is not implemented yet")
}

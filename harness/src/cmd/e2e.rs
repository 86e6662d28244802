//! `harness e2e`.

/// Arguments of `harness e2e`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness e2e` is not implemented yet")
}

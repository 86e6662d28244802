//! `harness render`.

/// Arguments of `harness render`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness render` is not implemented yet")
}

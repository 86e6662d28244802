//! `harness sweep`.

/// Arguments of `harness sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness sweep` is not implemented yet")
}

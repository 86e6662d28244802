//! `harness boot`.

/// Arguments of `harness boot`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness boot` is not implemented yet")
}

//! `harness image`.

/// Arguments of `harness image`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`harness image` is not implemented yet")
}

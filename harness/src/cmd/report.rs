//! `harness report [--markdown] [DIR]`: the e2e summary table (variant ×
//! check, time to agent, skips and failures with reasons).

use std::path::PathBuf;

use crate::repo;
use crate::summary::{Outcome, Summary};

/// Arguments of `harness report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY).
    #[arg(long)]
    pub markdown: bool,
    /// The e2e output directory (default: target/e2e).
    pub dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let dir = match args.dir {
        Some(d) => d,
        None => repo::target_dir(&repo::root()?).join("e2e"),
    };
    let s = Summary::load(&dir)?;
    print!("{}", s.markdown());
    if !args.markdown {
        eprintln!(
            "(markdown table; evidence folders are under {})",
            dir.display()
        );
    }
    Ok(if s.count(Outcome::Failed) > 0 { 1 } else { 0 })
}

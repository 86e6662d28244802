//! `harness report [--markdown | --html] [DIR]`: the last e2e run
//! (`DIR/summary.json`, default `target/e2e`) as a variant × check matrix
//! with the tier of every verdict and each skip reason once: text for the
//! terminal, Markdown for the CI job summary, or the self-contained
//! `DIR/report.html`.

use std::path::PathBuf;

use crate::repo;
use crate::report::summary::{Outcome, Summary};

/// Arguments of `harness report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print GitHub-flavoured Markdown (for $GITHUB_STEP_SUMMARY).
    #[arg(long, conflicts_with = "html")]
    pub markdown: bool,
    /// Write DIR/report.html (one self-contained page: the matrix, each
    /// cell's message and evidence links, skip reasons, timings), print its
    /// path and exit 0 (the other forms exit 1 when a scenario failed).
    #[arg(long)]
    pub html: bool,
    /// The e2e output directory (default: target/e2e).
    pub dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let dir = match args.dir {
        Some(d) => d,
        None => repo::target_dir(&repo::root()?).join("e2e"),
    };
    let s = Summary::load(&dir)?;
    if args.html {
        // A writer, not a verdict: exit 0 once the page is written (the
        // failures are on the page, and the text/Markdown forms exit 1).
        let p = crate::report::html::write(&s, &dir)?;
        println!("{}", p.display());
        return Ok(0);
    } else if args.markdown {
        print!("{}", s.markdown());
    } else {
        print!("{}", s.matrix().text());
        eprintln!(
            "(evidence folders are under {}; harness report --html writes a page with links)",
            dir.join("scenarios").display()
        );
    }
    Ok(if s.count(Outcome::Failed) > 0 { 1 } else { 0 })
}

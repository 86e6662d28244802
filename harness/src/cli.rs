//! The `harness` command line (clap); each subcommand lives in `cmd/`.

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Release harness for the NixOS-on-EC2 Coder templates",
    long_about = "Lints, renders, boots and checks every template variant defined in values/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the variants defined by values/*.yml.
    Variants(cmd::variants::Args),
    /// Validate values, AMI table, user-data size, formatting, Nix and shell.
    Lint(cmd::lint::Args),
    /// Print the user-data real Terraform renders for a variant.
    Render(cmd::render::Args),
    /// Print the IAM policy Coder's provisioner needs for the template.
    Policy(cmd::policy::Args),
    /// The release gate: everything, one table, non-zero on failure or skip.
    Gate(cmd::gate::Args),
    /// Build or locate a guest image.
    Image(cmd::image::Args),
    /// Boot one instance of a variant under QEMU.
    Boot(cmd::boot::Args),
    /// Plan or run the e2e matrix.
    E2e(cmd::e2e::Args),
    /// Print the e2e summary table (variant × check) from target/e2e.
    Report(cmd::report::Args),
    /// Delete EC2 resources tagged by the harness.
    Sweep(cmd::sweep::Args),
    /// Benchmarks (side-by-side ratios).
    Bench(cmd::bench::Args),
    /// Byte relay used by QEMU's guestfwd `cmd:` (internal).
    #[command(hide = true)]
    Relay(cmd::relay::Args),
}

/// Parse argv and run; returns the process exit code.
pub async fn main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Variants(a) => cmd::variants::run(a).await,
        Command::Lint(a) => cmd::lint::run(a).await,
        Command::Render(a) => cmd::render::run(a).await,
        Command::Policy(a) => cmd::policy::run(a).await,
        Command::Gate(a) => cmd::gate::run(a).await,
        Command::Image(a) => cmd::image::run(a).await,
        Command::Boot(a) => cmd::boot::run(a).await,
        Command::E2e(a) => cmd::e2e::run(a).await,
        Command::Report(a) => cmd::report::run(a).await,
        Command::Sweep(a) => cmd::sweep::run(a).await,
        Command::Bench(a) => cmd::bench::run(a).await,
        Command::Relay(a) => cmd::relay::run(a).await,
    }
}

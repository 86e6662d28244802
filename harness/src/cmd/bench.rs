//! `harness bench vm|contract [--arch A] [--runs N]`: side-by-side timings
//! on the contract guest, printed as min/median/max plus ratios. Nothing
//! here is asserted on by tests.

use crate::bench::{self, contract, vm};
use crate::cmd::boot::resolve_image;
use crate::machine::qemu::accel::AccelRequest;
use crate::template::variant::Arch;
use crate::{repo, template::values};

/// Arguments of `harness bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Cold boot -> user-data, stop/start, snapshot restore, per arch.
    Vm {
        /// Only this architecture (default: every arch in values/).
        #[arg(long)]
        arch: Option<Arch>,
        /// Rounds per architecture.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The contract guest with the template's real user-data: cold boot
    /// per scenario vs snapshot restore, with the verdict-equality guard.
    Contract {
        #[arg(long)]
        arch: Option<Arch>,
        /// Comma-separated fixture flakes (default: good,broken).
        #[arg(long, value_delimiter = ',')]
        fixtures: Vec<String>,
    },
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let root = repo::root()?;
    let all = values::discover_repo(&root)?;
    let accel = AccelRequest::from_env()?;
    let out = repo::target_dir(&root).join("bench");
    match args.what {
        What::Vm { arch, runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            for v in bench::variants_for(&all, arch) {
                let image = resolve_image(&root, "contract", v.arch).await?;
                let s = vm::measure(&v, &image, runs, accel, &out.join("vm")).await?;
                vm::print(&v, &s);
            }
            Ok(0)
        }
        What::Contract { arch, fixtures } => {
            let fixtures = if fixtures.is_empty() {
                vec!["good".to_string(), "broken".to_string()]
            } else {
                fixtures
            };
            for f in &fixtures {
                crate::workspace::contract::render::fixture_flake_uri(f)?;
            }
            let mut leaks = Vec::new();
            for v in bench::variants_for(&all, arch) {
                let dir = out.join("contract").join(v.arch.as_str());
                let image = resolve_image(&root, "contract", v.arch).await?;
                let cold = contract::cold_boot(&root, &v, &image, &fixtures, accel, &dir).await?;
                let restore =
                    contract::snapshot_restore(&root, &v, &image, &fixtures, accel, &dir).await?;
                contract::print(&v, &cold, &restore);
                leaks.extend(contract::mismatches(&cold, &restore));
            }
            if leaks.is_empty() {
                println!(
                    "\nverdicts agree between cold boot and snapshot restore for every scenario"
                );
                Ok(0)
            } else {
                eprintln!(
                    "\nexpected identical verdicts from both strategies; these differ (restore leaked state?):\n  {}",
                    leaks.join("\n  ")
                );
                Ok(1)
            }
        }
    }
}

//! `harness bench vm|selftest|contract [--arch A] [--runs N]`: side-by-side
//! timings on the fixture guest (and the contract guest), printed as min/median/max plus ratios. Nothing
//! here is asserted on by tests.

use crate::bench::{self, contract, selftest, vm};
use crate::cmd::boot::resolve_image;
use crate::doubles::fixture_workspace::Defect;
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
    /// The @selftest matrix: boot-per-scenario vs snapshot reuse.
    Selftest {
        #[arg(long)]
        arch: Option<Arch>,
        /// Comma-separated defects (default: all, including `none`).
        #[arg(long, value_delimiter = ',')]
        defects: Vec<String>,
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
                let image = resolve_image(&root, "fixture", v.arch).await?;
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
        What::Selftest { arch, defects } => {
            let defects: Vec<Defect> = if defects.is_empty() {
                Defect::ALL.to_vec()
            } else {
                defects
                    .iter()
                    .map(|d| Defect::from_slug(d))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut leaks = Vec::new();
            for v in bench::variants_for(&all, arch) {
                let dir = out.join("selftest").join(v.arch.as_str());
                let image = resolve_image(&root, "fixture", v.arch).await?;
                let boot = selftest::boot_per_scenario(&v, &image, &defects, accel, &dir).await?;
                let reuse = selftest::snapshot_reuse(&v, &image, &defects, accel, &dir).await?;
                selftest::print(&v, &boot, &reuse);
                leaks.extend(selftest::mismatches(&boot, &reuse));
            }
            if leaks.is_empty() {
                println!("\nverdicts agree between the two strategies for every scenario");
                Ok(0)
            } else {
                eprintln!(
                    "\nexpected identical verdicts from both strategies; these differ (reuse leaked state?):\n  {}",
                    leaks.join("\n  ")
                );
                Ok(1)
            }
        }
    }
}

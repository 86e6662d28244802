//! `harness check <variant> --image fixture [--defect D] [--broken-flake]`:
//! boot one instance, run the four checks, print the verdict table.
//! On the fixture guest the workspace, agent and control plane are named
//! test doubles; a pass proves the checks, not the template.

use std::time::Duration;

use crate::checks::{self, Verdict};
use crate::doubles::agent_logs::AgentLogsDouble;
use crate::doubles::fixture_workspace::{self, Defect};
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::{repo, template::values};

/// Arguments of `harness check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Variant name (a values/*.yml file stem).
    pub variant: String,
    /// Guest image: `fixture` (Debian test double). NixOS runs through the e2e scenarios.
    #[arg(long, default_value = "fixture")]
    pub image: String,
    /// Workspace user.
    #[arg(long, default_value = "alice")]
    pub user: String,
    /// Prepare the fixture workspace with this defect (none, home-on-root-disk, …).
    #[arg(long, default_value = "none")]
    pub defect: String,
    /// Make the fake rebuild fail (start_error), as with a broken flake.
    #[arg(long)]
    pub broken_flake: bool,
}

/// Boot a fixture workspace double and run every check; returns verdicts.
pub async fn run_fixture_checks(
    variant: &crate::template::variant::Variant,
    user: &str,
    defect: Defect,
    broken: bool,
    artifacts: &std::path::Path,
) -> anyhow::Result<Vec<Verdict>> {
    let root = repo::root()?;
    let image = super::boot::resolve_image(&root, "fixture", variant.arch).await?;
    let mut opts = BootOptions::new(artifacts);
    opts.label = format!("{}/{}", variant.name, defect);
    opts.accel = AccelRequest::from_env()?;
    let (mut inst, api) = fixture_workspace::boot(
        variant,
        &image,
        user,
        broken,
        defect,
        opts,
        Duration::from_secs(120),
    )
    .await?;
    let verdicts = checks_on(&inst, &api, user, broken).await?;
    inst.terminate().await?;
    Ok(verdicts)
}

/// The four checks, in a fixed order, against a workspace double that
/// reported `workspace-double: ready`.
pub async fn checks_on(
    inst: &QemuInstance,
    api: &AgentLogsDouble,
    user: &str,
    broken: bool,
) -> anyhow::Result<Vec<Verdict>> {
    let expect_final = if broken { "start_error" } else { "ready" };
    let mut verdicts =
        vec![checks::log_streaming::check(api, expect_final, Duration::from_secs(60)).await?];
    verdicts.push(checks::home_mount::check(inst, user, "ext4").await?);
    verdicts.push(checks::agent_user::check(inst, user, checks::agent_user::AGENT_PATTERN).await?);
    verdicts.push(checks::ssh_fallback::check(inst, api, user).await?);
    Ok(verdicts)
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.image == "fixture",
        "harness check supports --image fixture; NixOS images run through `cargo test --features e2e`"
    );
    let root = repo::root()?;
    let variant = values::find(&root, &args.variant)?;
    let defect = Defect::from_slug(&args.defect)?;
    let artifacts = repo::target_dir(&root).join("check").join(&variant.name);
    let verdicts =
        run_fixture_checks(&variant, &args.user, defect, args.broken_flake, &artifacts).await?;
    println!("{:<16} {:<7} seen", "check", "result");
    for v in &verdicts {
        println!(
            "{:<16} {:<7} {}",
            v.check,
            if v.passed { "PASSED" } else { "FAILED" },
            v.seen
        );
    }
    for v in verdicts.iter().filter(|v| !v.passed) {
        eprintln!("\n{v}");
    }
    eprintln!("(fixture guest with test doubles for the agent and Coder: proves the checks, not the template; logs in {})", artifacts.display());
    Ok(if verdicts.iter().all(|v| v.passed) {
        0
    } else {
        1
    })
}

//! `harness bench contract`: the contract tier's scenarios (fixture flakes
//! `good`, `broken`, …, the template's real user-data, four checks each)
//! run two ways side by side, per architecture:
//! - **cold boot**: a fresh contract guest per scenario;
//! - **snapshot restore**: one guest per architecture, booted once and
//!   saved; each scenario restores it (with the clean-state guard of
//!   [`crate::workspace::contract::pool`]) and re-runs amazon-init.
//!
//! The verdicts of both must agree scenario by scenario (the
//! verdict-equality guard); a mismatch means reuse leaked state. Each
//! scenario's timeline (`crate::report::timeline`) is printed and saved
//! beside its artifacts.

use std::path::Path;
use std::time::{Duration, Instant};

use super::compare;
use crate::checks::{self, Verdict};
use crate::image::BootImage;
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::report::timeline::{Milestone, Source, Timeline};
use crate::template::variant::Variant;
use crate::workspace::contract::pool::Pool;
use crate::workspace::contract::{self, ContractAgent, ContractSpec};

/// One strategy's result for one architecture, per fixture flake; a
/// scenario's time runs from boot or restore to the agent's final state,
/// and `cold` (snapshot restore only) is the one cold boot up to the saved
/// snapshot.
pub type Run = compare::Run<String>;

const COLD: &str = "cold boot";
const RESTORE: &str = "snapshot restore";

const WITHIN: Duration = Duration::from_secs(900);

/// The four checks on a started contract workspace.
pub async fn checks_on(
    inst: &QemuInstance,
    agent: &ContractAgent,
    user: &str,
    fixture: &str,
) -> anyhow::Result<Vec<Verdict>> {
    let expect = if fixture == "good" {
        "ready"
    } else {
        "start_error"
    };
    let api = agent.api.as_ref();
    Ok(vec![
        checks::log_streaming::check(api, expect, Duration::from_secs(60)).await?,
        checks::home_mount::check(inst, user, "ext4").await?,
        checks::agent_user::check(inst, user, checks::agent_user::AGENT_PATTERN).await?,
        checks::ssh_fallback::check(inst, api, user).await?,
    ])
}

fn spec<'a>(root: &'a Path, v: &'a Variant, fixture: &'a str, user: &'a str) -> ContractSpec<'a> {
    ContractSpec {
        variant: v,
        fixture,
        agent_user: user,
        templates_root: root,
        within: WITHIN,
        auth: Default::default(),
    }
}

/// A fresh contract guest for every scenario.
pub async fn cold_boot(
    root: &Path,
    variant: &Variant,
    image: &BootImage,
    fixtures: &[String],
    accel: AccelRequest,
    artifacts: &Path,
) -> anyhow::Result<Run> {
    let user = "coder";
    let mut run = Run::default();
    let all = Instant::now();
    for f in fixtures {
        let t = Instant::now();
        let t0 = std::time::SystemTime::now();
        let dir = artifacts.join(format!("cold-{f}"));
        let mut opts = BootOptions::new(&dir);
        opts.label = format!("bench contract cold {}/{f}", variant.arch);
        opts.accel = accel;
        let (mut inst, mut agent) =
            contract::boot(image, &spec(root, variant, f, user), opts).await?;
        let took = t.elapsed();
        agent.timeline.push(
            t0,
            Source::Harness,
            "scenario start (cold boot)",
            Some(Milestone::Start),
        );
        let v = timed_checks(&inst, &mut agent, user, f).await?;
        inst.terminate().await?;
        show(
            &agent.timeline,
            &dir,
            &format!("{} {f} (cold boot)", variant.arch),
        );
        run.record(f.clone(), took, &v);
    }
    run.total = all.elapsed();
    Ok(run)
}

/// One guest per architecture, restored from its clean snapshot per scenario.
pub async fn snapshot_restore(
    root: &Path,
    variant: &Variant,
    image: &BootImage,
    fixtures: &[String],
    accel: AccelRequest,
    artifacts: &Path,
) -> anyhow::Result<Run> {
    let user = "coder";
    let mut run = Run::default();
    let all = Instant::now();
    let pool = Pool::new(artifacts.join("restore"), accel);
    let mut vm = pool.take(variant, image, "bench contract").await?;
    run.cold = Some(vm.cold);
    for (i, f) in fixtures.iter().enumerate() {
        let t = Instant::now();
        let mut tl = Timeline::new();
        tl.milestone(Milestone::Start, "scenario start (snapshot restore)");
        if i > 0 {
            vm.restore().await?;
        }
        tl.milestone(
            Milestone::GuestReady,
            if i > 0 {
                "guest restored and health-checked".to_string()
            } else {
                format!(
                    "pool guest booted and saved (cold {:.1} s)",
                    vm.cold.as_secs_f64()
                )
            },
        );
        let mut agent = contract::on_snapshot(&mut vm, &spec(root, variant, f, user)).await?;
        let took = t.elapsed();
        let v = timed_checks(&vm.inst, &mut agent, user, f).await?;
        tl.extend(std::mem::take(&mut agent.timeline.events));
        show(
            &tl,
            &artifacts.join(format!("restore-{f}")),
            &format!("{} {f} (snapshot restore)", variant.arch),
        );
        run.record(f.clone(), took, &v);
    }
    vm.inst.terminate().await?;
    run.total = all.elapsed();
    Ok(run)
}

/// [`checks_on`] with the checks on the agent's timeline.
async fn timed_checks(
    inst: &QemuInstance,
    agent: &mut ContractAgent,
    user: &str,
    fixture: &str,
) -> anyhow::Result<Vec<Verdict>> {
    agent
        .timeline
        .milestone(Milestone::ChecksStart, "the four checks");
    let v = checks_on(inst, agent, user, fixture).await?;
    agent
        .timeline
        .milestone(Milestone::ChecksEnd, "the four checks done");
    Ok(v)
}

/// Print a scenario's timeline and save it in `dir`.
fn show(t: &Timeline, dir: &Path, title: &str) {
    println!("{}", t.render(title));
    if let Err(e) = t.save(dir, title) {
        eprintln!(
            "bench contract: could not save the timeline in {}: {e:#}",
            dir.display()
        );
    }
}

/// Scenarios whose verdicts differ between the two strategies.
pub fn mismatches(cold: &Run, restore: &Run) -> Vec<String> {
    compare::mismatches((COLD, cold), (RESTORE, restore), String::clone)
}

/// Print one architecture's comparison.
pub fn print(variant: &Variant, cold: &Run, restore: &Run) {
    let title = format!(
        "{} contract guest ({} scenarios, template's real user-data)   min      median   max     total",
        variant.arch,
        cold.outcomes.len()
    );
    compare::print(&title, 18, (COLD, cold), (RESTORE, restore));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_the_scenario() {
        let a = Run {
            outcomes: vec![("broken".into(), vec![("ssh fallback".into(), false)])],
            ..Run::default()
        };
        let b = Run {
            outcomes: vec![("broken".into(), vec![("ssh fallback".into(), true)])],
            ..Run::default()
        };
        let m = mismatches(&a, &b);
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("broken:"), "{m:?}");
        assert!(mismatches(&a, &a).is_empty());
    }
}

//! `harness bench selftest`: the fixture self-test matrix (every defect,
//! four checks each) run two ways side by side, per architecture:
//! - **boot-per-scenario**: a fresh VM for every scenario;
//! - **snapshot reuse**: one VM per architecture, booted once with no
//!   user-data and saved (`savevm`); each scenario restores that snapshot
//!   (RAM and both disks, so nothing an earlier scenario did survives),
//!   serves its own user-data and re-runs the guest's amazon-init, as a
//!   fresh boot would.
//!
//! The verdicts of both strategies must agree scenario by scenario; a
//! mismatch means reuse leaked state and is reported as an error.

use std::time::{Duration, Instant};

use super::compare;
use crate::cmd::check::checks_on;
use crate::doubles::agent_logs::AgentLogsDouble;
use crate::doubles::fixture_workspace::{self, Defect};
use crate::image::BootImage;
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::template::variant::Variant;

const USER: &str = "alice";
const SNAPSHOT: &str = "selftest-clean";

/// One strategy's result for one architecture, per defect.
pub type Run = compare::Run<Defect>;

const BOOT: &str = "boot-per-scenario";
const REUSE: &str = "snapshot reuse";

/// A fresh VM for every scenario.
pub async fn boot_per_scenario(
    variant: &Variant,
    image: &BootImage,
    defects: &[Defect],
    accel: AccelRequest,
    artifacts: &std::path::Path,
) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let all = Instant::now();
    for &d in defects {
        let t = Instant::now();
        let mut opts = BootOptions::new(&artifacts.join(format!("boot-{}", d.slug())));
        opts.label = format!("bench boot {}/{}", variant.arch, d.slug());
        opts.accel = accel;
        let (mut inst, api) = fixture_workspace::boot(
            variant,
            image,
            USER,
            false,
            d,
            opts,
            Duration::from_secs(180),
        )
        .await?;
        let v = checks_on(&inst, &api, USER, false).await?;
        inst.terminate().await?;
        run.record(d, t.elapsed(), &v);
    }
    run.total = all.elapsed();
    Ok(run)
}

/// One VM, restored from a clean snapshot before every scenario.
pub async fn snapshot_reuse(
    variant: &Variant,
    image: &BootImage,
    defects: &[Defect],
    accel: AccelRequest,
    artifacts: &std::path::Path,
) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let all = Instant::now();
    let mut opts = BootOptions::new(&artifacts.join("reuse"));
    opts.label = format!("bench reuse {}", variant.arch);
    opts.accel = accel;
    let mut inst = QemuInstance::boot(variant, image, opts).await?;
    // No user-data: amazon-init installs the SSH key, starts sshd, finds
    // nothing to run. That is the clean state every scenario starts from.
    inst.console()
        .wait_for_line(
            "no user-data",
            inst.boot_offset(),
            Duration::from_secs(180),
            &variant.name,
        )
        .await?;
    inst.snapshot_save(SNAPSHOT).await?;
    for &d in defects {
        let t = Instant::now();
        let api = AgentLogsDouble::start().await?;
        let from = inst.snapshot_restore(SNAPSHOT).await?;
        inst.imds().set_user_data(
            fixture_workspace::user_data(USER, &api.guest_url(), false, d).into_bytes(),
        );
        inst.probe()
            .exec(
                "setsid /etc/fixture/amazon-init </dev/null >/dev/console 2>&1 &",
                Duration::from_secs(30),
            )
            .await?;
        inst.console()
            .wait_for_line(
                fixture_workspace::READY_LINE,
                from,
                Duration::from_secs(180),
                &variant.name,
            )
            .await?;
        let v = checks_on(&inst, &api, USER, false).await?;
        run.record(d, t.elapsed(), &v);
    }
    inst.terminate().await?;
    run.total = all.elapsed();
    Ok(run)
}

/// Scenarios whose verdicts differ between the two strategies.
pub fn mismatches(boot: &Run, reuse: &Run) -> Vec<String> {
    compare::mismatches((BOOT, boot), (REUSE, reuse), |d| d.slug().to_string())
}

/// Print one architecture's comparison.
pub fn print(variant: &Variant, boot: &Run, reuse: &Run) {
    let title = format!(
        "{} self-test matrix ({} scenarios x 4 checks)       min      median   max     total",
        variant.arch,
        boot.outcomes.len()
    );
    compare::print(&title, 20, (BOOT, boot), (REUSE, reuse));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_the_scenario() {
        let a = Run {
            outcomes: vec![(Defect::SshDown, vec![("ssh fallback".into(), false)])],
            ..Run::default()
        };
        let b = Run {
            outcomes: vec![(Defect::SshDown, vec![("ssh fallback".into(), true)])],
            ..Run::default()
        };
        let m = mismatches(&a, &b);
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("ssh-down:"), "{m:?}");
        assert!(mismatches(&a, &a).is_empty());
    }
}

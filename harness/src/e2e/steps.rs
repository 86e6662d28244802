//! Steps of the fixture self-tests (`features/selftest.feature`,
//! `features/spot.feature`) and of real workspaces (`@nixos`: NixOS image or
//! EC2 instance, real Coder): start, the four checks, stop/start, spot
//! interruption.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cucumber::{given, then, when};

use crate::checks::{self, Verdict};
use crate::doubles::fixture_workspace::{self as workspace_double, Defect};
use crate::machine::instance::Instance as _;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::BootOptions;
use crate::workspace::real::{self as real_workspace, Machine, StartSpec};

use super::contract;
use super::world::*;

// ---------------------------------------------------------------- steps: fixture

#[given(expr = "a fixture workspace for {string} with the {word} flake and defect {string}")]
pub(crate) async fn fixture_workspace(w: &mut E2e, name: String, flake: String, defect: String) {
    w.variant = Some(variant(&name));
    w.broken = match flake.as_str() {
        "good" => false,
        "broken" => true,
        other => panic!("flake must be good or broken, not {other}"),
    };
    w.defect = Some(Defect::from_slug(&defect).expect("defect"));
}

// ---------------------------------------------------------------- steps: real workspace

pub(crate) fn real_workspace_given(w: &mut E2e, name: &str, flake: &str, user: Option<String>) {
    let v = variant(name);
    assert!(
        crate::workspace::contract::render::FIXTURES.contains(&flake),
        "test flake must be one of {:?} (nixos-vm/fixtures), not {flake}",
        crate::workspace::contract::render::FIXTURES
    );
    let user = user
        .or_else(|| v.value_str("default_agent_user").map(str::to_string))
        .unwrap_or_else(|| "coder".into());
    w.broken = flake != "good";
    w.real = Some(RealSpec {
        flake: flake.into(),
        user,
    });
    w.variant = Some(v);
}

#[given(expr = "a workspace from template {string} with the {word} test flake")]
pub(crate) async fn real_workspace(w: &mut E2e, name: String, flake: String) {
    real_workspace_given(w, &name, &flake, None);
}

#[given(
    expr = "a workspace from template {string} with the {word} test flake and agent user {string}"
)]
pub(crate) async fn real_workspace_user(w: &mut E2e, name: String, flake: String, user: String) {
    real_workspace_given(w, &name, &flake, Some(user));
}

#[when("it starts")]
pub(crate) async fn it_starts(w: &mut E2e) {
    if w.contract.is_some() {
        contract::it_starts(w).await
    } else if w.real.is_some() {
        start_real(w).await
    } else {
        start_fixture(w).await
    }
}

pub(crate) async fn start_real(w: &mut E2e) {
    let v = w.variant.clone().expect("variant");
    let spec = w.real.clone().expect("real workspace");
    let artifacts = w.artifacts.clone();
    let scenario = artifacts
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ws = bounded_for(
        &format!("start a real {} workspace ({} flake)", v.name, spec.flake),
        ready_timeout(),
        real_workspace::start(
            resources(),
            StartSpec {
                variant: &v,
                flake: &spec.flake,
                agent_user: &spec.user,
                artifacts: &artifacts,
                scenario: &scenario,
                ready_timeout: ready_timeout(),
            },
        ),
    )
    .await;
    w.time_to_agent = Some(ws.readiness.to_agent);
    w.time_to_ready = (ws.readiness.final_state == "ready").then_some(ws.readiness.to_final);
    w.api = Some(ws.cp.clone());
    w.workspace = Some(ws);
}

pub(crate) async fn start_fixture(w: &mut E2e) {
    let v = w.variant.clone().expect("variant");
    let defect = w.defect.expect("the fixture steps prepare a defect");
    let broken = w.broken;
    let artifacts = w.artifacts.clone();
    let (inst, api, t) = bounded("boot the fixture workspace", async move {
        let image = crate::cmd::boot::resolve_image(&root(), "fixture", v.arch).await?;
        let mut opts = BootOptions::new(&artifacts);
        opts.label = format!("{}/{}", v.name, defect);
        opts.accel = AccelRequest::from_env()?;
        let started = Instant::now();
        let (inst, api) = workspace_double::boot(
            &v,
            &image,
            USER,
            broken,
            defect,
            opts,
            Duration::from_secs(180),
        )
        .await?;
        Ok((inst, api, started.elapsed()))
    })
    .await;
    w.instance = Some(Machine::Qemu(Box::new(inst)));
    w.api = Some(Arc::new(api));
    w.time_to_agent = Some(t);
}

pub(crate) async fn run_check(w: &mut E2e, check: &str) -> Verdict {
    if let Some(v) = w.verdicts.get(check) {
        return v.clone();
    }
    w.timeline.milestone(
        crate::report::timeline::Milestone::ChecksStart,
        format!("check: {check}"),
    );
    let inst = w.inst();
    let api = w.cp();
    let user = w.user();
    let expect_final = if w.broken { "start_error" } else { "ready" };
    let v = bounded(&format!("run the {check} check"), async {
        match check {
            "home mount" => checks::home_mount::check(inst, &user, "ext4").await,
            "agent user" => {
                checks::agent_user::check(inst, &user, checks::agent_user::AGENT_PATTERN).await
            }
            "log streaming" => {
                checks::log_streaming::check(api, expect_final, Duration::from_secs(90)).await
            }
            "ssh fallback" => checks::ssh_fallback::check(inst, api, &user).await,
            other => anyhow::bail!("unknown check `{other}`"),
        }
    })
    .await;
    w.timeline.milestone(
        crate::report::timeline::Milestone::ChecksEnd,
        format!(
            "check: {check} {}",
            if v.passed { "passed" } else { "failed" }
        ),
    );
    w.verdicts.insert(check.to_string(), v.clone());
    v
}

#[then(expr = "the {string} check passes")]
pub(crate) async fn check_passes(w: &mut E2e, check: String) {
    let v = run_check(w, &check).await;
    assert!(
        v.passed,
        "expected the check to PASS on this guest.\n{v}\n{}",
        w.where_logs()
    );
}

#[then(expr = "the {string} check fails")]
pub(crate) async fn check_fails(w: &mut E2e, check: String) {
    let v = run_check(w, &check).await;
    assert!(
        !v.passed,
        "expected the check to FAIL on a guest with defect {:?}, but it passed.\n{v}\n{}",
        w.defect,
        w.where_logs()
    );
    eprintln!("  (failed as it should: {})", v.seen);
}

/// A self-test row: the check fails, and its verdict names the cause (so
/// it failed for the planted defect, not for another reason).
#[then(expr = "the {string} check fails naming {string}")]
pub(crate) async fn check_fails_naming(w: &mut E2e, check: String, cause: String) {
    if let Some(d) = w.contract.as_ref().and_then(|c| c.defect) {
        assert_eq!(
            (d.check(), d.cause()),
            (check.as_str(), cause.as_str()),
            "the feature's row and workspace::contract::defect disagree for {d}"
        );
    }
    let v = run_check(w, &check).await;
    assert!(
        !v.passed && v.seen.contains(&cause),
        "expected the {check} check to FAIL naming {cause:?}; it {}.\n{v}\n{}",
        if v.passed {
            "passed"
        } else {
            "failed for another reason"
        },
        w.where_logs()
    );
    eprintln!("  (failed as it should: {})", v.seen);
}

/// The rebuild failed for the reason the fixture planted (its marker line
/// is in the startup log), not for another one.
#[then(expr = "the startup log names {string}")]
pub(crate) async fn startup_log_names(w: &mut E2e, text: String) {
    let cp = w.cp();
    let r = real_workspace::startup_log::names(cp, &text).await;
    if let Err(e) = r {
        panic!("{e:#}\n{}", w.where_logs());
    }
}

#[when("a file is written to the user's home")]
pub(crate) async fn write_file(w: &mut E2e) {
    let content = format!("harness marker {}", std::process::id());
    let user = w.user();
    let inst = w.inst();
    let path = bounded(
        "write a marker file",
        checks::home_mount::write_marker(inst, &user, &content),
    )
    .await;
    w.marker = Some((path, content));
}

/// Fixture guest: stop (if it runs) and start the VM, then wait for the
/// workspace double to report ready again.
pub(crate) async fn restart_fixture(w: &mut E2e, interrupted: bool) {
    let inst = w.qemu_mut();
    bounded("stop and start the instance", async {
        if inst.console().text().len() > inst.boot_offset()
            && inst
                .probe()
                .exec("true", Duration::from_secs(5))
                .await
                .is_ok()
        {
            inst.stop().await?;
        }
        if interrupted {
            inst.start_after_interruption().await?;
        } else {
            inst.start().await?;
        }
        inst.console()
            .wait_for_line(
                workspace_double::READY_LINE,
                inst.boot_offset(),
                Duration::from_secs(180),
                "restart",
            )
            .await?;
        Ok(())
    })
    .await;
}

/// Record the new agent's timings and control plane after a restart.
pub(crate) fn adopt_restart(w: &mut E2e) {
    let ws = w.workspace.as_ref().expect("real workspace");
    w.api = Some(ws.cp.clone());
    w.time_to_agent = Some(ws.readiness.to_agent);
}

/// Restart the scenario's machine: through Coder `stop`/`start` builds
/// (`via_coder`), or after a spot interruption the only way it really comes
/// back: the harness starts the stopped instance, without a build (on EC2
/// StartInstances after the FIS stop, retried while capacity lacks);
/// fixture VMs restart alike.
pub(crate) async fn restart(w: &mut E2e, via_coder: bool) {
    w.verdicts.clear();
    let Some(ws) = w.workspace.as_mut() else {
        return restart_fixture(w, !via_coder).await;
    };
    let artifacts = w.artifacts.clone();
    let limit = ready_timeout();
    if via_coder {
        bounded_for(
            "stop and start the workspace through the Coder API",
            limit,
            ws.stop_start(limit, &artifacts),
        )
        .await;
    } else {
        bounded_for(
            "start the interrupted instance again",
            limit,
            ws.restart_after_interruption(limit, &artifacts),
        )
        .await;
    }
    adopt_restart(w);
}

#[when("the workspace is stopped and started")]
pub(crate) async fn workspace_stop_start(w: &mut E2e) {
    restart(w, true).await;
}

/// A Coder start build with another `instance_type` (the `ec2` tier; the
/// twin changes every mutable parameter against moto).
#[when("the workspace's instance type is changed, one start build")]
pub(crate) async fn instance_type_changed(w: &mut E2e) {
    w.verdicts.clear();
    let artifacts = w.artifacts.clone();
    let limit = ready_timeout();
    let ws = w
        .workspace
        .as_mut()
        .expect("a real workspace (`Given a workspace from template …` and `When it starts`)");
    let change = bounded_for(
        "change the instance type through the Coder API",
        limit,
        ws.change_instance_type(&root(), limit, &artifacts),
    )
    .await;
    println!("instance type: {change}");
    adopt_restart(w);
}

#[when("the interrupted instance is started again")]
pub(crate) async fn instance_restart(w: &mut E2e) {
    restart(w, false).await;
}

#[then("the file is still in the user's home")]
pub(crate) async fn file_still_there(w: &mut E2e) {
    let (path, content) = w.marker.clone().expect("a file was written first");
    let v = bounded(
        "read the marker",
        checks::home_mount::marker_intact(w.inst(), &path, &content),
    )
    .await;
    assert!(v.passed, "{v}\n{}", w.where_logs());
}

#[when("a spot interruption notice is posted")]
pub(crate) async fn spot_notice(w: &mut E2e) {
    let at = std::time::SystemTime::now() + Duration::from_secs(120);
    w.qemu()
        .imds()
        .trigger_spot_interruption("stop", at)
        .expect("trigger");
}

/// Guest-side IMDSv2 read of spot/instance-action with busybox nc.
const READ_SPOT_NOTICE: &str = r#"tok=$(printf 'PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n' | nc -w 5 169.254.169.254 80 | tail -n 1)
printf 'GET /latest/meta-data/spot/instance-action HTTP/1.0\r\nX-aws-ec2-metadata-token: %s\r\n\r\n' "$tok" | nc -w 5 169.254.169.254 80"#;

/// The same read with curl (NixOS images have curl, not busybox nc).
const READ_SPOT_NOTICE_CURL: &str = r#"tok=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
curl -s -i -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/spot/instance-action"#;

#[then("the guest sees the interruption notice in its metadata")]
pub(crate) async fn guest_sees_notice(w: &mut E2e) {
    let cmd = if w.real.is_some() {
        READ_SPOT_NOTICE_CURL
    } else {
        READ_SPOT_NOTICE
    };
    let out = bounded("read the notice from the guest", async {
        Ok(w.inst().probe().exec(cmd, Duration::from_secs(30)).await?)
    })
    .await;
    assert!(
        out.stdout.contains(" 200 ") && out.stdout.contains("\"action\":\"stop\"") && out.stdout.contains("\"time\""),
        "expected the guest to read a stop notice with a time from spot/instance-action, saw:\n{}\n{}",
        out.stdout,
        w.where_logs()
    );
    // Now the instance stops the way EC2 does it for interruption behavior "stop".
    let inst = w.qemu_mut();
    bounded("stop on interruption", async {
        inst.stop().await?;
        inst.imds().clear_spot_interruption();
        Ok(())
    })
    .await;
}

#[when("the spot instance is interrupted")]
pub(crate) async fn spot_interrupted(w: &mut E2e) {
    let m = w
        .machine_mut()
        .expect("a `When it starts` step must come first");
    // On EC2 the FIS experiment has its own bound (two-minute notice, stop).
    let limit =
        STEP_TIMEOUT.max(crate::machine::ec2::interrupt::TIMING.timeout + Duration::from_secs(120));
    bounded_for(
        "interrupt the spot instance",
        limit,
        m.get_mut().interrupt_spot(),
    )
    .await;
}

//! Steps of real workspaces (`@nixos`: NixOS image or EC2 instance, real
//! Coder) and the ones every tier shares: start, the four checks,
//! stop/start, spot interruption.

use std::time::Duration;

use cucumber::{given, then, when};

use crate::checks::{self, Verdict};
use crate::workspace::real::{self as real_workspace, StartSpec};

use super::contract;
use super::world::*;

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
    } else {
        start_real(w).await
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

/// Record the new agent's timings and control plane after a restart.
pub(crate) fn adopt_restart(w: &mut E2e) {
    let ws = w.workspace.as_ref().expect("real workspace");
    w.api = Some(ws.cp.clone());
    w.time_to_agent = Some(ws.readiness.to_agent);
}

/// Restart the scenario's machine: through Coder `stop`/`start` builds
/// (`via_coder`), or after a spot interruption the only way it really comes
/// back: the harness starts the stopped instance, without a build (on EC2
/// StartInstances after the FIS stop, retried while capacity lacks).
/// (The contract tier restarts through its own steps, `e2e::contract`.)
pub(crate) async fn restart(w: &mut E2e, via_coder: bool) {
    w.verdicts.clear();
    let ws = w
        .workspace
        .as_mut()
        .expect("a real workspace (`Given a workspace from template …` and `When it starts`)");
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

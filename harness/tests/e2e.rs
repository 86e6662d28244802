//! Cucumber runner for `features/` (`cargo test --features e2e`).
//!
//! - Variants come from `values/` only: features are expanded by
//!   `harness::scenarios` into `target/e2e/features/` before parsing.
//! - Scenarios whose prerequisites this machine lacks (a NixOS image, a
//!   Docker daemon for Coder, AWS credentials) are not run; they are
//!   reported as SKIPPED with the reason, in the console, in
//!   `target/e2e/summary.json` and in `target/e2e/junit-skipped.xml`.
//!   `HARNESS_STRICT=1` turns every skip into a failure.
//! - Every step is bounded by a timeout, and the whole run by a global one.
//! - Reports: console progress, `target/e2e/junit.xml`,
//!   `target/e2e/cucumber.json`, `target/e2e/summary.json`, and one folder
//!   per scenario with the serial log and IMDS request log.
//! - Instances are torn down in the after-hook, even on failure;
//!   `HARNESS_KEEP=failed` keeps failed scenarios' VMs until Enter.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cucumber::{event, gherkin, given, then, when, writer, World as _, WriterExt as _};
use futures::FutureExt as _;
use harness::checks::{self, Verdict};
use harness::control::ControlPlane;
use harness::doubles::fixture_workspace::{self as workspace_double, Defect};
use harness::machine::backend::Backend;
use harness::machine::instance::Instance;
use harness::machine::qemu::accel::AccelRequest;
use harness::machine::qemu::{BootOptions, QemuInstance};
use harness::report::summary::{Outcome, Row, Summary};
use harness::template::variant::Variant;
use harness::workspace::real::{
    self as real_workspace, Machine, RealWorkspace, RunResources, StartSpec,
};
use harness::{repo, scenarios, template::values};

#[path = "e2e/contract.rs"]
mod contract;

const STEP_TIMEOUT: Duration = Duration::from_secs(600);
const USER: &str = "alice";

/// `HARNESS_<NAME>` in seconds, or `default`.
fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// Whole run (`HARNESS_GLOBAL_TIMEOUT`, default 75 min).
fn global_timeout() -> Duration {
    secs_from_env("HARNESS_GLOBAL_TIMEOUT", 75 * 60)
}

/// A real workspace's start: image build, Coder setup, boot and the
/// user's rebuild (`HARNESS_READY_TIMEOUT`, default 40 min).
fn ready_timeout() -> Duration {
    secs_from_env("HARNESS_READY_TIMEOUT", 40 * 60)
}

/// Bound a step's future; the cucumber crate has no step timeout.
async fn bounded_for<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:#}"),
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = anyhow::Result<T>>) -> T {
    bounded_for(what, STEP_TIMEOUT, fut).await
}

/// The run's backend and shared resources (set once in `main`).
fn resources() -> &'static RunResources {
    static R: OnceLock<RunResources> = OnceLock::new();
    R.get_or_init(|| {
        let backend = Backend::from_env().expect("HARNESS_BACKEND");
        RunResources::new(&root(), &out_dir(), backend)
    })
}

/// A scenario on the real path: template, flake fixture, agent user.
#[derive(Debug, Clone)]
struct RealSpec {
    flake: String,
    user: String,
}

#[derive(cucumber::World, Default)]
struct E2e {
    variant: Option<Variant>,
    defect: Option<Defect>,
    broken: bool,
    /// Set by the `a workspace from template …` steps.
    real: Option<RealSpec>,
    instance: Option<Machine>,
    workspace: Option<RealWorkspace>,
    api: Option<Arc<dyn ControlPlane>>,
    verdicts: HashMap<String, Verdict>,
    marker: Option<(String, String)>,
    artifacts: PathBuf,
    time_to_agent: Option<Duration>,
    time_to_ready: Option<Duration>,
    /// Set by the `a contract workspace …` steps (`features/template.feature`).
    contract: Option<contract::ContractState>,
}

impl fmt::Debug for E2e {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2e")
            .field("variant", &self.variant.as_ref().map(|v| &v.name))
            .field("defect", &self.defect)
            .field("real", &self.real)
            .field("instance", &self.machine().map(|i| i.id().to_string()))
            .field("artifacts", &self.artifacts)
            .finish()
    }
}

impl E2e {
    /// The scenario's machine: a real workspace's, or the fixture VM.
    fn machine_ref(&self) -> Option<&Machine> {
        self.workspace
            .as_ref()
            .map(|w| &w.machine)
            .or(self.instance.as_ref())
    }
    fn machine_mut(&mut self) -> Option<&mut Machine> {
        match &mut self.workspace {
            Some(w) => Some(&mut w.machine),
            None => self.instance.as_mut(),
        }
    }
    fn machine(&self) -> Option<&dyn Instance> {
        self.machine_ref().map(Machine::get)
    }
    fn inst(&self) -> &dyn Instance {
        self.machine()
            .expect("no instance: a `When it starts` step must come first")
    }
    fn qemu(&self) -> &QemuInstance {
        self.machine_ref().and_then(Machine::qemu).expect(
            "this step needs a QEMU instance (a `When it starts` step first, HARNESS_BACKEND=qemu)",
        )
    }
    fn qemu_mut(&mut self) -> &mut QemuInstance {
        self.machine_mut().and_then(Machine::qemu_mut).expect(
            "this step needs a QEMU instance (a `When it starts` step first, HARNESS_BACKEND=qemu)",
        )
    }
    fn cp(&self) -> &dyn ControlPlane {
        self.api
            .as_deref()
            .expect("no control plane: a `When it starts` step must come first")
    }
    /// The workspace user the checks expect.
    fn user(&self) -> String {
        if let Some(c) = &self.contract {
            return c.user.clone();
        }
        self.real
            .as_ref()
            .map(|r| r.user.clone())
            .unwrap_or_else(|| USER.to_string())
    }
    fn where_logs(&self) -> String {
        match self.machine() {
            Some(i) => real_workspace::logs_hint(i, &self.artifacts),
            None => format!("scenario logs: {}", self.artifacts.display()),
        }
    }
}

fn root() -> PathBuf {
    repo::root().expect("repository root")
}

fn out_dir() -> PathBuf {
    repo::target_dir(&root()).join("e2e")
}

fn all_variants() -> &'static Vec<Variant> {
    static V: OnceLock<Vec<Variant>> = OnceLock::new();
    V.get_or_init(|| values::discover_repo(&root()).expect("values/"))
}

fn variant(name: &str) -> Variant {
    all_variants()
        .iter()
        .find(|v| v.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("unknown variant {name}"))
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

// ---------------------------------------------------------------- steps: fixture

#[given(expr = "a fixture workspace for {string} with the {word} flake and defect {string}")]
async fn fixture_workspace(w: &mut E2e, name: String, flake: String, defect: String) {
    w.variant = Some(variant(&name));
    w.broken = match flake.as_str() {
        "good" => false,
        "broken" => true,
        other => panic!("flake must be good or broken, not {other}"),
    };
    w.defect = Some(Defect::from_slug(&defect).expect("defect"));
}

// ---------------------------------------------------------------- steps: real workspace

fn real_workspace_given(w: &mut E2e, name: &str, flake: &str, user: Option<String>) {
    let v = variant(name);
    assert!(
        ["good", "broken", "broken-build"].contains(&flake),
        "test flake must be good, broken or broken-build (nixos-vm/fixtures), not {flake}"
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
async fn real_workspace(w: &mut E2e, name: String, flake: String) {
    real_workspace_given(w, &name, &flake, None);
}

#[given(
    expr = "a workspace from template {string} with the {word} test flake and agent user {string}"
)]
async fn real_workspace_user(w: &mut E2e, name: String, flake: String, user: String) {
    real_workspace_given(w, &name, &flake, Some(user));
}

#[when("it starts")]
async fn it_starts(w: &mut E2e) {
    if w.contract.is_some() {
        contract::it_starts(w).await
    } else if w.real.is_some() {
        start_real(w).await
    } else {
        start_fixture(w).await
    }
}

async fn start_real(w: &mut E2e) {
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

async fn start_fixture(w: &mut E2e) {
    let v = w.variant.clone().expect("variant");
    let defect = w.defect.expect("the fixture steps prepare a defect");
    let broken = w.broken;
    let artifacts = w.artifacts.clone();
    let (inst, api, t) = bounded("boot the fixture workspace", async move {
        let image = harness::cmd::boot::resolve_image(&root(), "fixture", v.arch).await?;
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

async fn run_check(w: &mut E2e, check: &str) -> Verdict {
    if let Some(v) = w.verdicts.get(check) {
        return v.clone();
    }
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
    w.verdicts.insert(check.to_string(), v.clone());
    v
}

#[then(expr = "the {string} check passes")]
async fn check_passes(w: &mut E2e, check: String) {
    let v = run_check(w, &check).await;
    assert!(
        v.passed,
        "expected the check to PASS on this guest.\n{v}\n{}",
        w.where_logs()
    );
}

#[then(expr = "the {string} check fails")]
async fn check_fails(w: &mut E2e, check: String) {
    let v = run_check(w, &check).await;
    assert!(
        !v.passed,
        "expected the check to FAIL on a guest with defect {:?}, but it passed.\n{v}\n{}",
        w.defect,
        w.where_logs()
    );
    eprintln!("  (failed as it should: {})", v.seen);
}

/// The rebuild failed for the reason the fixture planted (its marker line
/// is in the startup log), not for another one.
#[then(expr = "the startup log names {string}")]
async fn startup_log_names(w: &mut E2e, text: String) {
    let cp = w.cp();
    let r = real_workspace::startup_log::names(cp, &text).await;
    if let Err(e) = r {
        panic!("{e:#}\n{}", w.where_logs());
    }
}

#[when("a file is written to the user's home")]
async fn write_file(w: &mut E2e) {
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
async fn restart_fixture(w: &mut E2e, interrupted: bool) {
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
            inst.await_restart_after_interruption().await?;
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
fn adopt_restart(w: &mut E2e) {
    let ws = w.workspace.as_ref().expect("real workspace");
    w.api = Some(ws.cp.clone());
    w.time_to_agent = Some(ws.readiness.to_agent);
}

/// Restart the scenario's machine: through Coder `stop`/`start` builds
/// (`via_coder`), or after a spot interruption the only way it really comes
/// back: EC2 restarts it when capacity returns, without a build (waited for
/// on EC2, modelled on QEMU); fixture VMs restart alike.
async fn restart(w: &mut E2e, via_coder: bool) {
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
            "EC2 restarts the interrupted instance",
            limit,
            ws.restart_after_interruption(limit, &artifacts),
        )
        .await;
    }
    adopt_restart(w);
}

#[when("the workspace is stopped and started")]
async fn workspace_stop_start(w: &mut E2e) {
    restart(w, true).await;
}

#[when("EC2 restarts the interrupted instance when capacity returns")]
async fn instance_restart(w: &mut E2e) {
    restart(w, false).await;
}

#[then("the file is still in the user's home")]
async fn file_still_there(w: &mut E2e) {
    let (path, content) = w.marker.clone().expect("a file was written first");
    let v = bounded(
        "read the marker",
        checks::home_mount::marker_intact(w.inst(), &path, &content),
    )
    .await;
    assert!(v.passed, "{v}\n{}", w.where_logs());
}

#[when("a spot interruption notice is posted")]
async fn spot_notice(w: &mut E2e) {
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
async fn guest_sees_notice(w: &mut E2e) {
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
async fn spot_interrupted(w: &mut E2e) {
    let m = w
        .machine_mut()
        .expect("a `When it starts` step must come first");
    // On EC2 the FIS experiment has its own bound (two-minute notice, stop).
    let limit = STEP_TIMEOUT
        .max(harness::machine::ec2::interrupt::TIMING.timeout + Duration::from_secs(120));
    bounded_for(
        "interrupt the spot instance",
        limit,
        m.get_mut().interrupt_spot(),
    )
    .await;
}

// ---------------------------------------------------------------- skips

/// Why the real-workspace (`@nixos`) scenarios cannot run here, if they
/// cannot; computed once per run by [`preflight`].
static REAL_SKIP: OnceLock<Option<String>> = OnceLock::new();
/// Why the EC2 spot interruption (AWS FIS) cannot run, if it cannot; set by
/// [`preflight`] on the EC2 backend.
static FIS_SKIP: OnceLock<Option<String>> = OnceLock::new();

/// Check once what the real path needs on this backend; every missing
/// prerequisite is named, so one run tells the user all they must set up.
async fn preflight(backend: Backend) -> Option<String> {
    let mut missing = Vec::new();
    if backend == Backend::Qemu {
        let have_images = ["X86_64", "AARCH64"]
            .iter()
            .all(|a| std::env::var_os(format!("HARNESS_IMAGE_{a}")).is_some());
        let nix = harness::tools::find("nix").is_ok();
        let may_build = nix && std::env::var_os("HARNESS_NIXOS_BUILD").is_some();
        if !(have_images || may_build) {
            missing.push(if nix {
                "no NixOS image: nix cannot build here (no binary cache, no network); set HARNESS_IMAGE_<ARCH> or HARNESS_NIXOS_BUILD=1".to_string()
            } else {
                "no NixOS image: nix is not installed, and no HARNESS_IMAGE_<ARCH> was given"
                    .to_string()
            });
        }
    }
    // "Docker is not running" / "image ghcr.io/coder/coder:X is not
    // present and cannot be pulled".
    let docker = tokio::task::spawn_blocking(harness::control::coder::container::docker_available)
        .await
        .unwrap_or_else(|e| Some(format!("docker check panicked: {e}")));
    if let Some(r) = docker {
        missing.push(format!("the real Coder server cannot run here: {r}"));
    }
    if backend == Backend::Ec2 {
        let mut arches: Vec<_> = all_variants().iter().map(|v| v.arch).collect();
        arches.sort();
        arches.dedup();
        if let Some(r) = harness::machine::backend::ec2_skip_reason(&root(), &arches).await {
            missing.push(format!("EC2 tier (HARNESS_BACKEND=ec2): {r}"));
        } else if let Ok(ctx) = harness::machine::backend::shared_ctx().await {
            // A real spot interruption needs AWS FIS (role, region, access).
            let _ = FIS_SKIP.set(harness::machine::ec2::interrupt::preflight(ctx).await);
        }
    }
    (!missing.is_empty()).then(|| missing.join("; ").replace('\n', " "))
}

/// Why scenarios with `tag` cannot run on this machine, if they cannot.
fn skip_reason(tag: &str) -> Option<String> {
    match tag {
        "nixos" => REAL_SKIP.get().cloned().flatten(),
        // A real interruption needs AWS FIS ([`preflight`] asked it); a
        // StopInstances stand-in would prove nothing about it.
        "spot-interruption" if Backend::from_env().ok() == Some(Backend::Ec2) => FIS_SKIP
            .get()
            .cloned()
            .unwrap_or_else(|| {
                Some("AWS FIS was not checked: the EC2 tier's preflight did not run".into())
            })
            .map(|r| format!("EC2 tier: {r}")),
        _ => None,
    }
}

fn scenario_tags(feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> Vec<String> {
    let mut t: Vec<String> = feature.tags.clone();
    t.extend(scenario.tags.iter().cloned());
    for ex in &scenario.examples {
        t.extend(ex.tags.iter().cloned());
    }
    t
}

fn tag_value(tags: &[String], prefix: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(prefix).map(str::to_string))
}

/// The report column of a scenario, from its name. The trailing
/// `(<variant>)` is dropped first: a variant name such as `aws-nixos-spot`
/// must not make every scenario of that variant look like a spot scenario.
fn check_of(scenario: &str) -> String {
    let name = match scenario.rfind(" (") {
        Some(i) if scenario.ends_with(')') => &scenario[..i],
        _ => scenario,
    }
    .to_lowercase();
    let table: [(&[&str], &str); 7] = [
        (&["four checks"], "all four checks"),
        (&["home mount", "/home is the home disk"], "home mount"),
        (&["agent user", "agent runs as"], "agent user"),
        (&["log streaming", "logs stream"], "log streaming"),
        (&["ssh fallback", "ssh shell"], "ssh fallback"),
        (&["spot"], "spot interruption"),
        (&["stop and start"], "stop/start"),
    ];
    for (needles, check) in table {
        if needles.iter().any(|n| name.contains(n)) {
            return check.to_string();
        }
    }
    "other".into()
}

fn row(
    feature: &gherkin::Feature,
    scenario: &gherkin::Scenario,
    outcome: Outcome,
    reason: Option<String>,
    secs: f64,
) -> Row {
    let tags = scenario_tags(feature, scenario);
    let variant = tag_value(&tags, "variant-").unwrap_or_else(|| "-".into());
    let arch = if tags.iter().any(|t| t == "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let real = tags.iter().any(|t| t == "nixos");
    let backend = if real {
        resources().backend()
    } else {
        Backend::Qemu
    };
    let contract = tags.iter().any(|t| t == "contract");
    let image = match (real, backend) {
        // The template's real user-data on the contract guest (a double of
        // the NixOS AMI): its own tier, never counted as NixOS.
        (false, _) if contract => "contract",
        (true, Backend::Qemu) => "nixos",
        (true, Backend::Ec2) => "nixos AMI",
        (false, _) => "fixture (double)",
    };
    Row {
        variant,
        arch: arch.into(),
        backend: backend.as_str().into(),
        image: image.into(),
        tier: None, // derived from image and backend by Summary::save
        check: check_of(&scenario.name),
        scenario: scenario.name.clone(),
        outcome,
        reason,
        seconds: secs,
        time_to_agent_s: None,
        time_to_ready_s: None,
        artifacts: None,
    }
}

fn rows() -> &'static Mutex<Vec<Row>> {
    static R: OnceLock<Mutex<Vec<Row>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn kept() -> &'static Mutex<Vec<Machine>> {
    static K: OnceLock<Mutex<Vec<Machine>>> = OnceLock::new();
    K.get_or_init(Default::default)
}

fn junit_skipped(skips: &[Row]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;")
    };
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"skipped (prerequisites missing)\" tests=\"{n}\" skipped=\"{n}\">\n",
        n = skips.len()
    );
    for r in skips {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\"><skipped message=\"{}\"/></testcase>\n",
            esc(&r.variant),
            esc(&r.scenario),
            esc(r.reason.as_deref().unwrap_or(""))
        ));
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x
}

fn main() {
    let out = out_dir();
    std::fs::create_dir_all(&out).expect("target/e2e");
    // The guestfwd relay runs the harness binary, not this test binary.
    if std::env::var_os("HARNESS_EXE").is_none() {
        std::env::set_var("HARNESS_EXE", env!("CARGO_BIN_EXE_harness"));
    }
    let strict = std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1");
    let only: Option<Vec<String>> = std::env::var("HARNESS_VARIANTS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let features = scenarios::expand_dir(
        &root().join("features"),
        &out.join("features"),
        all_variants(),
    )
    .expect("expand features");

    let backend = match Backend::from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("e2e: {e:#}");
            std::process::exit(2);
        }
    };

    // Global timeout: tear everything down and fail.
    std::thread::spawn(|| {
        let limit = global_timeout();
        std::thread::sleep(limit);
        eprintln!("e2e: global timeout of {limit:?} reached (HARNESS_GLOBAL_TIMEOUT); stopping every VM and container");
        harness::machine::qemu::process::cleanup_all();
        // Keep what ran: the report still shows every scenario that finished.
        let done = rows().lock().map(|r| r.clone()).unwrap_or_default();
        match (Summary { rows: done }).save(&out_dir()) {
            Ok(p) => eprintln!(
                "e2e: wrote {} (scenarios finished before the timeout)",
                p.display()
            ),
            Err(e) => eprintln!("e2e: could not write summary.json: {e:#}"),
        }
        std::process::exit(124);
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(async move {
        harness::machine::qemu::process::install_signal_cleanup();
        let real_skip = preflight(backend).await;
        println!(
            "e2e: backend {backend}; real workspaces (@nixos): {}",
            real_skip.as_deref().map(|r| format!("skipped: {} (the reasons and what to do follow the run)", harness::report::reasons::short(r))).unwrap_or_else(|| "will run".into())
        );
        REAL_SKIP.set(real_skip).expect("preflight once");
        if backend == Backend::Ec2 {
            println!("e2e: HARNESS_BACKEND=ec2 runs the @nixos scenarios only; the fixture self-tests run on the qemu backend");
        }
        let junit = std::fs::File::create(out.join("junit.xml")).expect("junit.xml");
        let json = std::fs::File::create(out.join("cucumber.json")).expect("cucumber.json");
        let skipped_rows: &'static Mutex<Vec<Row>> = Box::leak(Box::default());
        let keep_failed = std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "failed");
        let started: &'static Mutex<HashMap<String, Instant>> = Box::leak(Box::default());

        // cucumber ignores `filter_run`'s closure when `--tags`/`--name` is
        // given, which would bypass the skip rules below (a scenario this
        // machine cannot run would fail instead of being reported skipped).
        // Take both filters out of the CLI and apply them in the closure.
        let mut cli = cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::parsed();
        let tags_filter = cli.tags_filter.take();
        let name_filter = cli.re_filter.take();
        let writer = E2e::cucumber()
            .max_concurrent_scenarios(2)
            .before(move |_f, _r, sc, w| {
                async move {
                    w.artifacts = out_dir().join("scenarios").join(slug(&sc.name));
                    let _ = std::fs::remove_dir_all(&w.artifacts);
                    std::fs::create_dir_all(&w.artifacts).ok();
                    started.lock().unwrap().insert(sc.name.clone(), Instant::now());
                }
                .boxed_local()
            })
            .after(move |f, _r, sc, ev, w| {
                async move {
                    let secs = started.lock().unwrap().get(&sc.name).map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
                    let (outcome, reason) = match ev {
                        event::ScenarioFinished::StepPassed => (Outcome::Passed, None),
                        event::ScenarioFinished::StepSkipped => (Outcome::Skipped, Some("a step has no definition".into())),
                        event::ScenarioFinished::StepFailed(_, _, e) => {
                            (Outcome::Failed, Some(e.to_string().lines().next().unwrap_or("").to_string()))
                        }
                        event::ScenarioFinished::BeforeHookFailed(_) => (Outcome::Failed, Some("before hook failed".into())),
                    };
                    let mut r = row(f, sc, outcome, reason, secs);
                    if let Some(w) = w {
                        r.time_to_agent_s = w.time_to_agent.map(|d| d.as_secs_f64());
                        r.time_to_ready_s = w.time_to_ready.map(|d| d.as_secs_f64());
                        r.artifacts = Some(w.artifacts.clone());
                        if let Some(cp) = w.api.as_deref() {
                            // The rebuild log (agent logs as the control plane received them).
                            let _ = real_workspace::save_agent_logs(cp, &w.artifacts.join("agent-logs.txt")).await;
                        }
                        // A pooled contract VM goes back to its pool instead.
                        contract::after(w, outcome == Outcome::Failed, keep_failed).await;
                        let machine = w.workspace.take().map(|ws| ws.machine).or_else(|| w.instance.take());
                        if let Some(mut inst) = machine {
                            if outcome == Outcome::Failed && keep_failed {
                                kept().lock().unwrap().push(inst);
                            } else {
                                let _ = inst.get_mut().terminate().await;
                            }
                        }
                    }
                    rows().lock().unwrap().push(r);
                }
                .boxed_local()
            })
            .with_writer(
                writer::Basic::stdout()
                    .summarized()
                    .tee::<E2e, _>(writer::JUnit::for_tee(junit, 0))
                    .tee::<E2e, _>(writer::Json::for_tee(json))
                    .normalized(),
            )
            // After with_writer: changing the writer drops an earlier CLI.
            .with_cli(cli)
            .filter_run(features, move |feature, _rule, scenario| {
                let tags = scenario_tags(feature, scenario);
                if name_filter.as_ref().is_some_and(|re| !re.is_match(&scenario.name)) {
                    return false;
                }
                if tags_filter.as_ref().is_some_and(|op| {
                    use cucumber::tag::Ext as _;
                    !op.eval(tags.iter())
                }) {
                    return false;
                }
                if backend == Backend::Ec2 && !tags.iter().any(|t| t == "nixos") {
                    return false;
                }
                if let Some(only) = &only {
                    // Expanded outlines carry @variant-<name> on each Examples block.
                    let names: Vec<String> = tags.iter().filter_map(|t| t.strip_prefix("variant-").map(str::to_string)).collect();
                    if !names.is_empty() && !names.iter().any(|n| only.contains(n)) {
                        return false;
                    }
                }
                if tags.iter().any(|t| t == "contract") {
                    let arch = if tags.iter().any(|t| t == "aarch64") {
                        harness::template::variant::Arch::Aarch64
                    } else {
                        harness::template::variant::Arch::X86_64
                    };
                    if let Some(reason) = contract::skip_reason(arch) {
                        skipped_rows.lock().unwrap().push(row(feature, scenario, Outcome::Skipped, Some(reason), 0.0));
                        return false;
                    }
                }
                for t in &tags {
                    if let Some(reason) = skip_reason(t) {
                        skipped_rows.lock().unwrap().push(row(feature, scenario, Outcome::Skipped, Some(reason), 0.0));
                        return false;
                    }
                }
                true
            })
            .await;

        // Outline scenarios are reported once per Examples row by cucumber;
        // the filter sees each outline once per Examples block.
        let skips = std::mem::take(&mut *skipped_rows.lock().unwrap());
        let mut all = std::mem::take(&mut *rows().lock().unwrap());
        all.extend(skips.iter().cloned());
        let summary = Summary { rows: all };
        let path = summary.save(&out_dir()).expect("summary.json");
        std::fs::write(out_dir().join("junit-skipped.xml"), junit_skipped(&skips)).ok();

        use cucumber::writer::Stats as _;
        let failed = writer.execution_has_failed();
        println!();
        println!(
            "e2e summary: {} passed, {} failed, {} skipped (summary: {})",
            summary.count(Outcome::Passed),
            summary.count(Outcome::Failed) + usize::from(failed && summary.count(Outcome::Failed) == 0),
            summary.count(Outcome::Skipped),
            path.display()
        );
        // Each distinct reason once, shortened, with what to do about it.
        let mut keyed = harness::report::reasons::Reasons::default();
        for r in skips.iter().filter_map(|s| s.reason.as_deref()) {
            keyed.key(r);
        }
        for e in keyed.entries() {
            println!("  SKIPPED [{}] {} ({} scenario row(s))", e.key, e.title, e.rows);
            if let Some(a) = &e.action {
                println!("      → {a}");
            }
        }
        println!("by tier: {}", summary.matrix().tally().line());
        let kept_vms = std::mem::take(&mut *kept().lock().unwrap());
        if !kept_vms.is_empty() {
            println!("HARNESS_KEEP=failed: {} failed VM(s) kept running:", kept_vms.len());
            for k in &kept_vms {
                if let Some(t) = k.get().ssh() {
                    println!(
                        "  {}: ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@{}",
                        k.get().id(),
                        t.identity.display(),
                        t.port,
                        t.host
                    );
                }
            }
            println!("press Enter to stop them");
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        }
        for mut k in kept_vms {
            let _ = k.get_mut().terminate().await;
        }
        contract::shutdown().await;
        resources().shutdown().await;
        if failed || summary.count(Outcome::Failed) > 0 {
            1
        } else if strict && !skips.is_empty() {
            println!("HARNESS_STRICT=1: skips count as failures");
            1
        } else {
            0
        }
    });
    drop(rt);
    std::process::exit(code);
}

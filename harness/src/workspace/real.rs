//! One real workspace for an e2e scenario: a Coder workspace of the
//! variant's template test build, and the machine its build asked for,
//! booted with the user-data that build rendered: the NixOS test image in
//! QEMU (`HARNESS_BACKEND=qemu`) or the NixOS AMI on EC2 (`ec2`).
//!
//! [`RunResources`] holds what scenarios share in one run (the Coder
//! deployment, one NixOS image per arch) and tears it down at the end.
//! [`wait_ready`] waits for the agent with the rebuild log's tail as
//! progress, and measures time-to-agent and time-to-ready.

pub mod coder_ec2;
pub mod offline;
pub mod startup_log;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::control::coder::container::AccessUrl;
use crate::control::coder::stack::CoderStack;
use crate::control::coder::workspace::CoderWorkspace;
use crate::control::coder::CoderControlPlane;
use crate::control::ControlPlane;
use crate::image::BootImage;
use crate::machine::backend::Backend;
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::argv::GuestNet;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::template::variant::{Arch, Variant};

/// Where the fixture flakes live inside the NixOS test image
/// (`nixos-vm/guest-fixtures.nix`); the same path on both arches.
pub const GUEST_FIXTURES: &str = "/var/lib/harness/fixtures";

/// Root disk of a NixOS test VM: the image is sized to its contents
/// (`virtualisation.diskSize = "auto"`), the overlay is grown to this and
/// the guest grows its root filesystem on boot, as on an EC2 root volume.
pub const NIXOS_ROOT_DISK_GIB: u32 = 16;

/// The network of a NixOS test VM: offline except for the Coder server the
/// agent must reach (`base` is the harness's client URL,
/// `http://127.0.0.1:<port>`; the guest reaches the same port at the
/// access URL `http://169.0.0.2:<port>`).
pub fn nixos_guest_net(coder_base: &str) -> anyhow::Result<GuestNet> {
    let url = reqwest::Url::parse(coder_base)
        .with_context(|| format!("the Coder client URL {coder_base:?} is not a URL"))?;
    let port = url
        .port_or_known_default()
        .with_context(|| format!("the Coder client URL {coder_base:?} has no port"))?;
    Ok(GuestNet::Offline {
        host_ports: vec![port],
    })
}

/// Agent URL for EC2 instances (default: Coder's built-in tunnel).
pub const ENV_EC2_ACCESS_URL: &str = "HARNESS_EC2_CODER_ACCESS_URL";

/// Lifecycle states after which the agent's startup is over.
pub const FINAL_STATES: [&str; 4] = ["ready", "start_error", "start_timeout", "shutdown_error"];

/// The `flake_uri` of a test flake as the guest sees it.
pub fn flake_uri(flake: &str) -> String {
    format!("path:{GUEST_FIXTURES}#{flake}")
}

/// A booted workspace machine on either backend.
pub enum Machine {
    Qemu(Box<QemuInstance>),
    /// Built by Coder with the real template (the `ec2` tier).
    CoderEc2(Box<coder_ec2::CoderEc2Machine>),
}

impl Machine {
    pub fn get(&self) -> &dyn Instance {
        match self {
            Machine::Qemu(q) => q.as_ref(),
            Machine::CoderEc2(e) => e.as_ref(),
        }
    }

    pub fn get_mut(&mut self) -> &mut dyn Instance {
        match self {
            Machine::Qemu(q) => q.as_mut(),
            Machine::CoderEc2(e) => e.as_mut(),
        }
    }

    pub fn qemu(&self) -> Option<&QemuInstance> {
        match self {
            Machine::Qemu(q) => Some(q),
            Machine::CoderEc2(_) => None,
        }
    }

    pub fn qemu_mut(&mut self) -> Option<&mut QemuInstance> {
        match self {
            Machine::Qemu(q) => Some(q),
            Machine::CoderEc2(_) => None,
        }
    }

    /// Serve new user-data from the next boot on (a new build's agent token).
    pub async fn set_user_data(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Machine::Qemu(q) => {
                q.imds().set_user_data(data.to_vec());
                Ok(())
            }
            Machine::CoderEc2(m) => anyhow::bail!(
                "instance {}: the real template's builds set its user-data, not the harness ({} bytes offered)",
                m.id,
                data.len()
            ),
        }
    }
}

/// Per-run shared resources: the Coder deployment and the NixOS images.
/// A failure to set either up is remembered, so every scenario reports it
/// without retrying (one Coder start, one `nix build` per arch).
pub struct RunResources {
    repo_root: PathBuf,
    out_dir: PathBuf,
    backend: Backend,
    stack: tokio::sync::Mutex<Option<Result<Arc<CoderStack>, String>>>,
    images: tokio::sync::Mutex<HashMap<Arch, Result<BootImage, String>>>,
}

impl RunResources {
    pub fn new(repo_root: &Path, out_dir: &Path, backend: Backend) -> RunResources {
        RunResources {
            repo_root: repo_root.into(),
            out_dir: out_dir.into(),
            backend,
            stack: Default::default(),
            images: Default::default(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL agents use: the slirp host address for QEMU guests; for
    /// EC2, [`ENV_EC2_ACCESS_URL`] or else Coder's built-in tunnel.
    pub fn access_url(backend: Backend) -> AccessUrl {
        match backend {
            Backend::Qemu => AccessUrl::QemuGuest,
            Backend::Ec2 => match std::env::var(ENV_EC2_ACCESS_URL) {
                Ok(u) if !u.is_empty() => AccessUrl::Given(u),
                _ => AccessUrl::Tunnel,
            },
        }
    }

    /// The run's Coder deployment, started on first use.
    pub async fn stack(&self) -> anyhow::Result<Arc<CoderStack>> {
        let mut g = self.stack.lock().await;
        if g.is_none() {
            let access = Self::access_url(self.backend);
            let r = match self.backend {
                Backend::Qemu => CoderStack::start(&self.out_dir, &access).await,
                Backend::Ec2 => Self::start_ec2(&self.out_dir, &access).await,
            }
            .map(Arc::new)
            .map_err(|e| format!("{e:#}"));
            *g = Some(r);
        }
        g.as_ref().unwrap().clone().map_err(|e| {
            anyhow::anyhow!("the run's Coder server is not available (set up once per run): {e}")
        })
    }

    /// The `ec2` tier's Coder: its provisioner builds with the run's region
    /// and credentials (the same chain and region the harness observes and
    /// sweeps with).
    async fn start_ec2(out: &Path, access: &AccessUrl) -> anyhow::Result<CoderStack> {
        let ctx = crate::machine::backend::shared_ctx().await?;
        let provider = ctx.sdk.credentials_provider().ok_or_else(|| {
            anyhow::anyhow!("AWS credentials: expected the run's chain, seen no provider")
        })?;
        let aws = crate::control::coder::aws_handoff::AwsHandOff::new(&ctx.region)?
            .with_provider(provider);
        CoderStack::start_ec2(out, access, aws, &ctx.region).await
    }

    /// The NixOS test image for `arch`, built (or taken from
    /// `HARNESS_IMAGE_<ARCH>`) on first use.
    pub async fn image(&self, arch: Arch) -> anyhow::Result<BootImage> {
        let mut g = self.images.lock().await;
        if let std::collections::hash_map::Entry::Vacant(slot) = g.entry(arch) {
            let root = self.repo_root.clone();
            let r = tokio::task::spawn_blocking(move || crate::image::nixos::image(&root, arch))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
                .map_err(|e| format!("{e:#}"));
            slot.insert(r);
        }
        g[&arch]
            .clone()
            .map_err(|e| anyhow::anyhow!("the NixOS image for {arch} is not available: {e}"))
    }

    /// Remove the Coder containers (also done by the Ctrl-C handler).
    pub async fn shutdown(&self) {
        let stack = self.stack.lock().await.take();
        drop(stack);
        let _ =
            tokio::task::spawn_blocking(crate::control::coder::container::remove_own_containers)
                .await;
    }
}

/// When the agent connected and when its startup ended, from boot.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub to_agent: Duration,
    pub to_final: Duration,
    pub final_state: String,
}

/// Poll `cp` until the agent connected and reached a final lifecycle
/// state, printing progress with the newest rebuild log line.  Errors
/// after `timeout` say what was seen and where the logs are.
pub async fn wait_ready(
    cp: &dyn ControlPlane,
    started: Instant,
    timeout: Duration,
    label: &str,
    logs_hint: &str,
) -> anyhow::Result<Readiness> {
    let mut to_agent = None;
    let mut last_print = Instant::now() - Duration::from_secs(60);
    let mut state = String::from("(no agent yet)");
    let mut last_error = String::new();
    loop {
        match cp.agent_connected().await {
            Ok(true) if to_agent.is_none() => {
                let t = started.elapsed();
                eprintln!("[{label}] agent connected after {:.0}s", t.as_secs_f64());
                to_agent = Some(t);
            }
            Ok(_) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        let lines = cp.logs().await.unwrap_or_default();
        if let Ok(lc) = cp.lifecycle().await {
            if let Some(l) = lc.last() {
                state = l.state.clone();
            }
            if let (Some(a), Some(f)) = (
                to_agent,
                lc.iter().find(|r| FINAL_STATES.contains(&r.state.as_str())),
            ) {
                let t = started.elapsed();
                eprintln!(
                    "[{label}] agent startup ended: {} after {:.0}s ({} log lines)",
                    f.state,
                    t.as_secs_f64(),
                    lines.len()
                );
                return Ok(Readiness {
                    to_agent: a,
                    to_final: t,
                    final_state: f.state.clone(),
                });
            }
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            eprintln!(
                "[{label}] {:.0}s: agent {}, lifecycle {state}, {} log line(s){}",
                started.elapsed().as_secs_f64(),
                if to_agent.is_some() {
                    "connected"
                } else {
                    "not connected"
                },
                lines.len(),
                lines
                    .last()
                    .map(|l| format!(", last: {}", l.output.chars().take(160).collect::<String>()))
                    .unwrap_or_default()
            );
        }
        if started.elapsed() > timeout {
            let tail: Vec<String> = lines
                .iter()
                .rev()
                .take(15)
                .rev()
                .map(|l| format!("  [{}] {}", l.source, l.output))
                .collect();
            anyhow::bail!(
                "{label}: expected the agent connected and its startup ended (ready or start_error) within {timeout:?}; \
                 seen agent {}, lifecycle {state}{}; last rebuild log lines:\n{}\n{logs_hint}",
                if to_agent.is_some() { "connected" } else { "never connected" },
                if last_error.is_empty() { String::new() } else { format!(", last API error: {last_error}") },
                if tail.is_empty() { "  (none arrived)".into() } else { tail.join("\n") },
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Write every agent log line the control plane has to `path` (the
/// scenario's rebuild log).
pub async fn save_agent_logs(cp: &dyn ControlPlane, path: &Path) -> anyhow::Result<()> {
    let logs = cp.logs().await?;
    let text: String = logs
        .iter()
        .map(|l| format!("[{}] [{}] {}\n", l.source, l.level, l.output))
        .collect();
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A scenario's running real workspace.
pub struct RealWorkspace {
    pub machine: Machine,
    pub workspace: CoderWorkspace,
    pub cp: Arc<CoderControlPlane>,
    pub readiness: Readiness,
}

/// Knobs of [`start`].
pub struct StartSpec<'a> {
    pub variant: &'a Variant,
    /// `good`, `broken` or `broken-build` (a fixture of `nixos-vm/`).
    pub flake: &'a str,
    pub agent_user: &'a str,
    pub artifacts: &'a Path,
    pub scenario: &'a str,
    pub ready_timeout: Duration,
}

/// Create the Coder workspace, boot its machine with the build's
/// user-data, and wait until the agent's startup ended.
pub async fn start(res: &RunResources, spec: StartSpec<'_>) -> anyhow::Result<RealWorkspace> {
    let v = spec.variant;
    let stack = res.stack().await?;
    let image = match res.backend() {
        Backend::Qemu => Some(res.image(v.arch).await?),
        Backend::Ec2 => None,
    };
    let ec2_base = std::env::var(super::fixture_flake::ENV_EC2_FIXTURE_FLAKE).ok();
    let flake =
        super::fixture_flake::flake_uri(res.backend(), v.arch, spec.flake, ec2_base.as_deref())?;
    let t0 = Instant::now();
    let workspace = stack
        .create_workspace(&res.repo_root, v, &flake, spec.agent_user)
        .await?;
    let label = format!("{}/{}", v.name, workspace.name);
    let (machine, started) = match image {
        Some(image) => {
            let desired = workspace.desired()?;
            anyhow::ensure!(
                desired.running,
                "workspace {}: expected the first build to ask for a running instance, seen running=false",
                workspace.name
            );
            std::fs::write(spec.artifacts.join("user-data"), &desired.user_data)?;
            let started = Instant::now();
            let mut opts = BootOptions::new(spec.artifacts);
            opts.label = label.clone();
            opts.accel = AccelRequest::from_env()?;
            opts.user_data = desired.user_data.clone();
            // A NixOS switch needs ≥ 2 GiB (see templates/variables.tf), and
            // a NixOS boot under TCG can take minutes.
            opts.memory_mib = 4096;
            opts.home_disk_gib = 4;
            opts.root_disk_gib = Some(NIXOS_ROOT_DISK_GIB);
            opts.net = nixos_guest_net(stack.client().base())?;
            opts.boot_timeout = spec.ready_timeout.min(Duration::from_secs(1200));
            (
                Machine::Qemu(Box::new(QemuInstance::boot(v, &image, opts).await?)),
                started,
            )
        }
        None => {
            // The create build ran the real template: the instance exists
            // (and boots) once it succeeded. Observe it by the template's
            // own tags, the one observation path.
            let tags = coder_ec2::template_tags(stack.owner(), &workspace.name);
            let m = observe_created(
                v,
                &tags,
                spec.artifacts,
                stack.agent_ssh(&workspace.name).await?,
            )
            .await
            .with_context(|| format!("{label}: the instance Coder built"))?;
            (Machine::CoderEc2(Box::new(m)), t0)
        }
    };
    let cp = Arc::new(
        workspace
            .control_plane()
            .with_agent_ssh(stack.agent_ssh(&workspace.name).await?),
    );
    let hint = logs_hint(machine.get(), spec.artifacts);
    // On the NixOS test image, prove alongside the agent's start that the
    // guest needs nothing built or fetched (offline.rs); the first failure
    // of either ends the wait.
    let offline = async {
        if matches!(machine, Machine::Qemu(_)) {
            offline::check(
                machine.get().probe(),
                spec.ready_timeout.min(Duration::from_secs(1200)),
            )
            .await
            .with_context(|| {
                format!("{label}: the NixOS test guest is not self-sufficient offline; {hint}")
            })?;
        }
        anyhow::Ok(())
    };
    let ready = async {
        match wait_ready(cp.as_ref(), started, spec.ready_timeout, &label, &hint).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = save_agent_logs(cp.as_ref(), &spec.artifacts.join("agent-logs.txt")).await;
                Err(e)
            }
        }
    };
    let ((), readiness) = tokio::try_join!(offline, ready)?;
    Ok(RealWorkspace {
        machine,
        workspace,
        cp,
        readiness,
    })
}

/// Observe what the create build made on AWS by the template's tags, check
/// it as the twin checks its own (IMDSv2, tags on everything, the home
/// volume in the instance's zone as /dev/xvdb, encrypted), keep its
/// user-data as EC2 holds it, and make it the scenario's machine.
async fn observe_created(
    v: &Variant,
    tags: &std::collections::BTreeMap<String, String>,
    artifacts: &Path,
    ssh: crate::control::coder::agent_ssh::AgentSsh,
) -> anyhow::Result<coder_ec2::CoderEc2Machine> {
    let ctx = crate::machine::backend::shared_ctx().await?;
    let view = crate::machine::ec2::observe::observe(&ctx.client, tags).await?;
    if let Ok(Some(ud)) = view.instance().map(|i| i.user_data.clone()) {
        std::fs::write(artifacts.join("user-data"), ud)?;
    }
    let want = crate::machine::ec2::observe::Expect {
        owner_tags: tags.clone(),
        spot: v.is_spot,
        ..Default::default()
    };
    let p = view.check_created(&want);
    anyhow::ensure!(
        p.is_empty(),
        "expected the created workspace to pass the observation checks, seen:\n  - {}",
        p.join("\n  - ")
    );
    coder_ec2::CoderEc2Machine::from_view(&view, v.arch, ssh, artifacts)
}

/// "serial console: …, rebuild log: …" for failure messages.
pub fn logs_hint(inst: &dyn Instance, artifacts: &Path) -> String {
    format!(
        "serial console: {}; rebuild log (agent logs): {}; user-data: {}",
        inst.artifacts().serial_log.display(),
        artifacts.join("agent-logs.txt").display(),
        artifacts.join("user-data").display()
    )
}

/// How a stopped machine comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comeback {
    /// The harness starts it (QEMU after a Coder start build).
    Start,
    /// After a spot interruption, without a build.
    AfterInterruption,
    /// A Coder start build started it (the real template on AWS).
    Built,
}

impl RealWorkspace {
    /// Stop and start the workspace through the Coder API, making the
    /// machine follow each build (as the EC2 provider does), then wait for
    /// the agent again.
    pub async fn stop_start(&mut self, timeout: Duration, artifacts: &Path) -> anyhow::Result<()> {
        if let Machine::CoderEc2(m) = &self.machine {
            // The real template: the builds act on AWS; check what they did.
            let (tags, home) = (m.tags.clone(), m.home_volume.clone());
            let ctx = crate::machine::backend::shared_ctx().await?;
            self.workspace.build("stop", vec![]).await?;
            let view = crate::machine::ec2::observe::observe(&ctx.client, &tags).await?;
            let p = view.check_stopped(&home);
            anyhow::ensure!(
                p.is_empty(),
                "after the stop build of {}:\n  - {}",
                self.workspace.name,
                p.join("\n  - ")
            );
            self.workspace.build("start", vec![]).await?;
            let view = crate::machine::ec2::observe::observe(&ctx.client, &tags).await?;
            let p = view.check_started(&home);
            anyhow::ensure!(
                p.is_empty(),
                "after the start build of {}:\n  - {}",
                self.workspace.name,
                p.join("\n  - ")
            );
            return self.come_back(timeout, artifacts, Comeback::Built).await;
        }
        // `transition` fails unless the stop build asked for running=false.
        self.workspace.transition("stop").await?;
        self.machine.get_mut().stop().await?;
        let start = self.workspace.transition("start").await?;
        self.machine.set_user_data(&start.user_data).await?;
        std::fs::write(artifacts.join("user-data"), &start.user_data)?;
        self.restart(timeout, artifacts).await
    }

    /// Change the instance type as a user does: a Coder `start` build with
    /// the `instance_type` parameter set to another type the template
    /// offers (the twin's parameter change, against real AWS). Checked by
    /// observation (the new type, running, the same home volume attached
    /// as /dev/xvdb), then the agent is waited for again. Returns
    /// "old -> new". The `ec2` tier only: a QEMU guest has no type.
    pub async fn change_instance_type(
        &mut self,
        root: &Path,
        timeout: Duration,
        artifacts: &Path,
    ) -> anyhow::Result<String> {
        let Machine::CoderEc2(m) = &mut self.machine else {
            anyhow::bail!(
                "workspace {}: an instance type exists only on the ec2 tier (the twin changes it against moto)",
                self.workspace.name
            );
        };
        let (tags, home) = (m.tags.clone(), m.home_volume.clone());
        let ctx = crate::machine::backend::shared_ctx().await?;
        let view = crate::machine::ec2::observe::observe(&ctx.client, &tags).await?;
        let old = view
            .instance()
            .map_err(anyhow::Error::msg)?
            .instance_type
            .clone();
        let new = crate::workspace::twin::other_instance_type(root, m.arch, &old)?;
        self.workspace
            .build(
                "start",
                vec![crate::control::coder::types::WorkspaceBuildParameter {
                    name: "instance_type".into(),
                    value: new.clone(),
                }],
            )
            .await?;
        let view = crate::machine::ec2::observe::observe(&ctx.client, &tags).await?;
        let mut p = view.check_started(&home);
        if let Ok(i) = view.instance() {
            if i.instance_type != new {
                p.push(format!(
                    "expected instance type {new}, seen {}",
                    i.instance_type
                ));
            }
        }
        anyhow::ensure!(
            p.is_empty(),
            "after the instance type change ({old} -> {new}) of {}:\n  - {}",
            self.workspace.name,
            p.join("\n  - ")
        );
        m.follow(&view)?;
        self.come_back(timeout, artifacts, Comeback::Built).await?;
        Ok(format!("{old} -> {new}"))
    }

    /// The end of a scenario on the `ec2` tier: a Coder `delete` build (the
    /// template destroys instance, volumes and spot request), then nothing
    /// with the template's tags may be left. A no-op for other machines
    /// (their `terminate` removes them).
    pub async fn delete_built(&mut self) -> anyhow::Result<()> {
        let Machine::CoderEc2(m) = &self.machine else {
            return Ok(());
        };
        let tags = m.tags.clone();
        self.workspace.build("delete", vec![]).await?;
        let ctx = crate::machine::backend::shared_ctx().await?;
        let view = crate::machine::ec2::observe::observe(&ctx.client, &tags).await?;
        let p = view.check_gone();
        anyhow::ensure!(
            p.is_empty(),
            "after the delete build of {}, with the template's tags:\n  - {}",
            self.workspace.name,
            p.join("\n  - ")
        );
        Ok(())
    }

    /// Start the (stopped) machine again and wait for a fresh agent.
    pub async fn restart(&mut self, timeout: Duration, artifacts: &Path) -> anyhow::Result<()> {
        self.come_back(timeout, artifacts, Comeback::Start).await
    }

    /// After a spot interruption: the machine is started again without a
    /// Coder build (on EC2 StartInstances after the FIS stop, see
    /// [`crate::machine::instance::Instance::start_after_interruption`]);
    /// then wait for the agent again.
    pub async fn restart_after_interruption(
        &mut self,
        timeout: Duration,
        artifacts: &Path,
    ) -> anyhow::Result<()> {
        self.come_back(timeout, artifacts, Comeback::AfterInterruption)
            .await
    }

    async fn come_back(
        &mut self,
        timeout: Duration,
        artifacts: &Path,
        how: Comeback,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let since = std::time::SystemTime::now();
        match how {
            Comeback::AfterInterruption => {
                self.machine.get_mut().start_after_interruption().await?
            }
            Comeback::Start => self.machine.get_mut().start().await?,
            // A Coder start build already started it.
            Comeback::Built => {}
        }
        // Forget the previous boot: after a Coder start build the agent is a
        // new one; after a bare restart it is the same agent, whose earlier
        // `ready` must not count for this boot.
        self.cp = Arc::new(
            self.workspace
                .control_plane()
                .with_agent_ssh_from(self.cp.as_ref())
                .since(since),
        );
        let hint = logs_hint(self.machine.get(), artifacts);
        self.readiness = wait_ready(
            self.cp.as_ref(),
            started,
            timeout,
            &format!("restart {}", self.workspace.name),
            &hint,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use async_trait::async_trait;

    use super::*;
    use crate::control::{LifecycleReport, ReceivedLog};

    /// A scripted control plane: the agent connects on poll `connect_at`,
    /// and the lifecycle becomes `final_state` on poll `final_at`.
    struct Scripted {
        polls: Mutex<u32>,
        connect_at: u32,
        final_at: u32,
        final_state: &'static str,
    }

    #[async_trait]
    impl ControlPlane for Scripted {
        fn describe(&self) -> String {
            "scripted control plane (unit-test double)".into()
        }
        async fn logs(&self) -> anyhow::Result<Vec<ReceivedLog>> {
            Ok(vec![ReceivedLog {
                output: "building the system configuration...".into(),
                level: "info".into(),
                source: "Startup Script".into(),
                received: SystemTime::now(),
            }])
        }
        async fn lifecycle(&self) -> anyhow::Result<Vec<LifecycleReport>> {
            let n = *self.polls.lock().unwrap();
            let state = if n >= self.final_at {
                self.final_state
            } else {
                "starting"
            };
            Ok(vec![LifecycleReport {
                state: state.into(),
                received: SystemTime::now(),
            }])
        }
        async fn agent_connected(&self) -> anyhow::Result<bool> {
            let mut n = self.polls.lock().unwrap();
            *n += 1;
            Ok(*n >= self.connect_at)
        }
    }

    fn scripted(connect_at: u32, final_at: u32, final_state: &'static str) -> Scripted {
        Scripted {
            polls: Mutex::new(0),
            connect_at,
            final_at,
            final_state,
        }
    }

    #[tokio::test]
    async fn measures_agent_and_ready_times() {
        let cp = scripted(2, 3, "ready");
        let r = wait_ready(
            &cp,
            Instant::now(),
            Duration::from_secs(30),
            "t",
            "logs: here",
        )
        .await
        .unwrap();
        assert_eq!(r.final_state, "ready");
        assert!(r.to_agent <= r.to_final);
        assert!(r.to_agent >= Duration::from_millis(900), "{r:?}");
        let cp = scripted(1, 1, "start_error");
        let r = wait_ready(&cp, Instant::now(), Duration::from_secs(30), "t", "")
            .await
            .unwrap();
        assert_eq!(r.final_state, "start_error");
    }

    #[tokio::test]
    async fn times_out_saying_what_was_seen_and_where_the_logs_are() {
        let cp = scripted(u32::MAX, u32::MAX, "ready");
        let e = wait_ready(
            &cp,
            Instant::now(),
            Duration::from_millis(50),
            "t",
            "serial console: /x/serial.log",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("never connected"), "{e}");
        assert!(e.contains("lifecycle starting"), "{e}");
        assert!(e.contains("building the system configuration"), "{e}");
        assert!(e.contains("/x/serial.log"), "{e}");
    }

    #[test]
    fn nixos_guests_are_offline_but_reach_coder() {
        assert_eq!(
            nixos_guest_net("http://127.0.0.1:7080").unwrap(),
            GuestNet::Offline {
                host_ports: vec![7080]
            }
        );
        assert!(nixos_guest_net("not a url").is_err());
    }

    #[test]
    fn guest_flake_uris() {
        assert_eq!(flake_uri("good"), "path:/var/lib/harness/fixtures#good");
        assert_eq!(
            RunResources::access_url(Backend::Qemu),
            AccessUrl::QemuGuest
        );
    }
}

//! The contract tier: a variant's workspace on the contract guest (a
//! double of the NixOS AMI built by `image::contract`) running exactly the
//! user-data the template renders ([`render`]), with Coder's init script
//! and agent played by the stand-ins in [`crate::doubles`].
//!
//! A workspace is started either on a fresh boot ([`boot`]) or on a
//! running guest restored to its clean snapshot ([`on_snapshot`], see
//! [`pool`]); either way the
//! guest's amazon-init runs the rendered user-data as on a first boot.
//! Waiting for the agent fails with what the guest's journal says
//! ([`diagnose`]), so a defect in the template is named, not timed out.

pub mod defect;
pub mod mutate;
pub mod pool;
pub mod render;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::control::ControlPlane;
use crate::doubles::agent_api::{AgentApiDouble, AgentManifest};
use crate::image::BootImage;
use crate::machine::instance::Instance;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::report::timeline::{self, Anchor, Milestone, Source, Timeline};
use crate::template::variant::Variant;

pub use render::{AgentAuth, ContractRender};

/// The unit that runs user-data on the contract guest (as on NixOS:
/// nixpkgs `nixos/modules/virtualisation/amazon-init.nix`).
pub const AMAZON_INIT_UNIT: &str = "amazon-init.service";

/// Lifecycle states after which the agent's startup is over.
pub const FINAL_STATES: [&str; 4] = ["ready", "start_error", "start_timeout", "shutdown_error"];

/// Journal lines that name a cause (shown first in failure messages).
const CAUSE_PATTERN: &str = "Permission denied|No such file or directory|command not found|not found|status=203|Failed to|error:|refusing|Failed assertions";

/// What a contract workspace is asked to be.
#[derive(Debug, Clone)]
pub struct ContractSpec<'a> {
    pub variant: &'a Variant,
    /// Fixture flake: `good`, `broken`, `broken-build`.
    pub fixture: &'a str,
    pub agent_user: &'a str,
    /// Repository root whose `templates/` is rendered (or a mutated copy's root).
    pub templates_root: &'a Path,
    /// How long the agent may take to connect, then to finish its startup.
    pub within: Duration,
    /// `coder_agent.auth`.
    pub auth: AgentAuth,
}

/// How long the last start took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    /// From the user-data being served to the agent stand-in's first call.
    pub to_agent: Duration,
    /// To the final lifecycle state.
    pub to_final: Duration,
}

/// The Coder side of one contract workspace: its agent API double, what
/// the template rendered for it, and how its last start went.  The machine
/// itself stays with the caller (a fresh [`boot`] or a pooled VM).
pub struct ContractAgent {
    pub api: Arc<AgentApiDouble>,
    pub render: ContractRender,
    pub readiness: Readiness,
    pub final_state: String,
    /// Where the starts' time went (the caller adds its own events).
    pub timeline: Timeline,
    /// The guest's clock against the host's at the current start, and
    /// whether its journal is read since then (a restore) or for the boot.
    anchor: Option<(Anchor, bool)>,
}

/// Boot a fresh contract guest with the rendered user-data and wait for
/// the agent's startup to end.
pub async fn boot(
    image: &BootImage,
    spec: &ContractSpec<'_>,
    opts: BootOptions,
) -> anyhow::Result<(QemuInstance, ContractAgent)> {
    boot_in(image, spec, opts, None).await
}

/// [`boot`] in a guest slot the caller already holds.
pub async fn boot_in(
    image: &BootImage,
    spec: &ContractSpec<'_>,
    opts: BootOptions,
    slot: Option<crate::machine::qemu::slots::Slot>,
) -> anyhow::Result<(QemuInstance, ContractAgent)> {
    let mut agent = ContractAgent::prepare(spec).await?;
    let inst = agent.boot_in(image, spec, opts, slot).await?;
    Ok((inst, agent))
}

/// On a pooled VM in its clean state (as [`pool::Pool::take`] hands it
/// out, or after [`pool::PooledVm::restore`]): serve the rendered user-data
/// and run amazon-init again, as a first boot would; wait for the agent's
/// startup to end.  On failure the VM stays with the caller (a restore
/// makes it clean again).
pub async fn on_snapshot(
    vm: &mut pool::PooledVm,
    spec: &ContractSpec<'_>,
) -> anyhow::Result<ContractAgent> {
    let mut agent = ContractAgent::prepare(spec).await?;
    agent.start_on_snapshot(vm, spec, &[]).await?;
    Ok(agent)
}

impl ContractAgent {
    /// Start the agent API double and render the template for it.
    pub async fn prepare(spec: &ContractSpec<'_>) -> anyhow::Result<ContractAgent> {
        render::check_wiring(spec.templates_root)?;
        let token = render::new_token();
        let api = AgentApiDouble::start(&token, AgentManifest::default()).await?;
        let r = render::render(
            spec.templates_root,
            spec.variant,
            spec.fixture,
            spec.agent_user,
            &api.guest_access_url(),
            &token,
            spec.auth,
        )
        .await?;
        api.set_manifest(AgentManifest {
            startup_script: r.startup_script.clone(),
            env: r.agent_env.clone(),
            directory: String::new(),
        })?;
        Ok(ContractAgent {
            api: Arc::new(api),
            render: r,
            readiness: Readiness::default(),
            final_state: String::new(),
            timeline: Timeline::new(),
            anchor: None,
        })
    }

    /// Boot a fresh guest (in `slot` if the caller holds one) with the
    /// rendered user-data and wait for the agent's startup to end.  The
    /// agent's side (double, timeline) stays with the caller on failure.
    pub async fn boot_in(
        &mut self,
        image: &BootImage,
        spec: &ContractSpec<'_>,
        mut opts: BootOptions,
        slot: Option<crate::machine::qemu::slots::Slot>,
    ) -> anyhow::Result<QemuInstance> {
        opts.user_data = self.render.user_data.clone().into_bytes();
        let t = Instant::now();
        self.timeline.mark("boot a fresh contract guest");
        let inst = QemuInstance::boot_in(spec.variant, image, opts, slot).await?;
        self.timeline.milestone(
            Milestone::GuestReady,
            format!("probe ready (boot {:.1} s)", inst.last_boot.as_secs_f64()),
        );
        self.anchor = anchor(&inst).await.map(|a| (a, false));
        self.knows_instance(&inst)?;
        guest_fixups(&inst).await?;
        self.wait_started(&inst, t, spec.within).await?;
        Ok(inst)
    }

    /// On a pooled VM in its clean state (as [`pool::Pool::take`] hands it
    /// out, restored and health-checked): run `before` on the guest (faults
    /// a scenario injects before amazon-init runs: double fixtures), serve
    /// the rendered user-data and run amazon-init again, as a first boot
    /// would; wait for the agent's startup to end.  The agent's side
    /// (double, timeline) stays with the caller on failure.
    pub async fn start_on_snapshot(
        &mut self,
        vm: &mut pool::PooledVm,
        spec: &ContractSpec<'_>,
        before: &[String],
    ) -> anyhow::Result<()> {
        self.anchor = anchor(&vm.inst).await.map(|a| (a, true));
        self.knows_instance(&vm.inst)?;
        for cmd in before {
            vm.inst.probe().succeed(cmd).await.map_err(|e| {
                anyhow::anyhow!("preparing the contract guest with `{cmd}` failed: {e}")
            })?;
        }
        vm.inst
            .imds()
            .set_user_data(self.render.user_data.clone().into_bytes());
        let t = Instant::now();
        self.timeline
            .mark("user-data served; restart fetch-ec2-metadata, then amazon-init");
        rerun_amazon_init(&vm.inst).await?;
        self.wait_started(&vm.inst, t, spec.within).await
    }

    /// With `aws-instance-identity`, the API double accepts the identity
    /// document of `inst` (its instance id, as coderd knows the agent's
    /// `auth_instance_id` from `coder_agent_instance`).
    pub fn knows_instance(&self, inst: &QemuInstance) -> anyhow::Result<()> {
        if self.render.auth == AgentAuth::AwsInstanceIdentity {
            self.api
                .expect_instance_identity(&inst.imds().config().instance_id)?;
        }
        Ok(())
    }

    /// Wait for the agent stand-in to connect and finish its startup
    /// script; fail early when the guest has given up (amazon-init failed,
    /// the agent's unit keeps failing), saying what its journal says.
    pub async fn wait_started(
        &mut self,
        inst: &QemuInstance,
        since: Instant,
        within: Duration,
    ) -> anyhow::Result<()> {
        let r = self.wait_started_inner(inst, since, within).await;
        self.record_start(inst).await;
        r
    }

    /// Add this start's receipts (agent API double) and guest journal
    /// milestones to the timeline.
    async fn record_start(&mut self, inst: &QemuInstance) {
        if let Some(h) = self.api.hellos().first() {
            self.timeline.push(
                h.received,
                Source::Harness,
                format!("agent stand-in called the API double ({})", h.line),
                Some(Milestone::AgentHello),
            );
        }
        if let Ok(l) = self.api.lifecycle().await {
            for r in &l {
                let m = if r.state == "starting" {
                    Some(Milestone::ScriptStart)
                } else if FINAL_STATES.contains(&r.state.as_str()) {
                    Some(Milestone::ScriptEnd)
                } else {
                    None
                };
                self.timeline.push(
                    r.received,
                    Source::Harness,
                    format!("lifecycle: {}", r.state),
                    m,
                );
            }
        }
        if let Ok(logs) = self.api.logs().await {
            if let (Some(a), Some(b)) = (logs.first(), logs.last()) {
                self.timeline.push(
                    a.received,
                    Source::Harness,
                    format!("first startup log line: {}", a.output.trim()),
                    None,
                );
                self.timeline.push(
                    b.received,
                    Source::Harness,
                    format!(
                        "last startup log line ({} lines): {}",
                        logs.len(),
                        b.output.trim()
                    ),
                    None,
                );
            }
        }
        if let Some((a, since_anchor)) = self.anchor {
            let cmd = timeline::journal_cmd(
                since_anchor.then_some(a.guest_epoch),
                &["fetch-ec2-metadata.service", AMAZON_INIT_UNIT, "coder*"],
            );
            match inst.probe().exec(&cmd, Duration::from_secs(60)).await {
                Ok(o) => self.timeline.extend(timeline::guest_events(&o.stdout, &a)),
                Err(e) => self
                    .timeline
                    .mark(format!("(could not read the guest's journal: {e})")),
            }
        }
    }

    async fn wait_started_inner(
        &mut self,
        inst: &QemuInstance,
        since: Instant,
        within: Duration,
    ) -> anyhow::Result<()> {
        let api = self.api.clone();
        let connected = poll_guest(inst, within, || !api.hellos().is_empty()).await;
        if let Err(why) = connected {
            anyhow::bail!(
                "expected the agent stand-in to start as {} and call the agent API double; {why}.\n{}",
                self.render.agent_user,
                self.explain(inst).await
            );
        }
        self.readiness.to_agent = since.elapsed();
        let api = self.api.clone();
        let done = poll_guest(inst, within, || {
            futures::executor::block_on(api.lifecycle())
                .map(|l| l.iter().any(|r| FINAL_STATES.contains(&r.state.as_str())))
                .unwrap_or(false)
        })
        .await;
        if let Err(why) = done {
            anyhow::bail!(
                "expected the agent's startup script (nixos-rebuild switch --flake {}) to end with a final lifecycle state; {why}.\n{}",
                self.render.flake_uri,
                self.explain(inst).await
            );
        }
        self.readiness.to_final = since.elapsed();
        self.final_state = self
            .api
            .lifecycle()
            .await?
            .into_iter()
            .rev()
            .find(|r| FINAL_STATES.contains(&r.state.as_str()))
            .map(|r| r.state)
            .unwrap_or_default();
        Ok(())
    }

    /// The double's state, the guest's journal and where the logs are.
    pub async fn explain(&self, inst: &QemuInstance) -> String {
        format!(
            "{}\n{}\nserial log: {}; IMDS log: {}",
            self.api.summary(),
            diagnose(inst).await,
            inst.artifacts().serial_log.display(),
            inst.artifacts()
                .imds_log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    }

    /// Stop and start the instance (a Coder stop/start with unchanged
    /// user-data), then wait for the agent again.
    pub async fn stop_start(
        &mut self,
        inst: &mut QemuInstance,
        within: Duration,
    ) -> anyhow::Result<()> {
        self.api.clear_reports();
        self.timeline
            .milestone(Milestone::Start, "stop and start the instance");
        inst.stop().await?;
        let t = Instant::now();
        inst.start().await?;
        self.restarted(inst).await;
        self.wait_started(inst, t, within).await
    }

    async fn restarted(&mut self, inst: &QemuInstance) {
        self.timeline.milestone(
            Milestone::GuestReady,
            format!("probe ready (boot {:.1} s)", inst.last_boot.as_secs_f64()),
        );
        self.anchor = anchor(inst).await.map(|a| (a, false));
    }

    /// A spot interruption (notice, stop as for
    /// `instance_interruption_behavior = "stop"`), capacity back, start.
    pub async fn interrupt_and_restart(
        &mut self,
        inst: &mut QemuInstance,
        within: Duration,
    ) -> anyhow::Result<()> {
        self.api.clear_reports();
        self.timeline
            .milestone(Milestone::Start, "spot interruption notice, stop, start");
        inst.interrupt_spot().await?;
        let t = Instant::now();
        inst.start().await?;
        self.restarted(inst).await;
        self.wait_started(inst, t, within).await
    }
}

/// The guest's clock against the host's, read over the probe (`None` if
/// the probe cannot answer; the timeline then has the harness's events only).
pub async fn anchor(inst: &QemuInstance) -> Option<Anchor> {
    let before = SystemTime::now();
    let o = inst
        .probe()
        .exec(timeline::ANCHOR_CMD, Duration::from_secs(30))
        .await
        .ok()?;
    let after = SystemTime::now();
    let guest_epoch = o.stdout.trim().parse::<f64>().ok()?;
    let half = after.duration_since(before).unwrap_or_default() / 2;
    Some(Anchor {
        host: before + half,
        guest_epoch,
    })
}

/// What a guest that gave up shows: amazon-init failed, an agent unit
/// restarted again and again, or amazon-init is done and the agent's unit
/// is not running (a switch stopped it, e.g. with /home; Restart=always
/// does not bring back a unit stopped by a dependency) (printed; empty
/// while all is well). One `systemctl show` for every unit and the rest in
/// shell builtins: a process costs ~65 ms of a core in a TCG guest, and
/// this runs every [`GAVE_UP_EVERY`] of a wait.
pub const GAVE_UP: &str = r#"systemctl show -p Id -p ActiveState -p Result -p NRestarts amazon-init.service coder-agent.service 'coder*' 2>/dev/null | {
seen=' '; id=; st=; res=; n=0; ai=; ca=inactive
flush() {
  [ -n "$id" ] || return 0
  case "$seen" in *" $id "*) id=; return 0 ;; esac
  seen="$seen$id "
  case "$id" in
    amazon-init.service) ai=$st; [ "$st" = failed ] && echo "amazon-init.service failed ($res)" ;;
    coder-agent.service) ca=$st ;;
  esac
  case "$id" in coder*) [ "${n:-0}" -ge 3 ] && echo "$id restarted $n times" ;; esac
  id=; st=; res=; n=0
}
while IFS='=' read -r k v || [ -n "$k" ]; do
  case "$k" in Id) id=$v ;; ActiveState) st=$v ;; Result) res=$v ;; NRestarts) n=$v ;; '') flush ;; esac
done
flush
if [ "$ai" = active ]; then
  case "$ca" in active|activating|reloading) ;; *) echo "amazon-init is done and coder-agent.service is not running ($ca): something stopped it" ;; esac
fi
true
}"#;

/// How often a wait asks the guest whether it gave up ([`GAVE_UP`]).
pub const GAVE_UP_EVERY: Duration = Duration::from_secs(10);

/// Poll `f` every 500 ms for up to `within`; every [`GAVE_UP_EVERY`] ask
/// the guest whether it gave up ([`GAVE_UP`]).
async fn poll_guest(
    inst: &QemuInstance,
    within: Duration,
    f: impl Fn() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    let mut asked = Instant::now();
    loop {
        if f() {
            return Ok(());
        }
        if start.elapsed() > within {
            return Err(format!("nothing within {within:?}"));
        }
        if asked.elapsed() > GAVE_UP_EVERY {
            asked = Instant::now();
            if let Ok(o) = inst.probe().exec(GAVE_UP, Duration::from_secs(30)).await {
                if !o.stdout.trim().is_empty() && !f() {
                    return Err(format!(
                        "the guest gave up after {:.0}s: {}",
                        start.elapsed().as_secs_f64(),
                        o.stdout.trim().replace('\n', "; ")
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Fix-ups of known gaps between the contract guest and NixOS, applied
/// before a scenario (and before the pool's snapshot): nixpkgs' gawk ships
/// `bin/awk` and NixOS's system path therefore has `awk` (the harness's
/// checks use it); the contract image (built without maintainer scripts,
/// so without Debian's awk alternative) has only `gawk`.  Drop an entry
/// once `image::contract` provides it.
pub const GUEST_FIXUPS: &str = "for g in /nix/store/*-gawk-*/bin/gawk; do [ -e \"${g%/gawk}/awk\" ] || ln -s gawk \"${g%/gawk}/awk\"; \
sw=$(readlink -f /run/current-system/sw)/bin; [ -e \"$sw/awk\" ] || ln -s \"${g%/gawk}/awk\" \"$sw/awk\"; done; command -v awk";

/// Apply [`GUEST_FIXUPS`].
pub async fn guest_fixups(inst: &QemuInstance) -> anyhow::Result<()> {
    inst.probe()
        .succeed(GUEST_FIXUPS)
        .await
        .map_err(|e| anyhow::anyhow!("contract guest fix-ups failed: {e}"))?;
    Ok(())
}

/// Run the guest's amazon-init again (after a snapshot restore).
pub async fn rerun_amazon_init(inst: &QemuInstance) -> anyhow::Result<()> {
    let out = inst
        .probe()
        .exec(
            // amazon-init reads what fetch-ec2-metadata fetched at boot
            // (nixpkgs amazon-image.nix): fetch the new user-data first.
            &format!("systemctl restart fetch-ec2-metadata.service && systemctl restart --no-block {AMAZON_INIT_UNIT}"),
            Duration::from_secs(60),
        )
        .await?;
    anyhow::ensure!(
        out.status == 0,
        "expected `systemctl restart fetch-ec2-metadata.service {AMAZON_INIT_UNIT}` to succeed on the contract guest, exit {}: {}",
        out.status,
        out.stderr.trim()
    );
    Ok(())
}

/// Wait until amazon-init has finished on a guest booted without
/// user-data (the clean state a snapshot is taken in).
pub async fn wait_amazon_init_done(inst: &QemuInstance, within: Duration) -> anyhow::Result<()> {
    let cmd = format!(
        "[ \"$(systemctl show -P ActiveState {u})\" != activating ] && [ \"$(systemctl show -P ExecMainExitTimestampMonotonic {u})\" != 0 ]",
        u = AMAZON_INIT_UNIT
    );
    inst.probe()
        .wait_until_succeeds(&cmd, within)
        .await
        .map_err(|e| {
            anyhow::anyhow!("the contract guest's {AMAZON_INIT_UNIT} did not finish: {e}")
        })?;
    Ok(())
}

/// The guest's journal for amazon-init and the agent's unit, this boot,
/// with the lines that name a cause first.
pub async fn diagnose(inst: &dyn Instance) -> String {
    let cmd = format!(
        "journalctl -b --no-pager -o cat -u {AMAZON_INIT_UNIT} -u 'coder*' -u nixos-rebuild-switch-to-configuration 2>&1 | tail -n 80 > /tmp/harness-diag; \
         echo '--- cause lines:'; grep -E {pat} /tmp/harness-diag | grep -v 'set -' | tail -n 12; \
         echo '--- units:'; systemctl --no-pager --all list-units {AMAZON_INIT_UNIT} 'coder*' 2>&1 | head -n 8; \
         echo '--- journal (amazon-init, coder*), last lines:'; tail -n 40 /tmp/harness-diag",
        pat = crate::machine::probe::shell_quote(CAUSE_PATTERN)
    );
    match inst.probe().exec(&cmd, Duration::from_secs(60)).await {
        Ok(o) => format!("the contract guest says:\n{}", o.stdout.trim_end()),
        Err(e) => format!("(could not read the guest's journal: {e})"),
    }
}

/// Where the contract guest's nixos-rebuild double records each call
/// (`<boot id> <arguments>`, one a line: double-only evidence).
pub const REBUILD_CALLS: &str = "/var/log/contract-nixos-rebuild.calls";

/// Count this boot's bootstrap switches: calls of the nixos-rebuild double
/// with `switch` and a `nixos-config=` (the bootstrap's
/// `-I nixos-config=…/configuration.nix`), from [`REBUILD_CALLS`].
pub async fn bootstrap_switches_this_boot(inst: &dyn Instance) -> anyhow::Result<(usize, String)> {
    let out = inst
        .probe()
        .exec(
            &format!(
                "read -r b </proc/sys/kernel/random/boot_id; grep \"^$b \" {REBUILD_CALLS} 2>/dev/null | grep -e ' switch' | grep -e 'nixos-config=' || true"
            ),
            Duration::from_secs(60),
        )
        .await?;
    let lines = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    Ok((lines, out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`GAVE_UP`] under `sh` with a `systemctl` that prints `show`.
    fn gave_up(show: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("show.txt"), show).unwrap();
        let stub = d.path().join("systemctl");
        std::fs::write(
            &stub,
            format!("#!/bin/sh\ncat '{}'\n", d.path().join("show.txt").display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            d.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", GAVE_UP])
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn unit(id: &str, state: &str, result: &str, restarts: u32) -> String {
        // `systemctl show` prints properties in its own order, not -p's.
        format!("ActiveState={state}\nResult={result}\nNRestarts={restarts}\nId={id}\n\n")
    }

    #[test]
    fn gave_up_is_silent_while_all_is_well_and_names_each_way_of_giving_up() {
        let agent = unit("coder-agent.service", "active", "success", 0);
        let busy = unit("amazon-init.service", "activating", "success", 0);
        // The agent twice (by name and by the pattern), as systemctl prints it.
        assert_eq!(gave_up(&format!("{busy}{agent}{agent}")), "");
        let failed = unit("amazon-init.service", "failed", "exit-code", 0);
        assert_eq!(
            gave_up(&format!("{failed}{agent}")),
            "amazon-init.service failed (exit-code)\n"
        );
        let done = unit("amazon-init.service", "active", "success", 0);
        let stopped = unit("coder-agent.service", "inactive", "success", 0);
        assert_eq!(
            gave_up(&format!("{done}{stopped}")),
            "amazon-init is done and coder-agent.service is not running (inactive): something stopped it\n"
        );
        let looping = unit("coder-agent.service", "activating", "exit-code", 3);
        assert_eq!(
            gave_up(&format!("{busy}{looping}{looping}")),
            "coder-agent.service restarted 3 times\n"
        );
        // The last block without its blank line still counts.
        assert_eq!(
            gave_up(failed.trim_end()),
            "amazon-init.service failed (exit-code)\n"
        );
    }
}

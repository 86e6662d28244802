//! Steps of `features/template.feature` and `features/contract-selftest.feature`
//! (`@contract`): the template's real user-data on the contract guest,
//! through `crate::workspace::contract` (self-test defects:
//! `crate::workspace::contract::defect`).
//! Each architecture's guest is booted once per run and restored from its
//! clean snapshot per scenario (`HARNESS_CONTRACT_REUSE=0`: a fresh boot
//! per scenario instead).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use crate::image::BootImage;
use crate::machine::instance::Instance as _;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::slots;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::report::timeline::{Milestone, Source};
use crate::template::variant::{Arch, Variant};
use crate::workspace::contract::defect::{Defect, Injection};
use crate::workspace::contract::mutate::{self, Mutation};
use crate::workspace::contract::pool::{Pool, PooledVm};
use crate::workspace::contract::{self, AgentAuth, ContractAgent, ContractSpec};
use crate::workspace::real::Machine;
use cucumber::{given, then, when};

use super::world::{bounded_for, out_dir, root, variant, E2e};

/// A contract start: boot or restore, bootstrap switch, the agent's
/// rebuild (`HARNESS_CONTRACT_TIMEOUT` seconds as given; default 20 min
/// on the reference machine, scaled by the measured pace).
fn contract_timeout() -> Duration {
    crate::machine::qemu::pace::timeout_from_env(
        "HARNESS_CONTRACT_TIMEOUT",
        Duration::from_secs(20 * 60),
    )
}

/// What the agent may take to connect, then to finish, within a start.
fn agent_within() -> Duration {
    contract_timeout() / 2
}

/// The contract scenario's state.
pub struct ContractState {
    pub variant: Variant,
    pub fixture: String,
    pub user: String,
    pub mutation: Option<Mutation>,
    pub agent: Option<ContractAgent>,
    /// The pooled VM's clean fingerprint and cold-boot time, while its
    /// instance is the scenario's machine; `None` for a fresh boot.
    pub pooled: Option<(String, Duration)>,
    pub failure: Option<String>,
    pub mutated: Option<tempfile::TempDir>,
    /// `coder_agent.auth` the template is rendered with.
    pub auth: AgentAuth,
    /// Commands run on the guest before amazon-init runs the user-data
    /// (faults the double injects: an unrelated failing unit, a boot loader
    /// installation that fails).
    pub before: Vec<String>,
    /// Commands run on the guest once the agent's startup ended (a
    /// self-test defect's fault, `features/contract-selftest.feature`).
    pub after_start: Vec<String>,
    /// The self-test defect this workspace carries, if any.
    pub defect: Option<Defect>,
    /// The guest's probe command count when the scenario got it (a pooled
    /// guest's probe has served earlier scenarios).
    pub probe_base: u64,
}

fn images() -> &'static std::sync::Mutex<HashMap<Arch, Result<BootImage, String>>> {
    static I: OnceLock<std::sync::Mutex<HashMap<Arch, Result<BootImage, String>>>> =
        OnceLock::new();
    I.get_or_init(Default::default)
}

/// The contract image for `arch`, built (or found in the cache) once per
/// run; an error is the exact reason it cannot be had here.
fn image(arch: Arch) -> Result<BootImage, String> {
    if let Some(r) = images().lock().unwrap().get(&arch) {
        return r.clone();
    }
    // Called from cucumber's synchronous filter: build on a thread with
    // its own runtime.
    let r = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(crate::cmd::boot::resolve_image(&root(), "contract", arch))
            .map_err(|e| format!("{e:#}").replace('\n', " "))
    })
    .join()
    .unwrap_or_else(|_| Err("the contract image build panicked".into()));
    images().lock().unwrap().insert(arch, r.clone());
    r
}

/// Why a `@contract` scenario of `arch` with `tags` cannot run here, if it
/// cannot.
pub fn skip_reason(arch: Arch, tags: &[String]) -> Option<String> {
    let first = first_variant_of(arch);
    let spot: Vec<String> = super::world::all_variants()
        .iter()
        .filter(|v| v.is_spot)
        .map(|v| v.name.clone())
        .collect();
    if let Some(reason) = not_selected(
        std::env::var("HARNESS_CONTRACT_ARCHS").ok(),
        arch,
        tags,
        first.as_deref(),
        &spot,
    ) {
        return Some(reason);
    }
    if let Err(e) = crate::tools::find("terraform") {
        return Some(format!(
            "the contract tier renders with real Terraform: {e:#}"
        ));
    }
    image(arch)
        .err()
        .map(|e| format!("no contract guest image for {arch}: {e}"))
}

/// The first variant of `arch` in `values/` (what `<arch-variant>` expands to).
fn first_variant_of(arch: Arch) -> Option<String> {
    crate::scenarios::values_for("arch-variant", super::world::all_variants())
        .into_iter()
        .find(|v| v.arch == arch)
        .map(|v| v.name.clone())
}

/// `HARNESS_CONTRACT_ARCHS` limits the contract tier (a PR/CI budget: an
/// aarch64 systemd guest under TCG costs several times an x86_64 one):
/// a comma-separated list of `<arch>` (every scenario of that guest arch),
/// `<arch>=spot` (every scenario, on the arch's spot variants only: an
/// arch's on-demand and spot variants render the same user-data, which
/// tests/static_gate.rs asserts, so the contract guest boots the same
/// bytes) or `<arch>=smoke` (only the `@smoke` scenarios, on the arch's
/// first variant), e.g. `x86_64=spot,aarch64=smoke` as in `ci/test.sh`.
/// What is not selected is reported as skipped with this reason, never as
/// passed. Unset or empty: everything.
fn not_selected(
    selected: Option<String>,
    arch: Arch,
    tags: &[String],
    first_variant: Option<&str>,
    spot_variants: &[String],
) -> Option<String> {
    let selected = selected.filter(|s| !s.trim().is_empty())?;
    let scope = selected.split(',').find_map(|a| {
        let (name, scope) = match a.split_once('=') {
            Some((n, s)) => (n.trim(), Some(s.trim())),
            None => (a.trim(), None),
        };
        (name == arch.as_str()).then_some(scope)
    });
    let why = match scope {
        None => format!("the {arch} contract guest is not run in this job"),
        Some(None) => return None,
        Some(Some("smoke")) => {
            let smoke = tags.iter().any(|t| t == "smoke");
            let variant = tags.iter().find_map(|t| t.strip_prefix("variant-"));
            if smoke && (variant.is_none() || variant == first_variant) {
                return None;
            }
            format!(
                "only the @smoke scenarios on {} run on the {arch} contract guest in this job",
                first_variant.unwrap_or("the first variant")
            )
        }
        Some(Some("spot")) => {
            match tags.iter().find_map(|t| t.strip_prefix("variant-")) {
                Some(v) if !spot_variants.iter().any(|s| s == v) => format!(
                    "only the spot variants run on the {arch} contract guest in this job ({v} renders the same user-data as this arch's spot variant: tests/static_gate.rs)"
                ),
                _ => return None,
            }
        }
        Some(Some(other)) => {
            format!(
                "unknown scope `{other}` for {arch} (expected `{arch}`, `{arch}=spot` or `{arch}=smoke`)"
            )
        }
    };
    Some(format!(
        "HARNESS_CONTRACT_ARCHS={selected}: {why} (unset HARNESS_CONTRACT_ARCHS to run every arch; the nightly runs the full matrix)"
    ))
}

fn pool() -> &'static Pool {
    static P: OnceLock<Pool> = OnceLock::new();
    P.get_or_init(|| {
        Pool::new(
            out_dir().join("contract-pool"),
            AccelRequest::from_env().unwrap_or(AccelRequest::Auto),
        )
    })
}

fn reuse() -> bool {
    std::env::var("HARNESS_CONTRACT_REUSE").map_or(true, |v| v != "0")
}

/// Stop every pooled VM (end of run).
pub async fn shutdown() {
    pool().shutdown().await;
}

fn given_contract(
    w: &mut E2e,
    name: &str,
    fixture: &str,
    user: Option<String>,
    m: Option<Mutation>,
) {
    let v = variant(name);
    contract::render::fixture_flake_uri(fixture).expect("fixture flake");
    let user = user
        .or_else(|| v.value_str("default_agent_user").map(str::to_string))
        .unwrap_or_else(|| "coder".into());
    w.broken = fixture != "good";
    w.variant = Some(v.clone());
    w.contract = Some(ContractState {
        variant: v,
        fixture: fixture.into(),
        user,
        mutation: m,
        agent: None,
        pooled: None,
        failure: None,
        mutated: None,
        auth: AgentAuth::Token,
        before: Vec::new(),
        after_start: Vec::new(),
        defect: None,
        probe_base: 0,
    });
}

#[given(expr = "a contract workspace from template {string} with the {string} fixture flake")]
async fn contract_workspace(w: &mut E2e, name: String, fixture: String) {
    given_contract(w, &name, &fixture, None, None);
}

#[given(
    expr = "a contract workspace from template {string} with the {string} fixture flake and agent user {string}"
)]
async fn contract_workspace_user(w: &mut E2e, name: String, fixture: String, user: String) {
    given_contract(w, &name, &fixture, Some(user), None);
}

#[given(
    expr = "a contract workspace from template {string} with the {string} fixture flake and agent_auth {string}"
)]
async fn contract_workspace_auth(w: &mut E2e, name: String, fixture: String, auth: String) {
    given_contract(w, &name, &fixture, None, None);
    w.contract.as_mut().unwrap().auth = AgentAuth::parse(&auth).expect("agent_auth");
}

/// A unit no configuration declares, wanted by multi-user.target, that
/// fails whenever it starts (switch-to-configuration's ResetFailed forgets
/// its earlier failure, restarting multi-user.target starts it again):
/// every switch exits 4 naming it, as on NixOS.  The rebuild is then
/// expected to end in start_error.
#[given("a unit unrelated to the workspace fails whenever it starts")]
async fn unrelated_failing_unit(w: &mut E2e) {
    let st = w.contract.as_mut().expect("a contract workspace first");
    st.before
        .push(crate::image::contract::selftest::UNRELATED_FAILING_UNIT.to_string());
    w.broken = true;
}

/// A double fixture: the next switch's boot loader installation fails
/// (switch-to-configuration-ng: "Failed to install bootloader", exit 1),
/// after nixos-rebuild has moved the system profile.
#[given("the guest's next boot loader installation fails")]
async fn bootloader_fails_once(w: &mut E2e) {
    let st = w.contract.as_mut().expect("a contract workspace first");
    st.before.push(
        "mkdir -p /run/contract-faults && echo bootloader >/run/contract-faults/next-switch"
            .to_string(),
    );
}

#[given(expr = "a contract workspace from a copy of template {string} mutated with {string}")]
async fn contract_workspace_mutated(w: &mut E2e, name: String, m: String) {
    let m = Mutation::from_slug(&m).expect("mutation");
    given_contract(w, &name, "good", None, Some(m));
}

/// A self-test workspace (`features/contract-selftest.feature`): the good
/// flake with one deliberate defect, through a mutated template copy or a
/// fault run after the start (`workspace::contract::defect`).
#[given(expr = "a contract workspace from template {string} with the defect {string}")]
async fn contract_workspace_defect(w: &mut E2e, name: String, defect: String) {
    let d = Defect::from_slug(&defect).expect("defect");
    given_contract(w, &name, "good", None, None);
    let st = w.contract.as_mut().unwrap();
    st.defect = Some(d);
    match d.injection(&st.user) {
        Injection::Mutation(m) => st.mutation = Some(m),
        Injection::AfterStart(cmd) => st.after_start.push(cmd),
    }
}

/// Run the scenario's after-start faults on its guest (probe, root).
async fn inject_after_start(w: &mut E2e) -> anyhow::Result<()> {
    let cmds = w.contract.as_ref().unwrap().after_start.clone();
    for cmd in cmds {
        w.timeline.mark(format!("fault after the start: {cmd}"));
        let out = w
            .qemu()
            .probe()
            .exec(&cmd, Duration::from_secs(120))
            .await?;
        anyhow::ensure!(
            out.status == 0,
            "expected the fault `{cmd}` to apply on the contract guest, exit {}: {}{}",
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(())
}

/// Start the scenario's contract workspace: its machine goes to
/// `w.instance`, its control plane (the agent API double) to `w.api`.
async fn start(w: &mut E2e) -> anyhow::Result<()> {
    let st = w.contract.as_mut().expect("contract scenario");
    let v = st.variant.clone();
    let img = image(v.arch).map_err(|e| anyhow::anyhow!(e))?;
    let templates_root = match st.mutation {
        Some(m) => {
            let d = tempfile::tempdir()?;
            mutate::mutated_copy(&root(), d.path(), m)?;
            let p = d.path().to_path_buf();
            st.mutated = Some(d);
            p
        }
        None => root(),
    };
    let spec = ContractSpec {
        variant: &v,
        fixture: &st.fixture,
        agent_user: &st.user,
        templates_root: &templates_root,
        within: agent_within(),
        auth: st.auth,
    };
    let before = st.before.clone();
    if reuse() {
        w.timeline.mark(format!(
            "take a pooled {} contract guest; render the template meanwhile",
            v.arch
        ));
        // The guest's restore (or first boot) and Terraform's render overlap.
        let take = async {
            let r = pool().take(&v, &img, &w.scenario).await;
            (r, std::time::SystemTime::now())
        };
        let ((vm, taken), agent) = tokio::join!(take, ContractAgent::prepare(&spec));
        let mut vm = vm?;
        if !vm.waited.is_zero() {
            w.timeline.mark(format!(
                "(of which {:.0} s waiting for a guest slot or an idle pool guest)",
                vm.waited.as_secs_f64()
            ));
        }
        w.timeline.push(
            taken,
            Source::Harness,
            if vm.fresh {
                format!(
                    "pool guest booted, amazon-init (no user-data) done, snapshot saved (cold {:.1} s)",
                    vm.cold.as_secs_f64()
                )
            } else {
                "pool guest restored from its snapshot and health-checked".to_string()
            },
            Some(Milestone::GuestReady),
        );
        let mut agent = match agent {
            Ok(a) => a,
            Err(e) => {
                pool().give_back(vm).await;
                return Err(e);
            }
        };
        // The start's bound runs from here: the wait for a guest (slot,
        // restore, or the pool's cold boot) does not count against it.
        st.probe_base = vm.inst.probe_commands();
        let limit = contract_timeout();
        let res =
            match tokio::time::timeout(limit, agent.start_on_snapshot(&mut vm, &spec, &before))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(no_result(limit)),
            };
        let PooledVm {
            inst,
            fingerprint,
            cold,
            ..
        } = vm;
        st.pooled = Some((fingerprint, cold));
        w.instance = Some(Machine::Qemu(Box::new(inst)));
        adopt(w, agent);
        res?;
    } else {
        anyhow::ensure!(
            before.is_empty(),
            "this scenario changes the guest before amazon-init runs, which needs snapshot reuse \
             (unset HARNESS_CONTRACT_REUSE=0)"
        );
        let mut opts = BootOptions::new(&w.artifacts);
        opts.label = format!("{}/contract", v.name);
        opts.purpose = Some(w.scenario.clone());
        opts.accel = AccelRequest::from_env()?;
        let mut agent = ContractAgent::prepare(&spec).await?;
        // Wait for a guest slot outside the start's bound.
        let slot = slots::global()
            .acquire(&format!("{}/contract for {}", v.name, w.scenario))
            .await;
        let limit = contract_timeout();
        let res =
            match tokio::time::timeout(limit, agent.boot_in(&img, &spec, opts, Some(slot))).await {
                Ok(r) => r,
                Err(_) => Err(no_result(limit)),
            };
        // The agent's side stays with the scenario even when the start
        // failed (a later step may restart the workspace).
        adopt(w, agent);
        w.instance = Some(Machine::Qemu(Box::new(res?)));
    }
    Ok(())
}

fn no_result(limit: Duration) -> anyhow::Error {
    anyhow::anyhow!(
        "no result within {limit:?} after the guest was ready (HARNESS_CONTRACT_TIMEOUT, or 20 min × the measured pace ×{:.1})",
        crate::machine::qemu::pace::current()
    )
}

fn adopt(w: &mut E2e, mut agent: ContractAgent) {
    w.timeline
        .extend(std::mem::take(&mut agent.timeline.events));
    w.api = Some(agent.api.clone());
    if !agent.final_state.is_empty() {
        w.time_to_agent = Some(agent.readiness.to_agent);
    }
    w.time_to_ready = (agent.final_state == "ready").then_some(agent.readiness.to_final);
    w.contract.as_mut().unwrap().agent = Some(agent);
}

/// `When it starts` for a contract scenario.
pub async fn it_starts(w: &mut E2e) {
    let what = {
        let st = w.contract.as_ref().unwrap();
        format!(
            "start a contract {} workspace ({} flake, user {})",
            st.variant.name, st.fixture, st.user
        )
    };
    if let Err(e) = start(w).await {
        panic!("{what}: {e:#}\n{}", w.where_logs());
    }
    if let Err(e) = inject_after_start(w).await {
        panic!("{what}, then its defect: {e:#}\n{}", w.where_logs());
    }
}

#[when("it starts expecting a failure")]
async fn it_starts_expecting_failure(w: &mut E2e) {
    let r = start(w).await;
    let st = w.contract.as_mut().unwrap();
    match r {
        Ok(()) => panic!(
            "expected the template copy with mutation {} to fail on the contract guest, but the agent came up (final state {:?}); the contract tier does not catch this defect",
            st.mutation.map(|m| m.slug()).unwrap_or("-"),
            st.agent.as_ref().map(|a| a.final_state.clone())
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("  (failed as it should: {})", msg.lines().next().unwrap_or(""));
            st.failure = Some(msg);
        }
    }
}

#[then(expr = "the failure names {string}")]
async fn failure_names(w: &mut E2e, cause: String) {
    let st = w.contract.as_ref().unwrap();
    let f = st.failure.clone().expect("a failed start first");
    if let Some(m) = st.mutation {
        assert_eq!(
            m.cause(),
            cause,
            "features/template.feature and Mutation::cause disagree for {m}"
        );
    }
    assert!(
        f.contains(&cause),
        "expected the failure to name the cause {cause:?}; it says:\n{f}\n{}",
        w.where_logs()
    );
}

fn agent_and_inst(w: &mut E2e) -> (&mut ContractAgent, &mut QemuInstance) {
    let inst = w
        .instance
        .as_mut()
        .and_then(Machine::qemu_mut)
        .expect("a started contract workspace");
    let st = w.contract.as_mut().expect("contract scenario");
    (st.agent.as_mut().expect("a started agent"), inst)
}

async fn restart(w: &mut E2e, how: &str) {
    w.verdicts.clear();
    let within = agent_within();
    let logs = w.where_logs();
    let (agent, inst) = agent_and_inst(w);
    let r = tokio::time::timeout(contract_timeout(), async {
        match how {
            "stop/start" | "reboot" => agent.stop_start(inst, within).await,
            _ => agent.interrupt_and_restart(inst, within).await,
        }
    })
    .await;
    let events = std::mem::take(&mut agent.timeline.events);
    w.timeline.extend(events);
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{how} of the contract workspace: {e:#}\n{logs}"),
        Err(_) => panic!(
            "{how} of the contract workspace: no result within {:?}\n{logs}",
            contract_timeout()
        ),
    }
    let agent = w.contract.as_mut().unwrap().agent.take().unwrap();
    adopt(w, agent);
}

#[when("the contract workspace is stopped and started")]
async fn stop_start(w: &mut E2e) {
    restart(w, "stop/start").await;
}

#[when("the contract workspace reboots")]
async fn reboot(w: &mut E2e) {
    restart(w, "reboot").await;
}

#[when("the contract workspace's spot instance is interrupted and starts again")]
async fn spot(w: &mut E2e) {
    restart(w, "spot interruption").await;
}

/// The agent process started once: nothing (a switch stopping or
/// restarting /home) stopped or restarted its unit while the startup
/// script ran.
#[then("the agent started once")]
async fn agent_started_once(w: &mut E2e) {
    let st = w.contract.as_ref().expect("contract scenario");
    let agent = st.agent.as_ref().expect("a started agent");
    let hellos = agent.api.hellos();
    if hellos.len() != 1 {
        let inst = w.qemu();
        let diag = contract::diagnose(inst).await;
        panic!(
            "expected one start of the agent during the workspace's start, saw {}: {:?}\n{}\n{diag}\n{}",
            hellos.len(),
            hellos.iter().map(|h| h.line.clone()).collect::<Vec<_>>(),
            agent.api.summary(),
            w.where_logs()
        );
    }
}

/// The agent signed in with the instance's identity document (the IMDS
/// double's signature, trusted by the API double), not with a token.
#[then("the agent signed in with the instance identity")]
async fn agent_used_instance_identity(w: &mut E2e) {
    let st = w.contract.as_ref().expect("contract scenario");
    let agent = st.agent.as_ref().expect("a started agent");
    let id = w.qemu().imds().config().instance_id;
    let auths = agent.api.identity_auths();
    assert!(
        auths.contains(&id) && st.auth == AgentAuth::AwsInstanceIdentity,
        "expected the agent to sign in with the identity document of {id} (agent_auth {}); \
         the API double issued tokens for {auths:?}\n{}\n{}",
        st.auth.as_str(),
        agent.api.summary(),
        w.where_logs()
    );
    assert_eq!(
        agent
            .render
            .inputs
            .get("agent_token")
            .and_then(|v| v.as_str()),
        Some(""),
        "with aws-instance-identity the template gets no agent token"
    );
}

#[then("this boot did not run the bootstrap switch")]
async fn no_bootstrap_switch(w: &mut E2e) {
    let inst = w.qemu();
    let (n, lines) = bounded_for(
        "count this boot's bootstrap switches",
        Duration::from_secs(120),
        async { contract::bootstrap_switches_this_boot(inst).await },
    )
    .await;
    if n > 0 {
        let diag = contract::diagnose(inst).await;
        panic!(
            "expected this boot's amazon-init not to run the bootstrap switch (nixos-rebuild switch -I nixos-config=…) again; it ran {n} time(s):\n{lines}\n{diag}\n{}",
            w.where_logs()
        );
    }
}

/// After-hook part: put a pooled VM back (restored and health-checked on
/// its next use) unless a failed scenario's VM is kept for inspection; a
/// VM the scenario stopped and started goes back too (its internal
/// snapshot is in its qcow2 disks, and the restore's guard proves it
/// clean), which spares the next scenario a cold boot. Returns whether the
/// machine was taken care of.
pub async fn after(w: &mut E2e, failed: bool, keep_failed: bool) -> bool {
    let Some(st) = w.contract.as_mut() else {
        return false;
    };
    // Keep this scenario's slice of the pooled VM's console.
    if let Some(inst) = w.instance.as_ref().and_then(Machine::qemu) {
        let text = inst.console().text();
        let from = inst.boot_offset().min(text.len());
        let _ = std::fs::write(w.artifacts.join("serial-this-scenario.log"), &text[from..]);
    }
    let Some((fingerprint, cold)) = st.pooled.take() else {
        return false;
    };
    if failed && keep_failed {
        return false;
    }
    match w.instance.take() {
        Some(Machine::Qemu(inst)) => {
            pool()
                .give_back(PooledVm {
                    inst: *inst,
                    fingerprint,
                    cold,
                    fresh: false,
                    waited: Duration::ZERO,
                })
                .await;
            true
        }
        other => {
            w.instance = other;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn contract_archs_select_whole_arches_or_the_smoke_scenario_of_the_first_variant() {
        let sel = |s: &str| Some(s.to_string());
        let smoke = tags(&[
            "contract",
            "smoke",
            "aarch64",
            "variant-aws-nixos-graviton-spot",
        ]);
        let smoke_other = tags(&["contract", "smoke", "aarch64", "variant-aws-nixos-graviton"]);
        let plain = tags(&["contract", "aarch64", "variant-aws-nixos-graviton-spot"]);
        let first = Some("aws-nixos-graviton-spot");
        let spot = vec![
            "aws-nixos-spot".to_string(),
            "aws-nixos-graviton-spot".to_string(),
        ];
        // Unset or empty: everything runs.
        assert_eq!(
            not_selected(None, Arch::Aarch64, &plain, first, &spot),
            None
        );
        assert_eq!(
            not_selected(sel(""), Arch::Aarch64, &plain, first, &spot),
            None
        );
        // A whole arch.
        assert_eq!(
            not_selected(sel("x86_64"), Arch::X86_64, &plain, first, &spot),
            None
        );
        let r = not_selected(sel("x86_64"), Arch::Aarch64, &plain, first, &spot).unwrap();
        assert!(r.contains("aarch64 contract guest is not run"), "{r}");
        // ci/test.sh: x86_64 whole, aarch64 smoke on its first variant only.
        let ci = "x86_64,aarch64=smoke";
        assert_eq!(
            not_selected(sel(ci), Arch::X86_64, &plain, first, &spot),
            None
        );
        assert_eq!(
            not_selected(sel(ci), Arch::Aarch64, &smoke, first, &spot),
            None
        );
        let r = not_selected(sel(ci), Arch::Aarch64, &plain, first, &spot).unwrap();
        assert!(
            r.contains("only the @smoke scenarios on aws-nixos-graviton-spot"),
            "{r}"
        );
        assert!(not_selected(sel(ci), Arch::Aarch64, &smoke_other, first, &spot).is_some());
        let r = not_selected(sel("aarch64=fast"), Arch::Aarch64, &smoke, first, &spot).unwrap();
        assert!(r.contains("unknown scope `fast`"), "{r}");
        // x86_64=spot: every scenario, on the spot variants only.
        let on_demand = tags(&["contract", "x86_64", "variant-aws-nixos"]);
        let spot_row = tags(&["contract", "x86_64", "variant-aws-nixos-spot"]);
        let ci = "x86_64=spot,aarch64=smoke";
        assert_eq!(
            not_selected(sel(ci), Arch::X86_64, &spot_row, first, &spot),
            None
        );
        let r = not_selected(sel(ci), Arch::X86_64, &on_demand, first, &spot).unwrap();
        assert!(
            r.contains("only the spot variants run on the x86_64 contract guest")
                && r.contains("aws-nixos renders the same user-data"),
            "{r}"
        );
        assert_eq!(
            not_selected(sel(ci), Arch::Aarch64, &smoke, first, &spot),
            None
        );
    }
}

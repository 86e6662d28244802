//! The cucumber runner for `features/`, in the library so that one build
//! serves both entries: `harness gate` runs it in-process ([`run`]) and
//! `cargo test --features e2e` (`harness/tests/e2e.rs`) is a thin entry
//! ([`main`]).
//!
//! - Variants come from `values/` only: features are expanded by
//!   [`crate::scenarios`] into `target/e2e/features/` before parsing.
//! - Scenarios whose prerequisites this machine lacks (a NixOS image, a
//!   Docker daemon for Coder, AWS credentials) are not run; they are
//!   reported as SKIPPED with the reason, in the console, in
//!   `target/e2e/summary.json` and in `target/e2e/junit-skipped.xml`.
//!   `HARNESS_STRICT=1` turns every skip into a failure.
//! - Every step is bounded by a timeout, and the whole run by a global one.
//! - Progress: a line when each scenario starts and ends (verdict, duration,
//!   an estimate of what is left), besides cucumber's own step lines.
//! - Reports: `target/e2e/junit.xml`, `target/e2e/cucumber.json`,
//!   `target/e2e/summary.json`, and one folder per scenario with the serial
//!   log and IMDS request log.
//! - Instances are torn down in the after-hook, even on failure;
//!   `HARNESS_KEEP=failed` keeps failed scenarios' VMs until Enter.

mod contract;
mod progress;
mod rows;
mod skip;
mod steps;
mod twin;
mod world;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cucumber::{event, writer, World as _, WriterExt as _};
use futures::FutureExt as _;

use crate::machine::backend::Backend;
use crate::report::summary::{Outcome, Row, Summary};
use crate::scenarios;
use crate::workspace::real::{self as real_workspace, Machine, RunResources};

use crate::report::slug;
pub use skip::{nixos_images_missing, selected_arches};
pub use world::E2e;
use world::{all_variants, global_timeout, out_dir, root};

/// How one run is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    /// Skips count as failures (`HARNESS_STRICT=1`).
    pub strict: bool,
    /// Only these variants (`HARNESS_VARIANTS=a,b`); `None`: all.
    pub only: Option<Vec<String>>,
    /// The `harness` binary the guestfwd relay runs (`HARNESS_EXE`).
    pub harness_exe: PathBuf,
    /// cucumber's own command line (`--name`, `--tags`, `-v`, …), argv[0]
    /// first.
    pub cucumber_args: Vec<String>,
}

impl Options {
    /// From the environment (`HARNESS_BACKEND`, `HARNESS_STRICT`,
    /// `HARNESS_VARIANTS`, `HARNESS_EXE`), with `harness_exe` the default
    /// binary for the relay when `HARNESS_EXE` is unset.
    pub fn from_env(harness_exe: PathBuf, cucumber_args: Vec<String>) -> anyhow::Result<Options> {
        Ok(Options {
            backend: Backend::from_env()?,
            strict: std::env::var("HARNESS_STRICT").is_ok_and(|v| v == "1"),
            only: std::env::var("HARNESS_VARIANTS")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(str::to_string).collect()),
            harness_exe: std::env::var_os("HARNESS_EXE")
                .map(PathBuf::from)
                .unwrap_or(harness_exe),
            cucumber_args,
        })
    }
}

/// One run's backend, preflight findings and shared resources; set by
/// [`run`] before the first scenario (a second run in the same process,
/// such as `harness gate --ec2`, gets its own).
pub(crate) struct Run {
    pub backend: Backend,
    pub preflight: skip::Preflight,
    pub resources: RunResources,
    pub rows: Mutex<Vec<Row>>,
    pub kept: Mutex<Vec<Machine>>,
}

fn current() -> &'static Mutex<Option<&'static Run>> {
    static RUN: OnceLock<Mutex<Option<&'static Run>>> = OnceLock::new();
    RUN.get_or_init(Default::default)
}

/// The run in progress.
pub(crate) fn ctx() -> &'static Run {
    current()
        .lock()
        .unwrap()
        .expect("no e2e run in progress: harness::e2e::run sets it up")
}

/// `cargo test --features e2e` (`harness/tests/e2e.rs`): options from the
/// environment and the process's own arguments, then exit with the run's
/// code. `harness_exe` is the `harness` binary cargo built beside the test.
pub fn main(harness_exe: &str) -> ! {
    let opts = match Options::from_env(harness_exe.into(), std::env::args().collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(opts));
    drop(rt);
    std::process::exit(code);
}

/// Run the scenarios; the exit code (0 passed, 1 failed or strict skips,
/// 2 bad input). Writes `target/e2e/summary.json` in every case but a
/// crash; a global timeout (`HARNESS_GLOBAL_TIMEOUT`) stops every VM and
/// container, writes what finished and exits the process with 124.
pub async fn run(opts: Options) -> i32 {
    let out = out_dir();
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("e2e: cannot create {}: {e}", out.display());
        return 2;
    }
    // The guestfwd relay runs the harness binary, not a test binary.
    std::env::set_var("HARNESS_EXE", &opts.harness_exe);
    let features = match scenarios::expand_dir(
        &root().join("features"),
        &out.join("features"),
        all_variants(),
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("e2e: cannot expand features/: {e:#}");
            return 2;
        }
    };
    let backend = opts.backend;

    crate::machine::qemu::process::install_signal_cleanup();
    let preflight = skip::preflight(backend, opts.only.as_deref()).await;
    println!(
        "e2e: backend {backend}; real workspaces (@nixos): {}",
        preflight
            .real
            .as_deref()
            .map(|r| format!(
                "skipped: {} (the reasons and what to do follow the run)",
                crate::report::reasons::short(r)
            ))
            .unwrap_or_else(|| "will run".into())
    );
    if backend == Backend::Ec2 {
        println!("e2e: HARNESS_BACKEND=ec2 runs the @nixos scenarios only; the contract and twin tiers run on the qemu backend");
    }
    let run: &'static Run = Box::leak(Box::new(Run {
        backend,
        preflight,
        resources: RunResources::new(&root(), &out, backend),
        rows: Mutex::default(),
        kept: Mutex::default(),
    }));
    *current().lock().unwrap() = Some(run);

    // Global timeout: tear everything down and fail, keeping what ran.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let limit = global_timeout();
        if done_rx.recv_timeout(limit) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        eprintln!("e2e: global timeout of {limit:?} reached (HARNESS_GLOBAL_TIMEOUT); stopping every VM and container");
        crate::machine::qemu::process::cleanup_all();
        let done = run.rows.lock().map(|r| r.clone()).unwrap_or_default();
        match (Summary { rows: done }).save(&out_dir()) {
            Ok(p) => eprintln!(
                "e2e: wrote {} (scenarios finished before the timeout)",
                p.display()
            ),
            Err(e) => eprintln!("e2e: could not write summary.json: {e:#}"),
        }
        std::process::exit(124);
    });

    let code = run_scenarios(run, &opts, features).await;
    let _ = done_tx.send(());
    code
}

/// The two passes of a run, which run at the same time: every scenario but
/// the twin's (two at a time: while one waits on its guest, the other's
/// host-side work proceeds; the guests themselves are limited to the cores
/// by the guest slots, `machine::qemu::slots`, and a scenario waiting for
/// one says so), and the twin's (`@twin`: no guest; Terraform and moto
/// use about one core between them and otherwise wait on the AWS
/// provider's 10-second waiters, so `HARNESS_TWIN_CONCURRENCY` at a time,
/// default 4). Measured alone on 2 cores (TCG): the twin pass took 10 min
/// 26 s wall for 9 min 32 s of CPU; in sequence after the guest pass it
/// left a core idle for its whole length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Guests,
    Twin,
}

impl Pass {
    fn concurrency(self) -> usize {
        match self {
            Pass::Guests => 2,
            Pass::Twin => std::env::var("HARNESS_TWIN_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(4),
        }
    }
    /// junit.xml / cucumber.json of this pass.
    fn files(self) -> (&'static str, &'static str) {
        match self {
            Pass::Guests => ("junit.xml", "cucumber.json"),
            Pass::Twin => ("junit-twin.xml", "cucumber-twin.json"),
        }
    }
}

async fn run_scenarios(run: &'static Run, opts: &Options, features: PathBuf) -> i32 {
    let out = out_dir();
    // This run wants guest slots from its start (it resolves images and
    // renders first): processes that yield theirs (the guest tests beside
    // it in ci/test.sh) wait until its first guest has one, 5 min at most.
    crate::machine::qemu::slots::global().announce(Duration::from_secs(300));
    // One progress (counts, estimate, heartbeat) for both passes.
    let progress: &'static progress::Progress = Box::leak(Box::new(progress::Progress::new(
        Pass::Guests.concurrency() + Pass::Twin.concurrency(),
    )));
    let (mut skips, mut twin_skips) = (vec![], vec![]);
    // Both passes in this task (cucumber's hooks are not `Send`), at once.
    let (guests, twin) = futures::join!(
        run_pass(
            run,
            opts,
            features.clone(),
            Pass::Guests,
            progress,
            &mut skips
        ),
        run_pass(
            run,
            opts,
            features.clone(),
            Pass::Twin,
            progress,
            &mut twin_skips
        ),
    );
    progress.finish();
    crate::machine::qemu::slots::global().withdraw();
    skips.append(&mut twin_skips);
    let mut failed = false;
    for r in [guests, twin] {
        match r {
            Ok(f) => failed |= f,
            Err(code) => return code,
        }
    }

    let mut all = std::mem::take(&mut *run.rows.lock().unwrap());
    all.extend(skips.iter().cloned());
    let summary = Summary { rows: all };
    let path = match summary.save(&out) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("e2e: cannot write summary.json: {e:#}");
            return 1;
        }
    };
    std::fs::write(out.join("junit-skipped.xml"), rows::junit_skipped(&skips)).ok();

    println!();
    println!(
        "e2e summary: {} passed, {} failed, {} skipped (summary: {})",
        summary.count(Outcome::Passed),
        summary.count(Outcome::Failed) + usize::from(failed && summary.count(Outcome::Failed) == 0),
        summary.count(Outcome::Skipped),
        path.display()
    );
    // Each distinct reason once, shortened, with what to do about it.
    let mut keyed = crate::report::reasons::Reasons::default();
    for r in skips.iter().filter_map(|s| s.reason.as_deref()) {
        keyed.key(r);
    }
    for e in keyed.entries() {
        println!(
            "  SKIPPED [{}] {} ({} scenario row(s))",
            e.key, e.title, e.rows
        );
        if let Some(a) = &e.action {
            println!("      → {a}");
        }
    }
    println!("by tier: {}", summary.matrix().tally().line());
    if run.backend == Backend::Ec2 {
        let usage = crate::report::cost::usage_from_rows(&summary.rows, |v| {
            crate::template::values::find(&root(), v)
                .ok()
                .and_then(|v| v.value_str("default_instance_type").map(str::to_string))
        });
        match usage.and_then(|u| crate::report::cost::estimate(&u)) {
            Ok(e) => println!("{e}"),
            Err(e) => println!("estimated AWS cost: not computed: {e:#}"),
        }
    }
    let kept_vms = std::mem::take(&mut *run.kept.lock().unwrap());
    if !kept_vms.is_empty() {
        println!(
            "HARNESS_KEEP=failed: {} failed VM(s) kept running:",
            kept_vms.len()
        );
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
    run.resources.shutdown().await;
    if failed || summary.count(Outcome::Failed) > 0 {
        1
    } else if opts.strict && !skips.is_empty() {
        println!("HARNESS_STRICT=1: skips count as failures");
        1
    } else {
        0
    }
}

/// One pass of the run (see [`Pass`]): its skipped rows go to
/// `skips_out`, its scenario rows to `run.rows`; `Ok(failed)`, or the exit
/// code on bad input.
async fn run_pass(
    run: &'static Run,
    opts: &Options,
    features: PathBuf,
    pass: Pass,
    progress: &'static progress::Progress,
    skips_out: &mut Vec<Row>,
) -> Result<bool, i32> {
    // cucumber's own options (`--name`, `--tags`, `-v`, …); the types are
    // inferred from `with_cli` below.
    let mut cli =
        match <cucumber::cli::Opts<_, _, _, cucumber::cli::Empty> as clap::Parser>::try_parse_from(
            &opts.cucumber_args,
        ) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("e2e: {e}");
                return Err(2);
            }
        };
    let backend = run.backend;
    let out = out_dir();
    let (junit_name, json_name) = pass.files();
    let junit = match std::fs::File::create(out.join(junit_name)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("e2e: cannot write {junit_name}: {e}");
            return Err(2);
        }
    };
    let json = match std::fs::File::create(out.join(json_name)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("e2e: cannot write {json_name}: {e}");
            return Err(2);
        }
    };
    let skipped_rows: &'static Mutex<Vec<Row>> = Box::leak(Box::default());
    let keep_failed = std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "failed");
    let started: &'static Mutex<HashMap<String, Instant>> = Box::leak(Box::default());
    let only = opts.only.clone();

    // cucumber ignores `filter_run`'s closure when `--tags`/`--name` is
    // given, which would bypass the skip rules below (a scenario this
    // machine cannot run would fail instead of being reported skipped).
    // Take both filters out of the CLI and apply them in the closure.
    let tags_filter = cli.tags_filter.take();
    let name_filter = cli.re_filter.take();
    let writer = E2e::cucumber()
        .max_concurrent_scenarios(pass.concurrency())
        .before(move |_f, _r, sc, w| {
            async move {
                w.scenario = sc.name.clone();
                w.timeline
                    .milestone(crate::report::timeline::Milestone::Start, "scenario start");
                w.artifacts = out_dir().join("scenarios").join(slug(&sc.name));
                let _ = std::fs::remove_dir_all(&w.artifacts);
                std::fs::create_dir_all(&w.artifacts).ok();
                started
                    .lock()
                    .unwrap()
                    .insert(sc.name.clone(), Instant::now());
                progress.started(&sc.name);
            }
            .boxed_local()
        })
        .after(move |f, _r, sc, ev, w| {
            async move {
                let secs = started
                    .lock()
                    .unwrap()
                    .get(&sc.name)
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                let (outcome, reason) = match ev {
                    event::ScenarioFinished::StepPassed => (Outcome::Passed, None),
                    event::ScenarioFinished::StepSkipped => (
                        Outcome::Failed,
                        Some("a step has no definition (write it in harness/src/e2e/)".into()),
                    ),
                    event::ScenarioFinished::StepFailed(_, _, e) => (
                        Outcome::Failed,
                        Some(e.to_string().lines().next().unwrap_or("").to_string()),
                    ),
                    event::ScenarioFinished::BeforeHookFailed(_) => {
                        (Outcome::Failed, Some("before hook failed".into()))
                    }
                };
                let mut r = rows::row(f, sc, outcome, reason, secs);
                if let Some(w) = w {
                    if let (Some(c), Some(Machine::Qemu(q))) = (&w.contract, w.machine_ref()) {
                        w.timeline.mark(format!(
                            "{} commands sent to the guest's probe shell",
                            q.probe_commands().saturating_sub(c.probe_base)
                        ));
                    }
                    w.timeline.mark(format!("scenario end ({outcome:?})"));
                    if w.contract.is_some() {
                        let _ = w.timeline.save(&w.artifacts, &sc.name);
                    }
                    r.time_to_agent_s = w.time_to_agent.map(|d| d.as_secs_f64());
                    r.time_to_ready_s = w.time_to_ready.map(|d| d.as_secs_f64());
                    r.artifacts = Some(w.artifacts.clone());
                    if let Some(cp) = w.api.as_deref() {
                        // The rebuild log (agent logs as the control plane received them).
                        let _ = real_workspace::save_agent_logs(
                            cp,
                            &w.artifacts.join("agent-logs.txt"),
                        )
                        .await;
                    }
                    // The twin: its builds, one line each; its moto double dies here.
                    if let Some(t) = w.twin.take() {
                        let _ = std::fs::write(
                            w.artifacts.join("twin-builds.txt"),
                            twin::build_lines(&t).join("\n") + "\n",
                        );
                    }
                    // A pooled contract VM goes back to its pool instead.
                    contract::after(w, outcome == Outcome::Failed, keep_failed).await;
                    let mut ws = w.workspace.take();
                    if let Some(ws) = ws.as_mut() {
                        // ec2: the workspace Coder built goes through Coder,
                        // whatever the outcome (billed resources are never kept).
                        let limit = crate::control::coder::stack::BUILD_TIMEOUT;
                        match tokio::time::timeout(limit, ws.delete_built()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => eprintln!(
                                "e2e: {}: deleting the workspace: {e:#}; run `harness sweep --older-than 0s` (it finds the template's resources by this owner's coder_owner tag)",
                                sc.name
                            ),
                            Err(_) => eprintln!(
                                "e2e: {}: the delete build did not end within {limit:?}; run `harness sweep --older-than 0s`",
                                sc.name
                            ),
                        }
                    }
                    let machine = ws.map(|ws| ws.machine).or_else(|| w.instance.take());
                    if let Some(mut inst) = machine {
                        if outcome == Outcome::Failed && keep_failed {
                            run.kept.lock().unwrap().push(inst);
                        } else {
                            let _ = inst.get_mut().terminate().await;
                        }
                    }
                }
                progress.finished(
                    &sc.name,
                    outcome,
                    Duration::from_secs_f64(secs),
                    r.artifacts.as_deref(),
                );
                run.rows.lock().unwrap().push(r);
            }
            .boxed_local()
        })
        .with_writer(
            writer::Basic::new(
                progress.writer(),
                writer::Coloring::Auto,
                writer::Verbosity::Default,
            )
            .summarized()
            .tee::<E2e, _>(writer::JUnit::for_tee(junit, 0))
            .tee::<E2e, _>(writer::Json::for_tee(json))
            .normalized(),
        )
        // After with_writer: changing the writer drops an earlier CLI.
        .with_cli(cli)
        .filter_run(features, move |feature, _rule, scenario| {
            let tags = skip::scenario_tags(feature, scenario);
            if tags.iter().any(|t| t == "twin") != (pass == Pass::Twin) {
                return false;
            }
            if name_filter
                .as_ref()
                .is_some_and(|re| !re.is_match(&scenario.name))
            {
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
            // @ec2: what exists only on AWS (an instance type); the twin
            // covers it against moto, so a QEMU run leaves it out.
            if backend == Backend::Qemu && tags.iter().any(|t| t == "ec2") {
                return false;
            }
            if let Some(only) = &only {
                // Expanded outlines carry @variant-<name> on each Examples block.
                let names: Vec<String> = tags
                    .iter()
                    .filter_map(|t| t.strip_prefix("variant-").map(str::to_string))
                    .collect();
                if !names.is_empty() && !names.iter().any(|n| only.contains(n)) {
                    return false;
                }
            }
            if tags.iter().any(|t| t == "contract") {
                let arch = if tags.iter().any(|t| t == "aarch64") {
                    crate::template::variant::Arch::Aarch64
                } else {
                    crate::template::variant::Arch::X86_64
                };
                if let Some(reason) = contract::skip_reason(arch, &tags) {
                    skipped_rows.lock().unwrap().push(rows::row(
                        feature,
                        scenario,
                        Outcome::Skipped,
                        Some(reason),
                        0.0,
                    ));
                    return false;
                }
            }
            if tags.iter().any(|t| t == "twin") {
                if let Some(reason) = twin::skip_reason() {
                    skipped_rows.lock().unwrap().push(rows::row(
                        feature,
                        scenario,
                        Outcome::Skipped,
                        Some(reason),
                        0.0,
                    ));
                    return false;
                }
            }
            for t in &tags {
                if let Some(reason) = skip::skip_reason(t) {
                    skipped_rows.lock().unwrap().push(rows::row(
                        feature,
                        scenario,
                        Outcome::Skipped,
                        Some(reason),
                        0.0,
                    ));
                    return false;
                }
            }
            progress.planned(progress::runs_of(scenario));
            true
        })
        .await;

    // Outline scenarios are reported once per Examples row by cucumber;
    // the filter sees each outline once per Examples block.
    skips_out.extend(std::mem::take(&mut *skipped_rows.lock().unwrap()));
    use cucumber::writer::Stats as _;
    Ok(writer.execution_has_failed())
}

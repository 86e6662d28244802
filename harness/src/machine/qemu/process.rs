//! Process hygiene for QEMU (and the other long-lived children the harness
//! starts, such as the moto double, through [`spawn_guarded`]): no VM, no
//! double and no temp directory outlives the harness, whether it returns,
//! panics, times out, gets Ctrl-C or SIGKILL.
//!
//! - every QEMU gets `PR_SET_PDEATHSIG(SIGKILL)` and its own process group,
//!   and `kill_on_drop`;
//! - a detached watchdog (`sh`, own session) removes the instance's temp dir
//!   once the harness process is gone, which covers SIGKILL;
//! - a process-wide registry lets the Ctrl-C/SIGTERM handler kill every
//!   QEMU group and remove every temp dir before exiting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio::process::{Child, Command};

/// Prefix of every instance temp dir (under the system temp dir).
pub const TEMP_PREFIX: &str = "harness-vm-";

#[derive(Debug, Clone)]
struct Entry {
    pgid: Option<u32>,
    dir: PathBuf,
}

fn registry() -> &'static Mutex<HashMap<String, Entry>> {
    static R: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Register an instance's temp dir (before QEMU starts).
pub fn register_dir(id: &str, dir: &Path) {
    registry().lock().unwrap().insert(
        id.to_string(),
        Entry {
            pgid: None,
            dir: dir.to_path_buf(),
        },
    );
}

/// Record the process group of an instance's running QEMU.
pub fn register_pgid(id: &str, pgid: Option<u32>) {
    if let Some(e) = registry().lock().unwrap().get_mut(id) {
        e.pgid = pgid;
    }
}

pub fn unregister(id: &str) {
    registry().lock().unwrap().remove(id);
}

/// A function run by [`cleanup_all`].
type Hook = fn();

fn hooks() -> &'static Mutex<Vec<Hook>> {
    static H: OnceLock<Mutex<Vec<Hook>>> = OnceLock::new();
    H.get_or_init(Default::default)
}

/// Also run `f` in [`cleanup_all`] (e.g. remove this run's containers);
/// registering the same function twice runs it once.
pub fn on_cleanup(f: fn()) {
    let mut h = hooks().lock().unwrap();
    if !h.iter().any(|g| std::ptr::fn_addr_eq(*g, f)) {
        h.push(f);
    }
}

/// Kill every registered QEMU, remove every registered temp dir, and run
/// the [`on_cleanup`] hooks.
pub fn cleanup_all() {
    let fs: Vec<fn()> = hooks().lock().unwrap().clone();
    for f in fs {
        f();
    }
    let entries: Vec<Entry> = registry().lock().unwrap().drain().map(|(_, e)| e).collect();
    for e in entries {
        if let Some(pgid) = e.pgid {
            kill_group(pgid);
        }
        let _ = std::fs::remove_dir_all(&e.dir);
    }
}

pub fn kill_group(pgid: u32) {
    // SAFETY: plain syscall; a negative pid addresses the process group.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
}

/// Install (once) a Ctrl-C / SIGTERM handler that cleans up every
/// instance and exits with 130 / 143.
pub fn install_signal_cleanup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tokio::spawn(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            eprintln!("harness: interrupted; stopping every VM and removing temp dirs");
            cleanup_all();
            std::process::exit(code);
        });
    });
}

/// Create an instance temp dir (short path: unix sockets are limited to
/// 108 bytes) and start its watchdog.
pub fn make_temp_dir(id: &str) -> anyhow::Result<PathBuf> {
    sweep_stale();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempdir_in(std::env::temp_dir())?
        .keep();
    register_dir(id, &dir);
    spawn_watchdog(&dir)?;
    Ok(dir)
}

/// A detached `sh` that waits for this process to die, then removes `dir`.
fn spawn_watchdog(dir: &Path) -> anyhow::Result<()> {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; rm -rf -- "$2""#;
    std::process::Command::new("sh")
        .args(["-c", script, "harness-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(())
}

/// Remove temp dirs left by harness processes that no longer exist.
pub fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

use std::os::unix::process::CommandExt as _;

/// Spawn QEMU: own process group, dies with the harness, killed on drop.
pub fn spawn(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let stderr = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    spawn_guarded(cmd)
}

/// Spawn any child the way QEMU is spawned: its own process group (so
/// [`kill_group`] takes its children too), `PR_SET_PDEATHSIG(SIGKILL)` (it
/// dies with the harness, even on SIGKILL) and `kill_on_drop`. Doubles
/// such as `moto_server` use it too.
pub fn spawn_guarded(mut cmd: Command) -> anyhow::Result<Child> {
    cmd.kill_on_drop(true).process_group(0);
    die_with_parent(&mut cmd, libc::SIGKILL);
    Ok(cmd.spawn()?)
}

/// The child gets `signal` when the thread that started it ends
/// (`PR_SET_PDEATHSIG`); the harness exiting in any way (its signal
/// handler, SIGKILL, an abort) ends every thread.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe; runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

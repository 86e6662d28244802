//! Choosing the accelerator: KVM only when a short, time-limited probe
//! proves it works (on some hosts `/dev/kvm` exists but hangs), else TCG.
//! A request for KVM that the probe refutes is an error, never a silent
//! fallback.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::variant::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn qemu_arg(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            // Multi-threaded TCG uses both host cores for an SMP guest.
            Accel::Tcg => "tcg,thread=multi",
        }
    }
}

/// What the user asked for (`--accel` / `HARNESS_ACCEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelRequest {
    Auto,
    Kvm,
    Tcg,
}

impl AccelRequest {
    pub fn from_env() -> anyhow::Result<AccelRequest> {
        match std::env::var("HARNESS_ACCEL").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(AccelRequest::Auto),
            Ok("kvm") => Ok(AccelRequest::Kvm),
            Ok("tcg") => Ok(AccelRequest::Tcg),
            Ok(other) => anyhow::bail!("HARNESS_ACCEL={other}: expected auto, kvm or tcg"),
        }
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The KVM probe's verdict for this process (run once).
fn kvm_probe() -> &'static Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_kvm_now)
}

/// Prove KVM can run guest code: start a real x86 machine with the host
/// CPU under KVM and wait for SeaBIOS to print its banner on the debug
/// console.  Hosts whose /dev/kvm hangs time out (the probe is killed);
/// hosts that refuse the vCPU's MSRs make QEMU abort.  Both mean TCG.
fn probe_kvm_now() -> Result<(), String> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "no KVM probe for host arch {} yet",
            std::env::consts::ARCH
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("debugcon.log");
    let mut child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "64",
        ])
        .args(["-nodefaults", "-display", "none", "-chardev"])
        .arg(format!("file,id=dbg,path={}", log.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dbg"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    let start = std::time::Instant::now();
    loop {
        let banner = std::fs::read_to_string(&log).unwrap_or_default();
        if banner.contains("SeaBIOS") {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(_)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let first = err.lines().next().unwrap_or("exited").to_string();
                return Err(format!("qemu -accel kvm -cpu host failed: {first}"));
            }
            Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a KVM guest ran no code within {PROBE_TIMEOUT:?} (/dev/kvm hangs)"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn host_arch() -> Option<Arch> {
    std::env::consts::ARCH.parse().ok()
}

/// Pick the accelerator for a guest of `arch`, printing the choice.
pub fn choose(arch: Arch, req: AccelRequest) -> anyhow::Result<Accel> {
    let native = host_arch() == Some(arch);
    let chosen = match req {
        AccelRequest::Tcg => {
            eprintln!("accelerator: tcg (requested)");
            Accel::Tcg
        }
        AccelRequest::Kvm => {
            if !native {
                anyhow::bail!(
                    "--accel kvm: a {arch} guest cannot use KVM on a {} host; use --accel tcg or auto",
                    std::env::consts::ARCH
                );
            }
            match kvm_probe() {
                Ok(()) => {
                    eprintln!("accelerator: kvm (requested; probe passed)");
                    Accel::Kvm
                }
                Err(why) => anyhow::bail!(
                    "--accel kvm: KVM does not work on this host: {why}. Use --accel tcg (slower) or fix /dev/kvm"
                ),
            }
        }
        AccelRequest::Auto => {
            if !native {
                eprintln!(
                    "accelerator: tcg ({arch} guest on a {} host)",
                    std::env::consts::ARCH
                );
                Accel::Tcg
            } else {
                match kvm_probe() {
                    Ok(()) => {
                        eprintln!("accelerator: kvm (probe passed)");
                        Accel::Kvm
                    }
                    Err(why) => {
                        eprintln!("accelerator: tcg (KVM probe failed: {why})");
                        Accel::Tcg
                    }
                }
            }
        }
    };
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_arch_never_gets_kvm() {
        let foreign = if std::env::consts::ARCH == "x86_64" {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        assert_eq!(choose(foreign, AccelRequest::Auto).unwrap(), Accel::Tcg);
        let e = choose(foreign, AccelRequest::Kvm).unwrap_err().to_string();
        assert!(e.contains("cannot use KVM"), "{e}");
    }

    #[test]
    fn tcg_request_is_honoured() {
        assert_eq!(choose(Arch::X86_64, AccelRequest::Tcg).unwrap(), Accel::Tcg);
    }
}

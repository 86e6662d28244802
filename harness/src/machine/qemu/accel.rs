//! Choosing the accelerator: KVM only when a short, time-limited probe
//! proves it works (on some hosts `/dev/kvm` exists but hangs), else TCG.
//! A request for KVM that the probe refutes is an error, never a silent
//! fallback.
//!
//! The probe runs firmware, not a kernel, so a KVM that passes it can
//! still fail a real guest. Seen on a 2-core machine of this workplace:
//! `/dev/kvm` served by `kvm_pvm` (PVM, a KVM flavour that runs only
//! kernels built as PVM guests; no `vmx`/`svm` in `/proc/cpuinfo`) ran
//! SeaBIOS, then stopped every Debian cloud kernel early in its boot with
//! "KVM internal error. Suberror: 1 … emulation failure" at a
//! `lock cmpxchg16b`. So a PVM-only KVM fails the probe outright
//! ([`kvm_flavour`]), and a KVM fault in any real guest ([`kvm_fault_in`])
//! refutes KVM for this host until its next boot ([`refute_kvm`]): the
//! instance boots again under TCG and later guests go straight to TCG.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::template::variant::Arch;

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

/// The KVM probe's verdict for this process (run once), unless a real
/// guest refuted KVM on this host ([`refute_kvm`]) since.
fn kvm_probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    if let Some(why) = refuted_at(&verdict_dir(), &boot_id()) {
        return Err(why);
    }
    PROBE.get_or_init(probe_kvm_now).clone()
}

/// What QEMU prints when KVM stops a guest it cannot run
/// (`accel/kvm/kvm-all.c`: "KVM internal error. Suberror: %d", then e.g.
/// "emulation failure" and the register dump, and the VM is paused).
pub const KVM_FAULT_MARK: &str = "KVM internal error";

/// The fault in QEMU's stderr, if any: its first line and, when QEMU
/// names one, the failure ("emulation failure").
pub fn kvm_fault_in(stderr: &str) -> Option<String> {
    let at = stderr.find(KVM_FAULT_MARK)?;
    let rest = &stderr[at..];
    let first = rest.lines().next().unwrap_or(KVM_FAULT_MARK).trim();
    let what = rest
        .lines()
        .skip(1)
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("extra data") && !l.contains('='));
    Some(match what {
        Some(w) => format!("{first} ({w})"),
        None => first.to_string(),
    })
}

/// A guest stopped by KVM ([`kvm_fault_in`]); `message` says what was
/// expected, what QEMU printed and where the logs are.
#[derive(Debug)]
pub struct KvmFault {
    pub fault: String,
    pub message: String,
}

impl std::fmt::Display for KvmFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KvmFault {}

/// Where the host's verdict on KVM is kept: beside the guest slots
/// (per user, shared by every harness process on the machine).
fn verdict_dir() -> std::path::PathBuf {
    super::slots::machine_dir(std::env::var("HARNESS_GUEST_SLOTS_DIR").ok().as_deref())
}

const VERDICT_FILE: &str = "kvm-refuted";

/// This boot of the host (`/proc/sys/kernel/random/boot_id`): a verdict
/// holds until the host reboots (a new kernel or module may fix KVM).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Refute KVM for this host until its next boot: later [`choose`] calls,
/// in this process and in others, pick TCG (or fail a `kvm` request)
/// naming `why`. Returns the verdict file.
pub fn refute_kvm(why: &str) -> std::path::PathBuf {
    refute_at(&verdict_dir(), &boot_id(), why)
}

/// [`refute_kvm`] with the directory and boot id explicit.
pub fn refute_at(dir: &std::path::Path, boot: &str, why: &str) -> std::path::PathBuf {
    let file = dir.join(VERDICT_FILE);
    use std::os::unix::fs::DirBuilderExt as _;
    // Private like the slots beside it (another user's verdict is not ours).
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let tmp = dir.join(format!(".{VERDICT_FILE}-{}", std::process::id()));
    if std::fs::write(&tmp, format!("{boot}\n{why}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
    file
}

/// The verdict kept in `dir` for host boot `boot`, as a reason.
pub fn refuted_at(dir: &std::path::Path, boot: &str) -> Option<String> {
    let file = dir.join(VERDICT_FILE);
    let text = std::fs::read_to_string(&file).ok()?;
    let (kept_boot, why) = text.split_once('\n')?;
    (kept_boot == boot).then(|| {
        format!(
            "a guest on this host was stopped by KVM: {} (verdict kept in {} until the host reboots)",
            why.trim(),
            file.display()
        )
    })
}

/// Which KVM serves `/dev/kvm`, read from the loaded modules under
/// `sys_module` (`/sys/module`): `Err` for a PVM-only host (`kvm_pvm`
/// without `kvm_intel`/`kvm_amd`), whose KVM runs only kernels built as
/// PVM guests (the PVM RFC, "KVM: x86/PVM: Introduce a new hypervisor",
/// LKML, February 2024); neither the contract nor the NixOS guest is one.
pub fn kvm_flavour(sys_module: &std::path::Path) -> Result<(), String> {
    let loaded = |m: &str| sys_module.join(m).exists();
    if loaded("kvm_pvm") && !loaded("kvm_intel") && !loaded("kvm_amd") {
        return Err(format!(
            "/dev/kvm is PVM ({} is loaded, kvm_intel and kvm_amd are not): it runs only kernels built as PVM guests, which these guests are not",
            sys_module.join("kvm_pvm").display()
        ));
    }
    Ok(())
}

/// Where KVM lives; the probe fails, naming it, when it is missing.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// One KVM probe: a QEMU argv that runs a few guest instructions under
/// `-accel kvm -cpu host` and the text they leave in `log` when they ran.
#[derive(Debug, Clone)]
pub struct KvmProbe {
    pub program: &'static str,
    pub args: Vec<String>,
    /// Guest code written to `dir` before the start (aarch64 only).
    pub payload: Option<(std::path::PathBuf, Vec<u8>)>,
    pub log: std::path::PathBuf,
    pub expect: &'static str,
}

/// The aarch64 probe's guest code, loaded raw with `-kernel` on `virt`
/// (QEMU's boot stub jumps to it): write "KK\n" to the PL011 UART data
/// register at 0x0900_0000 (the `virt` machine's first serial port), then
/// spin. Encodings (Arm ARM, A64 base instructions):
///   movz x1, #0x0900, lsl #16   d2a12001
///   movz w0, #'K'               52800960
///   strb w0, [x1]               39000020   (twice)
///   movz w0, #'\n'              52800140
///   strb w0, [x1]               39000020
///   b .                         14000000
const AARCH64_PROBE_CODE: [u32; 7] = [
    0xd2a1_2001,
    0x5280_0960,
    0x3900_0020,
    0x3900_0020,
    0x5280_0140,
    0x3900_0020,
    0x1400_0000,
];
const AARCH64_PROBE_MARK: &str = "KK";

/// The probe for a host architecture (`std::env::consts::ARCH` spelling),
/// with its files under `dir`.
///
/// - x86_64: a q35 machine with the host CPU runs SeaBIOS, whose banner
///   appears on the ISA debug console.
/// - aarch64: a `virt` machine (`gic-version=max`, so KVM picks the host's
///   GIC) with the host CPU runs [`AARCH64_PROBE_CODE`], whose output
///   appears on the PL011 serial port.
pub fn kvm_probe_for(host: &str, dir: &std::path::Path) -> Result<KvmProbe, String> {
    let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match host {
        "x86_64" => {
            let log = dir.join("debugcon.log");
            let mut args = s(&[
                "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "64",
            ]);
            args.extend(s(&["-nodefaults", "-display", "none", "-chardev"]));
            args.push(format!("file,id=dbg,path={}", log.display()));
            args.extend(s(&["-device", "isa-debugcon,iobase=0x402,chardev=dbg"]));
            Ok(KvmProbe {
                program: "qemu-system-x86_64",
                args,
                payload: None,
                log,
                expect: "SeaBIOS",
            })
        }
        "aarch64" => {
            let log = dir.join("serial.log");
            let bin = dir.join("probe.bin");
            let code: Vec<u8> = AARCH64_PROBE_CODE
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            let mut args = s(&[
                "-accel",
                "kvm",
                "-machine",
                "virt,gic-version=max",
                "-cpu",
                "host",
                "-m",
                "64",
            ]);
            args.extend(s(&["-nodefaults", "-display", "none", "-chardev"]));
            args.push(format!("file,id=ser,path={}", log.display()));
            args.extend(s(&["-serial", "chardev:ser", "-kernel"]));
            args.push(bin.display().to_string());
            Ok(KvmProbe {
                program: "qemu-system-aarch64",
                args,
                payload: Some((bin, code)),
                log,
                expect: AARCH64_PROBE_MARK,
            })
        }
        other => Err(format!("no KVM probe for host arch {other}")),
    }
}

/// Prove KVM can run guest code on this host (see [`kvm_probe_for`]).
/// Hosts whose /dev/kvm hangs time out (the probe is killed); hosts that
/// refuse the vCPU make QEMU abort.  Both mean TCG (or an error when KVM
/// was requested).
fn probe_kvm_now() -> Result<(), String> {
    probe_kvm_at(
        std::path::Path::new(KVM_DEVICE),
        std::env::consts::ARCH,
        PROBE_TIMEOUT,
    )
}

/// [`probe_kvm_now`] with the device path, host arch and timeout explicit.
pub fn probe_kvm_at(dev: &std::path::Path, host: &str, timeout: Duration) -> Result<(), String> {
    if !dev.exists() {
        return Err(format!(
            "{} does not exist (no KVM on this host, or the runner does not expose it)",
            dev.display()
        ));
    }
    if host == "x86_64" && dev == std::path::Path::new(KVM_DEVICE) {
        kvm_flavour(std::path::Path::new("/sys/module"))?;
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let probe = kvm_probe_for(host, dir.path())?;
    run_probe(&probe, timeout)
}

/// Runs a probe's QEMU until its log shows `expect`, it exits, or `timeout`.
pub fn run_probe(probe: &KvmProbe, timeout: Duration) -> Result<(), String> {
    if let Some((path, code)) = &probe.payload {
        std::fs::write(path, code).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    let mut child = std::process::Command::new(probe.program)
        .args(&probe.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", probe.program))?;
    let start = std::time::Instant::now();
    loop {
        let seen = std::fs::read_to_string(&probe.log).unwrap_or_default();
        if seen.contains(probe.expect) {
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
                return Err(format!(
                    "{} {} failed: {first}",
                    probe.program,
                    probe.args[..6].join(" ")
                ));
            }
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a guest under {} ran no code within {timeout:?} (/dev/kvm hangs?)",
                    probe.args[..2].join(" ")
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

    fn joined(p: &KvmProbe) -> String {
        p.args.join(" ")
    }

    #[test]
    fn aarch64_probe_is_kvm_host_cpu_on_virt_with_code_on_the_serial_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = kvm_probe_for("aarch64", dir.path()).unwrap();
        assert_eq!(p.program, "qemu-system-aarch64");
        let a = joined(&p);
        assert!(
            a.starts_with("-accel kvm -machine virt,gic-version=max -cpu host "),
            "{a}"
        );
        assert!(a.contains("-serial chardev:ser"), "{a}");
        let (bin, code) = p.payload.as_ref().expect("aarch64 probe loads guest code");
        assert!(a.ends_with(&format!("-kernel {}", bin.display())), "{a}");
        assert!(a.contains(&format!("path={}", p.log.display())), "{a}");
        // movz x1, #0x0900, lsl #16: the PL011 base of `virt`; little-endian.
        assert_eq!(&code[..4], &[0x01, 0x20, 0xa1, 0xd2]);
        assert_eq!(code.len(), 4 * AARCH64_PROBE_CODE.len());
        assert_eq!(p.expect, "KK");
    }

    #[test]
    fn x86_probe_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = kvm_probe_for("x86_64", dir.path()).unwrap();
        assert_eq!(p.program, "qemu-system-x86_64");
        assert!(joined(&p).starts_with("-accel kvm -machine q35 -cpu host "));
        assert!(p.payload.is_none());
        assert_eq!(p.expect, "SeaBIOS");
        assert!(kvm_probe_for("riscv64", dir.path())
            .unwrap_err()
            .contains("riscv64"));
    }

    /// QEMU's stderr from a real guest stopped by KVM on a PVM host
    /// (shortened register dump).
    const PVM_STDERR: &str = "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nextra data[1]: 0x74204dc70f48f00f\nemulation failure\nRAX=ffff8885c1041040 RBX=0000000000000000\nCode=24 5b 80 41 <f0> 48 0f c7 4d 20\n";

    #[test]
    fn a_kvm_fault_is_found_in_qemu_stderr_and_nothing_else_is() {
        assert_eq!(
            kvm_fault_in(&format!("qemu: warning: x\n{PVM_STDERR}")).as_deref(),
            Some("KVM internal error. Suberror: 1 (emulation failure)")
        );
        assert_eq!(
            kvm_fault_in("KVM internal error. Suberror: 3\n").as_deref(),
            Some("KVM internal error. Suberror: 3")
        );
        assert_eq!(kvm_fault_in(""), None);
        assert_eq!(
            kvm_fault_in("qemu-system-x86_64: terminating on signal 15\n"),
            None
        );
    }

    #[test]
    fn a_refuted_kvm_holds_for_this_host_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(refuted_at(dir.path(), "boot-1"), None);
        let file = refute_at(
            dir.path(),
            "boot-1",
            "KVM internal error (emulation failure)",
        );
        let why = refuted_at(dir.path(), "boot-1").expect("refuted for this boot");
        assert!(
            why.contains("emulation failure") && why.contains(&file.display().to_string()),
            "{why}"
        );
        assert_eq!(refuted_at(dir.path(), "boot-2"), None, "a reboot re-probes");
        // the write leaves no temporary file behind
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(VERDICT_FILE)]);
    }

    #[test]
    fn a_pvm_only_kvm_is_refused_and_a_vmx_kvm_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let m = |n: &str| std::fs::create_dir_all(dir.path().join(n)).unwrap();
        assert!(
            kvm_flavour(dir.path()).is_ok(),
            "no modules: the probe decides"
        );
        m("kvm");
        m("kvm_pvm");
        let e = kvm_flavour(dir.path()).unwrap_err();
        assert!(e.contains("PVM") && e.contains("kvm_pvm"), "{e}");
        m("kvm_intel");
        assert!(
            kvm_flavour(dir.path()).is_ok(),
            "kvm_intel serves /dev/kvm too"
        );
    }

    #[test]
    fn missing_kvm_device_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        for host in ["x86_64", "aarch64"] {
            let e = probe_kvm_at(&dev, host, PROBE_TIMEOUT).unwrap_err();
            assert!(
                e.contains(&dev.display().to_string()) && e.contains("does not exist"),
                "{e}"
            );
        }
    }

    /// The aarch64 guest code really prints the mark: the same probe with
    /// `-accel tcg -cpu max` (this host may lack aarch64 KVM) must show it,
    /// and a probe expecting text the code never writes must not.
    #[test]
    fn aarch64_probe_code_prints_its_mark_under_tcg() {
        if crate::tools::find("qemu-system-aarch64").is_err() {
            eprintln!("skipped: qemu-system-aarch64 is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut p = kvm_probe_for("aarch64", dir.path()).unwrap();
        p.args[1] = "tcg".into();
        p.args[5] = "max".into();
        // A generous bound: a loaded host may take long to start QEMU; the
        // test asserts what the guest printed, never how fast.
        run_probe(&p, Duration::from_secs(300)).expect("probe code prints KK under TCG");
        let mut wrong = p.clone();
        wrong.expect = "never-printed";
        let dir2 = tempfile::tempdir().unwrap();
        wrong.args = wrong
            .args
            .iter()
            .map(|a| {
                a.replace(
                    &dir.path().display().to_string(),
                    &dir2.path().display().to_string(),
                )
            })
            .collect();
        wrong.log = dir2.path().join("serial.log");
        wrong.payload = p
            .payload
            .clone()
            .map(|(_, c)| (dir2.path().join("probe.bin"), c));
        let e = run_probe(&wrong, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("ran no code"), "{e}");
    }
}

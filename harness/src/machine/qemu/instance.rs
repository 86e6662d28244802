//! `QemuInstance`: one workspace VM with its own IMDS, disks, console,
//! QMP and probe.  Stop/start keep the overlay, home disk and UEFI vars;
//! dropping the instance kills QEMU and removes its temp dir.  A running
//! instance holds a guest slot ([`super::slots`]); each boot measures the
//! guest's pace ([`super::pace`]) and scales its probe's timeouts by it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::net::UnixListener;
use tokio::process::Child;

use super::accel::{self, Accel, AccelRequest};
use super::argv::{self, GuestNet, QemuConfig};
use super::console::Console;
use super::hvc_probe::HvcProbe;
use super::qmp::Qmp;
use super::slots::{self, Slot};
use super::{disks, pace, process};
use crate::image::{BootImage, BootMethod, ImageKind};
use crate::machine::imds::{ImdsConfig, ImdsHandle, ImdsServer, LifeCycle};
use crate::machine::instance::{Artifacts, Instance, SshTarget};
use crate::machine::probe::Probe;
use crate::machine::ssh::KeyPair;
use crate::template::variant::{Arch, Variant};

/// How to boot an instance.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// User-data served by IMDS (run as root by the guest if it starts with `#!`).
    pub user_data: Vec<u8>,
    pub accel: AccelRequest,
    pub memory_mib: u32,
    /// vCPUs; `None`: [`default_cpus`] for the accelerator chosen.
    pub cpus: Option<u32>,
    pub home_disk_gib: u32,
    /// Where serial and IMDS logs are kept after teardown.
    pub artifacts_dir: PathBuf,
    /// Wait for the probe shell this long on each boot.
    pub boot_timeout: Duration,
    /// Simulated spot warning before the stop (EC2 gives two minutes).
    pub spot_warning: Duration,
    /// Label for progress lines.
    pub label: String,
    /// Who the guest is for (a scenario), named when it waits for a slot.
    pub purpose: Option<String>,
    /// What the guest network reaches (default: [`GuestNet::Open`]).
    pub net: GuestNet,
    /// Grow the root overlay to this many GiB if the image is smaller
    /// (default: the image's own size).
    pub root_disk_gib: Option<u32>,
}

impl BootOptions {
    pub fn new(artifacts_dir: &Path) -> BootOptions {
        BootOptions {
            user_data: Vec::new(),
            accel: AccelRequest::Auto,
            memory_mib: 1024,
            cpus: None,
            home_disk_gib: 2,
            artifacts_dir: artifacts_dir.to_path_buf(),
            boot_timeout: Duration::from_secs(300),
            spot_warning: Duration::from_secs(2),
            label: "vm".into(),
            purpose: None,
            net: GuestNet::Open,
            root_disk_gib: None,
        }
    }
}

/// vCPUs of a guest nobody asked otherwise for: 2 under KVM (real cores
/// for a real `nixos-rebuild`), 1 under TCG. An emulated vCPU is a host
/// thread doing the work of many: the guests here share two host cores
/// with each other and the rest of the run, and a second vCPU added
/// scheduling (IPIs, a vCPU spinning on a lock its descheduled sibling
/// holds) rather than speed. Measured on this 2-core machine: four x86_64
/// contract scenarios on two guests took 187 CPU-s of QEMU in 1:46–1:48
/// with two vCPUs each, 166–168 CPU-s in 1:38–1:40 with one; `harness
/// bench vm --arch aarch64`: 53 → 42 CPU-s, wall unchanged (48 s).
pub fn default_cpus(accel: Accel) -> u32 {
    match accel {
        Accel::Kvm => 2,
        Accel::Tcg => 1,
    }
}

/// Resolves only when QEMU cannot bring the guest up: KVM stopped it
/// ([`accel::kvm_fault_in`] in its stderr; QEMU then stays alive with the
/// guest paused, so only its stderr tells) or QEMU exited. Checked every
/// 250 ms while the boot waits for the probe shell, so neither costs the
/// whole boot timeout.
async fn watch_qemu(child: &mut Child, stderr_log: &Path) -> (anyhow::Error, Option<String>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let text = std::fs::read_to_string(stderr_log).unwrap_or_default();
        if let Some(fault) = accel::kvm_fault_in(&text) {
            return (
                anyhow::anyhow!("KVM stopped the guest before its probe shell started: {fault}"),
                Some(fault),
            );
        }
        if let Ok(Some(status)) = child.try_wait() {
            return (
                anyhow::anyhow!("QEMU exited ({status}) before the guest's probe shell started"),
                None,
            );
        }
    }
}

pub struct QemuInstance {
    id: String,
    arch: Arch,
    kind: ImageKind,
    /// Held while QEMU runs vCPUs (boot to terminate; released while parked).
    slot: Option<Slot>,
    cfg: QemuConfig,
    accel: Accel,
    dir: PathBuf,
    child: Option<Child>,
    probe: HvcProbe,
    imds: ImdsHandle,
    key: KeyPair,
    artifacts: Artifacts,
    home_serial: String,
    opts: BootOptions,
    /// Console offset where the current boot began.
    boot_offset: usize,
    /// Time from QEMU start to the probe being ready, last boot.
    pub last_boot: Duration,
    /// Timeout factor measured at the last boot ([`pace`]).
    pub pace: f64,
}

fn rand_hex(n: usize) -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..n)
        .map(|_| format!("{:x}", r.random_range(0..16u8)))
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl QemuInstance {
    /// Boot a new instance of `variant` from `image` (waiting for a guest
    /// slot first if none is free).
    pub async fn boot(
        variant: &Variant,
        image: &BootImage,
        opts: BootOptions,
    ) -> anyhow::Result<QemuInstance> {
        Self::boot_in(variant, image, opts, None).await
    }

    /// [`QemuInstance::boot`] in a guest slot the caller already holds.
    pub async fn boot_in(
        variant: &Variant,
        image: &BootImage,
        opts: BootOptions,
        slot: Option<Slot>,
    ) -> anyhow::Result<QemuInstance> {
        anyhow::ensure!(
            image.arch == variant.arch,
            "image is {} but variant {} is {}",
            image.arch,
            variant.name,
            variant.arch
        );
        process::install_signal_cleanup();
        let id = format!("i-qemu-{}", rand_hex(12));
        let accel = accel::choose(variant.arch, opts.accel)?;
        let dir = process::make_temp_dir(&id)?;
        std::fs::create_dir_all(&opts.artifacts_dir)?;
        let home_serial = format!("vol-{}", rand_hex(16));
        let key = KeyPair::generate(&dir)?;
        let imds_log = opts.artifacts_dir.join("imds.jsonl");
        let mut icfg = ImdsConfig::example(&id);
        icfg.arch = variant.arch;
        icfg.user_data = opts.user_data.clone();
        icfg.public_key = Some(key.public.clone());
        icfg.life_cycle = if variant.is_spot {
            LifeCycle::Spot
        } else {
            LifeCycle::OnDemand
        };
        icfg.require_v2 = true;
        if let Some(t) = variant.value_str("default_instance_type") {
            icfg.instance_type = t.to_string();
        }
        let imds = ImdsServer::start(icfg, Some(imds_log.clone()))?;

        let root_overlay = dir.join("root.qcow2");
        let home_disk = dir.join("home.qcow2");
        let uefi_vars = (variant.arch == Arch::Aarch64 && image.boot == BootMethod::Firmware)
            .then(|| dir.join("vars.fd"));
        // The instance's disks, made anew (also after a KVM fault below).
        let make_disks = |cfg: &QemuConfig, opts: &BootOptions| -> anyhow::Result<()> {
            disks::create_overlay_sized(
                &image.base,
                &image.base_format,
                &cfg.root_overlay,
                opts.root_disk_gib,
            )?;
            disks::create_home(&cfg.home_disk, opts.home_disk_gib)?;
            if let Some(v) = &cfg.uefi_vars {
                disks::copy_uefi_vars(v)?;
            }
            Ok(())
        };
        let exe = std::env::var_os("HARNESS_EXE")
            .map(PathBuf::from)
            .map_or_else(std::env::current_exe, Ok)?;
        let cfg = QemuConfig {
            arch: variant.arch,
            accel,
            name: format!("harness-{id}"),
            memory_mib: opts.memory_mib,
            cpus: opts.cpus.unwrap_or_else(|| default_cpus(accel)),
            boot: image.boot.clone(),
            root_overlay,
            home_disk,
            home_serial: home_serial.clone(),
            uefi_vars,
            serial_log: dir.join("serial.log"),
            qmp_socket: dir.join("qmp.sock"),
            probe_socket: dir.join("probe.sock"),
            ssh_port: free_port()?,
            imds_guestfwd_cmd: crate::machine::imds::relay_cmd(&exe, imds.port()),
            net: opts.net.clone(),
            relay_exe: exe.clone(),
        };
        make_disks(&cfg, &opts)?;
        let artifacts = Artifacts {
            dir: opts.artifacts_dir.clone(),
            serial_log: opts.artifacts_dir.join("serial.log"),
            imds_log: Some(imds_log),
        };
        let mut inst = QemuInstance {
            id,
            arch: variant.arch,
            kind: image.kind,
            slot,
            cfg,
            accel,
            dir,
            child: None,
            probe: HvcProbe::new(),
            imds,
            key,
            artifacts,
            home_serial,
            opts,
            boot_offset: 0,
            last_boot: Duration::ZERO,
            pace: 1.0,
        };
        inst.probe.set_evidence(format!(
            "serial log: {} (kept as {})",
            inst.cfg.serial_log.display(),
            inst.artifacts.serial_log.display()
        ));
        if let Err(e) = inst.power_on().await {
            let Some(f) = e.downcast_ref::<accel::KvmFault>() else {
                return Err(e);
            };
            if inst.accel != Accel::Kvm || inst.opts.accel != AccelRequest::Auto {
                return Err(e);
            }
            // KVM passed its probe but cannot run this guest: refute it for
            // the host and boot this instance again, from fresh disks, under
            // TCG (`accel` module doc).
            let verdict = accel::refute_kvm(&f.fault);
            eprintln!(
                "accelerator: tcg (KVM stopped {} at boot: {}; booting it again under TCG; later guests on this host use TCG until it reboots, verdict in {}; first boot's serial log: {})",
                inst.id,
                f.fault,
                verdict.display(),
                inst.artifacts.serial_log.display()
            );
            // Killed and reaped before the disks are made again: QEMU holds
            // a lock on them until it is gone.
            if let Some(mut c) = inst.child.take() {
                if let Some(pid) = c.id() {
                    process::kill_group(pid);
                }
                let _ = c.kill().await;
            }
            process::register_pgid(&inst.id, None);
            inst.probe.detach().await;
            make_disks(&inst.cfg, &inst.opts)?;
            inst.accel = Accel::Tcg;
            inst.cfg.accel = Accel::Tcg;
            inst.cfg.cpus = inst.opts.cpus.unwrap_or_else(|| default_cpus(Accel::Tcg));
            inst.power_on().await?;
        }
        Ok(inst)
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn imds(&self) -> &ImdsHandle {
        &self.imds
    }

    pub fn console(&self) -> Console {
        Console::new(&self.cfg.serial_log)
    }

    /// Console offset where the current boot started (for waiting on lines of this boot).
    pub fn boot_offset(&self) -> usize {
        self.boot_offset
    }

    fn slot_label(&self) -> String {
        match &self.opts.purpose {
            Some(p) => format!("{} ({}) for {p}", self.opts.label, self.arch),
            None => format!("{} ({})", self.opts.label, self.arch),
        }
    }

    /// Start QEMU with the instance's disks and wait for the probe shell.
    async fn power_on(&mut self) -> anyhow::Result<()> {
        if self.slot.is_none() {
            self.slot = Some(slots::global().acquire(&self.slot_label()).await);
        }
        let boot_timeout = self.opts.boot_timeout.mul_f64(pace::current());
        let start = Instant::now();
        self.boot_offset = self.console().text().len();
        let listener: UnixListener = HvcProbe::listen(&self.cfg.probe_socket)?;
        let bin = crate::tools::find(self.cfg.binary())?;
        let args = argv::build(&self.cfg);
        eprintln!(
            "[{}] booting {} {} ({:?}), serial log {}",
            self.opts.label,
            self.id,
            self.arch,
            self.accel,
            self.cfg.serial_log.display()
        );
        let stderr_log = self.dir.join("qemu.stderr");
        let mut child = process::spawn(&bin, &args, &stderr_log)?;
        process::register_pgid(&self.id, child.id());
        let attach = self.probe.attach(&listener, boot_timeout);
        let console = self.console();
        let progress = console.wait_for_line(
            super::hvc_probe::READY,
            self.boot_offset,
            boot_timeout + Duration::from_secs(5),
            &self.opts.label,
        );
        tokio::pin!(progress);
        let res = tokio::select! {
            r = attach => r.map_err(|e| (e, None)),
            _ = &mut progress => std::future::pending().await,
            e = watch_qemu(&mut child, &stderr_log) => Err(e),
        };
        self.child = Some(child);
        if let Err((e, fault)) = res {
            let qemu_err = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            self.save_artifacts();
            let message = format!(
                "{e}\nexpected the guest's probe shell to start; last console lines:\n{}\nqemu stderr: {}\n(serial log: {})",
                self.console().tail(30),
                qemu_err.trim(),
                self.artifacts.serial_log.display()
            );
            return Err(match fault {
                Some(fault) => anyhow::Error::new(accel::KvmFault { fault, message }),
                None => anyhow::anyhow!(message),
            });
        }
        self.last_boot = start.elapsed();
        let reference = pace::reference(self.kind, self.arch);
        self.pace = pace::factor(
            self.last_boot,
            reference,
            std::env::var("HARNESS_TIMEOUT_SCALE").ok().as_deref(),
        );
        pace::record(self.pace);
        self.probe.set_pace(self.pace);
        eprintln!(
            "[{}] probe ready after {:.1}s{}",
            self.opts.label,
            self.last_boot.as_secs_f32(),
            match reference {
                Some(r) => format!(
                    " (reference {:.0} s: timeouts ×{:.1})",
                    r.as_secs_f64(),
                    self.pace
                ),
                None => String::new(),
            }
        );
        Ok(())
    }

    /// Pause the guest's vCPUs (QMP `stop`) and give its slot back, e.g.
    /// a pooled guest between scenarios; [`QemuInstance::restore_parked`]
    /// resumes it.
    pub async fn park(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_some(), "{} is not running", self.id);
        let mut qmp = Qmp::connect(&self.cfg.qmp_socket, Duration::from_secs(5)).await?;
        qmp.execute("stop", serde_json::json!({})).await?;
        self.slot = None;
        Ok(())
    }

    /// How many commands the harness has sent this instance's probe shell.
    pub fn probe_commands(&self) -> u64 {
        self.probe.commands_sent()
    }

    /// Whether the probe channel is attached with nothing pending.
    pub async fn probe_in_sync(&self) -> bool {
        self.probe.in_sync().await
    }

    /// Wait for QEMU to exit, up to `within`.
    async fn wait_exit(&mut self, within: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        matches!(tokio::time::timeout(within, child.wait()).await, Ok(Ok(_)))
    }

    /// Save the running VM as internal snapshot `name` (RAM, devices and
    /// both qcow2 disks). Take it only while no probe command is in flight.
    pub async fn snapshot_save(&mut self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_some(), "{} is not running", self.id);
        let mut qmp = Qmp::connect(&self.cfg.qmp_socket, Duration::from_secs(5)).await?;
        qmp.savevm(name).await
    }

    /// Restore snapshot `name`: the guest is back exactly as it was at
    /// [`QemuInstance::snapshot_save`], disks included, so nothing a later
    /// scenario did survives. The console keeps appending; waits for lines
    /// after a restore start at the returned offset.
    pub async fn snapshot_restore(&mut self, name: &str) -> anyhow::Result<usize> {
        anyhow::ensure!(self.child.is_some(), "{} is not running", self.id);
        if self.slot.is_none() {
            self.slot = Some(slots::global().acquire(&self.slot_label()).await);
        }
        let offset = self.console().text().len();
        let mut qmp = Qmp::connect(&self.cfg.qmp_socket, Duration::from_secs(5)).await?;
        qmp.loadvm(name).await?;
        // A parked guest stays paused through loadvm: resume it.
        if qmp.status().await? != "running" {
            qmp.execute("cont", serde_json::json!({})).await?;
        }
        // The guest's probe shell is back where it was at the save (idle):
        // whatever the host still waited for will never come.
        self.probe.forget_pending().await;
        self.boot_offset = offset;
        Ok(offset)
    }

    /// Like [`QemuInstance::snapshot_restore`] for a parked guest, naming
    /// who it is resumed for when it waits for a slot.
    pub async fn restore_parked(&mut self, name: &str, purpose: &str) -> anyhow::Result<usize> {
        self.opts.purpose = Some(purpose.to_string());
        self.snapshot_restore(name).await
    }

    /// Copy the serial log into the artifacts dir (the temp dir goes away).
    pub fn save_artifacts(&self) {
        let _ = std::fs::copy(&self.cfg.serial_log, &self.artifacts.serial_log);
    }

    fn hard_kill_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                process::kill_group(pid);
            }
            let _ = c.start_kill();
        }
        process::register_pgid(&self.id, None);
        self.slot = None;
    }
}

#[async_trait]
impl Instance for QemuInstance {
    fn id(&self) -> &str {
        &self.id
    }
    fn arch(&self) -> Arch {
        self.arch
    }
    fn probe(&self) -> &dyn Probe {
        &self.probe
    }
    fn ssh(&self) -> Option<SshTarget> {
        Some(SshTarget {
            host: "127.0.0.1".into(),
            port: self.cfg.ssh_port,
            identity: self.key.private.clone(),
        })
    }
    fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }
    fn home_disk_serial(&self) -> &str {
        &self.home_serial
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        // A guest with no power-button input device cannot act on the
        // button (the aarch64 contract guest: under direct-kernel boot it
        // has a device tree, whose button needs gpio-keys, which Debian's
        // cloud-arm64 kernel lacks (CONFIG_KEYBOARD_GPIO is not set); its
        // ACPI button needs UEFI's ACPI tables): pressing it cost a 20 s wait
        // per stop. A probe that cannot answer counts as having one.
        let button = match self
            .probe
            .exec(
                "grep -qs 'Power Button' /proc/bus/input/devices",
                Duration::from_secs(10),
            )
            .await
        {
            Ok(o) => o.status == 0,
            Err(_) => true,
        };
        if button {
            eprintln!(
                "[{}] stopping {} (ACPI power button)",
                self.opts.label, self.id
            );
            let mut qmp = Qmp::connect(&self.cfg.qmp_socket, Duration::from_secs(5)).await?;
            qmp.system_powerdown().await?;
            drop(qmp);
        } else {
            eprintln!(
                "[{}] stopping {}: the guest has no power-button device (/proc/bus/input/devices); `poweroff` through the probe",
                self.opts.label, self.id
            );
        }
        if !button || !self.wait_exit(Duration::from_secs(20)).await {
            // No button, or the guest ignored it: ask the guest to power
            // off cleanly through the probe instead (said above, or here).
            if button {
                eprintln!(
                    "[{}] warning: the guest ignored the ACPI power button; asking it to power off through the probe",
                    self.opts.label
                );
            }
            let _ = self
                .probe
                .exec("(sync; poweroff) >/dev/null 2>&1 &", Duration::from_secs(5))
                .await;
        }
        self.probe.detach().await;
        if !self.wait_exit(Duration::from_secs(60)).await {
            self.save_artifacts();
            self.hard_kill_now();
            anyhow::bail!(
                "expected the guest to power off after the ACPI power button and a probe `poweroff`; it did not and was killed. Last console lines:\n{}\n(serial log: {})",
                self.console().tail(20),
                self.artifacts.serial_log.display()
            );
        }
        self.child = None;
        process::register_pgid(&self.id, None);
        self.save_artifacts();
        Ok(())
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.id);
        self.power_on().await
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        eprintln!(
            "[{}] hard kill of {} (host died / reclaimed without notice)",
            self.opts.label, self.id
        );
        if let Ok(mut qmp) = Qmp::connect(&self.cfg.qmp_socket, Duration::from_secs(2)).await {
            qmp.quit().await;
        }
        self.probe.detach().await;
        if !self.wait_exit(Duration::from_secs(10)).await {
            self.hard_kill_now();
        }
        self.child = None;
        process::register_pgid(&self.id, None);
        self.save_artifacts();
        Ok(())
    }

    async fn interrupt_spot(&mut self) -> anyhow::Result<()> {
        let at = SystemTime::now() + self.opts.spot_warning;
        self.imds.trigger_spot_interruption("stop", at)?;
        eprintln!(
            "[{}] spot interruption notice posted; stopping in {:?}",
            self.opts.label, self.opts.spot_warning
        );
        tokio::time::sleep(self.opts.spot_warning).await;
        self.stop().await?;
        // The capacity came back: the next start sees no pending notice.
        self.imds.clear_spot_interruption();
        Ok(())
    }

    /// As on EC2 after a FIS interruption: the harness starts the stopped
    /// instance with the same disks (capacity is always there on QEMU).
    async fn start_after_interruption(&mut self) -> anyhow::Result<()> {
        eprintln!(
            "[{}] starting the interrupted instance again (as the harness does on EC2 after a FIS stop)",
            self.opts.label
        );
        self.start().await
    }

    async fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.save_artifacts();
            self.hard_kill_now();
        }
        self.save_artifacts();
        self.slot = None;
        self.imds.shutdown();
        process::unregister(&self.id);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for QemuInstance {
    fn drop(&mut self) {
        self.save_artifacts();
        self.hard_kill_now();
        process::unregister(&self.id);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn watch(script: &str) -> (anyhow::Error, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("qemu.stderr");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", script])
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        tokio::time::timeout(Duration::from_secs(60), watch_qemu(&mut child, &log))
            .await
            .expect("the watcher answers long before the boot timeout")
    }

    /// A QEMU whose guest KVM stopped stays alive, paused; the watcher
    /// reads the fault from its stderr instead of waiting out the boot.
    #[tokio::test]
    async fn a_kvm_fault_ends_the_boot_wait_naming_the_fault() {
        let (e, fault) =
            watch("printf 'KVM internal error. Suberror: 1\\nemulation failure\\n' >&2; sleep 600")
                .await;
        assert_eq!(
            fault.as_deref(),
            Some("KVM internal error. Suberror: 1 (emulation failure)")
        );
        assert!(e.to_string().contains("KVM stopped the guest"), "{e}");
    }

    #[tokio::test]
    async fn an_exited_qemu_ends_the_boot_wait_and_is_no_kvm_fault() {
        let (e, fault) = watch("echo 'qemu: could not open disk' >&2; exit 1").await;
        assert_eq!(fault, None);
        assert!(e.to_string().contains("QEMU exited"), "{e}");
    }
}

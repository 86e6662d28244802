//! Snapshot reuse for the contract tier: each architecture's contract
//! guest is booted once per run without user-data, left to finish
//! amazon-init, and saved (`savevm`, RAM and both disks).  A scenario
//! takes a VM restored to that snapshot (so nothing an earlier scenario
//! did survives), serves its own rendered user-data and re-runs
//! amazon-init, as a first boot would; it gives the VM back when done, and
//! an idle VM is paused (its guest slot freed, [`crate::machine::qemu::slots`]).
//!
//! Health check before every reuse: the restore, a probe round trip and
//! the guard below. A VM that fails any of them (its probe channel
//! closed or out of sync, QEMU gone, the restore refused, state leaked) is
//! terminated and replaced by a fresh boot, never handed out.
//!
//! Guard: a fingerprint of the guest state a scenario could change (users,
//! mounts, `/var/lib`, `/etc`, `/home`, system profiles, coder* units) is
//! taken right after the save and compared right after every restore; a
//! difference means the restore leaked state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::image::BootImage;
use crate::machine::imds::LifeCycle;
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::slots::{self, Slot};
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::template::variant::{Arch, Variant};

/// Name of the clean snapshot inside each pool VM's disks.
pub const SNAPSHOT: &str = "contract-clean";

/// The state the guard compares (printed in full, hashed by nobody: a
/// difference is shown line by line).
pub const FINGERPRINT: &str = "cut -d: -f1,3 /etc/passwd; echo '--'; cut -d' ' -f1-3 /proc/mounts | sort; echo '--'; \
ls -a /var/lib /etc /home /nix/var/nix/profiles 2>&1; echo '--'; \
systemctl list-units --all --no-legend --plain 'coder*' 2>&1 | while read -r u _ a s _; do echo \"$u $a $s\"; done";

/// One reusable VM with its clean fingerprint.
pub struct PooledVm {
    pub inst: QemuInstance,
    pub fingerprint: String,
    /// Time of the cold boot up to the saved snapshot.
    pub cold: Duration,
    /// Booted for this take (not restored from an earlier scenario).
    pub fresh: bool,
    /// How long this take waited for a guest slot or an idle VM.
    pub waited: Duration,
}

/// Per-run pool of contract guests, by architecture.
pub struct Pool {
    artifacts: PathBuf,
    accel: AccelRequest,
    idle: tokio::sync::Mutex<HashMap<Arch, Vec<PooledVm>>>,
    /// Per arch, the order in which waiting scenarios get a VM.
    queues: std::sync::Mutex<HashMap<Arch, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    booted: std::sync::atomic::AtomicUsize,
}

impl Pool {
    pub fn new(artifacts: PathBuf, accel: AccelRequest) -> Pool {
        Pool {
            artifacts,
            accel,
            idle: Default::default(),
            queues: Default::default(),
            booted: Default::default(),
        }
    }

    fn queue(&self, arch: Arch) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.queues.lock().unwrap().entry(arch).or_default().clone()
    }

    /// An idle VM of `variant`'s arch restored to its clean snapshot and
    /// health-checked, or a new one booted and saved; its IMDS then plays
    /// `variant`'s market. `purpose` (a scenario) is named when the VM
    /// waits for a guest slot.
    pub async fn take(
        &self,
        variant: &Variant,
        image: &BootImage,
        purpose: &str,
    ) -> anyhow::Result<PooledVm> {
        let label = format!("contract pool {} guest for {purpose}", variant.arch);
        let mut waiting = None;
        let vm = loop {
            // First come, first served per arch: a scenario that started
            // waiting earlier gets the next idle VM or free slot.
            let got = {
                let queue = self.queue(variant.arch);
                let _turn = queue.lock().await;
                loop {
                    let idle = self
                        .idle
                        .lock()
                        .await
                        .get_mut(&variant.arch)
                        .and_then(Vec::pop);
                    if let Some(vm) = idle {
                        break Ok(vm);
                    }
                    // No idle VM: boot one when a guest slot is free; until
                    // then an idle VM another scenario gives back will do.
                    if let Some(slot) = slots::global().try_acquire(&label) {
                        break Err(slot);
                    }
                    if waiting.is_none() {
                        eprintln!(
                            "guest slots: {label} waits for a guest slot or an idle {} pool guest ({} of {} in use: {})",
                            variant.arch,
                            slots::global().holders().len(),
                            slots::global().total(),
                            slots::global().holders().join(", ")
                        );
                        waiting = Some((slots::global().note_waiting(&label), Instant::now()));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            let mut vm = match got {
                Ok(vm) => vm,
                Err(slot) => break self.boot_clean(variant, image, purpose, slot).await?,
            };
            match vm.reuse(purpose).await {
                Ok(_) => {
                    vm.fresh = false;
                    break vm;
                }
                Err(e) => {
                    eprintln!(
                        "contract pool: not reusing {} ({}): {e:#}; terminating it and booting a replacement",
                        vm.inst.id(),
                        variant.arch
                    );
                    let _ = vm.inst.terminate().await;
                }
            }
        };
        let mut vm = vm;
        if let Some((_, since)) = waiting.take() {
            vm.waited = since.elapsed();
            eprintln!(
                "guest slots: {label} went on after waiting {:.0} s",
                vm.waited.as_secs_f64()
            );
        }
        vm.inst.imds().set_market(
            if variant.is_spot {
                LifeCycle::Spot
            } else {
                LifeCycle::OnDemand
            },
            variant
                .value_str("default_instance_type")
                .unwrap_or("t3.medium"),
        );
        vm.inst.imds().set_user_data(Vec::new());
        Ok(vm)
    }

    /// Give a VM back for the next scenario (it is restored and checked on
    /// take); paused meanwhile. A VM whose probe channel is closed or out
    /// of sync, or that cannot be paused, is terminated instead.
    pub async fn give_back(&self, mut vm: PooledVm) {
        let why = if !vm.inst.probe_in_sync().await {
            Some("its probe channel is closed or has a command pending".to_string())
        } else {
            vm.inst
                .park()
                .await
                .err()
                .map(|e| format!("it could not be paused: {e:#}"))
        };
        if let Some(why) = why {
            eprintln!(
                "contract pool: terminating {} ({}) instead of keeping it: {why}",
                vm.inst.id(),
                vm.inst.arch()
            );
            let _ = vm.inst.terminate().await;
            return;
        }
        self.idle
            .lock()
            .await
            .entry(vm.inst.arch())
            .or_default()
            .push(vm);
    }

    /// VMs booted so far (one per arch unless scenarios overlapped).
    pub fn booted(&self) -> usize {
        self.booted.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn boot_clean(
        &self,
        variant: &Variant,
        image: &BootImage,
        purpose: &str,
        slot: Slot,
    ) -> anyhow::Result<PooledVm> {
        let n = self
            .booted
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let t = Instant::now();
        let mut opts = BootOptions::new(&self.artifacts.join(format!("{}-{n}", variant.arch)));
        opts.label = format!("contract pool {} #{n}", variant.arch);
        opts.purpose = Some(purpose.to_string());
        opts.accel = self.accel;
        let mut inst = QemuInstance::boot_in(variant, image, opts, Some(slot)).await?;
        super::wait_amazon_init_done(&inst, Duration::from_secs(600)).await?;
        super::guest_fixups(&inst).await?;
        inst.snapshot_save(SNAPSHOT).await?;
        let fingerprint = inst.probe().succeed(FINGERPRINT).await?;
        Ok(PooledVm {
            inst,
            fingerprint,
            cold: t.elapsed(),
            fresh: true,
            waited: Duration::ZERO,
        })
    }

    /// Terminate every idle VM.
    pub async fn shutdown(&self) {
        for (_, vms) in self.idle.lock().await.drain() {
            for mut vm in vms {
                let _ = vm.inst.terminate().await;
            }
        }
    }
}

impl PooledVm {
    /// Restore the clean snapshot and check the VM can be trusted: a probe
    /// round trip, then the guard.
    pub async fn restore(&mut self) -> anyhow::Result<usize> {
        let from = self.inst.snapshot_restore(SNAPSHOT).await?;
        self.check().await?;
        Ok(from)
    }

    /// [`PooledVm::restore`] of a parked VM taken for `purpose`.
    async fn reuse(&mut self, purpose: &str) -> anyhow::Result<usize> {
        let from = self.inst.restore_parked(SNAPSHOT, purpose).await?;
        self.check().await?;
        Ok(from)
    }

    async fn check(&self) -> anyhow::Result<()> {
        health(self.inst.probe(), &self.fingerprint).await
    }
}

/// Whether a just-restored guest can be trusted: a probe round trip, then
/// the guard against the `clean` fingerprint.
pub async fn health(p: &dyn crate::machine::probe::Probe, clean: &str) -> anyhow::Result<()> {
    let echo = p
        .exec("echo harness-probe-ok", Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("probe round trip after the restore: {e}"))?;
    anyhow::ensure!(
        echo.status == 0 && echo.stdout == "harness-probe-ok\n",
        "probe round trip after the restore: expected `harness-probe-ok`, seen exit {} {:?}",
        echo.status,
        echo.stdout
    );
    let now = p
        .succeed(FINGERPRINT)
        .await
        .map_err(|e| anyhow::anyhow!("fingerprint after the restore: {e}"))?;
    guard(clean, &now)
}

/// The guard: `after` (just restored) must equal `clean` (just saved).
pub fn guard(clean: &str, after: &str) -> anyhow::Result<()> {
    if clean == after {
        return Ok(());
    }
    let diff: Vec<String> = after
        .lines()
        .filter(|l| !clean.lines().any(|c| c == *l))
        .map(|l| format!("+ {l}"))
        .chain(
            clean
                .lines()
                .filter(|l| !after.lines().any(|a| a == *l))
                .map(|l| format!("- {l}")),
        )
        .take(20)
        .collect();
    anyhow::bail!(
        "snapshot reuse leaked state: the restored contract guest differs from the clean snapshot (+ only after restore, - only in the snapshot):\n{}",
        diff.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted guest: what the round trip and the fingerprint return.
    struct Guest {
        echo: Result<&'static str, ()>,
        fingerprint: &'static str,
    }

    #[async_trait::async_trait]
    impl crate::machine::probe::Probe for Guest {
        async fn exec(
            &self,
            cmd: &str,
            timeout: Duration,
        ) -> Result<crate::machine::probe::ExecOutput, crate::machine::probe::ProbeError> {
            let stdout = if cmd.starts_with("echo harness-probe-ok") {
                self.echo
                    .map_err(|_| crate::machine::probe::ProbeError::Timeout {
                        command: cmd.into(),
                        timeout,
                        evidence: "serial log: /x/serial.log".into(),
                    })?
            } else {
                self.fingerprint
            };
            Ok(crate::machine::probe::ExecOutput {
                command: cmd.into(),
                status: 0,
                stdout: stdout.into(),
                stderr: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn a_restored_guest_is_trusted_only_with_a_round_trip_and_a_clean_fingerprint() {
        let clean = "root:0\n--\n";
        let ok = Guest {
            echo: Ok("harness-probe-ok\n"),
            fingerprint: clean,
        };
        health(&ok, clean).await.unwrap();
        let dead = Guest {
            echo: Err(()),
            fingerprint: clean,
        };
        let e = health(&dead, clean).await.unwrap_err().to_string();
        assert!(
            e.contains("round trip") && e.contains("timed out") && e.contains("serial log"),
            "{e}"
        );
        let garbled = Guest {
            echo: Ok("HP-3 0\n"),
            fingerprint: clean,
        };
        let e = health(&garbled, clean).await.unwrap_err().to_string();
        assert!(e.contains("expected `harness-probe-ok`"), "{e}");
        let dirty = Guest {
            echo: Ok("harness-probe-ok\n"),
            fingerprint: "root:0\ncoder:1000\n--\n",
        };
        let e = health(&dirty, clean).await.unwrap_err().to_string();
        assert!(e.contains("+ coder:1000"), "{e}");
    }

    #[test]
    fn the_guard_names_what_leaked() {
        assert!(guard("a\nb\n", "a\nb\n").is_ok());
        let e = guard("root:0\n--\n", "root:0\ncoder:1000\n--\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("+ coder:1000") && e.contains("leaked"), "{e}");
    }
}

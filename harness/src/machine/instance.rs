//! The instance boundary: one booted workspace machine, on QEMU or EC2.
//!
//! Scenarios and checks only see this trait, so every check runs
//! unchanged against `HARNESS_BACKEND=qemu` or `HARNESS_BACKEND=ec2`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::machine::probe::Probe;
use crate::template::variant::Arch;

/// Where and how to reach the guest's sshd from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    /// Private key whose public half the instance was given as
    /// `public-keys/0/openssh-key`.
    pub identity: PathBuf,
}

/// Files a scenario keeps as evidence.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// Directory holding everything below (named in failure messages).
    pub dir: PathBuf,
    /// Serial console log.
    pub serial_log: PathBuf,
    /// Emulated IMDS request log (QEMU only).
    pub imds_log: Option<PathBuf>,
}

/// One workspace machine.  Dropping an instance must tear it down (kill
/// the VM / terminate the EC2 resources); `terminate` does so explicitly.
#[async_trait]
pub trait Instance: Send + Sync {
    /// Stable id, e.g. `i-0abc…` (EC2) or `i-qemu-…` (QEMU).
    fn id(&self) -> &str;
    fn arch(&self) -> Arch;
    /// Root shell inside the guest.
    fn probe(&self) -> &dyn Probe;
    /// The guest's sshd as reachable from the host, if any.
    fn ssh(&self) -> Option<SshTarget>;
    fn artifacts(&self) -> &Artifacts;
    /// The serial number the home disk shows inside the guest
    /// (`/sys/block/<dev>/serial` or NVMe `device/serial`).
    fn home_disk_serial(&self) -> &str;

    /// Graceful stop (ACPI power button, like `StopInstances`).
    async fn stop(&mut self) -> anyhow::Result<()>;
    /// Start again with the same disks.
    async fn start(&mut self) -> anyhow::Result<()>;
    /// Hard kill: the host died / spot capacity reclaimed without notice.
    async fn kill(&mut self) -> anyhow::Result<()>;
    /// Post a spot interruption notice to the instance's metadata and stop
    /// it the way EC2 does for `instance_interruption_behavior = "stop"`
    /// (on EC2: a real interruption through AWS FIS, never StopInstances).
    async fn interrupt_spot(&mut self) -> anyhow::Result<()>;
    /// After [`Instance::interrupt_spot`]: start the instance again.  On
    /// EC2 the interruption came from AWS FIS, and "a Spot Instance that
    /// was stopped by AWS FIS remains stopped until you restart it" (FIS
    /// actions reference, aws:ec2:send-spot-instance-interruptions): the
    /// harness calls StartInstances (asked again while EC2 answers
    /// `InsufficientInstanceCapacity`) and waits for `running`.  On QEMU
    /// the VM is started with the same disks.
    async fn start_after_interruption(&mut self) -> anyhow::Result<()>;
    /// Tear everything down; idempotent.
    async fn terminate(&mut self) -> anyhow::Result<()>;
}

/// Convenience: the artifacts directory of an instance.
pub fn artifacts_dir(i: &dyn Instance) -> &Path {
    &i.artifacts().dir
}

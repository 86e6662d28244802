//! `harness bench vm`: per architecture, on the contract guest, times
//! - cold boot → user-data executed (QEMU start to the user-data's console line),
//! - graceful stop (ACPI power button, or `poweroff` through the probe on a
//!   guest without a power-button device) and start again (to the probe shell),
//! - snapshot restore (`loadvm` of a booted VM until the probe answers),
//!
//! and prints the ratio cold boot / snapshot restore, the basis for reusing
//! booted VMs across scenarios.

use std::time::{Duration, Instant};

use super::Stats;
use crate::image::BootImage;
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::template::variant::Variant;

/// User-data whose only job is to say that it ran.
pub const MARKER_USER_DATA: &str = "#!/bin/sh\necho \"bench: user-data executed\"\n";
const MARKER: &str = "bench: user-data executed";
const SNAPSHOT: &str = "bench-clean";

/// The samples of one architecture.
#[derive(Debug, Default)]
pub struct VmSamples {
    /// The accelerator QEMU actually used (KVM only if the probe proved it).
    pub accel: String,
    pub cold_boot: Vec<Duration>,
    pub stop: Vec<Duration>,
    pub start: Vec<Duration>,
    pub restore: Vec<Duration>,
}

/// Run `runs` rounds for one variant's architecture.
pub async fn measure(
    variant: &Variant,
    image: &BootImage,
    runs: usize,
    accel: AccelRequest,
    artifacts: &std::path::Path,
) -> anyhow::Result<VmSamples> {
    let mut s = VmSamples::default();
    for run in 0..runs {
        let mut opts = BootOptions::new(&artifacts.join(format!("{}-{run}", variant.arch)));
        opts.label = format!("bench {} #{run}", variant.arch);
        opts.accel = accel;
        opts.user_data = MARKER_USER_DATA.as_bytes().to_vec();
        let t = Instant::now();
        let mut inst = QemuInstance::boot(variant, image, opts).await?;
        s.accel = format!("{:?}", inst.accel());
        inst.console()
            .wait_for_line(
                MARKER,
                inst.boot_offset(),
                Duration::from_secs(180),
                "bench",
            )
            .await?;
        s.cold_boot.push(t.elapsed());

        let t = Instant::now();
        inst.snapshot_save(SNAPSHOT).await?;
        let save = t.elapsed();
        // Dirty the guest, then restore: the file must be gone again.
        inst.probe()
            .exec("echo dirty > /root/bench-dirty", Duration::from_secs(20))
            .await?;
        let t = Instant::now();
        inst.snapshot_restore(SNAPSHOT).await?;
        let out = inst
            .probe()
            .exec(
                "test -e /root/bench-dirty; echo $?",
                Duration::from_secs(60),
            )
            .await?;
        s.restore.push(t.elapsed());
        anyhow::ensure!(
            out.stdout.trim() == "1",
            "expected the snapshot restore to undo a file written after the snapshot; \
             `test -e /root/bench-dirty` said {:?} (serial log: {})",
            out.stdout.trim(),
            inst.artifacts().serial_log.display()
        );
        eprintln!(
            "[bench {}] savevm took {:.2}s",
            variant.arch,
            save.as_secs_f64()
        );

        let t = Instant::now();
        inst.stop().await?;
        s.stop.push(t.elapsed());
        let t = Instant::now();
        inst.start().await?;
        s.start.push(t.elapsed());
        inst.terminate().await?;
    }
    Ok(s)
}

/// Print one architecture's table.
pub fn print(variant: &Variant, s: &VmSamples) {
    println!(
        "\n{} ({}, contract guest)           min      median   max",
        variant.arch, s.accel
    );
    let rows = [
        ("cold boot -> user-data ran", &s.cold_boot),
        ("graceful stop", &s.stop),
        ("start again -> probe", &s.start),
        ("snapshot restore -> probe", &s.restore),
    ];
    for (name, v) in rows {
        if let Some(st) = Stats::of(v) {
            println!("  {name:<28} {st}");
        }
    }
    if let (Some(cold), Some(restore)) = (Stats::of(&s.cold_boot), Stats::of(&s.restore)) {
        println!(
            "  ratio cold boot / snapshot restore: {:.1}x",
            super::ratio(&cold, &restore)
        );
    }
}

//! The VM machinery for real, under QEMU (TCG here), on both arches, with
//! the contract guest (a double of the NixOS AMI) running a plain script
//! as its user-data: user-data delivery through IMDSv2 (asserted on the
//! metadata request log), the spot notice seen from inside the guest, SSH
//! with the served key and with a wrong one, the home disk across a
//! graceful stop/start (both arches: the arm64 guest under direct-kernel
//! boot has no power-button device, and `stop` powers it off through the
//! probe); the home disk across a hard kill and process hygiene on
//! SIGINT/SIGKILL on x86_64 only (a kill is QMP `quit` and SIGKILL, a
//! restart relaunches the first boot's argv, whatever the arch).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use harness::machine::imds::ImdsHandle;
use harness::machine::instance::Instance;
use harness::machine::qemu::{BootOptions, QemuInstance};
use harness::machine::ssh::{self, KeyPair, SshError};
use harness::template::variant::{Arch, Variant};

fn root() -> PathBuf {
    harness::repo::root().unwrap()
}

fn variant_for(arch: Arch, spot: bool) -> Variant {
    harness::template::values::discover_repo(&root())
        .unwrap()
        .into_iter()
        .find(|v| v.arch == arch && v.is_spot == spot)
        .expect("values/ has a variant for this arch")
}

/// Run by amazon-init, whose PATH (as on NixOS) has no mount or mkfs.
const USER_DATA: &str = r#"#!/bin/sh
export PATH=/run/current-system/sw/bin:$PATH
echo "ran as $(id -un)" > /var/lib/user-data-ran
mkdir -p /home
mount -t ext4 /dev/xvdb /home 2>/dev/null || { mkfs.ext4 -q -F /dev/xvdb && mount -t ext4 /dev/xvdb /home; }
echo "harness-test: home mounted"
"#;

/// The guest's IMDSv2 read of spot/instance-action (status line included).
const SPOT: &str = r#"tok=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
curl -s -i -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/spot/instance-action"#;

async fn boot(arch: Arch, spot: bool, name: &str) -> QemuInstance {
    std::env::set_var("HARNESS_EXE", env!("CARGO_BIN_EXE_harness"));
    let v = variant_for(arch, spot);
    let image = harness::cmd::boot::resolve_image(&root(), "contract", arch)
        .await
        .unwrap();
    let dir = harness::repo::target_dir(&root())
        .join("vm-tests")
        .join(name);
    let mut opts = BootOptions::new(&dir);
    opts.label = name.to_string();
    opts.user_data = USER_DATA.as_bytes().to_vec();
    QemuInstance::boot(&v, &image, opts).await.unwrap()
}

async fn wait_home(inst: &QemuInstance) {
    inst.console()
        .wait_for_line(
            "harness-test: home mounted",
            inst.boot_offset(),
            Duration::from_secs(180),
            "test",
        )
        .await
        .unwrap();
}

fn assert_imdsv2_flow(imds: &ImdsHandle) {
    let reqs = imds.requests();
    assert!(!reqs.is_empty(), "the guest made no metadata request");
    assert_eq!(
        reqs[0].method, "PUT",
        "first request must fetch a token: {reqs:?}"
    );
    assert!(reqs[0].path.ends_with("/api/token"), "{reqs:?}");
    let gets: Vec<_> = reqs.iter().filter(|r| r.method == "GET").collect();
    assert!(
        gets.iter().any(|r| r.path.ends_with("/user-data")),
        "user-data was fetched: {reqs:?}"
    );
    for g in &gets {
        assert!(g.had_valid_token, "every GET carries the token: {g:?}");
    }
}

async fn machinery(arch: Arch) {
    let mut inst = boot(arch, true, &format!("machinery-{arch}")).await;
    wait_home(&inst).await;
    assert_imdsv2_flow(inst.imds());
    let p = inst.probe();
    assert_eq!(
        p.succeed("cat /var/lib/user-data-ran")
            .await
            .unwrap()
            .trim(),
        "ran as root"
    );
    assert_eq!(p.succeed("uname -m").await.unwrap().trim(), arch.as_str());
    let serial = p
        .succeed("cat /sys/block/$(basename $(readlink -f /dev/xvdb))/serial")
        .await
        .unwrap();
    assert_eq!(
        serial.trim(),
        inst.home_disk_serial(),
        "/dev/xvdb is the home disk"
    );

    // SSH as root with the served key; a wrong key is an auth failure.
    let target = inst.ssh().unwrap();
    let out = ssh::run(&target, "root", "id -un", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "root");
    let other = tempfile::tempdir().unwrap();
    let wrong = KeyPair::generate(other.path()).unwrap();
    let mut bad = target.clone();
    bad.identity = wrong.private;
    let e = ssh::run(&bad, "root", "true", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(e, SshError::AuthFailed { .. }),
        "wrong key → AuthFailed, got {e}"
    );

    // Spot notice: 404 before, action + time after.
    let before = p.exec(SPOT, Duration::from_secs(30)).await.unwrap();
    assert!(
        before.stdout.contains(" 404 "),
        "before a notice: {}",
        before.stdout
    );
    inst.imds()
        .trigger_spot_interruption("stop", SystemTime::now() + Duration::from_secs(120))
        .unwrap();
    let after = p.exec(SPOT, Duration::from_secs(30)).await.unwrap();
    assert!(
        after.stdout.contains(" 200 ")
            && after.stdout.contains("\"action\":\"stop\"")
            && after.stdout.contains("\"time\""),
        "after the notice: {}",
        after.stdout
    );
    inst.imds().clear_spot_interruption();

    // Graceful stop/start keeps the home disk's data.
    p.succeed("echo kept > /home/marker && sync").await.unwrap();
    inst.stop().await.unwrap();
    inst.start().await.unwrap();
    wait_home(&inst).await;
    assert_eq!(
        inst.probe()
            .succeed("cat /home/marker")
            .await
            .unwrap()
            .trim(),
        "kept"
    );

    if arch != Arch::X86_64 {
        inst.terminate().await.unwrap();
        return;
    }
    // Hard kill (host died): the filesystem still mounts and holds synced data.
    inst.kill().await.unwrap();
    inst.start().await.unwrap();
    wait_home(&inst).await;
    let mounts = inst
        .probe()
        .succeed("grep ' /home ' /proc/mounts")
        .await
        .unwrap();
    assert!(mounts.contains("ext4"), "{mounts}");
    assert_eq!(
        inst.probe()
            .succeed("cat /home/marker")
            .await
            .unwrap()
            .trim(),
        "kept"
    );
    inst.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn machinery_x86_64() {
    machinery(Arch::X86_64).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn machinery_aarch64() {
    machinery(Arch::Aarch64).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn base_image_is_never_modified() {
    let image = harness::cmd::boot::resolve_image(&root(), "contract", Arch::X86_64)
        .await
        .unwrap();
    let before = std::fs::read(&image.base).unwrap();
    let inst = boot(Arch::X86_64, false, "base-untouched").await;
    inst.probe()
        .succeed("echo scribble > /root/scribble && sync")
        .await
        .unwrap();
    drop(inst);
    assert!(
        std::fs::read(&image.base).unwrap() == before,
        "the base image changed"
    );
}

fn qemus_of(pid: u32) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", &format!("harness-vm-{pid}-")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("qemu-system"))
        .map(str::to_string)
        .collect()
}

fn temp_dirs_of(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("harness-vm-{pid}-"))
        })
        .collect()
}

/// Start `harness boot`, wait until its QEMU runs, deliver `signal`, and
/// require that neither the QEMU nor the temp dir survives.
fn hygiene(signal: i32) {
    // Make sure the image is built first, so the signal lands mid-boot.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(harness::cmd::boot::resolve_image(
        &root(),
        "contract",
        Arch::X86_64,
    ))
    .unwrap();
    // Slots of its own: the guest lives seconds (the signal lands mid-boot),
    // and waiting behind other processes' guests (ci/test.sh runs the e2e
    // beside this) would only delay the signal past the bound below.
    let slots = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "boot",
            "aws-nixos",
            "--image",
            "contract",
            "--run",
            "sleep 600",
        ])
        .env("HARNESS_GUEST_SLOTS_DIR", slots.path())
        .env_remove("HARNESS_GUEST_SLOTS_YIELD")
        .current_dir(root())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = std::time::Instant::now();
    while qemus_of(pid).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "harness boot never started QEMU"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!temp_dirs_of(pid).is_empty());
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, signal);
    }
    let _ = child.wait();
    let start = std::time::Instant::now();
    while !(qemus_of(pid).is_empty() && temp_dirs_of(pid).is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "after signal {signal}: qemu {:?}, temp dirs {:?}",
            qemus_of(pid),
            temp_dirs_of(pid)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn no_leftovers_after_sigint() {
    hygiene(libc::SIGINT);
}

#[test]
fn no_leftovers_after_sigkill() {
    hygiene(libc::SIGKILL);
}

#[test]
fn accel_kvm_fails_loudly_when_kvm_does_not_work() {
    let r = harness::machine::qemu::accel::choose(
        Arch::X86_64,
        harness::machine::qemu::accel::AccelRequest::Kvm,
    );
    let probe_says_kvm_works = r.is_ok();
    if probe_says_kvm_works {
        // On a host with working KVM the request is honoured.
        assert_eq!(r.unwrap(), harness::machine::qemu::accel::Accel::Kvm);
    } else {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("KVM does not work") && e.contains("--accel tcg"),
            "{e}"
        );
    }
}

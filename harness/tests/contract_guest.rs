//! Self-tests of the contract guest (`harness::image::contract`), a named
//! double of the NixOS AMI: builds the x86_64 image (cached by content),
//! boots it once under QEMU with the self-test user-data, checks every
//! contract point over the probe shell, then BREAKS each point inside the
//! running guest and shows its check fails:
//! - amazon-init PATH: the recorded tools re-recorded with the system PATH;
//! - default unit PATH: systemd's stock default PATH restored;
//! - FS layout: a /bin/bash and a setuid file on the root disk;
//! - nixos-rebuild: bootstrap data for another bootstrap.nix.
//!
//! and the points where the double follows NixOS 26.05 rather than being
//! kinder (issue 22): nixos-rebuild-ng's exit codes and messages, the
//! switch in its own transient unit, the fstab diff stopping or restarting
//! /home with the units that require it, every failed unit counted, a
//! pre-switch check that aborts after the profile moved, configuration.nix
//! pinned, no FHS loader and only NixOS's base packages on sw.
//!
//! Needs apt (Debian), QEMU and mkfs.ext4; slow (one boot, TCG without KVM).

use std::path::PathBuf;
use std::time::Duration;

use harness::image::contract::{self, selftest};
use harness::image::{BootMethod, ImageKind};
use harness::machine::instance::Instance;
use harness::machine::probe::Probe;
use harness::machine::qemu::{BootOptions, QemuInstance};
use harness::template::variant::Arch;

fn root() -> PathBuf {
    harness::repo::root().unwrap()
}

#[test]
fn builds_and_hits_the_cache() {
    for arch in Arch::ALL {
        build_and_hit_the_cache(arch);
    }
}

fn build_and_hit_the_cache(arch: Arch) {
    let cache = contract::cache_root(&root());
    let img = contract::build_in(&cache, arch).expect("contract image build");
    assert_eq!(img.kind, ImageKind::Contract);
    let BootMethod::Direct { append, .. } = &img.boot else {
        panic!("direct boot expected");
    };
    assert!(append.contains("root=LABEL=contract-root"), "{append}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(img.base.with_file_name("manifest.json")).unwrap(),
    )
    .unwrap();
    for p in contract::AMAZON_INIT_PATH
        .iter()
        .chain(contract::SERVICE_PATH)
    {
        assert!(
            manifest["store"][p]
                .as_str()
                .is_some_and(|s| s.starts_with("/nix/store/")),
            "no store package {p} in {}",
            manifest["store"]
        );
    }
    let again = contract::build_in(&cache, arch).unwrap();
    assert_eq!(again.base, img.base, "second build must hit the cache");
}

async fn boot(name: &str) -> QemuInstance {
    std::env::set_var("HARNESS_EXE", env!("CARGO_BIN_EXE_harness"));
    let v = harness::template::values::discover_repo(&root())
        .unwrap()
        .into_iter()
        .find(|v| v.arch == Arch::X86_64 && !v.is_spot)
        .expect("an x86_64 on-demand variant");
    let image = harness::cmd::boot::resolve_image(&root(), "contract", Arch::X86_64)
        .await
        .unwrap();
    let dir = harness::repo::target_dir(&root())
        .join("contract-tests")
        .join(name);
    let mut opts = BootOptions::new(&dir);
    opts.label = name.to_string();
    opts.user_data = selftest::user_data().into_bytes();
    opts.boot_timeout = Duration::from_secs(600);
    QemuInstance::boot(&v, &image, opts).await.unwrap()
}

/// Waits until amazon-init has run the user-data once more than `runs`.
async fn wait_user_data(p: &dyn Probe, runs: usize) {
    let cmd = format!(
        "for i in $(seq 1 600); do n=$(cat /var/lib/contract-selftest/runs 2>/dev/null | wc -l); \
         [ \"$n\" -gt {runs} ] && exit 0; sleep 1; done; \
         systemctl --failed --no-pager; systemctl status --no-pager amazon-init fetch-ec2-metadata; exit 1"
    );
    let out = p.exec(&cmd, Duration::from_secs(700)).await.unwrap();
    assert_eq!(
        out.status,
        0,
        "amazon-init did not run the user-data (run {}):\n{}{}",
        runs + 1,
        out.stdout,
        out.stderr
    );
}

fn must_fail(what: &str, r: Result<(), String>) -> String {
    match r {
        Ok(()) => panic!("the {what} check passed on a guest where it is broken"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_nixos_contract_and_each_check_can_fail() {
    let mut inst = boot("selftest").await;
    let outcome = async {
        let p = inst.probe();
        wait_user_data(p, 0).await;
        // amazon-init: oneshot that stays active, like the AMI's.
        let st = p
            .succeed("systemctl show -p ActiveState,Result amazon-init.service")
            .await
            .unwrap();
        assert!(
            st.contains("ActiveState=active") && st.contains("Result=success"),
            "{st}"
        );

        selftest::amazon_init_path(p, "/var/lib/contract-selftest")
            .await
            .unwrap();
        selftest::default_unit_path(p).await.unwrap();
        selftest::fs_layout(p).await.unwrap();
        selftest::home_disk_name(p).await.unwrap();
        let ssh = p
            .succeed("systemctl is-active sshd; cat /root/.ssh/authorized_keys | cut -c1-11")
            .await
            .unwrap();
        assert!(
            ssh.starts_with("active\nssh-"),
            "sshd / root key from IMDS: {ssh}"
        );

        // nixos-rebuild double: bootstrap data, from the template's files.
        let bootstrap =
            std::fs::read_to_string(root().join("templates/modules/bootstrap/bootstrap.nix"))
                .unwrap();
        let conf =
            std::fs::read_to_string(root().join("templates/modules/bootstrap/configuration.nix"))
                .unwrap();
        p.succeed(&format!(
            "mkdir -p /etc/coder-bootstrap && cd /etc/coder-bootstrap && \
             cat >bootstrap.nix <<'EOF_B'\n{bootstrap}EOF_B\n\
             cat >configuration.nix <<'EOF_C'\n{conf}EOF_C\n\
             printf '%s' '{{\"agent_user\":\"coder\",\"flake_uri\":\"path:/var/lib/harness/fixtures#good\"}}' >params.json"
        ))
        .await
        .unwrap();
        selftest::bootstrap_switch(p, "/etc/coder-bootstrap", "coder")
            .await
            .unwrap();
        // The evidence "this boot did not run the bootstrap switch" reads.
        let (n, calls) = harness::workspace::contract::bootstrap_switches_this_boot(&inst)
            .await
            .unwrap();
        assert_eq!(n, 1, "one bootstrap switch this boot: {calls}");
        selftest::failing_unit_switch(p, "dev", "coder")
            .await
            .unwrap();
        selftest::broken_fixtures(p).await.unwrap();
        let (st, out) = selftest::rebuild(p, "switch --flake path:/var/lib/harness/fixtures#good")
            .await
            .unwrap();
        assert_eq!(st, 0, "good fixture switch:\n{out}");
        p.succeed("id coder && id dev").await.unwrap();

        // NixOS 26.05's binaries only: no FHS loader, no jq on sw.
        selftest::nixos_binaries_only(p).await.unwrap();
        // Every file the bootstrap evaluates is pinned.
        selftest::unpinned_configuration_is_refused(p, "/etc/coder-bootstrap")
            .await
            .unwrap();
        // A pre-switch check that fails: the profile moved, nothing active.
        selftest::aborted_activation_moves_only_the_profile(p)
            .await
            .unwrap();
        // Every failed unit on the system counts, not only the generation's.
        selftest::unrelated_failed_unit_counts(p, "good")
            .await
            .unwrap();
        // The fstab diff: a changed /home restarts, a missing one stops,
        // each with the units that require it; the switch runs in its own
        // transient unit and outlives a caller it stops.
        selftest::mount_changed_restarts_its_users(p).await.unwrap();
        let (st, out) = selftest::rebuild(p, "switch --flake path:/var/lib/harness/fixtures#good")
            .await
            .unwrap();
        assert!(
            st == 0 && out.contains("restarting the following units: home.mount"),
            "back to /dev/xvdb (exit {st}):\n{out}"
        );
        selftest::mount_removed_stops_its_users(p).await.unwrap();
        let (st, out) = selftest::rebuild(p, "switch --flake path:/var/lib/harness/fixtures#good")
            .await
            .unwrap();
        assert_eq!(st, 0, "back to good, /home mounted again:\n{out}");
        p.succeed("findmnt -n /home").await.unwrap();

        // Every boot: amazon-init runs the user-data again after a restart,
        // and /home comes back from the declared file systems.
        inst.stop().await.unwrap();
        inst.start().await.unwrap();
        let p = inst.probe();
        wait_user_data(p, 1).await;
        let home = p.succeed("findmnt -n -o TARGET /home").await.unwrap();
        assert_eq!(
            home.trim(),
            "/home",
            "the generation's /home is mounted on boot"
        );

        // --- each check can fail -------------------------------------
        // 1. the same user-data under the system PATH finds curl, sudo…
        p.succeed(
            "mkdir -p /run/neg && sed 's|/var/lib/contract-selftest|/run/neg|' /etc/ec2-metadata/user-data >/run/neg/ud && \
             PATH=/run/wrappers/bin:/run/current-system/sw/bin bash /run/neg/ud",
        )
        .await
        .unwrap();
        let e = must_fail(
            "amazon-init PATH",
            selftest::amazon_init_path(p, "/run/neg").await,
        );
        assert!(
            e.contains("PATH differs") || e.contains("must NOT be found"),
            "{e}"
        );
        // 3. a /bin/bash and a setuid file on the root disk.
        p.succeed("ln -s /run/current-system/sw/bin/bash /bin/bash && cp /run/current-system/sw/bin/true /usr/bin/suid-true && chmod 4755 /usr/bin/suid-true").await.unwrap();
        let e = must_fail("FS layout", selftest::fs_layout(p).await);
        assert!(e.contains("/bin/bash") && e.contains("setuid"), "{e}");
        p.succeed("rm /bin/bash /usr/bin/suid-true").await.unwrap();
        selftest::fs_layout(p).await.unwrap();
        // 4. bootstrap data for a bootstrap.nix the double does not describe.
        p.succeed("echo '# changed' >>/etc/coder-bootstrap/bootstrap.nix")
            .await
            .unwrap();
        let (st, out) = selftest::rebuild(
            p,
            "switch -I nixos-config=/etc/coder-bootstrap/configuration.nix",
        )
        .await
        .unwrap();
        assert!(
            st != 0 && out.contains("no declaration data for this bootstrap.nix"),
            "exit {st}: {out}"
        );
        // 2. systemd's stock default PATH restored: sh is found again.
        p.succeed("rm /etc/systemd/system.conf.d/10-nixos-default-path.conf && systemctl daemon-reexec && sleep 2").await.unwrap();
        let e = must_fail("default unit PATH", selftest::default_unit_path(p).await);
        assert!(e.contains("found `sh`"), "{e}");
    };
    let r = tokio::time::timeout(Duration::from_secs(2400), outcome).await;
    inst.save_artifacts();
    inst.terminate().await.ok();
    r.expect("self-tests timed out");
}

//! `GuestNet::Offline` (the NixOS test image's network) for real, under
//! QEMU with the contract guest: with `restrict=on` the guest still
//! gets its user-data over IMDS (guestfwd), is reachable over SSH
//! (hostfwd) and reaches a host port given to it at 169.0.0.2 (guestfwd
//! relay), but no other host port; on the open network the other port is
//! reachable (so the assertion can fail). The contract guest is a double
//! of the NixOS image: this proves QEMU/libslirp's behaviour with the argv
//! the harness builds, not the NixOS guest.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use harness::machine::instance::Instance;
use harness::machine::qemu::argv::GuestNet;
use harness::machine::qemu::{BootOptions, QemuInstance};
use harness::template::variant::Arch;

const USER_DATA: &str = "#!/bin/sh\necho ran > /var/lib/user-data-ran\n";

/// A host listener on 127.0.0.1 that greets every connection with `hello-<port>`.
fn greeter() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = writeln!(s, "hello-{port}");
        }
    });
    port
}

fn root() -> PathBuf {
    harness::repo::root().unwrap()
}

async fn boot(net: GuestNet, name: &str) -> QemuInstance {
    std::env::set_var("HARNESS_EXE", env!("CARGO_BIN_EXE_harness"));
    let v = harness::template::values::discover_repo(&root())
        .unwrap()
        .into_iter()
        .find(|v| v.arch == Arch::X86_64)
        .expect("an x86_64 variant");
    let image = harness::cmd::boot::resolve_image(&root(), "contract", Arch::X86_64)
        .await
        .unwrap();
    let dir = harness::repo::target_dir(&root())
        .join("vm-tests")
        .join(name);
    let mut opts = BootOptions::new(&dir);
    opts.label = name.into();
    opts.user_data = USER_DATA.as_bytes().to_vec();
    opts.net = net;
    QemuInstance::boot(&v, &image, opts).await.unwrap()
}

/// What the guest reads from 169.0.0.2:<port> (empty if it cannot connect).
async fn read_from_guest(inst: &QemuInstance, port: u16) -> String {
    inst.probe()
        .exec(
            &format!("timeout 5 bash -c 'exec 3<>/dev/tcp/169.0.0.2/{port} && cat <&3'"),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_guest_reaches_only_its_forwards() {
    let given = greeter();
    let other = greeter();
    let mut inst = boot(
        GuestNet::Offline {
            host_ports: vec![given],
        },
        "offline-net",
    )
    .await;
    // IMDS through guestfwd: the user-data was fetched and ran.
    inst.probe()
        .wait_until_succeeds("test -e /var/lib/user-data-ran", Duration::from_secs(120))
        .await
        .unwrap();
    // SSH through hostfwd.
    let out = harness::machine::ssh::run(
        &inst.ssh().unwrap(),
        "root",
        "echo ssh-ok",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout.trim(), "ssh-ok");
    assert_eq!(
        read_from_guest(&inst, given).await.trim(),
        format!("hello-{given}"),
        "the given host port is relayed"
    );
    let seen = read_from_guest(&inst, other).await;
    assert!(
        !seen.contains("hello"),
        "expected the offline guest NOT to reach host port {other}, it read {seen:?}"
    );
    inst.terminate().await.unwrap();

    // The open network reaches the same port: the assertion above can fail.
    let mut open = boot(GuestNet::Open, "open-net").await;
    assert_eq!(
        read_from_guest(&open, other).await.trim(),
        format!("hello-{other}")
    );
    open.terminate().await.unwrap();
}

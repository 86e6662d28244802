//! SSH client tests against a real OpenSSH sshd started on a free loopback port.
//!
//! Needs Debian's `openssh-server` (for `/usr/sbin/sshd`) and `openssh-client`.
//! Without sshd the tests fail with a message saying what to install (a
//! test that did not run never counts as a pass).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::machine::instance::SshTarget;
use harness::machine::ssh::{self, KeyPair, SshError};

struct Sshd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Start sshd authorizing `authorized` (a public key line) for every user.
fn start_sshd(authorized: &str) -> Option<Sshd> {
    let Some(sshd) = sshd_path() else {
        // A test that did not run must not count as a pass.
        panic!("sshd not found: apt-get install -y --no-install-recommends openssh-server (bash ci/setup-debian.sh does)");
    };
    // sshd running as root needs its privilege-separation directory.
    if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").exists() {
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .status()
        .unwrap();
    assert!(st.success());
    let auth = dir.path().join("authorized_keys");
    std::fs::write(&auth, format!("{authorized}\n")).unwrap();
    let port = free_port();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n",
            host_key.display(),
            auth.display()
        ),
    )
    .unwrap();
    let child = Command::new(&sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Sshd {
        child,
        port,
        _dir: dir,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sshd did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(s)
}

fn target(port: u16, key: &KeyPair) -> SshTarget {
    SshTarget {
        host: "127.0.0.1".into(),
        port,
        identity: key.private.clone(),
    }
}

#[test]
fn keypair_is_ed25519_and_private_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let k = KeyPair::generate(dir.path()).unwrap();
    assert!(k.public.starts_with("ssh-ed25519 "), "{}", k.public);
    let mode = std::fs::metadata(&k.private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn runs_command_as_the_right_user() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate(dir.path()).unwrap();
    let Some(sshd) = start_sshd(&key.public) else {
        return;
    };
    let t = target(sshd.port, &key);
    let me = whoami();
    ssh::wait_ready(&t, &me, Duration::from_secs(30))
        .await
        .unwrap();
    let out = ssh::run(
        &t,
        &me,
        "id -un; echo err >&2; exit 3",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout.trim(), me);
    assert_eq!(out.stderr.trim(), "err");
    assert_eq!(out.status, 3);
}

#[tokio::test]
async fn wrong_key_is_auth_failed() {
    let dir = tempfile::tempdir().unwrap();
    let good = KeyPair::generate(&dir.path().join("good")).unwrap();
    let bad = KeyPair::generate(&dir.path().join("bad")).unwrap();
    let Some(sshd) = start_sshd(&good.public) else {
        return;
    };
    let me = whoami();
    // The server is up and accepts the good key…
    ssh::wait_ready(&target(sshd.port, &good), &me, Duration::from_secs(30))
        .await
        .unwrap();
    // …and rejects the other one with AuthFailed.
    let err = ssh::run(
        &target(sshd.port, &bad),
        &me,
        "true",
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", sshd.port)),
        "{err}"
    );
    // A user that does not exist is an auth failure too.
    let err = ssh::run(
        &target(sshd.port, &good),
        "no-such-user-xyz",
        "true",
        Duration::from_secs(30),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate(dir.path()).unwrap();
    let port = free_port();
    let err = ssh::run(&target(port, &key), "root", "true", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::ConnectionRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    // wait_ready gives up with the last error.
    let err = ssh::wait_ready(&target(port, &key), "root", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::ConnectionRefused { .. }), "{err:?}");
}

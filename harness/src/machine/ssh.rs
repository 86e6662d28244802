//! SSH client checks through the system OpenSSH client: key generation, run-as-user, distinct auth/refused errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::machine::instance::SshTarget;
use crate::machine::probe::ExecOutput;
use crate::tools;

/// An ed25519 key pair without passphrase (private key mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The OpenSSH public key line (`ssh-ed25519 AAAA… harness`).
    pub public: String,
}

impl KeyPair {
    /// Generate `dir/id_ed25519{,.pub}` with `ssh-keygen`.
    pub fn generate(dir: &Path) -> anyhow::Result<KeyPair> {
        use std::os::unix::fs::PermissionsExt;
        let keygen = tools::find("ssh-keygen")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let private = dir.join("id_ed25519");
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(private.with_extension("pub"));
        let out = std::process::Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "harness", "-f"])
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", keygen.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "ssh-keygen: expected exit 0, seen {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))?;
        let public = std::fs::read_to_string(private.with_extension("pub"))?
            .trim()
            .to_string();
        Ok(KeyPair { private, public })
    }
}

/// Why an SSH command did not run.  `ssh` exits 255 for its own errors; the
/// kind is read from its stderr.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh {user}@{target}: expected key authentication to succeed, seen: {stderr}")]
    AuthFailed {
        target: String,
        user: String,
        stderr: String,
    },
    #[error("ssh {target}: expected a listening sshd, seen connection refused: {stderr}")]
    ConnectionRefused { target: String, stderr: String },
    #[error("ssh {target}: expected `{command}` to finish within {timeout:?}, seen a timeout")]
    Timeout {
        target: String,
        command: String,
        timeout: Duration,
    },
    #[error("ssh {target}: expected a reachable host, seen: {stderr}")]
    HostUnreachable { target: String, stderr: String },
    #[error("ssh {target}: {message}")]
    Other { target: String, message: String },
}

fn target_str(t: &SshTarget) -> String {
    format!("{}:{}", t.host, t.port)
}

/// Build the `ssh` argv (without the program) for `cmd` as `user`.
pub fn ssh_args(
    target: &SshTarget,
    user: &str,
    cmd: &str,
    connect_timeout: Duration,
) -> Vec<String> {
    let secs = connect_timeout.as_secs().max(1);
    let mut a: Vec<String> = [
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PasswordAuthentication=no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("-o".into());
    a.push(format!("ConnectTimeout={secs}"));
    a.push("-i".into());
    a.push(target.identity.to_string_lossy().into_owned());
    a.push("-p".into());
    a.push(target.port.to_string());
    a.push("-l".into());
    a.push(user.to_string());
    a.push(target.host.clone());
    a.push("--".into());
    a.push(cmd.to_string());
    a
}

/// Classify ssh's own failure (exit 255) from its stderr.
pub fn classify(target: &SshTarget, user: &str, stderr: &str) -> SshError {
    let t = target_str(target);
    let s = stderr.trim().to_string();
    let l = s.to_ascii_lowercase();
    if l.contains("permission denied") || l.contains("too many authentication failures") {
        SshError::AuthFailed {
            target: t,
            user: user.to_string(),
            stderr: s,
        }
    } else if l.contains("connection refused") {
        SshError::ConnectionRefused {
            target: t,
            stderr: s,
        }
    } else if l.contains("no route to host")
        || l.contains("network is unreachable")
        || l.contains("could not resolve hostname")
        || l.contains("name or service not known")
    {
        SshError::HostUnreachable {
            target: t,
            stderr: s,
        }
    } else if l.contains("timed out") {
        SshError::Timeout {
            target: t,
            command: "(connect)".into(),
            timeout: Duration::ZERO,
        }
    } else {
        SshError::Other {
            target: t,
            message: format!("expected exit status of the remote command, seen ssh exit 255: {s}"),
        }
    }
}

/// Run `cmd` as `user` on `target`; the remote command's exit status is
/// returned in [`ExecOutput`] (non-zero is not an error).
pub async fn run(
    target: &SshTarget,
    user: &str,
    cmd: &str,
    timeout: Duration,
) -> Result<ExecOutput, SshError> {
    let other = |message: String| SshError::Other {
        target: target_str(target),
        message,
    };
    let ssh = tools::find("ssh").map_err(|e| other(e.to_string()))?;
    let connect = timeout.min(Duration::from_secs(30));
    let child = tokio::process::Command::new(&ssh)
        .args(ssh_args(target, user, cmd, connect))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| other(format!("spawning {}: {e}", ssh.display())))?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return Err(SshError::Timeout {
                target: target_str(target),
                command: cmd.to_string(),
                timeout,
            });
        }
        Ok(Err(e)) => return Err(other(format!("waiting for ssh: {e}"))),
        Ok(Ok(o)) => o,
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(255) => Err(classify(target, user, &stderr)),
        Some(code) => Ok(ExecOutput {
            command: cmd.to_string(),
            status: code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }),
        None => Err(other(format!("ssh killed by a signal: {}", out.status))),
    }
}

/// Retry `true` as `user` until it succeeds or `within` passes; progress on
/// stderr.  Returns the last error on timeout.
pub async fn wait_ready(target: &SshTarget, user: &str, within: Duration) -> Result<(), SshError> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        let attempt = left.clamp(Duration::from_secs(1), Duration::from_secs(15));
        let err = match run(target, user, "true", attempt).await {
            Ok(o) if o.status == 0 => return Ok(()),
            Ok(o) => SshError::Other {
                target: target_str(target),
                message: format!("expected `true` to exit 0, seen {}", o.status),
            },
            Err(e) => e,
        };
        if start.elapsed() >= within {
            return Err(err);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "waiting for ssh {user}@{} ({}s): {err}",
                target_str(target),
                start.elapsed().as_secs()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port: 2222,
            identity: "/k".into(),
        }
    }

    #[test]
    fn classifies_ssh_stderr() {
        let c = |s: &str| classify(&t(), "root", s);
        assert!(matches!(
            c("root@127.0.0.1: Permission denied (publickey)."),
            SshError::AuthFailed { .. }
        ));
        assert!(matches!(
            c("ssh: connect to host 127.0.0.1 port 2222: Connection refused"),
            SshError::ConnectionRefused { .. }
        ));
        assert!(matches!(
            c("ssh: connect to host 127.0.0.1 port 2222: Connection timed out"),
            SshError::Timeout { .. }
        ));
        assert!(matches!(
            c("ssh: connect to host 10.9.9.9 port 22: No route to host"),
            SshError::HostUnreachable { .. }
        ));
        let e = c("kex_exchange_identification: Connection closed by remote host");
        assert!(matches!(e, SshError::Other { .. }), "{e:?}");
        assert!(e.to_string().contains("127.0.0.1:2222"), "{e}");
    }

    #[test]
    fn argv_has_batch_options_and_user() {
        let a = ssh_args(&t(), "alice", "echo hi", Duration::from_secs(7));
        let s = a.join(" ");
        for want in [
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ConnectTimeout=7",
            "-i /k",
            "-p 2222",
            "-l alice",
        ] {
            assert!(s.contains(want), "{want} missing: {s}");
        }
        assert_eq!(a.last().unwrap(), "echo hi");
    }
}

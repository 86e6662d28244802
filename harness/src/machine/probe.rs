//! Guest probes: run a command as root inside an instance and get its
//! stdout, stderr and exit status, without relying on the guest network.
//!
//! The QEMU backend implements [`Probe`] over a root shell on the
//! virtio-console `hvc0` (the NixOS test driver's "backdoor" design); the
//! EC2 backend implements it over SSH.  The helpers (`succeed`, `fail`,
//! `wait_until_succeeds`, …) are provided methods shared by both.

use std::time::Duration;

use async_trait::async_trait;

/// What one probe command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command as sent, for evidence in verdicts.
    pub command: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `evidence`: what was seen and where the logs are (may be empty).
    #[error("probe command `{command}` timed out after {timeout:?}{}", if .evidence.is_empty() { String::new() } else { format!("; {}", .evidence) })]
    Timeout {
        command: String,
        timeout: Duration,
        evidence: String,
    },
    #[error("probe channel closed: {0}")]
    Closed(String),
    #[error("probe I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{command}` was expected to {expected} but exited {status}\nstdout: {stdout}\nstderr: {stderr}")]
    Unexpected {
        command: String,
        expected: &'static str,
        status: i32,
        stdout: String,
        stderr: String,
    },
    #[error("gave up after {waited:?} waiting for `{command}` to succeed; last result: exit {status}, output: {output}")]
    GaveUp {
        command: String,
        waited: Duration,
        status: i32,
        output: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Default timeout for a single probe command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A root shell inside the guest.
#[async_trait]
pub trait Probe: Send + Sync {
    /// The factor this probe scales timeouts by (≥ 1): how much slower the
    /// guest booted here than on the reference machine
    /// ([`crate::machine::qemu::pace`]); 1 where nothing was measured.
    fn pace(&self) -> f64 {
        1.0
    }

    /// Run `cmd` with `/bin/sh -c` semantics as root; never fails on a
    /// non-zero exit status, only on a broken channel or a timeout.
    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ProbeError>;

    /// Run `cmd`, require exit status 0, return stdout.
    async fn succeed(&self, cmd: &str) -> Result<String, ProbeError> {
        let out = self.exec(cmd, DEFAULT_TIMEOUT).await?;
        if out.status == 0 {
            Ok(out.stdout)
        } else {
            Err(ProbeError::Unexpected {
                command: out.command,
                expected: "succeed",
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Run `cmd`, require a non-zero exit status, return stdout.
    async fn fail(&self, cmd: &str) -> Result<String, ProbeError> {
        let out = self.exec(cmd, DEFAULT_TIMEOUT).await?;
        if out.status != 0 {
            Ok(out.stdout)
        } else {
            Err(ProbeError::Unexpected {
                command: out.command,
                expected: "fail",
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// Re-run `cmd` once a second until it exits 0 or `within` passes.
    /// `within` is scaled by [`Probe::pace`].
    async fn wait_until_succeeds(&self, cmd: &str, within: Duration) -> Result<String, ProbeError> {
        let pace = self.pace();
        let within = within.mul_f64(pace);
        let start = std::time::Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            // exec scales its timeout by the pace itself.
            let out = self
                .exec(cmd, left.max(Duration::from_secs(1)).div_f64(pace))
                .await?;
            if out.status == 0 {
                return Ok(out.stdout);
            }
            if start.elapsed() >= within {
                return Err(ProbeError::GaveUp {
                    command: cmd.to_string(),
                    waited: start.elapsed(),
                    status: out.status,
                    output: format!("{}{}", out.stdout, out.stderr),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Wait until `path` exists in the guest.
    async fn wait_for_file(&self, path: &str, within: Duration) -> Result<(), ProbeError> {
        self.wait_until_succeeds(&format!("test -e {}", shell_quote(path)), within)
            .await
            .map(|_| ())
    }

    /// Wait until something listens on TCP `port` inside the guest.
    async fn wait_for_open_port(&self, port: u16, within: Duration) -> Result<(), ProbeError> {
        // /proc/net/tcp{,6} lists listeners (state 0A) with the port in hex;
        // this needs no `ss`/`netstat` in the guest.
        let cmd = format!(
            "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4==\"0A\"{{print $2}}' | grep -qi ':{port:04X}$'"
        );
        self.wait_until_succeeds(&cmd, within).await.map(|_| ())
    }

    /// Copy a guest file's bytes out (base64 over the channel).
    async fn copy_out(&self, path: &str) -> Result<Vec<u8>, ProbeError> {
        use base64::Engine;
        let out = self
            .succeed(&format!("base64 {}", shell_quote(path)))
            .await?;
        let clean: String = out.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| ProbeError::Other(format!("copy_out {path}: bad base64: {e}")))
    }
}

/// Quote `s` for a POSIX shell as one word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_makes_hostile_strings_inert() {
        assert_eq!(shell_quote("/home/x"), "/home/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's;rm -rf /"), r"'it'\''s;rm -rf /'");
        assert_eq!(shell_quote(""), "''");
    }
}

//! The hvc0 probe: a root shell the guest runs on its virtio console
//! (like the NixOS test driver's backdoor). QEMU connects the console to a
//! unix socket the harness listens on; commands travel base64-encoded, and
//! replies come back between markers the echoed input can never match.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::machine::probe::{ExecOutput, Probe, ProbeError};

/// Line the guest's probe shell prints when it starts.
pub const READY: &str = "harness-probe: ready";

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    seq: u64,
}

/// Root shell on hvc0.
pub struct HvcProbe {
    conn: Mutex<Option<Conn>>,
}

impl Default for HvcProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HvcProbe {
    pub fn new() -> HvcProbe {
        HvcProbe {
            conn: Mutex::new(None),
        }
    }

    /// Bind the socket QEMU will connect to (before QEMU starts).
    pub fn listen(path: &Path) -> anyhow::Result<UnixListener> {
        let _ = std::fs::remove_file(path);
        Ok(UnixListener::bind(path)?)
    }

    /// Accept QEMU's connection and wait for the guest's ready line.
    pub async fn attach(&self, listener: &UnixListener, within: Duration) -> anyhow::Result<()> {
        let (stream, _) = tokio::time::timeout(within, listener.accept())
            .await
            .map_err(|_| {
                anyhow::anyhow!("QEMU did not connect to the probe socket within {within:?}")
            })??;
        self.attach_stream(stream, within).await
    }

    async fn attach_stream(&self, stream: UnixStream, within: Duration) -> anyhow::Result<()> {
        let (r, w) = stream.into_split();
        let mut reader = BufReader::new(r);
        let wait = async {
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).await?;
                anyhow::ensure!(n > 0, "probe channel closed before the guest was ready");
                if line.contains(READY) {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(within, wait).await.map_err(|_| {
            anyhow::anyhow!("the guest's probe shell did not print `{READY}` within {within:?}")
        })??;
        *self.conn.lock().await = Some(Conn {
            reader,
            writer: w,
            seq: 0,
        });
        Ok(())
    }

    /// Forget the connection (the VM stopped).
    pub async fn detach(&self) {
        *self.conn.lock().await = None;
    }
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<undecodable probe output: {e}>"))
}

/// The shell line sent for command number `seq`.  Markers are built from
/// two quoted halves, so an echo of this line never contains them.
pub fn wrap(cmd: &str, seq: u64) -> String {
    format!(
        "echo {c} | base64 -d > /tmp/.hp.sh; sh /tmp/.hp.sh >/tmp/.hp.out 2>/tmp/.hp.err </dev/null; \
         echo \"HP-\"\"{seq} $?\"; base64 /tmp/.hp.out | tr -d '\\n'; echo; base64 /tmp/.hp.err | tr -d '\\n'; echo; echo \"HP-END\"\"-{seq}\"\n",
        c = b64(cmd.as_bytes())
    )
}

#[async_trait]
impl Probe for HvcProbe {
    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ProbeError> {
        let mut guard = self.conn.lock().await;
        let conn = guard
            .as_mut()
            .ok_or_else(|| ProbeError::Closed("the instance is not running".into()))?;
        conn.seq += 1;
        let seq = conn.seq;
        conn.writer.write_all(wrap(cmd, seq).as_bytes()).await?;
        let start_marker = format!("HP-{seq} ");
        let end_marker = format!("HP-END-{seq}");
        let read = async {
            let mut line = String::new();
            let mut status = None;
            let mut body: Vec<String> = Vec::new();
            loop {
                line.clear();
                let n = conn.reader.read_line(&mut line).await?;
                if n == 0 {
                    return Err(ProbeError::Closed(
                        "probe channel closed (guest powered off?)".into(),
                    ));
                }
                let l = line.trim_end_matches(['\n', '\r']);
                if let Some(rest) = l.strip_prefix(&start_marker) {
                    status = rest.trim().parse::<i32>().ok();
                    body.clear();
                } else if l == end_marker {
                    break;
                } else if status.is_some() {
                    body.push(l.to_string());
                }
            }
            Ok::<_, ProbeError>((status.unwrap_or(-1), body))
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok((status, body))) => Ok(ExecOutput {
                command: cmd.to_string(),
                status,
                stdout: unb64(body.first().map(String::as_str).unwrap_or("")),
                stderr: unb64(body.get(1).map(String::as_str).unwrap_or("")),
            }),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                // The shell is still busy with the command: the channel is
                // out of sync, so drop it; callers see the timeout.
                *guard = None;
                Err(ProbeError::Timeout {
                    command: cmd.to_string(),
                    timeout,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_line_never_contains_its_own_markers() {
        let w = wrap("echo HP-1 0; echo HP-END-1", 1);
        assert!(!w.contains("HP-1 "), "{w}");
        assert!(!w.contains("HP-END-1"), "{w}");
        assert!(w.ends_with('\n'));
    }

    /// A real `sh` standing in for the guest end of the channel.
    #[tokio::test]
    async fn exec_round_trips_through_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("p.sock");
        let listener = HvcProbe::listen(&sock).unwrap();
        let script = format!(
            "exec python3 -c 'import socket,subprocess,sys; s=socket.socket(socket.AF_UNIX); s.connect(\"{}\"); f=s.makefile(\"rwb\",0); f.write(b\"{READY}\\n\"); subprocess.run([\"sh\"], stdin=f, stdout=f)'",
            sock.display()
        );
        let mut guest = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = HvcProbe::new();
        p.attach(&listener, Duration::from_secs(10)).await.unwrap();
        let out = p
            .exec("echo out; echo err >&2; exit 3", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let q = p.succeed("printf '%s' \"it's (odd) $HOME\"").await.unwrap();
        assert!(q.starts_with("it's (odd) "), "{q}");
        assert!(p.fail("false").await.is_ok());
        let e = p
            .exec("sleep 5", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{e}");
        guest.kill().await.ok();
    }
}

//! A minimal QMP client over the instance's unix socket: capabilities
//! handshake, then `system_powerdown` (graceful stop), `quit` (hard kill),
//! `query-status`, and `savevm`/`loadvm` (VM snapshots for reuse).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Reply wait for ordinary commands.
const REPLY: Duration = Duration::from_secs(10);
/// Reply wait for `savevm`/`loadvm` on the reference machine.
const SNAPSHOT_REPLY: Duration = Duration::from_secs(60);

pub struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    /// Connect (retrying while QEMU creates the socket) and negotiate.
    pub async fn connect(path: &Path, within: Duration) -> anyhow::Result<Qmp> {
        let start = std::time::Instant::now();
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if start.elapsed() < within => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => anyhow::bail!("QMP socket {}: {e}", path.display()),
            }
        };
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = q.read_msg(REPLY).await?;
        anyhow::ensure!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        q.execute("qmp_capabilities", json!({})).await?;
        Ok(q)
    }

    async fn read_msg(&mut self, within: Duration) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(within, self.reader.read_line(&mut line))
            .await
            .map_err(|_| anyhow::anyhow!("QEMU did not answer on QMP within {within:?}"))??;
        anyhow::ensure!(n > 0, "QMP connection closed");
        Ok(serde_json::from_str(&line)?)
    }

    /// Run a command; events that arrive first are skipped.
    pub async fn execute(&mut self, cmd: &str, args: Value) -> anyhow::Result<Value> {
        self.execute_within(cmd, args, REPLY).await
    }

    async fn execute_within(
        &mut self,
        cmd: &str,
        args: Value,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let msg = json!({"execute": cmd, "arguments": args});
        self.writer.write_all(format!("{msg}\n").as_bytes()).await?;
        loop {
            let v = self.read_msg(within).await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                anyhow::bail!("QMP {cmd} failed: {e}");
            }
        }
    }

    pub async fn system_powerdown(&mut self) -> anyhow::Result<()> {
        self.execute("system_powerdown", json!({}))
            .await
            .map(|_| ())
    }

    /// Ask QEMU to exit now (the connection may close before a reply).
    pub async fn quit(&mut self) {
        let _ = self.execute("quit", json!({})).await;
    }

    pub async fn status(&mut self) -> anyhow::Result<String> {
        let r = self.execute("query-status", json!({})).await?;
        Ok(r["status"].as_str().unwrap_or_default().to_string())
    }

    /// Run a human-monitor command; HMP reports errors as its output text.
    /// `savevm`/`loadvm` write or read the whole RAM and both disks'
    /// snapshot: their wait scales with the measured pace.
    async fn hmp(&mut self, line: &str) -> anyhow::Result<String> {
        let within = SNAPSHOT_REPLY.mul_f64(super::pace::current());
        let r = self
            .execute_within(
                "human-monitor-command",
                json!({"command-line": line}),
                within,
            )
            .await?;
        Ok(r.as_str().unwrap_or_default().trim().to_string())
    }

    /// Save the whole VM (RAM, devices, every qcow2 disk) as internal
    /// snapshot `name`.
    pub async fn savevm(&mut self, name: &str) -> anyhow::Result<()> {
        let out = self.hmp(&format!("savevm {name}")).await?;
        anyhow::ensure!(
            out.is_empty(),
            "expected QEMU to save snapshot {name}; it said: {out}"
        );
        Ok(())
    }

    /// Restore the VM to internal snapshot `name` (RAM and disks).
    pub async fn loadvm(&mut self, name: &str) -> anyhow::Result<()> {
        let out = self.hmp(&format!("loadvm {name}")).await?;
        anyhow::ensure!(
            out.is_empty(),
            "expected QEMU to restore snapshot {name}; it said: {out}"
        );
        Ok(())
    }
}

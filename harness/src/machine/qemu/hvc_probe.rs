//! The hvc0 probe: a root shell the guest runs on its virtio console
//! (like the NixOS test driver's backdoor). QEMU connects the console to a
//! unix socket the harness listens on; commands travel quoted (or
//! base64-encoded when they contain a marker's prefix), and replies come
//! back base64-encoded between markers the echoed input can never match.
//!
//! A slow command never poisons the channel:
//! - the guest runs every command under its own `timeout` (coreutils and
//!   busybox both have it), so the shell comes back and prints its markers
//!   even when the command hangs;
//! - the host waits that long plus a grace; if the markers still have not
//!   come, the command is reported as timed out (which command, after how
//!   long, where the serial log is) and remembered as pending;
//! - the next command first drains the channel up to the pending
//!   command's end marker (bounded), so it reads its own reply; if the
//!   shell is still busy, that command fails with what it waited for,
//!   and the one after tries again. Only end of file (QEMU closed the
//!   socket) drops the channel.
//!
//! The command, its stdout and its stderr are files in a directory private
//! to the running probe shell (`$HP_D`): the probe shell makes it under
//! `/run` at start (`harness/contract-guest/probe-shell`); a shell without
//! one gets `mktemp -d` (under `$TMPDIR`) from the first wrapped line.
//! Never fixed names in `/tmp`: at boot `systemd-tmpfiles-setup.service`
//! empties `/tmp` (`D /tmp` in systemd's `tmp.conf`, run with `--remove`)
//! while the probe shell already runs, which deleted the first command's
//! files (bash exits 127 when it cannot open its script: the
//! `tests/contract_guest.rs` flake); on a host, fixed names collide
//! between users.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::machine::probe::{ExecOutput, Probe, ProbeError};

/// Line the guest's probe shell prints when it starts.
pub const READY: &str = "harness-probe: ready";

/// The guest's `timeout -k`: SIGKILL this long after the SIGTERM.
pub const KILL_AFTER: Duration = Duration::from_secs(5);
/// What the host waits beyond the guest's own timeout and kill before it
/// reports a command as timed out (at least this, or a tenth of the
/// command's timeout).
pub const GRACE: Duration = Duration::from_secs(15);
/// How long the next command waits for a timed-out command's end marker.
pub const RESYNC: Duration = Duration::from_secs(30);

/// A command the host stopped waiting for; its reply may still come.
#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    command: String,
    timeout: Duration,
    sent: Instant,
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    seq: u64,
    pending: Option<Pending>,
}

/// Root shell on hvc0.
pub struct HvcProbe {
    conn: Mutex<Option<Conn>>,
    /// Where the logs are, for error messages (set by the instance).
    evidence: std::sync::Mutex<String>,
    /// Timeout factor ([`crate::machine::qemu::pace`]), as f64 bits.
    pace: AtomicU64,
    grace: Duration,
    resync: Duration,
    /// Commands sent since this probe was made (over every attach).
    sent: AtomicU64,
}

impl Default for HvcProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a read of the channel ended without the reply.
enum Cut {
    Eof,
    Io(std::io::Error),
}

impl HvcProbe {
    pub fn new() -> HvcProbe {
        HvcProbe {
            conn: Mutex::new(None),
            evidence: std::sync::Mutex::new(String::new()),
            pace: AtomicU64::new(1f64.to_bits()),
            grace: GRACE,
            resync: RESYNC,
            sent: AtomicU64::new(0),
        }
    }

    /// How many commands this probe has sent (for the scenario timeline:
    /// each starts processes in the guest).
    pub fn commands_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Say where the evidence is (e.g. `serial log: …`), for error messages.
    pub fn set_evidence(&self, evidence: impl Into<String>) {
        *self.evidence.lock().unwrap() = evidence.into();
    }

    /// Scale every command's timeout by `factor` (≥ 1).
    pub fn set_pace(&self, factor: f64) {
        self.pace
            .store(factor.max(1.0).to_bits(), Ordering::Relaxed);
    }

    fn evidence(&self) -> String {
        self.evidence.lock().unwrap().clone()
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
            pending: None,
        });
        Ok(())
    }

    /// Forget the connection (the VM stopped).
    pub async fn detach(&self) {
        *self.conn.lock().await = None;
    }

    /// Whether the channel is attached with no command left pending (a
    /// pooled guest is only reused when this holds and a round trip works).
    pub async fn in_sync(&self) -> bool {
        matches!(&*self.conn.lock().await, Some(c) if c.pending.is_none())
    }

    /// After a snapshot restore the guest's shell is idle again: forget a
    /// pending command and skip what the channel still holds (stale
    /// replies are also skipped by their markers).
    pub async fn forget_pending(&self) {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_mut() {
            conn.pending = None;
            let mut line = String::new();
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), conn.reader.read_line(&mut line))
                    .await
            {
                if n == 0 {
                    *guard = None;
                    return;
                }
                line.clear();
            }
        }
    }

    /// The host's wait for a command the guest stops after `t`.
    fn host_wait(&self, t: Duration) -> Duration {
        t + KILL_AFTER + self.grace.max(t / 10)
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

/// Whole seconds for the guest's `timeout` (at least 1).
fn guest_secs(t: Duration) -> u64 {
    t.as_secs_f64().ceil().max(1.0) as u64
}

/// The shell line sent for command number `seq`, stopped by the guest's
/// `timeout` after `timeout`.  Markers are built from two quoted halves, so
/// an echo of this line never contains them.  `$HP_D` is the probe shell's
/// private directory (under `/run` in a guest); made here with `mktemp -d`
/// if the shell has none (or lost it).  Every process here costs ~65 ms of
/// a core in a TCG guest (measured: 20 `env true` took 1.36 s), and a
/// scenario sends dozens of commands, so the line starts as few as it can:
/// the command travels `'…'`-quoted to `sh -c` (the console is raw, so
/// every byte arrives as sent), base64-encoded through `base64 -d` only
/// when it contains a marker's prefix `HP-` or a NUL; an empty stdout or
/// stderr is not encoded (an empty line); GNU `base64 -w0` (coreutils, in
/// every guest image) instead of `base64 | tr -d '\n'`.
pub fn wrap(cmd: &str, seq: u64, timeout: Duration) -> String {
    let run = if cmd.contains("HP-") || cmd.contains('\0') {
        format!(
            "echo {} | base64 -d >\"$HP_D/c\"; $HP_T sh \"$HP_D/c\"",
            b64(cmd.as_bytes())
        )
    } else {
        format!("$HP_T sh -c {}", crate::machine::probe::shell_quote(cmd))
    };
    format!(
        "[ -d \"$HP_D\" ] || HP_D=$(mktemp -d); export HP_D; \
         HP_T=; command -v timeout >/dev/null 2>&1 && HP_T=\"timeout -k {k} {t}\"; \
         {run} >\"$HP_D/o\" 2>\"$HP_D/e\" </dev/null; \
         echo \"HP-\"\"{seq} $?\"; [ -s \"$HP_D/o\" ] && base64 -w0 \"$HP_D/o\"; echo; \
         [ -s \"$HP_D/e\" ] && base64 -w0 \"$HP_D/e\"; echo; echo \"HP-END\"\"-{seq}\"\n",
        k = KILL_AFTER.as_secs(),
        t = guest_secs(timeout),
    )
}

/// Read lines until `HP-END-{seq}`; the status line and the body of `seq`
/// (older replies and other lines are skipped). `restarted` is set when the
/// probe shell announced itself again meanwhile.
async fn read_reply(
    reader: &mut BufReader<OwnedReadHalf>,
    seq: u64,
    restarted: &mut bool,
) -> Result<(i32, Vec<String>), Cut> {
    let start_marker = format!("HP-{seq} ");
    let end_marker = format!("HP-END-{seq}");
    let mut line = String::new();
    let mut status = None;
    let mut body: Vec<String> = Vec::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => return Err(Cut::Eof),
            Ok(_) => {}
            Err(e) => return Err(Cut::Io(e)),
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = l.strip_prefix(&start_marker) {
            status = rest.trim().parse::<i32>().ok();
            body.clear();
        } else if l == end_marker {
            return Ok((status.unwrap_or(-1), body));
        } else if l.contains(READY) {
            *restarted = true;
        } else if status.is_some() {
            body.push(l.to_string());
        }
    }
}

fn closed(cut: Cut, evidence: &str) -> ProbeError {
    match cut {
        Cut::Eof => ProbeError::Closed(format!(
            "probe channel closed (guest powered off or QEMU exited?); {evidence}"
        )),
        Cut::Io(e) => ProbeError::Io(e),
    }
}

#[async_trait]
impl Probe for HvcProbe {
    fn pace(&self) -> f64 {
        f64::from_bits(self.pace.load(Ordering::Relaxed))
    }

    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ProbeError> {
        let evidence = self.evidence();
        let mut guard = self.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(|| {
            ProbeError::Closed(format!(
                "the instance is not running (no probe channel); {evidence}"
            ))
        })?;
        let pace = self.pace();
        let timeout = timeout.mul_f64(pace);

        // Resynchronise: read up to the end of the command the host gave
        // up on, so this command reads its own reply.
        if let Some(p) = conn.pending.clone() {
            let mut restarted = false;
            let wait = self.resync.mul_f64(pace);
            match tokio::time::timeout(wait, read_reply(&mut conn.reader, p.seq, &mut restarted))
                .await
            {
                Ok(Ok(_)) => conn.pending = None,
                Ok(Err(cut)) => {
                    *guard = None;
                    return Err(closed(cut, &evidence));
                }
                Err(_) if restarted => {
                    // A new probe shell announced itself: the old command's
                    // reply will never come, the new shell reads ours.
                    eprintln!(
                        "probe: the guest's probe shell restarted while `{}` was pending; continuing on the new shell ({evidence})",
                        p.command
                    );
                    conn.pending = None;
                }
                Err(_) => {
                    return Err(ProbeError::Other(format!(
                        "probe shell still busy with `{}` ({:.0} s since it was sent, its timeout {:?}); \
                         `{cmd}` was not sent, and the next command waits for the shell again; \
                         expected the guest's `timeout` to stop it after {:?}; {evidence}",
                        p.command,
                        p.sent.elapsed().as_secs_f64(),
                        p.timeout,
                        p.timeout + KILL_AFTER,
                    )))
                }
            }
        }

        conn.seq += 1;
        let seq = conn.seq;
        self.sent.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        if let Err(e) = conn
            .writer
            .write_all(wrap(cmd, seq, timeout).as_bytes())
            .await
        {
            *guard = None;
            return Err(ProbeError::Io(e));
        }
        let mut restarted = false;
        let host_wait = self.host_wait(timeout);
        let r = tokio::time::timeout(host_wait, read_reply(&mut conn.reader, seq, &mut restarted))
            .await;
        match r {
            Ok(Ok((status, body))) => {
                let out = ExecOutput {
                    command: cmd.to_string(),
                    status,
                    stdout: unb64(body.first().map(String::as_str).unwrap_or("")),
                    stderr: unb64(body.get(1).map(String::as_str).unwrap_or("")),
                };
                // coreutils `timeout` exits 124, busybox's 143 (SIGTERM),
                // either 137 after -k's SIGKILL; a command that exits so by
                // itself does so before its time is up.
                if matches!(status, 124 | 137 | 143) && sent.elapsed() >= timeout {
                    return Err(ProbeError::Timeout {
                        command: cmd.to_string(),
                        timeout,
                        evidence: format!(
                            "the guest's `timeout` stopped it (exit {status}); the channel stays in sync{}; \
                             output so far: stdout {:?}, stderr {:?}; {evidence}",
                            pace_note(pace),
                            tail(&out.stdout),
                            tail(&out.stderr),
                        ),
                    });
                }
                Ok(out)
            }
            Ok(Err(cut)) => {
                *guard = None;
                Err(closed(cut, &evidence))
            }
            Err(_) => {
                conn.pending = Some(Pending {
                    seq,
                    command: cmd.to_string(),
                    timeout,
                    sent,
                });
                Err(ProbeError::Timeout {
                    command: cmd.to_string(),
                    timeout,
                    evidence: format!(
                        "no reply from the guest's probe shell within {host_wait:?} (its own `timeout` stops the command after {timeout:?}, SIGKILL {KILL_AFTER:?} later){}{}; \
                         the next command resynchronises on this one's end marker; {evidence}",
                        pace_note(pace),
                        if restarted {
                            "; the probe shell restarted meanwhile"
                        } else {
                            ""
                        },
                    ),
                })
            }
        }
    }
}

fn pace_note(pace: f64) -> String {
    if pace > 1.0 {
        format!(
            " (timeout scaled ×{pace:.1}: guests boot that much slower here than the reference)"
        )
    } else {
        String::new()
    }
}

/// The last few hundred bytes of `s`.
fn tail(s: &str) -> &str {
    let mut from = s.len().saturating_sub(300);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_line_never_contains_its_own_markers() {
        let w = wrap("echo HP-1 0; echo HP-END-1", 1, Duration::from_secs(60));
        assert!(!w.contains("HP-1 "), "{w}");
        assert!(!w.contains("HP-END-1"), "{w}");
        assert!(w.ends_with('\n'));
        assert!(w.contains("timeout -k 5 60"), "{w}");
        assert!(!w.contains("/tmp/"), "no fixed names in /tmp: {w}");
        assert!(
            w.contains("base64 -d"),
            "a marker prefix travels encoded: {w}"
        );
        let plain = wrap("echo 'a b'", 2, Duration::from_secs(60));
        assert!(!plain.contains("base64 -d"), "{plain}");
        assert!(plain.contains(r"sh -c 'echo '\''a b'\'''"), "{plain}");
        assert_eq!(guest_secs(Duration::from_millis(300)), 1);
        assert_eq!(guest_secs(Duration::from_millis(1500)), 2);
    }

    /// A guest end of the channel: a real `sh` reading the socket, with
    /// `PATH` as given (None: the host's) and `TMPDIR` in `dir`.
    async fn guest(dir: &Path, path: Option<&Path>) -> (HvcProbe, tokio::process::Child) {
        let sock = dir.join("p.sock");
        let listener = HvcProbe::listen(&sock).unwrap();
        let script = format!(
            "import os,socket,subprocess\n\
             s=socket.socket(socket.AF_UNIX); s.connect({sock:?}); f=s.makefile('rwb',0)\n\
             f.write(b'{READY}\\n')\n\
             e=dict(os.environ)\n\
             if e.get('HP_GUEST_PATH'): e['PATH']=e['HP_GUEST_PATH']\n\
             subprocess.run([os.environ.get('HP_GUEST_SH','sh')], stdin=f, stdout=f, env=e)\n",
            sock = sock.display().to_string(),
        );
        let mut c = tokio::process::Command::new("python3");
        c.args(["-c", &script]).kill_on_drop(true).process_group(0);
        c.env("TMPDIR", dir);
        if let Some(p) = path {
            c.env("HP_GUEST_PATH", p);
            c.env("HP_GUEST_SH", p.join("sh"));
        }
        let child = c.spawn().unwrap();
        let p = HvcProbe::new();
        p.set_evidence(format!("serial log: {}", dir.join("serial.log").display()));
        p.attach(&listener, Duration::from_secs(10)).await.unwrap();
        (p, child)
    }

    #[tokio::test]
    async fn exec_round_trips_through_a_real_shell() {
        let d = tempfile::tempdir().unwrap();
        let (p, g) = guest(d.path(), None).await;
        let out = p
            .exec("echo out; echo err >&2; exit 3", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let q = p.succeed("printf '%s' \"it's (odd) $HOME\"").await.unwrap();
        assert!(q.starts_with("it's (odd) "), "{q}");
        // Several lines, a marker lookalike (sent encoded), empty output.
        let q = p.succeed("echo 'HP-END-1'\nprintf 'x\\ty'").await.unwrap();
        assert_eq!(q, "HP-END-1\nx\ty");
        let e = p.exec("true", Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (e.status, e.stdout.as_str(), e.stderr.as_str()),
            (0, "", "")
        );
        assert!(p.fail("false").await.is_ok());
        // A command that exits 124 by itself is not a timeout.
        assert_eq!(
            p.exec("exit 124", Duration::from_secs(10))
                .await
                .unwrap()
                .status,
            124
        );
        // Per-run files: in the shell's own directory under $TMPDIR here.
        let dir = p.succeed("printf %s \"$HP_D\"").await.unwrap();
        assert!(dir.starts_with(&d.path().display().to_string()), "{dir}");
        crate::machine::qemu::process::kill_group(g.id().unwrap());
    }

    /// The guest's `timeout` stops the command: reported as a timeout
    /// naming the command and the evidence, and the next command works.
    #[tokio::test]
    async fn a_timed_out_command_is_reported_and_the_next_one_works() {
        let d = tempfile::tempdir().unwrap();
        let (p, g) = guest(d.path(), None).await;
        let t = Instant::now();
        let e = p
            .exec("echo started; sleep 30", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let msg = e.to_string();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{msg}");
        assert!(
            msg.contains("`echo started; sleep 30`") && msg.contains("1s"),
            "{msg}"
        );
        assert!(
            msg.contains("serial log:") && msg.contains("started"),
            "{msg}"
        );
        assert!(p.in_sync().await);
        assert_eq!(p.succeed("echo next").await.unwrap(), "next\n");
        crate::machine::qemu::process::kill_group(g.id().unwrap());
    }

    /// A guest without `timeout`: the host gives up after its grace, the
    /// command stays pending, the next command drains up to its end marker
    /// (or says the shell is still busy), and the one after works.
    #[tokio::test]
    async fn without_a_guest_timeout_the_channel_resynchronises() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in [
            "sh", "base64", "tr", "mktemp", "sleep", "cat", "printf", "echo",
        ] {
            let Ok(real) = crate::tools::find(tool) else {
                continue;
            };
            std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
        }
        let (mut p, g) = guest(d.path(), Some(&bin)).await;
        p.grace = Duration::from_millis(200);
        p.resync = Duration::from_millis(500);
        let e = p
            .exec("sleep 8; echo late", Duration::from_millis(500))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{msg}");
        assert!(
            msg.contains("no reply") && msg.contains("resynchronises"),
            "{msg}"
        );
        assert!(!p.in_sync().await);
        // Still busy: this command is not sent, and says why.
        let e = p
            .exec("echo skipped", Duration::from_secs(1))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("still busy with `sleep 8; echo late`"),
            "{msg}"
        );
        // Once the old command ends, the channel is back in sync.
        p.resync = Duration::from_secs(20);
        assert_eq!(p.succeed("echo after").await.unwrap(), "after\n");
        assert!(p.in_sync().await);
        crate::machine::qemu::process::kill_group(g.id().unwrap());
    }

    #[tokio::test]
    async fn end_of_file_closes_the_channel_naming_the_evidence() {
        let d = tempfile::tempdir().unwrap();
        let (p, mut g) = guest(d.path(), None).await;
        // The guest powers off: python and its shell (which holds the
        // socket too) die.
        crate::machine::qemu::process::kill_group(g.id().unwrap());
        let _ = g.wait().await;
        let e = p.exec("true", Duration::from_secs(5)).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ProbeError::Closed(_) | ProbeError::Io(_)),
            "{msg}"
        );
        let e = p.exec("true", Duration::from_secs(5)).await.unwrap_err();
        assert!(e.to_string().contains("serial log:"), "{e}");
    }
}

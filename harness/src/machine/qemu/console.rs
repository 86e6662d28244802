//! The serial console: QEMU writes it to a per-instance log file; this
//! tails that file live, streams new lines to stderr when asked, and waits
//! for a line with a timeout whose error shows the tail and the log path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Console {
    pub log: PathBuf,
}

impl Console {
    pub fn new(log: &Path) -> Console {
        Console {
            log: log.to_path_buf(),
        }
    }

    pub fn text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until a line containing `needle` appears after byte `from` of
    /// the log; print `harness-…` milestone lines as progress.
    pub async fn wait_for_line(
        &self,
        needle: &str,
        from: usize,
        timeout: Duration,
        label: &str,
    ) -> anyhow::Result<usize> {
        let start = Instant::now();
        let mut shown = from;
        loop {
            let t = self.text();
            if t.len() > shown {
                for line in t[shown.min(t.len())..].lines() {
                    if line.contains("harness-") || line.contains("Kernel panic") {
                        eprintln!(
                            "  [{label} {:>5.1}s] {}",
                            start.elapsed().as_secs_f32(),
                            line.trim()
                        );
                    }
                }
                shown = t.len();
            }
            if let Some(pos) = t.get(from.min(t.len())..).and_then(|s| s.find(needle)) {
                return Ok(from + pos + needle.len());
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "expected the console line `{needle}` within {timeout:?}, not seen.\nlast console lines:\n{}\n(serial log: {})",
                    self.tail(30),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

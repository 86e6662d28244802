//! The Coder control plane seen by the checks: agent lifecycle, agent
//! logs (with the time each line reached the server) and SSH as the
//! workspace user.  Implemented by the named test double
//! [`crate::doubles::agent_api`] on the contract guest; the real Coder
//! server plugs in behind the same trait.

pub mod coder;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// One agent log line as the control plane received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLog {
    pub output: String,
    pub level: String,
    pub source: String,
    /// When the line reached the control plane (not when it was produced).
    pub received: SystemTime,
}

/// One lifecycle report (`starting`, `ready`, `start_error`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleReport {
    pub state: String,
    pub received: SystemTime,
}

#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// What this is, for verdicts: e.g. "agent-logs HTTP double" or "Coder v2.x".
    fn describe(&self) -> String;
    async fn logs(&self) -> anyhow::Result<Vec<ReceivedLog>>;
    async fn lifecycle(&self) -> anyhow::Result<Vec<LifecycleReport>>;
    /// Whether the agent is connected now.
    async fn agent_connected(&self) -> anyhow::Result<bool>;
    /// Run `cmd` in a shell through the control plane's own SSH path to
    /// the workspace (the real one: `coder ssh <workspace>` through the
    /// agent), if it has one.  `None`: the caller uses the instance's sshd.
    async fn agent_ssh(
        &self,
        _cmd: &str,
        _timeout: Duration,
    ) -> Option<anyhow::Result<crate::machine::probe::ExecOutput>> {
        None
    }
}

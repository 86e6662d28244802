//! The real Coder control plane: a REST client ([`client`]), the API's
//! JSON shapes ([`types`]), the server in containers ([`container`]), the
//! `ec2` tier's AWS hand-off to its provisioner ([`aws_handoff`]), and
//! [`CoderControlPlane`], which implements [`ControlPlane`] for one
//! workspace agent by polling the API.
//!
//! Coder's API reports the agent's *current* lifecycle state and its logs;
//! "received" times here are when the harness first saw a log line or a
//! state in a poll (an upper bound of when it reached the server).

pub mod agent_ssh;
pub mod aws_handoff;
pub mod client;
pub mod container;
pub mod stack;
pub mod template;
pub mod types;
pub mod workspace;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{ControlPlane, LifecycleReport, ReceivedLog};
use client::CoderClient;

/// The Coder release the harness is written against and runs
/// (`ghcr.io/coder/coder:<CODER_VERSION>`).
pub const CODER_VERSION: &str = "v2.27.7";

#[derive(Default)]
struct Seen {
    agent_id: Option<String>,
    /// log id → (line, first seen).
    logs: BTreeMap<i64, ReceivedLog>,
    lifecycle: Vec<LifecycleReport>,
    /// Ignore what the agent reported before this instant (see
    /// [`CoderControlPlane::since`]).
    not_before: Option<SystemTime>,
}

/// `s` (RFC 3339, as Coder writes times) is at or after `t`.
fn at_or_after(s: Option<&str>, t: SystemTime) -> bool {
    s.and_then(crate::machine::ec2::parse_rfc3339)
        .is_some_and(|at| at >= t)
}

/// [`ControlPlane`] backed by a real Coder server, for one workspace.
pub struct CoderControlPlane {
    client: CoderClient,
    workspace_id: String,
    seen: Mutex<Seen>,
    ssh: Option<agent_ssh::AgentSsh>,
}

impl CoderControlPlane {
    pub fn new(client: CoderClient, workspace_id: &str) -> CoderControlPlane {
        CoderControlPlane {
            client,
            workspace_id: workspace_id.to_string(),
            seen: Mutex::new(Seen::default()),
            ssh: None,
        }
    }

    /// Only count what the agent reports from `t` on: its lifecycle once it
    /// has `started_at`/`ready_at` at or after `t`, its connection once
    /// `last_connected_at` is, and log lines created from `t` on.  For a
    /// machine restarted without a new build (same agent), whose previous
    /// boot's `ready` would otherwise look like this boot's.
    pub fn since(self, t: SystemTime) -> CoderControlPlane {
        self.seen.lock().unwrap().not_before = Some(t);
        self
    }

    /// The same SSH path as `other` (for a new build's agent).
    pub fn with_agent_ssh_from(mut self, other: &CoderControlPlane) -> CoderControlPlane {
        self.ssh = other.ssh.clone();
        self
    }

    /// SSH through the agent with the `coder` CLI (see [`agent_ssh`]).
    pub fn with_agent_ssh(mut self, ssh: agent_ssh::AgentSsh) -> CoderControlPlane {
        self.ssh = Some(ssh);
        self
    }

    /// The workspace's (first) agent, or an error saying the build has none yet.
    async fn agent(&self) -> anyhow::Result<types::WorkspaceAgent> {
        let cached = self.seen.lock().unwrap().agent_id.clone();
        let agent = match cached {
            Some(id) => self.client.agent(&id).await?,
            None => {
                let ws = self.client.workspace(&self.workspace_id).await?;
                let agent = ws.agents().next().cloned().ok_or_else(|| {
                    anyhow::anyhow!(
                        "workspace {} build #{} ({}, job {}): expected a resource with an agent, seen {} resource(s) without one",
                        ws.name,
                        ws.latest_build.build_number,
                        ws.latest_build.status,
                        ws.latest_build.job.status,
                        ws.latest_build.resources.len()
                    )
                })?;
                self.seen.lock().unwrap().agent_id = Some(agent.id.clone());
                agent
            }
        };
        let mut seen = self.seen.lock().unwrap();
        let fresh = seen.not_before.is_none_or(|t| {
            at_or_after(agent.started_at.as_deref(), t) || at_or_after(agent.ready_at.as_deref(), t)
        });
        if fresh
            && seen.lifecycle.last().map(|l| l.state.as_str())
                != Some(agent.lifecycle_state.as_str())
        {
            seen.lifecycle.push(LifecycleReport {
                state: agent.lifecycle_state.clone(),
                received: SystemTime::now(),
            });
        }
        Ok(agent)
    }
}

#[async_trait]
impl ControlPlane for CoderControlPlane {
    fn describe(&self) -> String {
        format!("Coder {CODER_VERSION} (real server)")
    }

    async fn logs(&self) -> anyhow::Result<Vec<ReceivedLog>> {
        let agent = self.agent().await?;
        let sources: BTreeMap<&str, &str> = agent
            .log_sources
            .iter()
            .map(|s| (s.id.as_str(), s.display_name.as_str()))
            .collect();
        let after = self
            .seen
            .lock()
            .unwrap()
            .logs
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        let new = self.client.agent_logs(&agent.id, after).await?;
        let now = SystemTime::now();
        let mut seen = self.seen.lock().unwrap();
        let not_before = seen.not_before;
        for l in new {
            if not_before.is_some_and(|t| !at_or_after(Some(&l.created_at), t)) {
                // Kept out of the result, but remembered as seen.
                seen.logs.entry(l.id).or_insert_with(|| ReceivedLog {
                    output: String::new(),
                    level: "previous-boot".into(),
                    source: String::new(),
                    received: now,
                });
                continue;
            }
            seen.logs.entry(l.id).or_insert_with(|| ReceivedLog {
                output: l.output.clone(),
                level: l.level.clone(),
                source: sources
                    .get(l.source_id.as_str())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| l.source_id.clone()),
                received: now,
            });
        }
        Ok(seen
            .logs
            .values()
            .filter(|l| l.level != "previous-boot")
            .cloned()
            .collect())
    }

    async fn lifecycle(&self) -> anyhow::Result<Vec<LifecycleReport>> {
        self.agent().await?;
        Ok(self.seen.lock().unwrap().lifecycle.clone())
    }

    async fn agent_connected(&self) -> anyhow::Result<bool> {
        let a = self.agent().await?;
        let not_before = self.seen.lock().unwrap().not_before;
        Ok(a.status == "connected"
            && not_before.is_none_or(|t| at_or_after(a.last_connected_at.as_deref(), t)))
    }

    async fn agent_ssh(
        &self,
        cmd: &str,
        timeout: Duration,
    ) -> Option<anyhow::Result<crate::machine::probe::ExecOutput>> {
        let ssh = self.ssh.as_ref()?;
        Some(ssh.exec(cmd, timeout).await)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::doubles::coder_api::{CoderApiDouble, TOKEN, WS};

    /// The double's agent started, connected and logged on 2026-01-01.
    #[tokio::test]
    async fn since_ignores_what_a_previous_boot_reported() {
        let d = CoderApiDouble::start().await;
        d.seen.lock().unwrap().lifecycle = "ready".into();
        let client = || CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let before = UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01
        let fresh = CoderControlPlane::new(client(), WS).since(before);
        assert!(fresh.agent_connected().await.unwrap());
        assert_eq!(fresh.lifecycle().await.unwrap().len(), 1);
        assert_eq!(fresh.logs().await.unwrap().len(), 3);

        // Restarted after all of that: nothing counts until the agent reports again.
        let stale = CoderControlPlane::new(client(), WS).since(SystemTime::now());
        assert!(!stale.agent_connected().await.unwrap());
        assert!(stale.lifecycle().await.unwrap().is_empty());
        assert!(stale.logs().await.unwrap().is_empty());
        // Without `since`, the same answers count.
        let plain = CoderControlPlane::new(client(), WS);
        assert!(plain.agent_connected().await.unwrap());
        assert_eq!(plain.lifecycle().await.unwrap()[0].state, "ready");
    }
}

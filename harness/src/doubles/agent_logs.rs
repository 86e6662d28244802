//! TEST DOUBLE of the Coder server's agent endpoints, in process (axum),
//! for the fixture guest's agent stand-in.  It accepts the same JSON shapes
//! as Coder's API (`agentsdk.PatchLogs`, `agentsdk.PostLifecycleRequest`)
//! and records the time each request arrived.  A pass against it proves a
//! check, never the template or Coder.
//!
//! Coder's agent sends logs with `PATCH /api/v2/workspaceagents/me/logs`;
//! busybox wget in the fixture can only POST, so POST is accepted too.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::control::{ControlPlane, LifecycleReport, ReceivedLog};
use crate::doubles::http::LoopbackServer;

/// `agentsdk.Log`.
#[derive(Debug, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub created_at: Option<String>,
    pub output: String,
    #[serde(default)]
    pub level: Option<String>,
}

/// `agentsdk.PatchLogs`.
#[derive(Debug, Deserialize)]
pub struct PatchLogs {
    #[serde(default)]
    pub log_source_id: Option<String>,
    pub logs: Vec<Log>,
}

/// `agentsdk.PostLifecycleRequest`.
#[derive(Debug, Deserialize)]
pub struct PostLifecycleRequest {
    pub state: String,
    #[serde(default)]
    pub changed_at: Option<String>,
}

#[derive(Default)]
struct Recorded {
    logs: Vec<ReceivedLog>,
    lifecycle: Vec<LifecycleReport>,
    last_seen: Option<SystemTime>,
}

/// The running double; dropping it stops the server.
pub struct AgentLogsDouble {
    server: LoopbackServer,
    rec: Arc<Mutex<Recorded>>,
}

impl AgentLogsDouble {
    pub async fn start() -> anyhow::Result<AgentLogsDouble> {
        let rec = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/api/v2/workspaceagents/me/logs", post(logs).patch(logs))
            .route(
                "/api/v2/workspaceagents/me/report-lifecycle",
                post(lifecycle),
            )
            // Double-only: the stand-in's liveness ping (the real agent
            // keeps a websocket open instead).
            .route("/harness-double/heartbeat", post(heartbeat))
            .with_state(rec.clone());
        let server = LoopbackServer::start(app).await?;
        Ok(AgentLogsDouble { server, rec })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The URL the guest uses: QEMU user networking maps the gateway
    /// 169.0.0.2 to the host's loopback.
    pub fn guest_url(&self) -> String {
        format!("http://169.0.0.2:{}", self.port())
    }

    pub fn clear(&self) {
        *self.rec.lock().unwrap() = Recorded::default();
    }
}

async fn logs(State(rec): State<Arc<Mutex<Recorded>>>, Json(body): Json<PatchLogs>) -> StatusCode {
    let now = SystemTime::now();
    let mut r = rec.lock().unwrap();
    r.last_seen = Some(now);
    let source = body.log_source_id.unwrap_or_default();
    for l in body.logs {
        r.logs.push(ReceivedLog {
            output: l.output,
            level: l.level.unwrap_or_else(|| "info".into()),
            source: source.clone(),
            received: now,
        });
    }
    StatusCode::OK
}

async fn heartbeat(State(rec): State<Arc<Mutex<Recorded>>>) -> StatusCode {
    rec.lock().unwrap().last_seen = Some(SystemTime::now());
    StatusCode::NO_CONTENT
}

async fn lifecycle(
    State(rec): State<Arc<Mutex<Recorded>>>,
    Json(body): Json<PostLifecycleRequest>,
) -> StatusCode {
    let now = SystemTime::now();
    let mut r = rec.lock().unwrap();
    r.last_seen = Some(now);
    r.lifecycle.push(LifecycleReport {
        state: body.state,
        received: now,
    });
    StatusCode::NO_CONTENT
}

#[async_trait]
impl ControlPlane for AgentLogsDouble {
    fn describe(&self) -> String {
        format!(
            "agent-logs HTTP double on 127.0.0.1:{} (not Coder)",
            self.port()
        )
    }
    async fn logs(&self) -> anyhow::Result<Vec<ReceivedLog>> {
        Ok(self.rec.lock().unwrap().logs.clone())
    }
    async fn lifecycle(&self) -> anyhow::Result<Vec<LifecycleReport>> {
        Ok(self.rec.lock().unwrap().lifecycle.clone())
    }
    async fn agent_connected(&self) -> anyhow::Result<bool> {
        // The stand-in heartbeats with a lifecycle/log request at least
        // every few seconds while it runs.
        let last = self.rec.lock().unwrap().last_seen;
        Ok(last.is_some_and(|t| t.elapsed().map(|e| e.as_secs() < 15).unwrap_or(false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_logs_and_lifecycle_with_coder_shapes() {
        let d = AgentLogsDouble::start().await.unwrap();
        let c = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", d.port());
        let r = c
            .patch(format!("{base}/api/v2/workspaceagents/me/logs"))
            .json(&serde_json::json!({"log_source_id": "s1", "logs": [{"created_at": "2026-01-01T00:00:00Z", "output": "hello", "level": "info"}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = c
            .post(format!("{base}/api/v2/workspaceagents/me/report-lifecycle"))
            .json(&serde_json::json!({"state": "ready", "changed_at": "2026-01-01T00:00:01Z"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let r = c
            .post(format!("{base}/api/v2/workspaceagents/me/logs"))
            .json(&serde_json::json!({"nope": 1}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "a body that is not PatchLogs is rejected"
        );
        let logs = d.logs().await.unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].output, "hello");
        assert_eq!(logs[0].source, "s1");
        assert_eq!(d.lifecycle().await.unwrap()[0].state, "ready");
        assert!(d.agent_connected().await.unwrap());
        assert!(d.describe().contains("double"));
    }
}

//! TEST DOUBLE of the parts of the Coder server an agent talks to, in
//! process (axum on 127.0.0.1), for the contract tier: it serves the agent
//! stand-in as `/bin/coder-linux-amd64|arm64` (what Coder's init script
//! downloads), the agent's manifest (the template's REAL `startup_script`
//! and `coder_agent.env`), and records logs and lifecycle reports.  A pass
//! against it proves the template's boot flow, never Coder.
//!
//! Endpoints (every `/api/v2/workspaceagents/me/*` and `/harness-double/*`
//! one needs the agent token in `Coder-Session-Token`, as agentsdk sends
//! it; a wrong or missing token is a 401 and is counted):
//!
//! | endpoint | shape |
//! |---|---|
//! | `GET /bin/coder-linux-{amd64,arm64}` | the agent stand-in (`coder-agent-standin.sh`) |
//! | `POST /api/v2/workspaceagents/aws-instance-identity` | no token: `{signature, document}` → `{"session_token"}` when the signature verifies against the IMDS double's test key and the document's `instanceId` is this workspace's instance (coderd: `workspaceresourceauth.go`; 401 `Invalid AWS identity.`, 404 no agent for the instance) |
//! | `GET /api/v2/workspaceagents/me/manifest` | a subset of `agentsdk.Manifest` (`environment_variables`, `directory`, `scripts[]`) |
//! | `PATCH`/`POST /api/v2/workspaceagents/me/logs` | `agentsdk.PatchLogs` |
//! | `POST /api/v2/workspaceagents/me/report-lifecycle` | `agentsdk.PostLifecycleRequest` |
//! | `GET /harness-double/agent/startup-script` | double-only: the startup script as text |
//! | `GET /harness-double/agent/env` | double-only: `export K='v'` lines (POSIX-sh quoted) |
//! | `POST /harness-double/agent/log` | double-only: text/plain, one or more lines, level info |
//! | `POST /harness-double/agent/hello` | double-only: `user=… uid=… pid=… boot=…` at each agent start |
//! | `POST /harness-double/heartbeat` | double-only: liveness (the real agent keeps a connection) |
//! | `GET /harness-double/agent/exec?wait=S` | double-only: the next queued command, `<id>\n<command>`, or 204 when none came within `S` s (≤ 5; a long poll; each poll is a heartbeat) |
//! | `POST /harness-double/agent/exec-result?id=&status=` | double-only: its stdout (text/plain) and exit status |
//!
//! The exec queue stands in for `coder ssh`: a shell as the agent's user,
//! reached through the agent, which is how a user gets the SSH fallback
//! on a workspace whose flake failed.
//!
//! The double-only text endpoints exist because the stand-in is a POSIX sh
//! script with curl and no JSON parser; the JSON endpoints keep Coder's
//! shapes (`coder/coder codersdk/agentsdk/agentsdk.go`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::control::{ControlPlane, LifecycleReport, ReceivedLog};
use crate::doubles::http::{session_token, LoopbackServer};

/// `agentsdk.Log`.
#[derive(Debug, serde::Deserialize)]
pub struct Log {
    #[serde(default)]
    pub created_at: Option<String>,
    pub output: String,
    #[serde(default)]
    pub level: Option<String>,
}

/// `agentsdk.PatchLogs`.
#[derive(Debug, serde::Deserialize)]
pub struct PatchLogs {
    #[serde(default)]
    pub log_source_id: Option<String>,
    pub logs: Vec<Log>,
}

/// `agentsdk.PostLifecycleRequest`.
#[derive(Debug, serde::Deserialize)]
pub struct PostLifecycleRequest {
    pub state: String,
    #[serde(default)]
    pub changed_at: Option<String>,
}

/// The agent stand-in the double serves as the Coder agent binary.
pub const AGENT_STANDIN: &str = include_str!("coder-agent-standin.sh");

/// Log source id of the startup script (a fixed UUID, as Coder gives one).
pub const STARTUP_LOG_SOURCE: &str = "0ab0c0d0-0000-4000-8000-00000startup";

/// What the agent receives: the template's `coder_agent` fields.
#[derive(Debug, Clone, Default)]
pub struct AgentManifest {
    /// `coder_agent.startup_script`, verbatim.
    pub startup_script: String,
    /// `coder_agent.env`.
    pub env: BTreeMap<String, String>,
    /// `coder_agent.dir` (empty: the agent's home).
    pub directory: String,
}

/// One agent start, as the stand-in announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHello {
    /// `user=… uid=… pid=… boot=…` as sent.
    pub line: String,
    pub received: SystemTime,
}

impl AgentHello {
    /// A `key=value` field of the hello line.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The workspace's instance for `aws-instance-identity` auth: coderd finds
/// the agent by the document's `instanceId` (the agent's
/// `auth_instance_id`) and checks the signature against AWS's
/// certificates; this double checks it against the key it trusts (the
/// IMDS double's [`crate::machine::imds::identity`] test key).
#[derive(Debug, Clone)]
struct InstanceIdentity {
    instance_id: String,
    trusted_key: Vec<u8>,
}

#[derive(Default)]
struct Recorded {
    logs: Vec<ReceivedLog>,
    lifecycle: Vec<LifecycleReport>,
    hellos: Vec<AgentHello>,
    last_seen: Option<SystemTime>,
    downloads: Vec<String>,
    unauthorized: usize,
    /// Instance ids a session token was issued for (identity auth).
    identity_auths: Vec<String>,
    /// Why identity auth requests were refused.
    identity_refusals: Vec<String>,
}

#[derive(Default)]
struct ExecQueue {
    next_id: u64,
    pending: std::collections::VecDeque<(u64, String)>,
    results: std::collections::HashMap<u64, (i32, String)>,
}

struct Shared {
    token: String,
    identity: Mutex<Option<InstanceIdentity>>,
    exec: Mutex<ExecQueue>,
    /// Wakes a long-polling `GET /harness-double/agent/exec` when a
    /// command is queued.
    exec_queued: tokio::sync::Notify,
    manifest: Mutex<AgentManifest>,
    rec: Mutex<Recorded>,
}

type St = Arc<Shared>;

/// The running double; dropping it stops the server.
pub struct AgentApiDouble {
    server: LoopbackServer,
    st: St,
}

/// `'…'` quoting for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `export K='v'` lines for the stand-in to source; keys must be shell
/// variable names (Coder refuses others too).
pub fn env_script(env: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    for (k, v) in env {
        let ok = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        anyhow::ensure!(
            ok,
            "coder_agent.env key {k:?} is not an environment variable name"
        );
        out.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    Ok(out)
}

fn authorized(st: &St, h: &HeaderMap) -> bool {
    let ok = session_token(h).is_some_and(|t| t == st.token);
    if !ok {
        st.rec.lock().unwrap().unauthorized += 1;
    }
    ok
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Agent token is invalid.", "detail": "harness agent API double: missing or wrong Coder-Session-Token"})),
    )
        .into_response()
}

fn seen(st: &St) -> SystemTime {
    let now = SystemTime::now();
    st.rec.lock().unwrap().last_seen = Some(now);
    now
}

async fn binary(State(st): State<St>, Path(name): Path<String>) -> Response {
    st.rec.lock().unwrap().downloads.push(name.clone());
    match name.as_str() {
        "coder-linux-amd64" | "coder-linux-arm64" => (
            StatusCode::OK,
            [("content-type", "application/octet-stream")],
            AGENT_STANDIN,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, format!("no such binary: {name}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct AwsIdentityRequest {
    signature: String,
    document: String,
}

/// `POST /api/v2/workspaceagents/aws-instance-identity` (coderd
/// `postWorkspaceAuthAWSInstanceIdentity`): verify, find the agent by
/// instance id, hand out its token.
async fn aws_instance_identity(State(st): State<St>, body: String) -> Response {
    let refuse = |status: StatusCode, message: &str, why: String| {
        st.rec.lock().unwrap().identity_refusals.push(why.clone());
        (
            status,
            Json(json!({"message": message, "detail": format!("harness agent API double: {why}")})),
        )
            .into_response()
    };
    let req: AwsIdentityRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Request body must be valid JSON.",
                format!("body is not {{signature, document}}: {e}"),
            )
        }
    };
    let Some(expect) = st.identity.lock().unwrap().clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Instance not found.",
            "this workspace's agent does not use aws-instance-identity".into(),
        );
    };
    if let Err(e) = crate::machine::imds::identity::verify(
        &expect.trusted_key,
        req.document.as_bytes(),
        &req.signature,
    ) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Invalid AWS identity.",
            format!("{e:#}"),
        );
    }
    let id = serde_json::from_str::<serde_json::Value>(&req.document)
        .ok()
        .and_then(|d| d["instanceId"].as_str().map(str::to_string))
        .unwrap_or_default();
    if id != expect.instance_id {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("Instance with id {id:?} not found."),
            format!(
                "the document names {id:?}, the workspace's instance is {}",
                expect.instance_id
            ),
        );
    }
    seen(&st);
    st.rec.lock().unwrap().identity_auths.push(id);
    Json(json!({"session_token": st.token})).into_response()
}

async fn manifest_json(State(st): State<St>, h: HeaderMap) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    let m = st.manifest.lock().unwrap().clone();
    Json(json!({
        "agent_id": "2b1e4c3d-0000-4000-8000-0000000agent",
        "agent_name": "main",
        "owner_name": "harness",
        "workspace_id": "0fa1b2c3-0000-4000-8000-00000000ws01",
        "workspace_name": "contract",
        "directory": m.directory,
        "environment_variables": m.env,
        "scripts": [{
            "log_source_id": STARTUP_LOG_SOURCE,
            "log_path": "",
            "script": m.startup_script,
            "cron": "",
            "run_on_start": true,
            "run_on_stop": false,
            "start_blocks_login": false,
            "timeout": 0,
            "display_name": "Startup Script"
        }]
    }))
    .into_response()
}

async fn startup_script(State(st): State<St>, h: HeaderMap) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    st.manifest
        .lock()
        .unwrap()
        .startup_script
        .clone()
        .into_response()
}

async fn env(State(st): State<St>, h: HeaderMap) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    let m = st.manifest.lock().unwrap().env.clone();
    match env_script(&m) {
        Ok(s) => s.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

fn push_log(st: &St, output: String, level: String, source: &str) {
    let now = seen(st);
    st.rec.lock().unwrap().logs.push(ReceivedLog {
        output,
        level,
        source: source.to_string(),
        received: now,
    });
}

async fn logs_json(State(st): State<St>, h: HeaderMap, Json(body): Json<PatchLogs>) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    let source = body.log_source_id.unwrap_or_default();
    for l in body.logs {
        push_log(
            &st,
            l.output,
            l.level.unwrap_or_else(|| "info".into()),
            &source,
        );
    }
    StatusCode::OK.into_response()
}

async fn log_text(State(st): State<St>, h: HeaderMap, body: String) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    for line in body.lines() {
        push_log(&st, line.to_string(), "info".into(), STARTUP_LOG_SOURCE);
    }
    StatusCode::OK.into_response()
}

async fn lifecycle(
    State(st): State<St>,
    h: HeaderMap,
    Json(body): Json<PostLifecycleRequest>,
) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    let now = seen(&st);
    st.rec.lock().unwrap().lifecycle.push(LifecycleReport {
        state: body.state,
        received: now,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn hello(State(st): State<St>, h: HeaderMap, body: String) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    let now = seen(&st);
    st.rec.lock().unwrap().hellos.push(AgentHello {
        line: body.trim().to_string(),
        received: now,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn heartbeat(State(st): State<St>, h: HeaderMap) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    StatusCode::NO_CONTENT.into_response()
}

/// `?wait=S`: how long `GET /harness-double/agent/exec` holds the request
/// open for a command (at most [`EXEC_WAIT_MAX`]); without it, it answers
/// at once.
#[derive(serde::Deserialize, Default)]
struct ExecWait {
    wait: Option<u64>,
}

/// The longest an exec poll is held open: well under the 15 s after which
/// [`AgentApi::agent_connected`] counts the agent as gone.
pub const EXEC_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The next queued command, waiting up to `?wait=` seconds for one: a long
/// poll, so the stand-in starts one `curl` per command or per
/// [`EXEC_WAIT_MAX`] instead of a `curl` and a `sleep` every second (each
/// process costs ~65 ms of a core in a TCG guest).
async fn exec_next(
    State(st): State<St>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ExecWait>,
) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(0)).min(EXEC_WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register before looking, so a command queued in between wakes us.
        let queued = st.exec_queued.notified();
        if let Some((id, cmd)) = st.exec.lock().unwrap().pending.pop_front() {
            return format!("{id}\n{cmd}").into_response();
        }
        if tokio::time::timeout_at(deadline, queued).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

#[derive(serde::Deserialize)]
struct ExecResult {
    id: u64,
    status: i32,
}

async fn exec_result(
    State(st): State<St>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ExecResult>,
    body: String,
) -> Response {
    if !authorized(&st, &h) {
        return unauthorized();
    }
    seen(&st);
    st.exec
        .lock()
        .unwrap()
        .results
        .insert(q.id, (q.status, body));
    StatusCode::NO_CONTENT.into_response()
}

impl AgentApiDouble {
    /// Replace what the agent receives (before it starts).
    pub fn set_manifest(&self, manifest: AgentManifest) -> anyhow::Result<()> {
        env_script(&manifest.env)?;
        *self.st.manifest.lock().unwrap() = manifest;
        Ok(())
    }

    /// Start the double for one agent with `token` and `manifest`.
    pub async fn start(token: &str, manifest: AgentManifest) -> anyhow::Result<AgentApiDouble> {
        anyhow::ensure!(!token.is_empty(), "the agent API double needs a token");
        env_script(&manifest.env)?;
        let st: St = Arc::new(Shared {
            token: token.to_string(),
            identity: Mutex::new(None),
            exec: Mutex::default(),
            exec_queued: tokio::sync::Notify::new(),
            manifest: Mutex::new(manifest),
            rec: Mutex::default(),
        });
        let app = Router::new()
            .route("/bin/{name}", get(binary))
            .route(
                "/api/v2/workspaceagents/aws-instance-identity",
                post(aws_instance_identity),
            )
            .route("/api/v2/workspaceagents/me/manifest", get(manifest_json))
            .route(
                "/api/v2/workspaceagents/me/logs",
                post(logs_json).patch(logs_json),
            )
            .route(
                "/api/v2/workspaceagents/me/report-lifecycle",
                post(lifecycle),
            )
            .route("/harness-double/agent/startup-script", get(startup_script))
            .route("/harness-double/agent/env", get(env))
            .route("/harness-double/agent/log", post(log_text))
            .route("/harness-double/agent/hello", post(hello))
            .route("/harness-double/heartbeat", post(heartbeat))
            .route("/harness-double/agent/exec", get(exec_next))
            .route("/harness-double/agent/exec-result", post(exec_result))
            .with_state(st.clone());
        let server = LoopbackServer::start(app).await?;
        Ok(AgentApiDouble { server, st })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Accept `aws-instance-identity` auth for `instance_id`: a document of
    /// that instance signed by the IMDS double's test key gets this
    /// agent's token.
    pub fn expect_instance_identity(&self, instance_id: &str) -> anyhow::Result<()> {
        let key = crate::machine::imds::identity::test_signer()?.public_key();
        *self.st.identity.lock().unwrap() = Some(InstanceIdentity {
            instance_id: instance_id.to_string(),
            trusted_key: key,
        });
        Ok(())
    }

    /// Instance ids the agent authenticated as (instance-identity auth).
    pub fn identity_auths(&self) -> Vec<String> {
        self.st.rec.lock().unwrap().identity_auths.clone()
    }

    /// Base URL on the host (tests).
    pub fn host_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port())
    }

    /// The access URL as a QEMU guest sees it (slirp gateway 169.0.0.2 →
    /// host loopback, docs/design.md), with the trailing slash Coder's
    /// init script expects (`${ACCESS_URL}bin/…`).
    pub fn guest_access_url(&self) -> String {
        format!("http://169.0.0.2:{}/", self.port())
    }

    /// Forget every report (logs, lifecycle, hellos) before a restart, so
    /// the next boot is judged on its own reports.
    pub fn clear_reports(&self) {
        let mut r = self.st.rec.lock().unwrap();
        r.logs.clear();
        r.lifecycle.clear();
        r.hellos.clear();
        r.last_seen = None;
    }

    /// Every agent start the stand-in announced (one per agent process).
    pub fn hellos(&self) -> Vec<AgentHello> {
        self.st.rec.lock().unwrap().hellos.clone()
    }

    /// Names requested under `/bin/`.
    pub fn downloads(&self) -> Vec<String> {
        self.st.rec.lock().unwrap().downloads.clone()
    }

    /// Requests refused for a missing or wrong token.
    pub fn unauthorized(&self) -> usize {
        self.st.rec.lock().unwrap().unauthorized
    }

    /// A one-paragraph state for failure messages.
    pub fn summary(&self) -> String {
        let r = self.st.rec.lock().unwrap();
        format!(
            "agent API double on 127.0.0.1:{}: downloads {:?}; instance-identity auths {:?}{}; agent starts {}; lifecycle [{}]; {} log line(s); {} request(s) with a wrong/missing token{}",
            self.port(),
            r.downloads,
            r.identity_auths,
            if r.identity_refusals.is_empty() {
                String::new()
            } else {
                format!(" (refused: {})", r.identity_refusals.join("; "))
            },
            r.hellos.len(),
            r.lifecycle.iter().map(|l| l.state.as_str()).collect::<Vec<_>>().join(" → "),
            r.logs.len(),
            r.unauthorized,
            r.logs
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|l| format!("\n  | {}", l.output))
                .collect::<String>()
        )
    }
}

#[async_trait]
impl ControlPlane for AgentApiDouble {
    fn describe(&self) -> String {
        format!(
            "Coder agent API double on 127.0.0.1:{} with the agent stand-in (not Coder)",
            self.port()
        )
    }
    async fn logs(&self) -> anyhow::Result<Vec<ReceivedLog>> {
        Ok(self.st.rec.lock().unwrap().logs.clone())
    }
    async fn lifecycle(&self) -> anyhow::Result<Vec<LifecycleReport>> {
        Ok(self.st.rec.lock().unwrap().lifecycle.clone())
    }
    async fn agent_ssh(
        &self,
        cmd: &str,
        timeout: std::time::Duration,
    ) -> Option<anyhow::Result<crate::machine::probe::ExecOutput>> {
        let id = {
            let mut q = self.st.exec.lock().unwrap();
            q.next_id += 1;
            let id = q.next_id;
            q.pending.push_back((id, cmd.to_string()));
            id
        };
        self.st.exec_queued.notify_waiters();
        let start = std::time::Instant::now();
        loop {
            if let Some((status, stdout)) = self.st.exec.lock().unwrap().results.remove(&id) {
                return Some(Ok(crate::machine::probe::ExecOutput {
                    command: format!("through the agent stand-in (double of `coder ssh`): {cmd}"),
                    status,
                    stdout,
                    stderr: String::new(),
                }));
            }
            if start.elapsed() > timeout {
                self.st
                    .exec
                    .lock()
                    .unwrap()
                    .pending
                    .retain(|(i, _)| *i != id);
                return Some(Err(anyhow::anyhow!(
                    "the agent stand-in did not run `{cmd}` within {timeout:?} (is the agent connected? {})",
                    self.summary()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    async fn agent_connected(&self) -> anyhow::Result<bool> {
        // The stand-in long-polls the exec queue (a new poll at least every
        // EXEC_WAIT_MAX) while it runs.
        let last = self.st.rec.lock().unwrap().last_seen;
        Ok(last.is_some_and(|t| t.elapsed().map(|e| e.as_secs() < 15).unwrap_or(false)))
    }
}

//! TEST DOUBLE: a Coder API replay server (in-process axum on 127.0.0.1)
//! that answers the endpoints the client uses with JSON in the shapes of
//! Coder's API spec, including a `codersdk.Response` error body.  It
//! proves the client's HTTP boundary, never Coder itself.
//!
//! Shapes follow `coderd/apidoc/swagger.json` and the Go structs behind
//! it: `omitempty` fields (`ProvisionerJob.error`,
//! `TemplateVersion.template_id`, `Response.detail`/`validations`) are
//! left out rather than sent as `null`/`""`.  Status codes follow what
//! coderd writes, which for `POST .../templates`, `POST
//! /users/{user}/workspaces` and `POST /workspaces/{id}/builds` is 201
//! although swagger documents 200.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::doubles::http::{session_token, LoopbackServer};

pub const TOKEN: &str = "sess-0123456789";
pub const ORG: &str = "7c60d51f-b44e-4682-87d6-449835ea4de6";
pub const USER: &str = "a0061a8e-7db7-4585-838c-3116a003dd21";
pub const WS: &str = "0fa1b2c3-0000-4000-8000-00000000ws01";
pub const AGENT: &str = "2b1e4c3d-0000-4000-8000-0000000agent";
pub const SRC_STARTUP: &str = "0ab0c0d0-0000-4000-8000-00000startup";

/// Requests the double saw: (method path, session token header, body).
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(String, Option<String>, Value)>,
    pub tar_len: usize,
    /// The last template archive uploaded.
    pub tar: Vec<u8>,
    pub lifecycle: String,
}

type St = Arc<Mutex<Seen>>;

fn token(h: &HeaderMap) -> Option<String> {
    session_token(h).map(String::from)
}

fn record(st: &St, what: &str, h: &HeaderMap, body: Value) {
    st.lock()
        .unwrap()
        .requests
        .push((what.to_string(), token(h), body));
}

fn agent_json(lifecycle: &str) -> Value {
    json!({
        "id": AGENT, "name": "main", "status": "connected",
        "lifecycle_state": lifecycle,
        "first_connected_at": "2026-01-01T00:00:01Z",
        "started_at": "2026-01-01T00:00:01.5Z",
        "last_connected_at": "2026-01-01T00:00:05.123456Z",
        "log_sources": [
            {"id": SRC_STARTUP, "workspace_agent_id": AGENT, "created_at": "2026-01-01T00:00:00Z",
             "display_name": "Startup Script", "icon": "/emojis/25b6.png"}
        ],
        "architecture": "amd64", "operating_system": "linux"
    })
}

fn workspace_json(lifecycle: &str) -> Value {
    json!({
        "id": WS, "name": "ws1", "owner_id": USER, "owner_name": "admin",
        "template_id": "tpl-1", "organization_id": ORG,
        "latest_build": {
            "id": "build-1", "build_number": 1, "transition": "start", "status": "running",
            "job": {"id": "job-2", "status": "succeeded"},
            "resources": [
                {"id": "res-1", "name": "dev", "type": "aws_instance", "agents": [agent_json(lifecycle)]}
            ]
        }
    })
}

async fn first_user(State(st): State<St>, h: HeaderMap, Json(b): Json<Value>) -> impl IntoResponse {
    record(&st, "POST /users/first", &h, b);
    (
        StatusCode::CREATED,
        Json(json!({"user_id": USER, "organization_id": ORG})),
    )
}

async fn login(State(st): State<St>, h: HeaderMap, Json(b): Json<Value>) -> impl IntoResponse {
    record(&st, "POST /users/login", &h, b.clone());
    if b["password"] != "correct-horse" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Incorrect email or password."})),
        );
    }
    (StatusCode::CREATED, Json(json!({"session_token": TOKEN})))
}

async fn orgs(State(st): State<St>, h: HeaderMap) -> impl IntoResponse {
    record(&st, "GET /users/me/organizations", &h, Value::Null);
    Json(
        json!([{"id": ORG, "name": "coder", "display_name": "Coder", "is_default": true,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}]),
    )
}

async fn files(State(st): State<St>, h: HeaderMap, body: Bytes) -> impl IntoResponse {
    record(
        &st,
        "POST /files",
        &h,
        json!(h.get("content-type").and_then(|v| v.to_str().ok())),
    );
    let mut g = st.lock().unwrap();
    g.tar_len = body.len();
    g.tar = body.to_vec();
    (StatusCode::CREATED, Json(json!({"hash": "file-hash-1"})))
}

async fn versions(
    State(st): State<St>,
    h: HeaderMap,
    Path(org): Path<String>,
    Json(b): Json<Value>,
) -> impl IntoResponse {
    record(
        &st,
        &format!("POST /organizations/{org}/templateversions"),
        &h,
        b,
    );
    (
        StatusCode::CREATED,
        Json(
            json!({"id": "tv-1", "name": "brave_ride", "organization_id": ORG,
                    "job": {"id": "job-1", "status": "pending"}}),
        ),
    )
}

async fn version(Path(id): Path<String>) -> impl IntoResponse {
    if id == "tv-bad" {
        return Json(json!({"id": id, "name": "sad_turing",
            "job": {"id": "job-9", "status": "failed", "error": "terraform plan: exit status 1"}}));
    }
    Json(json!({"id": id, "name": "brave_ride", "job": {"id": "job-1", "status": "succeeded"}}))
}

async fn version_logs() -> impl IntoResponse {
    Json(json!([
        {"id": 1, "created_at": "2026-01-01T00:00:00Z", "log_source": "provisioner", "log_level": "info", "stage": "Planning infrastructure", "output": "Error: Missing required argument"}
    ]))
}

async fn templates(
    State(st): State<St>,
    h: HeaderMap,
    Path(org): Path<String>,
    Json(b): Json<Value>,
) -> impl IntoResponse {
    record(
        &st,
        &format!("POST /organizations/{org}/templates"),
        &h,
        b.clone(),
    );
    if b["name"] == "taken" {
        return (
            StatusCode::CONFLICT,
            Json(
                json!({"message": "Template with name \"taken\" already exists.",
                        "validations": [{"field": "name", "detail": "This value is already in use and should be unique."}]}),
            ),
        );
    }
    (
        StatusCode::CREATED,
        Json(
            json!({"id": "tpl-1", "name": b["name"], "active_version_id": b["template_version_id"], "organization_id": ORG}),
        ),
    )
}

async fn create_ws(
    State(st): State<St>,
    h: HeaderMap,
    Path(user): Path<String>,
    Json(b): Json<Value>,
) -> impl IntoResponse {
    record(&st, &format!("POST /users/{user}/workspaces"), &h, b);
    (StatusCode::CREATED, Json(workspace_json("created")))
}

async fn builds(
    State(st): State<St>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<Value>,
) -> impl IntoResponse {
    record(&st, &format!("POST /workspaces/{id}/builds"), &h, b.clone());
    (
        StatusCode::CREATED,
        Json(
            json!({"id": "build-2", "build_number": 2, "transition": b["transition"],
                    "status": "pending", "job": {"id": "job-3", "status": "pending"}, "resources": []}),
        ),
    )
}

async fn workspace(State(st): State<St>, Path(id): Path<String>) -> impl IntoResponse {
    let l = st.lock().unwrap().lifecycle.clone();
    let mut w = workspace_json(&l);
    if id == "ws-bad" {
        w["id"] = json!(id);
        w["latest_build"]["id"] = json!("build-bad");
        w["latest_build"]["status"] = json!("failed");
        w["latest_build"]["job"] =
            json!({"id": "job-bad", "status": "failed", "error": "terraform apply: exit status 1"});
    }
    Json(w)
}

async fn build_logs(Path(id): Path<String>) -> impl IntoResponse {
    let out = if id == "build-bad" {
        "Error: local-exec provisioner error"
    } else {
        "Apply complete!"
    };
    Json(json!([
        {"id": 7, "created_at": "2026-01-01T00:00:03Z", "log_source": "provisioner", "log_level": "error", "stage": "Starting workspace", "output": out}
    ]))
}

async fn agent(State(st): State<St>) -> impl IntoResponse {
    let l = st.lock().unwrap().lifecycle.clone();
    Json(agent_json(&l))
}

async fn agent_logs(
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let after: i64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let all = [
        (
            1,
            "+ nixos-rebuild switch --flake github:example/good#dev",
            "info",
        ),
        (2, "building the system configuration...", "info"),
        (3, "error: switch failed", "error"),
    ];
    let v: Vec<Value> = all
        .iter()
        .filter(|(id, _, _)| *id > after)
        .map(|(id, out, lvl)| {
            json!({"id": id, "created_at": "2026-01-01T00:00:02Z", "output": out, "level": lvl, "source_id": SRC_STARTUP})
        })
        .collect();
    Json(v)
}

async fn cli(Path(name): Path<String>) -> impl IntoResponse {
    if name == "coder-linux-amd64" {
        (StatusCode::OK, b"\x7fELF\x02\x01\x01fake coder".to_vec())
    } else {
        (StatusCode::NOT_FOUND, b"not found".to_vec())
    }
}

/// The running double; dropping it stops the server.
pub struct CoderApiDouble {
    server: LoopbackServer,
    pub seen: St,
}

impl CoderApiDouble {
    pub async fn start() -> CoderApiDouble {
        let seen: St = Arc::new(Mutex::new(Seen {
            lifecycle: "starting".into(),
            ..Seen::default()
        }));
        let app = Router::new()
            .route("/api/v2/users/first", post(first_user))
            .route("/api/v2/users/login", post(login))
            .route("/api/v2/users/me/organizations", get(orgs))
            .route("/api/v2/files", post(files))
            .route(
                "/api/v2/organizations/{org}/templateversions",
                post(versions),
            )
            .route("/api/v2/organizations/{org}/templates", post(templates))
            .route("/api/v2/templateversions/{id}", get(version))
            .route("/api/v2/templateversions/{id}/logs", get(version_logs))
            .route("/api/v2/users/{user}/workspaces", post(create_ws))
            .route("/api/v2/workspaces/{id}/builds", post(builds))
            .route("/api/v2/workspaces/{id}", get(workspace))
            .route("/api/v2/workspacebuilds/{id}/logs", get(build_logs))
            .route("/api/v2/workspaceagents/{id}", get(agent))
            .route("/api/v2/workspaceagents/{id}/logs", get(agent_logs))
            .route("/bin/{name}", get(cli))
            .with_state(seen.clone());
        let server = LoopbackServer::start(app).await.unwrap();
        CoderApiDouble { server, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::control::coder::client::{ApiError, CoderClient};
    use crate::control::coder::types::*;
    use crate::control::coder::CoderControlPlane;
    use crate::control::ControlPlane;

    #[tokio::test]
    async fn setup_flow_against_the_double() {
        let d = CoderApiDouble::start().await;
        let mut c = CoderClient::new(&d.url()).unwrap();
        let first = c
            .create_first_user(&CreateFirstUserRequest {
                email: "admin@example.com".into(),
                username: "admin".into(),
                name: "Admin".into(),
                password: "correct-horse".into(),
            })
            .await
            .unwrap();
        assert_eq!(first.organization_id, ORG);
        let t = c.login("admin@example.com", "correct-horse").await.unwrap();
        assert_eq!(t, TOKEN);
        let orgs = c.organizations().await.unwrap();
        assert_eq!(orgs[0].id, ORG);
        assert!(orgs[0].is_default);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), "terraform {}\n").unwrap();
        let tpl = c
            .push_template(
                ORG,
                "aws-nixos",
                dir.path(),
                vec![VariableValue {
                    name: "arch".into(),
                    value: "x86_64".into(),
                }],
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(tpl.active_version_id, "tv-1");

        let ws = c
            .create_workspace(
                "me",
                &CreateWorkspaceRequest {
                    name: "ws1".into(),
                    template_id: tpl.id.clone(),
                    rich_parameter_values: vec![
                        WorkspaceBuildParameter {
                            name: "flake_uri".into(),
                            value: "path:/fixtures/good#dev".into(),
                        },
                        WorkspaceBuildParameter {
                            name: "agent_user".into(),
                            value: "coder".into(),
                        },
                    ],
                },
            )
            .await
            .unwrap();
        assert_eq!(ws.agents().next().unwrap().id, AGENT);
        let b = c.create_build(&ws.id, "stop").await.unwrap();
        assert_eq!(b.transition, "stop");

        let seen = d.seen.lock().unwrap();
        let reqs: Vec<&str> = seen.requests.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            reqs,
            [
                "POST /users/first",
                "POST /users/login",
                "GET /users/me/organizations",
                "POST /files",
                format!("POST /organizations/{ORG}/templateversions").as_str(),
                format!("POST /organizations/{ORG}/templates").as_str(),
                "POST /users/me/workspaces",
                format!("POST /workspaces/{WS}/builds").as_str(),
            ]
        );
        // Token sent after login only.
        assert_eq!(seen.requests[0].1, None);
        assert!(seen.requests[2..]
            .iter()
            .all(|r| r.1.as_deref() == Some(TOKEN)));
        assert_eq!(seen.requests[3].2, json!("application/x-tar"));
        assert!(seen.tar_len >= 1024, "tar of one file is at least 1 KiB");
        let tv = &seen.requests[4].2;
        assert_eq!(tv["storage_method"], "file");
        assert_eq!(tv["provisioner"], "terraform");
        assert_eq!(tv["file_id"], "file-hash-1");
        assert_eq!(tv["user_variable_values"][0]["name"], "arch");
        let ws_req = &seen.requests[6].2;
        assert_eq!(ws_req["rich_parameter_values"][0]["name"], "flake_uri");
        assert_eq!(ws_req["rich_parameter_values"][1]["value"], "coder");
        assert_eq!(seen.requests[7].2, json!({"transition": "stop"}));
    }

    #[tokio::test]
    async fn error_bodies_are_surfaced() {
        let d = CoderApiDouble::start().await;
        let mut c = CoderClient::new(&d.url()).unwrap();
        let e = c.login("admin@example.com", "wrong").await.unwrap_err();
        let api = e.downcast_ref::<ApiError>().expect("ApiError");
        assert_eq!(api.status.as_u16(), 401);
        assert!(
            e.to_string().contains("Incorrect email or password."),
            "{e}"
        );

        let e = c
            .create_template(
                ORG,
                &CreateTemplateRequest {
                    name: "taken".into(),
                    template_version_id: "tv-1".into(),
                },
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("409"), "{e}");
        assert!(e.contains("already exists"), "{e}");
        assert!(
            e.contains("invalid `name`: This value is already in use"),
            "{e}"
        );

        let e = c
            .wait_template_version("tv-bad", Duration::from_secs(5), Duration::from_millis(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected the job to succeed, seen failed"),
            "{e}"
        );
        assert!(e.contains("terraform plan: exit status 1"), "{e}");
        assert!(e.contains("Missing required argument"), "{e}");
    }

    #[tokio::test]
    async fn control_plane_reads_agent_logs_by_source_and_lifecycle() {
        let d = CoderApiDouble::start().await;
        let c = CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let cp = CoderControlPlane::new(c, WS);
        assert!(cp.describe().contains("(real server)"));
        assert!(cp.describe().contains(crate::control::coder::CODER_VERSION));
        assert!(cp.agent_connected().await.unwrap());
        let logs = cp.logs().await.unwrap();
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0].source, "Startup Script");
        assert_eq!(logs[2].level, "error");
        // A second poll asks with after=3 and keeps the first-seen times.
        let again = cp.logs().await.unwrap();
        assert_eq!(again, logs);
        d.seen.lock().unwrap().lifecycle = "ready".into();
        let states: Vec<String> = cp
            .lifecycle()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.state)
            .collect();
        assert_eq!(states, ["starting", "ready"]);
    }

    #[tokio::test]
    async fn waits_for_builds_and_reports_failures_with_the_log() {
        let d = CoderApiDouble::start().await;
        let c = CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let ws = c
            .wait_build(WS, Duration::from_secs(5), Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(ws.latest_build.status, "running");
        let e = c
            .wait_build("ws-bad", Duration::from_secs(5), Duration::from_millis(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected the job to succeed, seen failed"),
            "{e}"
        );
        assert!(e.contains("terraform apply: exit status 1"), "{e}");
        assert!(e.contains("local-exec provisioner error"), "{e}");
    }

    #[tokio::test]
    async fn downloads_the_cli_from_the_server() {
        let d = CoderApiDouble::start().await;
        let c = CoderClient::new(&d.url()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = c
            .download_cli(
                crate::template::variant::Arch::X86_64,
                &dir.path().join("coder"),
            )
            .await
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let e = c
            .download_cli(
                crate::template::variant::Arch::Aarch64,
                &dir.path().join("coder2"),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("coder-linux-arm64") && e.contains("404"), "{e}");
    }

    /// Bodies as coderd marshals them (Go `omitempty` drops empty fields):
    /// the types must not insist on fields the harness does not read.
    #[test]
    fn spec_shapes_parse_with_omitempty_fields_absent() {
        let b: WorkspaceBuild = serde_json::from_value(json!({
            "id": "b", "build_number": 3, "transition": "stop", "status": "canceling",
            "job": {"status": "unknown"}
        }))
        .unwrap();
        assert_eq!(b.job.status, "unknown");
        assert!(b.job.error.is_none() && b.resources.is_empty());
        let e: ErrorResponse = serde_json::from_value(json!({
            "message": "Validation failed.",
            "detail": "pq: duplicate key",
            "validations": [{"field": "name", "detail": "taken"}, {"field": "ttl_ms"}]
        }))
        .unwrap();
        assert_eq!(e.validations.len(), 2);
        assert_eq!(e.detail, "pq: duplicate key");
        let a: WorkspaceAgent = serde_json::from_value(json!({
            "id": AGENT, "status": "timeout", "lifecycle_state": "start_error"
        }))
        .unwrap();
        assert!(a.log_sources.is_empty() && a.ready_at.is_none());
        let l: WorkspaceAgentLog =
            serde_json::from_value(json!({"id": 9, "output": "x", "source_id": SRC_STARTUP}))
                .unwrap();
        assert_eq!(l.level, "");
    }
}

//! Request and response bodies of Coder's REST API (`codersdk`), as in
//! `coderd/apidoc/swagger.json` of the pinned [`super::CODER_VERSION`].
//! Only the fields the harness uses; unknown fields are ignored, and
//! fields the harness does not read are `#[serde(default)]` so a server
//! that omits them (Go `omitempty`) still parses.
//!
//! Cross-checked against `coderd/apidoc/swagger.json` and `codersdk/*.go`
//! (stored snapshot of github.com/coder/coder; the v2.27.7 tag itself
//! was not fetchable, the shapes used here are unchanged across 2.2x).

use serde::{Deserialize, Serialize};

/// `codersdk.Response`: every Coder error body.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ErrorResponse {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub validations: Vec<ValidationError>,
}

/// `codersdk.ValidationError` (swagger marks both fields required; kept
/// lenient so one odd entry cannot void the whole error body).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ValidationError {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub detail: String,
}

/// `codersdk.CreateFirstUserRequest` (`POST /users/first`; required:
/// `email`, `username`, `password`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateFirstUserRequest {
    pub email: String,
    pub username: String,
    pub name: String,
    pub password: String,
}

/// `codersdk.CreateFirstUserResponse` (201 from `POST /users/first`).
#[derive(Debug, Clone, Deserialize)]
pub struct CreateFirstUserResponse {
    #[serde(default)]
    pub user_id: String,
    pub organization_id: String,
}

/// `codersdk.LoginWithPasswordRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct LoginWithPasswordRequest {
    pub email: String,
    pub password: String,
}

/// `codersdk.LoginWithPasswordResponse` (201 from `POST /users/login`).
#[derive(Debug, Clone, Deserialize)]
pub struct LoginWithPasswordResponse {
    pub session_token: String,
}

/// `codersdk.Organization` (`GET /users/{user}/organizations` returns
/// an array of these).
#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub is_default: bool,
}

/// `codersdk.UploadResponse` (`POST /files`, body `Content-Type:
/// application/x-tar`; 201 for a new file, 200 for a duplicate).
#[derive(Debug, Clone, Deserialize)]
pub struct UploadResponse {
    pub hash: String,
}

/// `codersdk.VariableValue`: a template variable (`variable` block).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariableValue {
    pub name: String,
    pub value: String,
}

/// `codersdk.WorkspaceBuildParameter`: a rich parameter value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkspaceBuildParameter {
    pub name: String,
    pub value: String,
}

/// `codersdk.CreateTemplateVersionRequest` (required: `storage_method`,
/// `provisioner`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateTemplateVersionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// `codersdk.ProvisionerStorageMethod`: only `file`.
    pub storage_method: String,
    pub file_id: String,
    /// `terraform` (or `echo`, test only).
    pub provisioner: String,
    pub user_variable_values: Vec<VariableValue>,
}

/// `codersdk.ProvisionerJob` (the parts we read).  `error` and
/// `error_code` are Go `omitempty` strings: absent, never `null`, when
/// the job did not fail.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ProvisionerJob {
    #[serde(default)]
    pub id: String,
    /// `codersdk.ProvisionerJobStatus`: `pending`, `running`, `succeeded`,
    /// `canceling`, `canceled`, `failed`, `unknown`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    /// `codersdk.JobErrorCode`: only `REQUIRED_TEMPLATE_VARIABLES`.
    #[serde(default)]
    pub error_code: Option<String>,
}

/// `codersdk.TemplateVersion` (201 from `POST
/// /organizations/{organization}/templateversions`, 200 from `GET
/// /templateversions/{templateversion}`).
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateVersion {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Go `*uuid.UUID` with `omitempty`: absent until the version is
    /// attached to a template.
    #[serde(default)]
    pub template_id: Option<String>,
    pub job: ProvisionerJob,
}

/// `codersdk.ProvisionerJobLog` (`GET /templateversions/{id}/logs` and
/// `GET /workspacebuilds/{id}/logs`, both JSON arrays unless `follow`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProvisionerJobLog {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub stage: String,
    /// `codersdk.LogLevel`: `trace`, `debug`, `info`, `warn`, `error`.
    #[serde(default)]
    pub log_level: String,
    #[serde(default)]
    pub output: String,
}

/// `codersdk.CreateTemplateRequest` (required: `name`,
/// `template_version_id`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateTemplateRequest {
    pub name: String,
    pub template_version_id: String,
}

/// `codersdk.Template` (`POST /organizations/{organization}/templates`;
/// swagger documents 200, coderd writes 201).
#[derive(Debug, Clone, Deserialize)]
pub struct Template {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub active_version_id: String,
}

/// `codersdk.CreateWorkspaceRequest` (`POST /users/{user}/workspaces`,
/// `user` may be `me`; required: `name`; exactly one of `template_id` /
/// `template_version_id`).
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspaceRequest {
    pub name: String,
    pub template_id: String,
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
}

/// `codersdk.CreateWorkspaceBuildRequest` (`POST
/// /workspaces/{workspace}/builds`; required: `transition`).  Answered
/// with a `codersdk.WorkspaceBuild` (swagger says 200, coderd writes 201).
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspaceBuildRequest {
    /// `codersdk.WorkspaceTransition`: `start`, `stop` or `delete`.
    pub transition: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
}

/// `codersdk.WorkspaceAgentLogSource`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WorkspaceAgentLogSource {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub icon: String,
}

/// `codersdk.WorkspaceAgent` (the parts we read; also the body of `GET
/// /workspaceagents/{workspaceagent}`).  A new agent row (new `id`, new
/// auth token) is made by every workspace build.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceAgent {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `codersdk.WorkspaceAgentStatus`: `connecting`, `connected`,
    /// `disconnected`, `timeout`.
    pub status: String,
    /// `codersdk.WorkspaceAgentLifecycle`: `created`, `starting`,
    /// `start_timeout`, `start_error`, `ready`, `shutting_down`,
    /// `shutdown_timeout`, `shutdown_error`, `off`.
    pub lifecycle_state: String,
    #[serde(default)]
    pub log_sources: Vec<WorkspaceAgentLogSource>,
    #[serde(default)]
    pub first_connected_at: Option<String>,
    #[serde(default)]
    pub ready_at: Option<String>,
    /// When the agent last reported `starting` (RFC 3339); omitted before.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When the agent was last seen connected (RFC 3339).
    #[serde(default)]
    pub last_connected_at: Option<String>,
}

/// `codersdk.WorkspaceResource`.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceResource {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub agents: Vec<WorkspaceAgent>,
}

/// `codersdk.WorkspaceBuild`.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceBuild {
    pub id: String,
    pub build_number: i64,
    /// `codersdk.WorkspaceTransition`: `start`, `stop`, `delete`.
    pub transition: String,
    /// `codersdk.WorkspaceStatus`: `pending`, `starting`, `running`,
    /// `stopping`, `stopped`, `failed`, `canceling`, `canceled`,
    /// `deleting`, `deleted`.
    pub status: String,
    pub job: ProvisionerJob,
    #[serde(default)]
    pub resources: Vec<WorkspaceResource>,
}

/// `codersdk.Workspace` (`GET /workspaces/{workspace}`; also the answer
/// to `POST /users/{user}/workspaces`: swagger says 200, coderd writes
/// 201).
#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The owner's username.
    #[serde(default)]
    pub owner_name: String,
    #[serde(default)]
    pub template_id: String,
    pub latest_build: WorkspaceBuild,
}

impl Workspace {
    /// All agents of the latest build.
    pub fn agents(&self) -> impl Iterator<Item = &WorkspaceAgent> {
        self.latest_build
            .resources
            .iter()
            .flat_map(|r| r.agents.iter())
    }
}

/// `codersdk.WorkspaceAgentLog` (`GET
/// /workspaceagents/{workspaceagent}/logs?after=N`: a JSON array of the
/// logs with `id > N`, ascending, unless `follow` is set).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct WorkspaceAgentLog {
    pub id: i64,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub output: String,
    /// `codersdk.LogLevel`: `trace`, `debug`, `info`, `warn`, `error`.
    #[serde(default)]
    pub level: String,
    pub source_id: String,
}

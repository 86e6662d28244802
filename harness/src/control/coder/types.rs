//! Request and response bodies of Coder's REST API (`codersdk`), as in
//! `coderd/apidoc/swagger.json` of the pinned [`super::CODER_VERSION`].
//! Only the fields the harness uses; unknown fields are ignored.

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

/// `codersdk.ValidationError`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ValidationError {
    pub field: String,
    pub detail: String,
}

/// `codersdk.CreateFirstUserRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateFirstUserRequest {
    pub email: String,
    pub username: String,
    pub name: String,
    pub password: String,
}

/// `codersdk.CreateFirstUserResponse`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateFirstUserResponse {
    pub user_id: String,
    pub organization_id: String,
}

/// `codersdk.LoginWithPasswordRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct LoginWithPasswordRequest {
    pub email: String,
    pub password: String,
}

/// `codersdk.LoginWithPasswordResponse`.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginWithPasswordResponse {
    pub session_token: String,
}

/// `codersdk.Organization`.
#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub is_default: bool,
}

/// `codersdk.UploadResponse` (`POST /files`).
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

/// `codersdk.CreateTemplateVersionRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateTemplateVersionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Always `file`.
    pub storage_method: String,
    pub file_id: String,
    /// Always `terraform`.
    pub provisioner: String,
    pub user_variable_values: Vec<VariableValue>,
}

/// `codersdk.ProvisionerJob` (the parts we read).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ProvisionerJob {
    pub id: String,
    /// `pending`, `running`, `succeeded`, `canceling`, `canceled`, `failed`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
}

/// `codersdk.TemplateVersion`.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateVersion {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub template_id: Option<String>,
    pub job: ProvisionerJob,
}

/// `codersdk.ProvisionerJobLog` (template version and build logs).
#[derive(Debug, Clone, Deserialize)]
pub struct ProvisionerJobLog {
    pub id: i64,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub log_level: String,
    pub output: String,
}

/// `codersdk.CreateTemplateRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateTemplateRequest {
    pub name: String,
    pub template_version_id: String,
}

/// `codersdk.Template`.
#[derive(Debug, Clone, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub active_version_id: String,
}

/// `codersdk.CreateWorkspaceRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspaceRequest {
    pub name: String,
    pub template_id: String,
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
}

/// `codersdk.CreateWorkspaceBuildRequest`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateWorkspaceBuildRequest {
    /// `start`, `stop` or `delete`.
    pub transition: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rich_parameter_values: Vec<WorkspaceBuildParameter>,
}

/// `codersdk.WorkspaceAgentLogSource`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WorkspaceAgentLogSource {
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub icon: String,
}

/// `codersdk.WorkspaceAgent` (the parts we read).
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceAgent {
    pub id: String,
    pub name: String,
    /// `connecting`, `connected`, `disconnected`, `timeout`.
    pub status: String,
    /// `created`, `starting`, `start_timeout`, `start_error`, `ready`,
    /// `shutting_down`, `shutdown_timeout`, `shutdown_error`, `off`.
    pub lifecycle_state: String,
    #[serde(default)]
    pub log_sources: Vec<WorkspaceAgentLogSource>,
    #[serde(default)]
    pub first_connected_at: Option<String>,
    #[serde(default)]
    pub ready_at: Option<String>,
}

/// `codersdk.WorkspaceResource`.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceResource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub agents: Vec<WorkspaceAgent>,
}

/// `codersdk.WorkspaceBuild`.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkspaceBuild {
    pub id: String,
    pub build_number: i64,
    /// `start`, `stop`, `delete`.
    pub transition: String,
    /// `pending`, `starting`, `running`, `stopping`, `stopped`, `failed`, …
    pub status: String,
    pub job: ProvisionerJob,
    #[serde(default)]
    pub resources: Vec<WorkspaceResource>,
}

/// `codersdk.Workspace`.
#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub owner_name: String,
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

/// `codersdk.WorkspaceAgentLog`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct WorkspaceAgentLog {
    pub id: i64,
    pub created_at: String,
    pub output: String,
    #[serde(default)]
    pub level: String,
    pub source_id: String,
}

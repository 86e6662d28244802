//! A client for the Coder REST API (`/api/v2`), with reqwest.  Session
//! token in the `Coder-Session-Token` header; error bodies
//! (`codersdk.Response`) are surfaced in [`ApiError`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::*;
use crate::template::variant::Arch;

/// Header carrying the session token.
pub const SESSION_HEADER: &str = "Coder-Session-Token";

/// A non-2xx answer from Coder, with its `codersdk.Response` body.
#[derive(Debug)]
pub struct ApiError {
    pub method: String,
    pub url: String,
    pub status: StatusCode,
    pub body: ErrorResponse,
    /// The raw body when it was not a `codersdk.Response`.
    pub raw: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Coder API {} {} returned {}",
            self.method, self.url, self.status
        )?;
        if !self.body.message.is_empty() {
            write!(f, ": {}", self.body.message)?;
        }
        if !self.body.detail.is_empty() {
            write!(f, " (detail: {})", self.body.detail)?;
        }
        for v in &self.body.validations {
            write!(f, "; invalid `{}`: {}", v.field, v.detail)?;
        }
        if self.body.message.is_empty() && !self.raw.is_empty() {
            write!(f, ": {}", self.raw.chars().take(500).collect::<String>())?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Coder API client for one deployment (`base`, e.g. `http://127.0.0.1:7080`).
#[derive(Clone)]
pub struct CoderClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl CoderClient {
    pub fn new(base: &str) -> anyhow::Result<CoderClient> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(CoderClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(mut self, token: &str) -> CoderClient {
        self.token = Some(token.to_string());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.header(SESSION_HEADER, t);
        }
        r
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = build(self.request(method.clone(), path))
            .send()
            .await
            .with_context(|| format!("Coder API {method} {url}: no answer (is the server up?)"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let body: ErrorResponse = serde_json::from_str(&text).unwrap_or_default();
            return Err(ApiError {
                method: method.to_string(),
                url,
                status,
                body,
                raw: text,
            }
            .into());
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "Coder API {method} {url}: unexpected body for {}: {}",
                std::any::type_name::<T>(),
                text.chars().take(500).collect::<String>()
            )
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, |r| r).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, |r| r.json(body)).await
    }

    /// `POST /api/v2/users/first`.
    pub async fn create_first_user(
        &self,
        req: &CreateFirstUserRequest,
    ) -> anyhow::Result<CreateFirstUserResponse> {
        self.post("/api/v2/users/first", req).await
    }

    /// `POST /api/v2/users/login`; keeps the session token.
    pub async fn login(&mut self, email: &str, password: &str) -> anyhow::Result<String> {
        let r: LoginWithPasswordResponse = self
            .post(
                "/api/v2/users/login",
                &LoginWithPasswordRequest {
                    email: email.into(),
                    password: password.into(),
                },
            )
            .await?;
        self.token = Some(r.session_token.clone());
        Ok(r.session_token)
    }

    /// `GET /api/v2/users/me/organizations`.
    pub async fn organizations(&self) -> anyhow::Result<Vec<Organization>> {
        self.get("/api/v2/users/me/organizations").await
    }

    /// `POST /api/v2/files` with a tar archive; returns the file id (hash).
    pub async fn upload_tar(&self, tar: Vec<u8>) -> anyhow::Result<String> {
        let r: UploadResponse = self
            .send(Method::POST, "/api/v2/files", |r| {
                r.header("Content-Type", "application/x-tar").body(tar)
            })
            .await?;
        Ok(r.hash)
    }

    /// `POST /api/v2/organizations/{org}/templateversions`.
    pub async fn create_template_version(
        &self,
        org: &str,
        req: &CreateTemplateVersionRequest,
    ) -> anyhow::Result<TemplateVersion> {
        self.post(
            &format!("/api/v2/organizations/{org}/templateversions"),
            req,
        )
        .await
    }

    /// Poll a template version's import job until it ends; errors with
    /// the job error and the tail of its logs if it did not succeed.
    pub async fn wait_template_version(
        &self,
        id: &str,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<TemplateVersion> {
        self.wait_job(&format!("/api/v2/templateversions/{id}"), timeout, poll)
            .await
    }

    /// Poll `path` (a [`JobOwner`]) until its provisioner job ends, printing
    /// each state change; errors with the job error and the tail of the
    /// job's log unless it succeeded.
    async fn wait_job<T: JobOwner + DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let t: T = self.get(path).await?;
            let (what, job) = (t.what(), t.job());
            if t.state() != last {
                last = t.state();
                eprintln!("[coder] {what}: {last}");
            }
            match job.status.as_str() {
                "succeeded" => return Ok(t),
                "failed" | "canceled" | "unknown" => {
                    let logs: Vec<ProvisionerJobLog> =
                        self.get(&t.logs_path()).await.unwrap_or_default();
                    let tail: Vec<String> = logs
                        .iter()
                        .rev()
                        .take(30)
                        .rev()
                        .map(|l| format!("  [{}] {}", l.stage, l.output))
                        .collect();
                    anyhow::bail!(
                        "{what}: expected the job to succeed, seen {} ({}); last log lines (GET {}{}):\n{}",
                        job.status,
                        job.error.clone().unwrap_or_default(),
                        self.base,
                        t.logs_path(),
                        tail.join("\n")
                    );
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "{what}: expected the provisioner job to end within {timeout:?}, seen {}",
                    job.status
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// `POST /api/v2/organizations/{org}/templates`.
    pub async fn create_template(
        &self,
        org: &str,
        req: &CreateTemplateRequest,
    ) -> anyhow::Result<Template> {
        self.post(&format!("/api/v2/organizations/{org}/templates"), req)
            .await
    }

    /// Upload `dir` as a template: tar, `POST /files`, template version
    /// (waits for the import), template.
    pub async fn push_template(
        &self,
        org: &str,
        name: &str,
        dir: &Path,
        variables: Vec<VariableValue>,
        timeout: Duration,
    ) -> anyhow::Result<Template> {
        let tar = tar_dir(dir)?;
        let file_id = self.upload_tar(tar).await?;
        let v = self
            .create_template_version(
                org,
                &CreateTemplateVersionRequest {
                    name: None,
                    template_id: None,
                    storage_method: "file".into(),
                    file_id,
                    provisioner: "terraform".into(),
                    user_variable_values: variables,
                },
            )
            .await?;
        let v = self
            .wait_template_version(&v.id, timeout, Duration::from_secs(2))
            .await?;
        self.create_template(
            org,
            &CreateTemplateRequest {
                name: name.into(),
                template_version_id: v.id,
            },
        )
        .await
    }

    /// `POST /api/v2/users/{user}/workspaces` (`user` may be `me`).
    pub async fn create_workspace(
        &self,
        user: &str,
        req: &CreateWorkspaceRequest,
    ) -> anyhow::Result<Workspace> {
        self.post(&format!("/api/v2/users/{user}/workspaces"), req)
            .await
    }

    /// `POST /api/v2/workspaces/{id}/builds`.
    pub async fn create_build(
        &self,
        workspace: &str,
        transition: &str,
    ) -> anyhow::Result<WorkspaceBuild> {
        self.create_build_with(workspace, transition, vec![]).await
    }

    /// `POST /api/v2/workspaces/{id}/builds` with changed parameters (the
    /// rest keep their values, as `coder update --parameter` does).
    pub async fn create_build_with(
        &self,
        workspace: &str,
        transition: &str,
        rich_parameter_values: Vec<WorkspaceBuildParameter>,
    ) -> anyhow::Result<WorkspaceBuild> {
        self.post(
            &format!("/api/v2/workspaces/{workspace}/builds"),
            &CreateWorkspaceBuildRequest {
                transition: transition.into(),
                rich_parameter_values,
            },
        )
        .await
    }

    /// `GET /api/v2/workspaces/{id}`.
    pub async fn workspace(&self, id: &str) -> anyhow::Result<Workspace> {
        self.get(&format!("/api/v2/workspaces/{id}")).await
    }

    /// Poll a workspace until its latest build's job ends; errors with the
    /// job error and the tail of the build log unless it succeeded.
    pub async fn wait_build(
        &self,
        workspace: &str,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<Workspace> {
        self.wait_job(&format!("/api/v2/workspaces/{workspace}"), timeout, poll)
            .await
    }

    /// `GET /api/v2/workspaceagents/{id}`.
    pub async fn agent(&self, id: &str) -> anyhow::Result<WorkspaceAgent> {
        self.get(&format!("/api/v2/workspaceagents/{id}")).await
    }

    /// `GET /api/v2/workspaceagents/{id}/logs?after=N`.
    pub async fn agent_logs(&self, id: &str, after: i64) -> anyhow::Result<Vec<WorkspaceAgentLog>> {
        self.get(&format!("/api/v2/workspaceagents/{id}/logs?after={after}"))
            .await
    }

    /// Download the Coder CLI the server ships (`/bin/coder-linux-<arch>`)
    /// to `dest` (made executable).
    pub async fn download_cli(&self, arch: Arch, dest: &Path) -> anyhow::Result<PathBuf> {
        let path = format!("/bin/coder-linux-{}", arch.coder_arch());
        let url = format!("{}{path}", self.base);
        let resp = self
            .request(Method::GET, &path)
            .send()
            .await
            .with_context(|| format!("GET {url}: no answer"))?;
        if !resp.status().is_success() {
            anyhow::bail!(
                "GET {url}: expected 200 and the coder binary, seen {}",
                resp.status()
            );
        }
        let bytes = resp.bytes().await?;
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            anyhow::bail!(
                "GET {url}: expected an ELF binary, seen {} bytes starting {:?}",
                bytes.len(),
                &bytes[..bytes.len().min(16)]
            );
        }
        std::fs::write(dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
        Ok(dest.to_path_buf())
    }
}

/// Something that carries a provisioner job: a template version (import
/// job) or a workspace (its latest build's job).
pub trait JobOwner {
    /// For messages, e.g. `workspace ws1 build #2 (start)`.
    fn what(&self) -> String;
    fn job(&self) -> &ProvisionerJob;
    /// The state line printed while waiting.
    fn state(&self) -> String;
    /// The API path of the job's log.
    fn logs_path(&self) -> String;
}

impl JobOwner for TemplateVersion {
    fn what(&self) -> String {
        format!("template version {} import", self.name)
    }
    fn job(&self) -> &ProvisionerJob {
        &self.job
    }
    fn state(&self) -> String {
        self.job.status.clone()
    }
    fn logs_path(&self) -> String {
        format!("/api/v2/templateversions/{}/logs", self.id)
    }
}

impl JobOwner for Workspace {
    fn what(&self) -> String {
        let b = &self.latest_build;
        format!(
            "workspace {} build #{} ({})",
            self.name, b.build_number, b.transition
        )
    }
    fn job(&self) -> &ProvisionerJob {
        &self.latest_build.job
    }
    fn state(&self) -> String {
        let b = &self.latest_build;
        format!("{} (job {})", b.status, b.job.status)
    }
    fn logs_path(&self) -> String {
        format!("/api/v2/workspacebuilds/{}/logs", self.latest_build.id)
    }
}

/// A tar archive of `dir`'s contents (paths relative to `dir`), made with
/// the system `tar` in the ustar format Coder's provisioner reads.
pub fn tar_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("tar")
        .args(["--format=ustar", "--exclude=.terraform", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .context("cannot run `tar` (install GNU tar)")?;
    if !out.status.success() {
        anyhow::bail!(
            "tar of {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

//! One Coder workspace of the e2e tier and the machine state its builds
//! ask for.  The template test build's local instance module writes, per
//! build, into `<shared>/<instance name>/`:
//! `user-data` (rendered by the real bootstrap module) and `running`
//! (`true` for a start build, `false` for a stop build).  The harness
//! reads them after each build and makes the instance match: this is what
//! the EC2 provider does with `aws_instance` on the real template.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::client::CoderClient;
use super::stack::BUILD_TIMEOUT;
use super::types::Workspace;
use super::CoderControlPlane;

/// What the latest build asked the instance to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInstance {
    pub user_data: Vec<u8>,
    pub running: bool,
}

/// A workspace created by [`super::stack::CoderStack::create_workspace`].
pub struct CoderWorkspace {
    client: CoderClient,
    pub id: String,
    pub name: String,
    dir: PathBuf,
    latest: Workspace,
    /// The `ec2` tier's provisioner credentials, refreshed before each build.
    aws: Option<std::sync::Arc<super::aws_handoff::AwsHandOff>>,
}

impl CoderWorkspace {
    pub fn new(client: CoderClient, ws: Workspace, dir: PathBuf) -> CoderWorkspace {
        CoderWorkspace {
            client,
            id: ws.id.clone(),
            name: ws.name.clone(),
            dir,
            latest: ws,
            aws: None,
        }
    }

    /// Refresh `aws` before each build (the `ec2` tier).
    pub fn with_aws(mut self, aws: Option<std::sync::Arc<super::aws_handoff::AwsHandOff>>) -> Self {
        self.aws = aws;
        self
    }

    /// A build as a user asks for it (`start`, `stop`, `delete`, with
    /// changed parameters), waited for; nothing read from the shared dir
    /// (the pushed template's builds act on AWS themselves).
    pub async fn build(
        &mut self,
        transition: &str,
        params: Vec<super::types::WorkspaceBuildParameter>,
    ) -> anyhow::Result<&Workspace> {
        eprintln!(
            "[coder] workspace {}: {transition} build{}",
            self.name,
            if params.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    params
                        .iter()
                        .map(|p| format!("{}={}", p.name, p.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        super::stack::before_job(self.aws.as_deref()).await?;
        self.client
            .create_build_with(&self.id, transition, params)
            .await?;
        self.latest = self
            .client
            .wait_build(&self.id, BUILD_TIMEOUT, Duration::from_secs(2))
            .await?;
        Ok(&self.latest)
    }

    /// Where the local instance module writes this workspace's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The workspace as of the latest build the harness waited for.
    pub fn latest(&self) -> &Workspace {
        &self.latest
    }

    /// Read what the latest build wrote.
    pub fn desired(&self) -> anyhow::Result<DesiredInstance> {
        read_desired(&self.dir).with_context(|| {
            format!(
                "workspace {} build #{}: the template test build's local instance module writes \
                 user-data and running there (build log: GET {}/api/v2/workspacebuilds/{}/logs)",
                self.name,
                self.latest.latest_build.build_number,
                self.client.base(),
                self.latest.latest_build.id
            )
        })
    }

    /// Start a `start` or `stop` build through the Coder API, wait for it,
    /// and return what it asks of the instance.
    pub async fn transition(&mut self, transition: &str) -> anyhow::Result<DesiredInstance> {
        self.build(transition, vec![]).await?;
        let d = self.desired()?;
        let want = transition == "start";
        if d.running != want {
            anyhow::bail!(
                "workspace {} {transition} build: expected {}/running to say {want}, seen {}",
                self.name,
                self.dir.display(),
                d.running
            );
        }
        Ok(d)
    }

    /// The control plane the checks observe for this workspace.
    pub fn control_plane(&self) -> CoderControlPlane {
        CoderControlPlane::new(self.client.clone(), &self.id)
    }
}

/// Parse `<dir>/user-data` and `<dir>/running`.
pub fn read_desired(dir: &Path) -> anyhow::Result<DesiredInstance> {
    let ud = dir.join("user-data");
    let user_data = std::fs::read(&ud).with_context(|| {
        format!(
            "expected the build to have written {}, seen none",
            ud.display()
        )
    })?;
    if user_data.is_empty() {
        anyhow::bail!("expected user-data in {}, seen an empty file", ud.display());
    }
    let rp = dir.join("running");
    let running = match std::fs::read_to_string(&rp)
        .with_context(|| format!("expected {}, seen none", rp.display()))?
        .trim()
    {
        "true" => true,
        "false" => false,
        other => anyhow::bail!("{}: expected true or false, seen {other:?}", rp.display()),
    };
    Ok(DesiredInstance { user_data, running })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doubles::coder_api::{CoderApiDouble, TOKEN, WS};

    #[test]
    fn reads_what_the_local_module_writes() {
        let d = tempfile::tempdir().unwrap();
        let e = read_desired(d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("user-data"), "{e:#}");
        std::fs::write(d.path().join("user-data"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("running"), "maybe\n").unwrap();
        let e = read_desired(d.path()).unwrap_err();
        assert!(e.to_string().contains("\"maybe\""), "{e}");
        std::fs::write(d.path().join("running"), "false\n").unwrap();
        let got = read_desired(d.path()).unwrap();
        assert!(!got.running);
        assert_eq!(got.user_data, b"#!/bin/sh\n");
    }

    /// The API double stands in for Coder; the files stand in for what the
    /// provisioner's local-exec would write (no Terraform runs here).
    #[tokio::test]
    async fn transitions_go_through_the_api_and_check_the_desired_state() {
        let d = CoderApiDouble::start().await;
        let client = CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let ws = client.workspace(WS).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut w = CoderWorkspace::new(client, ws, dir.path().to_path_buf());
        std::fs::write(dir.path().join("user-data"), "ud").unwrap();
        std::fs::write(dir.path().join("running"), "true\n").unwrap();
        // A stop build that leaves `running` at true is an error, not a pass.
        let e = w.transition("stop").await.unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        std::fs::write(dir.path().join("running"), "false\n").unwrap();
        assert!(!w.transition("stop").await.unwrap().running);
        let seen = d.seen.lock().unwrap();
        let builds: Vec<_> = seen
            .requests
            .iter()
            .filter(|(r, _, _)| r == &format!("POST /workspaces/{WS}/builds"))
            .collect();
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0].2["transition"], "stop");
    }
}

//! The e2e tier's Coder deployment for one run: the server (containers,
//! or any logged-in client in tests), one *template test build* per
//! variant (pushed once, on first use), and workspaces created with a
//! scenario's `flake_uri` and `agent_user`.
//!
//! Flow: values → variant → template test build (real bootstrap module,
//! `agent_auth = token`, local instance module) → workspace build → the
//! user-data the build wrote into the shared dir → the instance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::agent_ssh::AgentSsh;
use super::client::CoderClient;
use super::container::{self, AccessUrl, CoderServer};
use super::template;
use super::types::{CreateWorkspaceRequest, VariableValue, WorkspaceBuildParameter};
use super::workspace::CoderWorkspace;
use crate::template::variant::{Arch, Variant};

/// How long a template import or a workspace build may take (the
/// provisioner downloads the `coder` provider on first use).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A Coder deployment the scenarios share.
pub struct CoderStack {
    client: CoderClient,
    organization_id: String,
    owner: String,
    shared: PathBuf,
    work: PathBuf,
    templates: tokio::sync::Mutex<HashMap<String, String>>,
    cli: tokio::sync::OnceCell<PathBuf>,
    counter: std::sync::atomic::AtomicU32,
    /// Keeps the containers; dropping the stack removes them.
    _server: Option<CoderServer>,
}

/// The template variables of a variant's test build: its values, plus
/// `agent_auth = token` (no EC2 instance identity outside EC2).
pub fn variables(variant: &Variant) -> Vec<VariableValue> {
    let mut vars: Vec<VariableValue> = variant
        .values
        .iter()
        .filter(|(k, _)| k.as_str() != "agent_auth")
        .map(|(k, v)| VariableValue {
            name: k.clone(),
            value: match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect();
    vars.push(VariableValue {
        name: "agent_auth".into(),
        value: "token".into(),
    });
    vars
}

/// A Coder workspace name for the `n`th scenario on `variant`
/// (`^[a-z0-9]+(-[a-z0-9]+)*$`, at most 32 characters).
pub fn workspace_name(n: u32, variant: &str) -> String {
    let mut s = format!("e2e{n}-{}", variant.to_ascii_lowercase());
    s.retain(|c| c.is_ascii_alphanumeric() || c == '-');
    s.truncate(32);
    s.trim_end_matches('-').to_string()
}

/// The shared directory, writable by the Coder container's user.
fn make_shared(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

impl CoderStack {
    /// Start PostgreSQL + Coder in containers; `out` holds the shared
    /// user-data dir, the template copies and the CLI.
    pub async fn start(out: &Path, access: &AccessUrl) -> anyhow::Result<CoderStack> {
        let shared = out.join("user-data");
        make_shared(&shared)?;
        let server = container::start(Some(&shared), access, Duration::from_secs(300)).await?;
        let mut s = CoderStack::with_client(
            server.client.clone(),
            &server.organization_id,
            container::ADMIN_USER,
            out,
        )?;
        s._server = Some(server);
        Ok(s)
    }

    /// A stack over an already logged-in client (tests use the API double).
    pub fn with_client(
        client: CoderClient,
        organization_id: &str,
        owner: &str,
        out: &Path,
    ) -> anyhow::Result<CoderStack> {
        let shared = out.join("user-data");
        make_shared(&shared)?;
        Ok(CoderStack {
            client,
            organization_id: organization_id.into(),
            owner: owner.into(),
            shared,
            work: out.join("coder"),
            templates: Default::default(),
            cli: Default::default(),
            counter: Default::default(),
            _server: None,
        })
    }

    pub fn client(&self) -> &CoderClient {
        &self.client
    }

    pub fn shared_dir(&self) -> &Path {
        &self.shared
    }

    /// The variant's template id, pushing its test build on first use.
    pub async fn template(&self, repo_root: &Path, variant: &Variant) -> anyhow::Result<String> {
        let mut t = self.templates.lock().await;
        if let Some(id) = t.get(&variant.name) {
            return Ok(id.clone());
        }
        let dir = template::prepare(
            repo_root,
            &self.work.join("templates").join(&variant.name),
            &self.shared,
        )?;
        eprintln!(
            "[coder] pushing the template test build of {} ({})",
            variant.name,
            dir.display()
        );
        let tpl = self
            .client
            .push_template(
                &self.organization_id,
                &variant.name,
                &dir,
                variables(variant),
                BUILD_TIMEOUT,
            )
            .await
            .with_context(|| format!("pushing the template test build of {}", variant.name))?;
        t.insert(variant.name.clone(), tpl.id.clone());
        Ok(tpl.id)
    }

    /// The `coder` CLI for this host, downloaded once from the server.
    pub async fn cli(&self) -> anyhow::Result<PathBuf> {
        self.cli
            .get_or_try_init(|| async {
                let arch = Arch::host().ok_or_else(|| {
                    anyhow::anyhow!(
                        "coder CLI: expected a host of arch x86_64 or aarch64, seen {}",
                        std::env::consts::ARCH
                    )
                })?;
                std::fs::create_dir_all(&self.work)?;
                self.client
                    .download_cli(arch, &self.work.join("coder"))
                    .await
            })
            .await
            .cloned()
    }

    /// Create a workspace of `variant` with the scenario's parameters and
    /// wait for its first build; the build wrote the instance's user-data.
    pub async fn create_workspace(
        &self,
        repo_root: &Path,
        variant: &Variant,
        flake_uri: &str,
        agent_user: &str,
    ) -> anyhow::Result<CoderWorkspace> {
        let template_id = self.template(repo_root, variant).await?;
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = workspace_name(n, &variant.name);
        eprintln!(
            "[coder] creating workspace {name} ({}, flake_uri={flake_uri}, agent_user={agent_user})",
            variant.name
        );
        let ws = self
            .client
            .create_workspace(
                "me",
                &CreateWorkspaceRequest {
                    name: name.clone(),
                    template_id,
                    rich_parameter_values: vec![
                        WorkspaceBuildParameter {
                            name: "flake_uri".into(),
                            value: flake_uri.into(),
                        },
                        WorkspaceBuildParameter {
                            name: "agent_user".into(),
                            value: agent_user.into(),
                        },
                    ],
                },
            )
            .await?;
        let ws = self
            .client
            .wait_build(&ws.id, BUILD_TIMEOUT, Duration::from_secs(2))
            .await?;
        let dir = self
            .shared
            .join(template::instance_name(&self.owner, &ws.name));
        Ok(CoderWorkspace::new(self.client.clone(), ws, dir))
    }

    /// SSH to `workspace` through its agent with this host's CLI.
    pub async fn agent_ssh(&self, workspace: &str) -> anyhow::Result<AgentSsh> {
        Ok(AgentSsh {
            cli: self.cli().await?,
            url: self.client.base().to_string(),
            session_token: self
                .client
                .token()
                .ok_or_else(|| {
                    anyhow::anyhow!("coder client: expected a session token, seen none")
                })?
                .to_string(),
            workspace: workspace.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doubles::coder_api::{CoderApiDouble, ORG, TOKEN};

    fn variant(name: &str, arch: Arch, spot: bool) -> Variant {
        let mut values = std::collections::BTreeMap::new();
        values.insert("arch".into(), Value::String(arch.as_str().into()));
        values.insert("is_spot".into(), Value::Bool(spot));
        values.insert(
            "default_instance_type".into(),
            Value::String("t3.large".into()),
        );
        Variant {
            name: name.into(),
            arch,
            is_spot: spot,
            values,
            source: PathBuf::from(format!("values/{name}.yml")),
        }
    }

    #[test]
    fn variables_and_names() {
        let v = variables(&variant("aws-nixos-spot", Arch::X86_64, true));
        let get = |k: &str| v.iter().find(|x| x.name == k).map(|x| x.value.clone());
        assert_eq!(get("is_spot").as_deref(), Some("true"));
        assert_eq!(get("arch").as_deref(), Some("x86_64"));
        assert_eq!(get("agent_auth").as_deref(), Some("token"));
        assert_eq!(v.iter().filter(|x| x.name == "agent_auth").count(), 1);
        assert_eq!(workspace_name(3, "aws-nixos"), "e2e3-aws-nixos");
        let long = workspace_name(12, "aws-nixos-graviton-spot-with-a-long-name");
        assert!(long.len() <= 32 && !long.ends_with('-'), "{long}");
    }

    /// Against the Coder API replay double: the template is pushed once
    /// per variant, the workspace carries the scenario's parameters, and
    /// the workspace's files are looked up where the template writes them.
    #[tokio::test]
    async fn pushes_once_and_creates_workspaces_with_the_parameters() {
        let d = CoderApiDouble::start().await;
        let out = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let client = CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let s = CoderStack::with_client(client, ORG, "admin", out.path()).unwrap();
        let v = variant("aws-nixos", Arch::X86_64, false);
        let a = s.template(root, &v).await.unwrap();
        let b = s.template(root, &v).await.unwrap();
        assert_eq!(a, b);
        let ws = s
            .create_workspace(root, &v, "path:/r/nixos-vm#good", "dev")
            .await
            .unwrap();
        assert_eq!(ws.dir(), s.shared_dir().join("coder-admin-ws1"));
        {
            let seen = d.seen.lock().unwrap();
            let pushes = seen
                .requests
                .iter()
                .filter(|(w, _, _)| w.ends_with("/templateversions"))
                .count();
            assert_eq!(pushes, 1, "the test build is pushed once per variant");
            let (_, tok, body) = seen
                .requests
                .iter()
                .find(|(w, _, _)| w == "POST /users/me/workspaces")
                .expect("workspace created");
            assert_eq!(tok.as_deref(), Some(TOKEN));
            let params = body["rich_parameter_values"].to_string();
            assert!(
                params.contains("path:/r/nixos-vm#good") && params.contains("\"dev\""),
                "{params}"
            );
            let version = seen
                .requests
                .iter()
                .find(|(w, _, _)| w.ends_with("/templateversions"))
                .unwrap();
            assert!(version.2["user_variable_values"]
                .to_string()
                .contains("\"token\""));
        }
        let ssh = s.agent_ssh(&ws.name).await.unwrap();
        assert_eq!(ssh.session_token, TOKEN);
        assert!(ssh.cli.is_file() || Arch::host() != Some(Arch::X86_64));
    }
}

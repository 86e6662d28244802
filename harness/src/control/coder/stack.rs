//! The e2e tier's Coder deployment for one run: the server (containers,
//! or any logged-in client in tests), one *template test build* per
//! variant (pushed once, on first use), and workspaces created with a
//! scenario's `flake_uri` and `agent_user`.
//!
//! Flow (`qemu`): values → variant → template test build (real bootstrap
//! module, `agent_auth = token`, local instance module) → workspace build →
//! the user-data the build wrote into the shared dir → the instance.
//!
//! Flow (`ec2`, [`CoderStack::start_ec2`]): values → variant → `templates/`
//! as `push-all.sh` pushes it → workspace build by Coder's provisioner with
//! the run's AWS credentials ([`super::aws_handoff`], refreshed before every
//! job) → the instance on AWS, observed by the template's tags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use std::sync::Arc;

use super::agent_ssh::AgentSsh;
use super::aws_handoff::AwsHandOff;
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
    source: template::Source,
    /// The `ec2` tier's credentials hand-off and region (`Pushed` only).
    aws: Option<Arc<AwsHandOff>>,
    region: Option<String>,
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

/// The parameters a scenario's workspace is created with: the flake and
/// the agent user, and on real AWS the run's region (the template offers
/// regions.json; its default need not be the region the run's credentials
/// and sweep are for).
pub fn create_parameters(
    flake_uri: &str,
    agent_user: &str,
    region: Option<&str>,
) -> Vec<WorkspaceBuildParameter> {
    let mut p = vec![
        WorkspaceBuildParameter {
            name: "flake_uri".into(),
            value: flake_uri.into(),
        },
        WorkspaceBuildParameter {
            name: "agent_user".into(),
            value: agent_user.into(),
        },
    ];
    if let Some(r) = region {
        p.push(WorkspaceBuildParameter {
            name: "region".into(),
            value: r.into(),
        });
    }
    p
}

/// Refresh the provisioner's credentials, when there is a hand-off.
pub async fn before_job(aws: Option<&AwsHandOff>) -> anyhow::Result<()> {
    match aws {
        Some(a) => a.refresh(BUILD_TIMEOUT).await,
        None => Ok(()),
    }
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
        let server = container::start(
            Some(&shared),
            access,
            None,
            container::ADMIN_USER,
            Duration::from_secs(300),
        )
        .await?;
        let mut s = CoderStack::with_client(
            server.client.clone(),
            &server.organization_id,
            container::ADMIN_USER,
            out,
        )?;
        s._server = Some(server);
        Ok(s)
    }

    /// The `ec2` tier's deployment: the server's provisioner gets the run's
    /// AWS region and credentials (`aws`, written before the server starts
    /// and before every job), and every template is `templates/` as
    /// `push-all.sh` pushes it.
    pub async fn start_ec2(
        out: &Path,
        access: &AccessUrl,
        aws: AwsHandOff,
        region: &str,
    ) -> anyhow::Result<CoderStack> {
        aws.refresh(BUILD_TIMEOUT).await?;
        // The workspaces' owner, hence the template's `coder_owner` tag, is
        // the harness owner's Coder user: `harness sweep` finds what a
        // killed run left by it (machine::ec2::coder_user).
        let user = crate::machine::ec2::coder_user(&crate::machine::ec2::default_owner());
        let server =
            container::start(None, access, Some(&aws), &user, Duration::from_secs(300)).await?;
        let mut s =
            CoderStack::with_client(server.client.clone(), &server.organization_id, &user, out)?
                .pushed(Some(aws), region);
        s._server = Some(server);
        Ok(s)
    }

    /// Push `templates/` as `push-all.sh` does and build in `region`,
    /// handing `aws` to the provisioner before each job (tests pass `None`).
    pub fn pushed(mut self, aws: Option<AwsHandOff>, region: &str) -> CoderStack {
        self.source = template::Source::Pushed;
        self.aws = aws.map(Arc::new);
        self.region = Some(region.to_string());
        self
    }

    pub fn source(&self) -> template::Source {
        self.source
    }

    /// Hand the run's current credentials to the provisioner (`ec2` only).
    pub async fn before_job(&self) -> anyhow::Result<()> {
        before_job(self.aws.as_deref()).await
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
            source: template::Source::TestBuild,
            aws: None,
            region: None,
            _server: None,
        })
    }

    /// The Coder user the workspaces belong to (`coder_owner` in the
    /// template's tags).
    pub fn owner(&self) -> &str {
        &self.owner
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
        let dest = self.work.join("templates").join(&variant.name);
        let (dir, vars, what) = match self.source {
            template::Source::TestBuild => (
                template::prepare(repo_root, &dest, &self.shared)?,
                variables(variant),
                "the template test build",
            ),
            template::Source::Pushed => (
                template::pushed(repo_root, &dest)?,
                template::push_all_variables(variant),
                "the template (as push-all.sh pushes it)",
            ),
        };
        eprintln!(
            "[coder] pushing {what} of {} ({})",
            variant.name,
            dir.display()
        );
        // The import plans the template: with the real one, against AWS.
        self.before_job().await?;
        let tpl = self
            .client
            .push_template(
                &self.organization_id,
                &variant.name,
                &dir,
                vars,
                BUILD_TIMEOUT,
            )
            .await
            .with_context(|| format!("pushing {what} of {}", variant.name))?;
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
        self.before_job().await?;
        let ws = self
            .client
            .create_workspace(
                "me",
                &CreateWorkspaceRequest {
                    name: name.clone(),
                    template_id,
                    rich_parameter_values: create_parameters(
                        flake_uri,
                        agent_user,
                        self.region.as_deref(),
                    ),
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
        Ok(CoderWorkspace::new(self.client.clone(), ws, dir).with_aws(self.aws.clone()))
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
    use crate::doubles::coder_api::{CoderApiDouble, ORG, TOKEN, WS as WS_ID};

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

    /// The ec2 tier against the Coder API double, up to the provisioner
    /// boundary: the template that goes out is `templates/` unchanged with
    /// the values file's variables, the workspace is created with the run's
    /// region, the credentials are handed over before every job, and a
    /// scenario's plan of builds is what a user asks for, in order.
    #[tokio::test]
    async fn the_ec2_stack_pushes_the_real_template_and_builds_as_a_user() {
        let d = CoderApiDouble::start().await;
        let out = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let client = CoderClient::new(&d.url()).unwrap().with_token(TOKEN);
        let creds = aws_sdk_ec2::config::Credentials::new(
            "AKIASTACKTEST",
            "stack-secret",
            Some("stack-token".into()),
            None,
            "test",
        );
        let aws = AwsHandOff::new("eu-west-1")
            .unwrap()
            .with_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(creds));
        let file = aws.host_file();
        let s = CoderStack::with_client(client, ORG, "admin", out.path())
            .unwrap()
            .pushed(Some(aws), "eu-west-1");
        assert_eq!(s.source(), template::Source::Pushed);
        let v = crate::template::values::find(root, "aws-nixos-spot").unwrap();
        let mut ws = s
            .create_workspace(root, &v, "github:o/r/c?dir=nixos-vm/ec2#good-x86_64", "dev")
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("AKIASTACKTEST"),
            "the credentials were handed over before the import"
        );
        ws.build("stop", vec![]).await.unwrap();
        ws.build("start", vec![]).await.unwrap();
        ws.build(
            "start",
            vec![WorkspaceBuildParameter {
                name: "instance_type".into(),
                value: "t3.large".into(),
            }],
        )
        .await
        .unwrap();
        ws.build("delete", vec![]).await.unwrap();

        let seen = d.seen.lock().unwrap();
        // The archive is the repository's templates/: the real instance module.
        let listing = {
            let t = tempfile::tempdir().unwrap();
            std::fs::write(t.path().join("a.tar"), &seen.tar).unwrap();
            let o = std::process::Command::new("tar")
                .arg("-tf")
                .arg(t.path().join("a.tar"))
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        assert!(
            listing.contains("./modules/ec2-instance/main.tf"),
            "{listing}"
        );
        assert!(!listing.contains("local-instance"), "{listing}");
        let tv = seen
            .requests
            .iter()
            .find(|(w, _, _)| w.ends_with("/templateversions"))
            .unwrap();
        let sent: Vec<VariableValue> =
            serde_json::from_value(tv.2["user_variable_values"].clone()).unwrap();
        assert_eq!(sent, template::push_all_variables(&v));
        let (_, _, body) = seen
            .requests
            .iter()
            .find(|(w, _, _)| w == "POST /users/me/workspaces")
            .unwrap();
        let params: Vec<WorkspaceBuildParameter> =
            serde_json::from_value(body["rich_parameter_values"].clone()).unwrap();
        assert_eq!(
            params,
            create_parameters(
                "github:o/r/c?dir=nixos-vm/ec2#good-x86_64",
                "dev",
                Some("eu-west-1")
            )
        );
        let plan: Vec<String> = seen
            .requests
            .iter()
            .map(|(w, _, b)| match b.get("transition") {
                Some(t) => format!("{w} {t} {}", b["rich_parameter_values"]),
                None => w.clone(),
            })
            .collect();
        assert_eq!(
            plan,
            [
                "POST /files".to_string(),
                format!("POST /organizations/{ORG}/templateversions"),
                format!("POST /organizations/{ORG}/templates"),
                "POST /users/me/workspaces".into(),
                format!("POST /workspaces/{WS_ID}/builds \"stop\" null"),
                format!("POST /workspaces/{WS_ID}/builds \"start\" null"),
                format!(
                    "POST /workspaces/{WS_ID}/builds \"start\" [{{\"name\":\"instance_type\",\"value\":\"t3.large\"}}]"
                ),
                format!("POST /workspaces/{WS_ID}/builds \"delete\" null"),
            ]
        );
        // Nothing the double saw carries a secret.
        let all = format!("{:?}", seen.requests);
        for secret in ["AKIASTACKTEST", "stack-secret", "stack-token"] {
            assert!(!all.contains(secret), "{secret} reached the Coder API");
        }
    }
}

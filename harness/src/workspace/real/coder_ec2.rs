//! A workspace machine on the `ec2` tier as Coder built it: the real
//! template's `module "instance"` created it with the run's credentials;
//! the harness only *observes* it, by the template's own tags
//! (`local.tags` in templates/main.tf), through the one observation path
//! ([`crate::machine::ec2::observe`], which the twin uses too), and reaches
//! its guest as a user does, through the Coder agent (`coder ssh`, root
//! commands with the passwordless `sudo` the bootstrap grants the agent
//! user).  Stop, start and delete are Coder builds
//! ([`crate::control::coder::workspace::CoderWorkspace::build`]), never EC2
//! calls of the harness.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::control::coder::agent_ssh::AgentSsh;
use crate::machine::ec2::observe::WorkspaceView;
use crate::machine::instance::{Artifacts, Instance, SshTarget};
use crate::machine::probe::{shell_quote, ExecOutput, Probe, ProbeError};
use crate::template::variant::Arch;

/// The tags the template puts on everything of `owner`'s `workspace`
/// (`local.tags` in templates/main.tf; the twin's `owner_tags` are the same).
pub fn template_tags(owner: &str, workspace: &str) -> BTreeMap<String, String> {
    [
        ("Coder_Provisioned", "true"),
        ("coder_owner", owner),
        ("coder_workspace", workspace),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The command a root probe sends through the agent.
pub fn as_root(cmd: &str) -> String {
    format!("sudo -n sh -c {}", shell_quote(cmd))
}

/// Root commands through the Coder agent.
pub struct AgentProbe {
    pub ssh: AgentSsh,
}

#[async_trait]
impl Probe for AgentProbe {
    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ProbeError> {
        let mut out =
            self.ssh
                .exec(&as_root(cmd), timeout)
                .await
                .map_err(|e| match e.to_string() {
                    s if s.contains("within") => ProbeError::Timeout {
                        command: cmd.to_string(),
                        timeout,
                        evidence: format!("through the Coder agent of {}", self.ssh.workspace),
                    },
                    s => ProbeError::Other(s),
                })?;
        out.command = cmd.to_string();
        Ok(out)
    }
}

/// The instance Coder built, as observed after a build.
pub struct CoderEc2Machine {
    pub id: String,
    pub arch: Arch,
    pub home_volume: String,
    /// The template's tags this machine was found by.
    pub tags: BTreeMap<String, String>,
    home_serial: String,
    probe: AgentProbe,
    artifacts: Artifacts,
}

impl CoderEc2Machine {
    /// From a snapshot taken by the template's tags after the create build.
    pub fn from_view(
        view: &WorkspaceView,
        arch: Arch,
        ssh: AgentSsh,
        artifacts: &std::path::Path,
    ) -> anyhow::Result<CoderEc2Machine> {
        let i = view.instance().map_err(anyhow::Error::msg)?;
        let home = view.home_volume().map_err(anyhow::Error::msg)?;
        Ok(CoderEc2Machine {
            id: i.id.clone(),
            arch,
            home_volume: home.id.clone(),
            tags: view.tags.clone(),
            // EC2 shows an EBS volume's id without the dash as its NVMe serial.
            home_serial: home.id.replacen("vol-", "vol", 1),
            probe: AgentProbe { ssh },
            artifacts: Artifacts {
                dir: artifacts.to_path_buf(),
                serial_log: artifacts.join(format!("console-{}.log", i.id)),
                imds_log: None,
            },
        })
    }
}

impl CoderEc2Machine {
    /// Follow the instance a build replaced (a spot type change): the
    /// instance the template's tags find now, with the same home volume.
    pub fn follow(&mut self, view: &WorkspaceView) -> anyhow::Result<()> {
        let i = view.instance().map_err(anyhow::Error::msg)?;
        let home = view.home_volume().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            home.id == self.home_volume,
            "workspace {}: expected the home volume {} kept, seen {}",
            self.probe.ssh.workspace,
            self.home_volume,
            home.id
        );
        self.id = i.id.clone();
        self.artifacts.serial_log = self.artifacts.dir.join(format!("console-{}.log", i.id));
        Ok(())
    }
}

fn by_coder(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: on the ec2 tier the instance follows Coder builds (stop/start/delete through the \
         Coder API), the harness never acts on it directly"
    )
}

#[async_trait]
impl Instance for CoderEc2Machine {
    fn id(&self) -> &str {
        &self.id
    }
    fn arch(&self) -> Arch {
        self.arch
    }
    fn probe(&self) -> &dyn Probe {
        &self.probe
    }
    fn ssh(&self) -> Option<SshTarget> {
        None
    }
    fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }
    fn home_disk_serial(&self) -> &str {
        &self.home_serial
    }
    async fn stop(&mut self) -> anyhow::Result<()> {
        Err(by_coder("stop"))
    }
    async fn start(&mut self) -> anyhow::Result<()> {
        Err(by_coder("start"))
    }
    async fn kill(&mut self) -> anyhow::Result<()> {
        Err(by_coder("kill"))
    }
    /// The real FIS interruption of the instance the template's tags find
    /// now (a type change replaces a spot instance, so it is looked up
    /// again): the template's `aws_instance` with market options
    /// persistent/stop, its request id as DescribeInstances names it.
    async fn interrupt_spot(&mut self) -> anyhow::Result<()> {
        let ctx = crate::machine::backend::shared_ctx().await?;
        let view = crate::machine::ec2::observe::observe(&ctx.client, &self.tags).await?;
        let i = view.instance().map_err(anyhow::Error::msg)?;
        crate::machine::ec2::interrupt::interrupt_instance(
            ctx,
            &i.id,
            i.spot_request_id.as_deref(),
            "ec2-spot-interruption",
        )
        .await
        .map(|_| ())
    }
    async fn start_after_interruption(&mut self) -> anyhow::Result<()> {
        Err(by_coder("start after interruption"))
    }
    async fn terminate(&mut self) -> anyhow::Result<()> {
        // The scenario's delete build (or the sweep) removes it.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::ec2::observe::{InstanceView, VolumeView};

    #[test]
    fn root_commands_go_through_sudo_as_one_quoted_argument() {
        assert_eq!(as_root("id -u"), "sudo -n sh -c 'id -u'");
        assert_eq!(
            as_root("echo 'a b'; rm x"),
            format!("sudo -n sh -c {}", shell_quote("echo 'a b'; rm x"))
        );
    }

    /// The machine is the instance and home volume the template's tags
    /// find; a view without the home attachment is no machine.
    #[test]
    fn the_machine_is_what_the_template_s_tags_find() {
        let tags = template_tags("admin", "e2e0-aws-nixos");
        assert_eq!(tags["coder_workspace"], "e2e0-aws-nixos");
        assert_eq!(tags["Coder_Provisioned"], "true");
        let i = InstanceView {
            id: "i-0abc".into(),
            state: "running".into(),
            tags: tags.clone(),
            ..Default::default()
        };
        let home = VolumeView {
            id: "vol-0123".into(),
            attachments: vec![("i-0abc".into(), "/dev/xvdb".into(), "attached".into())],
            tags: tags.clone(),
            ..Default::default()
        };
        let ssh = AgentSsh {
            cli: "/bin/false".into(),
            url: "http://127.0.0.1:1".into(),
            session_token: "t".into(),
            workspace: "e2e0-aws-nixos".into(),
        };
        let d = tempfile::tempdir().unwrap();
        let view = WorkspaceView {
            tags: tags.clone(),
            instances: vec![i.clone()],
            volumes: vec![home],
            spot_requests: vec![],
        };
        let m = CoderEc2Machine::from_view(&view, Arch::X86_64, ssh.clone(), d.path()).unwrap();
        assert_eq!(
            (m.id(), m.home_disk_serial(), m.home_volume.as_str()),
            ("i-0abc", "vol0123", "vol-0123")
        );
        let bare = WorkspaceView {
            tags,
            instances: vec![i],
            volumes: vec![],
            spot_requests: vec![],
        };
        let e = CoderEc2Machine::from_view(&bare, Arch::X86_64, ssh, d.path())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/dev/xvdb"), "{e}");
    }
}

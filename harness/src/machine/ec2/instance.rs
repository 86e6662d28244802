//! [`Ec2Instance`]: the [`Instance`] trait over a launched EC2 run; probes
//! run as root over SSH with the run's key (`SshProbe`).

use std::time::Duration;

use async_trait::async_trait;

use super::config::Ec2Ctx;
use super::launch::Launched;
use super::lifecycle;
use crate::machine::instance::{Artifacts, Instance, SshTarget};
use crate::machine::probe::{ExecOutput, Probe, ProbeError};
use crate::template::variant::Arch;

/// A root shell over SSH (`ssh root@host -- sh -c cmd`).
pub struct SshProbe {
    pub target: SshTarget,
    pub user: String,
}

#[async_trait]
impl Probe for SshProbe {
    async fn exec(&self, cmd: &str, timeout: Duration) -> Result<ExecOutput, ProbeError> {
        crate::machine::ssh::run(&self.target, &self.user, cmd, timeout)
            .await
            .map_err(|e| match e {
                crate::machine::ssh::SshError::Timeout {
                    command, timeout, ..
                } => ProbeError::Timeout {
                    command,
                    timeout,
                    evidence: format!("over SSH to {}:{}", self.target.host, self.target.port),
                },
                other => ProbeError::Other(other.to_string()),
            })
    }
}

/// One variant running on EC2.  Dropping it deletes the run's resources
/// (through the run's guard).
pub struct Ec2Instance {
    ctx: Ec2Ctx,
    launched: Launched,
    probe: SshProbe,
    artifacts: Artifacts,
    home_serial: String,
}

impl Ec2Instance {
    /// Wrap a launched run; SSH goes to its public IP, port 22, as root.
    pub fn new(ctx: &Ec2Ctx, launched: Launched) -> anyhow::Result<Ec2Instance> {
        let host = launched.public_ip.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "instance {}: expected a public IP (default VPC subnets assign one), seen none; \
                 check the region's default subnets",
                launched.instance_id
            )
        })?;
        let artifacts = Artifacts {
            dir: launched.artifacts_dir.clone(),
            serial_log: launched
                .artifacts_dir
                .join(format!("console-{}.log", launched.instance_id)),
            imds_log: None,
        };
        // EC2 shows an EBS volume's id without the dash as its NVMe serial.
        let home_serial = launched.volume_id.replacen("vol-", "vol", 1);
        Ok(Ec2Instance {
            ctx: ctx.clone(),
            probe: SshProbe {
                target: SshTarget {
                    host,
                    port: 22,
                    identity: launched.key.private.clone(),
                },
                user: "root".into(),
            },
            launched,
            artifacts,
            home_serial,
        })
    }

    async fn refresh_ip(&mut self) -> anyhow::Result<()> {
        let out = self
            .ctx
            .client
            .describe_instances()
            .instance_ids(&self.launched.instance_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeInstances: {}", super::sweep::err(&e)))?;
        if let Some(ip) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.public_ip_address())
        {
            self.probe.target.host = ip.to_string();
        }
        Ok(())
    }

    async fn save_console(&self) {
        if let Err(e) = lifecycle::save_console_output(
            &self.ctx.client,
            &self.launched.instance_id,
            &self.artifacts.dir,
        )
        .await
        {
            tracing::warn!("{e:#}");
        }
    }
}

#[async_trait]
impl Instance for Ec2Instance {
    fn id(&self) -> &str {
        &self.launched.instance_id
    }
    fn arch(&self) -> Arch {
        self.launched.plan.arch
    }
    fn probe(&self) -> &dyn Probe {
        &self.probe
    }
    fn ssh(&self) -> Option<SshTarget> {
        Some(self.probe.target.clone())
    }
    fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }
    fn home_disk_serial(&self) -> &str {
        &self.home_serial
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        self.save_console().await;
        lifecycle::stop(&self.ctx.client, &self.launched.instance_id).await
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        lifecycle::start(&self.ctx.client, &self.launched.instance_id).await?;
        // A stopped instance gets a new public IP on start.
        self.refresh_ip().await
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        lifecycle::force_stop(&self.ctx.client, &self.launched.instance_id).await
    }

    /// Checks that the spot request is the template's (persistent,
    /// interruption behavior stop), then interrupts the instance for real
    /// through AWS FIS ([`super::interrupt::interrupt_spot`]); where FIS
    /// cannot run ([`super::interrupt::unavailable`]) it fails with that
    /// reason (the e2e runner skips the scenario before, see its preflight).
    /// It never stops the instance itself: a user stop is not an interruption.
    async fn interrupt_spot(&mut self) -> anyhow::Result<()> {
        let id = &self.launched.instance_id;
        let Some(req) = self.launched.spot_request_id.clone() else {
            anyhow::bail!(
                "interrupt_spot on {id}: expected a spot instance, seen an on-demand one (no spot request)"
            );
        };
        let out = self
            .ctx
            .client
            .describe_spot_instance_requests()
            .spot_instance_request_ids(&req)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "DescribeSpotInstanceRequests {req}: {}",
                    super::sweep::err(&e)
                )
            })?;
        let r = out.spot_instance_requests().first().ok_or_else(|| {
            anyhow::anyhow!("DescribeSpotInstanceRequests {req}: expected the request, seen none")
        })?;
        let kind = r
            .r#type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let behavior = r
            .instance_interruption_behavior()
            .map(|b| b.as_str().to_string())
            .unwrap_or_default();
        if kind != "persistent" || behavior != "stop" {
            anyhow::bail!(
                "spot request {req} of {id}: expected type persistent and interruption behavior stop \
                 (as the template sets them), seen type {kind:?}, behavior {behavior:?}"
            );
        }
        let role = std::env::var(super::interrupt::ENV_FIS_ROLE).ok();
        if let Some(why) = super::interrupt::unavailable(role.as_deref(), &self.ctx.region) {
            anyhow::bail!(
                "interrupt_spot on {id} (spot request {req}, persistent/stop): not run: {why}"
            );
        }
        let tags = self.launched.plan.tags.pairs();
        let target = super::interrupt::SpotTarget {
            region: &self.ctx.region,
            instance_id: id,
            spot_request_id: &req,
            role_arn: role.as_deref().unwrap_or_default(),
            tags: &tags,
        };
        let done = super::interrupt::interrupt_spot(
            &self.ctx.fis,
            &self.ctx.client,
            &target,
            &super::interrupt::TIMING,
        )
        .await?;
        tracing::info!(
            instance = %id,
            experiment = %done.experiment_id,
            "spot interruption by AWS FIS seen: {}",
            done.evidence
        );
        Ok(())
    }

    /// Start the instance FIS stopped (it "remains stopped until you
    /// restart it", FIS actions reference), asking again while EC2 has no
    /// capacity, and wait for `running`.  The public IP changes, so it is
    /// read again.
    async fn start_after_interruption(&mut self) -> anyhow::Result<()> {
        super::interrupt::start_after_fis_stop(
            &self.ctx.client,
            &self.launched.instance_id,
            &super::interrupt::RESTART,
        )
        .await?;
        self.refresh_ip().await
    }

    async fn terminate(&mut self) -> anyhow::Result<()> {
        self.save_console().await;
        self.launched.guard.cleanup().await
    }
}

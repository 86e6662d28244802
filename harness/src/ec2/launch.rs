//! Launching one variant on EC2: per-run key pair and security group, the
//! instance (next availability zone on capacity errors, no spinning), the
//! encrypted gp3 home volume attached as `/dev/xvdb`, and [`RunGuard`], the
//! drop guard that deletes everything the run created.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Placement, ResourceType, VolumeType};
use aws_sdk_ec2::Client;

use super::config::Ec2Ctx;
use super::plan::{LaunchPlan, HOME_DEVICE};
use crate::ssh::KeyPair;

/// Error codes after which the launch moves on to the next AZ.
pub const CAPACITY_ERRORS: &[&str] = &["InsufficientInstanceCapacity", "SpotMaxPriceTooLow"];

/// Bound on waiting for an instance to reach `running`.
pub const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on waiting for a volume state.
pub const VOLUME_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the instance landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub instance_id: String,
    pub az: String,
    pub spot_request_id: Option<String>,
}

/// Availability zones of the client's region that are `available`, sorted.
pub async fn availability_zones(client: &Client) -> anyhow::Result<Vec<String>> {
    let out = client
        .describe_availability_zones()
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeAvailabilityZones: {}", super::sweep::err(&e)))?;
    let mut azs: Vec<String> = out
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    azs.sort();
    Ok(azs)
}

/// `RunInstances` in `azs` in order: on a capacity error (see
/// [`CAPACITY_ERRORS`]) try the next zone; any other error, or every zone
/// failing, is an error naming the zones tried.
pub async fn run_in_some_az(
    client: &Client,
    plan: &LaunchPlan,
    azs: &[String],
    key_name: Option<&str>,
    sg_id: Option<&str>,
) -> anyhow::Result<Placed> {
    let mut tried: Vec<String> = Vec::new();
    for az in azs {
        tracing::info!(variant = %plan.variant, az = %az, instance_type = %plan.instance_type, "RunInstances");
        let res = client
            .run_instances()
            .image_id(&plan.ami)
            .instance_type(plan.ec2_instance_type())
            .min_count(1)
            .max_count(1)
            .placement(Placement::builder().availability_zone(az).build())
            .set_key_name(key_name.map(str::to_string))
            .set_security_group_ids(sg_id.map(|s| vec![s.to_string()]))
            .user_data(plan.user_data_base64())
            .metadata_options(plan.metadata_options())
            .set_block_device_mappings(Some(plan.block_device_mappings()))
            .set_instance_market_options(plan.market_options())
            .set_tag_specifications(Some(plan.run_instances_tags()))
            .client_token(format!("{}-{az}", plan.tags.run_id))
            .send()
            .await;
        match res {
            Ok(out) => {
                let inst = out.instances().first().ok_or_else(|| {
                    anyhow::anyhow!("RunInstances in {az}: expected one instance, seen none")
                })?;
                let id = inst.instance_id().unwrap_or_default().to_string();
                tracing::info!(instance = %id, az = %az, "instance launched");
                return Ok(Placed {
                    instance_id: id,
                    az: az.clone(),
                    spot_request_id: inst.spot_instance_request_id().map(str::to_string),
                });
            }
            Err(e) => {
                let code = e.code().unwrap_or_default().to_string();
                if CAPACITY_ERRORS.contains(&code.as_str()) {
                    tracing::warn!(az = %az, code = %code, "no capacity; trying the next AZ");
                    tried.push(format!("{az} ({code})"));
                    continue;
                }
                anyhow::bail!(
                    "RunInstances {} in {az}: expected an instance, seen: {}",
                    plan.variant,
                    super::sweep::err(&e)
                );
            }
        }
    }
    anyhow::bail!(
        "RunInstances {} ({} in {}): expected capacity in some availability zone, seen none; tried: {}; \
         retry later, pick another region (HARNESS_EC2_REGION) or instance type{}",
        plan.variant,
        plan.instance_type,
        plan.region,
        if tried.is_empty() { "no zone is available".to_string() } else { tried.join(", ") },
        if plan.spot.is_some() { ", or raise the spot max price" } else { "" }
    )
}

/// Deletes everything tagged with the run's id when dropped (unless
/// [`RunGuard::disarm`]ed); [`RunGuard::cleanup`] does it explicitly.
pub struct RunGuard {
    ctx: Ec2Ctx,
    run_id: String,
    armed: bool,
}

impl RunGuard {
    pub fn new(ctx: &Ec2Ctx, run_id: &str) -> RunGuard {
        RunGuard {
            ctx: ctx.clone(),
            run_id: run_id.to_string(),
            armed: true,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Keep the resources (e.g. `HARNESS_KEEP`); `harness sweep` still finds them.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Terminate and delete everything tagged with this run's id; idempotent.
    pub async fn cleanup(&mut self) -> anyhow::Result<()> {
        let opts = super::sweep::SweepOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            run_id: Some(self.run_id.clone()),
        };
        super::sweep::sweep_region(&self.ctx, &opts).await?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let hint = format!(
            "run `harness sweep --region {} --older-than 0s` to delete run {}",
            self.ctx.region, self.run_id
        );
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tracing::info!(run = %self.run_id, "cleaning up EC2 resources");
                let r = tokio::task::block_in_place(|| h.block_on(self.cleanup()));
                if let Err(e) = r {
                    tracing::error!("EC2 cleanup of run {} failed: {e:#}; {hint}", self.run_id);
                }
            }
            _ => tracing::error!(
                "EC2 run {} dropped outside a multi-thread tokio runtime: cannot clean up here; {hint}",
                self.run_id
            ),
        }
    }
}

/// One launched variant: instance + home volume + the guard that deletes them.
pub struct Launched {
    pub guard: RunGuard,
    pub plan: LaunchPlan,
    pub instance_id: String,
    pub volume_id: String,
    pub az: String,
    pub spot_request_id: Option<String>,
    pub key: KeyPair,
    pub key_name: String,
    pub security_group_id: String,
    pub public_ip: Option<String>,
    pub artifacts_dir: PathBuf,
}

/// Create the run's key pair, security group, instance and home volume.
/// On any failure the guard deletes what was created so far.
pub async fn launch(
    ctx: &Ec2Ctx,
    plan: LaunchPlan,
    artifacts_dir: &Path,
) -> anyhow::Result<Launched> {
    let client = &ctx.client;
    std::fs::create_dir_all(artifacts_dir)?;
    let key = KeyPair::generate(&artifacts_dir.join("ssh"))?;
    let ssh_cidr = ctx.ssh_cidr().await?;
    let azs = availability_zones(client).await?;
    let guard = RunGuard::new(ctx, &plan.tags.run_id);
    let name = plan.tags.resource_name();

    tracing::info!(key = %name, "ImportKeyPair");
    client
        .import_key_pair()
        .key_name(&name)
        .public_key_material(Blob::new(key.public.as_bytes()))
        .set_tag_specifications(Some(plan.tag_specifications(&[ResourceType::KeyPair])))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ImportKeyPair {name}: {}", super::sweep::err(&e)))?;

    tracing::info!(group = %name, cidr = %ssh_cidr, "CreateSecurityGroup (SSH from the caller only)");
    let sg = client
        .create_security_group()
        .group_name(&name)
        .description("harness run: SSH from the caller's IP only; deleted with the run")
        .set_tag_specifications(Some(
            plan.tag_specifications(&[ResourceType::SecurityGroup]),
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateSecurityGroup {name}: {}", super::sweep::err(&e)))?;
    let sg_id = sg.group_id().unwrap_or_default().to_string();
    client
        .authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(&ssh_cidr)
                        .description("harness caller")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "AuthorizeSecurityGroupIngress {sg_id}: {}",
                super::sweep::err(&e)
            )
        })?;

    let placed = run_in_some_az(client, &plan, &azs, Some(&name), Some(&sg_id)).await?;

    tracing::info!(az = %placed.az, size_gib = plan.home_gib, "CreateVolume (home)");
    let vol = client
        .create_volume()
        .availability_zone(&placed.az)
        .size(plan.home_gib)
        .volume_type(VolumeType::Gp3)
        .encrypted(true)
        .set_tag_specifications(Some(plan.tag_specifications(&[ResourceType::Volume])))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateVolume in {}: {}", placed.az, super::sweep::err(&e)))?;
    let volume_id = vol.volume_id().unwrap_or_default().to_string();
    client
        .wait_until_volume_available()
        .volume_ids(&volume_id)
        .wait(VOLUME_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "volume {volume_id}: expected `available` within {VOLUME_TIMEOUT:?}, seen: {e}"
            )
        })?;
    tracing::info!(instance = %placed.instance_id, "waiting for running");
    client
        .wait_until_instance_running()
        .instance_ids(&placed.instance_id)
        .wait(RUNNING_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "instance {}: expected `running` within {RUNNING_TIMEOUT:?}, seen: {e}",
                placed.instance_id
            )
        })?;
    tracing::info!(volume = %volume_id, device = HOME_DEVICE, "AttachVolume");
    client
        .attach_volume()
        .device(HOME_DEVICE)
        .instance_id(&placed.instance_id)
        .volume_id(&volume_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("AttachVolume {volume_id}: {}", super::sweep::err(&e)))?;
    client
        .wait_until_volume_in_use()
        .volume_ids(&volume_id)
        .wait(VOLUME_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "volume {volume_id}: expected `in-use` within {VOLUME_TIMEOUT:?}, seen: {e}"
            )
        })?;
    let public_ip = client
        .describe_instances()
        .instance_ids(&placed.instance_id)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.public_ip_address().map(str::to_string))
        });
    Ok(Launched {
        guard,
        plan,
        instance_id: placed.instance_id,
        volume_id,
        az: placed.az,
        spot_request_id: placed.spot_request_id,
        key,
        key_name: name,
        security_group_id: sg_id,
        public_ip,
        artifacts_dir: artifacts_dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    //! Uses a named double: **aws-smithy-mocks** (smithy mocks) plays EC2
    //! for the capacity errors moto cannot produce
    //! (`InsufficientInstanceCapacity`, `SpotMaxPriceTooLow`).
    use super::*;
    use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::run_instances::{RunInstancesError, RunInstancesOutput};
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};

    fn client(rules: &[&Rule]) -> Client {
        let mut i = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for r in rules {
            i = i.with_rule(r);
        }
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "smithy-mocks"))
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(i)
            .build();
        Client::from_conf(conf)
    }

    fn in_az(
        az: &'static str,
    ) -> impl Fn(&aws_sdk_ec2::operation::run_instances::RunInstancesInput) -> bool + Send + Sync + 'static
    {
        move |r| r.placement().and_then(|p| p.availability_zone()) == Some(az)
    }

    fn capacity(code: &'static str) -> impl Fn() -> RunInstancesError + Send + Sync {
        move || {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("mocked")
                    .build(),
            )
        }
    }

    fn the_plan(spot: bool) -> LaunchPlan {
        LaunchPlan {
            variant: "aws-nixos-spot".into(),
            region: "us-east-1".into(),
            arch: crate::variant::Arch::X86_64,
            ami: "ami-x".into(),
            instance_type: "t3.medium".into(),
            spot: spot.then_some(super::super::plan::SpotPlan { max_price: None }),
            user_data: "#!/bin/sh\n".into(),
            root_gib: 40,
            home_gib: 20,
            tags: super::super::RunTags::new("unit"),
        }
    }

    fn azs() -> Vec<String> {
        ["us-east-1a", "us-east-1b", "us-east-1c"]
            .map(String::from)
            .to_vec()
    }

    #[tokio::test]
    async fn capacity_errors_move_to_the_next_az() {
        let a = mock!(Client::run_instances)
            .match_requests(in_az("us-east-1a"))
            .then_error(capacity("InsufficientInstanceCapacity"));
        let b = mock!(Client::run_instances)
            .match_requests(in_az("us-east-1b"))
            .then_error(capacity("SpotMaxPriceTooLow"));
        let c = mock!(Client::run_instances)
            .match_requests(in_az("us-east-1c"))
            .then_output(|| {
                RunInstancesOutput::builder()
                    .instances(
                        aws_sdk_ec2::types::Instance::builder()
                            .instance_id("i-c")
                            .build(),
                    )
                    .build()
            });
        let placed = run_in_some_az(&client(&[&a, &b, &c]), &the_plan(true), &azs(), None, None)
            .await
            .unwrap();
        assert_eq!(
            (placed.instance_id.as_str(), placed.az.as_str()),
            ("i-c", "us-east-1c")
        );
        assert_eq!((a.num_calls(), b.num_calls(), c.num_calls()), (1, 1, 1));
    }

    #[tokio::test]
    async fn no_capacity_anywhere_lists_the_zones_tried_once_each() {
        let all = mock!(Client::run_instances).then_error(capacity("InsufficientInstanceCapacity"));
        let e = run_in_some_az(&client(&[&all]), &the_plan(false), &azs(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(all.num_calls(), 3, "one attempt per AZ, no spinning");
        for az in azs() {
            assert!(e.contains(&az), "{e}");
        }
        assert!(
            e.contains("InsufficientInstanceCapacity") && e.contains("expected capacity"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn other_errors_stop_at_once() {
        let all = mock!(Client::run_instances).then_error(capacity("UnauthorizedOperation"));
        let e = run_in_some_az(&client(&[&all]), &the_plan(false), &azs(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(all.num_calls(), 1);
        assert!(
            e.contains("UnauthorizedOperation") && e.contains("us-east-1a"),
            "{e}"
        );
    }
}

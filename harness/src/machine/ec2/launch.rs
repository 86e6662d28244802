//! Launching one variant on EC2: per-run key pair and security group, the
//! instance (next availability zone on capacity errors or when the type is
//! not offered there, no spinning), the encrypted gp3 home volume attached
//! as `/dev/xvdb`, and [`RunGuard`], the drop guard that deletes everything
//! the run created.  Names, descriptions and tags are checked against AWS's
//! character sets ([`super::names`]) before anything is created; steps that
//! use a just-created group, key pair or volume retry EC2's eventual
//! consistency ([`super::retry`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, LocationType, Placement, ResourceType, VolumeType,
};
use aws_sdk_ec2::Client;

use super::config::Ec2Ctx;
use super::names::{self, Kind};
use super::plan::{LaunchPlan, HOME_DEVICE};
use super::retry::{self, Backoff, DEFAULT_BACKOFF};
use crate::machine::ssh::KeyPair;

/// Error codes after which the launch moves on to the next AZ: no capacity,
/// spot price too low, or the instance type not offered in that zone.
pub const NEXT_ZONE_ERRORS: &[&str] = &[
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "Unsupported",
];

/// Bound on waiting for an instance to reach `running`.
pub const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on waiting for a volume state.
pub const VOLUME_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a volume's state is polled.
pub const VOLUME_POLL: Duration = Duration::from_secs(5);

/// The run's security group description (AWS allows only a-z A-Z 0-9,
/// spaces and `._-:/()#,@[]+=&;{}!$*`: no apostrophe).
pub const SG_DESCRIPTION: &str = "harness run: SSH from the caller IP only; deleted with the run";
/// The SSH ingress rule's description (same character set).
pub const INGRESS_DESCRIPTION: &str = "harness caller";

/// Every name, description and tag `launch` will send, checked against
/// AWS's rules before anything is created.
pub fn check_request(plan: &LaunchPlan, name: &str) -> anyhow::Result<()> {
    names::check(Kind::SecurityGroupName, name)?;
    names::check(Kind::KeyPairName, name)?;
    names::check(Kind::SecurityGroupDescription, SG_DESCRIPTION)?;
    names::check(Kind::IpRangeDescription, INGRESS_DESCRIPTION)?;
    names::check_tags(&plan.tag_pairs())
}

/// Where the instance landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub instance_id: String,
    pub az: String,
    pub spot_request_id: Option<String>,
}

/// The zones to try for `instance_type`, sorted: `available` zones of type
/// `availability-zone` (opted-in Local and Wavelength Zones have no default
/// subnet and would sort first) that DescribeInstanceTypeOfferings lists
/// for the type.  None is an error naming type and region.
pub async fn availability_zones(
    client: &Client,
    instance_type: &str,
) -> anyhow::Result<Vec<String>> {
    let out = client
        .describe_availability_zones()
        .filters(Filter::builder().name("state").values("available").build())
        .filters(
            Filter::builder()
                .name("zone-type")
                .values("availability-zone")
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeAvailabilityZones: {}", super::sweep::err(&e)))?;
    let zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    let mut offered = std::collections::BTreeSet::new();
    let mut pages = client
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .filters(
            Filter::builder()
                .name("instance-type")
                .values(instance_type)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow::anyhow!(
                "DescribeInstanceTypeOfferings {instance_type}: {}",
                super::sweep::err(&e)
            )
        })?;
        offered.extend(
            page.instance_type_offerings()
                .iter()
                .filter_map(|o| o.location().map(str::to_string)),
        );
    }
    let mut azs: Vec<String> = zones.into_iter().filter(|z| offered.contains(z)).collect();
    azs.sort();
    if azs.is_empty() {
        anyhow::bail!(
            "{instance_type}: expected an availability zone offering it, seen none \
             (offered in: {}); pick another instance type or region (HARNESS_EC2_REGION)",
            if offered.is_empty() {
                "nowhere".to_string()
            } else {
                offered.into_iter().collect::<Vec<_>>().join(", ")
            }
        );
    }
    Ok(azs)
}

/// `RunInstances` in `azs` in order: on a capacity error or an instance
/// type not offered there (see [`NEXT_ZONE_ERRORS`]) try the next zone; a
/// just-created key pair or group not visible yet is retried in the same
/// zone ([`retry::eventually`]); any other error, or every zone failing, is
/// an error naming the zones tried.
pub async fn run_in_some_az(
    client: &Client,
    plan: &LaunchPlan,
    azs: &[String],
    key_name: Option<&str>,
    sg_id: Option<&str>,
) -> anyhow::Result<Placed> {
    run_in_some_az_with(client, plan, azs, key_name, sg_id, &DEFAULT_BACKOFF).await
}

/// [`run_in_some_az`] with an explicit backoff (tests).
pub async fn run_in_some_az_with(
    client: &Client,
    plan: &LaunchPlan,
    azs: &[String],
    key_name: Option<&str>,
    sg_id: Option<&str>,
    backoff: &Backoff,
) -> anyhow::Result<Placed> {
    let mut tried: Vec<String> = Vec::new();
    for az in azs {
        tracing::info!(variant = %plan.variant, az = %az, instance_type = %plan.instance_type, "RunInstances");
        let res = retry::eventually("RunInstances", backoff, || {
            client
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
        })
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
                if NEXT_ZONE_ERRORS.contains(&code.as_str()) {
                    tracing::warn!(az = %az, code = %code, "no capacity or type not offered; trying the next AZ");
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

/// Deletes everything tagged with the run's id, and every id the launch
/// [`RunGuard::recorded`] (a resource created seconds before a failure may
/// not be listed by tag yet), when dropped (unless [`RunGuard::disarm`]ed);
/// [`RunGuard::cleanup`] does it explicitly.
pub struct RunGuard {
    ctx: Ec2Ctx,
    run_id: String,
    armed: bool,
    /// What the launch created, by id, as each call returned.
    pub recorded: super::sweep::Recorded,
}

impl RunGuard {
    pub fn new(ctx: &Ec2Ctx, run_id: &str) -> RunGuard {
        RunGuard {
            ctx: ctx.clone(),
            run_id: run_id.to_string(),
            armed: true,
            recorded: Default::default(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Keep the resources (e.g. `HARNESS_KEEP`); `harness sweep` still finds them.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Terminate and delete everything tagged with this run's id and
    /// everything it recorded; idempotent.
    pub async fn cleanup(&mut self) -> anyhow::Result<()> {
        let opts = super::sweep::SweepOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            run_id: Some(self.run_id.clone()),
            owner: None,
        };
        let swept = super::sweep::sweep_region_recorded(
            &self.ctx,
            &opts,
            &self.recorded,
            &super::stop::Stop::new(),
            &super::sweep::TIMING,
        )
        .await?;
        if !swept.failed.is_empty() {
            anyhow::bail!(
                "cleanup of run {} in {}: expected everything deleted, seen left: {}",
                self.run_id,
                self.ctx.region,
                swept.failed.join("; ")
            );
        }
        // All confirmed gone: a second cleanup (terminate twice) asks the
        // tags only, instead of waiting out the settle time for ids EC2 has
        // forgotten.
        self.recorded = Default::default();
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
    let name = plan.tags.resource_name();
    check_request(&plan, &name)?;
    let key = KeyPair::generate(&artifacts_dir.join("ssh"))?;
    let ssh_cidr = ctx.ssh_cidr().await?;
    let azs = availability_zones(client, &plan.instance_type).await?;
    let mut guard = RunGuard::new(ctx, &plan.tags.run_id);

    tracing::info!(key = %name, "ImportKeyPair");
    client
        .import_key_pair()
        .key_name(&name)
        .public_key_material(Blob::new(key.public.as_bytes()))
        .set_tag_specifications(Some(plan.tag_specifications(&[ResourceType::KeyPair])))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ImportKeyPair {name}: {}", super::sweep::err(&e)))?;
    guard.recorded.key_pairs.push(name.clone());

    tracing::info!(group = %name, cidr = %ssh_cidr, "CreateSecurityGroup (SSH from the caller only)");
    let sg = client
        .create_security_group()
        .group_name(&name)
        .description(SG_DESCRIPTION)
        .set_tag_specifications(Some(
            plan.tag_specifications(&[ResourceType::SecurityGroup]),
        ))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateSecurityGroup {name}: {}", super::sweep::err(&e)))?;
    let sg_id = sg.group_id().unwrap_or_default().to_string();
    guard.recorded.security_groups.push(sg_id.clone());
    let rule = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(
            IpRange::builder()
                .cidr_ip(&ssh_cidr)
                .description(INGRESS_DESCRIPTION)
                .build(),
        )
        .build();
    retry::eventually("AuthorizeSecurityGroupIngress", &DEFAULT_BACKOFF, || {
        client
            .authorize_security_group_ingress()
            .group_id(&sg_id)
            .ip_permissions(rule.clone())
            .send()
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "AuthorizeSecurityGroupIngress {sg_id}: {}",
            super::sweep::err(&e)
        )
    })?;

    let placed = run_in_some_az(client, &plan, &azs, Some(&name), Some(&sg_id)).await?;
    guard.recorded.instances.push(placed.instance_id.clone());
    guard
        .recorded
        .spot_requests
        .extend(placed.spot_request_id.clone());

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
    guard.recorded.volumes.push(volume_id.clone());
    retry::wait_volume(client, &volume_id, "available", VOLUME_TIMEOUT, VOLUME_POLL).await?;
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
    retry::eventually("AttachVolume", &DEFAULT_BACKOFF, || {
        client
            .attach_volume()
            .device(HOME_DEVICE)
            .instance_id(&placed.instance_id)
            .volume_id(&volume_id)
            .send()
    })
    .await
    .map_err(|e| anyhow::anyhow!("AttachVolume {volume_id}: {}", super::sweep::err(&e)))?;
    retry::wait_volume(client, &volume_id, "in-use", VOLUME_TIMEOUT, VOLUME_POLL).await?;
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
pub(crate) mod tests {
    //! Uses a named double: **aws-smithy-mocks** (smithy mocks) plays EC2
    //! for what moto cannot produce (capacity errors, `Unsupported`, Local
    //! Zones, eventual-consistency NotFound).
    use super::*;
    use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::run_instances::{RunInstancesError, RunInstancesOutput};
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};

    fn client(rules: &[&Rule]) -> Client {
        client_with(rules, RuleMode::MatchAny)
    }

    /// An EC2 client answered only by `rules` (smithy mocks), no retries.
    pub(crate) fn client_with(rules: &[&Rule], mode: RuleMode) -> Client {
        let mut i = MockResponseInterceptor::new().rule_mode(mode);
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
            arch: crate::template::variant::Arch::X86_64,
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

    #[tokio::test]
    async fn unsupported_type_in_a_zone_moves_to_the_next() {
        let a = mock!(Client::run_instances)
            .match_requests(in_az("us-east-1a"))
            .then_error(capacity("Unsupported"));
        let b = mock!(Client::run_instances)
            .match_requests(in_az("us-east-1b"))
            .then_output(|| {
                RunInstancesOutput::builder()
                    .instances(
                        aws_sdk_ec2::types::Instance::builder()
                            .instance_id("i-b")
                            .build(),
                    )
                    .build()
            });
        let placed = run_in_some_az(&client(&[&a, &b]), &the_plan(false), &azs(), None, None)
            .await
            .unwrap();
        assert_eq!(placed.az, "us-east-1b");
        assert_eq!((a.num_calls(), b.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_fresh_key_pair_not_visible_yet_is_retried_in_the_same_zone() {
        let r = mock!(Client::run_instances)
            .sequence()
            .error(capacity("InvalidKeyPair.NotFound"))
            .error(capacity("InvalidGroup.NotFound"))
            .output(|| {
                RunInstancesOutput::builder()
                    .instances(
                        aws_sdk_ec2::types::Instance::builder()
                            .instance_id("i-a")
                            .build(),
                    )
                    .build()
            })
            .build();
        let fast = Backoff {
            tries: 5,
            first: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let placed = run_in_some_az_with(
            &client_with(&[&r], RuleMode::Sequential),
            &the_plan(false),
            &azs(),
            Some("harness-k"),
            Some("sg-1"),
            &fast,
        )
        .await
        .unwrap();
        assert_eq!((placed.az.as_str(), r.num_calls()), ("us-east-1a", 3));
    }

    #[tokio::test]
    async fn only_real_zones_that_offer_the_type() {
        use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
        use aws_sdk_ec2::operation::describe_instance_type_offerings::DescribeInstanceTypeOfferingsOutput;
        use aws_sdk_ec2::types::{AvailabilityZone, InstanceTypeOffering};
        let zones = mock!(Client::describe_availability_zones)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("zone-type") && f.values() == ["availability-zone"])
            })
            .then_output(|| {
                let z = |n: &str, t: &str| {
                    AvailabilityZone::builder()
                        .zone_name(n)
                        .zone_type(t)
                        .build()
                };
                // An opted-in Local Zone (sorts first, no default subnet)
                // even if the server-side filter were ignored.
                DescribeAvailabilityZonesOutput::builder()
                    .availability_zones(z("us-east-1-bos-1a", "local-zone"))
                    .availability_zones(z("us-east-1c", "availability-zone"))
                    .availability_zones(z("us-east-1a", "availability-zone"))
                    .availability_zones(z("us-east-1b", "availability-zone"))
                    .build()
            });
        let offers = mock!(Client::describe_instance_type_offerings)
            .match_requests(|r| {
                r.location_type() == Some(&LocationType::AvailabilityZone)
                    && r.filters()
                        .iter()
                        .any(|f| f.name() == Some("instance-type") && f.values() == ["t4g.medium"])
            })
            .then_output(|| {
                let o = |z: &str| {
                    InstanceTypeOffering::builder()
                        .location(z)
                        .instance_type(aws_sdk_ec2::types::InstanceType::T4gMedium)
                        .build()
                };
                DescribeInstanceTypeOfferingsOutput::builder()
                    .instance_type_offerings(o("us-east-1-bos-1a"))
                    .instance_type_offerings(o("us-east-1c"))
                    .instance_type_offerings(o("us-east-1b"))
                    .build()
            });
        let got = availability_zones(&client(&[&zones, &offers]), "t4g.medium")
            .await
            .unwrap();
        assert_eq!(got, ["us-east-1b", "us-east-1c"]);

        let none = mock!(Client::describe_instance_type_offerings)
            .then_output(|| DescribeInstanceTypeOfferingsOutput::builder().build());
        let e = availability_zones(&client(&[&zones, &none]), "t4g.medium")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("t4g.medium") && e.contains("nowhere"), "{e}");
    }

    #[test]
    fn the_request_keeps_to_aws_character_sets() {
        let p = the_plan(true);
        check_request(&p, &p.tags.resource_name()).unwrap();
        let e = check_request(&p, "sg-bad").unwrap_err().to_string();
        assert!(e.contains("sg-"), "{e}");
        let mut bad = the_plan(false);
        bad.variant = "v (x)".into();
        let e = check_request(&bad, "harness-x").unwrap_err().to_string();
        assert!(e.contains("tag value") && e.contains("'('"), "{e}");
    }
}

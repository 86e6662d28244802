//! The launch plan: a pure function from variant + region + rendered
//! user-data to everything `RunInstances` and `CreateVolume` are sent.
//!
//! It mirrors `templates/modules/ec2-instance` and `templates/modules/market`:
//! IMDSv2 only, encrypted gp3 root and home disks, and for spot variants
//! only `InstanceMarketOptions` spot / persistent / stop (optional max price).

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceType, MarketType, ResourceType, SpotInstanceType, SpotMarketOptions, TagSpecification,
    VolumeType,
};
use base64::Engine;

use crate::template::variant::{Arch, Variant};

use super::RunTags;

/// Root device name of the official NixOS AMIs.
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// Device name the home volume is attached as (the guest contract).
pub const HOME_DEVICE: &str = "/dev/xvdb";
/// `root_disk_size` default of templates/parameters.tf (GiB).
pub const ROOT_GIB: i32 = 40;
/// `home_disk_size` default of templates/parameters.tf (GiB).
pub const HOME_GIB: i32 = 20;

/// Spot settings, exactly those of `templates/modules/market`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotPlan {
    /// USD per hour; `None` = the on-demand price cap.
    pub max_price: Option<String>,
}

/// Caller choices on top of the variant.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Overrides the variant's `default_instance_type`.
    pub instance_type: Option<String>,
    /// Spot max price (spot variants only).
    pub spot_max_price: Option<String>,
}

/// Everything needed to launch one variant's instance and home volume.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub variant: String,
    pub region: String,
    pub arch: Arch,
    pub ami: String,
    pub instance_type: String,
    /// `Some` only for spot variants.
    pub spot: Option<SpotPlan>,
    /// The user-data exactly as `harness render` prints it.
    pub user_data: String,
    pub root_gib: i32,
    pub home_gib: i32,
    pub tags: RunTags,
}

/// Build the plan for `ami` (resolved by [`crate::template::ami::resolve`]).  Fails
/// (before anything is created) when the instance type is missing or a max
/// price is given for an on-demand variant.
pub fn plan(
    variant: &Variant,
    region: &str,
    ami: &str,
    user_data: &str,
    tags: RunTags,
    opts: &PlanOptions,
) -> anyhow::Result<LaunchPlan> {
    if !ami.starts_with("ami-") {
        anyhow::bail!("{}: expected an AMI id `ami-…`, seen `{ami}`", variant.name);
    }
    let instance_type = opts
        .instance_type
        .clone()
        .or_else(|| {
            variant
                .value_str("default_instance_type")
                .map(str::to_string)
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: expected `default_instance_type` (or --instance-type), seen none",
                variant.source.display()
            )
        })?;
    let spot = if variant.is_spot {
        Some(SpotPlan {
            max_price: opts.spot_max_price.clone(),
        })
    } else {
        if opts.spot_max_price.is_some() {
            anyhow::bail!(
                "{} is on-demand: expected no spot max price, seen {:?}; drop --spot-max-price",
                variant.name,
                opts.spot_max_price
            );
        }
        None
    };
    Ok(LaunchPlan {
        variant: variant.name.clone(),
        region: region.to_string(),
        arch: variant.arch,
        ami: ami.to_string(),
        instance_type,
        spot,
        user_data: user_data.to_string(),
        root_gib: ROOT_GIB,
        home_gib: HOME_GIB,
        tags,
    })
}

impl LaunchPlan {
    /// User-data base64-encoded, as `RunInstances` requires.
    pub fn user_data_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.user_data.as_bytes())
    }

    pub fn ec2_instance_type(&self) -> InstanceType {
        InstanceType::from(self.instance_type.as_str())
    }

    /// `InstanceMarketOptions` for spot variants, `None` for on-demand.
    pub fn market_options(&self) -> Option<InstanceMarketOptionsRequest> {
        let spot = self.spot.as_ref()?;
        Some(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        // Persistent + stop: an interruption stops the
                        // instance and the request relaunches it (market module).
                        .spot_instance_type(SpotInstanceType::Persistent)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Stop)
                        .set_max_price(spot.max_price.clone())
                        .build(),
                )
                .build(),
        )
    }

    /// IMDSv2 only (the NixOS metadata fetcher asks for a token).
    pub fn metadata_options(&self) -> InstanceMetadataOptionsRequest {
        InstanceMetadataOptionsRequest::builder()
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .http_tokens(HttpTokensState::Required)
            .build()
    }

    /// Encrypted gp3 root disk, deleted with the instance.
    pub fn block_device_mappings(&self) -> Vec<BlockDeviceMapping> {
        vec![BlockDeviceMapping::builder()
            .device_name(ROOT_DEVICE)
            .ebs(
                EbsBlockDevice::builder()
                    .volume_type(VolumeType::Gp3)
                    .volume_size(self.root_gib)
                    .encrypted(true)
                    .delete_on_termination(true)
                    .build(),
            )
            .build()]
    }

    /// Every tag the run's resources carry.
    pub fn tag_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.tags.pairs();
        pairs.push(("harness:variant".into(), self.variant.clone()));
        pairs.push((
            "Name".into(),
            format!("{}-{}", self.tags.resource_name(), self.variant),
        ));
        pairs
    }

    /// Run tags for each of `kinds`.
    pub fn tag_specifications(&self, kinds: &[ResourceType]) -> Vec<TagSpecification> {
        let pairs = self.tag_pairs();
        kinds
            .iter()
            .map(|k| super::tag_spec(k.clone(), &pairs))
            .collect()
    }

    /// Tag specifications of `RunInstances`: instance, its volumes and
    /// (spot) its spot request.
    pub fn run_instances_tags(&self) -> Vec<TagSpecification> {
        let mut kinds = vec![ResourceType::Instance, ResourceType::Volume];
        if self.spot.is_some() {
            kinds.push(ResourceType::SpotInstancesRequest);
        }
        self.tag_specifications(&kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn variant(arch: Arch, is_spot: bool, ty: &str) -> Variant {
        let mut values = BTreeMap::new();
        values.insert("default_instance_type".into(), serde_json::json!(ty));
        Variant {
            name: format!("v-{arch}-{is_spot}"),
            arch,
            is_spot,
            values,
            source: "values/v.yml".into(),
        }
    }

    #[test]
    fn spot_only_for_spot_variants_and_fixed_settings() {
        let t = RunTags::new("unit");
        let od = plan(
            &variant(Arch::X86_64, false, "t3.medium"),
            "us-east-1",
            "ami-x",
            "#!/bin/sh\n",
            t.clone(),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(od.ami, "ami-x");
        assert_eq!(od.instance_type, "t3.medium");
        assert!(od.market_options().is_none());
        assert_eq!(od.user_data_base64(), "IyEvYmluL3NoCg==");
        assert_eq!(
            od.metadata_options().http_tokens(),
            Some(&HttpTokensState::Required)
        );
        let bdm = &od.block_device_mappings()[0];
        let ebs = bdm.ebs().unwrap();
        assert_eq!(
            (ebs.encrypted(), ebs.volume_type()),
            (Some(true), Some(&VolumeType::Gp3))
        );
        assert_eq!(od.run_instances_tags().len(), 2);

        let opts = PlanOptions {
            instance_type: Some("t4g.large".into()),
            spot_max_price: Some("0.05".into()),
        };
        let sp = plan(
            &variant(Arch::Aarch64, true, "t4g.medium"),
            "us-east-1",
            "ami-a",
            "x",
            t,
            &opts,
        )
        .unwrap();
        assert_eq!(
            (sp.ami.as_str(), sp.instance_type.as_str()),
            ("ami-a", "t4g.large")
        );
        let m = sp.market_options().unwrap();
        assert_eq!(m.market_type(), Some(&MarketType::Spot));
        let so = m.spot_options().unwrap();
        assert_eq!(so.spot_instance_type(), Some(&SpotInstanceType::Persistent));
        assert_eq!(
            so.instance_interruption_behavior(),
            Some(&InstanceInterruptionBehavior::Stop)
        );
        assert_eq!(so.max_price(), Some("0.05"));
        assert_eq!(sp.run_instances_tags().len(), 3);
    }

    #[test]
    fn bad_ami_or_price_is_a_clear_error() {
        let t = RunTags::new("unit");
        let e = plan(
            &variant(Arch::Aarch64, false, "t4g.medium"),
            "eu-west-1",
            "",
            "",
            t.clone(),
            &PlanOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ami-"), "{e}");
        let opts = PlanOptions {
            spot_max_price: Some("1".into()),
            ..Default::default()
        };
        let e = plan(
            &variant(Arch::X86_64, false, "t3.medium"),
            "us-east-1",
            "ami-x",
            "",
            t,
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("on-demand"), "{e}");
    }
}

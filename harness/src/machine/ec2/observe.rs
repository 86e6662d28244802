//! One way to observe a workspace on EC2, whatever built it (the twin's
//! Terraform against the moto double, or Coder on real AWS): everything that
//! carries the workspace's tags, plus what is attached to or launched for
//! its instance even when untagged (so a missing tag is reported, not
//! overlooked), described through aws-sdk-ec2 only.
//!
//! [`observe`] takes a snapshot ([`WorkspaceView`]); the checks are pure
//! functions of snapshots ([`WorkspaceView::check_created`],
//! [`WorkspaceView::check_stopped`], [`WorkspaceView::check_gone`], …), so
//! they are tested on hand-made views and run unchanged on real AWS.  Every
//! failure names what was expected and what was seen.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use base64::Engine as _;

/// The device the template attaches the home volume as.
pub const HOME_DEVICE: &str = "/dev/xvdb";
/// The instance tag each Coder build writes (`start` / `stop`): the
/// workspace's desired state, which the guest reads from IMDS at boot
/// (templates/modules/ec2-instance, README "Spot").
pub const TRANSITION_TAG: &str = "coder_transition";

/// One instance as EC2 describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
    pub zone: String,
    pub instance_type: String,
    pub image_id: String,
    pub subnet_id: String,
    /// `spot` for a Spot Instance, `None` for on-demand.
    pub lifecycle: Option<String>,
    pub spot_request_id: Option<String>,
    pub http_tokens: String,
    pub http_endpoint: String,
    /// `enabled` when instance tags are readable through IMDS.
    pub metadata_tags: String,
    pub tags: BTreeMap<String, String>,
    pub root_device: String,
    /// Device name → volume id, as the instance's block-device mapping says.
    pub devices: BTreeMap<String, String>,
    /// The user-data bytes (DescribeInstanceAttribute userData), decoded.
    pub user_data: Option<Vec<u8>>,
}

impl InstanceView {
    pub fn live(&self) -> bool {
        !matches!(self.state.as_str(), "terminated" | "shutting-down")
    }
}

/// One EBS volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeView {
    pub id: String,
    pub zone: String,
    pub size_gib: i32,
    pub volume_type: String,
    pub encrypted: bool,
    /// `creating`, `available`, `in-use`, `deleting`, …
    pub state: String,
    pub tags: BTreeMap<String, String>,
    /// (instance id, device, attachment state).
    pub attachments: Vec<(String, String, String)>,
}

/// One Spot Instance request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpotRequestView {
    pub id: String,
    /// `open`, `active`, `disabled`, `closed`, `cancelled`, `failed`.
    pub state: String,
    pub status_code: String,
    /// `one-time` or `persistent`.
    pub request_type: String,
    pub interruption_behavior: String,
    pub instance_id: Option<String>,
    pub max_price: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl SpotRequestView {
    /// A request EC2 may still act on (launch or restart an instance).
    pub fn open(&self) -> bool {
        matches!(self.state.as_str(), "open" | "active" | "disabled")
    }
}

/// Everything one workspace has on EC2 at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceView {
    /// The tags the snapshot was taken by.
    pub tags: BTreeMap<String, String>,
    pub instances: Vec<InstanceView>,
    pub volumes: Vec<VolumeView>,
    pub spot_requests: Vec<SpotRequestView>,
}

fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<Filter> {
    tags.iter()
        .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
        .collect()
}

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn err(what: &str, e: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(e))
}

/// Snapshot every instance, volume and Spot Instance request carrying all
/// of `tags`, plus the volumes attached to those instances and the requests
/// that launched them (tagged or not).
pub async fn observe(
    client: &aws_sdk_ec2::Client,
    tags: &BTreeMap<String, String>,
) -> anyhow::Result<WorkspaceView> {
    anyhow::ensure!(
        !tags.is_empty(),
        "observing a workspace needs at least one tag (every resource would match)"
    );
    let mut view = WorkspaceView {
        tags: tags.clone(),
        ..Default::default()
    };
    let mut pages = client
        .describe_instances()
        .set_filters(Some(tag_filters(tags)))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| err("DescribeInstances", e))?;
        for r in page.reservations() {
            for i in r.instances() {
                let mut v = InstanceView {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                    zone: i
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or_default()
                        .to_string(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    image_id: i.image_id().unwrap_or_default().to_string(),
                    subnet_id: i.subnet_id().unwrap_or_default().to_string(),
                    lifecycle: i.instance_lifecycle().map(|l| l.as_str().to_string()),
                    spot_request_id: i.spot_instance_request_id().map(str::to_string),
                    http_tokens: i
                        .metadata_options()
                        .and_then(|m| m.http_tokens())
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    http_endpoint: i
                        .metadata_options()
                        .and_then(|m| m.http_endpoint())
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    metadata_tags: i
                        .metadata_options()
                        .and_then(|m| m.instance_metadata_tags())
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    tags: tag_map(i.tags()),
                    root_device: i.root_device_name().unwrap_or_default().to_string(),
                    devices: i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|b| {
                            Some((
                                b.device_name()?.to_string(),
                                b.ebs()?.volume_id()?.to_string(),
                            ))
                        })
                        .collect(),
                    user_data: None,
                };
                if v.live() {
                    let a = client
                        .describe_instance_attribute()
                        .instance_id(&v.id)
                        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                        .send()
                        .await
                        .map_err(|e| err("DescribeInstanceAttribute userData", e))?;
                    v.user_data = match a.user_data().and_then(|u| u.value()) {
                        Some(b64) => Some(
                            base64::engine::general_purpose::STANDARD
                                .decode(b64)
                                .map_err(|e| {
                                    anyhow::anyhow!("user-data of {} is not base64: {e}", v.id)
                                })?,
                        ),
                        None => Some(vec![]),
                    };
                }
                view.instances.push(v);
            }
        }
    }
    // Volumes: tagged, or attached to one of the instances.
    let mut seen = BTreeSet::new();
    let live: Vec<String> = view
        .instances
        .iter()
        .filter(|i| i.live())
        .map(|i| i.id.clone())
        .collect();
    let mut queries = vec![tag_filters(tags)];
    if !live.is_empty() {
        queries.push(vec![Filter::builder()
            .name("attachment.instance-id")
            .set_values(Some(live.clone()))
            .build()]);
    }
    for filters in queries {
        let mut pages = client
            .describe_volumes()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err("DescribeVolumes", e))?;
            for v in page.volumes() {
                let id = v.volume_id().unwrap_or_default().to_string();
                if !seen.insert(id.clone()) {
                    continue;
                }
                view.volumes.push(VolumeView {
                    id,
                    zone: v.availability_zone().unwrap_or_default().to_string(),
                    size_gib: v.size().unwrap_or_default(),
                    volume_type: v
                        .volume_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    encrypted: v.encrypted().unwrap_or(false),
                    state: v
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    tags: tag_map(v.tags()),
                    attachments: v
                        .attachments()
                        .iter()
                        .map(|a| {
                            (
                                a.instance_id().unwrap_or_default().to_string(),
                                a.device().unwrap_or_default().to_string(),
                                a.state()
                                    .map(|s| s.as_str().to_string())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    // Spot requests: tagged, or named by one of the instances.
    let mut seen = BTreeSet::new();
    let named: Vec<String> = view
        .instances
        .iter()
        .filter_map(|i| i.spot_request_id.clone())
        .collect();
    let mut queries = vec![client
        .describe_spot_instance_requests()
        .set_filters(Some(tag_filters(tags)))];
    if !named.is_empty() {
        queries.push(
            client
                .describe_spot_instance_requests()
                .set_spot_instance_request_ids(Some(named)),
        );
    }
    for q in queries {
        let out = q
            .send()
            .await
            .map_err(|e| err("DescribeSpotInstanceRequests", e))?;
        for r in out.spot_instance_requests() {
            let id = r.spot_instance_request_id().unwrap_or_default().to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            view.spot_requests.push(SpotRequestView {
                id,
                state: r
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                status_code: r
                    .status()
                    .and_then(|s| s.code())
                    .unwrap_or_default()
                    .to_string(),
                request_type: r
                    .r#type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                interruption_behavior: r
                    .instance_interruption_behavior()
                    .map(|b| b.as_str().to_string())
                    .unwrap_or_default(),
                instance_id: r.instance_id().map(str::to_string),
                max_price: r.spot_price().map(str::to_string),
                tags: tag_map(r.tags()),
            });
        }
    }
    Ok(view)
}

/// What a created (started) workspace must look like.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The owner tags every resource must carry (a subset of each one's tags).
    pub owner_tags: BTreeMap<String, String>,
    pub spot: bool,
    /// The AMI the instance must boot, if known.
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    /// The exact user-data bytes, if known.
    pub user_data: Option<Vec<u8>>,
}

fn missing_tags(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<String> {
    want.iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| match have.get(k) {
            Some(seen) => format!("{k}={v} (seen {k}={seen})"),
            None => format!("{k}={v}"),
        })
        .collect()
}

/// Where two byte strings first differ, for a readable failure.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

impl WorkspaceView {
    /// The one instance that is not terminated; an error names them all.
    pub fn instance(&self) -> Result<&InstanceView, String> {
        let live: Vec<&InstanceView> = self.instances.iter().filter(|i| i.live()).collect();
        match live[..] {
            [one] => Ok(one),
            [] => Err(format!(
                "expected one live instance tagged {}, seen none{}",
                fmt_tags(&self.tags),
                if self.instances.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (terminated: {})",
                        self.instances
                            .iter()
                            .map(|i| i.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
            _ => Err(format!(
                "expected one live instance tagged {}, seen {}: {}",
                fmt_tags(&self.tags),
                live.len(),
                live.iter()
                    .map(|i| format!("{} ({})", i.id, i.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The volume attached to `instance` as `device`.
    pub fn attached(&self, instance: &str, device: &str) -> Option<&VolumeView> {
        self.volumes.iter().find(|v| {
            v.attachments
                .iter()
                .any(|(i, d, _)| i == instance && d == device)
        })
    }

    /// The home volume: attached as [`HOME_DEVICE`] to the live instance.
    pub fn home_volume(&self) -> Result<&VolumeView, String> {
        let i = self.instance()?;
        self.attached(&i.id, HOME_DEVICE).ok_or_else(|| {
            format!(
                "expected a volume attached to {} as {HOME_DEVICE}, seen {}",
                i.id,
                if self.volumes.is_empty() {
                    "no volume".to_string()
                } else {
                    self.volumes
                        .iter()
                        .map(|v| {
                            format!(
                                "{} ({})",
                                v.id,
                                v.attachments
                                    .iter()
                                    .map(|(i, d, s)| format!("{d} of {i}, {s}"))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        })
    }

    /// The Spot Instance request that launched the live instance.
    pub fn spot_request(&self) -> Result<&SpotRequestView, String> {
        let i = self.instance()?;
        let Some(id) = &i.spot_request_id else {
            return Err(format!(
                "expected instance {} to name its Spot Instance request (SpotInstanceRequestId), seen none (lifecycle {:?})",
                i.id, i.lifecycle
            ));
        };
        self.spot_requests
            .iter()
            .find(|r| &r.id == id)
            .ok_or_else(|| {
                format!(
                    "expected Spot Instance request {id} of {} to be describable, seen none",
                    i.id
                )
            })
    }

    /// Every check of a freshly created, running workspace; the problems
    /// found, each with what was expected and what was seen.
    pub fn check_created(&self, want: &Expect) -> Vec<String> {
        let mut p = vec![];
        let i = match self.instance() {
            Ok(i) => i,
            Err(e) => return vec![e],
        };
        if i.state != "running" {
            p.push(format!(
                "instance {}: expected state running, seen {}",
                i.id, i.state
            ));
        }
        p.extend(self.check_instance_shape(i, want));
        if let Some(want_ud) = &want.user_data {
            match &i.user_data {
                None => p.push(format!("instance {}: expected user-data, seen none", i.id)),
                Some(seen) => {
                    if let Some(at) = first_difference(want_ud, seen) {
                        p.push(format!(
                            "instance {}: expected the user-data the contract tier boots ({} bytes), seen {} bytes differing from byte {at}",
                            i.id,
                            want_ud.len(),
                            seen.len()
                        ));
                    }
                }
            }
        }
        p.extend(self.check_disks(want));
        p
    }

    /// Metadata options, image, type, market and tags of the instance.
    fn check_instance_shape(&self, i: &InstanceView, want: &Expect) -> Vec<String> {
        let mut p = vec![];
        if i.http_tokens != "required" {
            p.push(format!(
                "instance {}: expected IMDSv2 required (HttpTokens=required), seen HttpTokens={}",
                i.id,
                if i.http_tokens.is_empty() {
                    "(none)"
                } else {
                    &i.http_tokens
                }
            ));
        }
        if i.http_endpoint != "enabled" {
            p.push(format!(
                "instance {}: expected the metadata endpoint enabled, seen {}",
                i.id, i.http_endpoint
            ));
        }
        if i.metadata_tags != "enabled" {
            p.push(format!(
                "instance {}: expected instance tags in IMDS (InstanceMetadataTags=enabled: the guest reads {TRANSITION_TAG} at boot), seen {}",
                i.id,
                if i.metadata_tags.is_empty() { "(none)" } else { &i.metadata_tags }
            ));
        }
        if let Some(img) = &want.image_id {
            if &i.image_id != img {
                p.push(format!(
                    "instance {}: expected image {img}, seen {}",
                    i.id, i.image_id
                ));
            }
        }
        if let Some(t) = &want.instance_type {
            if &i.instance_type != t {
                p.push(format!(
                    "instance {}: expected type {t}, seen {}",
                    i.id, i.instance_type
                ));
            }
        }
        let miss = missing_tags(&i.tags, &want.owner_tags);
        if !miss.is_empty() {
            p.push(format!(
                "instance {}: expected the owner tags, missing {}",
                i.id,
                miss.join(", ")
            ));
        }
        if want.spot {
            if i.lifecycle.as_deref() != Some("spot") {
                p.push(format!(
                    "instance {}: expected a Spot Instance (lifecycle spot), seen {:?}",
                    i.id, i.lifecycle
                ));
            }
            match self.spot_request() {
                Err(e) => p.push(e),
                Ok(r) => {
                    if r.request_type != "persistent" || r.interruption_behavior != "stop" {
                        p.push(format!(
                            "spot request {}: expected persistent with interruption behaviour stop, seen {} / {}",
                            r.id, r.request_type, r.interruption_behavior
                        ));
                    }
                    let miss = missing_tags(&r.tags, &want.owner_tags);
                    if !miss.is_empty() {
                        p.push(format!(
                            "spot request {}: expected the owner tags, missing {}",
                            r.id,
                            miss.join(", ")
                        ));
                    }
                }
            }
        } else if i.lifecycle.is_some() || i.spot_request_id.is_some() {
            p.push(format!(
                "instance {}: expected an on-demand instance, seen lifecycle {:?}, spot request {:?}",
                i.id, i.lifecycle, i.spot_request_id
            ));
        }
        p
    }

    /// Root and home volume: zone, encryption, attachment, tags.
    pub fn check_disks(&self, want: &Expect) -> Vec<String> {
        let mut p = vec![];
        let i = match self.instance() {
            Ok(i) => i,
            Err(e) => return vec![e],
        };
        match self.home_volume() {
            Err(e) => p.push(e),
            Ok(h) => {
                if h.zone != i.zone {
                    p.push(format!(
                        "home volume {}: expected it in the instance's zone {}, seen {}",
                        h.id, i.zone, h.zone
                    ));
                }
                if !h.encrypted {
                    p.push(format!(
                        "home volume {}: expected encrypted, seen unencrypted",
                        h.id
                    ));
                }
                let miss = missing_tags(&h.tags, &want.owner_tags);
                if !miss.is_empty() {
                    p.push(format!(
                        "home volume {}: expected the owner tags, missing {}",
                        h.id,
                        miss.join(", ")
                    ));
                }
                if h.tags.get("Name").is_some_and(|n| !n.ends_with("-home")) {
                    p.push(format!(
                        "home volume {}: expected its own Name (…-home), seen Name={} (another resource's tags were written onto it)",
                        h.id, h.tags["Name"]
                    ));
                }
            }
        }
        match i
            .devices
            .get(&i.root_device)
            .and_then(|id| self.volumes.iter().find(|v| &v.id == id))
        {
            None => p.push(format!(
                "instance {}: expected a root volume at {} to describe, seen devices {:?}",
                i.id, i.root_device, i.devices
            )),
            Some(r) => {
                if !r.encrypted {
                    p.push(format!(
                        "root volume {}: expected encrypted, seen unencrypted",
                        r.id
                    ));
                }
                let miss = missing_tags(&r.tags, &want.owner_tags);
                if !miss.is_empty() {
                    p.push(format!(
                        "root volume {}: expected the owner tags, missing {}",
                        r.id,
                        miss.join(", ")
                    ));
                }
            }
        }
        p
    }

    /// After a stop build: the instance stopped, the home volume kept and
    /// attached, the desired state `stop` recorded on the instance.
    pub fn check_stopped(&self, home_volume: &str) -> Vec<String> {
        let mut p = vec![];
        let i = match self.instance() {
            Ok(i) => i,
            Err(e) => return vec![e],
        };
        if i.state != "stopped" {
            p.push(format!(
                "instance {}: expected stopped, seen {}",
                i.id, i.state
            ));
        }
        if i.tags.get(TRANSITION_TAG).map(String::as_str) != Some("stop") {
            p.push(format!(
                "instance {}: expected tag {TRANSITION_TAG}=stop (what the guest reads at boot), seen {:?}",
                i.id,
                i.tags.get(TRANSITION_TAG)
            ));
        }
        match self.home_volume() {
            Err(e) => p.push(e),
            Ok(h) if h.id != home_volume => p.push(format!(
                "expected the home volume {home_volume} kept across the stop, seen {} attached instead",
                h.id
            )),
            Ok(_) => {}
        }
        if let Some(r) = i
            .spot_request_id
            .as_ref()
            .and_then(|id| self.spot_requests.iter().find(|r| &r.id == id))
        {
            if r.state == "cancelled" || r.state == "closed" {
                p.push(format!(
                    "spot request {}: expected it kept across a stop (a stopped Spot Instance whose request is cancelled can never start again), seen {}",
                    r.id, r.state
                ));
            }
        }
        p
    }

    /// After a start build: running, the same home volume, tag `start`.
    pub fn check_started(&self, home_volume: &str) -> Vec<String> {
        let mut p = vec![];
        let i = match self.instance() {
            Ok(i) => i,
            Err(e) => return vec![e],
        };
        if i.state != "running" {
            p.push(format!(
                "instance {}: expected running, seen {}",
                i.id, i.state
            ));
        }
        if i.tags.get(TRANSITION_TAG).map(String::as_str) != Some("start") {
            p.push(format!(
                "instance {}: expected tag {TRANSITION_TAG}=start, seen {:?}",
                i.id,
                i.tags.get(TRANSITION_TAG)
            ));
        }
        match self.home_volume() {
            Err(e) => p.push(e),
            Ok(h) if h.id != home_volume => p.push(format!(
                "expected the home volume {home_volume} attached, seen {} (the home volume was replaced: /home is empty)",
                h.id
            )),
            Ok(_) => {}
        }
        p
    }

    /// After delete: nothing with the tags left but terminated instances
    /// and cancelled or closed requests.
    pub fn check_gone(&self) -> Vec<String> {
        let mut p = vec![];
        for i in self.instances.iter().filter(|i| i.live()) {
            p.push(format!("instance {} left in state {}", i.id, i.state));
        }
        for v in &self.volumes {
            if v.state != "deleting" && v.state != "deleted" {
                p.push(format!(
                    "volume {} left in state {} (tags {})",
                    v.id,
                    v.state,
                    fmt_tags(&v.tags)
                ));
            }
        }
        for r in self.spot_requests.iter().filter(|r| r.open()) {
            p.push(format!(
                "spot request {} left {} ({}): EC2 may launch or restart an instance for it; expected it cancelled",
                r.id, r.state, r.status_code
            ));
        }
        p
    }
}

pub fn fmt_tags(t: &BTreeMap<String, String>) -> String {
    t.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn owner() -> BTreeMap<String, String> {
        tags(&[("coder_owner", "alice"), ("coder_workspace", "ws")])
    }

    /// A healthy started spot workspace.
    fn healthy() -> WorkspaceView {
        let o = owner();
        let mut itags = o.clone();
        itags.insert("Name".into(), "coder-alice-ws".into());
        itags.insert(TRANSITION_TAG.into(), "start".into());
        let mut home = o.clone();
        home.insert("Name".into(), "coder-alice-ws-home".into());
        let mut root = o.clone();
        root.insert("Name".into(), "coder-alice-ws-root".into());
        WorkspaceView {
            tags: o.clone(),
            instances: vec![InstanceView {
                id: "i-1".into(),
                state: "running".into(),
                zone: "us-east-1a".into(),
                instance_type: "t3.medium".into(),
                image_id: "ami-1".into(),
                lifecycle: Some("spot".into()),
                spot_request_id: Some("sir-1".into()),
                http_tokens: "required".into(),
                http_endpoint: "enabled".into(),
                metadata_tags: "enabled".into(),
                tags: itags,
                root_device: "/dev/xvda".into(),
                devices: [("/dev/xvda".to_string(), "vol-r".to_string())].into(),
                user_data: Some(b"#!/bin/sh\n".to_vec()),
                ..Default::default()
            }],
            volumes: vec![
                VolumeView {
                    id: "vol-r".into(),
                    zone: "us-east-1a".into(),
                    encrypted: true,
                    state: "in-use".into(),
                    tags: root,
                    attachments: vec![("i-1".into(), "/dev/xvda".into(), "attached".into())],
                    ..Default::default()
                },
                VolumeView {
                    id: "vol-h".into(),
                    zone: "us-east-1a".into(),
                    encrypted: true,
                    state: "in-use".into(),
                    tags: home,
                    attachments: vec![("i-1".into(), HOME_DEVICE.into(), "attached".into())],
                    ..Default::default()
                },
            ],
            spot_requests: vec![SpotRequestView {
                id: "sir-1".into(),
                state: "active".into(),
                status_code: "fulfilled".into(),
                request_type: "persistent".into(),
                interruption_behavior: "stop".into(),
                instance_id: Some("i-1".into()),
                tags: o,
                ..Default::default()
            }],
        }
    }

    fn expect() -> Expect {
        Expect {
            owner_tags: owner(),
            spot: true,
            image_id: Some("ami-1".into()),
            instance_type: Some("t3.medium".into()),
            user_data: Some(b"#!/bin/sh\n".to_vec()),
        }
    }

    #[test]
    fn a_healthy_workspace_passes_every_check() {
        let v = healthy();
        assert_eq!(v.check_created(&expect()), Vec::<String>::new());
        assert_eq!(v.home_volume().unwrap().id, "vol-h");
        assert_eq!(v.check_started("vol-h"), Vec::<String>::new());
    }

    /// Every check can fail, and says what it expected and saw.
    #[test]
    fn each_defect_is_named() {
        type Break = Box<dyn Fn(&mut WorkspaceView)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "expected IMDSv2 required",
                Box::new(|v| v.instances[0].http_tokens = "optional".into()),
            ),
            (
                "InstanceMetadataTags=enabled",
                Box::new(|v| v.instances[0].metadata_tags = "disabled".into()),
            ),
            (
                "expected it in the instance's zone us-east-1a, seen us-east-1c",
                Box::new(|v| v.volumes[1].zone = "us-east-1c".into()),
            ),
            (
                "home volume vol-h: expected encrypted",
                Box::new(|v| v.volumes[1].encrypted = false),
            ),
            (
                "attached to i-1 as /dev/xvdb",
                Box::new(|v| v.volumes[1].attachments[0].1 = "/dev/sdf".into()),
            ),
            (
                "spot request sir-1: expected the owner tags, missing coder_owner=alice",
                Box::new(|v| {
                    v.spot_requests[0].tags.clear();
                }),
            ),
            (
                "root volume vol-r: expected the owner tags",
                Box::new(|v| v.volumes[0].tags.clear()),
            ),
            (
                "expected its own Name (…-home), seen Name=coder-alice-ws-root",
                Box::new(|v| {
                    v.volumes[1]
                        .tags
                        .insert("Name".into(), "coder-alice-ws-root".into());
                }),
            ),
            (
                "expected persistent with interruption behaviour stop, seen one-time / terminate",
                Box::new(|v| {
                    v.spot_requests[0].request_type = "one-time".into();
                    v.spot_requests[0].interruption_behavior = "terminate".into();
                }),
            ),
            (
                "differing from byte 3",
                Box::new(|v| v.instances[0].user_data = Some(b"#!/usr/bin/env".to_vec())),
            ),
            (
                "expected image ami-1, seen ami-2",
                Box::new(|v| v.instances[0].image_id = "ami-2".into()),
            ),
            (
                "to name its Spot Instance request",
                Box::new(|v| v.instances[0].spot_request_id = None),
            ),
        ];
        for (want, break_it) in cases {
            let mut v = healthy();
            break_it(&mut v);
            let p = v.check_created(&expect()).join("\n");
            assert!(
                p.contains(want),
                "expected a problem containing {want:?}, got:\n{p}"
            );
        }
        // On-demand expectations on a spot instance.
        let p = healthy()
            .check_created(&Expect {
                spot: false,
                ..expect()
            })
            .join("\n");
        assert!(p.contains("expected an on-demand instance"), "{p}");
    }

    #[test]
    fn stop_start_and_delete_checks() {
        let mut v = healthy();
        v.instances[0].state = "stopped".into();
        v.instances[0]
            .tags
            .insert(TRANSITION_TAG.into(), "stop".into());
        v.spot_requests[0].state = "disabled".into();
        assert_eq!(v.check_stopped("vol-h"), Vec::<String>::new());
        let p = v.check_stopped("vol-old").join("\n");
        assert!(p.contains("expected the home volume vol-old kept"), "{p}");
        v.spot_requests[0].state = "cancelled".into();
        assert!(v
            .check_stopped("vol-h")
            .join("\n")
            .contains("can never start again"));
        let p = v.check_started("vol-h").join("\n");
        assert!(
            p.contains("expected running, seen stopped") && p.contains("coder_transition=start"),
            "{p}"
        );
        // Delete: a live instance, a volume and an open request are each named.
        let p = healthy().check_gone().join("\n");
        assert!(
            p.contains("instance i-1 left")
                && p.contains("volume vol-h left")
                && p.contains("spot request sir-1 left active"),
            "{p}"
        );
        let mut gone = healthy();
        gone.instances[0].state = "terminated".into();
        gone.volumes.clear();
        gone.spot_requests[0].state = "cancelled".into();
        assert_eq!(gone.check_gone(), Vec::<String>::new());
        assert!(gone.instance().unwrap_err().contains("terminated: i-1"));
    }
}

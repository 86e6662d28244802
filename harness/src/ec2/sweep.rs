//! `harness sweep`: find every resource tagged `harness:run-id` (older than
//! a bound, optionally one run only) and delete it: cancel spot requests,
//! terminate instances, delete volumes, key pairs and security groups.
//!
//! Untagged resources are never touched: every list call filters on the
//! tag key server-side and every candidate is checked again locally.
//! Idempotent: what is already gone (or terminated) is skipped.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, Tag};

use super::config::Ec2Ctx;
use super::{tag_value, TAG_CREATED_AT, TAG_RUN_ID};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Only resources whose `harness:created-at` is at least this old.
    pub older_than: Duration,
    /// Print what would be done, change nothing.
    pub dry_run: bool,
    /// Only this run (the drop guard's cleanup).
    pub run_id: Option<String>,
}

/// An SDK error with its code and message.
pub fn err<E: std::error::Error>(e: &E) -> String {
    format!("{}", DisplayErrorContext(e))
}

/// Parse `90s`, `15m`, `2h`, `1d` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 0s, 30m, 2h or 1d, seen `{s}`"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "expected a unit s, m, h or d, seen `{unit}` in `{s}`"
            ))
        }
    };
    Ok(Duration::from_secs(n * mult))
}

/// One line of the sweep's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub region: String,
    pub kind: &'static str,
    pub id: String,
    pub run_id: String,
    /// `terminate`, `cancel`, `delete`, `skip (…)`.
    pub verb: String,
    pub dry_run: bool,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} {} {} {} (run {})",
            if self.dry_run { "would " } else { "" },
            self.verb,
            self.region,
            self.kind,
            self.id,
            self.run_id
        )
    }
}

fn tag_filters(opts: &SweepOptions) -> Vec<Filter> {
    let mut f = vec![Filter::builder().name("tag-key").values(TAG_RUN_ID).build()];
    if let Some(r) = &opts.run_id {
        f.push(
            Filter::builder()
                .name(format!("tag:{TAG_RUN_ID}"))
                .values(r)
                .build(),
        );
    }
    f
}

/// The run id if `tags` make the resource eligible, else `Err(reason)`
/// (`None` run id = not ours at all).
fn eligible(tags: &[Tag], opts: &SweepOptions, now: SystemTime) -> Result<String, Option<String>> {
    let Some(run) = tag_value(tags, TAG_RUN_ID) else {
        return Err(None);
    };
    if let Some(want) = &opts.run_id {
        if want != run {
            return Err(None);
        }
    }
    if opts.older_than.is_zero() {
        return Ok(run.to_string());
    }
    let Some(created) = tag_value(tags, TAG_CREATED_AT).and_then(super::parse_rfc3339) else {
        return Err(Some(run.to_string()));
    };
    let age = now.duration_since(created).unwrap_or_default();
    if age >= opts.older_than {
        Ok(run.to_string())
    } else {
        Err(Some(run.to_string()))
    }
}

/// Resource kinds in the order a sweep deletes them.
const KINDS: [&str; 5] = [
    "spot-request",
    "instance",
    "volume",
    "key-pair",
    "security-group",
];

/// A region's sweep, possibly stopped early (Ctrl-C).
#[derive(Debug, Default)]
pub struct Swept {
    /// What was done (or, dry run, planned) and skipped, in order.
    pub actions: Vec<Action>,
    /// `Some(what was not done)` when stopped before the end.
    pub left: Option<Vec<String>>,
}

impl Swept {
    fn act(
        &mut self,
        region: &str,
        dry_run: bool,
        kind: &'static str,
        id: &str,
        run: &str,
        verb: &str,
    ) {
        let a = Action {
            region: region.to_string(),
            kind,
            id: id.to_string(),
            run_id: run.to_string(),
            verb: verb.to_string(),
            dry_run: dry_run && !verb.starts_with("skip"),
        };
        println!("{a}");
        self.actions.push(a);
    }

    /// The run id of a resource to delete; `None` for one to leave alone:
    /// not ours or another run's (silently), or younger than
    /// `--older-than` (printed as skipped).
    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        region: &str,
        dry_run: bool,
        kind: &'static str,
        id: &str,
        tags: &[Tag],
        opts: &SweepOptions,
        now: SystemTime,
    ) -> Option<String> {
        match eligible(tags, opts, now) {
            Ok(run) => Some(run),
            Err(Some(run)) => {
                self.act(
                    region,
                    dry_run,
                    kind,
                    id,
                    &run,
                    "skip (younger than --older-than)",
                );
                None
            }
            Err(None) => None,
        }
    }

    /// Stop here: `pending` (kind, id, run) were not done, and the kinds
    /// after `kind` were not looked at.
    fn stopped(mut self, region: &str, kind: &str, pending: &[(&str, &str, &str)]) -> Swept {
        let mut left: Vec<String> = pending
            .iter()
            .map(|(k, id, run)| format!("{region} {k} {id} (run {run})"))
            .collect();
        let after = KINDS.iter().position(|k| *k == kind).map_or(0, |i| i + 1);
        left.extend(
            KINDS[after..]
                .iter()
                .map(|k| format!("{region} {k}s: not looked at")),
        );
        self.left = Some(left);
        self
    }
}

/// Sweep one region; prints each action to stdout and returns them.
pub async fn sweep_region(ctx: &Ec2Ctx, opts: &SweepOptions) -> anyhow::Result<Vec<Action>> {
    Ok(sweep_region_until(ctx, opts, &super::stop::Stop::new())
        .await?
        .actions)
}

/// [`sweep_region`] that honours `stop` (Ctrl-C): the deletion in flight
/// completes, nothing after it starts, and [`Swept::left`] says what was
/// not done.
pub async fn sweep_region_until(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    stop: &super::stop::Stop,
) -> anyhow::Result<Swept> {
    let c = &ctx.client;
    let region = ctx.region.as_str();
    let dry = opts.dry_run;
    let now = SystemTime::now();
    let mut out = Swept::default();

    // Instances (and their spot requests).
    let mut instances = Vec::new();
    let mut spot_requests = BTreeSet::new();
    let mut pages = c
        .describe_instances()
        .set_filters(Some(tag_filters(opts)))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow::anyhow!("DescribeInstances in {region}: {}", err(&e)))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let id = i.instance_id().unwrap_or_default();
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str())
                .unwrap_or("");
            if state == "terminated" {
                continue;
            }
            if let Some(run) = out.select(region, dry, "instance", id, i.tags(), opts, now) {
                if let Some(sr) = i.spot_instance_request_id() {
                    spot_requests.insert((sr.to_string(), run.clone()));
                }
                instances.push((id.to_string(), run));
            }
        }
    }
    match c
        .describe_spot_instance_requests()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
    {
        Ok(o) => {
            for r in o.spot_instance_requests() {
                let state = r.state().map(|s| s.as_str()).unwrap_or("");
                if matches!(state, "cancelled" | "closed") {
                    continue;
                }
                if let Ok(run) = eligible(r.tags(), opts, now) {
                    spot_requests.insert((
                        r.spot_instance_request_id().unwrap_or_default().to_string(),
                        run,
                    ));
                }
            }
        }
        Err(e) => tracing::warn!("DescribeSpotInstanceRequests in {region}: {}", err(&e)),
    }
    // Cancel persistent spot requests first, or EC2 relaunches the instances.
    let spot_requests: Vec<_> = spot_requests.into_iter().collect();
    for (n, (sr, run)) in spot_requests.iter().enumerate() {
        if stop.is_stopped() {
            let mut p = pending("spot-request", &spot_requests[n..]);
            p.extend(pending("instance", &instances));
            return Ok(out.stopped(region, "instance", &refs(&p)));
        }
        out.act(region, dry, "spot-request", sr, run, "cancel");
        if !dry {
            super::lifecycle::cancel_spot_request(c, sr).await?;
        }
    }
    if !instances.is_empty() {
        if stop.is_stopped() {
            let p = pending("instance", &instances);
            return Ok(out.stopped(region, "instance", &refs(&p)));
        }
        for (id, run) in &instances {
            out.act(region, dry, "instance", id, run, "terminate");
        }
        if !dry {
            let ids: Vec<String> = instances.iter().map(|(i, _)| i.clone()).collect();
            match c
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {}
                Err(e) => anyhow::bail!("TerminateInstances {ids:?}: {}", err(&e)),
            }
            let waited = stop
                .race(
                    c.wait_until_instance_terminated()
                        .set_instance_ids(Some(ids.clone()))
                        .wait(super::lifecycle::STATE_TIMEOUT),
                )
                .await;
            match waited {
                None => {
                    let p = pending("instance (terminating, not confirmed)", &instances);
                    return Ok(out.stopped(region, "instance", &refs(&p)));
                }
                Some(r) => {
                    r.map_err(|e| {
                        anyhow::anyhow!(
                            "instances {ids:?}: expected `terminated` within {:?}, seen: {e}",
                            super::lifecycle::STATE_TIMEOUT
                        )
                    })?;
                }
            }
        }
    }

    // Volumes.
    let vols = c
        .describe_volumes()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeVolumes in {region}: {}", err(&e)))?;
    let mut todo = Vec::new();
    for v in vols.volumes() {
        let id = v.volume_id().unwrap_or_default();
        if let Some(run) = out.select(region, dry, "volume", id, v.tags(), opts, now) {
            let attached = v
                .attachments()
                .iter()
                .any(|a| a.state().map(|s| s.as_str()) != Some("detached"));
            todo.push((id.to_string(), run, attached));
        }
    }
    for (n, (id, run, attached)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let rest: Vec<(String, String)> = todo[n..]
                .iter()
                .map(|(i, r, _)| (i.clone(), r.clone()))
                .collect();
            let p = pending("volume", &rest);
            return Ok(out.stopped(region, "volume", &refs(&p)));
        }
        out.act(region, dry, "volume", id, run, "delete");
        if !dry {
            delete_volume(c, id, *attached, stop).await?;
        }
    }

    // Key pairs.
    let keys = c
        .describe_key_pairs()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeKeyPairs in {region}: {}", err(&e)))?;
    let mut todo = Vec::new();
    for k in keys.key_pairs() {
        let name = k.key_name().unwrap_or_default();
        if let Some(run) = out.select(region, dry, "key-pair", name, k.tags(), opts, now) {
            todo.push((name.to_string(), run));
        }
    }
    for (n, (name, run)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let p = pending("key-pair", &todo[n..]);
            return Ok(out.stopped(region, "key-pair", &refs(&p)));
        }
        out.act(region, dry, "key-pair", name, run, "delete");
        if !dry {
            c.delete_key_pair()
                .key_name(name)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("DeleteKeyPair {name}: {}", err(&e)))?;
        }
    }

    // Security groups (after the instances using them are gone).
    let groups = c
        .describe_security_groups()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeSecurityGroups in {region}: {}", err(&e)))?;
    let mut todo = Vec::new();
    for g in groups.security_groups() {
        let id = g.group_id().unwrap_or_default();
        if let Some(run) = out.select(region, dry, "security-group", id, g.tags(), opts, now) {
            todo.push((id.to_string(), run));
        }
    }
    for (n, (id, run)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let p = pending("security-group", &todo[n..]);
            return Ok(out.stopped(region, "security-group", &refs(&p)));
        }
        out.act(region, dry, "security-group", id, run, "delete");
        if !dry && !delete_security_group(c, id, stop).await? {
            let p = [(
                "security-group (in use, not deleted)",
                id.as_str(),
                run.as_str(),
            )];
            return Ok(out.stopped(region, "security-group", &p));
        }
    }
    Ok(out)
}

/// `(kind, id, run)` for each not-done `(id, run)`.
fn pending<'k>(kind: &'k str, rest: &[(String, String)]) -> Vec<(&'k str, String, String)> {
    rest.iter()
        .map(|(id, run)| (kind, id.clone(), run.clone()))
        .collect()
}

fn refs<'a>(p: &'a [(&'a str, String, String)]) -> Vec<(&'a str, &'a str, &'a str)> {
    p.iter()
        .map(|(k, i, r)| (*k, i.as_str(), r.as_str()))
        .collect()
}

/// Detach (if attached, waiting unless stopped) and delete one volume.
async fn delete_volume(
    c: &aws_sdk_ec2::Client,
    id: &str,
    attached: bool,
    stop: &super::stop::Stop,
) -> anyhow::Result<()> {
    if attached {
        match c.detach_volume().volume_id(id).force(true).send().await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code(),
                    Some("IncorrectState") | Some("InvalidAttachment.NotFound")
                ) => {}
            Err(e) => tracing::warn!("DetachVolume {id}: {}", err(&e)),
        }
        let waited = stop
            .race(
                c.wait_until_volume_available()
                    .volume_ids(id)
                    .wait(super::launch::VOLUME_TIMEOUT),
            )
            .await;
        if let Some(Err(e)) = waited {
            tracing::warn!("volume {id}: expected `available` after detach, seen: {e}");
        }
    }
    match c.delete_volume().volume_id(id).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("InvalidVolume.NotFound") => Ok(()),
        Err(e) => anyhow::bail!("DeleteVolume {id}: {}", err(&e)),
    }
}

/// Delete a group, retrying (bounded) while EC2 still sees the terminated
/// instance's network interface (`DependencyViolation`).  `Ok(false)`:
/// stopped while waiting to retry.
async fn delete_security_group(
    c: &aws_sdk_ec2::Client,
    id: &str,
    stop: &super::stop::Stop,
) -> anyhow::Result<bool> {
    const TRIES: u32 = 12;
    for attempt in 1..=TRIES {
        match c.delete_security_group().group_id(id).send().await {
            Ok(_) => return Ok(true),
            Err(e) if e.code() == Some("InvalidGroup.NotFound") => return Ok(true),
            Err(e) if e.code() == Some("DependencyViolation") && attempt < TRIES => {
                tracing::info!(group = %id, attempt, "security group still in use; retrying in 10s");
                if stop
                    .race(tokio::time::sleep(Duration::from_secs(10)))
                    .await
                    .is_none()
                {
                    return Ok(false);
                }
            }
            Err(e) => anyhow::bail!(
                "DeleteSecurityGroup {id}: expected deletion, seen: {}; run `harness sweep` again later",
                err(&e)
            ),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Regions to sweep for `--all-regions`: those enabled for the account.
pub async fn all_regions(ctx: &Ec2Ctx) -> anyhow::Result<Vec<String>> {
    let out = ctx
        .client
        .describe_regions()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeRegions: {}", err(&e)))?;
    let mut r: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    r.sort();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("2x").unwrap_err().contains("unit"));
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn only_tagged_and_old_enough_resources_are_eligible() {
        let t = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let now = SystemTime::now();
        let old = super::super::rfc3339(now - Duration::from_secs(3 * 3600));
        let young = super::super::rfc3339(now);
        let opts = SweepOptions {
            older_than: Duration::from_secs(7200),
            dry_run: false,
            run_id: None,
        };
        assert_eq!(eligible(&[t("Name", "x")], &opts, now), Err(None));
        assert_eq!(
            eligible(&[t(TAG_RUN_ID, "r"), t(TAG_CREATED_AT, &old)], &opts, now),
            Ok("r".into())
        );
        assert_eq!(
            eligible(&[t(TAG_RUN_ID, "r"), t(TAG_CREATED_AT, &young)], &opts, now),
            Err(Some("r".into()))
        );
        let one = SweepOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            run_id: Some("q".into()),
        };
        assert_eq!(eligible(&[t(TAG_RUN_ID, "r")], &one, now), Err(None));
        assert_eq!(eligible(&[t(TAG_RUN_ID, "q")], &one, now), Ok("q".into()));
    }
}

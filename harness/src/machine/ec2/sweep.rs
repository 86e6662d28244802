//! `harness sweep`: find every resource tagged `harness:run-id` (older than
//! a bound, optionally one run only) and delete it: cancel spot requests,
//! terminate instances, delete volumes, key pairs, security groups and the
//! AWS FIS experiment templates of the spot interruption.
//!
//! What the template built through Coder on the `ec2` tier carries the
//! template's tags, not the harness's (`local.tags` in templates/main.tf:
//! `Coder_Provisioned=true`, `coder_owner`, `coder_workspace`, on the
//! instance, its root volume, the home volume and the spot request): those
//! are swept too when `coder_owner` is the owner's Coder user
//! ([`super::coder_user`]), or any name of that shape with
//! `--all-owners`, never another Coder user's workspace. Their age is
//! EC2's launch or create time (the template writes no creation tag).
//!
//! Untagged resources are never touched: every list call filters on the
//! tags server-side and every candidate is checked again locally.
//! Idempotent: what is already gone (or terminated) is skipped.
//!
//! A run's own cleanup (the drop guard) also passes the ids it recorded as
//! each create call returned ([`Recorded`]): EC2 is eventually consistent,
//! so a resource created seconds before a failure may not be listed by a
//! tag filter yet ("Eventual consistency", EC2 API reference). For the same
//! reason `InvalidInstanceID.NotFound` after TerminateInstances is not taken
//! as proof of termination: an instance counts as gone when EC2 shows it
//! `terminated`, or when it stays unknown for [`SweepTiming::settle`].
//! One failed Describe call is recorded and the sweep goes on with the
//! kinds after it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, Tag};

use super::config::Ec2Ctx;
use super::{
    tag_value, TAG_CREATED_AT, TAG_OWNER, TAG_RUN_ID, TEMPLATE_OWNER_TAG, TEMPLATE_PROVISIONED_TAG,
    TEMPLATE_WORKSPACE_TAG,
};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Only resources whose `harness:created-at` is at least this old.
    pub older_than: Duration,
    /// Print what would be done, change nothing.
    pub dry_run: bool,
    /// Only this run (the drop guard's cleanup).
    pub run_id: Option<String>,
    /// Only resources whose `harness:owner` tag is this (`--owner`, default
    /// [`super::default_owner`]); `None` = every owner (`--all-owners`, the
    /// janitor's choice).  Parallel CI cells and developers each sweep only
    /// their own runs.
    pub owner: Option<String>,
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

/// Which tags a listed resource was found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The harness's own `harness:*` tags (what the harness creates).
    Harness,
    /// The template's tags (what Coder's provisioner built).
    Template,
}

/// The server-side filters of each selector: the harness's tags, and the
/// template's unless one run only is swept (the template writes no run id).
fn filter_sets(opts: &SweepOptions) -> Vec<(By, Vec<Filter>)> {
    let mut v = vec![(By::Harness, tag_filters(opts))];
    if let Some(f) = template_filters(opts) {
        v.push((By::Template, f));
    }
    v
}

/// `Coder_Provisioned=true` and `coder_owner` = the owner's Coder user
/// (`harness-*` for every owner; checked exactly by [`eligible_template`]).
fn template_filters(opts: &SweepOptions) -> Option<Vec<Filter>> {
    if opts.run_id.is_some() {
        return None;
    }
    let owner = match &opts.owner {
        Some(o) => super::coder_user(o),
        None => format!("{}*", super::CODER_USER_PREFIX),
    };
    Some(vec![
        Filter::builder()
            .name(format!("tag:{TEMPLATE_PROVISIONED_TAG}"))
            .values("true")
            .build(),
        Filter::builder()
            .name(format!("tag:{TEMPLATE_OWNER_TAG}"))
            .values(owner)
            .build(),
    ])
}

/// Like [`eligible`] for what the template built: the label is
/// `coder:<user>/<workspace>`, the age EC2's `created` time.
fn eligible_template(
    tags: &[Tag],
    created: Option<SystemTime>,
    opts: &SweepOptions,
    now: SystemTime,
) -> Result<String, Option<String>> {
    if opts.run_id.is_some() || tag_value(tags, TEMPLATE_PROVISIONED_TAG) != Some("true") {
        return Err(None);
    }
    let Some(user) = tag_value(tags, TEMPLATE_OWNER_TAG) else {
        return Err(None);
    };
    let mine = match &opts.owner {
        Some(o) => user == super::coder_user(o),
        None => super::is_coder_user(user),
    };
    if !mine {
        return Err(None);
    }
    let label = format!(
        "coder:{user}/{}",
        tag_value(tags, TEMPLATE_WORKSPACE_TAG).unwrap_or("?")
    );
    if opts.older_than.is_zero() {
        return Ok(label);
    }
    match created {
        Some(c) if now.duration_since(c).unwrap_or_default() >= opts.older_than => Ok(label),
        _ => Err(Some(label)),
    }
}

/// [`eligible`] or [`eligible_template`], as `by` found the resource.
fn eligible_by(
    by: By,
    tags: &[Tag],
    created: Option<&aws_sdk_ec2::primitives::DateTime>,
    opts: &SweepOptions,
    now: SystemTime,
) -> Result<String, Option<String>> {
    match by {
        By::Harness => eligible(tags, opts, now),
        By::Template => eligible_template(
            tags,
            created.and_then(|d| SystemTime::try_from(*d).ok()),
            opts,
            now,
        ),
    }
}

fn tag_filters(opts: &SweepOptions) -> Vec<Filter> {
    let mut f = vec![Filter::builder().name("tag-key").values(TAG_RUN_ID).build()];
    if let Some(o) = &opts.owner {
        f.push(
            Filter::builder()
                .name(format!("tag:{TAG_OWNER}"))
                .values(o)
                .build(),
        );
    }
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
    if let Some(want) = &opts.owner {
        if tag_value(tags, TAG_OWNER) != Some(want.as_str()) {
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

/// Resources a run created, by id, recorded as each create call returned
/// (see the module doc); swept besides what the tag filters list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub spot_requests: Vec<String>,
    pub instances: Vec<String>,
    pub volumes: Vec<String>,
    pub key_pairs: Vec<String>,
    pub security_groups: Vec<String>,
}

impl Recorded {
    pub fn is_empty(&self) -> bool {
        self == &Recorded::default()
    }
}

/// Polling of a sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepTiming {
    /// Between looks at instances being terminated.
    pub poll: Duration,
    /// How long an instance (or a recorded volume) must stay unknown to EC2
    /// to count as gone: a just-created id may be unknown for a while.
    pub settle: Duration,
}

/// Production timing: poll every 5 s; unknown for 2 minutes = gone.
pub const TIMING: SweepTiming = SweepTiming {
    poll: POLL,
    settle: Duration::from_secs(120),
};

/// Resource kinds in the order a sweep deletes them.
const KINDS: [&str; 6] = [
    "spot-request",
    "instance",
    "volume",
    "key-pair",
    "security-group",
    "fis-template",
];

/// A region's sweep, possibly stopped early (Ctrl-C).
#[derive(Debug, Default)]
pub struct Swept {
    /// What was done (or, dry run, planned) and skipped, in order.
    pub actions: Vec<Action>,
    /// `Some(what was not done)` when stopped before the end.
    pub left: Option<Vec<String>>,
    /// What is left because AWS refused or did not finish in time (the
    /// region's access error, an instance not confirmed terminated, a
    /// volume still in use): logged, the sweep went on; `harness sweep`
    /// lists these and exits non-zero.
    pub failed: Vec<String>,
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
        self.select_by(
            region,
            dry_run,
            kind,
            id,
            (By::Harness, tags, None),
            opts,
            now,
        )
    }

    /// [`Swept::select`] for a resource found by `by` (created at `created`).
    #[allow(clippy::too_many_arguments)]
    fn select_by(
        &mut self,
        region: &str,
        dry_run: bool,
        kind: &'static str,
        id: &str,
        (by, tags, created): (By, &[Tag], Option<&aws_sdk_ec2::primitives::DateTime>),
        opts: &SweepOptions,
        now: SystemTime,
    ) -> Option<String> {
        match eligible_by(by, tags, created, opts, now) {
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

    /// Record that `kind` could not be listed in `region` (its Describe
    /// call failed); the sweep goes on with the next kind.
    /// Once per cause: both selectors' calls fail alike on an access error.
    fn not_listed(&mut self, region: &str, kind: &str, why: String) {
        let line = format!("{region} {kind}s: not listed: {why}");
        if self.failed.contains(&line) {
            return;
        }
        tracing::warn!("sweep: {line}");
        self.failed.push(line);
    }

    /// Record what is left of `(kind, id, run)` and why; the sweep goes on.
    fn fail(&mut self, region: &str, kind: &str, id: &str, run: &str, why: String) {
        let line = format!("{region} {kind} {id} (run {run}): {why}");
        tracing::warn!("sweep: left {line}");
        self.failed.push(line);
    }

    /// Stop here: `pending` (kind, id, run) were not done, and the kinds
    /// after `kind` were not looked at.
    fn stopped(&mut self, region: &str, kind: &str, pending: &[(&str, &str, &str)]) {
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
    }
}

/// Sweep one region; prints each action to stdout and returns them, or an
/// error listing what is left when AWS refused or did not finish.
pub async fn sweep_region(ctx: &Ec2Ctx, opts: &SweepOptions) -> anyhow::Result<Vec<Action>> {
    let swept = sweep_region_until(ctx, opts, &super::stop::Stop::new()).await?;
    if !swept.failed.is_empty() {
        anyhow::bail!(
            "sweep of {}: expected everything deleted, seen left: {}",
            ctx.region,
            swept.failed.join("; ")
        );
    }
    Ok(swept.actions)
}

/// What to do next with an instance in `state` after TerminateInstances
/// was sent: AWS may still show `pending` or `stopping` (the SDK's
/// `InstanceTerminated` waiter fails on those), so those are asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStep {
    /// Gone (`terminated`, or unknown to EC2).
    Done,
    /// `shutting-down`: wait.
    Wait,
    /// Anything else (`pending`, `running`, `stopping`, `stopped`): send
    /// TerminateInstances (again) and wait.
    Terminate,
}

pub fn instance_step(state: Option<&str>) -> InstanceStep {
    match state {
        None | Some("terminated") => InstanceStep::Done,
        Some("shutting-down") => InstanceStep::Wait,
        Some(_) => InstanceStep::Terminate,
    }
}

/// What to do with a tagged volume in `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    /// Already going away (`deleting`, `deleted`): leave it.
    Skip(&'static str),
    /// Attached: detach (force), wait for `available`, delete.
    DetachThenDelete,
    Delete,
}

pub fn volume_step(state: Option<&str>, attached: bool) -> VolumeStep {
    match state {
        Some("deleting") => VolumeStep::Skip("skip (already deleting)"),
        Some("deleted") => VolumeStep::Skip("skip (already deleted)"),
        _ if attached => VolumeStep::DetachThenDelete,
        _ => VolumeStep::Delete,
    }
}

/// Bound on waiting for a volume to detach.
pub const VOLUME_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a volume's state is polled.
pub const VOLUME_POLL: Duration = Duration::from_secs(5);

/// Poll interval while waiting for instances to terminate.
pub const POLL: Duration = Duration::from_secs(5);

/// [`sweep_region`] that honours `stop` (Ctrl-C): the deletion in flight
/// completes, nothing after it starts, and [`Swept::left`] says what was
/// not done.  An access error (the region not enabled, no permission) or
/// any other AWS failure is logged and recorded in [`Swept::failed`]; it
/// never ends the sweep of other regions.
pub async fn sweep_region_until(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    stop: &super::stop::Stop,
) -> anyhow::Result<Swept> {
    sweep_region_polling(ctx, opts, stop, POLL).await
}

/// [`sweep_region_until`] with an explicit poll interval (tests).
pub async fn sweep_region_polling(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    stop: &super::stop::Stop,
    poll: Duration,
) -> anyhow::Result<Swept> {
    let timing = SweepTiming { poll, ..TIMING };
    sweep_region_recorded(ctx, opts, &Recorded::default(), stop, &timing).await
}

/// The sweep of `opts`'s tagged resources plus the ids a run `recorded`
/// (a caller that kept the ids its create calls returned).
pub async fn sweep_region_recorded(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    recorded: &Recorded,
    stop: &super::stop::Stop,
    timing: &SweepTiming,
) -> anyhow::Result<Swept> {
    let mut out = Swept::default();
    if let Err(e) = sweep_into(ctx, opts, recorded, stop, timing, &mut out).await {
        tracing::error!(region = %ctx.region, "sweep of {} gave up: {e:#}", ctx.region);
        out.failed.push(format!("{}: not swept: {e:#}", ctx.region));
    }
    Ok(out)
}

async fn sweep_into(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    recorded: &Recorded,
    stop: &super::stop::Stop,
    timing: &SweepTiming,
    out: &mut Swept,
) -> anyhow::Result<()> {
    let c = &ctx.client;
    let region = ctx.region.as_str();
    let dry = opts.dry_run;
    let now = SystemTime::now();
    // The run id recorded resources are reported under.
    let own_run = opts.run_id.clone().unwrap_or_else(|| "recorded".into());

    // Instances (and their spot requests).  A failure to list them (the
    // region's access error, or one failed call) is recorded and the kinds
    // after them are still swept: each has its own Describe.
    let mut instances = Vec::new();
    let mut gone = BTreeSet::new();
    let mut spot_requests = BTreeSet::new();
    for (by, filters) in filter_sets(opts) {
        let mut pages = c
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    out.not_listed(
                        region,
                        "instance",
                        format!("DescribeInstances in {region}: {}", err(&e)),
                    );
                    break;
                }
            };
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let id = i.instance_id().unwrap_or_default();
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str());
                if instance_step(state) == InstanceStep::Done {
                    gone.insert(id.to_string());
                    continue;
                }
                if instances.iter().any(|(x, _): &(String, String)| x == id) {
                    continue;
                }
                let found = (by, i.tags(), i.launch_time());
                if let Some(run) = out.select_by(region, dry, "instance", id, found, opts, now) {
                    if let Some(sr) = i.spot_instance_request_id() {
                        spot_requests.insert((sr.to_string(), run.clone()));
                    }
                    instances.push((id.to_string(), run));
                }
            }
        }
    }
    // What the run recorded and the tag filter did not list (yet).
    for id in &recorded.instances {
        if !gone.contains(id) && !instances.iter().any(|(i, _)| i == id) {
            instances.push((id.clone(), own_run.clone()));
        }
    }
    for sr in &recorded.spot_requests {
        if !spot_requests.iter().any(|(s, _)| s == sr) {
            spot_requests.insert((sr.clone(), own_run.clone()));
        }
    }
    for (by, filters) in filter_sets(opts) {
        match c
            .describe_spot_instance_requests()
            .set_filters(Some(filters))
            .send()
            .await
        {
            Ok(o) => {
                for r in o.spot_instance_requests() {
                    let state = r.state().map(|s| s.as_str()).unwrap_or("");
                    if matches!(state, "cancelled" | "closed") {
                        continue;
                    }
                    let id = r.spot_instance_request_id().unwrap_or_default();
                    if spot_requests.iter().any(|(s, _)| s == id) {
                        continue;
                    }
                    if let Ok(run) = eligible_by(by, r.tags(), r.create_time(), opts, now) {
                        spot_requests.insert((id.to_string(), run));
                    }
                }
            }
            Err(e) => out.not_listed(
                region,
                "spot-request",
                format!("DescribeSpotInstanceRequests in {region}: {}", err(&e)),
            ),
        }
    }
    // Cancel persistent spot requests first, or EC2 relaunches the instances.
    let spot_requests: Vec<_> = spot_requests.into_iter().collect();
    for (n, (sr, run)) in spot_requests.iter().enumerate() {
        if stop.is_stopped() {
            let mut p = pending("spot-request", &spot_requests[n..]);
            p.extend(pending("instance", &instances));
            out.stopped(region, "instance", &refs(&p));
            return Ok(());
        }
        out.act(region, dry, "spot-request", sr, run, "cancel");
        if !dry {
            if let Err(e) = super::lifecycle::cancel_spot_request(c, sr).await {
                out.fail(region, "spot-request", sr, run, format!("{e:#}"));
            }
        }
    }
    if !instances.is_empty() {
        if stop.is_stopped() {
            let p = pending("instance", &instances);
            out.stopped(region, "instance", &refs(&p));
            return Ok(());
        }
        for (id, run) in &instances {
            out.act(region, dry, "instance", id, run, "terminate");
        }
        if !dry {
            match terminate_all(c, &instances, stop, timing).await {
                None => {
                    let p = pending("instance (terminating, not confirmed)", &instances);
                    out.stopped(region, "instance", &refs(&p));
                    return Ok(());
                }
                Some(left) => {
                    for (id, run, why) in left {
                        out.fail(region, "instance", &id, &run, why);
                    }
                }
            }
        }
    }

    // Volumes.
    let mut vols: Vec<(By, aws_sdk_ec2::types::Volume)> = Vec::new();
    for (by, filters) in filter_sets(opts) {
        match c.describe_volumes().set_filters(Some(filters)).send().await {
            Ok(v) => {
                for v in v.volumes() {
                    if !vols.iter().any(|(_, x)| x.volume_id() == v.volume_id()) {
                        vols.push((by, v.clone()));
                    }
                }
            }
            Err(e) => out.not_listed(
                region,
                "volume",
                format!("DescribeVolumes in {region}: {}", err(&e)),
            ),
        }
    }
    let mut todo = Vec::new();
    let unlisted: Vec<&String> = recorded
        .volumes
        .iter()
        .filter(|id| !vols.iter().any(|(_, v)| v.volume_id() == Some(id.as_str())))
        .collect();
    for id in unlisted {
        match recorded_volume(c, id, timing.settle).await {
            Ok(Some(v)) => {
                let attached = v
                    .attachments()
                    .iter()
                    .any(|a| a.state().map(|s| s.as_str()) != Some("detached"));
                match volume_step(v.state().map(|s| s.as_str()), attached) {
                    VolumeStep::Skip(why) => out.act(region, dry, "volume", id, &own_run, why),
                    step => todo.push((
                        id.to_string(),
                        own_run.clone(),
                        step == VolumeStep::DetachThenDelete,
                    )),
                }
            }
            Ok(None) => {}
            Err(e) => out.fail(region, "volume", id, &own_run, format!("{e:#}")),
        }
    }
    for (by, v) in &vols {
        let id = v.volume_id().unwrap_or_default();
        let found = (*by, v.tags(), v.create_time());
        if let Some(run) = out.select_by(region, dry, "volume", id, found, opts, now) {
            let attached = v
                .attachments()
                .iter()
                .any(|a| a.state().map(|s| s.as_str()) != Some("detached"));
            match volume_step(v.state().map(|s| s.as_str()), attached) {
                VolumeStep::Skip(why) => out.act(region, dry, "volume", id, &run, why),
                step => todo.push((id.to_string(), run, step == VolumeStep::DetachThenDelete)),
            }
        }
    }
    for (n, (id, run, attached)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let rest: Vec<(String, String)> = todo[n..]
                .iter()
                .map(|(i, r, _)| (i.clone(), r.clone()))
                .collect();
            let p = pending("volume", &rest);
            out.stopped(region, "volume", &refs(&p));
            return Ok(());
        }
        out.act(region, dry, "volume", id, run, "delete");
        if !dry {
            if let Err(e) = delete_volume(c, id, *attached, stop).await {
                out.fail(region, "volume", id, run, format!("{e:#}"));
            }
        }
    }

    // Key pairs.
    let keys = match c
        .describe_key_pairs()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
    {
        Ok(k) => k.key_pairs().to_vec(),
        Err(e) => {
            out.not_listed(
                region,
                "key-pair",
                format!("DescribeKeyPairs in {region}: {}", err(&e)),
            );
            Vec::new()
        }
    };
    let mut todo = Vec::new();
    for k in &keys {
        let name = k.key_name().unwrap_or_default();
        if let Some(run) = out.select(region, dry, "key-pair", name, k.tags(), opts, now) {
            todo.push((name.to_string(), run));
        }
    }
    // DeleteKeyPair of a name EC2 does not know succeeds: no look first.
    for name in &recorded.key_pairs {
        if !todo.iter().any(|(n, _)| n == name) {
            todo.push((name.clone(), own_run.clone()));
        }
    }
    for (n, (name, run)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let p = pending("key-pair", &todo[n..]);
            out.stopped(region, "key-pair", &refs(&p));
            return Ok(());
        }
        out.act(region, dry, "key-pair", name, run, "delete");
        if !dry {
            if let Err(e) = c.delete_key_pair().key_name(name).send().await {
                out.fail(
                    region,
                    "key-pair",
                    name,
                    run,
                    format!("DeleteKeyPair: {}", err(&e)),
                );
            }
        }
    }

    // Security groups (after the instances using them are gone).
    let groups = match c
        .describe_security_groups()
        .set_filters(Some(tag_filters(opts)))
        .send()
        .await
    {
        Ok(g) => g.security_groups().to_vec(),
        Err(e) => {
            out.not_listed(
                region,
                "security-group",
                format!("DescribeSecurityGroups in {region}: {}", err(&e)),
            );
            Vec::new()
        }
    };
    let mut todo = Vec::new();
    for g in &groups {
        let id = g.group_id().unwrap_or_default();
        if let Some(run) = out.select(region, dry, "security-group", id, g.tags(), opts, now) {
            todo.push((id.to_string(), run));
        }
    }
    for id in &recorded.security_groups {
        if !todo.iter().any(|(g, _)| g == id) {
            todo.push((id.clone(), own_run.clone()));
        }
    }
    for (n, (id, run)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let p = pending("security-group", &todo[n..]);
            out.stopped(region, "security-group", &refs(&p));
            return Ok(());
        }
        out.act(region, dry, "security-group", id, run, "delete");
        if !dry {
            match delete_security_group(c, id, stop).await {
                Ok(true) => {}
                Ok(false) => {
                    let p = [(
                        "security-group (in use, not deleted)",
                        id.as_str(),
                        run.as_str(),
                    )];
                    out.stopped(region, "security-group", &p);
                    return Ok(());
                }
                Err(e) => out.fail(region, "security-group", id, run, format!("{e:#}")),
            }
        }
    }
    sweep_fis_templates(ctx, opts, stop, now, out).await;
    Ok(())
}

/// Delete the run's AWS FIS experiment templates (`interrupt.rs` tags them
/// like everything else; its guard normally deletes them).  FIS cannot
/// filter on tags server-side, so every template is listed and checked
/// locally.  A template is inert and free without an experiment, so a
/// failure to list them (FIS not offered in the region, no
/// fis:ListExperimentTemplates, or a double without the call: moto 5.2.1)
/// is logged and the sweep goes on; a failed deletion is left like any
/// other resource.
async fn sweep_fis_templates(
    ctx: &Ec2Ctx,
    opts: &SweepOptions,
    stop: &super::stop::Stop,
    now: SystemTime,
    out: &mut Swept,
) {
    let region = ctx.region.as_str();
    let dry = opts.dry_run;
    let fis = &ctx.fis;
    let mut todo = Vec::new();
    let mut pages = fis.list_experiment_templates().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    "sweep: FIS experiment templates in {region} not listed ({}); \
                     templates are inert and free; delete leftovers tagged {TAG_RUN_ID} in the FIS console",
                    aws_sdk_fis::error::DisplayErrorContext(&e)
                );
                break;
            }
        };
        for t in page.experiment_templates() {
            let tags: Vec<Tag> = t
                .tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            let id = t.id().unwrap_or_default();
            if let Some(run) = out.select(region, dry, "fis-template", id, &tags, opts, now) {
                todo.push((id.to_string(), run));
            }
        }
    }
    for (n, (id, run)) in todo.iter().enumerate() {
        if stop.is_stopped() {
            let p = pending("fis-template", &todo[n..]);
            out.stopped(region, "fis-template", &refs(&p));
            return;
        }
        out.act(region, dry, "fis-template", id, run, "delete");
        if !dry {
            match fis.delete_experiment_template().id(id).send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => out.fail(
                    region,
                    "fis-template",
                    id,
                    run,
                    format!(
                        "DeleteExperimentTemplate: {}",
                        aws_sdk_fis::error::DisplayErrorContext(&e)
                    ),
                ),
            }
        }
    }
}

/// Terminate `instances` and poll until each is gone, asking again for
/// those AWS still shows `pending`/`stopping`/… (or does not show yet),
/// within [`super::lifecycle::STATE_TIMEOUT`].  Gone means `terminated`, or
/// unknown to EC2 for `timing.settle` (never one `InvalidInstanceID.NotFound`:
/// see the module doc).  `None`: stopped (Ctrl-C) while waiting; else the
/// instances left, with why.
async fn terminate_all(
    c: &aws_sdk_ec2::Client,
    instances: &[(String, String)],
    stop: &super::stop::Stop,
    timing: &SweepTiming,
) -> Option<Vec<(String, String, String)>> {
    use std::collections::BTreeMap;
    use std::time::Instant;
    let gone = |s: &Seen| match s {
        Seen::State(s) => instance_step(Some(s)) == InstanceStep::Done,
        Seen::Unknown(since) => since.elapsed() >= timing.settle,
    };
    let start = Instant::now();
    let mut states: BTreeMap<String, Seen> = instances
        .iter()
        .map(|(id, _)| (id.clone(), Seen::State("running".to_string())))
        .collect();
    loop {
        let ask: Vec<String> = states
            .iter()
            .filter(|(_, s)| match s {
                Seen::State(s) => instance_step(Some(s)) == InstanceStep::Terminate,
                Seen::Unknown(_) => !gone(s),
            })
            .map(|(i, _)| i.clone())
            .collect();
        if !ask.is_empty() {
            match c
                .terminate_instances()
                .set_instance_ids(Some(ask.clone()))
                .send()
                .await
            {
                Ok(_) => {}
                // One id unknown fails the whole call: ask one by one.
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") && ask.len() > 1 => {
                    for id in &ask {
                        let _ = c.terminate_instances().instance_ids(id).send().await;
                    }
                }
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {}
                Err(e) => tracing::warn!("TerminateInstances {ask:?}: {}; asking again", err(&e)),
            }
        }
        let ids: Vec<String> = states
            .iter()
            .filter(|(_, s)| !gone(s))
            .map(|(i, _)| i.clone())
            .collect();
        if ids.is_empty() {
            return Some(Vec::new());
        }
        // One at a time when one id is unknown (it fails the whole call).
        let batches: Vec<Vec<String>> = match c
            .describe_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
        {
            Ok(o) => {
                apply_seen(&mut states, &ids, &o);
                Vec::new()
            }
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") && ids.len() > 1 => {
                ids.iter().map(|i| vec![i.clone()]).collect()
            }
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                mark_unknown(&mut states, &ids[0]);
                Vec::new()
            }
            Err(e) => {
                tracing::warn!("DescribeInstances {ids:?}: {}; polling again", err(&e));
                Vec::new()
            }
        };
        for one in batches {
            match c
                .describe_instances()
                .set_instance_ids(Some(one.clone()))
                .send()
                .await
            {
                Ok(o) => apply_seen(&mut states, &one, &o),
                Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => {
                    mark_unknown(&mut states, &one[0])
                }
                Err(e) => tracing::warn!("DescribeInstances {one:?}: {}", err(&e)),
            }
        }
        if states.values().all(gone) {
            return Some(Vec::new());
        }
        if start.elapsed() >= super::lifecycle::STATE_TIMEOUT {
            return Some(
                instances
                    .iter()
                    .filter_map(|(id, run)| {
                        let s = states.get(id)?;
                        (!gone(s)).then(|| {
                            let seen = match s {
                                Seen::State(s) => format!("`{s}`"),
                                Seen::Unknown(since) => format!(
                                    "it unknown to EC2 for {:?} (not yet {:?}: NotFound right after create or terminate proves nothing)",
                                    since.elapsed(),
                                    timing.settle
                                ),
                            };
                            (
                                id.clone(),
                                run.clone(),
                                format!(
                                    "expected `terminated` within {:?}, seen {seen}",
                                    super::lifecycle::STATE_TIMEOUT
                                ),
                            )
                        })
                    })
                    .collect(),
            );
        }
        stop.race(tokio::time::sleep(timing.poll)).await?;
    }
}

/// What the sweep last saw of an instance it terminates.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    State(String),
    /// Unknown to EC2 since then.
    Unknown(std::time::Instant),
}

/// Record in `states` what one DescribeInstances answer shows for `ids`
/// (an id it leaves out is unknown to EC2).
fn apply_seen(
    states: &mut std::collections::BTreeMap<String, Seen>,
    ids: &[String],
    o: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput,
) {
    for id in ids {
        let seen = o
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id.as_str()))
            .and_then(|i| i.state()?.name().map(|n| n.as_str().to_string()));
        match seen {
            Some(s) => {
                states.insert(id.clone(), Seen::State(s));
            }
            None => mark_unknown(states, id),
        }
    }
}

/// Mark `id` unknown, keeping the moment it first became so.
fn mark_unknown(states: &mut std::collections::BTreeMap<String, Seen>, id: &str) {
    if !matches!(states.get(id), Some(Seen::Unknown(_))) {
        states.insert(id.to_string(), Seen::Unknown(std::time::Instant::now()));
    }
}

/// A recorded volume as EC2 shows it; `None` when it stayed unknown for
/// `settle` (a deleted volume is unknown at once; a volume created seconds
/// ago may be unknown for a while: asked again until `settle`).
async fn recorded_volume(
    c: &aws_sdk_ec2::Client,
    id: &str,
    settle: Duration,
) -> anyhow::Result<Option<aws_sdk_ec2::types::Volume>> {
    let start = std::time::Instant::now();
    loop {
        match c.describe_volumes().volume_ids(id).send().await {
            Ok(o) => return Ok(o.volumes().first().cloned()),
            Err(e) if e.code() == Some("InvalidVolume.NotFound") => {
                if start.elapsed() >= settle {
                    return Ok(None);
                }
            }
            Err(e) => anyhow::bail!("DescribeVolumes {id}: {}", err(&e)),
        }
        tokio::time::sleep((settle / 8).max(Duration::from_millis(1))).await;
    }
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
            .race(super::retry::wait_volume(
                c,
                id,
                "available",
                VOLUME_TIMEOUT,
                VOLUME_POLL,
            ))
            .await;
        if let Some(Err(e)) = waited {
            tracing::warn!("volume {id}: expected `available` after detach, seen: {e:#}");
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
            owner: None,
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
            owner: None,
        };
        assert_eq!(eligible(&[t(TAG_RUN_ID, "r")], &one, now), Err(None));
        assert_eq!(eligible(&[t(TAG_RUN_ID, "q")], &one, now), Ok("q".into()));
    }

    #[test]
    fn sweep_takes_only_its_owners_resources_unless_all_owners() {
        let t = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let now = SystemTime::now();
        let mine = [t(TAG_RUN_ID, "r1"), t(TAG_OWNER, "ci-cell-1")];
        let theirs = [t(TAG_RUN_ID, "r2"), t(TAG_OWNER, "ci-cell-2")];
        let untagged_owner = [t(TAG_RUN_ID, "r3")];
        let me = SweepOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            run_id: None,
            owner: Some("ci-cell-1".into()),
        };
        assert_eq!(eligible(&mine, &me, now), Ok("r1".into()));
        assert_eq!(eligible(&theirs, &me, now), Err(None));
        assert_eq!(eligible(&untagged_owner, &me, now), Err(None));
        let f = tag_filters(&me);
        assert!(f
            .iter()
            .any(|f| f.name() == Some("tag:harness:owner") && f.values() == ["ci-cell-1"]));
        let all = SweepOptions { owner: None, ..me };
        assert_eq!(eligible(&theirs, &all, now), Ok("r2".into()));
        assert_eq!(tag_filters(&all).len(), 1);
    }

    /// What Coder built with the template carries no `harness:*` tag: it
    /// is the owner's by `coder_owner` = the owner's Coder user; another
    /// owner's, a real user's (same template, same account) and anything
    /// without `Coder_Provisioned=true` are never candidates; a run-only
    /// sweep takes none of it; the age is EC2's create time.
    #[test]
    fn what_the_template_built_is_the_owner_s_by_its_coder_user() {
        let t = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let now = SystemTime::now();
        let me = super::super::coder_user("ci-cell-1");
        let built = |user: &str| {
            vec![
                t("Coder_Provisioned", "true"),
                t("coder_owner", user),
                t("coder_workspace", "e2e0-aws-nixos"),
                t("Name", "coder-x-e2e0-aws-nixos-home"),
            ]
        };
        let opts = SweepOptions {
            older_than: Duration::ZERO,
            dry_run: false,
            run_id: None,
            owner: Some("ci-cell-1".into()),
        };
        let label = format!("coder:{me}/e2e0-aws-nixos");
        assert_eq!(
            eligible_template(&built(&me), None, &opts, now),
            Ok(label.clone())
        );
        let other = super::super::coder_user("ci-cell-2");
        for not_mine in [built(&other), built("alice"), built("admin")] {
            assert_eq!(eligible_template(&not_mine, None, &opts, now), Err(None));
        }
        let mut unprovisioned = built(&me);
        unprovisioned[0] = t("Coder_Provisioned", "false");
        assert_eq!(
            eligible_template(&unprovisioned, None, &opts, now),
            Err(None)
        );
        // The harness's selector never takes it (no harness:run-id).
        assert_eq!(eligible(&built(&me), &opts, now), Err(None));
        // --all-owners: any harness Coder user, never a real user.
        let all = SweepOptions {
            owner: None,
            ..opts.clone()
        };
        assert!(eligible_template(&built(&other), None, &all, now).is_ok());
        assert_eq!(
            eligible_template(&built("alice"), None, &all, now),
            Err(None)
        );
        // One run only: the template wrote no run id.
        let run = SweepOptions {
            run_id: Some("h1".into()),
            ..opts.clone()
        };
        assert_eq!(eligible_template(&built(&me), None, &run, now), Err(None));
        assert_eq!(filter_sets(&run).len(), 1);
        // --older-than: by EC2's time; unknown = not old enough.
        let old = SweepOptions {
            older_than: Duration::from_secs(3600),
            ..opts.clone()
        };
        let two_h = Some(now - Duration::from_secs(7200));
        assert_eq!(
            eligible_template(&built(&me), two_h, &old, now),
            Ok(label.clone())
        );
        let young = Some(now - Duration::from_secs(60));
        assert_eq!(
            eligible_template(&built(&me), young, &old, now),
            Err(Some(label.clone()))
        );
        assert_eq!(
            eligible_template(&built(&me), None, &old, now),
            Err(Some(label))
        );
        // The server-side filters say the same.
        let f = template_filters(&opts).unwrap();
        assert!(f
            .iter()
            .any(|f| f.name() == Some("tag:Coder_Provisioned") && f.values() == ["true"]));
        assert!(f
            .iter()
            .any(|f| f.name() == Some("tag:coder_owner") && f.values() == [me.as_str()]));
        let f = template_filters(&all).unwrap();
        assert!(f
            .iter()
            .any(|f| f.name() == Some("tag:coder_owner") && f.values() == ["harness-*"]));
    }

    #[test]
    fn states_aws_produces_are_waited_for_or_skipped() {
        for s in ["pending", "running", "stopping", "stopped"] {
            assert_eq!(instance_step(Some(s)), InstanceStep::Terminate, "{s}");
        }
        assert_eq!(instance_step(Some("shutting-down")), InstanceStep::Wait);
        assert_eq!(instance_step(Some("terminated")), InstanceStep::Done);
        assert_eq!(instance_step(None), InstanceStep::Done);
        assert!(matches!(
            volume_step(Some("deleting"), false),
            VolumeStep::Skip(_)
        ));
        assert!(matches!(
            volume_step(Some("deleting"), true),
            VolumeStep::Skip(_)
        ));
        assert_eq!(
            volume_step(Some("in-use"), true),
            VolumeStep::DetachThenDelete
        );
        assert_eq!(volume_step(Some("available"), false), VolumeStep::Delete);
    }

    mod mocked {
        //! aws-smithy-mocks plays EC2 with states moto does not produce
        //! (a `pending` instance, a `deleting` volume, a region refusing access).
        use super::super::*;
        use aws_sdk_ec2::error::ErrorMetadata;
        use aws_sdk_ec2::operation::delete_volume::DeleteVolumeOutput;
        use aws_sdk_ec2::operation::describe_instances::{
            DescribeInstancesError, DescribeInstancesOutput,
        };
        use aws_sdk_ec2::operation::describe_key_pairs::DescribeKeyPairsOutput;
        use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
        use aws_sdk_ec2::operation::describe_spot_instance_requests::DescribeSpotInstanceRequestsOutput;
        use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
        use aws_sdk_ec2::operation::terminate_instances::TerminateInstancesOutput;
        use aws_sdk_ec2::types::{
            Instance, InstanceState, InstanceStateName, Reservation, Volume, VolumeState,
        };
        use aws_sdk_ec2::Client;
        use aws_smithy_mocks::{mock, Rule, RuleMode};

        fn ctx(rules: &[&Rule]) -> Ec2Ctx {
            ctx_fis(rules, &[&no_fis()])
        }

        /// FIS without ListExperimentTemplates (as moto 5.2.1 answers it).
        fn no_fis() -> Rule {
            mock!(aws_sdk_fis::Client::list_experiment_templates).then_error(|| {
                aws_sdk_fis::operation::list_experiment_templates::ListExperimentTemplatesError::generic(
                    aws_sdk_fis::error::ErrorMetadata::builder()
                        .code("NotImplemented")
                        .message("The list_experiment_templates action has not been implemented")
                        .build(),
                )
            })
        }

        /// EC2 and FIS answered by smithy mocks (an FIS call without a
        /// rule fails, as a double without the API would).
        fn ctx_fis(rules: &[&Rule], fis: &[&Rule]) -> Ec2Ctx {
            Ec2Ctx {
                sdk: aws_config::SdkConfig::builder().build(),
                client: super::super::super::mock::client_with(rules, RuleMode::MatchAny),
                fis: super::super::super::interrupt::tests::fis_client_with(fis),
                region: "us-east-1".into(),
                endpoint: None,
            }
        }

        fn opts() -> SweepOptions {
            SweepOptions {
                older_than: Duration::ZERO,
                dry_run: false,
                run_id: None,
                owner: None,
            }
        }

        fn inst(state: InstanceStateName) -> impl Fn() -> DescribeInstancesOutput {
            move || {
                DescribeInstancesOutput::builder()
                    .reservations(
                        Reservation::builder()
                            .instances(
                                Instance::builder()
                                    .instance_id("i-1")
                                    .state(InstanceState::builder().name(state.clone()).build())
                                    .tags(Tag::builder().key(TAG_RUN_ID).value("r").build())
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }
        }

        #[tokio::test]
        async fn a_pending_instance_is_polled_and_a_deleting_volume_skipped() {
            let list = mock!(Client::describe_instances)
                .match_requests(|r| r.instance_ids().is_empty())
                .then_output(inst(InstanceStateName::Pending));
            let poll = mock!(Client::describe_instances)
                .match_requests(|r| !r.instance_ids().is_empty())
                .sequence()
                .output(inst(InstanceStateName::Pending))
                .output(inst(InstanceStateName::ShuttingDown))
                .output(inst(InstanceStateName::Terminated))
                .build();
            let term = mock!(Client::terminate_instances)
                .then_output(|| TerminateInstancesOutput::builder().build());
            let spot = mock!(Client::describe_spot_instance_requests)
                .then_output(|| DescribeSpotInstanceRequestsOutput::builder().build());
            let vols = mock!(Client::describe_volumes).then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-1")
                            .state(VolumeState::Deleting)
                            .tags(Tag::builder().key(TAG_RUN_ID).value("r").build())
                            .build(),
                    )
                    .build()
            });
            let del =
                mock!(Client::delete_volume).then_output(|| DeleteVolumeOutput::builder().build());
            let keys = mock!(Client::describe_key_pairs)
                .then_output(|| DescribeKeyPairsOutput::builder().build());
            let groups = mock!(Client::describe_security_groups)
                .then_output(|| DescribeSecurityGroupsOutput::builder().build());
            let ctx = ctx(&[&list, &poll, &term, &spot, &vols, &del, &keys, &groups]);
            let swept = sweep_region_polling(
                &ctx,
                &opts(),
                &super::super::super::stop::Stop::new(),
                Duration::from_millis(1),
            )
            .await
            .unwrap();
            assert_eq!(swept.failed, Vec::<String>::new());
            assert_eq!(poll.num_calls(), 3, "polled until terminated");
            // Still `pending` after the first TerminateInstances: asked again.
            assert_eq!(term.num_calls(), 2);
            assert_eq!(
                del.num_calls(),
                0,
                "a volume already deleting is left alone"
            );
            let verbs: Vec<String> = swept
                .actions
                .iter()
                .map(|a| format!("{} {}", a.verb, a.id))
                .collect();
            assert_eq!(verbs, ["terminate i-1", "skip (already deleting) vol-1"]);
        }

        fn refused<E>(build: fn(ErrorMetadata) -> E) -> impl Fn() -> E + Send + Sync {
            move || {
                build(
                    ErrorMetadata::builder()
                        .code("UnauthorizedOperation")
                        .message("You are not authorized")
                        .build(),
                )
            }
        }

        #[tokio::test]
        async fn a_region_refusing_access_is_recorded_not_fatal() {
            use aws_sdk_ec2::operation::{
                describe_key_pairs::DescribeKeyPairsError,
                describe_security_groups::DescribeSecurityGroupsError,
                describe_spot_instance_requests::DescribeSpotInstanceRequestsError,
                describe_volumes::DescribeVolumesError,
            };
            let rules = [
                mock!(Client::describe_instances)
                    .then_error(refused(DescribeInstancesError::generic)),
                mock!(Client::describe_spot_instance_requests)
                    .then_error(refused(DescribeSpotInstanceRequestsError::generic)),
                mock!(Client::describe_volumes).then_error(refused(DescribeVolumesError::generic)),
                mock!(Client::describe_key_pairs)
                    .then_error(refused(DescribeKeyPairsError::generic)),
                mock!(Client::describe_security_groups)
                    .then_error(refused(DescribeSecurityGroupsError::generic)),
            ];
            let r: Vec<&Rule> = rules.iter().collect();
            let swept =
                sweep_region_until(&ctx(&r), &opts(), &super::super::super::stop::Stop::new())
                    .await
                    .expect("the sweep goes on with other regions");
            // Every kind was asked for, each refusal recorded.
            assert_eq!(swept.failed.len(), 5, "{:?}", swept.failed);
            for (kind, call) in [
                ("instances", "DescribeInstances"),
                ("volumes", "DescribeVolumes"),
                ("key-pairs", "DescribeKeyPairs"),
                ("security-groups", "DescribeSecurityGroups"),
            ] {
                assert!(
                    swept
                        .failed
                        .iter()
                        .any(|f| f.contains(&format!("us-east-1 {kind}: not listed"))
                            && f.contains(call)
                            && f.contains("UnauthorizedOperation")),
                    "{kind}: {:?}",
                    swept.failed
                );
            }
            let e = sweep_region(&ctx(&r), &opts())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("left") && e.contains("UnauthorizedOperation"),
                "{e}"
            );
        }

        fn empty_instances() -> Rule {
            mock!(Client::describe_instances)
                .match_requests(|r| r.instance_ids().is_empty())
                .then_output(|| DescribeInstancesOutput::builder().build())
        }

        fn no_spot_requests() -> Rule {
            mock!(Client::describe_spot_instance_requests)
                .then_output(|| DescribeSpotInstanceRequestsOutput::builder().build())
        }

        #[tokio::test]
        async fn one_failed_describe_does_not_skip_the_kinds_after_it() {
            use aws_sdk_ec2::operation::delete_key_pair::DeleteKeyPairOutput;
            use aws_sdk_ec2::operation::delete_security_group::DeleteSecurityGroupOutput;
            use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesError;
            use aws_sdk_ec2::types::{KeyPairInfo, SecurityGroup};
            let tag = || Tag::builder().key(TAG_RUN_ID).value("r").build();
            let vols = mock!(Client::describe_volumes).then_error(|| {
                DescribeVolumesError::generic(
                    ErrorMetadata::builder()
                        .code("RequestLimitExceeded")
                        .message("Request limit exceeded.")
                        .build(),
                )
            });
            let keys = mock!(Client::describe_key_pairs).then_output(move || {
                DescribeKeyPairsOutput::builder()
                    .key_pairs(
                        KeyPairInfo::builder()
                            .key_name("harness-r")
                            .tags(tag())
                            .build(),
                    )
                    .build()
            });
            let groups = mock!(Client::describe_security_groups).then_output(move || {
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(
                        SecurityGroup::builder()
                            .group_id("sg-1")
                            .tags(tag())
                            .build(),
                    )
                    .build()
            });
            let del_key = mock!(Client::delete_key_pair)
                .match_requests(|r| r.key_name() == Some("harness-r"))
                .then_output(|| DeleteKeyPairOutput::builder().build());
            let del_sg = mock!(Client::delete_security_group)
                .match_requests(|r| r.group_id() == Some("sg-1"))
                .then_output(|| DeleteSecurityGroupOutput::builder().build());
            let (i, sp) = (empty_instances(), no_spot_requests());
            let swept = sweep_region_until(
                &ctx(&[&i, &sp, &vols, &keys, &groups, &del_key, &del_sg]),
                &opts(),
                &super::super::super::stop::Stop::new(),
            )
            .await
            .unwrap();
            assert_eq!(
                del_key.num_calls(),
                1,
                "key pairs swept after the failed DescribeVolumes"
            );
            assert_eq!(del_sg.num_calls(), 1, "security groups too");
            assert_eq!(swept.failed.len(), 1, "{:?}", swept.failed);
            assert!(
                swept.failed[0].contains("volumes: not listed")
                    && swept.failed[0].contains("RequestLimitExceeded"),
                "{:?}",
                swept.failed
            );
        }

        #[tokio::test]
        async fn what_the_run_recorded_is_deleted_although_no_tag_lists_it() {
            use aws_sdk_ec2::operation::cancel_spot_instance_requests::CancelSpotInstanceRequestsOutput;
            use aws_sdk_ec2::operation::delete_key_pair::DeleteKeyPairOutput;
            use aws_sdk_ec2::operation::delete_security_group::DeleteSecurityGroupOutput;
            // Every tag filter lists nothing yet (created seconds ago).
            let (i, sp) = (empty_instances(), no_spot_requests());
            let listed_vols = mock!(Client::describe_volumes)
                .match_requests(|r| r.volume_ids().is_empty())
                .then_output(|| DescribeVolumesOutput::builder().build());
            let keys = mock!(Client::describe_key_pairs)
                .then_output(|| DescribeKeyPairsOutput::builder().build());
            let groups = mock!(Client::describe_security_groups)
                .then_output(|| DescribeSecurityGroupsOutput::builder().build());
            // By id, EC2 shows them.
            let poll = mock!(Client::describe_instances)
                .match_requests(|r| r.instance_ids() == ["i-1".to_string()])
                .sequence()
                .output(inst(InstanceStateName::ShuttingDown))
                .output(inst(InstanceStateName::Terminated))
                .build();
            let term = mock!(Client::terminate_instances)
                .match_requests(|r| r.instance_ids() == ["i-1".to_string()])
                .then_output(|| TerminateInstancesOutput::builder().build());
            let cancel = mock!(Client::cancel_spot_instance_requests)
                .match_requests(|r| r.spot_instance_request_ids() == ["sir-1".to_string()])
                .then_output(|| CancelSpotInstanceRequestsOutput::builder().build());
            let vol = mock!(Client::describe_volumes)
                .match_requests(|r| r.volume_ids() == ["vol-1".to_string()])
                .then_output(|| {
                    DescribeVolumesOutput::builder()
                        .volumes(
                            Volume::builder()
                                .volume_id("vol-1")
                                .state(VolumeState::Available)
                                .build(),
                        )
                        .build()
                });
            let del_vol = mock!(Client::delete_volume)
                .match_requests(|r| r.volume_id() == Some("vol-1"))
                .then_output(|| DeleteVolumeOutput::builder().build());
            let del_key = mock!(Client::delete_key_pair)
                .match_requests(|r| r.key_name() == Some("harness-r"))
                .then_output(|| DeleteKeyPairOutput::builder().build());
            let del_sg = mock!(Client::delete_security_group)
                .match_requests(|r| r.group_id() == Some("sg-1"))
                .then_output(|| DeleteSecurityGroupOutput::builder().build());
            let recorded = Recorded {
                spot_requests: vec!["sir-1".into()],
                instances: vec!["i-1".into()],
                volumes: vec!["vol-1".into()],
                key_pairs: vec!["harness-r".into()],
                security_groups: vec!["sg-1".into()],
            };
            let one_run = SweepOptions {
                run_id: Some("r".into()),
                ..opts()
            };
            let swept = sweep_region_recorded(
                &ctx(&[
                    &i,
                    &sp,
                    &listed_vols,
                    &keys,
                    &groups,
                    &poll,
                    &term,
                    &cancel,
                    &vol,
                    &del_vol,
                    &del_key,
                    &del_sg,
                ]),
                &one_run,
                &recorded,
                &super::super::super::stop::Stop::new(),
                &SweepTiming {
                    poll: Duration::from_millis(1),
                    settle: Duration::from_millis(10),
                },
            )
            .await
            .unwrap();
            assert_eq!(swept.failed, Vec::<String>::new());
            for (what, rule) in [
                ("spot request cancelled", &cancel),
                ("instance terminated", &term),
                ("volume deleted", &del_vol),
                ("key pair deleted", &del_key),
                ("security group deleted", &del_sg),
            ] {
                assert_eq!(rule.num_calls(), 1, "{what}");
            }
            assert_eq!(poll.num_calls(), 2, "polled until `terminated`");
            assert!(swept.actions.iter().all(|a| a.run_id == "r"));
        }

        #[tokio::test]
        async fn not_found_after_terminate_is_not_termination() {
            // EC2 may not show an instance created seconds ago: NotFound,
            // then `running` (TerminateInstances asked again), then gone.
            let list = mock!(Client::describe_instances)
                .match_requests(|r| r.instance_ids().is_empty())
                .then_output(inst(InstanceStateName::Running));
            let poll = mock!(Client::describe_instances)
                .match_requests(|r| !r.instance_ids().is_empty())
                .sequence()
                .error(|| {
                    DescribeInstancesError::generic(
                        ErrorMetadata::builder()
                            .code("InvalidInstanceID.NotFound")
                            .message("The instance ID 'i-1' does not exist")
                            .build(),
                    )
                })
                .output(inst(InstanceStateName::Running))
                .output(inst(InstanceStateName::Terminated))
                .build();
            let term = mock!(Client::terminate_instances)
                .then_output(|| TerminateInstancesOutput::builder().build());
            let sp = no_spot_requests();
            let vols = mock!(Client::describe_volumes)
                .then_output(|| DescribeVolumesOutput::builder().build());
            let keys = mock!(Client::describe_key_pairs)
                .then_output(|| DescribeKeyPairsOutput::builder().build());
            let groups = mock!(Client::describe_security_groups)
                .then_output(|| DescribeSecurityGroupsOutput::builder().build());
            let swept = sweep_region_recorded(
                &ctx(&[&list, &poll, &term, &sp, &vols, &keys, &groups]),
                &opts(),
                &Recorded::default(),
                &super::super::super::stop::Stop::new(),
                &SweepTiming {
                    poll: Duration::from_millis(1),
                    settle: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
            assert_eq!(swept.failed, Vec::<String>::new());
            assert_eq!(poll.num_calls(), 3, "NotFound did not end the wait");
            // First ask, again while unknown, again once EC2 showed it running.
            assert_eq!(term.num_calls(), 3);
        }

        #[tokio::test]
        async fn an_instance_unknown_for_the_settle_time_counts_as_gone() {
            let list = mock!(Client::describe_instances)
                .match_requests(|r| r.instance_ids().is_empty())
                .then_output(|| DescribeInstancesOutput::builder().build());
            let poll = mock!(Client::describe_instances)
                .match_requests(|r| !r.instance_ids().is_empty())
                .then_error(|| {
                    DescribeInstancesError::generic(
                        ErrorMetadata::builder()
                            .code("InvalidInstanceID.NotFound")
                            .build(),
                    )
                });
            let term = mock!(Client::terminate_instances).then_error(|| {
                aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError::generic(
                    ErrorMetadata::builder()
                        .code("InvalidInstanceID.NotFound")
                        .build(),
                )
            });
            let (sp, vols, keys, groups) = (
                no_spot_requests(),
                mock!(Client::describe_volumes)
                    .then_output(|| DescribeVolumesOutput::builder().build()),
                mock!(Client::describe_key_pairs)
                    .then_output(|| DescribeKeyPairsOutput::builder().build()),
                mock!(Client::describe_security_groups)
                    .then_output(|| DescribeSecurityGroupsOutput::builder().build()),
            );
            let recorded = Recorded {
                instances: vec!["i-1".into()],
                ..Recorded::default()
            };
            let swept = sweep_region_recorded(
                &ctx(&[&list, &poll, &term, &sp, &vols, &keys, &groups]),
                &opts(),
                &recorded,
                &super::super::super::stop::Stop::new(),
                &SweepTiming {
                    poll: Duration::from_millis(1),
                    settle: Duration::from_millis(30),
                },
            )
            .await
            .unwrap();
            assert_eq!(swept.failed, Vec::<String>::new());
            assert!(poll.num_calls() >= 2, "asked until the settle time passed");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_owners_fis_templates_are_deleted_and_a_list_failure_is_not_fatal() {
            use aws_sdk_ec2::operation::{
                describe_key_pairs::DescribeKeyPairsOutput,
                describe_security_groups::DescribeSecurityGroupsOutput,
                describe_spot_instance_requests::DescribeSpotInstanceRequestsOutput,
                describe_volumes::DescribeVolumesOutput,
            };
            use aws_sdk_fis::operation::delete_experiment_template::DeleteExperimentTemplateOutput;
            use aws_sdk_fis::operation::list_experiment_templates::ListExperimentTemplatesOutput;
            use aws_sdk_fis::types::ExperimentTemplateSummary;
            let empty = [
                mock!(Client::describe_instances)
                    .then_output(|| DescribeInstancesOutput::builder().build()),
                mock!(Client::describe_spot_instance_requests)
                    .then_output(|| DescribeSpotInstanceRequestsOutput::builder().build()),
                mock!(Client::describe_volumes)
                    .then_output(|| DescribeVolumesOutput::builder().build()),
                mock!(Client::describe_key_pairs)
                    .then_output(|| DescribeKeyPairsOutput::builder().build()),
                mock!(Client::describe_security_groups)
                    .then_output(|| DescribeSecurityGroupsOutput::builder().build()),
            ];
            let ec2: Vec<&Rule> = empty.iter().collect();
            let tpl = |id: &str, owner: Option<&str>| {
                let mut t = ExperimentTemplateSummary::builder()
                    .id(id)
                    .tags("Name", "x");
                if let Some(o) = owner {
                    t = t.tags(TAG_RUN_ID, format!("run-{id}")).tags(TAG_OWNER, o);
                }
                t.build()
            };
            let list =
                mock!(aws_sdk_fis::Client::list_experiment_templates).then_output(move || {
                    ListExperimentTemplatesOutput::builder()
                        .experiment_templates(tpl("EXTmine", Some("me")))
                        .experiment_templates(tpl("EXTother", Some("someone-else")))
                        .experiment_templates(tpl("EXTuntagged", None))
                        .build()
                });
            let delete = mock!(aws_sdk_fis::Client::delete_experiment_template)
                .match_requests(|i| i.id() == Some("EXTmine"))
                .then_output(|| DeleteExperimentTemplateOutput::builder().build());
            let mine = SweepOptions {
                owner: Some("me".into()),
                ..opts()
            };
            let done = sweep_region(&ctx_fis(&ec2, &[&list, &delete]), &mine)
                .await
                .unwrap();
            let fis: Vec<_> = done
                .iter()
                .filter(|a| a.kind == "fis-template")
                .map(|a| (a.id.as_str(), a.verb.as_str()))
                .collect();
            assert_eq!(fis, [("EXTmine", "delete")]);
            assert_eq!(delete.num_calls(), 1);
            // FIS without ListExperimentTemplates (like moto 5.2.1): logged,
            // the sweep still succeeds.
            sweep_region(&ctx_fis(&ec2, &[&no_fis()]), &mine)
                .await
                .unwrap();
        }
    }
}

//! A real spot interruption on EC2, and how the instance comes back.
//!
//! EC2 cannot be asked to interrupt a spot instance; AWS Fault Injection
//! Service can.  [`interrupt_spot`] creates an experiment template with the
//! action `aws:ec2:send-spot-instance-interruptions` (FIS actions reference,
//! "aws:ec2:send-spot-instance-interruptions": target `SpotInstances` of
//! resource type `aws:ec2:spot-instance`, parameter
//! `durationBeforeInterruption`), starts it, waits for the experiment to
//! complete and for EC2 to stop the instance (EC2 user guide,
//! "initiate-a-spot-instance-interruption": a two-minute notice, then EC2
//! interrupts the instance with the request's behavior, here `stop`; the
//! spot request then shows `instance-stopped-by-experiment`), and always
//! deletes the template.  [`start_after_fis_stop`] is the other half: "a
//! Spot Instance that was stopped by AWS FIS remains stopped until you
//! restart it" (FIS actions reference, aws:ec2:send-spot-instance-interruptions),
//! so the harness starts it (StartInstances, asked again while EC2 answers
//! `InsufficientInstanceCapacity`) and waits for `running`.
//!
//! Stopping the instance with StopInstances is NOT an interruption: it is a
//! user stop.  The harness never fakes one: where FIS cannot run
//! ([`unavailable`]: no role, a region without the action, FIS refusing
//! access) the scenario is skipped with the reason, never passed.
//!
//! Doubles: the unit tests below use aws-smithy-mocks for FIS and EC2.
//! moto (5.2.1 here) implements only CreateExperimentTemplate /
//! DeleteExperimentTemplate / tagging of FIS, not StartExperiment or
//! GetExperiment, so it cannot play an experiment (the weaker peer).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_fis::error::ProvideErrorMetadata;
use aws_sdk_fis::types::{
    CreateExperimentTemplateActionInput, CreateExperimentTemplateStopConditionInput,
    CreateExperimentTemplateTargetInput, ExperimentStatus,
};

use super::config::Ec2Ctx;

/// The IAM role FIS assumes to interrupt the instance.
pub const ENV_FIS_ROLE: &str = "HARNESS_FIS_ROLE_ARN";
/// The FIS action (FIS actions reference).
pub const ACTION_ID: &str = "aws:ec2:send-spot-instance-interruptions";
/// The target resource type of [`ACTION_ID`].
pub const TARGET_TYPE: &str = "aws:ec2:spot-instance";
/// The action's target name (FIS actions reference: "Targets: SpotInstances").
pub const TARGET_KEY: &str = "SpotInstances";
/// The notice before EC2 interrupts: two minutes, as a real interruption.
pub const DURATION_BEFORE_INTERRUPTION: &str = "PT2M";
/// EC2's state reason for a spot instance stopped by an interruption.
pub const STATE_REASON_SPOT: &str = "Server.SpotInstanceShutdown";
/// The spot request's status after a FIS interruption with behavior stop.
pub const REQUEST_STOPPED_BY_EXPERIMENT: &str = "instance-stopped-by-experiment";

/// Regions where initiating a spot interruption is not offered (EC2 user
/// guide, "initiate-a-spot-instance-interruption": "supported in all AWS
/// Regions except Asia Pacific (Jakarta), Asia Pacific (Osaka), China
/// (Beijing), China (Ningxia), and Middle East (UAE)").
pub const UNSUPPORTED_REGIONS: &[(&str, &str)] = &[
    ("ap-northeast-3", "Asia Pacific (Osaka)"),
    ("ap-southeast-3", "Asia Pacific (Jakarta)"),
    ("cn-north-1", "China (Beijing)"),
    ("cn-northwest-1", "China (Ningxia)"),
    ("me-central-1", "Middle East (UAE)"),
];

/// What the role in [`ENV_FIS_ROLE`] must be.
pub const ROLE_NEEDED: &str = "an IAM role whose trust policy lets the service principal \
     fis.amazonaws.com assume it (sts:AssumeRole) and whose policy allows ec2:DescribeInstances \
     and ec2:SendSpotInstanceInterruptions (on arn:aws:ec2:*:*:instance/*)";

/// Why a real interruption cannot run with `role` (the value of
/// [`ENV_FIS_ROLE`]) in `region`, if it cannot.  A malformed role ARN is
/// bad input, not a skip: see [`check_role_arn`].
pub fn unavailable(role: Option<&str>, region: &str) -> Option<String> {
    if let Some((_, name)) = UNSUPPORTED_REGIONS.iter().find(|(r, _)| *r == region) {
        return Some(format!(
            "a real spot interruption on EC2 needs AWS FIS action {ACTION_ID}, which AWS does not offer \
             in {region} ({name}); run the EC2 tier in another region (HARNESS_EC2_REGION)"
        ));
    }
    if role.is_none_or(|r| r.trim().is_empty()) {
        return Some(format!(
            "a real spot interruption on EC2 needs AWS FIS (action {ACTION_ID}) and the role it \
             assumes: expected {ENV_FIS_ROLE} = the ARN of {ROLE_NEEDED}, seen it unset; \
             StopInstances would not be an interruption"
        ));
    }
    None
}

/// `arn` is an IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<name>`),
/// else an error naming [`ENV_FIS_ROLE`] and the value.
pub fn check_role_arn(arn: &str) -> anyhow::Result<()> {
    let re = regex::Regex::new(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$")
        .expect("regex");
    if re.is_match(arn) {
        return Ok(());
    }
    anyhow::bail!(
        "{ENV_FIS_ROLE}: expected an IAM role ARN `arn:aws:iam::<account>:role/<name>` ({ROLE_NEEDED}), seen `{arn}`"
    )
}

/// Whether an AWS error code means the caller lacks permission.
pub fn is_access_denied(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
    )
}

/// Preflight for the EC2 spot scenario: [`unavailable`] for the role in
/// [`ENV_FIS_ROLE`] and `ctx`'s region, a malformed role ARN, then one
/// ListExperimentTemplates call: FIS answering AccessDenied is a skip with
/// that reason.  (It cannot prove CreateExperimentTemplate or iam:PassRole
/// are allowed; those fail the scenario with FIS's answer.)
pub async fn preflight(ctx: &Ec2Ctx) -> Option<String> {
    preflight_with(ctx, std::env::var(ENV_FIS_ROLE).ok().as_deref()).await
}

/// Bound on the preflight's FIS call.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// [`preflight`] with the role given instead of read from the environment.
pub async fn preflight_with(ctx: &Ec2Ctx, role: Option<&str>) -> Option<String> {
    if let Some(r) = unavailable(role, &ctx.region) {
        return Some(r);
    }
    if let Err(e) = check_role_arn(role.unwrap_or_default()) {
        return Some(format!("{e:#}"));
    }
    let fis = &ctx.fis;
    let asked = tokio::time::timeout(
        PREFLIGHT_TIMEOUT,
        fis.list_experiment_templates().max_results(1).send(),
    )
    .await;
    let Ok(answer) = asked else {
        return Some(format!(
            "AWS FIS in {}: expected an answer to ListExperimentTemplates within {PREFLIGHT_TIMEOUT:?}, seen none",
            ctx.region
        ));
    };
    match answer {
        Ok(_) => None,
        Err(e) if is_access_denied(e.code()) => Some(format!(
            "AWS FIS in {} answered {} to ListExperimentTemplates: the harness's credentials need the \
             fis:* actions and iam:PassRole of the generated policy (docs/ec2.md, \"IAM policy\")",
            ctx.region,
            e.code().unwrap_or("AccessDenied")
        )),
        Err(e) => Some(format!(
            "AWS FIS in {}: ListExperimentTemplates failed: {}",
            ctx.region,
            aws_sdk_fis::error::DisplayErrorContext(&e)
        )),
    }
}

/// Bounds and polling of [`interrupt_spot`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From StartExperiment to "experiment completed and instance stopped
    /// by EC2": the two-minute notice, the stop, FIS's bookkeeping.
    pub timeout: Duration,
    pub poll: Duration,
}

/// Production bounds: 15 minutes, polling every 10 s.
pub const TIMING: Timing = Timing {
    timeout: Duration::from_secs(900),
    poll: Duration::from_secs(10),
};

/// The spot instance to interrupt.
#[derive(Debug, Clone)]
pub struct SpotTarget<'a> {
    pub region: &'a str,
    pub instance_id: &'a str,
    pub spot_request_id: &'a str,
    /// IAM role FIS assumes ([`ENV_FIS_ROLE`]).
    pub role_arn: &'a str,
    /// The run's tags (owner, run id, ...), put on template and experiment.
    pub tags: &'a [(String, String)],
}

/// What [`interrupt_spot`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub template_id: String,
    pub experiment_id: String,
    /// The evidence that EC2 interrupted the instance.
    pub evidence: String,
}

/// `arn:aws:ec2:<region>:<account>:instance/<id>`, the ARN FIS selects.
pub fn instance_arn(region: &str, account: &str, id: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else {
        "aws"
    };
    format!("arn:{partition}:ec2:{region}:{account}:instance/{id}")
}

/// Deletes the experiment template (stopping the experiment first if it
/// may still run) when dropped, as [`super::launch::RunGuard`] does for a
/// run's resources; [`TemplateGuard::cleanup`] does it explicitly.
pub struct TemplateGuard {
    fis: aws_sdk_fis::Client,
    template_id: String,
    /// Set while an experiment runs: stopped before the template goes.
    running: Option<String>,
    armed: bool,
}

impl TemplateGuard {
    fn new(fis: &aws_sdk_fis::Client, template_id: &str) -> TemplateGuard {
        TemplateGuard {
            fis: fis.clone(),
            template_id: template_id.to_string(),
            running: None,
            armed: true,
        }
    }

    /// Stop a still running experiment (best effort), delete the template;
    /// idempotent (a template already gone counts as deleted).
    pub async fn cleanup(&mut self) -> anyhow::Result<()> {
        if !self.armed {
            return Ok(());
        }
        let fis = &self.fis;
        if let Some(exp) = self.running.take() {
            if let Err(e) = fis.stop_experiment().id(&exp).send().await {
                tracing::warn!(
                    "FIS StopExperiment {exp}: {}",
                    aws_sdk_fis::error::DisplayErrorContext(&e)
                );
            }
        }
        let id = &self.template_id;
        match fis.delete_experiment_template().id(id).send().await {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => anyhow::bail!(
                "FIS DeleteExperimentTemplate {id}: {}; delete it in the FIS console \
                 (it carries the run's harness:* tags)",
                aws_sdk_fis::error::DisplayErrorContext(&e)
            ),
        }
        tracing::info!(template = %id, "FIS experiment template deleted");
        self.armed = false;
        Ok(())
    }
}

impl Drop for TemplateGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                if let Err(e) = tokio::task::block_in_place(|| h.block_on(self.cleanup())) {
                    tracing::error!("{e:#}");
                }
            }
            _ => tracing::error!(
                "FIS experiment template {} dropped outside a multi-thread tokio runtime: \
                 cannot delete it here; delete it in the FIS console",
                self.template_id
            ),
        }
    }
}

/// What one look at the instance and its spot request found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub state: Option<String>,
    pub state_reason: Option<String>,
    pub request_status: Option<String>,
}

impl Seen {
    /// The evidence that EC2 interrupted the instance, if this shows it.
    pub fn interruption(&self) -> Option<String> {
        if self.state_reason.as_deref() == Some(STATE_REASON_SPOT) {
            return Some(format!(
                "instance `{}` with state reason {STATE_REASON_SPOT}",
                self.state.as_deref().unwrap_or("?")
            ));
        }
        if self.request_status.as_deref() == Some(REQUEST_STOPPED_BY_EXPERIMENT) {
            return Some(format!(
                "spot request status {REQUEST_STOPPED_BY_EXPERIMENT}"
            ));
        }
        None
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into());
        write!(
            f,
            "instance `{}` (state reason {}), spot request status {}",
            o(&self.state),
            o(&self.state_reason),
            o(&self.request_status)
        )
    }
}

async fn look(ec2: &aws_sdk_ec2::Client, t: &SpotTarget<'_>) -> anyhow::Result<Seen> {
    let inst = ec2
        .describe_instances()
        .instance_ids(t.instance_id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DescribeInstances {}: {}",
                t.instance_id,
                super::sweep::err(&e)
            )
        })?;
    let i = inst
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(t.instance_id));
    let req = ec2
        .describe_spot_instance_requests()
        .spot_instance_request_ids(t.spot_request_id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DescribeSpotInstanceRequests {}: {}",
                t.spot_request_id,
                super::sweep::err(&e)
            )
        })?;
    Ok(Seen {
        state: i
            .and_then(|i| i.state())
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string()),
        state_reason: i
            .and_then(|i| i.state_reason())
            .and_then(|r| r.code())
            .map(str::to_string),
        request_status: req
            .spot_instance_requests()
            .first()
            .and_then(|r| r.status())
            .and_then(|s| s.code())
            .map(str::to_string),
    })
}

/// The account owning the running spot instance `id` (its reservation's
/// owner), checked to be a spot instance.
async fn owner_account(ec2: &aws_sdk_ec2::Client, id: &str) -> anyhow::Result<String> {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("DescribeInstances {id}: {}", super::sweep::err(&e)))?;
    let Some((r, i)) = out.reservations().iter().find_map(|r| {
        r.instances()
            .iter()
            .find(|i| i.instance_id() == Some(id))
            .map(|i| (r, i))
    }) else {
        anyhow::bail!("DescribeInstances {id}: expected the instance, seen none");
    };
    let lifecycle = i.instance_lifecycle().map(|l| l.as_str().to_string());
    if lifecycle.as_deref() != Some("spot") {
        anyhow::bail!(
            "interrupt {id}: expected a spot instance (instance lifecycle `spot`), seen {lifecycle:?}"
        );
    }
    r.owner_id().map(str::to_string).ok_or_else(|| {
        anyhow::anyhow!("DescribeInstances {id}: expected the reservation's owner id, seen none")
    })
}

/// Interrupt spot instance `t` for real through AWS FIS, and see EC2 stop
/// it (see the module doc).  The template is deleted on every path (the
/// guard also on a panic or a dropped future); the stop is EC2's, never
/// StopInstances.
pub async fn interrupt_spot(
    fis: &aws_sdk_fis::Client,
    ec2: &aws_sdk_ec2::Client,
    t: &SpotTarget<'_>,
    timing: &Timing,
) -> anyhow::Result<Interrupted> {
    check_role_arn(t.role_arn)?;
    let id = t.instance_id;
    let account = owner_account(ec2, id).await?;
    let arn = instance_arn(t.region, &account, id);
    let tags: HashMap<String, String> = t.tags.iter().cloned().collect();
    let run = tags
        .get(super::TAG_RUN_ID)
        .cloned()
        .unwrap_or_else(|| "-".into());
    let created = fis
        .create_experiment_template()
        .description(format!(
            "harness: spot interruption of {id} (run {run}); deleted with the run"
        ))
        .targets(
            TARGET_KEY,
            CreateExperimentTemplateTargetInput::builder()
                .resource_type(TARGET_TYPE)
                .resource_arns(&arn)
                .selection_mode("ALL")
                .build()?,
        )
        .actions(
            "interrupt",
            CreateExperimentTemplateActionInput::builder()
                .action_id(ACTION_ID)
                .description("two-minute notice, then EC2 interrupts (behavior stop)")
                .parameters("durationBeforeInterruption", DURATION_BEFORE_INTERRUPTION)
                .targets(TARGET_KEY, TARGET_KEY)
                .build()?,
        )
        .stop_conditions(
            CreateExperimentTemplateStopConditionInput::builder()
                .source("none")
                .build()?,
        )
        .role_arn(t.role_arn)
        .set_tags(Some(tags.clone()))
        .send()
        .await;
    let template_id = match created {
        Ok(o) => o
            .experiment_template()
            .and_then(|x| x.id())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!("FIS CreateExperimentTemplate: expected a template id, seen none")
            })?,
        Err(e) => {
            let what = if is_access_denied(e.code()) {
                " (FIS refused access: the credentials need fis:CreateExperimentTemplate, fis:TagResource \
                 and iam:PassRole on the role, see the generated policy)"
            } else {
                ""
            };
            anyhow::bail!(
                "FIS CreateExperimentTemplate for {id} ({arn}){what}: {}",
                aws_sdk_fis::error::DisplayErrorContext(&e)
            )
        }
    };
    tracing::info!(instance = %id, template = %template_id, "FIS experiment template created");
    let mut guard = TemplateGuard::new(fis, &template_id);
    let result = run_experiment(fis, ec2, t, timing, &mut guard).await;
    let cleaned = guard.cleanup().await;
    let evidence = result?;
    cleaned?;
    Ok(Interrupted {
        template_id,
        experiment_id: evidence.0,
        evidence: evidence.1,
    })
}

/// Start the template's experiment; poll it to `completed` and the
/// instance until EC2 is seen interrupting it.  (experiment id, evidence).
async fn run_experiment(
    fis: &aws_sdk_fis::Client,
    ec2: &aws_sdk_ec2::Client,
    t: &SpotTarget<'_>,
    timing: &Timing,
    guard: &mut TemplateGuard,
) -> anyhow::Result<(String, String)> {
    let id = t.instance_id;
    let tpl = guard.template_id.clone();
    let started = fis
        .start_experiment()
        .experiment_template_id(&tpl)
        .set_tags(Some(t.tags.iter().cloned().collect()))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "FIS StartExperiment (template {tpl}, instance {id}): {}",
                aws_sdk_fis::error::DisplayErrorContext(&e)
            )
        })?;
    let exp = started
        .experiment()
        .and_then(|x| x.id())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow::anyhow!("FIS StartExperiment: expected an experiment id, seen none")
        })?;
    guard.running = Some(exp.clone());
    tracing::info!(instance = %id, experiment = %exp, "FIS experiment started: EC2 interrupts the instance after a {DURATION_BEFORE_INTERRUPTION} notice");
    let start = Instant::now();
    let mut status = String::from("unknown");
    let mut evidence: Option<String> = None;
    let mut seen = Seen::default();
    let mut last_line = String::new();
    loop {
        if status != "completed" {
            let out = fis.get_experiment().id(&exp).send().await.map_err(|e| {
                anyhow::anyhow!(
                    "FIS GetExperiment {exp}: {}",
                    aws_sdk_fis::error::DisplayErrorContext(&e)
                )
            })?;
            let state = out.experiment().and_then(|x| x.state());
            let st = state.and_then(|s| s.status());
            status = st.map_or("unknown".into(), |s| s.as_str().to_string());
            if matches!(
                st,
                Some(
                    ExperimentStatus::Failed
                        | ExperimentStatus::Stopped
                        | ExperimentStatus::Cancelled
                )
            ) {
                guard.running = None;
                let reason = state.and_then(|s| s.reason()).unwrap_or("no reason given");
                let code = state
                    .and_then(|s| s.error())
                    .and_then(|e| e.code())
                    .map(|c| format!(" (error code {c})"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "FIS experiment {exp} (template {tpl}) on spot instance {id}: expected `completed`, \
                     seen `{status}`: {reason}{code}; where: FIS console, region {}, experiment {exp}",
                    t.region
                );
            }
            if st == Some(&ExperimentStatus::Completed) {
                guard.running = None;
            }
        }
        if evidence.is_none() {
            seen = look(ec2, t).await?;
            if matches!(seen.state.as_deref(), Some("terminated" | "shutting-down")) {
                anyhow::bail!(
                    "spot instance {id} during FIS experiment {exp}: expected EC2 to stop it \
                     (interruption behavior stop), seen {seen}"
                );
            }
            evidence = seen.interruption();
        }
        if let (true, Some(ev)) = (status == "completed", &evidence) {
            tracing::info!(instance = %id, experiment = %exp, "interrupted by EC2: {ev}");
            return Ok((exp, ev.clone()));
        }
        let line = format!("experiment `{status}`, {seen}");
        if line != last_line {
            tracing::info!(instance = %id, experiment = %exp, "waiting for the interruption: {line}");
            last_line = line;
        }
        if start.elapsed() >= timing.timeout {
            anyhow::bail!(
                "spot interruption of {id} by FIS experiment {exp} (template {tpl}): expected the experiment \
                 `completed` and EC2 stopping the instance (state reason {STATE_REASON_SPOT} or spot request \
                 status {REQUEST_STOPPED_BY_EXPERIMENT}) within {:?}; seen experiment `{status}`, {seen}; \
                 where: FIS console, region {}, experiment {exp}",
                timing.timeout,
                t.region
            );
        }
        tokio::time::sleep(timing.poll).await;
    }
}

/// Interrupt instance `id` (found by observation: the instance Coder's
/// provisioner built with the template's `aws_instance` and
/// `instance_market_options`) for real through AWS FIS, after checking
/// that its spot request (`spot_request_id`, from DescribeInstances) is
/// the template's: persistent, interruption behavior stop.  Where FIS
/// cannot run ([`unavailable`]) it fails with that exact reason (the e2e
/// runner skips the scenario before, see its preflight).  It never stops
/// the instance itself: a user stop is not an interruption.  The FIS
/// template carries fresh `harness:*` tags of `scenario` (the owner's), so
/// the sweep finds it if the guard cannot delete it.
pub async fn interrupt_instance(
    ctx: &Ec2Ctx,
    id: &str,
    spot_request_id: Option<&str>,
    scenario: &str,
) -> anyhow::Result<Interrupted> {
    let Some(req) = spot_request_id else {
        anyhow::bail!(
            "interrupt_spot on {id}: expected a spot instance, seen an on-demand one (no spot request)"
        );
    };
    let out = ctx
        .client
        .describe_spot_instance_requests()
        .spot_instance_request_ids(req)
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
    let role = std::env::var(ENV_FIS_ROLE).ok();
    if let Some(why) = unavailable(role.as_deref(), &ctx.region) {
        anyhow::bail!(
            "interrupt_spot on {id} (spot request {req}, persistent/stop): not run: {why}"
        );
    }
    let tags = super::RunTags::new(scenario).pairs();
    let target = SpotTarget {
        region: &ctx.region,
        instance_id: id,
        spot_request_id: req,
        role_arn: role.as_deref().unwrap_or_default(),
        tags: &tags,
    };
    let done = interrupt_spot(&ctx.fis, &ctx.client, &target, &TIMING).await?;
    tracing::info!(
        instance = %id,
        experiment = %done.experiment_id,
        "spot interruption by AWS FIS seen: {}",
        done.evidence
    );
    Ok(done)
}

/// Bounds and polling of [`start_after_fis_stop`].
#[derive(Debug, Clone, Copy)]
pub struct RestartTiming {
    /// From the call to `running`: the stop finishing, capacity returning
    /// (StartInstances retried while EC2 answers
    /// [`INSUFFICIENT_CAPACITY`]), the boot to `running`.
    pub timeout: Duration,
    pub poll: Duration,
    /// Between StartInstances attempts refused for capacity.
    pub capacity_retry: Duration,
}

/// Production bounds: 30 minutes, polling every 10 s, a start refused for
/// capacity asked again every 30 s.
pub const RESTART: RestartTiming = RestartTiming {
    timeout: Duration::from_secs(1800),
    poll: Duration::from_secs(10),
    capacity_retry: Duration::from_secs(30),
};

/// EC2's answer to StartInstances when the zone has no capacity for the
/// type (EC2 API error codes); a spot instance is started in its own zone
/// only, so the harness asks again until the bound.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientInstanceCapacity";

/// StartInstances answers worth asking again: no capacity yet, or the
/// instance still `stopping` (`IncorrectInstanceState`).
fn start_retryable(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(INSUFFICIENT_CAPACITY | "IncorrectInstanceState" | "InsufficientCapacity")
    )
}

/// After a FIS interruption with behavior `stop`: wait for `stopped`, start
/// the instance (StartInstances, asked again while EC2 has no capacity in
/// its zone) and wait for `running`, within `timing.timeout`.
///
/// AWS FIS actions reference, aws:ec2:send-spot-instance-interruptions: "a
/// Spot Instance that was stopped by AWS FIS remains stopped until you
/// restart it" (also the EC2 user guide, "initiate a Spot Instance
/// interruption"). EC2's own restart of a persistent request's stopped
/// instance when capacity returns ("Only Amazon EC2 can restart an
/// interrupted stopped Spot Instance", interruption behavior) applies to
/// EC2's interruptions, not FIS's: waiting for it waited 30 minutes for
/// nothing. `terminated`/`shutting-down` is a failure (the request was
/// cancelled or the root volume detached).
pub async fn start_after_fis_stop(
    client: &aws_sdk_ec2::Client,
    id: &str,
    timing: &RestartTiming,
) -> anyhow::Result<()> {
    use aws_sdk_ec2::error::ProvideErrorMetadata as _;
    let start = Instant::now();
    let mut started = false;
    let mut last = String::from("nothing yet");
    let mut refusals = 0u32;
    loop {
        let state = match super::lifecycle::state(client, id).await {
            Ok(s) => s,
            Err(e) => {
                last = format!("{e:#}");
                None
            }
        };
        match state.as_deref() {
            Some("running") if started => {
                tracing::info!(instance = %id, "running again after the FIS stop");
                return Ok(());
            }
            Some(s @ ("terminated" | "shutting-down")) => anyhow::bail!(
                "interrupted spot instance {id}: expected it `stopped` and then started, seen `{s}` \
                 (a cancelled spot request or a detached root volume terminates it)"
            ),
            Some("stopped") if !started => {
                tracing::info!(instance = %id, "StartInstances (FIS leaves its stopped spot instance stopped)");
                match client.start_instances().instance_ids(id).send().await {
                    Ok(_) => started = true,
                    Err(e) if start_retryable(e.code()) => {
                        refusals += 1;
                        last = format!(
                            "StartInstances refused {refusals} time(s), last: {}",
                            super::sweep::err(&e)
                        );
                        tracing::info!(instance = %id, "{last}; asking again in {:?}", timing.capacity_retry);
                        if start.elapsed() + timing.capacity_retry >= timing.timeout {
                            anyhow::bail!(
                                "interrupted spot instance {id}: expected StartInstances to succeed within {:?}, \
                                 seen {last} (no spot capacity for its type in its zone: run again later, or in another region)",
                                timing.timeout
                            );
                        }
                        tokio::time::sleep(timing.capacity_retry).await;
                        continue;
                    }
                    Err(e) => anyhow::bail!(
                        "interrupted spot instance {id}: StartInstances failed: {}",
                        super::sweep::err(&e)
                    ),
                }
            }
            Some(s) => last = format!("`{s}`"),
            None => {}
        }
        if start.elapsed() >= timing.timeout {
            anyhow::bail!(
                "interrupted spot instance {id}: expected it `stopped`, started and `running` within {:?}; \
                 seen {last} (started: {started})",
                timing.timeout
            );
        }
        tokio::time::sleep(timing.poll).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Named doubles: aws-smithy-mocks plays FIS and EC2 (moto cannot run
    //! an FIS experiment, see the module doc).
    use super::*;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_spot_instance_requests::DescribeSpotInstanceRequestsOutput;
    use aws_sdk_ec2::operation::start_instances::{StartInstancesError, StartInstancesOutput};
    use aws_sdk_ec2::types::{
        Instance, InstanceLifecycleType, InstanceState, InstanceStateName, Reservation,
        SpotInstanceRequest, SpotInstanceStatus, StateReason,
    };
    use aws_sdk_ec2::Client;
    use aws_sdk_fis::error::ErrorMetadata;
    use aws_sdk_fis::operation::create_experiment_template::{
        CreateExperimentTemplateInput, CreateExperimentTemplateOutput,
    };
    use aws_sdk_fis::operation::delete_experiment_template::DeleteExperimentTemplateOutput;
    use aws_sdk_fis::operation::get_experiment::GetExperimentOutput;
    use aws_sdk_fis::operation::start_experiment::{StartExperimentError, StartExperimentOutput};
    use aws_sdk_fis::types::{Experiment, ExperimentError, ExperimentState, ExperimentTemplate};
    use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
    use std::sync::{Arc, Mutex};

    const ROLE: &str = "arn:aws:iam::123456789012:role/harness-fis";

    fn ec2_state(
        s: InstanceStateName,
        reason: Option<&'static str>,
    ) -> impl Fn() -> DescribeInstancesOutput {
        move || {
            DescribeInstancesOutput::builder()
                .reservations(
                    Reservation::builder()
                        .owner_id("123456789012")
                        .instances(
                            Instance::builder()
                                .instance_id("i-1")
                                .instance_lifecycle(InstanceLifecycleType::Spot)
                                .state(InstanceState::builder().name(s.clone()).build())
                                .set_state_reason(
                                    reason.map(|c| StateReason::builder().code(c).build()),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        }
    }

    fn state(s: InstanceStateName) -> impl Fn() -> DescribeInstancesOutput {
        ec2_state(s, None)
    }

    fn request(code: &'static str) -> impl Fn() -> DescribeSpotInstanceRequestsOutput {
        move || {
            DescribeSpotInstanceRequestsOutput::builder()
                .spot_instance_requests(
                    SpotInstanceRequest::builder()
                        .spot_instance_request_id("sir-1")
                        .status(SpotInstanceStatus::builder().code(code).build())
                        .build(),
                )
                .build()
        }
    }

    /// An FIS client answered only by `rules` (smithy mocks), no retries.
    pub(crate) fn fis_client_with(rules: &[&Rule]) -> aws_sdk_fis::Client {
        let mut i = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for r in rules {
            i = i.with_rule(r);
        }
        let conf = aws_sdk_fis::Config::builder()
            .behavior_version(aws_sdk_fis::config::BehaviorVersion::latest())
            .region(aws_sdk_fis::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_fis::config::Credentials::new(
                "a",
                "b",
                None,
                None,
                "smithy-mocks",
            ))
            .retry_config(aws_sdk_fis::config::retry::RetryConfig::disabled())
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(i)
            .build();
        aws_sdk_fis::Client::from_conf(conf)
    }

    fn experiment(s: ExperimentStatus) -> impl Fn() -> GetExperimentOutput {
        move || {
            GetExperimentOutput::builder()
                .experiment(
                    Experiment::builder()
                        .id("EXP1")
                        .state(ExperimentState::builder().status(s.clone()).build())
                        .build(),
                )
                .build()
        }
    }

    fn tags() -> Vec<(String, String)> {
        super::super::RunTags::new("unit").pairs()
    }

    fn target(tags: &[(String, String)]) -> SpotTarget<'_> {
        SpotTarget {
            region: "us-east-1",
            instance_id: "i-1",
            spot_request_id: "sir-1",
            role_arn: ROLE,
            tags,
        }
    }

    const FAST: Timing = Timing {
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(1),
    };

    /// Rules for a template that is created (capturing its input) and deleted.
    fn template_rules(seen: Arc<Mutex<Option<CreateExperimentTemplateInput>>>) -> (Rule, Rule) {
        let create = mock!(aws_sdk_fis::Client::create_experiment_template)
            .match_requests(move |i| {
                *seen.lock().unwrap() = Some(i.clone());
                true
            })
            .then_output(|| {
                CreateExperimentTemplateOutput::builder()
                    .experiment_template(ExperimentTemplate::builder().id("EXT1").build())
                    .build()
            });
        let delete = mock!(aws_sdk_fis::Client::delete_experiment_template)
            .match_requests(|i| i.id() == Some("EXT1"))
            .then_output(|| DeleteExperimentTemplateOutput::builder().build());
        (create, delete)
    }

    fn started() -> Rule {
        mock!(aws_sdk_fis::Client::start_experiment)
            .match_requests(|i| i.experiment_template_id() == Some("EXT1"))
            .then_output(|| {
                StartExperimentOutput::builder()
                    .experiment(Experiment::builder().id("EXP1").build())
                    .build()
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fis_interrupts_the_instance_by_arn_and_the_template_is_deleted() {
        let seen = Arc::new(Mutex::new(None));
        let (create, delete) = template_rules(seen.clone());
        let start = started();
        let get = mock!(aws_sdk_fis::Client::get_experiment)
            .sequence()
            .output(experiment(ExperimentStatus::Running))
            .output(experiment(ExperimentStatus::Completed))
            .repeatedly()
            .build();
        let d = mock!(aws_sdk_ec2::Client::describe_instances)
            .sequence()
            .output(state(InstanceStateName::Running)) // owner + lifecycle
            .times(2)
            .output(ec2_state(
                InstanceStateName::Stopped,
                Some(STATE_REASON_SPOT),
            ))
            .repeatedly()
            .build();
        let r = mock!(aws_sdk_ec2::Client::describe_spot_instance_requests)
            .then_output(request("fulfilled"));
        let fis = fis_client_with(&[&create, &delete, &start, &get]);
        let ec2 = super::super::mock::client_with(&[&d, &r], RuleMode::MatchAny);
        let tags = tags();
        let done = interrupt_spot(&fis, &ec2, &target(&tags), &FAST)
            .await
            .unwrap();
        assert_eq!(done.template_id, "EXT1");
        assert_eq!(done.experiment_id, "EXP1");
        assert!(done.evidence.contains(STATE_REASON_SPOT), "{done:?}");
        assert_eq!(delete.num_calls(), 1, "template deleted");

        let input = seen
            .lock()
            .unwrap()
            .clone()
            .expect("a template was created");
        let action = &input.actions().unwrap()["interrupt"];
        assert_eq!(action.action_id(), ACTION_ID);
        assert_eq!(
            action.parameters().unwrap()["durationBeforeInterruption"],
            "PT2M"
        );
        assert_eq!(action.targets().unwrap()[TARGET_KEY], TARGET_KEY);
        let tgt = &input.targets().unwrap()[TARGET_KEY];
        assert_eq!(tgt.resource_type(), TARGET_TYPE);
        assert_eq!(
            tgt.resource_arns(),
            ["arn:aws:ec2:us-east-1:123456789012:instance/i-1".to_string()]
        );
        assert_eq!(tgt.selection_mode(), "ALL");
        assert_eq!(input.stop_conditions()[0].source(), "none");
        assert_eq!(input.role_arn(), Some(ROLE));
        let t = input.tags().unwrap();
        for (k, v) in &tags {
            assert_eq!(t.get(k), Some(v), "template tag {k}");
        }
        // The description FIS accepts (max 512) and the tags AWS accepts.
        assert!(input.description().unwrap().len() <= 512);
        for (k, v) in t {
            super::super::names::check(super::super::names::Kind::TagKey, k).unwrap();
            super::super::names::check(super::super::names::Kind::TagValue, v).unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_template_is_deleted_when_start_experiment_fails() {
        let (create, delete) = template_rules(Arc::default());
        let start = mock!(aws_sdk_fis::Client::start_experiment).then_error(|| {
            StartExperimentError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("Unable to assume role")
                    .build(),
            )
        });
        let d = mock!(aws_sdk_ec2::Client::describe_instances)
            .then_output(state(InstanceStateName::Running));
        let fis = fis_client_with(&[&create, &delete, &start]);
        let ec2 = super::super::mock::client_with(&[&d], RuleMode::MatchAny);
        let tags = tags();
        let e = interrupt_spot(&fis, &ec2, &target(&tags), &FAST)
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("StartExperiment") && e.contains("Unable to assume role"),
            "{e}"
        );
        assert_eq!(delete.num_calls(), 1, "template deleted after the failure");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_experiment_is_an_error_naming_fis_reason() {
        let (create, delete) = template_rules(Arc::default());
        let start = started();
        let get = mock!(aws_sdk_fis::Client::get_experiment).then_output(|| {
            GetExperimentOutput::builder()
                .experiment(
                    Experiment::builder()
                        .id("EXP1")
                        .state(
                            ExperimentState::builder()
                                .status(ExperimentStatus::Failed)
                                .reason("Target resolution returned empty set")
                                .error(
                                    ExperimentError::builder()
                                        .code("TargetResolutionFailed")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let d = mock!(aws_sdk_ec2::Client::describe_instances)
            .then_output(state(InstanceStateName::Running));
        let fis = fis_client_with(&[&create, &delete, &start, &get]);
        let ec2 = super::super::mock::client_with(&[&d], RuleMode::MatchAny);
        let tags = tags();
        let e = interrupt_spot(&fis, &ec2, &target(&tags), &FAST)
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("seen `failed`")
                && e.contains("Target resolution returned empty set")
                && e.contains("TargetResolutionFailed"),
            "{e}"
        );
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_completed_experiment_without_the_stop_is_no_pass() {
        // FIS says completed, but EC2 never showed the interruption: the
        // bound ends it with what was expected and seen; template deleted.
        let (create, delete) = template_rules(Arc::default());
        let start = started();
        let get = mock!(aws_sdk_fis::Client::get_experiment)
            .then_output(experiment(ExperimentStatus::Completed));
        let d = mock!(aws_sdk_ec2::Client::describe_instances)
            .then_output(state(InstanceStateName::Running));
        let r = mock!(aws_sdk_ec2::Client::describe_spot_instance_requests)
            .then_output(request("fulfilled"));
        let fis = fis_client_with(&[&create, &delete, &start, &get]);
        let ec2 = super::super::mock::client_with(&[&d, &r], RuleMode::MatchAny);
        let tags = tags();
        let quick = Timing {
            timeout: Duration::ZERO,
            poll: Duration::from_millis(1),
        };
        let e = interrupt_spot(&fis, &ec2, &target(&tags), &quick)
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("expected the experiment `completed` and EC2 stopping the instance")
                && e.contains("seen experiment `completed`, instance `running`")
                && e.contains("spot request status fulfilled"),
            "{e}"
        );
        assert_eq!(delete.num_calls(), 1);
    }

    #[test]
    fn the_request_status_alone_is_evidence_and_nothing_else_is() {
        let mut s = Seen {
            state: Some("stopped".into()),
            state_reason: Some("Client.UserInitiatedShutdown".into()),
            request_status: Some("fulfilled".into()),
        };
        assert_eq!(s.interruption(), None, "a user stop is not an interruption");
        s.request_status = Some(REQUEST_STOPPED_BY_EXPERIMENT.into());
        assert!(s
            .interruption()
            .unwrap()
            .contains(REQUEST_STOPPED_BY_EXPERIMENT));
    }

    #[test]
    fn skip_reasons_are_precise() {
        let none = unavailable(None, "us-east-1").unwrap();
        for needle in [
            ENV_FIS_ROLE,
            "fis.amazonaws.com",
            "ec2:SendSpotInstanceInterruptions",
            "ec2:DescribeInstances",
        ] {
            assert!(none.contains(needle), "{needle}: {none}");
        }
        assert!(unavailable(Some(" "), "us-east-1").is_some());
        for (region, name) in [
            ("ap-southeast-3", "Jakarta"),
            ("ap-northeast-3", "Osaka"),
            ("me-central-1", "UAE"),
            ("cn-north-1", "Beijing"),
            ("cn-northwest-1", "Ningxia"),
        ] {
            let r = unavailable(Some(ROLE), region).unwrap();
            assert!(r.contains(region) && r.contains(name), "{r}");
        }
        assert_eq!(unavailable(Some(ROLE), "eu-west-1"), None);
        check_role_arn(ROLE).unwrap();
        let e = check_role_arn("harness-fis").unwrap_err().to_string();
        assert!(
            e.contains(ENV_FIS_ROLE) && e.contains("`harness-fis`"),
            "{e}"
        );
        assert!(is_access_denied(Some("AccessDeniedException")));
        assert!(!is_access_denied(Some("ValidationException")));
        assert_eq!(
            instance_arn("eu-west-1", "123456789012", "i-1"),
            "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"
        );
    }

    #[tokio::test]
    async fn preflight_skips_on_access_denied_and_bad_input_and_passes_otherwise() {
        use aws_sdk_fis::operation::list_experiment_templates::{
            ListExperimentTemplatesError, ListExperimentTemplatesOutput,
        };
        let ctx = |rules: &[&Rule]| Ec2Ctx {
            sdk: aws_config::SdkConfig::builder().build(),
            client: super::super::mock::client_with(&[], RuleMode::MatchAny),
            fis: fis_client_with(rules),
            region: "us-east-1".into(),
            endpoint: None,
        };
        let denied = mock!(aws_sdk_fis::Client::list_experiment_templates).then_error(|| {
            ListExperimentTemplatesError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: fis:ListExperimentTemplates")
                    .build(),
            )
        });
        let r = preflight_with(&ctx(&[&denied]), Some(ROLE)).await.unwrap();
        assert!(
            r.contains("AccessDeniedException") && r.contains("iam:PassRole"),
            "{r}"
        );
        let ok = mock!(aws_sdk_fis::Client::list_experiment_templates)
            .then_output(|| ListExperimentTemplatesOutput::builder().build());
        assert_eq!(preflight_with(&ctx(&[&ok]), Some(ROLE)).await, None);
        let r = preflight_with(&ctx(&[&ok]), None).await.unwrap();
        assert!(r.contains(ENV_FIS_ROLE), "{r}");
        let r = preflight_with(&ctx(&[&ok]), Some("harness-fis"))
            .await
            .unwrap();
        assert!(r.contains("`harness-fis`"), "{r}");
        assert_eq!(ok.num_calls(), 1, "no FIS call before the inputs are valid");
    }

    const QUICK: RestartTiming = RestartTiming {
        timeout: Duration::from_secs(60),
        poll: Duration::from_millis(1),
        capacity_retry: Duration::from_millis(1),
    };

    fn start_error(code: &'static str) -> impl Fn() -> StartInstancesError + Send + Sync {
        move || {
            StartInstancesError::generic(
                aws_sdk_ec2::error::ErrorMetadata::builder()
                    .code(code)
                    .message("We currently do not have sufficient capacity")
                    .build(),
            )
        }
    }

    #[tokio::test]
    async fn starts_the_instance_fis_stopped_and_waits_for_running() {
        // Inverted from "never starts the instance": FIS leaves it stopped.
        let d = mock!(Client::describe_instances)
            .sequence()
            .output(state(InstanceStateName::Stopping))
            .output(state(InstanceStateName::Stopped))
            .output(state(InstanceStateName::Pending))
            .output(state(InstanceStateName::Running))
            .build();
        let s = mock!(Client::start_instances)
            .match_requests(|i| i.instance_ids() == ["i-1".to_string()])
            .then_output(|| StartInstancesOutput::builder().build());
        let c = super::super::mock::client_with(&[&d, &s], RuleMode::MatchAny);
        start_after_fis_stop(&c, "i-1", &QUICK).await.unwrap();
        assert_eq!(s.num_calls(), 1, "StartInstances once, after `stopped`");
        assert_eq!(d.num_calls(), 4);
    }

    #[tokio::test]
    async fn a_start_refused_for_capacity_is_asked_again() {
        let d = mock!(Client::describe_instances)
            .sequence()
            .output(state(InstanceStateName::Stopped))
            .times(3)
            .output(state(InstanceStateName::Running))
            .build();
        let s = mock!(Client::start_instances)
            .sequence()
            .error(start_error(INSUFFICIENT_CAPACITY))
            .times(2)
            .output(|| StartInstancesOutput::builder().build())
            .build();
        let c = super::super::mock::client_with(&[&d, &s], RuleMode::MatchAny);
        start_after_fis_stop(&c, "i-1", &QUICK).await.unwrap();
        assert_eq!(s.num_calls(), 3);
    }

    #[tokio::test]
    async fn no_capacity_within_the_bound_and_other_errors_fail_with_the_reason() {
        let d = mock!(Client::describe_instances).then_output(state(InstanceStateName::Stopped));
        let s = mock!(Client::start_instances).then_error(start_error(INSUFFICIENT_CAPACITY));
        let c = super::super::mock::client_with(&[&d, &s], RuleMode::MatchAny);
        let short = RestartTiming {
            timeout: Duration::from_millis(50),
            poll: Duration::from_millis(1),
            capacity_retry: Duration::from_millis(10),
        };
        let e = format!(
            "{:#}",
            start_after_fis_stop(&c, "i-1", &short).await.unwrap_err()
        );
        assert!(
            e.contains("i-1") && e.contains(INSUFFICIENT_CAPACITY) && e.contains("StartInstances"),
            "{e}"
        );
        let s = mock!(Client::start_instances).then_error(start_error("UnauthorizedOperation"));
        let c = super::super::mock::client_with(&[&d, &s], RuleMode::MatchAny);
        let e = format!(
            "{:#}",
            start_after_fis_stop(&c, "i-1", &QUICK).await.unwrap_err()
        );
        assert!(e.contains("UnauthorizedOperation"), "{e}");
        assert_eq!(s.num_calls(), 1, "not asked again");
        let d = mock!(Client::describe_instances).then_output(state(InstanceStateName::Terminated));
        let c = super::super::mock::client_with(&[&d], RuleMode::MatchAny);
        let e = format!(
            "{:#}",
            start_after_fis_stop(&c, "i-1", &QUICK).await.unwrap_err()
        );
        assert!(e.contains("`terminated`"), "{e}");
    }
}

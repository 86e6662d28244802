//! Steps of `features/twin.feature` (`@twin`): a workspace's whole life on
//! the AWS twin, through [`crate::workspace::twin`] (real Terraform, the
//! real `hashicorp/aws` and `coder/coder` providers, the whole template)
//! against [`crate::doubles::moto`], observed through
//! [`crate::machine::ec2::observe`] (the EC2 tier's observation path too).
//!
//! Every scenario starts its own moto double on its own port; it dies with
//! the scenario's World (and on Ctrl-C / timeout with the run's cleanup).
//! Step texts say where moto is the weaker peer.

use std::sync::OnceLock;
use std::time::Duration;

use cucumber::{given, then, when};

use crate::doubles::moto::{self, MotoDouble};
use crate::machine::ec2::config::{Ec2Ctx, LoadOptions};
use crate::machine::ec2::observe::{self, Expect, WorkspaceView, TRANSITION_TAG};
use crate::template::variant::Variant;
use crate::workspace::twin::{self as twin_ws, BuildRecord, Prepare, TwinWorkspace};

use super::world::{bounded_for, root, secs_from_env, variant, E2e};

/// One build (`HARNESS_TWIN_BUILD_TIMEOUT`, default 10 min: the provider's
/// own waiters poll every 10 s).
fn build_timeout() -> Duration {
    secs_from_env("HARNESS_TWIN_BUILD_TIMEOUT", 10 * 60)
}

/// A twin scenario's state.
pub struct TwinState {
    pub variant: Variant,
    pub moto: MotoDouble,
    pub ctx: Ec2Ctx,
    pub ws: TwinWorkspace,
    /// The home volume id of the first build, which must never change.
    pub home_volume: Option<String>,
    /// The failure of a life that was expected to fail (mutations).
    pub failure: Option<String>,
    pub mutation: Option<twin_ws::mutate::Mutation>,
    /// The templates root: the repository, or a mutated copy (kept here).
    pub templates_root: std::path::PathBuf,
    pub _mutated: Option<tempfile::TempDir>,
    pub deleted: bool,
}

impl std::fmt::Debug for TwinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinState")
            .field("variant", &self.variant.name)
            .field("moto", &self.moto)
            .field("home_volume", &self.home_volume)
            .finish()
    }
}

/// Why `@twin` scenarios cannot run here, if they cannot: no moto, no
/// terraform, or a provider neither in a mirror nor from the registry.
/// Checked once per run.
pub fn skip_reason() -> Option<String> {
    static R: OnceLock<Option<String>> = OnceLock::new();
    R.get_or_init(|| {
        if let Some(r) = moto::skip_reason() {
            return Some(format!("the twin's AWS double cannot run: {r}"));
        }
        if let Err(e) = crate::tools::find("terraform") {
            return Some(format!(
                "the twin applies the template with real Terraform: {e}"
            ));
        }
        // Providers: from a mirror, else a one-time `terraform init` says
        // whether the registry has them (the exact reason if not).
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let v = super::world::all_variants().first()?.clone();
                let logs = tempfile::tempdir().ok()?;
                match TwinWorkspace::prepare(&root(), &v, "http://127.0.0.1:9", logs.path()).await {
                    Ok(_) => None,
                    Err(Prepare::Skip(why)) => Some(format!(
                        "the twin needs hashicorp/aws and coder/coder: {why}"
                    )),
                    Err(Prepare::Failed(why)) => Some(format!(
                        "terraform init of the real template failed here: {why}"
                    )),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Some("the twin's provider probe panicked".into()))
    })
    .clone()
}

fn st(w: &mut E2e) -> &mut TwinState {
    w.twin
        .as_mut()
        .expect("a `Given a twin workspace …` step first")
}

async fn given_twin(w: &mut E2e, name: &str, mutation: Option<twin_ws::mutate::Mutation>) {
    let v = variant(name);
    let artifacts = w.artifacts.clone();
    let state = bounded_for(
        "prepare the twin (moto double, terraform init)",
        Duration::from_secs(300),
        async {
            let (templates_root, mutated) = match mutation {
                Some(m) => {
                    let d = tempfile::tempdir()?;
                    twin_ws::mutate::mutated_copy(&root(), d.path(), m)?;
                    (d.path().to_path_buf(), Some(d))
                }
                None => (root(), None),
            };
            let release = crate::template::ami::release(&templates_root)?;
            let moto =
                MotoDouble::start(&artifacts, moto::nixos_images(&release), &[twin_ws::ROLE])
                    .await?;
            let ctx = Ec2Ctx::load_with(LoadOptions {
                region: Some("us-east-1".into()),
                endpoint: Some(moto.url()),
                static_credentials: Some((moto::ACCESS_KEY.into(), moto::SECRET_KEY.into())),
                ..Default::default()
            })
            .await?;
            let ws =
                match TwinWorkspace::prepare(&templates_root, &v, &moto.url(), &artifacts).await {
                    Ok(ws) => ws,
                    Err(Prepare::Skip(why)) | Err(Prepare::Failed(why)) => anyhow::bail!("{why}"),
                };
            let ctx = if ws.region != ctx.region {
                ctx.for_region(&ws.region)
            } else {
                ctx
            };
            println!(
                "twin {}: moto double at {}; {}",
                v.name,
                moto.url(),
                ws.providers()
            );
            Ok(TwinState {
                variant: v.clone(),
                moto,
                ctx,
                ws,
                home_volume: None,
                failure: None,
                mutation,
                templates_root: templates_root.clone(),
                _mutated: mutated,
                deleted: false,
            })
        },
    )
    .await;
    w.variant = Some(state.variant.clone());
    w.twin = Some(state);
}

#[given(expr = "a twin workspace from template {string}")]
async fn twin_workspace(w: &mut E2e, name: String) {
    given_twin(w, &name, None).await;
}

#[given(
    expr = "a twin workspace from template {string} owned by the ec2 tier's Coder user of harness owner {string}"
)]
async fn twin_workspace_of_owner(w: &mut E2e, name: String, owner: String) {
    given_twin(w, &name, None).await;
    st(w).ws.owned_by(&crate::machine::ec2::coder_user(&owner));
}

#[given(expr = "a twin workspace from a copy of template {string} mutated with {string}")]
async fn twin_workspace_mutated(w: &mut E2e, name: String, m: String) {
    let m = twin_ws::mutate::Mutation::from_slug(&m).expect("mutation");
    given_twin(w, &name, Some(m)).await;
}

async fn view(s: &TwinState) -> anyhow::Result<WorkspaceView> {
    observe::observe(&s.ctx.client, &s.ws.owner_tags()).await
}

fn problems(what: &str, p: Vec<String>, s: &TwinState) -> anyhow::Result<()> {
    if p.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{what}:\n  - {}\n(terraform logs and the double's call log: {})",
        p.join("\n  - "),
        s.ws.artifacts.display()
    )
}

// ----------------------------------------------------------------- the life
//
// Each step of the life is a function on the state, so the mutation
// scenarios can run the same life and record where it fails.

async fn create(s: &mut TwinState) -> anyhow::Result<()> {
    s.ws.build("create", "start")
        .await
        .map_err(anyhow::Error::msg)?;
    let v = view(s).await?;
    s.home_volume = Some(v.home_volume().map_err(anyhow::Error::msg)?.id.clone());
    Ok(())
}

async fn expect_created(s: &TwinState) -> anyhow::Result<Expect> {
    let auth = s.ws.agent_auth();
    let flake = s.ws.params.get("flake_uri").cloned().unwrap_or_default();
    let user = s.ws.params.get("agent_user").cloned().unwrap_or_default();
    let url = format!("{}/", twin_ws::ACCESS_URL);
    let token = if auth == "token" {
        anyhow::bail!("agent_auth = token: the twin compares user-data for the EC2 auth (aws-instance-identity) only")
    } else {
        String::new()
    };
    let r = crate::workspace::contract::render::render_with(
        s.ws_root(),
        &s.variant,
        &flake,
        &user,
        &url,
        crate::workspace::contract::AgentAuth::parse(&auth)?,
        &token,
    )
    .await?;
    Ok(Expect {
        owner_tags: s.ws.owner_tags(),
        spot: s.variant.is_spot,
        image_id: moto::newest_official(&s.moto.images, s.variant.arch).map(|a| a.id.clone()),
        instance_type: s.ws.params.get("instance_type").cloned(),
        user_data: Some(r.user_data.into_bytes()),
    })
}

impl TwinState {
    /// The templates root of this scenario (a mutated copy or the repository).
    fn ws_root(&self) -> &std::path::Path {
        &self.templates_root
    }
}

async fn check_created(s: &TwinState) -> anyhow::Result<()> {
    let want = expect_created(s).await?;
    let v = view(s).await?;
    problems(
        "the created workspace on the twin",
        v.check_created(&want),
        s,
    )
}

async fn stop(s: &mut TwinState) -> anyhow::Result<()> {
    let rec =
        s.ws.build("stop", "stop")
            .await
            .map_err(anyhow::Error::msg)?;
    converged(s, &rec)?;
    let v = view(s).await?;
    let mut p = v.check_stopped(s.home_volume.as_deref().unwrap_or("?"));
    p.extend(v.check_disks(&tags_only(s)));
    problems("after the stop build", p, s)
}

/// What every build must keep: the owner tags on everything, each volume
/// its own Name.
fn tags_only(s: &TwinState) -> Expect {
    Expect {
        owner_tags: s.ws.owner_tags(),
        spot: s.variant.is_spot,
        ..Default::default()
    }
}

async fn start(s: &mut TwinState) -> anyhow::Result<()> {
    let rec =
        s.ws.build("start", "start")
            .await
            .map_err(anyhow::Error::msg)?;
    converged(s, &rec)?;
    let v = view(s).await?;
    let mut p = v.check_started(s.home_volume.as_deref().unwrap_or("?"));
    p.extend(v.check_disks(&tags_only(s)));
    problems("after the start build", p, s)
}

/// A stop or start build changes only the instance (its transition tag)
/// and its state; anything else it touches did not converge on the build
/// before (e.g. two resources fighting over the same tags).
fn converged(s: &TwinState, rec: &BuildRecord) -> anyhow::Result<()> {
    let allowed = ["aws_instance", "aws_ec2_instance_state", "coder_", "data."];
    let odd: Vec<String> = rec
        .changes
        .iter()
        .filter(|c| c.action != "noop" && c.action != "read")
        .filter(|c| {
            let last = c
                .address
                .rsplit("module.instance.")
                .next()
                .unwrap_or(&c.address);
            !allowed
                .iter()
                .any(|a| last.starts_with(a) || c.address.starts_with(a))
        })
        .map(|c| c.to_string())
        .collect();
    problems(
        &format!(
            "the {} build changed more than the instance's state and transition tag (the template does not converge: the build before left these to change)",
            rec.what
        ),
        odd,
        s,
    )
}

async fn change_each_parameter(s: &mut TwinState) -> anyhow::Result<Vec<String>> {
    let root = s.ws_root().to_path_buf();
    let mut done = vec![];
    let mut params = twin_ws::mutable_parameters(&root)?;
    // What can replace the instance first: the riskiest changes run first.
    let rank = |n: &str| {
        [
            "instance_type",
            "spot_price",
            "home_disk_size",
            "root_disk_size",
            "iam_role_name",
        ]
        .iter()
        .position(|x| *x == n)
        .unwrap_or(9)
    };
    params.sort_by_key(|p| rank(&p.name));
    for p in params {
        if p.spot_only && !s.variant.is_spot {
            continue;
        }
        let current = s.ws.params.get(&p.name).cloned().unwrap_or_default();
        let c = twin_ws::change_for(&root, &s.variant, &p, &current)?;
        s.ws.params.insert(c.name.clone(), c.value.clone());
        let what = format!("change {}", c.name);
        let rec = s.ws.build(&what, "start").await.map_err(|e| {
            anyhow::anyhow!(
                "changing {} from {current:?} to {:?} ({}): {e}",
                c.name,
                c.value,
                c.meaning
            )
        })?;
        let odd: Vec<String> = twin_ws::unexpected_replacements(&rec, &c.may_replace)
            .iter()
            .map(|c| c.to_string())
            .collect();
        problems(
            &format!(
                "changing {} from {current:?} to {:?} replaced more than it means ({})",
                c.name, c.value, c.meaning
            ),
            odd,
            s,
        )?;
        let v = view(s).await?;
        let mut p = v.check_started(s.home_volume.as_deref().unwrap_or("?"));
        let mut want = expect_created(s).await?;
        want.user_data = None; // user-data is set at launch; see ignore_changes
        p.extend(v.check_disks(&want));
        if let Ok(i) = v.instance() {
            match c.name.as_str() {
                "instance_type" if i.instance_type != c.value => p.push(format!(
                    "expected instance type {}, seen {}",
                    c.value, i.instance_type
                )),
                "home_disk_size" => {
                    if let Ok(h) = v.home_volume() {
                        if h.size_gib.to_string() != c.value {
                            p.push(format!(
                                "expected home volume {} of {} GiB, seen {}",
                                h.id, c.value, h.size_gib
                            ));
                        }
                    }
                }
                "root_disk_size" => {
                    let r = i
                        .devices
                        .get(&i.root_device)
                        .and_then(|id| v.volumes.iter().find(|x| &x.id == id));
                    if let Some(r) = r {
                        if r.size_gib.to_string() != c.value {
                            p.push(format!(
                                "expected root volume {} of {} GiB, seen {}",
                                r.id, c.value, r.size_gib
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        problems(&format!("after changing {} to {:?}", c.name, c.value), p, s)?;
        let replaced: Vec<String> = rec.replaced().iter().map(|c| c.to_string()).collect();
        done.push(format!(
            "{} -> {:?} in {:.0} s: {}",
            c.name,
            c.value,
            rec.seconds,
            if replaced.is_empty() {
                "nothing replaced".to_string()
            } else {
                format!("replaced {}", replaced.join(", "))
            }
        ));
    }
    Ok(done)
}

async fn delete(s: &mut TwinState) -> anyhow::Result<()> {
    s.ws.destroy().await.map_err(anyhow::Error::msg)?;
    s.deleted = true;
    let v = view(s).await?;
    problems("after delete, with the workspace's tags", v.check_gone(), s)
}

fn bound() -> Duration {
    build_timeout()
}

// ---------------------------------------------------------------- steps

#[when(
    expr = "the workspace is created \\(moto fulfils spot requests at once: no capacity, no quotas\\)"
)]
async fn created(w: &mut E2e) {
    let s = st(w);
    bounded_for("create build (start)", bound(), create(s)).await;
}

#[then("the instance runs the newest official NixOS image of the release, with IMDSv2 required and its tags in IMDS")]
async fn runs_image(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe the instance", bound(), async {
        let want = expect_created(s).await?;
        let v = view(s).await?;
        let i = v.instance().map_err(anyhow::Error::msg)?;
        let mut p = vec![];
        if Some(&i.image_id) != want.image_id.as_ref() {
            p.push(format!(
                "expected image {:?}, seen {}",
                want.image_id, i.image_id
            ));
        }
        if i.http_tokens != "required" {
            p.push(format!(
                "expected HttpTokens=required (IMDSv2), seen {:?}",
                i.http_tokens
            ));
        }
        if i.metadata_tags != "enabled" {
            p.push(format!(
                "expected InstanceMetadataTags=enabled, seen {:?}",
                i.metadata_tags
            ));
        }
        if i.state != "running" {
            p.push(format!("expected running, seen {}", i.state));
        }
        problems(&format!("instance {}", i.id), p, s)
    })
    .await;
}

#[then("its user-data is byte-identical to what the contract tier boots for the same parameters")]
async fn user_data_identical(w: &mut E2e) {
    let s = st(w);
    bounded_for("compare the user-data", bound(), async {
        let want = expect_created(s).await?;
        let v = view(s).await?;
        let i = v.instance().map_err(anyhow::Error::msg)?;
        let seen = i.user_data.clone().unwrap_or_default();
        let want = want.user_data.unwrap_or_default();
        if let Some(at) = observe::first_difference(&want, &seen) {
            let ctx = |b: &[u8]| String::from_utf8_lossy(&b[at.saturating_sub(40).min(b.len())..(at + 40).min(b.len())]).to_string();
            anyhow::bail!(
                "instance {}: expected the user-data the contract tier renders for these parameters ({} bytes), seen {} bytes, first difference at byte {at}:\n  expected …{}…\n  seen     …{}…",
                i.id,
                want.len(),
                seen.len(),
                ctx(&want),
                ctx(&seen)
            );
        }
        anyhow::ensure!(seen.len() <= 16384, "user-data is {} bytes; EC2 allows 16384", seen.len());
        Ok(())
    })
    .await;
}

#[then(expr = "the home volume is in the instance's zone, attached as \\/dev\\/xvdb and encrypted")]
async fn home_volume(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe the volumes", bound(), async {
        let want = expect_created(s).await?;
        let v = view(s).await?;
        problems("the workspace's disks", v.check_disks(&want), s)
    })
    .await;
}

#[then("the instance, both volumes and the spot request carry the owner's tags")]
async fn tags(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe the tags", bound(), check_created(s)).await;
}

#[when("the workspace is stopped")]
async fn stopped(w: &mut E2e) {
    let s = st(w);
    bounded_for("stop build", bound(), async {
        let rec =
            s.ws.build("stop", "stop")
                .await
                .map_err(anyhow::Error::msg)?;
        converged(s, &rec)
    })
    .await;
}

#[then("the instance is stopped and the home volume is kept")]
async fn is_stopped(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe the stopped workspace", bound(), async {
        let v = view(s).await?;
        let mut p = v.check_stopped(s.home_volume.as_deref().unwrap_or("?"));
        p.extend(v.check_disks(&tags_only(s)));
        problems("after the stop build", p, s)
    })
    .await;
}

#[when("the workspace is started")]
async fn started(w: &mut E2e) {
    let s = st(w);
    bounded_for("start build", bound(), start(s)).await;
}

/// On the twin, or on the ec2 tier after a Coder build (the same
/// observation of the instance Coder built, by the template's tags).
#[then("the instance runs again with the same home volume")]
async fn runs_again(w: &mut E2e) {
    if w.twin.is_none() {
        return real_runs_again(w).await;
    }
    let s = st(w);
    bounded_for("observe the started workspace", bound(), async {
        let v = view(s).await?;
        let mut p = v.check_started(s.home_volume.as_deref().unwrap_or("?"));
        p.extend(v.check_disks(&tags_only(s)));
        problems("after the start build", p, s)
    })
    .await;
}

async fn real_runs_again(w: &mut E2e) {
    let Some(crate::workspace::real::Machine::CoderEc2(m)) =
        w.workspace.as_ref().map(|ws| &ws.machine)
    else {
        panic!("`the instance runs again with the same home volume`: expected a twin workspace or one Coder built on the ec2 tier");
    };
    let (tags, home) = (m.tags.clone(), m.home_volume.clone());
    bounded_for("observe the started workspace (ec2)", bound(), async {
        let ctx = crate::machine::backend::shared_ctx().await?;
        let v = observe::observe(&ctx.client, &tags).await?;
        let p = v.check_started(&home);
        anyhow::ensure!(
            p.is_empty(),
            "after the start build, by the template's tags:\n  - {}",
            p.join("\n  - ")
        );
        Ok(())
    })
    .await;
}

#[when("each mutable parameter is changed in turn, one start build each")]
async fn change_params(w: &mut E2e) {
    let s = st(w);
    let done = bounded_for(
        "change every mutable parameter",
        bound() * 6,
        change_each_parameter(s),
    )
    .await;
    for d in done {
        println!("twin {}: {d}", s.variant.name);
    }
}

#[then("the home volume never changed and nothing but what each parameter means was replaced")]
async fn params_ok(w: &mut E2e) {
    // Each change is checked as it is made (see the step before); this
    // step states the promise and checks the end state once more.
    let s = st(w);
    bounded_for("observe after the parameter changes", bound(), async {
        let v = view(s).await?;
        problems(
            "after every parameter change",
            v.check_started(s.home_volume.as_deref().unwrap_or("?")),
            s,
        )
    })
    .await;
}

#[when("the workspace is deleted")]
async fn deleted(w: &mut E2e) {
    let s = st(w);
    bounded_for("delete build (destroy)", bound(), async {
        s.ws.destroy().await.map_err(anyhow::Error::msg)?;
        s.deleted = true;
        Ok(())
    })
    .await;
}

#[then("nothing with the workspace's tags is left and any spot request is cancelled")]
async fn nothing_left(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe after delete", bound(), async {
        let v = view(s).await?;
        problems("after delete, with the workspace's tags", v.check_gone(), s)?;
        // The ec2 tier hands its credentials to Coder's provisioner: every
        // EC2 action the template's builds sent must be in its IAM policy
        // (CreateRole: the double's own set-up of the iam_role_name role).
        let actions = s.moto.actions();
        let gaps = crate::machine::ec2::iam::not_allowed(
            &s.templates_root,
            actions.iter().map(String::as_str).filter(|a| *a != "CreateRole"),
        )?;
        problems(
            "the ec2 tier's IAM policies (harness::machine::ec2::iam, template::iam) lack actions the twin's builds and observation sent",
            gaps,
            s,
        )
    })
    .await;
}

/// `harness sweep --owner <owner> --older-than 0s` against the double: the
/// same code as the command (one region), with a short poll.
async fn sweep_as(s: &TwinState, owner: &str) -> anyhow::Result<Vec<String>> {
    use crate::machine::ec2::sweep::{self, SweepOptions};
    let opts = SweepOptions {
        older_than: Duration::ZERO,
        dry_run: false,
        run_id: None,
        owner: Some(owner.to_string()),
    };
    let stop = crate::machine::ec2::stop::Stop::new();
    let swept =
        sweep::sweep_region_polling(&s.ctx, &opts, &stop, Duration::from_millis(200)).await?;
    anyhow::ensure!(
        swept.failed.is_empty() && swept.left.is_none(),
        "harness sweep --owner {owner}: expected everything done, seen left: {:?} {:?}",
        swept.failed,
        swept.left
    );
    Ok(swept
        .actions
        .iter()
        .filter(|a| !a.verb.starts_with("skip"))
        .map(|a| a.to_string())
        .collect())
}

#[when(
    expr = "the run is killed and `harness sweep --owner {word}` runs, which must touch nothing"
)]
async fn swept_by_other(w: &mut E2e, owner: String) {
    let s = st(w);
    bounded_for("sweep of another owner", bound(), async {
        let done = sweep_as(s, &owner).await?;
        anyhow::ensure!(
            done.is_empty(),
            "harness sweep --owner {owner}: expected another owner's workspace left alone, seen:\n  {}",
            done.join("\n  ")
        );
        let v = view(s).await?;
        problems("after another owner's sweep", v.check_started(s.home_volume.as_deref().unwrap_or("?")), s)
    })
    .await;
}

#[when(expr = "`harness sweep --owner {word}` runs against the double")]
async fn swept_by_owner(w: &mut E2e, owner: String) {
    let s = st(w);
    bounded_for("sweep of the workspace's owner", bound(), async {
        let done = sweep_as(s, &owner).await?;
        println!("sweep --owner {owner}:\n  {}", done.join("\n  "));
        anyhow::ensure!(
            !done.is_empty(),
            "harness sweep --owner {owner}: expected the workspace's resources found by the template's tags, seen none"
        );
        s.deleted = true;
        Ok(())
    })
    .await;
}

#[when("EC2 interrupts the spot instance for lack of capacity (simulated by the double: moto has no capacity)")]
async fn interrupt(w: &mut E2e) {
    let s = st(w);
    bounded_for("interrupt the spot instance (double)", bound(), async {
        let v = view(s).await?;
        let id = v.instance().map_err(anyhow::Error::msg)?.id.clone();
        s.moto.interrupt_spot(&s.ws.region, &id).await
    })
    .await;
}

#[when("EC2 restarts the spot instance once capacity returns (simulated by the double)")]
async fn restart(w: &mut E2e) {
    let s = st(w);
    bounded_for("restart the spot instance (double)", bound(), async {
        let v = view(s).await?;
        let id = v.instance().map_err(anyhow::Error::msg)?.id.clone();
        s.moto.restart_spot(&s.ws.region, &id).await
    })
    .await;
}

#[then(
    expr = "the instance tells its guest to power off at boot \\(coder_transition=stop in its IMDS tags\\)"
)]
async fn tells_guest(w: &mut E2e) {
    let s = st(w);
    bounded_for("observe the restarted instance", bound(), async {
        let v = view(s).await?;
        let i = v.instance().map_err(anyhow::Error::msg)?;
        let mut p = vec![];
        if i.tags.get(TRANSITION_TAG).map(String::as_str) != Some("stop") {
            p.push(format!(
                "instance {}: expected tag {TRANSITION_TAG}=stop, which the user-data reads at boot and then powers off (templates/modules/bootstrap), seen {:?}",
                i.id,
                i.tags.get(TRANSITION_TAG)
            ));
        }
        if i.metadata_tags != "enabled" {
            p.push(format!(
                "instance {}: expected instance tags in IMDS (InstanceMetadataTags=enabled) so the guest can read {TRANSITION_TAG}, seen {:?}",
                i.id, i.metadata_tags
            ));
        }
        problems("the restarted spot instance", p, s)
    })
    .await;
}

// ------------------------------------------------------------- mutations

/// The whole life, stopping at the first failure: (step, message).
async fn life(s: &mut TwinState) -> Result<(), (String, String)> {
    let t = |step: &str, r: anyhow::Result<()>| r.map_err(|e| (step.to_string(), format!("{e:#}")));
    t("create", create(s).await)?;
    t("check the created workspace", check_created(s).await)?;
    t("stop", stop(s).await)?;
    t("start", start(s).await)?;
    t(
        "change each mutable parameter",
        change_each_parameter(s).await.map(|_| ()),
    )?;
    t("delete", delete(s).await)?;
    Ok(())
}

#[when("its whole life runs, expecting a failure")]
async fn life_expecting_failure(w: &mut E2e) {
    let s = st(w);
    let r = tokio::time::timeout(bound() * 10, life(s)).await;
    s.failure = Some(match r {
        Ok(Ok(())) => panic!(
            "expected the mutated template ({}) to fail the twin; its whole life passed (logs: {})",
            s.mutation.map(|m| m.slug()).unwrap_or("?"),
            s.ws.artifacts.display()
        ),
        Ok(Err((step, msg))) => format!("at {step}: {msg}"),
        Err(_) => format!("no result within {:?}", bound() * 10),
    });
}

#[then(expr = "the twin's failure names {string}")]
async fn failure_names(w: &mut E2e, cause: String) {
    let s = st(w);
    let f = s.failure.clone().expect("a failed life first");
    println!(
        "twin {} mutation {}: {}",
        s.variant.name,
        s.mutation.map(|m| m.slug()).unwrap_or("?"),
        f.lines().next().unwrap_or("")
    );
    assert!(
        f.contains(&cause),
        "expected the failure to name the cause {cause:?}; it says:\n{f}"
    );
}

/// The builds of a scenario, for the report: one line each.
pub fn build_lines(s: &TwinState) -> Vec<String> {
    s.ws.builds
        .iter()
        .map(|b| {
            format!(
                "{} ({}): {:.0} s, {} change(s)",
                b.what,
                b.transition,
                b.seconds,
                b.changes.iter().filter(|c| c.action != "noop").count()
            )
        })
        .collect()
}

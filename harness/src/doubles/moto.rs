//! DOUBLE OF AWS for the twin tier: `moto` (PyPI, the EC2/IAM/STS API peer)
//! served by `moto-ec2.py`, which adds the few EC2 behaviours moto lacks
//! (the Spot Instance request of a spot `RunInstances`, its states on stop,
//! start, terminate and cancel, EC2's own interruption and restart), each
//! from the AWS documentation the script cites.
//!
//! One double per caller, on its own free 127.0.0.1 port (the script binds
//! port 0 and reports it), in its own process group with
//! `PR_SET_PDEATHSIG`, registered with the Ctrl-C / timeout cleanup of
//! [`crate::machine::qemu::process`] and killed on drop: no `moto` outlives
//! the harness on any exit path.
//!
//! What a pass against this double does NOT show (real AWS only): capacity
//! and quotas (every request is fulfilled at once), the exact error texts of
//! EC2, IAM propagation delays, `IncorrectSpotRequestState` on a quick
//! stop→start (terraform-provider-aws#33399), what EC2 does after a
//! guest-initiated shutdown of a persistent Spot Instance, and encryption by
//! a real KMS key.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::machine::qemu::process;
use crate::template::variant::Arch;

/// The script (a double), written next to the call log at start.
pub const SCRIPT: &str = include_str!("moto-ec2.py");
/// Dummy credentials every client of the double uses.
pub const ACCESS_KEY: &str = "harness-moto";
pub const SECRET_KEY: &str = "harness-moto";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// One image `MOTO_AMIS_PATH` serves in every region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ami {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// EC2's architecture name (`x86_64`, `arm64`).
    pub arch: String,
    pub created: String,
}

/// The NixOS images of `release` a twin run serves, per architecture: an
/// older and the newest official image, and a newer impostor under the same
/// name from another account.  [`newest_official`] is the one the
/// template's lookup must choose.
pub fn nixos_images(release: &str) -> Vec<Ami> {
    let mut v = vec![];
    for (n, arch, system) in [
        ("a", "x86_64", "x86_64-linux"),
        ("b", "arm64", "aarch64-linux"),
    ] {
        for (i, owner, date) in [
            (
                1,
                crate::template::ami::NIXOS_OWNER,
                "2026-06-01T10:00:00.000Z",
            ),
            (
                2,
                crate::template::ami::NIXOS_OWNER,
                "2026-09-01T10:00:00.000Z",
            ),
            (3, ACCOUNT, "2026-11-01T10:00:00.000Z"),
        ] {
            v.push(Ami {
                id: format!("ami-0{n}{:015}", i),
                name: format!("nixos/{release}.80{i}216.bbbbbbbbbbbb-{system}"),
                owner: owner.to_string(),
                arch: arch.to_string(),
                created: date.to_string(),
            });
        }
    }
    v
}

/// The image the template's lookup must choose for `arch` among
/// [`nixos_images`].
pub fn newest_official(images: &[Ami], arch: Arch) -> Option<&Ami> {
    let want = crate::template::ami::ec2_arch(arch);
    images
        .iter()
        .filter(|a| a.arch == want && a.owner == crate::template::ami::NIXOS_OWNER)
        .max_by(|a, b| a.created.cmp(&b.created))
}

fn amis_json(images: &[Ami]) -> String {
    let list: Vec<_> = images
        .iter()
        .map(|a| {
            serde_json::json!({
                "ami_id": a.id,
                "name": a.name,
                "description": "NixOS-like image (moto double)",
                "owner_id": a.owner,
                "public": true,
                "virtualization_type": "hvm",
                "architecture": a.arch,
                "state": "available",
                "root_device_type": "ebs",
                "root_device_name": "/dev/xvda",
                "hypervisor": "xen",
                "creation_date": a.created,
            })
        })
        .collect();
    serde_json::to_string(&list).expect("serialisable")
}

/// A Python that can import moto and werkzeug: the interpreter of the
/// `moto_server` script (its `#!` line, e.g. a venv's python), else
/// `python3`; `HARNESS_MOTO_PYTHON` overrides both.  The error is the skip
/// reason.
pub fn python() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = vec![];
    if let Some(p) = std::env::var_os("HARNESS_MOTO_PYTHON") {
        return first_with_moto(&[p.into()]);
    }
    if let Ok(server) = crate::tools::find("moto_server") {
        if let Ok(text) = std::fs::read_to_string(&server) {
            if let Some(interp) = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("#!"))
                .map(str::trim)
                .filter(|l| l.contains("python") && !l.contains(' '))
            {
                candidates.push(interp.into());
            }
        }
    }
    if let Ok(p) = crate::tools::find("python3") {
        candidates.push(p);
    }
    first_with_moto(&candidates)
}

/// The first of `candidates` that imports moto, werkzeug and boto3; the
/// error names every one tried and how to install moto.
pub fn first_with_moto(candidates: &[PathBuf]) -> Result<PathBuf, String> {
    let mut tried = vec![];
    for c in candidates {
        let ok = std::process::Command::new(c)
            .args(["-c", "import moto.server, werkzeug, boto3"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(c.clone());
        }
        tried.push(c.display().to_string());
    }
    Err(format!(
        "no Python with moto (the AWS double) here: tried {}; install it with `/opt/harness-venv/bin/pip install 'moto[server]>=5'` (ci/setup-debian.sh does; HARNESS_MOTO_PYTHON names another Python)",
        if tried.is_empty() {
            "nothing (no moto_server, no python3 on PATH)".to_string()
        } else {
            tried.join(", ")
        }
    ))
}

/// Why the moto double cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    python().err()
}

/// A running moto double.  Dropping it kills it (and its children).
pub struct MotoDouble {
    child: Option<tokio::process::Child>,
    id: String,
    pgid: Option<u32>,
    dir: PathBuf,
    port: u16,
    /// Every API call (and every double-only action), one JSON line each.
    pub call_log: PathBuf,
    /// The images it serves.
    pub images: Vec<Ami>,
}

impl std::fmt::Debug for MotoDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoDouble")
            .field("url", &self.url())
            .field("call_log", &self.call_log)
            .finish()
    }
}

impl MotoDouble {
    /// Start a double serving `images`, with IAM roles `roles` already
    /// created; its logs go to `log_dir` (`moto.log`, `moto-calls.jsonl`).
    pub async fn start(log_dir: &Path, images: Vec<Ami>, roles: &[&str]) -> anyhow::Result<Self> {
        let python = python().map_err(|e| anyhow::anyhow!(e))?;
        std::fs::create_dir_all(log_dir)?;
        let id = format!("moto-{}", rand::random::<u32>());
        let dir = process::make_temp_dir(&id)?;
        let script = dir.join("moto-ec2.py");
        std::fs::write(&script, SCRIPT)?;
        let amis = dir.join("amis.json");
        std::fs::write(&amis, amis_json(&images))?;
        let call_log = log_dir.join("moto-calls.jsonl");
        let _ = std::fs::remove_file(&call_log);
        let stderr = std::fs::File::create(log_dir.join("moto.log"))?;
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script)
            .arg(&call_log)
            .args(roles)
            .env("MOTO_AMIS_PATH", &amis)
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr);
        let mut child = match process::spawn_guarded(cmd) {
            Ok(c) => c,
            Err(e) => {
                process::unregister(&id);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.context(format!(
                    "starting {} {}",
                    python.display(),
                    script.display()
                )));
            }
        };
        let pgid = child.id();
        process::register_pgid(&id, pgid);
        let mut me = MotoDouble {
            child: None,
            id,
            pgid,
            dir,
            port: 0,
            call_log,
            images,
        };
        let stdout = child.stdout.take().expect("piped");
        me.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let limit = Duration::from_secs(90);
        let started = Instant::now();
        let port = loop {
            let line =
                tokio::time::timeout(limit.saturating_sub(started.elapsed()), lines.next_line())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "the moto double did not report ready within {limit:?} (log: {})",
                            log_dir.join("moto.log").display()
                        )
                    })??;
            match line {
                Some(l) => {
                    if let Some(p) = l.strip_prefix("harness-moto-ready ") {
                        break p.trim().parse::<u16>().context("the double's port")?;
                    }
                }
                None => anyhow::bail!(
                    "the moto double exited before it was ready (log: {}):\n{}",
                    log_dir.join("moto.log").display(),
                    std::fs::read_to_string(log_dir.join("moto.log")).unwrap_or_default()
                ),
            }
        };
        me.port = port;
        // Keep draining stdout so a chatty moto never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(me)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: the endpoint for EC2, IAM and STS.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What only EC2 does: a capacity interruption of a `stop`-behaviour
    /// Spot Instance (stopped, request `disabled` /
    /// `instance-stopped-no-capacity`).
    pub async fn interrupt_spot(&self, region: &str, instance: &str) -> anyhow::Result<()> {
        self.control("interrupt", region, instance).await
    }

    /// What only EC2 does: restart an interrupted Spot Instance when
    /// capacity returns (running, request `active` / `fulfilled`).
    pub async fn restart_spot(&self, region: &str, instance: &str) -> anyhow::Result<()> {
        self.control("restart", region, instance).await
    }

    async fn control(&self, what: &str, region: &str, instance: &str) -> anyhow::Result<()> {
        let url = format!(
            "{}/_harness/spot/{what}?instance={instance}&region={region}",
            self.url()
        );
        let r = reqwest::Client::new().post(&url).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "the moto double refused {what} of {instance}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// The API actions the double answered, in order (`RunInstances`,
    /// `CancelSpotInstanceRequests`, …), from its call log.
    pub fn actions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["action"].as_str().map(str::to_string))
            .collect()
    }

    /// Stop it now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            process::kill_group(pgid);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
        }
        process::unregister(&self.id);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for MotoDouble {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_newest_official_image_is_neither_the_older_nor_the_impostor() {
        let imgs = nixos_images("26.05");
        assert_eq!(imgs.len(), 6);
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let n = newest_official(&imgs, arch).unwrap();
            assert_eq!(n.owner, crate::template::ami::NIXOS_OWNER);
            assert!(n.name.starts_with("nixos/26.05."), "{}", n.name);
            // A newer image under the same name exists, from another account.
            assert!(imgs
                .iter()
                .any(|a| a.arch == n.arch && a.created > n.created && a.owner != n.owner));
        }
        assert_ne!(
            newest_official(&imgs, Arch::X86_64).unwrap().id,
            newest_official(&imgs, Arch::Aarch64).unwrap().id
        );
        assert!(
            imgs.iter().all(|a| a.id.len() == "ami-".len() + 17),
            "{imgs:?}"
        );
    }

    /// The double's spot extensions, through aws-sdk-ec2 and the one
    /// observation path: a spot RunInstances gets its request, which follows
    /// stop, start, EC2's interruption and restart, and cancel; a stopped
    /// Spot Instance's type cannot change; the process dies on drop.
    /// Missing moto is a failure here (ci/setup-debian.sh installs it).
    #[tokio::test]
    async fn spot_requests_follow_the_instance_and_the_double_dies_on_drop() {
        use aws_sdk_ec2::types::{
            InstanceMarketOptionsRequest, InstanceType, MarketType, ResourceType, SpotInstanceType,
            SpotMarketOptions, Tag, TagSpecification,
        };
        let logs = tempfile::tempdir().unwrap();
        let moto = MotoDouble::start(logs.path(), nixos_images("26.05"), &["twin-role"])
            .await
            .expect(
                "the moto double starts (ci/setup-debian.sh installs moto in /opt/harness-venv)",
            );
        let ctx = crate::machine::ec2::config::Ec2Ctx::load_with(
            crate::machine::ec2::config::LoadOptions {
                region: Some("us-east-1".into()),
                endpoint: Some(moto.url()),
                static_credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let c = &ctx.client;
        let ami = newest_official(&moto.images, Arch::X86_64)
            .unwrap()
            .id
            .clone();
        let run = c
            .run_instances()
            .image_id(&ami)
            .instance_type(InstanceType::T3Medium)
            .min_count(1)
            .max_count(1)
            .instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::Persistent)
                            .instance_interruption_behavior(
                                aws_sdk_ec2::types::InstanceInterruptionBehavior::Stop,
                            )
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("coder_owner").value("alice").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let id = run.instances()[0].instance_id().unwrap().to_string();
        let tags: BTreeMap<String, String> =
            [("coder_owner".to_string(), "alice".to_string())].into();
        let state = |v: &crate::machine::ec2::observe::WorkspaceView| {
            let r = v.spot_request().unwrap();
            (r.state.clone(), r.status_code.clone())
        };
        let obs = || crate::machine::ec2::observe::observe(c, &tags);
        let v = obs().await.unwrap();
        let r = v.spot_request().unwrap();
        assert_eq!(
            (r.request_type.as_str(), r.interruption_behavior.as_str()),
            ("persistent", "stop")
        );
        assert_eq!(state(&v), ("active".into(), "fulfilled".into()));
        c.stop_instances().instance_ids(&id).send().await.unwrap();
        assert_eq!(
            state(&obs().await.unwrap()),
            ("disabled".into(), "instance-stopped-by-user".into())
        );
        let e = c
            .modify_instance_attribute()
            .instance_id(&id)
            .instance_type(
                aws_sdk_ec2::types::AttributeValue::builder()
                    .value("t3.large")
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        let e = aws_sdk_ec2::error::DisplayErrorContext(e).to_string();
        assert!(
            e.contains("UnsupportedOperation") && e.contains("not the instance type"),
            "{e}"
        );
        c.start_instances().instance_ids(&id).send().await.unwrap();
        assert_eq!(
            state(&obs().await.unwrap()),
            ("active".into(), "fulfilled".into())
        );
        moto.interrupt_spot("us-east-1", &id).await.unwrap();
        let v = obs().await.unwrap();
        assert_eq!(v.instance().unwrap().state, "stopped");
        assert_eq!(
            state(&v),
            ("disabled".into(), "instance-stopped-no-capacity".into())
        );
        moto.restart_spot("us-east-1", &id).await.unwrap();
        let v = obs().await.unwrap();
        assert_eq!(v.instance().unwrap().state, "running");
        let sir = v.spot_request().unwrap().id.clone();
        c.cancel_spot_instance_requests()
            .spot_instance_request_ids(&sir)
            .send()
            .await
            .unwrap();
        c.terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        let v = obs().await.unwrap();
        assert!(v.check_gone().is_empty(), "{:?}", v.check_gone());
        assert_eq!(v.spot_requests[0].state, "cancelled");
        assert!(moto
            .actions()
            .contains(&"CancelSpotInstanceRequests".to_string()));
        let pgid = moto.pgid.expect("a process group");
        drop(moto);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: signal 0 only checks existence.
        assert_ne!(
            unsafe { libc::kill(-(pgid as i32), 0) },
            0,
            "the double's process group outlived it"
        );
    }
}

//! The EC2 backend against **moto** (`moto_server`, a real EC2 API peer but
//! not AWS), started by each test on a free 127.0.0.1 port with dummy
//! credentials; no traffic leaves 127.0.0.1.  Missing `moto_server` is a
//! failure (run ci/setup-debian.sh), never a silent pass.
//!
//! moto does not echo `InstanceMarketOptions` details (only
//! `InstanceLifecycle=spot`), so persistent / stop / max price are asserted
//! on the launch plan that was sent.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, ResourceType};
use harness::machine::ec2::config::{Ec2Ctx, LoadOptions};
use harness::machine::ec2::{RunTags, TAG_RUN_ID};

/// A `moto_server` child on 127.0.0.1; killed on drop.
struct Moto {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_bin() -> PathBuf {
    for p in [
        "/usr/local/bin/moto_server",
        "/root/.pyenv/shims/moto_server",
    ] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!("moto_server not found (expected /usr/local/bin/moto_server or on PATH): run ci/setup-debian.sh")
    })
}

fn root() -> PathBuf {
    harness::repo::root().expect("repository root")
}

/// What moto serves as NixOS images (MOTO_AMIS_PATH: every region gets
/// them): per arch an older and the newest official image of the
/// template's release (`25.05` below stands for `nixos_release`'s default,
/// substituted by [`amis_json`]), a newer
/// image of another release and a newer impostor from another account
/// under the same name.  Only the newest official one may be chosen.
const IMAGES: &[(&str, &str, &str, &str, &str)] = &[
    // (id, name, owner, arch, creation date)
    (
        "ami-0a000000000000001",
        "nixos/25.05.800000.aaaaaaaaaaaa-x86_64-linux",
        harness::template::ami::NIXOS_OWNER,
        "x86_64",
        "2025-06-01T10:00:00.000Z",
    ),
    (
        "ami-0a000000000000002",
        "nixos/25.05.802216.bbbbbbbbbbbb-x86_64-linux",
        harness::template::ami::NIXOS_OWNER,
        "x86_64",
        "2025-09-01T10:00:00.000Z",
    ),
    (
        "ami-0a000000000000003",
        "nixos/24.11.999999.cccccccccccc-x86_64-linux",
        harness::template::ami::NIXOS_OWNER,
        "x86_64",
        "2025-10-01T10:00:00.000Z",
    ),
    (
        "ami-0a000000000000004",
        "nixos/25.05.900000.dddddddddddd-x86_64-linux",
        "123456789012",
        "x86_64",
        "2025-11-01T10:00:00.000Z",
    ),
    (
        "ami-0b000000000000001",
        "nixos/25.05.800000.aaaaaaaaaaaa-aarch64-linux",
        harness::template::ami::NIXOS_OWNER,
        "arm64",
        "2025-06-01T10:00:00.000Z",
    ),
    (
        "ami-0b000000000000002",
        "nixos/25.05.802216.bbbbbbbbbbbb-aarch64-linux",
        harness::template::ami::NIXOS_OWNER,
        "arm64",
        "2025-09-01T10:00:00.000Z",
    ),
    (
        "ami-0b000000000000003",
        "nixos/24.11.999999.cccccccccccc-aarch64-linux",
        harness::template::ami::NIXOS_OWNER,
        "arm64",
        "2025-10-01T10:00:00.000Z",
    ),
    (
        "ami-0b000000000000004",
        "nixos/25.05.900000.dddddddddddd-aarch64-linux",
        "123456789012",
        "arm64",
        "2025-11-01T10:00:00.000Z",
    ),
];

/// [`IMAGES`] as a MOTO_AMIS_PATH file, with the NixOS AMIs' root device name.
fn amis_json(dir: &std::path::Path) -> PathBuf {
    let release = harness::template::ami::release(&root()).unwrap();
    let list: Vec<_> = IMAGES
        .iter()
        .map(|(id, name, owner, arch, date)| {
            serde_json::json!({
                "ami_id": id,
                "name": name.replace("nixos/25.05.", &format!("nixos/{release}.")),
                "description": "NixOS-like image (moto)",
                "owner_id": owner,
                "public": true,
                "virtualization_type": "hvm",
                "architecture": arch,
                "state": "available",
                "root_device_type": "ebs",
                "root_device_name": "/dev/xvda",
                "hypervisor": "xen",
                "creation_date": date,
            })
        })
        .collect();
    let f = dir.join("amis.json");
    std::fs::write(&f, serde_json::to_string(&list).unwrap()).unwrap();
    f
}

fn start_moto() -> Moto {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
    let child = Command::new(moto_bin())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_AMIS_PATH", amis_json(dir.path()))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning moto_server (run ci/setup-debian.sh)");
    let url = format!("http://127.0.0.1:{port}");
    let moto = Moto {
        child,
        url,
        _dir: dir,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "moto_server: expected it to listen on 127.0.0.1:{port} within 60s, seen nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    moto
}

async fn ctx(moto: &Moto, region: &str) -> Ec2Ctx {
    Ec2Ctx::load_with(LoadOptions {
        region: Some(region.into()),
        endpoint: Some(moto.url.clone()),
        static_credentials: Some(("testing".into(), "testing".into())),
        ..LoadOptions::default()
    })
    .await
    .unwrap()
}

/// Env for a `harness` child talking to `moto` only.
fn harness_cmd(moto: &Moto, region: &str, cred_dir: &std::path::Path) -> Command {
    moto_env(
        Command::new(env!("CARGO_BIN_EXE_harness")),
        moto,
        region,
        cred_dir,
    )
}

/// `c` with an environment that reaches `moto` only (dummy credentials, no
/// profile files, no IMDS).
fn moto_env(mut c: Command, moto: &Moto, region: &str, cred_dir: &std::path::Path) -> Command {
    let empty = cred_dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    for v in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "HARNESS_EC2_SSH_CIDR",
    ] {
        c.env_remove(v);
    }
    c.env("HARNESS_REPO", root())
        .env("HARNESS_EC2_ENDPOINT", &moto.url)
        .env("HARNESS_EC2_REGION", region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

fn tag_key_filter() -> Filter {
    Filter::builder().name("tag-key").values(TAG_RUN_ID).build()
}

/// Every harness-tagged resource still alive in `ctx`'s region, as lines.
async fn tagged_leftovers(ctx: &Ec2Ctx) -> Vec<String> {
    let c = &ctx.client;
    let mut left = Vec::new();
    let i = c
        .describe_instances()
        .filters(tag_key_filter())
        .send()
        .await
        .unwrap();
    for inst in i.reservations().iter().flat_map(|r| r.instances()) {
        let state = inst.state().and_then(|s| s.name()).unwrap().as_str();
        if state != "terminated" {
            left.push(format!("instance {} {state}", inst.instance_id().unwrap()));
        }
    }
    let v = c
        .describe_volumes()
        .filters(tag_key_filter())
        .send()
        .await
        .unwrap();
    left.extend(
        v.volumes()
            .iter()
            .map(|v| format!("volume {}", v.volume_id().unwrap())),
    );
    let k = c
        .describe_key_pairs()
        .filters(tag_key_filter())
        .send()
        .await
        .unwrap();
    left.extend(
        k.key_pairs()
            .iter()
            .map(|k| format!("key {}", k.key_name().unwrap())),
    );
    let g = c
        .describe_security_groups()
        .filters(tag_key_filter())
        .send()
        .await
        .unwrap();
    left.extend(
        g.security_groups()
            .iter()
            .map(|g| format!("group {}", g.group_id().unwrap())),
    );
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_all_regions_respects_dry_run_and_older_than() {
    let moto = start_moto();
    let region = "eu-central-1";
    let ctx = ctx(&moto, region).await;
    let c = &ctx.client;
    let mk = |created: std::time::SystemTime, run: &str| {
        let mut t = RunTags::new("ec2_moto_sweep");
        t.run_id = run.to_string();
        t.created_at = harness::machine::ec2::rfc3339(created);
        c.create_volume()
            .availability_zone(format!("{region}a"))
            .size(1)
            .tag_specifications(harness::machine::ec2::tag_spec(
                ResourceType::Volume,
                &t.pairs(),
            ))
            .send()
    };
    let now = std::time::SystemTime::now();
    let old = mk(now - Duration::from_secs(3 * 3600), "old-run")
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let young = mk(now, "young-run")
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let creds = tempfile::tempdir().unwrap();
    let sweep = |args: &[&str]| {
        let out = harness_cmd(&moto, "us-east-1", creds.path())
            .arg("sweep")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sweep {args:?}: expected exit 0, seen {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let exists = |id: String| async move {
        c.describe_volumes()
            .filters(Filter::builder().name("volume-id").values(id).build())
            .send()
            .await
            .unwrap()
            .volumes()
            .len()
            == 1
    };
    let dry = sweep(&["--all-regions", "--older-than", "1h", "--dry-run"]);
    assert!(
        dry.contains(&format!("would delete {region} volume {old}")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "skip (younger than --older-than) {region} volume {young}"
        )),
        "{dry}"
    );
    assert!(
        exists(old.clone()).await && exists(young.clone()).await,
        "dry run deletes nothing"
    );
    let real = sweep(&["--all-regions", "--older-than", "1h"]);
    assert!(
        real.contains(&format!("delete {region} volume {old}")),
        "{real}"
    );
    assert!(!exists(old).await, "old tagged volume deleted");
    assert!(exists(young).await, "young tagged volume kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_stopped_before_starting_deletes_nothing_and_says_what_is_left() {
    let moto = start_moto();
    let region = "ap-southeast-2";
    let ctx = ctx(&moto, region).await;
    let tags = RunTags::new("ec2_moto_stop");
    let mut vols = Vec::new();
    for _ in 0..2 {
        let v = ctx
            .client
            .create_volume()
            .availability_zone(format!("{region}a"))
            .size(1)
            .tag_specifications(harness::machine::ec2::tag_spec(
                ResourceType::Volume,
                &tags.pairs(),
            ))
            .send()
            .await
            .unwrap();
        vols.push(v.volume_id().unwrap().to_string());
    }
    let opts = harness::machine::ec2::sweep::SweepOptions {
        older_than: Duration::ZERO,
        dry_run: false,
        run_id: None,
        owner: None,
    };
    let stop = harness::machine::ec2::stop::Stop::new();
    stop.stop();
    let swept = harness::machine::ec2::sweep::sweep_region_until(&ctx, &opts, &stop)
        .await
        .unwrap();
    assert_eq!(swept.actions, Vec::new(), "nothing done");
    let left = swept.left.expect("stopped: a list of what is left");
    for v in &vols {
        assert!(left.iter().any(|l| l.contains(v)), "{v} in {left:?}");
    }
    assert!(
        left.iter()
            .any(|l| l.contains("security-groups: not looked at")),
        "{left:?}"
    );
    assert_eq!(tagged_leftovers(&ctx).await.len(), vols.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_sweep_exits_130_and_lists_what_is_left() {
    let moto = start_moto();
    let region = "us-east-2";
    let ctx = ctx(&moto, region).await;
    let tags = RunTags::new("ec2_moto_sweep_ctrl_c");
    const N: usize = 40;
    for _ in 0..N {
        ctx.client
            .create_volume()
            .availability_zone(format!("{region}a"))
            .size(1)
            .tag_specifications(harness::machine::ec2::tag_spec(
                ResourceType::Volume,
                &tags.pairs(),
            ))
            .send()
            .await
            .unwrap();
    }
    let creds = tempfile::tempdir().unwrap();
    let mut child = harness_cmd(&moto, region, creds.path())
        .args(["sweep", "--older-than", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first action").unwrap();
    assert!(first.starts_with("delete "), "{first}");
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT)");
    let done = 1 + lines.map_while(Result::ok).count();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exit code: {stderr}");
    let remaining = tagged_leftovers(&ctx).await;
    // Whatever the timing: every printed deletion happened, the rest is listed as left.
    assert_eq!(done + remaining.len(), N, "{stderr}");
    for r in &remaining {
        let id = r.trim_start_matches("volume ");
        assert!(stderr.contains(id), "left volume {id} not listed: {stderr}");
    }
    if remaining.is_empty() {
        assert!(stderr.contains("nothing left"), "{stderr}");
    } else {
        assert!(stderr.contains("left:"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_takes_only_its_owners_runs_unless_all_owners() {
    let moto = start_moto();
    let region = "us-east-2";
    let ctx = ctx(&moto, region).await;
    let c = &ctx.client;
    let mk = |owner: &'static str| async move {
        let mut t = RunTags::new("ec2_moto_owner");
        t.owner = owner.into();
        c.create_volume()
            .availability_zone(format!("{region}a"))
            .size(1)
            .tag_specifications(harness::machine::ec2::tag_spec(
                ResourceType::Volume,
                &t.pairs(),
            ))
            .send()
            .await
            .unwrap()
            .volume_id()
            .unwrap()
            .to_string()
    };
    let (alice, bob, carol) = (mk("alice").await, mk("bob").await, mk("carol").await);
    let exists = |id: String| async move {
        c.describe_volumes()
            .filters(Filter::builder().name("volume-id").values(id).build())
            .send()
            .await
            .unwrap()
            .volumes()
            .len()
            == 1
    };
    let creds = tempfile::tempdir().unwrap();
    let sweep = |env_owner: &str, args: &[&str]| {
        let out = harness_cmd(&moto, region, creds.path())
            .env("HARNESS_OWNER", env_owner)
            .args(["sweep", "--older-than", "0s"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sweep {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Default owner from HARNESS_OWNER: only alice's run.
    let out = sweep("alice", &[]);
    assert!(out.contains(&alice) && !out.contains(&bob), "{out}");
    assert!(
        !exists(alice.clone()).await && exists(bob.clone()).await && exists(carol.clone()).await
    );
    // --owner wins over the environment.
    sweep("alice", &["--owner", "bob"]);
    assert!(!exists(bob.clone()).await && exists(carol.clone()).await);
    // The janitor: every owner.
    sweep("alice", &["--all-owners"]);
    assert!(!exists(carol).await);
}

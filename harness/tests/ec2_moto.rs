//! The EC2 backend against **moto** (`moto_server`, a real EC2 API peer but
//! not AWS), started by each test on a free 127.0.0.1 port with dummy
//! credentials; no traffic leaves 127.0.0.1.  Missing `moto_server` is a
//! failure (run ci/setup-debian.sh), never a silent pass.
//!
//! moto does not echo `InstanceMarketOptions` details (only
//! `InstanceLifecycle=spot`), so persistent / stop / max price are asserted
//! on the launch plan that was sent.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, ResourceType, VolumeType};
use base64::Engine;
use harness::machine::ec2::config::{Ec2Ctx, LoadOptions};
use harness::machine::ec2::{plan, RunTags, TAG_CREATED_AT, TAG_OWNER, TAG_RUN_ID, TAG_SCENARIO};

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

/// The image the lookup must choose for `arch` (the template's release).
fn expected_ami(arch: harness::template::variant::Arch) -> &'static str {
    match arch {
        harness::template::variant::Arch::X86_64 => "ami-0a000000000000002",
        harness::template::variant::Arch::Aarch64 => "ami-0b000000000000002",
    }
}

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

/// The AMI the harness resolves for `arch` in `ctx`'s region (the
/// template's lookup: owner, name, architecture, newest).
async fn nixos_ami(ctx: &Ec2Ctx, arch: harness::template::variant::Arch) -> String {
    let release = harness::template::ami::release(&root()).unwrap();
    harness::template::ami::resolve(&ctx.client, &ctx.region, &release, arch)
        .await
        .unwrap()
}

/// Remove every NixOS image from `ctx`'s region (a region without one).
async fn deregister_nixos_images(ctx: &Ec2Ctx) {
    for (id, ..) in IMAGES {
        ctx.client
            .deregister_image()
            .image_id(*id)
            .send()
            .await
            .unwrap();
    }
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

/// `harness ec2-launch <variant> --hold` against moto, returned once it
/// printed its `run … instance …` line (instance and volume exist).
fn held_launch(
    moto: &Moto,
    region: &str,
    cred_dir: &std::path::Path,
    variant: &str,
) -> std::process::Child {
    let mut child = harness_cmd(moto, region, cred_dir)
        .args(["ec2-launch", variant, "--hold"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("ec2-launch --hold: expected a `run … instance …` line within 300s");
    assert!(line.starts_with("run "), "{line}");
    child
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

/// All resources of any kind (tagged or not) in the region, for "nothing was created".
async fn resource_counts(ctx: &Ec2Ctx) -> (usize, usize, usize, usize) {
    let c = &ctx.client;
    let i = c.describe_instances().send().await.unwrap();
    let v = c.describe_volumes().send().await.unwrap();
    let k = c.describe_key_pairs().send().await.unwrap();
    let g = c.describe_security_groups().send().await.unwrap();
    (
        i.reservations().iter().flat_map(|r| r.instances()).count(),
        v.volumes().len(),
        k.key_pairs().len(),
        g.security_groups().len(),
    )
}

fn assert_run_tags(tags: &[aws_sdk_ec2::types::Tag], run: &RunTags, what: &str) {
    for (k, v) in [
        (TAG_RUN_ID, &run.run_id),
        (TAG_SCENARIO, &run.scenario),
        (TAG_CREATED_AT, &run.created_at),
        (TAG_OWNER, &run.owner),
    ] {
        assert_eq!(
            harness::machine::ec2::tag_value(tags, k),
            Some(v.as_str()),
            "{what}: tag {k}: expected {v}, seen {tags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_variants_launch_as_planned_moto_weaker_spot_options_checked_on_the_plan() {
    let moto = start_moto();
    let root = root();
    let variants = harness::template::values::discover_repo(&root).unwrap();
    assert_eq!(variants.len(), 4, "expected the four variants of values/");
    let regions = ["us-east-1", "us-west-2", "eu-central-1", "eu-west-1"];
    let art = tempfile::tempdir().unwrap();
    for (variant, region) in variants.iter().zip(regions) {
        let ctx = ctx(&moto, region).await;
        let user_data =
            harness::template::render::render_user_data(&root, variant, &BTreeMap::new())
                .await
                .unwrap();
        let tags = RunTags::new("ec2_moto");
        let ami = nixos_ami(&ctx, variant.arch).await;
        assert_eq!(
            ami,
            expected_ami(variant.arch),
            "{}: newest official image",
            variant.name
        );
        let p = plan::plan(
            variant,
            region,
            &ami,
            &user_data,
            tags.clone(),
            &Default::default(),
        )
        .unwrap();
        // Market options: moto only echoes the lifecycle, so the spot
        // settings are asserted on the plan that is sent.
        match p.market_options() {
            Some(m) => {
                assert!(
                    variant.is_spot,
                    "{}: market options on on-demand",
                    variant.name
                );
                let so = m.spot_options().unwrap();
                assert_eq!(so.spot_instance_type().unwrap().as_str(), "persistent");
                assert_eq!(
                    so.instance_interruption_behavior().unwrap().as_str(),
                    "stop"
                );
            }
            None => assert!(
                !variant.is_spot,
                "{}: spot variant without market options",
                variant.name
            ),
        }
        let mut l = harness::machine::ec2::launch::launch(&ctx, p, &art.path().join(&variant.name))
            .await
            .unwrap();
        let c = &ctx.client;

        let d = c
            .describe_instances()
            .instance_ids(&l.instance_id)
            .send()
            .await
            .unwrap();
        let inst = d.reservations()[0].instances()[0].clone();
        let what = format!("{} in {region}", variant.name);
        assert_eq!(
            inst.image_id(),
            Some(expected_ami(variant.arch)),
            "{what}: AMI"
        );
        assert_eq!(
            inst.instance_type().map(|t| t.as_str()),
            variant.value_str("default_instance_type"),
            "{what}: instance type"
        );
        assert_eq!(
            inst.instance_lifecycle().map(|l| l.as_str()),
            variant.is_spot.then_some("spot"),
            "{what}: lifecycle"
        );
        let az = inst
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap();
        assert_eq!(az, l.az, "{what}: AZ");
        assert_eq!(
            inst.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required"),
            "{what}: IMDSv2"
        );
        assert_run_tags(inst.tags(), &tags, &what);
        assert_eq!(inst.key_name(), Some(l.key_name.as_str()));

        let ud = c
            .describe_instance_attribute()
            .instance_id(&l.instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let ud = ud.user_data().and_then(|v| v.value()).unwrap();
        let ud = base64::engine::general_purpose::STANDARD
            .decode(ud)
            .unwrap();
        assert_eq!(
            String::from_utf8(ud).unwrap(),
            user_data,
            "{what}: user-data = render"
        );

        // Every block device (root and home) is encrypted and tagged.
        let vol_ids: Vec<String> = inst
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|e| e.volume_id()).map(str::to_string))
            .collect();
        assert!(
            vol_ids.contains(&l.volume_id),
            "{what}: home not attached: {vol_ids:?}"
        );
        let vols = c
            .describe_volumes()
            .set_volume_ids(Some(vol_ids.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(vols.volumes().len(), 2, "{what}: root + home");
        for v in vols.volumes() {
            let id = v.volume_id().unwrap();
            assert_eq!(v.encrypted(), Some(true), "{what}: {id} encrypted");
            assert_eq!(v.volume_type(), Some(&VolumeType::Gp3), "{what}: {id} gp3");
            assert_eq!(v.availability_zone(), Some(az), "{what}: {id} AZ");
            assert_run_tags(v.tags(), &tags, &format!("{what}: volume {id}"));
            let att = &v.attachments()[0];
            assert_eq!(att.instance_id(), Some(l.instance_id.as_str()));
            if id == l.volume_id {
                assert_eq!(att.device(), Some("/dev/xvdb"), "{what}: home device");
                assert_eq!(v.size(), Some(plan::HOME_GIB));
            } else {
                assert_eq!(att.device(), Some(plan::ROOT_DEVICE), "{what}: root device");
            }
        }
        let sg = c
            .describe_security_groups()
            .group_ids(&l.security_group_id)
            .send()
            .await
            .unwrap();
        let perms = sg.security_groups()[0].ip_permissions();
        assert_eq!(perms.len(), 1, "{what}: only SSH");
        assert_eq!(
            (perms[0].from_port(), perms[0].to_port()),
            (Some(22), Some(22))
        );
        let cidrs: Vec<_> = perms[0]
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .collect();
        assert_eq!(cidrs, ["127.0.0.1/32"], "{what}: SSH from the caller only");

        l.guard.cleanup().await.unwrap();
        assert_eq!(
            tagged_leftovers(&ctx).await,
            Vec::<String>::new(),
            "{what}: after cleanup"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_terminate_and_sweep_twice_are_fine() {
    use harness::machine::ec2::lifecycle;
    let moto = start_moto();
    let root = root();
    let ctx = ctx(&moto, "us-east-2").await;
    let variant = harness::template::values::find(&root, "aws-nixos-graviton-spot").unwrap();
    let ami = nixos_ami(&ctx, variant.arch).await;
    let p = plan::plan(
        &variant,
        "us-east-2",
        &ami,
        "#!/bin/sh\necho lifecycle\n",
        RunTags::new("ec2_moto_lifecycle"),
        &Default::default(),
    )
    .unwrap();
    let art = tempfile::tempdir().unwrap();
    let mut l = harness::machine::ec2::launch::launch(&ctx, p, art.path())
        .await
        .unwrap();
    let c = &ctx.client;
    let id = l.instance_id.clone();
    for _ in 0..2 {
        lifecycle::stop(c, &id).await.unwrap();
        assert_eq!(
            lifecycle::state(c, &id).await.unwrap().as_deref(),
            Some("stopped")
        );
    }
    for _ in 0..2 {
        lifecycle::start(c, &id).await.unwrap();
        assert_eq!(
            lifecycle::state(c, &id).await.unwrap().as_deref(),
            Some("running")
        );
    }
    let console = lifecycle::save_console_output(c, &id, art.path())
        .await
        .unwrap();
    assert!(console.exists());
    for _ in 0..2 {
        lifecycle::terminate(c, &id).await.unwrap();
        assert_eq!(
            lifecycle::state(c, &id).await.unwrap().as_deref(),
            Some("terminated")
        );
    }
    l.guard.cleanup().await.unwrap();
    l.guard.cleanup().await.unwrap();
    assert_eq!(tagged_leftovers(&ctx).await, Vec::<String>::new());
    let opts = harness::machine::ec2::sweep::SweepOptions {
        older_than: Duration::ZERO,
        dry_run: false,
        run_id: None,
        owner: None,
    };
    for _ in 0..2 {
        let acts = harness::machine::ec2::sweep::sweep_region(&ctx, &opts)
            .await
            .unwrap();
        assert_eq!(acts, Vec::new(), "nothing left to sweep");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_launch_is_swept_and_untagged_resources_are_untouched() {
    let moto = start_moto();
    let region = "us-west-2";
    let ctx = ctx(&moto, region).await;
    let c = &ctx.client;
    let ami = nixos_ami(&ctx, harness::template::variant::Arch::X86_64).await;
    // Untagged resources the sweep must leave alone.
    let other_vol = c
        .create_volume()
        .availability_zone(format!("{region}a"))
        .size(1)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let other_inst = c
        .run_instances()
        .image_id(&ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value("not-harness")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();

    let creds = tempfile::tempdir().unwrap();
    let mut child = held_launch(&moto, region, creds.path(), "aws-nixos");
    assert!(
        !tagged_leftovers(&ctx).await.is_empty(),
        "moto shows the tagged run"
    );
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    child.wait().unwrap();
    assert!(
        !tagged_leftovers(&ctx).await.is_empty(),
        "SIGKILL left the run behind"
    );

    for round in 0..2 {
        let out = harness_cmd(&moto, region, creds.path())
            .args(["sweep", "--older-than", "0s"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sweep round {round}: expected exit 0, seen {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if round == 0 {
            assert!(
                stdout.contains("terminate") && stdout.contains("delete"),
                "{stdout}"
            );
        } else {
            assert_eq!(stdout.trim(), "", "second sweep: nothing to do");
        }
        assert_eq!(tagged_leftovers(&ctx).await, Vec::<String>::new());
    }
    assert_eq!(
        harness::machine::ec2::lifecycle::state(c, &other_inst)
            .await
            .unwrap()
            .as_deref(),
        Some("running"),
        "untagged instance untouched"
    );
    let v = c
        .describe_volumes()
        .volume_ids(&other_vol)
        .send()
        .await
        .unwrap();
    assert_eq!(v.volumes().len(), 1, "untagged volume untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly_before_creating_anything() {
    let moto = start_moto();
    let creds = tempfile::tempdir().unwrap();
    let before = resource_counts(&ctx(&moto, "us-east-1").await).await;
    // sa-east-1 without any NixOS image: the lookup fails before anything is created.
    deregister_nixos_images(&ctx(&moto, "sa-east-1").await).await;
    let pattern =
        harness::template::ami::name_pattern(&harness::template::ami::release(&root()).unwrap());
    let cases: [(&str, &[&str], bool, &[&str]); 3] = [
        (
            "mars-east-1",
            &[],
            true,
            &["unknown AWS region", "mars-east-1", "HARNESS_EC2_REGION"],
        ),
        (
            "sa-east-1",
            &[],
            true,
            &[
                "no NixOS AMI",
                "sa-east-1",
                &pattern,
                "x86_64",
                "427812963091",
            ],
        ),
        (
            "us-east-1",
            &[],
            false,
            &["no AWS credentials", "AWS_PROFILE"],
        ),
    ];
    for (region, extra, with_creds, expect) in cases {
        let mut cmd = harness_cmd(&moto, region, creds.path());
        if !with_creds {
            cmd.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        let out = cmd
            .args(["ec2-launch", "aws-nixos"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{region}: expected failure, seen {}",
            out.status
        );
        for e in expect {
            assert!(stderr.contains(e), "{region}: expected `{e}` in: {stderr}");
        }
    }
    for region in ["us-east-1", "sa-east-1"] {
        let ctx = ctx(&moto, region).await;
        assert_eq!(
            tagged_leftovers(&ctx).await,
            Vec::<String>::new(),
            "{region}"
        );
    }
    assert_eq!(
        resource_counts(&ctx(&moto, "us-east-1").await).await,
        before,
        "no resource created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_held_launch_deletes_the_run() {
    let moto = start_moto();
    let region = "eu-west-1";
    let ctx = ctx(&moto, region).await;
    let creds = tempfile::tempdir().unwrap();
    let mut child = held_launch(&moto, region, creds.path(), "aws-nixos-graviton-spot");
    assert!(!tagged_leftovers(&ctx).await.is_empty());
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT)");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exit code");
    assert_eq!(
        tagged_leftovers(&ctx).await,
        Vec::<String>::new(),
        "Ctrl-C: the drop guard deleted the run"
    );
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

/// `launch_ec2` reads `HARNESS_EC2_*` and the AWS chain from the process
/// environment and caches its context per process, so it runs in a child
/// of this test binary given moto's environment (no `set_var` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_ec2_tags_instance_and_volume_and_terminate_cleans_up() {
    let moto = start_moto();
    let region = "us-east-1";
    let creds = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = moto_env(Command::new(exe), &moto, region, creds.path())
        // With a role set, interrupt_spot goes as far as moto lets it
        // (moto 5.2.1 shows no spot request for this launch, and has no
        // FIS StartExperiment): never a pass.
        .env(
            harness::machine::ec2::interrupt::ENV_FIS_ROLE,
            "arn:aws:iam::123456789012:role/harness-fis",
        )
        .args([
            "launch_ec2_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "launch_ec2_child: expected 1 passed, seen {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = ctx(&moto, region).await;
    assert_eq!(
        tagged_leftovers(&ctx).await,
        Vec::<String>::new(),
        "terminate deleted every run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run (in a child with moto's environment) by launch_ec2_tags_instance_and_volume_and_terminate_cleans_up"]
async fn launch_ec2_child() {
    use harness::machine::instance::Instance;
    assert!(
        std::env::var("HARNESS_EC2_ENDPOINT").is_ok(),
        "expected HARNESS_EC2_ENDPOINT (moto); run launch_ec2_tags_instance_and_volume_and_terminate_cleans_up instead"
    );
    let root = root();
    let arches = harness::template::variant::Arch::ALL;
    assert_eq!(
        harness::machine::backend::ec2_skip_reason(&root, &arches).await,
        None,
        "moto with credentials: nothing to skip"
    );
    let ctx = Ec2Ctx::load(None).await.unwrap();
    let art = tempfile::tempdir().unwrap();
    let scenario = "ec2_moto launch_ec2";
    let user_data = b"#!/bin/sh\necho launch_ec2\n";

    // Checked before anything is created: empty user-data.
    let before = resource_counts(&ctx).await;
    let v = harness::template::values::find(&root, "aws-nixos").unwrap();
    let e = harness::machine::backend::launch_ec2(&root, &v, b"", scenario, art.path())
        .await
        .err()
        .expect("empty user-data must fail");
    assert!(format!("{e:#}").contains("0 bytes"), "{e:#}");
    assert_eq!(resource_counts(&ctx).await, before, "nothing created");

    for name in ["aws-nixos", "aws-nixos-graviton-spot"] {
        let variant = harness::template::values::find(&root, name).unwrap();
        let dir = art.path().join(name);
        let mut inst =
            harness::machine::backend::launch_ec2(&root, &variant, user_data, scenario, &dir)
                .await
                .unwrap();
        assert_eq!(inst.arch(), variant.arch, "{name}");
        let d = ctx
            .client
            .describe_instances()
            .instance_ids(inst.id())
            .send()
            .await
            .unwrap();
        let i = d.reservations()[0].instances()[0].clone();
        assert_eq!(
            i.image_id(),
            Some(expected_ami(variant.arch)),
            "{name}: AMI"
        );
        assert_eq!(
            harness::machine::ec2::tag_value(i.tags(), TAG_SCENARIO),
            Some(scenario),
            "{name}: scenario tag"
        );
        let run = harness::machine::ec2::tag_value(i.tags(), TAG_RUN_ID)
            .expect("run id tag")
            .to_string();
        for k in [TAG_CREATED_AT, TAG_OWNER] {
            assert!(
                harness::machine::ec2::tag_value(i.tags(), k).is_some(),
                "{name}: {k}"
            );
        }
        // The home volume: tagged with the run, attached as /dev/xvdb.
        let home = inst.home_disk_serial().replacen("vol", "vol-", 1);
        let v = ctx
            .client
            .describe_volumes()
            .volume_ids(&home)
            .send()
            .await
            .unwrap();
        let v = &v.volumes()[0];
        assert_eq!(
            harness::machine::ec2::tag_value(v.tags(), TAG_RUN_ID),
            Some(run.as_str()),
            "{name}: volume tag"
        );
        assert_eq!(v.attachments()[0].instance_id(), Some(inst.id()));
        assert_eq!(v.attachments()[0].device(), Some(plan::HOME_DEVICE));
        assert!(!tagged_leftovers(&ctx).await.is_empty());
        // The spot scenario's interruption on EC2: checked against the
        // spot request, then only a real one through AWS FIS, which moto
        // (the weaker peer) cannot run: it has no StartExperiment.  Never
        // a pass, never a stop by the harness; on-demand is refused.
        match inst.interrupt_spot().await {
            Ok(()) => panic!("{name}: interrupt_spot passed without a real FIS interruption"),
            Err(e) => {
                let e = format!("{e:#}");
                if variant.is_spot {
                    // moto may not keep the request's type/behavior: then the
                    // check must say what it saw; else FIS's refusal.
                    assert!(
                        e.contains("expected") || e.contains("FIS StartExperiment"),
                        "{name}: {e}"
                    );
                    assert_ne!(
                        harness::machine::ec2::lifecycle::state(&ctx.client, inst.id())
                            .await
                            .unwrap()
                            .as_deref(),
                        Some("stopped"),
                        "{name}: the harness must not stop the instance itself"
                    );
                    eprintln!("{name}: interrupt_spot against moto: {e}");
                } else {
                    assert!(e.contains("on-demand"), "{name}: {e}");
                }
            }
        }
        inst.terminate().await.unwrap();
        inst.terminate().await.unwrap();
        assert_eq!(
            tagged_leftovers(&ctx).await,
            Vec::<String>::new(),
            "{name}: after terminate"
        );
        assert!(
            dir.join(format!("console-{}.log", inst.id())).exists(),
            "{name}: console log saved"
        );
    }
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

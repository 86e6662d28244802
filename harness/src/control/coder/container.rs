//! The real Coder server for the e2e tier, in containers (testcontainers):
//! PostgreSQL and `ghcr.io/coder/coder:<CODER_VERSION>`, both with host
//! networking and bound to 127.0.0.1 on free ports.  The QEMU guest reaches
//! the host's loopback as `169.0.0.2` (slirp gateway, see docs/design.md),
//! so `CODER_ACCESS_URL` is `http://169.0.0.2:<port>`; the harness talks to
//! `http://127.0.0.1:<port>`.  Dropping [`CoderServer`] removes both
//! containers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::aws_handoff::AwsHandOff;
use super::client::CoderClient;
use super::types::CreateFirstUserRequest;
use super::CODER_VERSION;

pub const CODER_IMAGE: &str = "ghcr.io/coder/coder";
pub const POSTGRES_IMAGE: &str = "postgres";
pub const POSTGRES_TAG: &str = "16-alpine";
/// The host as seen from the QEMU guest (slirp `host=`).
pub const GUEST_HOST_ADDR: &str = "169.0.0.2";
/// Label on every container the harness starts (for `harness sweep`).
pub const LABEL: (&str, &str) = ("io.harness.e2e", "coder");
/// Label holding the harness process id, so the Ctrl-C / timeout handler
/// removes exactly this run's containers.
pub const PID_LABEL: &str = "io.harness.e2e.pid";

/// The URL the workspace agents use to reach Coder.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessUrl {
    /// `http://169.0.0.2:<port>`: the host's loopback as a QEMU guest sees it.
    QemuGuest,
    /// No `CODER_ACCESS_URL`: Coder opens its built-in public tunnel, so
    /// agents on EC2 can reach a server on this machine.
    Tunnel,
    /// An explicit URL (e.g. `HARNESS_EC2_CODER_ACCESS_URL`, a tunnel of
    /// your own to the server's port).
    Given(String),
}
pub const ADMIN_EMAIL: &str = "admin@harness.test";
pub const ADMIN_USER: &str = "admin";

/// One container the e2e tier starts; also printed by `harness e2e --plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub tag: String,
    pub network: String,
    pub env: Vec<(String, String)>,
    pub cmd: Vec<String>,
    /// Host directory bind-mounted at the same path (the shared user-data dir).
    pub mounts: Vec<PathBuf>,
    /// Host directory → container path (the AWS credentials hand-off).
    pub binds: Vec<(PathBuf, String)>,
}

impl ContainerSpec {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image, self.tag)
    }
}

/// `http://169.0.0.2:<port>`: the access URL agents in the guest use.
pub fn access_url(port: u16) -> String {
    format!("http://{GUEST_HOST_ADDR}:{port}")
}

pub fn postgres_spec(pg_port: u16) -> ContainerSpec {
    ContainerSpec {
        image: POSTGRES_IMAGE.into(),
        tag: POSTGRES_TAG.into(),
        network: "host".into(),
        env: vec![
            ("POSTGRES_USER".into(), "coder".into()),
            ("POSTGRES_PASSWORD".into(), "coder".into()),
            ("POSTGRES_DB".into(), "coder".into()),
        ],
        cmd: vec![
            "postgres".into(),
            "-p".into(),
            pg_port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
        ],
        mounts: vec![],
        binds: vec![],
    }
}

/// The Coder server's container. `aws` (the `ec2` tier) adds the
/// provisioner's AWS environment and mounts its credentials directory
/// ([`super::aws_handoff`]); the secrets themselves are never in the spec.
pub fn coder_spec(
    http_port: u16,
    pg_port: u16,
    shared_dir: Option<&Path>,
    access: &AccessUrl,
    aws: Option<&AwsHandOff>,
) -> ContainerSpec {
    let access_env = match access {
        AccessUrl::QemuGuest => Some(access_url(http_port)),
        AccessUrl::Tunnel => None,
        AccessUrl::Given(u) => Some(u.clone()),
    };
    ContainerSpec {
        image: CODER_IMAGE.into(),
        tag: CODER_VERSION.into(),
        network: "host".into(),
        env: vec![
            (
                "CODER_PG_CONNECTION_URL".into(),
                format!("postgresql://coder:coder@127.0.0.1:{pg_port}/coder?sslmode=disable"),
            ),
            (
                "CODER_HTTP_ADDRESS".into(),
                format!("127.0.0.1:{http_port}"),
            ),
            ("CODER_TELEMETRY_ENABLE".into(), "false".into()),
            ("CODER_UPDATE_CHECK".into(), "false".into()),
            ("CODER_VERBOSE".into(), "true".into()),
        ]
        .into_iter()
        .chain(access_env.map(|u| ("CODER_ACCESS_URL".to_string(), u)))
        .chain(aws.map(AwsHandOff::env).unwrap_or_default())
        .collect(),
        cmd: vec![],
        mounts: shared_dir
            .map(|d| vec![d.to_path_buf()])
            .unwrap_or_default(),
        binds: aws
            .map(|a| {
                vec![(
                    a.host_dir().to_path_buf(),
                    super::aws_handoff::CONTAINER_DIR.to_string(),
                )]
            })
            .unwrap_or_default(),
    }
}

fn docker(args: &[&str]) -> Result<String, String> {
    match Command::new("docker").args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot run docker: {e}")),
    }
}

/// `None` if Docker runs and both images are present (pulling them if
/// missing, with progress on stderr); otherwise the skip reason.
pub fn docker_available() -> Option<String> {
    if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
        return Some(format!("Docker is not running (`docker info`: {e})"));
    }
    for image in [
        format!("{CODER_IMAGE}:{CODER_VERSION}"),
        format!("{POSTGRES_IMAGE}:{POSTGRES_TAG}"),
    ] {
        if docker(&["image", "inspect", "--format", "{{.Id}}", &image]).is_ok() {
            continue;
        }
        eprintln!("[coder] pulling {image}");
        if let Err(e) = docker(&["pull", "--quiet", &image]) {
            return Some(format!(
                "image {image} is not present and cannot be pulled ({e})"
            ));
        }
    }
    None
}

/// Remove every container this process started (by [`PID_LABEL`]); for
/// the Ctrl-C / timeout path, where destructors do not run.
pub fn remove_own_containers() {
    let filter = format!("label={PID_LABEL}={}", std::process::id());
    if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = docker(&args);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn request(spec: &ContainerSpec) -> testcontainers::ContainerRequest<GenericImage> {
    let mut r = GenericImage::new(spec.image.clone(), spec.tag.clone())
        .with_wait_for(WaitFor::Nothing)
        .with_network(spec.network.clone())
        .with_label(LABEL.0, LABEL.1)
        .with_label(PID_LABEL, std::process::id().to_string());
    for (k, v) in &spec.env {
        r = r.with_env_var(k.clone(), v.clone());
    }
    for m in &spec.mounts {
        let p = m.display().to_string();
        r = r.with_mount(Mount::bind_mount(p.clone(), p));
    }
    for (host, inside) in &spec.binds {
        r = r.with_mount(Mount::bind_mount(
            host.display().to_string(),
            inside.clone(),
        ));
    }
    if !spec.cmd.is_empty() {
        r = r.with_cmd(spec.cmd.clone());
    }
    r
}

/// A running Coder server with an admin user logged in.
pub struct CoderServer {
    /// Logged-in client on `http://127.0.0.1:<port>`.
    pub client: CoderClient,
    pub access_url: String,
    pub organization_id: String,
    pub password: String,
    _postgres: ContainerAsync<GenericImage>,
    _coder: ContainerAsync<GenericImage>,
}

/// Start PostgreSQL and Coder, wait for Coder's API, create the first
/// user and log in.  `shared_dir` is bind-mounted (the local instance
/// module writes user-data there).
pub async fn start(
    shared_dir: Option<&Path>,
    access: &AccessUrl,
    aws: Option<&AwsHandOff>,
    username: &str,
    timeout: Duration,
) -> anyhow::Result<CoderServer> {
    if let Some(reason) = tokio::task::spawn_blocking(docker_available).await? {
        anyhow::bail!("cannot start the Coder server: {reason}");
    }
    let pg_port = free_port()?;
    let http_port = free_port()?;
    let pg = postgres_spec(pg_port);
    eprintln!("[coder] starting {} on 127.0.0.1:{pg_port}", pg.reference());
    let postgres = request(&pg)
        .with_ready_conditions(vec![WaitFor::message_on_either_std(
            "database system is ready to accept connections",
        )])
        .start()
        .await
        .with_context(|| format!("starting {}", pg.reference()))?;
    crate::machine::qemu::process::on_cleanup(remove_own_containers);
    let cs = coder_spec(http_port, pg_port, shared_dir, access, aws);
    let shown = match access {
        AccessUrl::QemuGuest => access_url(http_port),
        AccessUrl::Tunnel => "Coder's built-in tunnel".into(),
        AccessUrl::Given(u) => u.clone(),
    };
    eprintln!(
        "[coder] starting {} on 127.0.0.1:{http_port} (access URL {shown})",
        cs.reference()
    );
    let coder = request(&cs)
        .start()
        .await
        .with_context(|| format!("starting {}", cs.reference()))?;
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::builder().no_proxy().build()?;
    let start = Instant::now();
    loop {
        match http.get(format!("{base}/api/v2/buildinfo")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if start.elapsed() > timeout => anyhow::bail!(
                "Coder at {base}: expected GET /api/v2/buildinfo to answer 200 within {timeout:?}, seen no answer; logs: `docker logs {}`",
                coder.id()
            ),
            _ => {
                eprintln!("[coder] waiting for {base} ({}s)", start.elapsed().as_secs());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let password = format!("Harness-{}-pw!", rand::random::<u64>());
    let mut client = CoderClient::new(&base)?;
    let first = client
        .create_first_user(&CreateFirstUserRequest {
            email: ADMIN_EMAIL.into(),
            username: username.into(),
            name: "Harness Admin".into(),
            password: password.clone(),
        })
        .await?;
    client.login(ADMIN_EMAIL, &password).await?;
    Ok(CoderServer {
        client,
        access_url: shown,
        organization_id: first.organization_id,
        password,
        _postgres: postgres,
        _coder: coder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let c = coder_spec(
            7080,
            5433,
            Some(Path::new("/tmp/shared")),
            &AccessUrl::QemuGuest,
            None,
        );
        assert_eq!(
            c.reference(),
            format!("ghcr.io/coder/coder:{CODER_VERSION}")
        );
        assert_eq!(c.network, "host");
        let env: std::collections::BTreeMap<_, _> = c.env.iter().cloned().collect();
        assert_eq!(env["CODER_ACCESS_URL"], "http://169.0.0.2:7080");
        assert_eq!(env["CODER_HTTP_ADDRESS"], "127.0.0.1:7080");
        assert!(env["CODER_PG_CONNECTION_URL"].contains("127.0.0.1:5433"));
        assert_eq!(c.mounts, [PathBuf::from("/tmp/shared")]);
        let t = coder_spec(7080, 5433, None, &AccessUrl::Tunnel, None);
        assert!(t.env.iter().all(|(k, _)| k != "CODER_ACCESS_URL"));
        let g = coder_spec(1, 2, None, &AccessUrl::Given("https://x.test".into()), None);
        assert!(g
            .env
            .contains(&("CODER_ACCESS_URL".into(), "https://x.test".into())));
        let p = postgres_spec(5433);
        assert!(p.cmd.contains(&"5433".to_string()));
        assert!(p.cmd.contains(&"listen_addresses=127.0.0.1".to_string()));
    }

    /// The ec2 tier's server: the provisioner's AWS environment is exactly
    /// the hand-off's names, its credentials directory is mounted, and no
    /// secret is in the spec (which `harness e2e --plan` prints).
    #[test]
    fn the_ec2_server_gets_the_aws_hand_off_and_no_secret() {
        let h = AwsHandOff::new("eu-central-1").unwrap();
        let s = super::super::aws_handoff::Secrets {
            access_key_id: "AKIASPECTEST".into(),
            secret_access_key: "spec-secret-value".into(),
            session_token: Some("spec-session-token".into()),
            expiry: None,
        };
        h.write(&s).unwrap();
        let c = coder_spec(7080, 5433, None, &AccessUrl::Tunnel, Some(&h));
        let aws: Vec<&str> = c
            .env
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("AWS_"))
            .collect();
        assert_eq!(aws, super::super::aws_handoff::PROVISIONER_ENV);
        assert_eq!(
            c.binds,
            [(
                h.host_dir().to_path_buf(),
                super::super::aws_handoff::CONTAINER_DIR.to_string()
            )]
        );
        let shown = format!("{c:?}");
        for v in s.values() {
            assert!(!shown.contains(v), "secret in the container spec: {shown}");
        }
        // Without the hand-off (qemu tier) nothing AWS reaches Coder.
        let q = coder_spec(7080, 5433, None, &AccessUrl::QemuGuest, None);
        assert!(q.env.iter().all(|(k, _)| !k.starts_with("AWS_")) && q.binds.is_empty());
    }
}

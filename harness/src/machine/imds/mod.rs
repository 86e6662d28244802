//! Emulated EC2 instance metadata service (IMDSv1/v2), one per instance, plus the guestfwd relay.
//!
//! One axum server per QEMU instance, bound to `127.0.0.1:0`; the guest reaches it
//! as `169.254.169.254:80` through QEMU's `guestfwd` `cmd:` form running
//! `harness relay <port>` (see [`relay_cmd`]).  Both `/latest/` and `/1.0/`
//! prefixes are served.  Every request is logged in memory
//! ([`ImdsHandle::requests`]) and, if a log path is given, appended as JSON lines.
//!
//! **Not AWS-signed:** `dynamic/instance-identity/signature` is the document
//! signed by a TEST DOUBLE of AWS's key ([`identity`]: a key made in this
//! process, which the Coder agent API double trusts); `pkcs7` is a
//! placeholder that says so in its body.  Nothing here can produce a real
//! AWS signature, so a real coderd refuses it: its instance-identity check
//! is proven only on real EC2.

pub mod identity;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;

use crate::template::variant::Arch;

/// `meta-data/instance-life-cycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LifeCycle {
    #[serde(rename = "spot")]
    Spot,
    #[serde(rename = "on-demand")]
    OnDemand,
}

impl LifeCycle {
    pub fn as_str(self) -> &'static str {
        match self {
            LifeCycle::Spot => "spot",
            LifeCycle::OnDemand => "on-demand",
        }
    }
}

/// What one emulated instance's metadata says about it.
#[derive(Debug, Clone)]
pub struct ImdsConfig {
    pub instance_id: String,
    pub ami_id: String,
    pub instance_type: String,
    pub hostname: String,
    pub local_ipv4: String,
    pub availability_zone: String,
    pub region: String,
    /// Served as `user-data`; empty → 404, like EC2.
    pub user_data: Vec<u8>,
    /// Served as `public-keys/0/openssh-key` (key name `harness`).
    pub public_key: Option<String>,
    pub life_cycle: LifeCycle,
    /// IMDSv2 required (`http_tokens = "required"`): GETs without a valid token get 401.
    pub require_v2: bool,
    pub arch: Arch,
    /// `accountId` in the identity document.
    pub account_id: String,
}

impl ImdsConfig {
    /// A plausible default for tests: x86_64, on-demand, v2 required.
    pub fn example(instance_id: &str) -> Self {
        ImdsConfig {
            instance_id: instance_id.to_string(),
            ami_id: "ami-0123456789abcdef0".into(),
            instance_type: "t3.medium".into(),
            hostname: "ip-10-0-2-15.ec2.internal".into(),
            local_ipv4: "10.0.2.15".into(),
            availability_zone: "us-east-1a".into(),
            region: "us-east-1".into(),
            user_data: Vec::new(),
            public_key: None,
            life_cycle: LifeCycle::OnDemand,
            require_v2: true,
            arch: Arch::X86_64,
            account_id: "123456789012".into(),
        }
    }
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImdsRequest {
    pub method: String,
    pub path: String,
    /// An `X-aws-ec2-metadata-token` header was sent and named a live token.
    pub had_valid_token: bool,
    pub token_header_present: bool,
    pub status: u16,
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// `2026-11-25T03:21:32Z` (seconds precision, as EC2 prints times).
pub fn rfc3339(t: SystemTime) -> String {
    use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    DateTime::from_secs(secs)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// A pending spot interruption notice.
#[derive(Debug, Clone)]
pub(crate) struct SpotNotice {
    pub action: String,
    pub time: SystemTime,
}

/// Shared server state.
pub(crate) struct State {
    pub cfg: Mutex<ImdsConfig>,
    pub tokens: Mutex<HashMap<String, Instant>>,
    pub spot: Mutex<Option<SpotNotice>>,
    pub log: Mutex<Vec<ImdsRequest>>,
    pub log_file: Option<Mutex<std::fs::File>>,
    pub log_path: Option<PathBuf>,
    pub started: SystemTime,
}

impl State {
    pub(crate) fn record(&self, r: ImdsRequest) {
        if let Some(f) = &self.log_file {
            if let Ok(line) = serde_json::to_string(&r) {
                let mut f = f.lock().unwrap();
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!("IMDS log {:?}: {e}", self.log_path);
                }
            }
        }
        self.log.lock().unwrap().push(r);
    }
}

/// The server type; see [`ImdsServer::start`].
pub struct ImdsServer;

impl ImdsServer {
    /// Bind `127.0.0.1:0` and serve `cfg` until the last [`ImdsHandle`] clone
    /// is dropped (or [`ImdsHandle::shutdown`]).  Must be called inside a tokio runtime.
    pub fn start(cfg: ImdsConfig, log_path: Option<PathBuf>) -> anyhow::Result<ImdsHandle> {
        let log_file = match &log_path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening IMDS request log {}", p.display()))?,
            )),
            None => None,
        };
        let state = Arc::new(State {
            cfg: Mutex::new(cfg),
            tokens: Mutex::new(HashMap::new()),
            spot: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            log_file,
            log_path,
            started: SystemTime::now(),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding the emulated IMDS on 127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .context("ImdsServer::start must run inside a tokio runtime")?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let app = routes::router(state.clone());
        let task = tokio::spawn(async move {
            // Own accept loop (not `axum::serve`) so HTTP/1 half-close is on:
            // the relay shuts its write half when the guest side hits EOF, and
            // the response must still be sent.  Aborting this task drops the
            // JoinSet, which aborts every open connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let stream = tokio::select! {
                    _ = &mut rx => break,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::warn!("emulated IMDS on {addr}: accept: {e}");
                            continue;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .half_close(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(ImdsHandle {
            inner: Arc::new(Inner {
                state,
                addr,
                stop: Mutex::new(Some((tx, task))),
            }),
        })
    }
}

struct Inner {
    state: Arc<State>,
    addr: SocketAddr,
    stop: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

impl Inner {
    fn stop(&self) {
        if let Some((tx, task)) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
            // Open keep-alive connections would delay a graceful stop; abort.
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running emulated IMDS.  Clones share one server; it stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct ImdsHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImdsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsHandle")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl ImdsHandle {
    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }
    /// The JSON-lines request log, if one was given.
    pub fn log_path(&self) -> Option<&Path> {
        self.inner.state.log_path.as_deref()
    }
    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.inner.state.log.lock().unwrap().clone()
    }
    /// Post a spot interruption notice (`stop` | `terminate` | `hibernate`)
    /// effective at `at`; `spot/instance-action` stops answering 404.
    pub fn trigger_spot_interruption(&self, action: &str, at: SystemTime) -> anyhow::Result<()> {
        if !matches!(action, "stop" | "terminate" | "hibernate") {
            anyhow::bail!(
                "spot interruption action: expected stop|terminate|hibernate, seen {action:?}"
            );
        }
        *self.inner.state.spot.lock().unwrap() = Some(SpotNotice {
            action: action.to_string(),
            time: at,
        });
        Ok(())
    }
    pub fn clear_spot_interruption(&self) {
        *self.inner.state.spot.lock().unwrap() = None;
    }
    pub fn set_user_data(&self, data: impl Into<Vec<u8>>) {
        self.inner.state.cfg.lock().unwrap().user_data = data.into();
    }
    /// Serve another variant's market and instance type (a reused VM
    /// playing the next scenario's variant).
    pub fn set_market(&self, life_cycle: LifeCycle, instance_type: &str) {
        let mut c = self.inner.state.cfg.lock().unwrap();
        c.life_cycle = life_cycle;
        c.instance_type = instance_type.to_string();
    }
    pub fn set_public_key(&self, key: Option<String>) {
        self.inner.state.cfg.lock().unwrap().public_key = key;
    }
    pub fn config(&self) -> ImdsConfig {
        self.inner.state.cfg.lock().unwrap().clone()
    }
    /// Stop serving now (also happens when the last clone is dropped).
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

/// The `cmd:` part of QEMU's `guestfwd=tcp:169.254.169.254:80-cmd:…` option:
/// returns `cmd:'<harness_exe>' relay <port>` with the path quoted for
/// `/bin/sh -c` (QEMU runs the command through sh) and every comma doubled
/// (QEMU's option parser).
pub fn relay_cmd(harness_exe: &Path, port: u16) -> String {
    let exe = harness_exe.to_string_lossy();
    let quoted = format!("'{}'", exe.replace('\'', r"'\''"));
    format!("cmd:{quoted} relay {port}").replace(',', ",,")
}

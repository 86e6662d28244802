//! The cucumber World of the e2e run: one scenario's state (variant,
//! machine, control plane, verdicts, artifacts) and the helpers every step
//! module uses (bounded waits, variants from `values/`, artifact names).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::checks::Verdict;
use crate::control::ControlPlane;
use crate::machine::instance::Instance;
use crate::machine::qemu::QemuInstance;
use crate::template::variant::Variant;
use crate::workspace::real::{self as real_workspace, Machine, RealWorkspace, RunResources};
use crate::{repo, template::values};

use super::contract;

/// A step's bound on the reference machine; [`bounded`] scales it by the
/// measured pace (`crate::machine::qemu::pace`).
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// `HARNESS_<NAME>` in seconds, or `default`.
pub(crate) fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// Whole run (`HARNESS_GLOBAL_TIMEOUT`, default 75 min).
pub(crate) fn global_timeout() -> Duration {
    secs_from_env("HARNESS_GLOBAL_TIMEOUT", 75 * 60)
}

/// A real workspace's start: image build, Coder setup, boot and the
/// user's rebuild (`HARNESS_READY_TIMEOUT`, default 40 min).
pub(crate) fn ready_timeout() -> Duration {
    secs_from_env("HARNESS_READY_TIMEOUT", 40 * 60)
}

/// Bound a step's future; the cucumber crate has no step timeout.
pub(crate) async fn bounded_for<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:#}"),
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

pub(crate) async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> T {
    bounded_for(
        what,
        STEP_TIMEOUT.mul_f64(crate::machine::qemu::pace::current()),
        fut,
    )
    .await
}

/// The run's backend and shared resources.
pub(crate) fn resources() -> &'static RunResources {
    &super::ctx().resources
}

/// A scenario on the real path: template, flake fixture, agent user.
#[derive(Debug, Clone)]
pub(crate) struct RealSpec {
    pub(crate) flake: String,
    pub(crate) user: String,
}

#[derive(cucumber::World, Default)]
pub struct E2e {
    /// The scenario's name (set by the before-hook).
    pub(crate) scenario: String,
    pub(crate) variant: Option<Variant>,
    pub(crate) broken: bool,
    /// Set by the `a workspace from template …` steps.
    pub(crate) real: Option<RealSpec>,
    pub(crate) instance: Option<Machine>,
    pub(crate) workspace: Option<RealWorkspace>,
    pub(crate) api: Option<Arc<dyn ControlPlane>>,
    pub(crate) verdicts: HashMap<String, Verdict>,
    pub(crate) marker: Option<(String, String)>,
    pub(crate) artifacts: PathBuf,
    pub(crate) time_to_agent: Option<Duration>,
    pub(crate) time_to_ready: Option<Duration>,
    /// Set by the `a contract workspace …` steps (`features/template.feature`).
    pub(crate) contract: Option<contract::ContractState>,
    /// Where the scenario's time went (saved as timeline.txt/json).
    pub(crate) timeline: crate::report::timeline::Timeline,
    /// Set by the `a twin workspace …` steps (`features/twin.feature`); its
    /// moto double dies with it.
    pub(crate) twin: Option<super::twin::TwinState>,
}

impl fmt::Debug for E2e {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E2e")
            .field("variant", &self.variant.as_ref().map(|v| &v.name))
            .field("real", &self.real)
            .field("instance", &self.machine().map(|i| i.id().to_string()))
            .field("artifacts", &self.artifacts)
            .finish()
    }
}

impl E2e {
    /// The scenario's machine: a real workspace's, or the contract guest.
    pub(crate) fn machine_ref(&self) -> Option<&Machine> {
        self.workspace
            .as_ref()
            .map(|w| &w.machine)
            .or(self.instance.as_ref())
    }
    pub(crate) fn machine_mut(&mut self) -> Option<&mut Machine> {
        match &mut self.workspace {
            Some(w) => Some(&mut w.machine),
            None => self.instance.as_mut(),
        }
    }
    pub(crate) fn machine(&self) -> Option<&dyn Instance> {
        self.machine_ref().map(Machine::get)
    }
    pub(crate) fn inst(&self) -> &dyn Instance {
        self.machine()
            .expect("no instance: a `When it starts` step must come first")
    }
    pub(crate) fn qemu(&self) -> &QemuInstance {
        self.machine_ref().and_then(Machine::qemu).expect(
            "this step needs a QEMU instance (a `When it starts` step first, HARNESS_BACKEND=qemu)",
        )
    }
    pub(crate) fn cp(&self) -> &dyn ControlPlane {
        self.api
            .as_deref()
            .expect("no control plane: a `When it starts` step must come first")
    }
    /// The workspace user the checks expect.
    pub(crate) fn user(&self) -> String {
        if let Some(c) = &self.contract {
            return c.user.clone();
        }
        self.real
            .as_ref()
            .map(|r| r.user.clone())
            .expect("a `Given a … workspace` step must come first")
    }
    pub(crate) fn where_logs(&self) -> String {
        match self.machine() {
            Some(i) => real_workspace::logs_hint(i, &self.artifacts),
            None => format!("scenario logs: {}", self.artifacts.display()),
        }
    }
}

pub(crate) fn root() -> PathBuf {
    repo::root().expect("repository root")
}

pub(crate) fn out_dir() -> PathBuf {
    repo::target_dir(&root()).join("e2e")
}

pub(crate) fn all_variants() -> &'static Vec<Variant> {
    static V: OnceLock<Vec<Variant>> = OnceLock::new();
    V.get_or_init(|| values::discover_repo(&root()).expect("values/"))
}

pub(crate) fn variant(name: &str) -> Variant {
    all_variants()
        .iter()
        .find(|v| v.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("unknown variant {name}"))
}

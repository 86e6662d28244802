//! What this machine cannot run, found once per run before any scenario
//! starts ([`preflight`]), and the skip reason of each tag.

use cucumber::gherkin;

use crate::machine::backend::Backend;

use super::world::{all_variants, root};

// ---------------------------------------------------------------- skips

/// What [`preflight`] found: why the real-workspace (`@nixos`) scenarios
/// cannot run here, and why the EC2 spot interruption (AWS FIS) cannot, if
/// they cannot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Preflight {
    pub real: Option<String>,
    pub fis: Option<String>,
}

/// Check once what the real path needs on this backend; every missing
/// prerequisite is named, so one run tells the user all they must set up.
pub(crate) async fn preflight(backend: Backend) -> Preflight {
    let mut fis = None;
    let mut missing = Vec::new();
    if backend == Backend::Qemu {
        let have_images = ["X86_64", "AARCH64"]
            .iter()
            .all(|a| std::env::var_os(format!("HARNESS_IMAGE_{a}")).is_some());
        let nix = crate::tools::find("nix").is_ok();
        let may_build = nix && std::env::var_os("HARNESS_NIXOS_BUILD").is_some();
        if !(have_images || may_build) {
            missing.push(if nix {
                "no NixOS image: nix cannot build here (no binary cache, no network); set HARNESS_IMAGE_<ARCH> or HARNESS_NIXOS_BUILD=1".to_string()
            } else {
                "no NixOS image: nix is not installed, and no HARNESS_IMAGE_<ARCH> was given"
                    .to_string()
            });
        }
    }
    // "Docker is not running" / "image ghcr.io/coder/coder:X is not
    // present and cannot be pulled".
    let docker = tokio::task::spawn_blocking(crate::control::coder::container::docker_available)
        .await
        .unwrap_or_else(|e| Some(format!("docker check panicked: {e}")));
    if let Some(r) = docker {
        missing.push(format!("the real Coder server cannot run here: {r}"));
    }
    if backend == Backend::Ec2 {
        let mut arches: Vec<_> = all_variants().iter().map(|v| v.arch).collect();
        arches.sort();
        arches.dedup();
        if let Some(r) = crate::machine::backend::ec2_skip_reason(&root(), &arches).await {
            missing.push(format!("EC2 tier (HARNESS_BACKEND=ec2): {r}"));
        } else if let Ok(ctx) = crate::machine::backend::shared_ctx().await {
            // A real spot interruption needs AWS FIS (role, region, access).
            fis = Some(crate::machine::ec2::interrupt::preflight(ctx).await);
        }
    }
    Preflight {
        real: (!missing.is_empty()).then(|| missing.join("; ").replace('\n', " ")),
        fis: fis.flatten(),
    }
}

/// Why scenarios with `tag` cannot run on this machine, if they cannot.
pub(crate) fn skip_reason(tag: &str) -> Option<String> {
    let run = super::ctx();
    match tag {
        "nixos" => run.preflight.real.clone(),
        // A real interruption needs AWS FIS ([`preflight`] asked it); a
        // StopInstances stand-in would prove nothing about it.
        "spot-interruption" if run.backend == Backend::Ec2 => {
            run.preflight.fis.clone().map(|r| format!("EC2 tier: {r}"))
        }
        _ => None,
    }
}

pub(crate) fn scenario_tags(
    feature: &gherkin::Feature,
    scenario: &gherkin::Scenario,
) -> Vec<String> {
    let mut t: Vec<String> = feature.tags.clone();
    t.extend(scenario.tags.iter().cloned());
    for ex in &scenario.examples {
        t.extend(ex.tags.iter().cloned());
    }
    t
}

pub(crate) fn tag_value(tags: &[String], prefix: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(prefix).map(str::to_string))
}

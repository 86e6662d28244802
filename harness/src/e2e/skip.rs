//! What this machine cannot run, found once per run before any scenario
//! starts ([`preflight`]), and the skip reason of each tag.

use cucumber::gherkin;

use crate::machine::backend::Backend;

use super::world::{all_variants, root};
use crate::template::variant::{Arch, Variant};

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
pub(crate) async fn preflight(backend: Backend, only: Option<&[String]>) -> Preflight {
    let mut fis = None;
    let mut missing = Vec::new();
    if backend == Backend::Qemu {
        let nix = crate::tools::find("nix").is_ok();
        let env = |k: &str| std::env::var(k).ok();
        if let Some(r) = nixos_images_missing(&env, all_variants(), only, nix) {
            missing.push(r);
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
        let arches = selected_arches(all_variants(), only);
        let base = std::env::var(crate::workspace::fixture_flake::ENV_EC2_FIXTURE_FLAKE).ok();
        if let Some(r) = crate::workspace::fixture_flake::ec2_preflight(base.as_deref()).await {
            missing.push(format!("EC2 tier (HARNESS_BACKEND=ec2): {r}"));
        }
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

/// The architectures of the variants a run selects (`HARNESS_VARIANTS`,
/// `None`: every variant), sorted, each once.
pub fn selected_arches(variants: &[Variant], only: Option<&[String]>) -> Vec<Arch> {
    let mut arches: Vec<Arch> = variants
        .iter()
        .filter(|v| only.is_none_or(|o| o.contains(&v.name)))
        .map(|v| v.arch)
        .collect();
    arches.sort();
    arches.dedup();
    arches
}

/// Why the `@nixos` scenarios of the selected variants have no NixOS image,
/// if they have none: each selected variant's architecture needs
/// `HARNESS_IMAGE_<ARCH>` (what a nightly cell exports for its own arch
/// after building the image), or `HARNESS_NIXOS_BUILD` with `nix` on PATH.
/// An arch no selected variant uses needs nothing (a nightly cell builds
/// only its own). A pure function of the environment (`env`), the variants
/// and the selection, so the workflow's cells can be checked against it.
pub fn nixos_images_missing(
    env: &dyn Fn(&str) -> Option<String>,
    variants: &[Variant],
    only: Option<&[String]>,
    nix: bool,
) -> Option<String> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let may_build = nix && set("HARNESS_NIXOS_BUILD");
    let lacking: Vec<String> = selected_arches(variants, only)
        .into_iter()
        .map(crate::image::nixos::env_var)
        .filter(|var| !set(var) && !may_build)
        .collect();
    if lacking.is_empty() {
        return None;
    }
    let vars = lacking.join(", ");
    Some(if nix {
        format!("no NixOS image: expected {vars} (a prebuilt image per selected variant's arch) or HARNESS_NIXOS_BUILD=1 (nix builds it, which needs a binary cache and network), seen neither")
    } else {
        format!("no NixOS image: nix is not installed, and {vars} is not set (one per selected variant's arch)")
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, arch: Arch) -> Variant {
        Variant {
            name: name.into(),
            arch,
            is_spot: false,
            values: Default::default(),
            source: format!("values/{name}.yml").into(),
        }
    }

    fn variants() -> Vec<Variant> {
        vec![
            v("aws-nixos", Arch::X86_64),
            v("aws-nixos-graviton", Arch::Aarch64),
        ]
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_nightly_cell_needs_only_its_own_arch() {
        // What a qemu cell exports: its variant and its own arch's image.
        let only = ["aws-nixos".to_string()];
        let e = env(&[
            ("HARNESS_VARIANTS", "aws-nixos"),
            ("HARNESS_IMAGE_X86_64", "/nix/store/x/nixos.qcow2"),
        ]);
        assert_eq!(
            nixos_images_missing(&e, &variants(), Some(&only), true),
            None
        );
        let only = ["aws-nixos-graviton".to_string()];
        let e = env(&[("HARNESS_IMAGE_AARCH64", "/img")]);
        assert_eq!(
            nixos_images_missing(&e, &variants(), Some(&only), false),
            None
        );
    }

    #[test]
    fn a_selected_arch_without_an_image_is_named() {
        let e = env(&[("HARNESS_IMAGE_X86_64", "/img")]);
        let r = nixos_images_missing(&e, &variants(), None, true).unwrap();
        assert!(
            r.starts_with("no NixOS image") && r.contains("HARNESS_IMAGE_AARCH64"),
            "{r}"
        );
        assert!(!r.contains("HARNESS_IMAGE_X86_64"), "{r}");
        let only = ["aws-nixos-graviton".to_string()];
        let r = nixos_images_missing(&e, &variants(), Some(&only), false).unwrap();
        assert!(
            r.contains("nix is not installed") && r.contains("AARCH64"),
            "{r}"
        );
        // An empty value is no image.
        let e = env(&[
            ("HARNESS_IMAGE_X86_64", " "),
            ("HARNESS_IMAGE_AARCH64", "/a"),
        ]);
        assert!(nixos_images_missing(&e, &variants(), None, true).is_some());
    }

    #[test]
    fn a_build_needs_nix() {
        let e = env(&[("HARNESS_NIXOS_BUILD", "1")]);
        assert_eq!(nixos_images_missing(&e, &variants(), None, true), None);
        assert!(nixos_images_missing(&e, &variants(), None, false).is_some());
        assert_eq!(
            selected_arches(&variants(), None),
            [Arch::X86_64, Arch::Aarch64]
        );
        assert!(selected_arches(&variants(), Some(&["nope".to_string()])).is_empty());
    }
}

//! Where Terraform gets providers from when the harness runs it: a private
//! Terraform CLI configuration (`TF_CLI_CONFIG_FILE`, set only for the
//! harness's own `terraform` children; `~/.terraformrc` is never read or
//! written) with one `filesystem_mirror` per local mirror that holds a
//! provider we need, and `direct` (the registry) for everything else.
//!
//! Mirrors searched, in order:
//! - `HARNESS_TF_MIRROR`, else `${HARNESS_CACHE:-/var/cache/harness}/terraform-mirror`
//!   (what `ci/build-coder-provider.sh` fills with `coder/coder`);
//! - `HARNESS_TF_EXTRA_MIRRORS` (`:`-separated), else `/opt/tf-plugins`
//!   (some machine images ship `hashicorp/aws` there; used when present,
//!   never required).
//!
//! With no mirror holding a provider, Terraform takes it from the registry
//! (`direct`), so the same code works on a machine with registry access.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The coder provider's source address.
pub const CODER: &str = "registry.terraform.io/coder/coder";
/// The AWS provider's source address.
pub const AWS: &str = "registry.terraform.io/hashicorp/aws";
/// Written by `ci/build-coder-provider.sh` into the mirror when it could not
/// build the provider: the exact reason (which module, which error).
pub const BUILD_FAILED_FILE: &str = "coder-provider-build-failed.txt";

/// The cache directory shared with the CI scripts.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HARNESS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/harness"))
}

/// `cache_dir()/<name>` if this user can create and write it, else
/// `<target>/<name>` under `root`: the shared cache is root's when
/// `ci/setup-debian.sh` ran as root and the tests as another user (GitHub's
/// runner user); falling back loses sharing, never the run.
pub fn writable_cache(root: &Path, name: &str) -> PathBuf {
    writable_under(&cache_dir(), &crate::repo::target_dir(root), name)
}

/// [`writable_cache`] with both candidate parents given.
pub fn writable_under(cache: &Path, fallback: &Path, name: &str) -> PathBuf {
    let dir = cache.join(name);
    if std::fs::create_dir_all(&dir).is_ok() && writable(&dir) {
        return dir;
    }
    let alt = fallback.join(name);
    tracing::info!(
        "{} is not writable by this user; using {} instead",
        dir.display(),
        alt.display()
    );
    alt
}

/// Whether a file can be created in `dir` (root passes any mode check).
fn writable(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

/// The mirror `ci/build-coder-provider.sh` installs into.
pub fn own_mirror() -> PathBuf {
    std::env::var_os("HARNESS_TF_MIRROR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("terraform-mirror"))
}

/// Every mirror directory to look in (existing or not).
pub fn mirror_dirs() -> Vec<PathBuf> {
    let mut v = vec![own_mirror()];
    match std::env::var("HARNESS_TF_EXTRA_MIRRORS") {
        Ok(s) => v.extend(s.split(':').filter(|p| !p.is_empty()).map(PathBuf::from)),
        Err(_) => v.push(PathBuf::from("/opt/tf-plugins")),
    }
    v
}

/// The pinned coder provider version (`ci/coder-provider.version`, or
/// `CODER_PROVIDER_VERSION`), without a leading `v`.
pub fn pinned_coder_version(root: &Path) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var("CODER_PROVIDER_VERSION") {
        if !v.trim().is_empty() {
            return Ok(v.trim().trim_start_matches('v').to_string());
        }
    }
    let p = root.join("ci/coder-provider.version");
    let s = std::fs::read_to_string(&p)
        .map_err(|e| anyhow::anyhow!("{}: {e} (the pinned coder provider version)", p.display()))?;
    Ok(s.trim().trim_start_matches('v').to_string())
}

/// Terraform's platform name for this machine (`linux_amd64`, `linux_arm64`).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// Versions of `source` (`host/namespace/type`) a mirror holds for this
/// platform, in the unpacked layout
/// `<mirror>/<host>/<namespace>/<type>/<version>/<os>_<arch>/`.
pub fn versions_in(mirror: &Path, source: &str) -> Vec<String> {
    let dir = mirror.join(source);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| {
            std::fs::read_dir(e.path().join(platform()))
                .map(|mut r| r.next().is_some())
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A written CLI configuration and what it routes where.
#[derive(Debug, Clone)]
pub struct CliConfig {
    pub path: PathBuf,
    /// Provider source → the mirror that serves it (absent: the registry).
    pub mirrored: BTreeMap<String, PathBuf>,
}

impl CliConfig {
    /// The environment a terraform child needs to use it.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "TF_CLI_CONFIG_FILE".to_string(),
            self.path.display().to_string(),
        )]
    }

    /// One line: where each provider comes from.
    pub fn describe(&self, sources: &[&str]) -> String {
        sources
            .iter()
            .map(|s| match self.mirrored.get(*s) {
                Some(m) => format!("{s} from the filesystem mirror {}", m.display()),
                None => format!("{s} from the registry (no local mirror holds it)"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Why the coder provider is not in the mirror, if the build script said so.
    pub fn build_failure(&self) -> Option<String> {
        std::fs::read_to_string(own_mirror().join(BUILD_FAILED_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

/// Write `dir/terraform.rc` routing each of `sources` to the first mirror
/// that holds it (for this platform), everything else to the registry.
pub fn write_cli_config(dir: &Path, sources: &[&str]) -> anyhow::Result<CliConfig> {
    let mirrors = mirror_dirs();
    write_cli_config_with(dir, sources, &mirrors)
}

/// [`write_cli_config`] over an explicit mirror list.
pub fn write_cli_config_with(
    dir: &Path,
    sources: &[&str],
    mirrors: &[PathBuf],
) -> anyhow::Result<CliConfig> {
    let mut mirrored = BTreeMap::new();
    for s in sources {
        if let Some(m) = mirrors.iter().find(|m| !versions_in(m, s).is_empty()) {
            mirrored.insert(s.to_string(), m.clone());
        }
    }
    let mut by_mirror: BTreeMap<&PathBuf, Vec<&str>> = BTreeMap::new();
    for (s, m) in &mirrored {
        by_mirror.entry(m).or_default().push(s);
    }
    let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let list = |v: &[&str]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
    let mut text = String::from(
        "# Written by the harness for its own terraform runs (TF_CLI_CONFIG_FILE).\nprovider_installation {\n",
    );
    for (m, srcs) in &by_mirror {
        text.push_str(&format!(
            "  filesystem_mirror {{\n    path    = {}\n    include = [{}]\n  }}\n",
            quote(&m.display().to_string()),
            list(srcs)
        ));
    }
    let excluded: Vec<&str> = mirrored.keys().map(String::as_str).collect();
    if excluded.is_empty() {
        text.push_str("  direct {}\n");
    } else {
        text.push_str(&format!(
            "  direct {{\n    exclude = [{}]\n  }}\n",
            list(&excluded)
        ));
    }
    text.push_str("}\n");
    std::fs::create_dir_all(dir)?;
    let path = dir.join("terraform.rc");
    std::fs::write(&path, text)?;
    Ok(CliConfig { path, mirrored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_cache_falls_back_to_target() {
        let d = tempfile::tempdir().unwrap();
        let ok = writable_under(&d.path().join("cache"), &d.path().join("target"), "x");
        assert_eq!(ok, d.path().join("cache/x"));
        // A cache this user cannot create (a file where its parent should
        // be; root passes every permission check, so no chmod here).
        std::fs::write(d.path().join("file"), "").unwrap();
        let alt = writable_under(&d.path().join("file"), &d.path().join("target"), "x");
        assert_eq!(alt, d.path().join("target/x"));
    }

    #[test]
    fn routes_mirrored_providers_and_leaves_the_rest_to_the_registry() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("mirror");
        let p = m.join(CODER).join("2.20.0").join(platform());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("terraform-provider-coder_v2.20.0"), "").unwrap();
        // A version directory without this platform's binary does not count.
        std::fs::create_dir_all(m.join(AWS).join("5.0.0").join(platform())).unwrap();
        assert_eq!(versions_in(&m, CODER), vec!["2.20.0".to_string()]);
        assert!(versions_in(&m, AWS).is_empty());
        let c = write_cli_config_with(
            &d.path().join("cfg"),
            &[CODER, AWS],
            std::slice::from_ref(&m),
        )
        .unwrap();
        let text = std::fs::read_to_string(&c.path).unwrap();
        assert!(
            text.contains(&format!("path    = {:?}", m.display().to_string())),
            "{text}"
        );
        assert!(
            text.contains("include = [\"registry.terraform.io/coder/coder\"]"),
            "{text}"
        );
        assert!(
            text.contains("exclude = [\"registry.terraform.io/coder/coder\"]"),
            "{text}"
        );
        assert!(c.describe(&[AWS]).contains("from the registry"));
        // Nothing mirrored: everything from the registry.
        let c = write_cli_config_with(&d.path().join("cfg2"), &[CODER], &[d.path().join("none")])
            .unwrap();
        assert!(std::fs::read_to_string(&c.path)
            .unwrap()
            .contains("direct {}"));
        assert!(c.mirrored.is_empty());
    }
}

//! A private apt root for building guest images from Debian **bookworm**
//! packages on any host that has `apt-get` (Debian, Ubuntu, this machine),
//! without reading or writing the host's apt state.
//!
//! The root is a directory with its own `apt.conf` (passed as `APT_CONFIG`,
//! so the host's `/etc/apt/apt.conf.d` is never read), `etc/sources.list`,
//! `state/` (lists and an empty dpkg `status`), `cache/` and `log/`, and
//! `APT::Architectures { amd64; arm64; }`, so arm64 packages resolve without
//! `dpkg --add-architecture` on the host. Every `apt-get`/`apt-cache` argv
//! also carries the `-o Dir::…=` options ([`AptRoot::options`]) so a reader
//! of a log sees which root a command used.
//!
//! Trust: sources are `signed-by` the Debian archive keyring
//! (`/usr/share/keyrings/debian-archive-keyring.gpg` from the
//! `debian-archive-keyring` package: Debian main, Ubuntu universe;
//! override with `HARNESS_DEBIAN_KEYRING`), and
//! `Acquire::AllowInsecureRepositories` is off. The keyring is not fetched
//! through the root itself: a key downloaded over an unverified channel would
//! verify nothing.
//!
//! Mirror ([`Mirror::from_env_or_host`]): `HARNESS_DEBIAN_MIRROR` (archive
//! URL; `HARNESS_DEBIAN_SECURITY_MIRROR` for the security archive, `none` to
//! leave it out); else the Debian mirror the host's `/etc/apt` already uses
//! (one-line `sources.list` or deb822 `*.sources`, any Debian suite — only
//! the URIs are reused, the suites are always bookworm's); else
//! `http://deb.debian.org/debian` + `http://deb.debian.org/debian-security`
//! (e.g. on Ubuntu runners).
//!
//! How to use it (the contract guest: `image/contract/packages.rs`; every
//! user shares the root, so lists are fetched once):
//!
//! ```no_run
//! use harness::image::apt_root::{deb_arch, AptRoot};
//! use harness::template::variant::Arch;
//! # fn main() -> anyhow::Result<()> {
//! let apt = AptRoot::shared(std::path::Path::new("target"))?; // target/apt-root
//! apt.ensure_updated()?;                          // apt-get update when stale
//! let pkgs = apt.show(&["sudo".to_string()], deb_arch(Arch::Aarch64))?;
//! let dir = tempfile::tempdir()?;
//! let debs = apt.download(&pkgs, dir.path())?;    // verified .debs, in order
//! # let _ = debs; Ok(()) }
//! ```
//!
//! Concurrent users (two test processes building the image for both arches) are
//! serialised by an `flock` on `<root>/.lock`: exclusive for `update`,
//! shared for reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::template::variant::Arch;

/// The Debian release every guest image is built from.
pub const SUITE: &str = "bookworm";
/// Default archive and security mirrors (Ubuntu and other non-Debian hosts).
pub const DEFAULT_ARCHIVE: &str = "http://deb.debian.org/debian";
pub const DEFAULT_SECURITY: &str = "http://deb.debian.org/debian-security";
/// Default keyring, from the `debian-archive-keyring` package.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Both guest architectures.
pub const ALL_ARCHS: &[&str] = &["amd64", "arm64"];
/// Package lists older than this are refreshed by [`AptRoot::ensure_updated`].
pub const MAX_LIST_AGE: Duration = Duration::from_secs(12 * 3600);

/// Debian's name for the architecture.
pub fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// Where the Debian archive (and its security archive) is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub archive: String,
    /// `None`: no security suite (a local mirror that lacks one).
    pub security: Option<String>,
    /// Where this choice came from, for progress and errors.
    pub origin: String,
}

impl Mirror {
    /// `deb.debian.org`.
    pub fn debian_default() -> Mirror {
        Mirror {
            archive: DEFAULT_ARCHIVE.into(),
            security: Some(DEFAULT_SECURITY.into()),
            origin: "default (deb.debian.org)".into(),
        }
    }

    /// `HARNESS_DEBIAN_MIRROR`, else the host's Debian mirror in
    /// `/etc/apt`, else [`Mirror::debian_default`].
    pub fn from_env_or_host() -> Mirror {
        if let Some(m) = Self::from_env(
            std::env::var("HARNESS_DEBIAN_MIRROR").ok().as_deref(),
            std::env::var("HARNESS_DEBIAN_SECURITY_MIRROR")
                .ok()
                .as_deref(),
        ) {
            return m;
        }
        Self::from_host_etc(Path::new("/etc/apt")).unwrap_or_else(Self::debian_default)
    }

    /// The mirror named by the two environment values, if the first is set.
    pub fn from_env(archive: Option<&str>, security: Option<&str>) -> Option<Mirror> {
        let archive = archive.map(str::trim).filter(|s| !s.is_empty())?;
        let security = match security.map(str::trim) {
            None | Some("") => Some(DEFAULT_SECURITY.to_string()),
            Some("none") => None,
            Some(s) => Some(s.to_string()),
        };
        Some(Mirror {
            archive: archive.trim_end_matches('/').to_string(),
            security: security.map(|s| s.trim_end_matches('/').to_string()),
            origin: "HARNESS_DEBIAN_MIRROR".into(),
        })
    }

    /// The Debian mirror configured in an apt etc directory
    /// (`sources.list`, `sources.list.d/*.list`, `sources.list.d/*.sources`),
    /// or `None` if it names no Debian suite (Ubuntu, other distributions).
    pub fn from_host_etc(etc_apt: &Path) -> Option<Mirror> {
        let mut entries = Vec::new();
        let mut files = vec![etc_apt.join("sources.list")];
        if let Ok(rd) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
            let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            more.sort();
            files.extend(more);
        }
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text)),
                Some("list") => entries.extend(parse_one_line(&text)),
                _ => {}
            }
        }
        let mut m = mirror_from_entries(&entries)?;
        m.origin = format!("host's Debian mirror ({})", etc_apt.display());
        Some(m)
    }
}

/// One `deb` source: a URI and its suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub uri: String,
    pub suites: Vec<String>,
}

/// `deb [options] uri suite components…` lines (`deb-src` and comments skipped).
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = rest[end + 1..].trim_start();
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(SourceEntry {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
            });
        }
    }
    out
}

/// deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`; `Enabled: no` skipped).
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    let mut stanza: Vec<(String, String)> = Vec::new();
    let flush = |stanza: &mut Vec<(String, String)>, out: &mut Vec<SourceEntry>| {
        let get = |k: &str| {
            stanza
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let is_deb = get("Types").split_whitespace().any(|t| t == "deb");
        let enabled = !get("Enabled").trim().eq_ignore_ascii_case("no");
        let suites: Vec<String> = get("Suites").split_whitespace().map(String::from).collect();
        if is_deb && enabled && !suites.is_empty() {
            for uri in get("URIs").split_whitespace() {
                out.push(SourceEntry {
                    uri: uri.to_string(),
                    suites: suites.clone(),
                });
            }
        }
        stanza.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut stanza, &mut out);
        } else if line.starts_with([' ', '\t']) {
            if let Some(last) = stanza.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            stanza.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut stanza, &mut out);
    out
}

/// Debian's codenames and aliases (the base of a suite such as `bookworm-updates`).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
];

/// `Some(true)` for a Debian security suite, `Some(false)` for another Debian
/// suite, `None` for a suite that is not Debian's (Ubuntu's `noble`, …).
fn debian_suite_kind(suite: &str) -> Option<bool> {
    let (base, security) = if let Some(b) = suite.strip_suffix("-security") {
        (b, true)
    } else if let Some(b) = suite.strip_suffix("/updates") {
        (b, true)
    } else {
        (
            suite
                .strip_suffix("-updates")
                .or_else(|| suite.strip_suffix("-backports"))
                .or_else(|| suite.strip_suffix("-proposed-updates"))
                .unwrap_or(suite),
            false,
        )
    };
    DEBIAN_SUITES.contains(&base).then_some(security)
}

/// The first Debian archive URI and the first Debian security URI.
pub fn mirror_from_entries(entries: &[SourceEntry]) -> Option<Mirror> {
    let mut archive = None;
    let mut security = None;
    for e in entries {
        for s in &e.suites {
            match debian_suite_kind(s) {
                Some(false) if archive.is_none() => archive = Some(e.uri.clone()),
                Some(true) if security.is_none() => security = Some(e.uri.clone()),
                _ => {}
            }
        }
    }
    Some(Mirror {
        archive: archive?.trim_end_matches('/').to_string(),
        security: security.map(|s| s.trim_end_matches('/').to_string()),
        origin: String::new(),
    })
}

/// One resolved package: what `apt-get download` fetches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    /// `amd64`, `arm64` or `all`.
    pub arch: String,
    pub sha256: String,
}

impl Pkg {
    /// `name:arch=version`, the `apt-get download` spelling.
    pub fn spec(&self) -> String {
        if self.arch == "all" {
            format!("{}={}", self.name, self.version)
        } else {
            format!("{}:{}={}", self.name, self.arch, self.version)
        }
    }

    /// The file name `apt-get download` writes (`:` escaped as `%3a`).
    pub fn deb_file(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// Stanzas of `apt-cache show` output.
pub fn parse_show(out: &str) -> Vec<Pkg> {
    let mut pkgs = Vec::new();
    for stanza in out.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if let (Some(name), Some(version), Some(arch)) =
            (field("Package:"), field("Version:"), field("Architecture:"))
        {
            pkgs.push(Pkg {
                name,
                version,
                arch,
                sha256: field("SHA256:").unwrap_or_default(),
            });
        }
    }
    pkgs
}

/// A private apt root (see the module documentation).
#[derive(Debug, Clone)]
pub struct AptRoot {
    dir: PathBuf,
    mirror: Mirror,
    archs: Vec<String>,
    keyring: PathBuf,
}

impl AptRoot {
    /// The root shared by every guest image of a repository build:
    /// `<target>/apt-root`, mirror from [`Mirror::from_env_or_host`], both archs.
    pub fn shared(target_dir: &Path) -> anyhow::Result<AptRoot> {
        AptRoot::new(
            &target_dir.join("apt-root"),
            Mirror::from_env_or_host(),
            ALL_ARCHS,
        )
    }

    /// Creates (or reuses) the root in `dir` and writes its configuration.
    /// Checks that apt and the keyring are there; fetches nothing.
    /// The keyring is `HARNESS_DEBIAN_KEYRING` or [`DEFAULT_KEYRING`].
    pub fn new(dir: &Path, mirror: Mirror, archs: &[&str]) -> anyhow::Result<AptRoot> {
        let keyring = std::env::var_os("HARNESS_DEBIAN_KEYRING")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEYRING));
        Self::with_keyring(dir, mirror, archs, &keyring)
    }

    /// [`AptRoot::new`] with an explicit keyring file.
    pub fn with_keyring(
        dir: &Path,
        mirror: Mirror,
        archs: &[&str],
        keyring: &Path,
    ) -> anyhow::Result<AptRoot> {
        for tool in ["apt-get", "apt-cache"] {
            crate::tools::find(tool).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (guest images are built from Debian packages with apt: \
                     run on Debian or Ubuntu)"
                )
            })?;
        }
        if archs.is_empty() {
            bail!("an apt root needs at least one architecture");
        }
        if !keyring.is_file() {
            bail!(
                "the Debian archive keyring {} is missing: install the \
                 `debian-archive-keyring` package (Debian main, Ubuntu universe) \
                 or point HARNESS_DEBIAN_KEYRING at it",
                keyring.display()
            );
        }
        let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
        let root = AptRoot {
            dir,
            mirror,
            archs: archs.iter().map(|s| s.to_string()).collect(),
            keyring: keyring.to_path_buf(),
        };
        root.write_config()?;
        Ok(root)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn config_file(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }
    fn stamp(&self) -> PathBuf {
        self.dir.join("updated-for")
    }

    /// The private `sources.list`: bookworm, bookworm-updates and (if any)
    /// bookworm-security, `signed-by` the keyring, for our architectures.
    pub fn sources_list(&self) -> String {
        let opts = format!(
            "[arch={} signed-by={}]",
            self.archs.join(","),
            self.keyring.display()
        );
        let mut s = format!(
            "# written by the harness ({}); not the host's apt\n\
             deb {opts} {} {SUITE} main\n\
             deb {opts} {} {SUITE}-updates main\n",
            self.mirror.origin, self.mirror.archive, self.mirror.archive
        );
        if let Some(sec) = &self.mirror.security {
            s.push_str(&format!("deb {opts} {sec} {SUITE}-security main\n"));
        }
        s
    }

    /// The `Dir::…` and architecture options, as `-o` arguments and in the
    /// private `apt.conf`.
    pub fn options(&self) -> Vec<(String, String)> {
        let p = |p: PathBuf| p.display().to_string();
        vec![
            ("Dir::Etc".into(), p(self.etc())),
            (
                "Dir::Etc::sourcelist".into(),
                p(self.etc().join("sources.list")),
            ),
            (
                "Dir::Etc::sourceparts".into(),
                p(self.etc().join("sources.list.d")),
            ),
            ("Dir::Etc::parts".into(), p(self.etc().join("apt.conf.d"))),
            (
                "Dir::Etc::preferences".into(),
                p(self.etc().join("preferences")),
            ),
            (
                "Dir::Etc::preferencesparts".into(),
                p(self.etc().join("preferences.d")),
            ),
            (
                "Dir::Etc::trusted".into(),
                p(self.etc().join("trusted.gpg")),
            ),
            (
                "Dir::Etc::trustedparts".into(),
                p(self.etc().join("trusted.gpg.d")),
            ),
            ("Dir::State".into(), p(self.state())),
            ("Dir::State::lists".into(), p(self.state().join("lists"))),
            ("Dir::State::status".into(), p(self.state().join("status"))),
            ("Dir::Cache".into(), p(self.dir.join("cache"))),
            ("Dir::Log".into(), p(self.dir.join("log"))),
            ("APT::Architecture".into(), self.archs[0].clone()),
            ("APT::Architectures".into(), self.archs.join(",")),
            ("Acquire::AllowInsecureRepositories".into(), "false".into()),
            (
                "Acquire::AllowDowngradeToInsecureRepositories".into(),
                "false".into(),
            ),
            ("Acquire::Languages".into(), "none".into()),
        ]
    }

    fn write_config(&self) -> anyhow::Result<()> {
        for d in [
            self.etc().join("apt.conf.d"),
            self.etc().join("preferences.d"),
            self.etc().join("sources.list.d"),
            self.etc().join("trusted.gpg.d"),
            self.state().join("lists/partial"),
            self.dir.join("cache/archives/partial"),
            self.dir.join("log"),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        let status = self.state().join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let mut conf =
            String::from("// private apt root of the harness; see harness/src/image/apt_root.rs\n");
        for (k, v) in self.options() {
            if k == "APT::Architectures" {
                let list: String = self.archs.iter().map(|a| format!("\"{a}\"; ")).collect();
                conf.push_str(&format!("{k} {{ {list}}};\n"));
            } else {
                conf.push_str(&format!("{k} \"{v}\";\n"));
            }
        }
        write_if_changed(&self.config_file(), &conf)?;
        write_if_changed(&self.etc().join("sources.list"), &self.sources_list())?;
        Ok(())
    }

    /// `apt-get` or `apt-cache` bound to this root: `APT_CONFIG` points at
    /// the private `apt.conf` (so the host's is never read) and the argv
    /// starts with every `-o` of [`AptRoot::options`].
    pub fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("APT_CONFIG", self.config_file());
        c.env("LC_ALL", "C.UTF-8");
        for (k, v) in self.options() {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c
    }

    fn lock(&self, exclusive: bool) -> anyhow::Result<Flock> {
        Flock::new(&self.dir.join(".lock"), exclusive)
    }

    /// `apt-get update` in this root (signature-checked lists).
    pub fn update(&self) -> anyhow::Result<()> {
        let _l = self.lock(true)?;
        self.update_locked()
    }

    fn update_locked(&self) -> anyhow::Result<()> {
        let sources = self.sources_list();
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        let out = cmd.output().context("cannot run apt-get update")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get update exits 0 on some fetch failures and reports them as
        // `W:`/`E:` lines; a missing or unsigned index must not pass.
        let failed = stderr
            .lines()
            .filter(|l| {
                l.starts_with("E:") || l.contains("Failed to fetch") || l.contains("is not signed")
            })
            .collect::<Vec<_>>();
        if !out.status.success() || !failed.is_empty() {
            bail!(
                "apt-get update in the private apt root {} failed ({}), mirror {} ({}):\n{}",
                self.dir.display(),
                out.status,
                self.mirror.archive,
                self.mirror.origin,
                stderr.trim_end()
            );
        }
        std::fs::write(self.stamp(), sources)?;
        Ok(())
    }

    /// Runs [`AptRoot::update`] when the lists are missing, were fetched
    /// for other sources, or are older than [`MAX_LIST_AGE`]. If a refresh
    /// of still-matching lists fails (offline), the old lists are used with
    /// a warning.
    pub fn ensure_updated(&self) -> anyhow::Result<()> {
        let _l = self.lock(true)?;
        let stamp = self.stamp();
        let matches =
            std::fs::read_to_string(&stamp).ok().as_deref() == Some(&*self.sources_list());
        if matches {
            let age = std::fs::metadata(&stamp)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a < MAX_LIST_AGE) {
                return Ok(());
            }
        } else {
            let _ = std::fs::remove_file(&stamp);
        }
        match self.update_locked() {
            Ok(()) => Ok(()),
            Err(e) if matches => {
                eprintln!(
                    "apt root {}: refresh failed, using the previous lists: {e:#}",
                    self.dir.display()
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// What every resolution in this root depends on: its sources and each
    /// index file in its lists directory (name, size, modification time;
    /// `apt-get update` rewrites a list only when it changed), hashed. Two
    /// equal fingerprints mean apt resolves the same names to the same
    /// packages, so a resolution can be kept under it
    /// (`image::contract::packages::memo`).
    pub fn lists_fingerprint(&self) -> anyhow::Result<String> {
        use sha2::{Digest, Sha256};
        let lists = self.state().join("lists");
        let mut files = vec![];
        for e in std::fs::read_dir(&lists).with_context(|| format!("{}", lists.display()))? {
            let e = e?;
            let m = e.metadata()?;
            if !m.is_file() || e.file_name() == "lock" {
                continue;
            }
            let mtime = m
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            files.push(format!(
                "{} {} {}",
                e.file_name().to_string_lossy(),
                m.len(),
                mtime.as_nanos()
            ));
        }
        files.sort();
        let mut h = Sha256::new();
        h.update(self.sources_list());
        for f in files {
            h.update(f);
            h.update("\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    /// `apt-cache policy <args>` output.
    pub fn policy(&self, args: &[String]) -> anyhow::Result<String> {
        let _l = self.lock(false)?;
        run(
            self.command("apt-cache").arg("policy").args(args),
            "apt-cache policy",
        )
    }

    /// `apt-cache depends <pkg>` output.
    pub fn depends(&self, pkg: &str) -> anyhow::Result<String> {
        let _l = self.lock(false)?;
        run(
            self.command("apt-cache").args(["depends", pkg]),
            "apt-cache depends",
        )
    }

    /// Candidate versions of `names` for `arch` (Debian spelling; packages
    /// that are `Architecture: all` resolve to `all`), sorted by name.
    /// Errors name every package the root does not know.
    pub fn show(&self, names: &[String], arch: &str) -> anyhow::Result<Vec<Pkg>> {
        let _l = self.lock(false)?;
        // apt-cache show exits 100 if any name is unknown; parse what it printed.
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names.iter().map(|n| format!("{n}:{arch}")))
            .output()
            .context("cannot run apt-cache show")?;
        let mut found = parse_show(&String::from_utf8_lossy(&out.stdout));
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !found.iter().any(|p| &p.name == *n))
            .collect();
        if !missing.is_empty() {
            // Architecture: all packages are not found under `name:arch`.
            let out = self
                .command("apt-cache")
                .args(["show", "--no-all-versions"])
                .args(missing.iter().map(|s| s.as_str()))
                .output()
                .context("cannot run apt-cache show")?;
            found.extend(
                parse_show(&String::from_utf8_lossy(&out.stdout))
                    .into_iter()
                    .filter(|p| p.arch == "all"),
            );
        }
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !found.iter().any(|p| &p.name == *n))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "Debian {SUITE} (apt root {}, mirror {}) has no {arch} or arch-all \
                 candidate for: {}",
                self.dir.display(),
                self.mirror.archive,
                missing.join(", ")
            );
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| a.name == b.name);
        Ok(found)
    }

    /// `apt-get download` every package into `dir` (hashes checked against
    /// the signed lists); returns the .deb paths in the order of `pkgs`.
    pub fn download(&self, pkgs: &[Pkg], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let _l = self.lock(false)?;
        let out = self
            .command("apt-get")
            .arg("download")
            .args(pkgs.iter().map(Pkg::spec))
            .current_dir(dir)
            .output()
            .context("cannot run apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download (apt root {}) failed ({}) for {} packages into {}:\n{}",
                self.dir.display(),
                out.status,
                pkgs.len(),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        pkgs.iter()
            .map(|p| {
                let path = dir.join(p.deb_file());
                if path.is_file() {
                    Ok(path)
                } else {
                    bail!(
                        "apt-get download succeeded but {} is missing in {}",
                        p.deb_file(),
                        dir.display()
                    )
                }
            })
            .collect()
    }
}

fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        std::fs::write(path, content).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Runs `cmd`; its stdout, or an error naming `what`, the argv and stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} ({cmd:?})"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {:?}\nstderr:\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An `flock` held until dropped.
struct Flock(std::fs::File);

impl Flock {
    fn new(path: &Path, exclusive: bool) -> anyhow::Result<Flock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("open lock {}", path.display()))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("flock {}", path.display()));
        }
        Ok(Flock(f))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_in(dir: &Path) -> AptRoot {
        // The keyring check needs a file; the tests never fetch.
        let key = dir.join("keyring.gpg");
        std::fs::write(&key, "").unwrap();
        let root = AptRoot {
            dir: dir.join("root"),
            mirror: Mirror::debian_default(),
            archs: vec!["amd64".into(), "arm64".into()],
            keyring: key,
        };
        root.write_config().unwrap();
        root
    }

    #[test]
    fn the_lists_fingerprint_changes_with_a_list_and_only_then() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_in(tmp.path());
        let lists = root.state().join("lists");
        let list = lists.join("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages");
        std::fs::write(&list, "Package: a\nVersion: 1\n").unwrap();
        let before = root.lists_fingerprint().unwrap();
        assert_eq!(root.lists_fingerprint().unwrap(), before, "stable");
        // the lock and the partial directory are not lists
        std::fs::write(lists.join("lock"), "").unwrap();
        assert_eq!(root.lists_fingerprint().unwrap(), before, "lock ignored");
        std::fs::write(&list, "Package: a\nVersion: 22\n").unwrap();
        let after = root.lists_fingerprint().unwrap();
        assert_ne!(after, before, "a rewritten list changes it");
        std::fs::write(lists.join("other_Packages"), "").unwrap();
        assert_ne!(
            root.lists_fingerprint().unwrap(),
            after,
            "a new list changes it"
        );
    }

    #[test]
    fn argv_never_points_at_the_hosts_apt_state() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_in(tmp.path());
        for tool in ["apt-get", "apt-cache"] {
            let cmd = root.command(tool);
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            for key in [
                "Dir::Etc",
                "Dir::Etc::sourcelist",
                "Dir::Etc::sourceparts",
                "Dir::Etc::parts",
                "Dir::Etc::trustedparts",
                "Dir::State",
                "Dir::State::lists",
                "Dir::State::status",
                "Dir::Cache",
                "Dir::Log",
            ] {
                let want = format!("{key}=");
                let pos = args
                    .iter()
                    .position(|a| a.starts_with(&want))
                    .unwrap_or_else(|| panic!("{tool} argv lacks -o {key}: {args:?}"));
                assert_eq!(args[pos - 1], "-o");
                let value = &args[pos][want.len()..];
                assert!(
                    Path::new(value).starts_with(root.dir()),
                    "{key}={value} is outside the private root"
                );
            }
            assert!(args.iter().any(|a| a == "APT::Architectures=amd64,arm64"));
            // Every path-valued option lies inside the private root.
            for a in &args {
                if let Some((k, v)) = a.split_once('=') {
                    assert!(
                        !v.starts_with('/') || Path::new(v).starts_with(root.dir()),
                        "{tool} argv points {k} outside the private root: {v}"
                    );
                }
            }
            let env: Vec<_> = cmd.get_envs().collect();
            assert!(
                env.iter().any(|(k, v)| *k == "APT_CONFIG"
                    && v.is_some_and(|v| Path::new(v).starts_with(root.dir()))),
                "APT_CONFIG is not the private apt.conf: {env:?}"
            );
        }
        // The private apt.conf sets the same and the status file is empty.
        let conf = std::fs::read_to_string(root.config_file()).unwrap();
        assert!(conf.contains(&format!(
            "Dir::State::status \"{}\";",
            root.dir().join("state/status").display()
        )));
        assert!(conf.contains("APT::Architectures { \"amd64\"; \"arm64\"; };"));
        assert!(conf.contains("Acquire::AllowInsecureRepositories \"false\";"));
        assert_eq!(
            std::fs::read_to_string(root.dir().join("state/status")).unwrap(),
            ""
        );
    }

    #[test]
    fn private_sources_are_bookworm_signed_and_multiarch() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_in(tmp.path());
        let s = std::fs::read_to_string(root.dir().join("etc/sources.list")).unwrap();
        let key = tmp.path().join("keyring.gpg");
        let opts = format!("[arch=amd64,arm64 signed-by={}]", key.display());
        assert!(s.contains(&format!(
            "deb {opts} http://deb.debian.org/debian bookworm main"
        )));
        assert!(s.contains(&format!(
            "deb {opts} http://deb.debian.org/debian bookworm-updates main"
        )));
        assert!(s.contains(&format!(
            "deb {opts} http://deb.debian.org/debian-security bookworm-security main"
        )));
        let mut local = root.clone();
        local.mirror.security = None;
        assert!(!local.sources_list().contains("security"));
    }

    #[test]
    fn host_mirror_from_one_line_and_deb822_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path();
        std::fs::create_dir_all(etc.join("sources.list.d")).unwrap();
        // No Debian sources at all (an Ubuntu host): None.
        std::fs::write(
            etc.join("sources.list"),
            "deb http://archive.ubuntu.com/ubuntu noble main universe\n\
             deb http://security.ubuntu.com/ubuntu noble-security main\n",
        )
        .unwrap();
        assert_eq!(Mirror::from_host_etc(etc), None);
        // deb822 as on this machine, next to an unrelated third-party source.
        std::fs::write(
            etc.join("sources.list.d/other.sources"),
            "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("sources.list.d/debian.sources"),
            "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: trixie trixie-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\nComponents: main\n\n\
             Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\nComponents: main\n",
        )
        .unwrap();
        let m = Mirror::from_host_etc(etc).unwrap();
        assert_eq!(m.archive, "http://mirror.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.example/debian-security")
        );
        // One-line format, security listed first, with options.
        let e = parse_one_line(
            "# comment\ndeb-src http://x/debian bookworm main\n\
             deb [signed-by=/k.gpg arch=amd64] http://sec.example/debian-security bookworm-security main\n\
             deb http://arc.example/debian stable main # trailing\n",
        );
        let m = mirror_from_entries(&e).unwrap();
        assert_eq!(m.archive, "http://arc.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://sec.example/debian-security")
        );
        // Disabled stanzas do not count.
        assert!(
            parse_deb822("Types: deb\nEnabled: no\nURIs: http://a/debian\nSuites: bookworm\n")
                .is_empty()
        );
    }

    #[test]
    fn env_mirror_overrides() {
        assert_eq!(Mirror::from_env(None, None), None);
        assert_eq!(Mirror::from_env(Some(" "), None), None);
        let m = Mirror::from_env(Some("http://m/debian/"), None).unwrap();
        assert_eq!(m.archive, "http://m/debian");
        assert_eq!(m.security.as_deref(), Some(DEFAULT_SECURITY));
        assert_eq!(
            Mirror::from_env(Some("http://m/debian"), Some("none"))
                .unwrap()
                .security,
            None
        );
    }

    #[test]
    fn show_parsing_and_spec() {
        let out = "Package: sudo\nVersion: 1.9.13p3-1+deb12u4\nArchitecture: arm64\nSHA256: ab\n\n\
                   Package: libaudit-common\nVersion: 1:3.0.9-1\nArchitecture: all\n\nbogus\n";
        let p = parse_show(out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].spec(), "sudo:arm64=1.9.13p3-1+deb12u4");
        assert_eq!(p[0].sha256, "ab");
        assert_eq!(p[1].spec(), "libaudit-common=1:3.0.9-1");
        assert_eq!(p[1].deb_file(), "libaudit-common_1%3a3.0.9-1_all.deb");
    }

    #[test]
    fn missing_keyring_is_named() {
        // The error we want comes after the apt-get check.
        if crate::tools::find("apt-get").is_err() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("no-such-keyring.gpg");
        let err = AptRoot::with_keyring(
            &tmp.path().join("r"),
            Mirror::debian_default(),
            ALL_ARCHS,
            &missing,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("no-such-keyring.gpg") && msg.contains("debian-archive-keyring"),
            "{msg}"
        );
    }
}

//! The `nixos` image provider: `nix build` of the NixOS test image
//! `nixos-vm#packages.<system>.ec2-image` (the EC2 image plus the test-only
//! QEMU glue), or a prebuilt image from `HARNESS_IMAGE_X86_64` /
//! `HARNESS_IMAGE_AARCH64`.
//!
//! The build streams nix's stderr (progress and build logs) to our stderr
//! with a prefix and keeps a tail of it; failures are classified (nix
//! missing or too old, evaluation error, no network / substituter, build
//! failure) into messages that say what to do.

pub mod dry_run;
pub mod guest_rules;
pub mod release;
pub mod seed_check;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{BootImage, ImageKind};
use crate::template::variant::Arch;

/// Oldest Nix with flakes and `nix build --json` at all.
pub const FLAKES_MIN: NixVersion = NixVersion(2, 4, 0);
/// Oldest Nix we support (Debian 12's nix-bin).
pub const SUPPORTED_MIN: NixVersion = NixVersion(2, 8, 0);
/// Lines of nix's stderr kept for error messages.
const TAIL_LINES: usize = 60;
/// Extra arguments for every `nix build` (whitespace-separated), e.g.
/// `--option sandbox false` in containers without user namespaces.
pub const EXTRA_ARGS_ENV: &str = "HARNESS_NIX_ARGS";

/// A Nix version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NixVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for NixVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Parse `nix --version` output: `nix (Nix) 2.8.0`,
/// `nix (Determinate Nix 3.6.2) 2.29.0`, `nix (Lix, like Nix) 2.91.1`,
/// `nix (Nix) 2.24.0pre20240101_dirty`.  The version is the last token.
pub fn parse_version(out: &str) -> Option<NixVersion> {
    let tok = out.lines().next()?.split_whitespace().last()?;
    let mut nums = tok.split('.').map(|p| {
        let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse::<u32>().ok()
    });
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().flatten().unwrap_or(0);
    Some(NixVersion(major, minor, patch))
}

/// Why a NixOS image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NixBuildError {
    #[error("nix is not installed (expected a `nix` binary on PATH, seen none); install Nix >= {min}: Debian `apt-get install -y nix-bin`, elsewhere the Determinate installer (https://install.determinate.systems), or set HARNESS_IMAGE_<ARCH> to a prebuilt image", min = SUPPORTED_MIN)]
    Missing,
    #[error("nix {seen} at {path} is too old: expected >= {min} (flakes need >= {flakes}); upgrade Nix or set HARNESS_IMAGE_<ARCH> to a prebuilt image", min = SUPPORTED_MIN, flakes = FLAKES_MIN)]
    TooOld { seen: NixVersion, path: String },
    #[error("cannot tell the nix version: `{path} --version` printed {seen:?}")]
    UnknownVersion { seen: String, path: String },
    #[error("nix could not download what the build needs (no network or no binary cache / substituter reachable); this machine must reach github.com and cache.nixos.org, or use a prebuilt image via HARNESS_IMAGE_<ARCH>. nix said:\n{}", .lines.join("\n"))]
    Offline { lines: Vec<String> },
    #[error("nix is not set up to build here; for a single-user store as root without nix-daemon (e.g. Debian's nix-bin in a container) set HARNESS_NIX_ARGS=\"--option build-users-group '' --option sandbox false\", or create the nixbld group and users / start nix-daemon. nix said:\n{}", .errors.join("\n"))]
    Setup { errors: Vec<String> },
    #[error("nix could not evaluate `{installable}`; expected a derivation, seen these errors:\n{}", .errors.join("\n"))]
    Eval {
        installable: String,
        errors: Vec<String>,
    },
    #[error("nix build of `{installable}` failed in a builder; last lines of its log follow (full log: `nix log <drv>` for the failed derivation):\n{}", .tail.join("\n"))]
    BuildFailed {
        installable: String,
        tail: Vec<String>,
    },
    #[error("`nix build {installable}` failed ({status}); last lines of stderr:\n{}", .tail.join("\n"))]
    Other {
        installable: String,
        status: String,
        tail: Vec<String>,
    },
}

const OFFLINE_PATTERNS: &[&str] = &[
    "unable to download",
    "could not resolve host",
    "couldn't resolve host",
    "cannot connect",
    "failed to connect",
    "connection refused",
    "network is unreachable",
    "unable to fetch",
    "timeout was reached",
];

/// Local Nix setup problems (single-user store without the build group,
/// no sandbox support in a container).
const SETUP_PATTERNS: &[&str] = &[
    "build-users-group",
    "sandbox",
    "cannot open connection to remote store",
    "permission denied",
];

/// The `error:` lines of nix's stderr with their indented continuation
/// lines (warnings, e.g. retried downloads, are left out).
fn error_block(tail: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut in_error = false;
    for l in tail {
        if l.trim_start().starts_with("error:") {
            in_error = true;
            errors.push(l.clone());
        } else if in_error && (l.starts_with(' ') || l.is_empty()) {
            errors.push(l.clone());
        } else {
            in_error = false;
        }
    }
    while errors.last().is_some_and(|l| l.trim().is_empty()) {
        errors.pop();
    }
    errors
}

/// Classify a failed `nix build` from the tail of its stderr.  Only the
/// final `error:` block decides (nix warns about unreachable caches and
/// then may fail for another reason).
pub fn classify(installable: &str, status: &str, tail: &[String]) -> NixBuildError {
    let errors = error_block(tail);
    let lower = errors.join("\n").to_ascii_lowercase();
    if OFFLINE_PATTERNS.iter().any(|p| lower.contains(p)) {
        return NixBuildError::Offline { lines: errors };
    }
    if SETUP_PATTERNS.iter().any(|p| lower.contains(p)) {
        return NixBuildError::Setup { errors };
    }
    let build_failed = (lower.contains("builder for") && lower.contains("failed"))
        || lower.contains("cannot build")
        || (lower.contains("build of") && lower.contains("failed"));
    if build_failed {
        return NixBuildError::BuildFailed {
            installable: installable.to_string(),
            tail: tail.to_vec(),
        };
    }
    if !errors.is_empty() {
        return NixBuildError::Eval {
            installable: installable.to_string(),
            errors,
        };
    }
    NixBuildError::Other {
        installable: installable.to_string(),
        status: status.to_string(),
        tail: tail.to_vec(),
    }
}

/// The flake attribute of the NixOS test image for `arch`.
pub fn attribute(arch: Arch) -> String {
    format!("packages.{}.ec2-image", arch.nix_system())
}

/// Arguments of `nix build` (without the program name).
pub fn build_argv(flake: &str, attr: &str, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--extra-experimental-features",
        "nix-command flakes",
        "build",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("{flake}#{attr}"));
    for a in ["--no-link", "--json", "--print-build-logs"] {
        v.push(a.to_string());
    }
    v.extend(extra.iter().cloned());
    v
}

/// The exact command line, shell-quoted, for plans and error messages.
pub fn command_line(flake: &str, attr: &str, extra: &[String]) -> String {
    let mut s = String::from("nix");
    for a in build_argv(flake, attr, extra) {
        s.push(' ');
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./#:=+@".contains(c))
        {
            s.push_str(&a);
        } else {
            s.push('\'');
            s.push_str(&a.replace('\'', r"'\''"));
            s.push('\'');
        }
    }
    s
}

/// Output paths from `nix build --json` (`[{"drvPath":…, "outputs":{"out":…}}]`)
/// or from `--print-out-paths` (one path a line).
pub fn parse_out_paths(stdout: &str) -> anyhow::Result<Vec<PathBuf>> {
    let t = stdout.trim();
    if t.starts_with('[') {
        #[derive(serde::Deserialize)]
        struct Built {
            outputs: std::collections::BTreeMap<String, PathBuf>,
        }
        let built: Vec<Built> = serde_json::from_str(t)
            .with_context(|| format!("nix build --json printed unexpected JSON: {t}"))?;
        let mut out = Vec::new();
        for b in built {
            // `out` first, then the others.
            let mut outs: Vec<(String, PathBuf)> = b.outputs.into_iter().collect();
            outs.sort_by_key(|(k, _)| k != "out");
            out.extend(outs.into_iter().map(|(_, p)| p));
        }
        if out.is_empty() {
            anyhow::bail!("nix build --json listed no outputs: {t}");
        }
        return Ok(out);
    }
    let out: Vec<PathBuf> = t
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    if out.is_empty() {
        anyhow::bail!("nix build printed no store path on stdout (seen {t:?})");
    }
    Ok(out)
}

/// Where nix is and which version it is; errors if missing or too old.
pub fn check_nix() -> Result<(PathBuf, NixVersion), NixBuildError> {
    let nix = crate::tools::find("nix").map_err(|_| NixBuildError::Missing)?;
    let out = Command::new(&nix)
        .arg("--version")
        .output()
        .map_err(|_| NixBuildError::Missing)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let path = nix.display().to_string();
    let v = parse_version(&text).ok_or(NixBuildError::UnknownVersion {
        seen: text.trim().to_string(),
        path: path.clone(),
    })?;
    if v < SUPPORTED_MIN {
        return Err(NixBuildError::TooOld { seen: v, path });
    }
    Ok((nix, v))
}

/// Extra `nix build` arguments from [`EXTRA_ARGS_ENV`].
pub fn extra_args_from_env() -> Vec<String> {
    std::env::var(EXTRA_ARGS_ENV)
        .map(|s| split_args(&s))
        .unwrap_or_default()
}

/// Split on whitespace; a token `''` or `""` is an empty argument.
pub fn split_args(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|t| match t {
            "''" | "\"\"" => String::new(),
            t => t.to_string(),
        })
        .collect()
}

/// Run `nix build <flake>#<attr>`, streaming stderr to ours (prefixed
/// `label`), and return the output store paths.  Blocking.
pub fn build_flake(
    flake: &str,
    attr: &str,
    extra: &[String],
    label: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let (nix, version) = check_nix()?;
    let installable = format!("{flake}#{attr}");
    eprintln!(
        "[{label}] nix {version}: {}",
        command_line(flake, attr, extra)
    );
    let mut child = Command::new(&nix)
        .args(build_argv(flake, attr, extra))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", nix.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let label_owned = label.to_string();
    let tail_thread = std::thread::spawn(move || {
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{label_owned}] {line}");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail)
    });
    let mut stdout = String::new();
    if let Some(mut so) = child.stdout.take() {
        use std::io::Read;
        so.read_to_string(&mut stdout)?;
    }
    let status = child.wait()?;
    let tail = tail_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(classify(&installable, &status.to_string(), &tail).into());
    }
    parse_out_paths(&stdout)
}

/// The disk image file inside an image store path: the file named by
/// `nix-support/image-info.json` (`disks.root.file` or `file`, as
/// nixpkgs' make-disk-image writes it), else the first `*.qcow2`,
/// `*.vhd`, `*.img` or `*.raw` file.
pub fn image_file(out: &Path) -> anyhow::Result<PathBuf> {
    if out.is_file() {
        return Ok(out.to_path_buf());
    }
    let info = out.join("nix-support/image-info.json");
    if let Ok(text) = std::fs::read_to_string(&info) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", info.display()))?;
        let file = v
            .pointer("/disks/root/file")
            .or_else(|| v.get("file"))
            .and_then(|f| f.as_str());
        if let Some(f) = file {
            let p = PathBuf::from(f);
            let p = if p.is_absolute() { p } else { out.join(p) };
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for ext in ["qcow2", "vhd", "img", "raw"] {
        if let Some(p) = entries
            .iter()
            .find(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        {
            return Ok(p.clone());
        }
    }
    anyhow::bail!(
        "no disk image in {}: expected nix-support/image-info.json or a *.qcow2/*.vhd/*.img/*.raw file, seen {:?}",
        out.display(),
        entries
    )
}

/// `HARNESS_IMAGE_X86_64` / `HARNESS_IMAGE_AARCH64`.
pub fn env_var(arch: Arch) -> String {
    format!("HARNESS_IMAGE_{}", arch.as_str().to_ascii_uppercase())
}

/// The NixOS test image for `arch`: the prebuilt image from
/// [`env_var`] if set, else `nix build` of `<repo>/nixos-vm`.  Blocking.
pub fn image(repo_root: &Path, arch: Arch) -> anyhow::Result<BootImage> {
    if let Some(p) = std::env::var_os(env_var(arch)) {
        let mut img = super::path::image(Path::new(&p), arch, ImageKind::Nixos)
            .with_context(|| format!("{} is set", env_var(arch)))?;
        img.description = format!(
            "prebuilt NixOS image {} (from {})",
            img.description,
            env_var(arch)
        );
        return Ok(img);
    }
    let flake = repo_root.join("nixos-vm").display().to_string();
    let attr = attribute(arch);
    let outs = build_flake(
        &flake,
        &attr,
        &extra_args_from_env(),
        &format!("nix {arch}"),
    )?;
    let out = &outs[0];
    let file = image_file(out)?;
    let mut img = super::path::image(&file, arch, ImageKind::Nixos)?;
    img.description = format!("NixOS test image {flake}#{attr} = {}", file.display());
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("nix (Nix) 2.8.0\n"),
            Some(NixVersion(2, 8, 0))
        );
        assert_eq!(
            parse_version("nix (Determinate Nix 3.6.2) 2.29.0"),
            Some(NixVersion(2, 29, 0))
        );
        assert_eq!(
            parse_version("nix (Lix, like Nix) 2.91.1"),
            Some(NixVersion(2, 91, 1))
        );
        assert_eq!(
            parse_version("nix (Nix) 2.24.0pre20240101_dirty"),
            Some(NixVersion(2, 24, 0))
        );
        assert_eq!(parse_version("nix (Nix) 2.3"), Some(NixVersion(2, 3, 0)));
        assert_eq!(parse_version("garbage"), None);
        assert!(NixVersion(2, 3, 16) < FLAKES_MIN);
        assert!(NixVersion(2, 7, 9) < SUPPORTED_MIN);
        assert!(NixVersion(2, 10, 0) > SUPPORTED_MIN);
    }

    #[test]
    fn argv() {
        let a = build_argv(
            "/r/nixos-vm",
            &attribute(Arch::Aarch64),
            &["--option".into(), "sandbox".into(), "false".into()],
        );
        assert_eq!(
            a,
            [
                "--extra-experimental-features",
                "nix-command flakes",
                "build",
                "/r/nixos-vm#packages.aarch64-linux.ec2-image",
                "--no-link",
                "--json",
                "--print-build-logs",
                "--option",
                "sandbox",
                "false"
            ]
        );
        assert_eq!(
            command_line("/r/nixos-vm", &attribute(Arch::X86_64), &[]),
            "nix --extra-experimental-features 'nix-command flakes' build /r/nixos-vm#packages.x86_64-linux.ec2-image --no-link --json --print-build-logs"
        );
    }

    #[test]
    fn out_paths() {
        let json = r#"[{"drvPath":"/nix/store/aaa-x.drv","outputs":{"dev":"/nix/store/ddd-x-dev","out":"/nix/store/bbb-x"}}]"#;
        assert_eq!(
            parse_out_paths(json).unwrap(),
            [
                PathBuf::from("/nix/store/bbb-x"),
                PathBuf::from("/nix/store/ddd-x-dev")
            ]
        );
        assert_eq!(
            parse_out_paths("/nix/store/bbb-x\n").unwrap(),
            [PathBuf::from("/nix/store/bbb-x")]
        );
        assert!(parse_out_paths("").is_err());
        assert!(parse_out_paths("[]").is_err());
        assert!(parse_out_paths("[{\"x\":1}]").is_err());
    }

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn classification() {
        let offline = lines("warning: error: unable to download 'https://github.com/NixOS/nixpkgs/archive/abc.tar.gz': Could not resolve host: github.com (6)\nerror: unable to download 'https://github.com/NixOS/nixpkgs/archive/abc.tar.gz': Could not resolve host: github.com (6)");
        let e = classify("f#a", "exit status: 1", &offline);
        assert!(matches!(e, NixBuildError::Offline { .. }), "{e:?}");
        assert!(e.to_string().contains("Could not resolve host"));

        let eval = lines("error: undefined variable 'nixpkgz'\n\n       at /tmp/f/flake.nix:3:5:\n\n            2|\n(use '--show-trace' to show detailed location information)");
        let e = classify("f#a", "exit status: 1", &eval);
        match &e {
            NixBuildError::Eval { errors, .. } => {
                assert_eq!(errors[0], "error: undefined variable 'nixpkgz'");
                assert!(errors.iter().any(|l| l.contains("flake.nix:3:5")));
                assert!(!errors.iter().any(|l| l.contains("show-trace")));
            }
            other => panic!("{other:?}"),
        }

        let build =
            lines("x> boom\nerror: builder for '/nix/store/aaa-x.drv' failed with exit code 1");
        assert!(matches!(
            classify("f#a", "exit status: 1", &build),
            NixBuildError::BuildFailed { .. }
        ));
        let build = lines("error: Cannot build '/nix/store/aaa-x.drv'.");
        assert!(matches!(
            classify("f#a", "exit status: 1", &build),
            NixBuildError::BuildFailed { .. }
        ));
        let setup = lines("warning: error: unable to download 'https://cache.nixos.org/nix-cache-info': Couldn't resolve host name (6); retrying in 350 ms\nwarning: the group 'nixbld' specified in 'build-users-group' does not exist\nerror: the group 'nixbld' specified in 'build-users-group' does not exist");
        let e = classify("f#a", "exit status: 1", &setup);
        assert!(matches!(e, NixBuildError::Setup { .. }), "{e:?}");
        assert!(e.to_string().contains("HARNESS_NIX_ARGS"));
        assert_eq!(
            split_args("--option build-users-group '' --option sandbox false"),
            [
                "--option",
                "build-users-group",
                "",
                "--option",
                "sandbox",
                "false"
            ]
        );
        let other = lines("killed");
        assert!(matches!(
            classify("f#a", "signal: 9", &other),
            NixBuildError::Other { .. }
        ));
        assert!(NixBuildError::Missing.to_string().contains("Determinate"));
        assert!(NixBuildError::TooOld {
            seen: NixVersion(2, 3, 0),
            path: "/usr/bin/nix".into()
        }
        .to_string()
        .contains(">= 2.8.0"));
    }

    #[test]
    fn image_in_store_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("nix-support")).unwrap();
        std::fs::write(d.path().join("nixos.vhd"), b"x").unwrap();
        std::fs::write(d.path().join("other.qcow2"), b"x").unwrap();
        std::fs::write(
            d.path().join("nix-support/image-info.json"),
            format!(r#"{{"label":"25.05","system":"x86_64-linux","file":"{}","disks":{{"root":{{"file":"{}"}}}}}}"#,
                d.path().join("nixos.vhd").display(), d.path().join("nixos.vhd").display()),
        )
        .unwrap();
        assert_eq!(image_file(d.path()).unwrap(), d.path().join("nixos.vhd"));
        std::fs::remove_file(d.path().join("nix-support/image-info.json")).unwrap();
        assert_eq!(image_file(d.path()).unwrap(), d.path().join("other.qcow2"));
        let e = tempfile::tempdir().unwrap();
        assert!(image_file(e.path())
            .unwrap_err()
            .to_string()
            .contains("no disk image"));
        assert_eq!(env_var(Arch::Aarch64), "HARNESS_IMAGE_AARCH64");
    }
}

//! `ci/setup-debian.sh` under a fake PATH: Rust is checked before anything
//! is installed and a missing or old toolchain gets the exact rustup
//! command and the workspace's rust-version; the invoking user joins the
//! docker group where Docker is installed (or the script says why not) and
//! gets the harness cache when the script ran through sudo.
//!
//! Every program the script may call is either a stub that logs its argv
//! (apt-get, sudo, usermod, chown, …) or a link to the real one (sed, awk,
//! sort, …), so nothing is installed and the host's own cargo is out of
//! sight.  The script's functions are called by sourcing it, as the script
//! documents.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn script() -> PathBuf {
    repo().join("ci/setup-debian.sh")
}

/// The workspace's rust-version, read the way a reader of Cargo.toml would.
fn rust_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("rust-version"))
        .and_then(|v| v.split('"').nth(1))
        .expect("rust-version in Cargo.toml")
        .to_string()
}

/// Real tools the script needs besides the stubs.
const REAL: [&str; 16] = [
    "bash", "sed", "sort", "head", "dirname", "cut", "awk", "tr", "grep", "cat", "uname", "env",
    "getent", "id", "mkdir", "ls",
];

/// Programs that would install or change something: each logs its argv.
const LOGGED: [&str; 10] = [
    "apt-get",
    "apt-cache",
    "sudo",
    "python3",
    "npm",
    "usermod",
    "chown",
    "install",
    "ln",
    "tee",
];

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let s = Sandbox { dir };
        std::fs::create_dir_all(s.bin()).unwrap();
        std::fs::create_dir_all(s.home()).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        for tool in REAL {
            let found = std::env::split_paths(&path)
                .filter(|d| !d.to_string_lossy().contains(".cargo"))
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{tool} not on PATH"));
            std::os::unix::fs::symlink(found, s.bin().join(tool)).unwrap();
        }
        for tool in LOGGED {
            s.stub(tool, "exit 0");
        }
        s
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// An executable `name` in `dir` (default: the sandbox's bin) that logs
    /// its argv and then runs `body`.
    fn stub_in(&self, dir: &Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{name} $*\" >> \"$LOG\"\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn stub(&self, name: &str, body: &str) {
        self.stub_in(&self.bin(), name, body);
    }

    /// A fake rustc (and cargo) reporting `version`, in `dir`.
    fn rust(&self, dir: &Path, version: &str) {
        self.stub_in(
            dir,
            "rustc",
            &format!("echo 'rustc {version} (0000000 2026-01-01)'"),
        );
        self.stub_in(dir, "cargo", &format!("echo 'cargo {version}'"));
    }

    /// bash with only the sandbox on PATH, running `cmd`.
    fn run(&self, cmd: &str, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(self.bin().join("bash"));
        c.arg("-c")
            .arg(cmd)
            .env_clear()
            .env("PATH", self.bin())
            .env("HOME", self.home())
            .env("LOG", self.log())
            .current_dir(self.dir.path());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Source the script, then call `call`.
    fn call(&self, call: &str, env: &[(&str, &str)]) -> Output {
        self.run(&format!(". '{}'\n{call}", script().display()), env)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn without_cargo_the_script_stops_before_installing_anything() {
    let s = Sandbox::new();
    let o = s.run(&format!("bash '{}'", script().display()), &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected a failure, got {o:?}");
    let want = rust_version();
    assert!(err.contains("cargo not found"), "{err}");
    assert!(err.contains(&format!("Rust >= {want}")), "{err}");
    assert!(err.contains("https://sh.rustup.rs"), "{err}");
    assert!(err.contains("--component clippy,rustfmt"), "{err}");
    assert_eq!(s.calls(), "", "something ran before the Rust check:\n{err}");
}

#[test]
fn an_old_rustc_is_refused_with_the_version_it_needs() {
    let s = Sandbox::new();
    // Debian 12's apt rustc, on PATH.
    s.rust(&s.bin(), "1.63.0");
    let o = s.call("check_rust", &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("is Rust 1.63.0"), "{err}");
    assert!(
        err.contains(&format!("needs >= {}", rust_version())),
        "{err}"
    );
    assert!(err.contains("sh.rustup.rs"), "{err}");
    // With rustup next to it, the advice is a rustup update.
    s.stub("rustup", "exit 0");
    let err = stderr(&s.call("check_rust", &[]));
    assert!(err.contains("rustup update stable"), "{err}");
    // One minor below the minimum is still too old.
    let want = rust_version();
    let (major, minor) = want.split_once('.').unwrap();
    let below = format!("{major}.{}.9", minor.parse::<u32>().unwrap() - 1);
    s.rust(&s.bin(), &below);
    assert!(!s.call("check_rust", &[]).status.success(), "{below}");
}

#[test]
fn a_new_enough_rust_passes_wherever_rustup_put_it() {
    let s = Sandbox::new();
    let want = rust_version();
    // Exactly the minimum, in ~/.cargo/bin of a shell that has not sourced ~/.cargo/env.
    s.rust(&s.home().join(".cargo/bin"), &format!("{want}.0"));
    let o = s.call("check_rust && echo \"dir=$RUST_BIN_DIR\"", &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("Rust {want}.0")), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(".cargo/bin"),
        "{o:?}"
    );
    // Versions compare as numbers: 1.100 > 1.94.
    s.rust(&s.bin(), "1.100.0");
    let o = s.call("check_rust", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `id` as seen by a root shell started by sudo for `alice`, whose groups are `groups`.
fn id_stub(groups: &str) -> String {
    format!(
        "case \"$1\" in -u) echo 0;; -un) echo root;; -gn) echo alice;; -nG) echo '{groups}';; *) echo 'uid=0(root)';; esac"
    )
}

#[test]
fn the_sudo_caller_joins_the_docker_group_once() {
    let s = Sandbox::new();
    s.stub(
        "getent",
        "[ \"$1 $2\" = 'group docker' ] && echo 'docker:x:999:'",
    );
    s.stub("id", &id_stub("alice users"));
    let o = s.call("docker_group", &[("SUDO_USER", "alice")]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        s.calls().contains("usermod -aG docker alice"),
        "{}\n{err}",
        s.calls()
    );
    assert!(err.contains("newgrp docker"), "{err}");

    // Already a member: nothing changes.
    let s = Sandbox::new();
    s.stub(
        "getent",
        "[ \"$1 $2\" = 'group docker' ] && echo 'docker:x:999:alice'",
    );
    s.stub("id", &id_stub("alice users docker"));
    let err = stderr(&s.call("docker_group", &[("SUDO_USER", "alice")]));
    assert!(!s.calls().contains("usermod"), "{}", s.calls());
    assert!(err.contains("alice is in the docker group"), "{err}");
}

#[test]
fn without_docker_or_a_caller_the_script_says_why_it_adds_no_one() {
    let s = Sandbox::new();
    s.stub("getent", "exit 2");
    s.stub("id", &id_stub("alice users"));
    let err = stderr(&s.call("docker_group", &[("SUDO_USER", "alice")]));
    assert!(
        err.contains("SKIPPED docker group: Docker is not installed"),
        "{err}"
    );
    assert!(!s.calls().contains("usermod"), "{}", s.calls());

    let s = Sandbox::new();
    s.stub("getent", "echo 'docker:x:999:'");
    s.stub("id", &id_stub("root"));
    let err = stderr(&s.call("docker_group", &[]));
    assert!(
        err.contains("SKIPPED docker group: run as root without sudo"),
        "{err}"
    );
    assert!(!s.calls().contains("usermod"), "{}", s.calls());
}

#[test]
fn the_cache_goes_to_the_sudo_caller_and_stays_roots_otherwise() {
    let s = Sandbox::new();
    s.stub("id", &id_stub("alice users"));
    let cache = s.dir.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let o = s.call(
        "hand_cache_to_user",
        &[("SUDO_USER", "alice"), ("HARNESS_CACHE", &cache_s)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        s.calls()
            .contains(&format!("chown -R alice:alice {cache_s}")),
        "{}",
        s.calls()
    );

    let s = Sandbox::new();
    s.stub("id", &id_stub("root"));
    let o = s.call("hand_cache_to_user", &[("HARNESS_CACHE", &cache_s)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!s.calls().contains("chown"), "{}", s.calls());
    assert!(stderr(&o).contains("stays root's"), "{}", stderr(&o));
}

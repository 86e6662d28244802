//! `ci/provider-lock.sh`, which only runs where the registry is reachable
//! (the nightly, a maintainer's machine), at its boundary: a double of
//! `terraform` (named as one; it writes the lock file the registry would
//! give) on PATH, the real script, bash, awk and coreutils. The script must
//! fail when a locked provider leaves the tested majors, write the lock on
//! `generate`, and install a committed lock read-only on `check`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn lock_text(aws: &str, coder: &str) -> String {
    let block = |addr: &str, v: &str, c: &str| {
        format!("provider \"registry.terraform.io/{addr}\" {{\n  version     = \"{v}\"\n  constraints = \"{c}\"\n  hashes = [\n    \"h1:a=\",\n    \"h1:b=\",\n    \"zh:00\",\n  ]\n}}\n\n")
    };
    format!(
        "# This file is maintained automatically by \"terraform init\".\n\n{}{}",
        block("coder/coder", coder, "~> 2.20"),
        block("hashicorp/aws", aws, "~> 5.100")
    )
}

/// A copy of the repository's `ci/provider-lock.sh` and `templates/`, and
/// a `terraform` DOUBLE that logs its arguments and, for `providers lock`,
/// writes `$FAKE_LOCK` as the lock file.
struct Sandbox {
    t: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("repo/ci")).unwrap();
        std::fs::copy(
            repo().join("ci/provider-lock.sh"),
            t.path().join("repo/ci/provider-lock.sh"),
        )
        .unwrap();
        harness::template::terraform::copy_tree(
            &repo().join("templates"),
            &t.path().join("repo/templates"),
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        let tf = t.path().join("bin/terraform");
        std::fs::write(
            &tf,
            format!(
                "#!/bin/sh\n# DOUBLE of terraform for ci/provider-lock.sh\necho \"$PWD: $*\" >> '{}'\ncase \"$1 $2\" in\n  'providers lock') cat \"$FAKE_LOCK\" > .terraform.lock.hcl ;;\n  'init -backend=false') [ -z \"$FAKE_INIT_FAIL\" ] || exit 1 ;;\nesac\n",
                t.path().join("terraform.log").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { t }
    }

    fn run(&self, mode: &str, lock: &str, env: &[(&str, &str)]) -> (i32, String) {
        let lock_file = self.t.path().join("fake.lock.hcl");
        std::fs::write(&lock_file, lock).unwrap();
        let path = format!(
            "{}:{}",
            self.t.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("bash");
        c.arg(self.t.path().join("repo/ci/provider-lock.sh"))
            .arg(mode)
            .env("PATH", path)
            .env("FAKE_LOCK", &lock_file)
            .env(
                "PROVIDER_LOCK_OUT",
                self.t.path().join("out/terraform.lock.hcl"),
            );
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.t.path().join("terraform.log")).unwrap_or_default()
    }
}

#[test]
fn check_accepts_the_tested_majors_and_refuses_the_next() {
    let s = Sandbox::new();
    let (code, out) = s.run("check", &lock_text("5.100.0", "2.20.0"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hashicorp/aws 5.100.0"), "{out}");
    assert!(
        s.log()
            .contains("providers lock -platform=linux_amd64 -platform=linux_arm64"),
        "{}",
        s.log()
    );
    // The generated lock is kept for a maintainer to commit.
    assert!(s.t.path().join("out/terraform.lock.hcl").is_file());
    // No committed lock: nothing is installed from one.
    assert!(!s.log().contains("-lockfile=readonly"), "{}", s.log());

    let (code, out) = s.run("check", &lock_text("6.2.0", "2.20.0"), &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("hashicorp/aws locks version '6.2.0', expected major 5"),
        "{out}"
    );
    let (code, out) = s.run("check", &lock_text("5.100.0", "3.0.0"), &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("coder/coder locks version '3.0.0'"), "{out}");
}

#[test]
fn generate_writes_the_lock_and_check_installs_a_committed_one_read_only() {
    let s = Sandbox::new();
    let lock = lock_text("5.100.0", "2.20.0");
    let (code, out) = s.run("generate", &lock, &[]);
    assert_eq!(code, 0, "{out}");
    let written = s.t.path().join("repo/templates/.terraform.lock.hcl");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), lock);
    // The written lock is one harness lint accepts.
    let root = s.t.path().join("repo");
    let f = harness::lint::provider_pins::check(&root);
    assert!(f.is_empty(), "{f:?}");

    let (code, out) = s.run("check", &lock, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        s.log()
            .contains("init -backend=false -input=false -lockfile=readonly"),
        "{}",
        s.log()
    );
    let (code, out) = s.run("check", &lock, &[("FAKE_INIT_FAIL", "1")]);
    assert_ne!(
        code, 0,
        "a committed lock the registry refuses fails: {out}"
    );
    let (code, out) = s.run("bogus", &lock, &[]);
    assert_eq!(code, 2, "{out}");
}

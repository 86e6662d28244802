//! `harness image path` and `harness image nixos` with a prebuilt image
//! (HARNESS_IMAGE_<ARCH>): format detection and error messages, through
//! the binary.  No nix build runs here.

use std::process::Command;

fn harness(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.args(args)
        .env(
            "HARNESS_REPO",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap(),
        )
        .env_remove("HARNESS_IMAGE_X86_64")
        .env_remove("HARNESS_IMAGE_AARCH64");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run harness")
}

#[test]
fn path_detects_qcow2_and_reports_missing_files() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("disk.qcow2");
    let mut data = b"QFI\xfb\0\0\0\x03".to_vec();
    data.resize(8192, 0);
    std::fs::write(&f, data).unwrap();
    let out = harness(
        &[
            "image",
            "path",
            f.to_str().unwrap(),
            "--arch",
            "x86_64",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base_format"], "qcow2");
    assert_eq!(v["kind"], "path");

    let out = harness(
        &[
            "image",
            "path",
            "/nonexistent/disk.img",
            "--arch",
            "aarch64",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("image file not found") && err.contains("seen nothing"),
        "{err}"
    );
}

#[test]
fn nixos_uses_the_prebuilt_image_from_the_environment() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("nixos.img");
    std::fs::write(&f, vec![0u8; 4096]).unwrap();
    let out = harness(
        &["image", "nixos", "--arch", "aarch64", "--json"],
        &[("HARNESS_IMAGE_AARCH64", &f)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "nixos");
    assert_eq!(v["base_format"], "raw");
    assert!(v["description"]
        .as_str()
        .unwrap()
        .contains("HARNESS_IMAGE_AARCH64"));
}

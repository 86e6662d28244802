//! `harness e2e --plan` runs nothing and covers every values/ variant:
//! images per architecture, the Coder containers, one template build per
//! variant and every @nixos scenario × variant.

use std::process::Command;

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn harness(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .env("HARNESS_REPO", repo_root())
        .env_remove("HARNESS_IMAGE_X86_64")
        .env_remove("HARNESS_IMAGE_AARCH64")
        .output()
        .expect("run harness")
}

fn variant_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo_root().join("values"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn json_plan_covers_every_variant() {
    let out = harness(&["e2e", "--plan", "--json"]);
    assert!(
        out.status.success(),
        "harness e2e --plan --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    let names = variant_names();
    assert!(names.len() >= 4, "{names:?}");

    let mut templates: Vec<String> = p["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["variant"].as_str().unwrap().to_string())
        .collect();
    templates.sort();
    assert_eq!(templates, names);

    let images = p["images"].as_array().unwrap();
    let arches: Vec<&str> = images.iter().map(|i| i["arch"].as_str().unwrap()).collect();
    assert_eq!(arches, ["x86_64", "aarch64"]);
    for i in images {
        let cmd = i["command"].as_str().unwrap();
        assert!(
            cmd.starts_with("nix --extra-experimental-features 'nix-command flakes' build "),
            "{cmd}"
        );
        assert!(cmd.contains("nixos-vm#packages."), "{cmd}");
        assert!(cmd.contains("-linux.ec2-image"), "{cmd}");
    }

    let containers = p["containers"].as_array().unwrap();
    assert!(containers.iter().any(|c| c["image"]
        .as_str()
        .unwrap()
        .starts_with("ghcr.io/coder/coder:v2.")));
    assert!(containers.iter().all(|c| c["network"] == "host"));
    let env = containers[1]["env"].to_string();
    assert!(env.contains("CODER_ACCESS_URL=http://169.0.0.2:"), "{env}");

    let ws = p["workspaces"].as_array().unwrap();
    for n in &names {
        assert!(
            ws.iter().any(|w| w["variant"] == n.as_str()),
            "no workspace for {n}"
        );
    }
    let uris: Vec<&str> = ws
        .iter()
        .map(|w| w["parameters"]["flake_uri"].as_str().unwrap())
        .collect();
    // The fixture flakes as the guest sees them (nixos-vm/guest-fixtures.nix).
    for f in ["good", "broken", "broken-build"] {
        let want = format!("path:/var/lib/harness/fixtures#{f}");
        assert!(uris.contains(&want.as_str()), "no {want} in {uris:?}");
    }
    assert!(ws.iter().all(|w| w["parameters"]["agent_user"]
        .as_str()
        .is_some_and(|u| !u.is_empty())));
}

#[test]
fn text_plan_names_images_containers_and_parameters() {
    let out = harness(&["e2e", "--plan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing is run"), "{text}");
    assert!(
        text.contains("build:    nix --extra-experimental-features"),
        "{text}"
    );
    assert!(text.contains("(network host)"), "{text}");
    assert!(text.contains("flake_uri=path:"), "{text}");
    for n in variant_names() {
        assert!(text.contains(&n), "{n} missing from the plan:\n{text}");
    }
}

/// Without `--plan` it runs the scenarios with cucumber's options after
/// `--`; a bad option is refused, naming it, before any scenario starts.
#[test]
fn without_plan_it_runs_and_refuses_a_bad_cucumber_option() {
    let out = harness(&["e2e", "--", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-option"), "{err}");
    assert!(!err.contains("started:"), "a scenario started: {err}");
}

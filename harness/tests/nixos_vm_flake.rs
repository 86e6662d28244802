//! `nixos-vm/flake.nix` under a real `nix flake check` (Debian's nix 2.8),
//! offline: nixpkgs is replaced by a TEST DOUBLE
//! (`tests/fixtures/nixpkgs-stub`, see its README) that evaluates no NixOS
//! module but fails when the flake check evaluates the deliberately broken
//! fixture, or evaluates the template's bootstrap module without
//! `amazon-image.nix` (root filesystem, boot loader) or without an agent
//! user. What this proves: which outputs `nix flake check` evaluates and
//! which modules `checks.<system>.bootstrap-eval` hands to nixpkgs. What it
//! cannot: that the real NixOS evaluation succeeds (nightly CI builds the
//! image with the real nixpkgs). Fails (does not skip) without nix and git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    harness::repo::root().unwrap()
}

fn system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            let text = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(&dst, text.replace("@system@", &system())).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=harness",
            "-c",
            "user.email=harness@localhost",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch copy: `repo/` (a git repository with `nixos-vm/` and the
/// bootstrap module, at their relative places) and `nixpkgs/` (the stub).
struct Scratch {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    nixpkgs: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_dir(&root().join("nixos-vm"), &repo.join("nixos-vm"));
    let boot = repo.join("templates/modules/bootstrap");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::copy(
        root().join("templates/modules/bootstrap/bootstrap.nix"),
        boot.join("bootstrap.nix"),
    )
    .unwrap();
    // The probe shell the NixOS test image shares with the contract guest
    // (nixos-vm/flake.nix copies it into the guest's nixpkgs).
    let probe = repo.join("harness/contract-guest");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::copy(
        root().join("harness/contract-guest/probe-shell"),
        probe.join("probe-shell"),
    )
    .unwrap();
    // The locks pin github:NixOS/nixpkgs; the stub replaces it.
    let _ = std::fs::remove_file(repo.join("nixos-vm/flake.lock"));
    let _ = std::fs::remove_file(repo.join("nixos-vm/ec2/flake.lock"));
    git(&repo, &["init", "-q", "."]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "scratch"]);
    let nixpkgs = dir.path().join("nixpkgs");
    copy_dir(
        &root().join("harness/tests/fixtures/nixpkgs-stub"),
        &nixpkgs,
    );
    Scratch {
        _dir: dir,
        repo,
        nixpkgs,
    }
}

impl Scratch {
    /// Replace `old` by `new` in nixos-vm/flake.nix (must occur) and commit.
    fn mutate(&self, old: &str, new: &str) {
        let p = self.repo.join("nixos-vm/flake.nix");
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(old), "flake.nix no longer contains {old:?}");
        std::fs::write(&p, s.replace(old, new)).unwrap();
        git(&self.repo, &["commit", "-qam", "mutation"]);
    }

    /// What every nix call on the copy needs: the stub for nixpkgs, no
    /// build users, no sandbox, no substituters.
    fn nix_args(&self) -> Vec<String> {
        let mut v = vec![
            "--no-write-lock-file".to_string(),
            "--override-input".into(),
            "nixpkgs".into(),
            format!("path:{}", self.nixpkgs.display()),
        ];
        v.extend(harness::image::nixos::split_args(
            "--option build-users-group '' --option sandbox false --option substituters ''",
        ));
        v.extend(harness::image::nixos::extra_args_from_env());
        v
    }

    /// `nix eval --json <dir>#<attr> --apply <apply>` on the copy, with the
    /// stub for nixpkgs: Ok(stdout) or Err(stderr).
    fn eval(&self, dir: &str, attr: &str, apply: &str) -> Result<String, String> {
        harness::image::nixos::check_nix().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new("nix")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["eval", "--json", "--no-write-lock-file"])
            .arg("--override-input")
            .arg("nixpkgs")
            .arg(format!("path:{}", self.nixpkgs.display()))
            .args(harness::image::nixos::split_args(
                "--option build-users-group '' --option sandbox false --option substituters ''",
            ))
            .args(harness::image::nixos::extra_args_from_env())
            .arg(format!(
                "git+file://{}?dir={dir}#{attr}",
                self.repo.display()
            ))
            .args(["--apply", apply])
            .output()
            .expect("nix");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// `nix flake check` on the copy: Ok(output) or Err(output).
    fn flake_check(&self) -> Result<String, String> {
        if let Err(e) = harness::image::nixos::check_nix() {
            panic!("{e}\n(on Debian run ci/setup-debian.sh, which installs nix-bin)");
        }
        let out = Command::new("nix")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["flake", "check", "--no-write-lock-file"])
            .arg("--override-input")
            .arg("nixpkgs")
            .arg(format!("path:{}", self.nixpkgs.display()))
            .args(harness::image::nixos::split_args(
                "--option build-users-group '' --option sandbox false --option substituters ''",
            ))
            .args(harness::image::nixos::extra_args_from_env())
            .arg(format!("git+file://{}?dir=nixos-vm", self.repo.display()))
            .output()
            .expect("nix");
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

#[test]
fn flake_check_passes_without_evaluating_the_broken_fixture() {
    let s = scratch();
    let out = s
        .flake_check()
        .unwrap_or_else(|e| panic!("nix flake check failed:\n{e}"));
    assert!(out.contains("running flake checks"), "{out}");
}

#[test]
fn flake_check_fails_when_the_broken_fixture_is_a_nixos_configuration() {
    let s = scratch();
    // As before the fix: every fixture under nixosConfigurations.
    s.mutate(
        r#"        good-aarch64 = fixture "good" "aarch64-linux";"#,
        r#"        good-aarch64 = fixture "good" "aarch64-linux";
        broken = fixture "broken" "x86_64-linux";"#,
    );
    let e = s.flake_check().unwrap_err();
    assert!(
        e.contains("the deliberately broken fixture was evaluated"),
        "{e}"
    );
}

#[test]
fn bootstrap_eval_fails_without_amazon_image_or_agent_user() {
    let s = scratch();
    s.mutate(
        r#"                "${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
                ../templates/modules/bootstrap/bootstrap.nix"#,
        "                ../templates/modules/bootstrap/bootstrap.nix",
    );
    let e = s.flake_check().unwrap_err();
    assert!(e.contains("without amazon-image.nix"), "{e}");

    let s = scratch();
    s.mutate(r#"{ coderBootstrap.agentUser = "coder"; }"#, "{ }");
    let e = s.flake_check().unwrap_err();
    assert!(e.contains("without coderBootstrap.agentUser"), "{e}");
}

#[test]
fn the_ec2_fixture_flake_has_every_fixture_for_both_arches() {
    // What EC2 instances switch to: <HARNESS_EC2_FIXTURE_FLAKE>#<fixture>-<arch>
    // (harness::workspace::fixture_flake::flake_uri).
    let s = scratch();
    let names = s
        .eval("nixos-vm/ec2", "nixosConfigurations", "builtins.attrNames")
        .unwrap_or_else(|e| panic!("nix eval failed:\n{e}"));
    let names: Vec<String> = serde_json::from_str(&names).unwrap();
    let mut want = Vec::new();
    for fixture in ["broken", "broken-build", "good"] {
        for arch in harness::template::variant::Arch::ALL {
            let uri = harness::workspace::fixture_flake::flake_uri(
                harness::machine::backend::Backend::Ec2,
                arch,
                fixture,
                Some("github:o/r"),
            )
            .unwrap();
            want.push(uri.split_once('#').unwrap().1.to_string());
        }
    }
    want.sort();
    assert_eq!(names, want);
    // The good fixture evaluates (the stub checks its module list).
    s.eval(
        "nixos-vm/ec2",
        "nixosConfigurations.good-aarch64.config.system.build.toplevel",
        "t: t.name",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The seed check end to end against the nixpkgs double: the user-data is
/// rendered by real Terraform and decoded as the guest decodes it, the
/// guest's system is evaluated through a channel built the way the image
/// builder builds it, and the drvPaths are compared. The double's drvPath
/// models a system by the module files it reaches and the agent user (see
/// the stub's eval-config.nix), so this proves the plumbing and the guest's
/// file layout, not real NixOS's answer (the nightly runs it on nixpkgs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_bootstrap_is_the_system_the_guest_evaluates() {
    use harness::image::nixos::seed_check;
    let arch: harness::template::variant::Arch = std::env::consts::ARCH.parse().unwrap();
    let s = scratch();
    let flake = format!("git+file://{}?dir=nixos-vm", s.repo.display());
    let done = seed_check::run(&root(), &flake, arch, &s.nix_args())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(done.len(), seed_check::SEEDED_USERS.len());
    assert_ne!(done[0].1.seeded, done[1].1.seeded, "one system per user");

    // A seed evaluated against nixpkgs without the guest's QEMU glue (not
    // what root's channel holds): the check fails naming both drvPaths.
    s.mutate(
        r#"      bootstrapFor = system: user: (evalGuest system [
        "${guestSrc system}/nixos/modules/virtualisation/amazon-image.nix""#,
        r#"      bootstrapFor = system: user: (evalGuest system [
        "${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix""#,
    );
    let e = format!(
        "{:#}",
        seed_check::run(&root(), &flake, arch, &s.nix_args())
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("seeded (nixos-vm/flake.nix bootstrapFor): /nix/store/")
            && e.contains("guest (configuration.nix via root's channel): /nix/store/"),
        "{e}"
    );
}

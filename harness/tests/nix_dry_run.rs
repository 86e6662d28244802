//! The offline check's dry-run commands (`workspace::real::offline`) under
//! the real nix on this machine (Debian's nix 2.8), against stand-ins of
//! nixpkgs' `nixos/default.nix` and of the fixture flake (a bare
//! `builtins.derivation`, no nixpkgs): nix's own output is parsed, and the
//! verdict fails while the system is missing and passes once it is built.
//! (The guest runs nixos-25.05's nix; the wording is the same
//! `printMissing` in both, see `image/nixos/dry_run.rs`.) Fails (does not
//! skip) without nix.

use std::process::Command;

use harness::workspace::real::offline;

/// Single-user store as root, no sandbox, no daemon, no binary cache.
const NIX_CONFIG: &str = "build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command flakes\n";

fn sh(cmd: &str) -> (i32, String) {
    if let Err(e) = harness::image::nixos::check_nix() {
        panic!("{e}\n(on Debian run ci/setup-debian.sh, which installs nix-bin)");
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A marker that makes each run's derivation new (not yet in the store).
fn fresh() -> String {
    format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

#[test]
fn bootstrap_dry_run_fails_until_the_system_is_in_the_store() {
    let d = tempfile::tempdir().unwrap();
    let np = d.path().join("nixpkgs/nixos");
    std::fs::create_dir_all(&np).unwrap();
    std::fs::write(
        np.join("default.nix"),
        format!(
            r#"{{ configuration ? import <nixos-config> }}:
{{ system = derivation {{ name = "stub-system-${{configuration.tag}}"; system = "{}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }}; }}
"#,
            system()
        ),
    )
    .unwrap();
    let conf = d.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("configuration.nix"),
        format!("{{ tag = \"{}\"; }}\n", fresh()),
    )
    .unwrap();
    // nixos-config in NIX_PATH points elsewhere: -I must win, as for the user-data.
    let nix_path = format!(
        "nixpkgs={}:nixos-config=/nonexistent",
        d.path().join("nixpkgs").display()
    );
    let cmd = offline::bootstrap_command_for(&nix_path, &conf.display().to_string());
    let (status, out) = sh(&cmd);
    let e = offline::judge("bootstrap", &cmd, status, &out).unwrap_err();
    assert!(e.contains("1 derivation(s) would be BUILT"), "{e}");
    assert!(e.contains("-stub-system-"), "{e}");

    let (status, out) = sh(&cmd.replace(" --dry-run", ""));
    assert_eq!(status, 0, "{out}");
    let (status, out) = sh(&cmd);
    offline::judge("bootstrap", &cmd, status, &out).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fixture_dry_run_fails_until_the_system_is_in_the_store() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}: {{
    nixosConfigurations.good.config.system.build.toplevel = derivation {{
      name = "stub-good-{}"; system = "{}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ];
    }};
  }};
}}
"#,
            fresh(),
            system()
        ),
    )
    .unwrap();
    let dir = d.path().display().to_string();
    let cmd = offline::fixture_command_for(&dir, "good");
    let (status, out) = sh(&cmd);
    let e = offline::judge("good", &cmd, status, &out).unwrap_err();
    assert!(
        e.contains("would be BUILT") && e.contains("-stub-good-"),
        "{e}"
    );

    let (status, out) = sh(&cmd.replace(" --dry-run", ""));
    assert_eq!(status, 0, "{out}");
    let (status, out) = sh(&cmd);
    offline::judge("good", &cmd, status, &out).unwrap_or_else(|e| panic!("{e}"));

    // An evaluation error is a failure too, never "nothing to do".
    let cmd = offline::fixture_command_for(&dir, "missing");
    let (status, out) = sh(&cmd);
    assert!(offline::judge("missing", &cmd, status, &out).is_err());
}

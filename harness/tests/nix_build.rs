//! Real `nix build` through the NixOS image provider's build function, on
//! a tiny input-free flake (a `builtins.derivation` with builder `/bin/sh`,
//! no nixpkgs), so it runs offline.  Fails (does not skip) without nix.

use harness::image::nixos;

/// Options that make Debian's nix-bin build as root with a single-user
/// store, no daemon, no build users, no sandbox and no binary cache.
fn offline_args() -> Vec<String> {
    let mut a = nixos::split_args(
        "--option build-users-group '' --option sandbox false --option substituters ''",
    );
    a.extend(nixos::extra_args_from_env());
    a
}

fn require_nix() {
    if let Err(e) = nixos::check_nix() {
        panic!("{e}\n(on Debian run ci/setup-debian.sh, which installs nix-bin)");
    }
}

#[test]
fn builds_an_input_free_flake_and_returns_its_store_path() {
    require_nix();
    let dir = tempfile::tempdir().unwrap();
    let system = format!("{}-linux", std::env::consts::ARCH);
    // A unique marker so every run builds a fresh derivation.
    let marker = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    std::fs::write(
        dir.path().join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}: {{
    packages.{system}.ec2-image = builtins.derivation {{
      name = "harness-nix-build-test";
      system = "{system}";
      builder = "/bin/sh";
      args = [ "-c" "echo building {marker}; echo {marker} > $out" ];
    }};
  }};
}}
"#
        ),
    )
    .unwrap();
    let flake = dir.path().display().to_string();
    let outs = nixos::build_flake(
        &flake,
        &format!("packages.{system}.ec2-image"),
        &offline_args(),
        "nix test",
    )
    .unwrap_or_else(|e| panic!("nix build failed: {e:#}"));
    assert_eq!(outs.len(), 1, "{outs:?}");
    let out = &outs[0];
    assert!(out.starts_with("/nix/store"), "{}", out.display());
    assert!(
        out.display()
            .to_string()
            .ends_with("-harness-nix-build-test"),
        "{}",
        out.display()
    );
    assert_eq!(std::fs::read_to_string(out).unwrap().trim(), marker);
    // The provider finds the "image" when the output is a file.
    assert_eq!(nixos::image_file(out).unwrap(), *out);
}

#[test]
fn evaluation_errors_are_reported_with_their_error_lines() {
    require_nix();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flake.nix"),
        "{ outputs = { self }: { packages.x86_64-linux.ec2-image = undefinedThing; }; }\n",
    )
    .unwrap();
    let err = nixos::build_flake(
        &dir.path().display().to_string(),
        "packages.x86_64-linux.ec2-image",
        &offline_args(),
        "nix test",
    )
    .unwrap_err();
    let e = err
        .downcast_ref::<nixos::NixBuildError>()
        .unwrap_or_else(|| panic!("not a NixBuildError: {err:#}"));
    assert!(
        matches!(e, nixos::NixBuildError::Eval { .. }),
        "expected an evaluation error, seen {e:?}"
    );
    assert!(e.to_string().contains("undefinedThing"), "{e}");
}

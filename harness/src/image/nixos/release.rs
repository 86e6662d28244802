//! The NixOS release the test images pin must be the one the template
//! boots: `nixos-vm/` (the nightly's QEMU image) and `nixos-vm/ec2/` (the
//! flakes EC2 instances switch to) follow `nixos-<release>` where
//! `<release>` is `nixos_release`'s default in `templates/variables.tf`.
//! Otherwise the `nixos` tier tests an older NixOS (another nixos-rebuild,
//! another amazon-init) than every workspace boots.
//!
//! Two halves: [`check`] compares the files (flake inputs, lock
//! `original.ref`, the two locks' pinned revision) here, with no network;
//! the nightly then fetches the locked revision (`nix flake archive`
//! verifies its narHash) and evaluates `lib.trivial.release` of it, and
//! fails, printing a refreshed lock, when either disagrees
//! (`ci/nightly.yml`, step "nixos-vm pins the release the template
//! boots"). A lock entry cannot be computed on a machine without network
//! to GitHub; the nightly is where it is proven.

use std::path::Path;

/// The flakes that pin nixpkgs for the tests, relative to the repository.
pub const FLAKES: [&str; 2] = ["nixos-vm", "nixos-vm/ec2"];

/// The branch a flake's `inputs.nixpkgs.url` follows
/// (`github:NixOS/nixpkgs/<branch>`), if it is written that way.
pub fn input_branch(flake_nix: &str) -> Option<String> {
    let re = regex::Regex::new(
        r#"(?m)^\s*inputs\.nixpkgs\.url\s*=\s*"github:NixOS/nixpkgs/([A-Za-z0-9._-]+)"\s*;"#,
    )
    .expect("regex");
    re.captures(flake_nix).map(|c| c[1].to_string())
}

/// The `nixpkgs` node of a `flake.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedNixpkgs {
    /// `original.ref`, e.g. `nixos-26.05`.
    pub branch: String,
    pub rev: String,
    pub nar_hash: String,
    pub last_modified: u64,
}

/// Parse the `nixpkgs` node of a `flake.lock`.
pub fn locked_nixpkgs(lock: &str) -> anyhow::Result<LockedNixpkgs> {
    let v: serde_json::Value =
        serde_json::from_str(lock).map_err(|e| anyhow::anyhow!("not JSON: {e}"))?;
    let node = &v["nodes"]["nixpkgs"];
    let s = |p: &str| {
        node.pointer(p)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "expected nodes.nixpkgs{} in the lock, seen none",
                    p.replace('/', ".")
                )
            })
    };
    Ok(LockedNixpkgs {
        branch: s("/original/ref")?,
        rev: s("/locked/rev")?,
        nar_hash: s("/locked/narHash")?,
        last_modified: node
            .pointer("/locked/lastModified")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| {
                anyhow::anyhow!("expected nodes.nixpkgs.locked.lastModified in the lock, seen none")
            })?,
    })
}

/// One flake's files: its directory (for messages), `flake.nix`, `flake.lock`.
pub struct FlakeFiles<'a> {
    pub dir: &'a str,
    pub flake_nix: &'a str,
    pub flake_lock: &'a str,
}

/// What disagrees with `release` (the template's default): each flake's
/// input branch and lock `original.ref` must be `nixos-<release>`, and all
/// locks must pin the same revision (one nixpkgs for the QEMU image and
/// the EC2 fixtures).
pub fn problems(release: &str, flakes: &[FlakeFiles<'_>]) -> Vec<String> {
    let want = format!("nixos-{release}");
    let mut out = Vec::new();
    let mut first: Option<(&str, LockedNixpkgs)> = None;
    for f in flakes {
        match input_branch(f.flake_nix) {
            Some(b) if b == want => {}
            Some(b) => out.push(format!(
                "{}/flake.nix: expected inputs.nixpkgs.url to follow {want} (templates/variables.tf nixos_release = \"{release}\"), seen {b}"
            , f.dir)),
            None => out.push(format!(
                "{}/flake.nix: expected `inputs.nixpkgs.url = \"github:NixOS/nixpkgs/{want}\";`, seen no such line",
                f.dir
            )),
        }
        match locked_nixpkgs(f.flake_lock) {
            Ok(l) => {
                if l.branch != want {
                    out.push(format!(
                        "{}/flake.lock: expected nixpkgs locked from {want}, seen {} (rev {}); refresh it: nix flake update --flake ./{} nixpkgs (Nix >= 2.19)",
                        f.dir, l.branch, l.rev, f.dir
                    ));
                }
                match &first {
                    None => first = Some((f.dir, l)),
                    Some((dir, l0)) if *l0 != l => out.push(format!(
                        "{}/flake.lock pins nixpkgs {} but {dir}/flake.lock pins {}: expected one nixpkgs for the QEMU image and the EC2 fixtures; copy the nixpkgs node",
                        f.dir, l.rev, l0.rev
                    )),
                    Some(_) => {}
                }
            }
            Err(e) => out.push(format!("{}/flake.lock: {e:#}", f.dir)),
        }
    }
    out
}

/// [`problems`] for the repository at `root`; the release when none.
pub fn check(root: &Path) -> anyhow::Result<String> {
    let release = crate::template::ami::release(root)?;
    let mut texts = Vec::new();
    for dir in FLAKES {
        let read = |f: &str| {
            let p = root.join(dir).join(f);
            std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", p.display()))
        };
        texts.push((dir, read("flake.nix")?, read("flake.lock")?));
    }
    let files: Vec<FlakeFiles<'_>> = texts
        .iter()
        .map(|(dir, n, l)| FlakeFiles {
            dir,
            flake_nix: n,
            flake_lock: l,
        })
        .collect();
    let p = problems(&release, &files);
    if p.is_empty() {
        Ok(release)
    } else {
        anyhow::bail!(
            "the test images must pin the NixOS release the template boots ({release}):\n  {}",
            p.join("\n  ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(branch: &str, rev: &str) -> String {
        format!(
            r#"{{"nodes":{{"nixpkgs":{{"locked":{{"lastModified":1,"narHash":"sha256-x","owner":"NixOS","repo":"nixpkgs","rev":"{rev}","type":"github"}},"original":{{"owner":"NixOS","ref":"{branch}","repo":"nixpkgs","type":"github"}}}},"root":{{"inputs":{{"nixpkgs":"nixpkgs"}}}}}},"root":"root","version":7}}"#
        )
    }

    const FLAKE_2605: &str = "{\n  inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-26.05\";\n}\n";

    #[test]
    fn the_repository_pins_the_templates_release() {
        let root = crate::repo::root().unwrap();
        let release = check(&root).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(crate::template::ami::is_release(&release), "{release}");
    }

    #[test]
    fn an_older_test_image_than_the_template_fails() {
        // As before issue 21: nixos-vm on 25.05 while the template boots 26.05.
        let old_flake = FLAKE_2605.replace("26.05", "25.05");
        let old_lock = lock("nixos-25.05", "b2a3852b");
        let new_lock = lock("nixos-26.05", "cf9d2fb3");
        let p = problems(
            "26.05",
            &[
                FlakeFiles {
                    dir: "nixos-vm",
                    flake_nix: &old_flake,
                    flake_lock: &old_lock,
                },
                FlakeFiles {
                    dir: "nixos-vm/ec2",
                    flake_nix: FLAKE_2605,
                    flake_lock: &new_lock,
                },
            ],
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(p[0].contains("nixos-vm/flake.nix") && p[0].contains("seen nixos-25.05"));
        assert!(p[1].contains("flake.lock") && p[1].contains("nix flake update"));
        assert!(p[2].contains("one nixpkgs"), "{p:#?}");
        let ok = problems(
            "26.05",
            &[FlakeFiles {
                dir: "nixos-vm",
                flake_nix: FLAKE_2605,
                flake_lock: &new_lock,
            }],
        );
        assert!(ok.is_empty(), "{ok:#?}");
        assert_eq!(input_branch("inputs.nixpkgs.url = \"path:/x\";"), None);
        assert!(locked_nixpkgs("{}").is_err());
    }
}

//! One probe shell for every guest image that runs systemd: the contract
//! guest's `harness-probe.service` and the NixOS test image's
//! `harness-backdoor` (`nixos-vm/qemu-glue.nix`) both run
//! `harness/contract-guest/probe-shell` ([`SCRIPT`]), so the tiers that run
//! here prove the probe shell the nightly's NixOS tier uses (it prints
//! `harness-probe: ready`, sets `stty raw -echo` and makes the probe's
//! private directory; a bare `bash --login` did none of these, and every
//! NixOS scenario would have timed out).
//!
//! Checked statically, without nixpkgs: the contract unit's `ExecStart=`
//! and the image builder's file list; for NixOS, `nixos-vm/flake.nix`'s
//! copies into the guest's nixpkgs and a real `nix-instantiate --eval` of
//! the glue module with stand-in `pkgs`/`lib`, whose `writeScriptBin`
//! names its output after the sha256 of the script text, so `ExecStart`
//! shows which text the unit runs.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The one probe-shell script, relative to the repository root.
pub const SCRIPT: &str = "harness/contract-guest/probe-shell";

/// What the contract guest's unit must start: the script's store package
/// (`@probe-shell@` is its store path, `image::contract::files::Place::Script`).
pub const CONTRACT_EXEC: &str = "@probe-shell@/bin/probe-shell";

/// Stand-in for `${pkgs.bash}` in the NixOS evaluation.
const STUB_BASH: &str = "/nix/store/00000000000000000000000000000000-bash-stub";

/// The contract guest: `unit` (text of `harness-probe.service`) starts
/// [`CONTRACT_EXEC`], and the image builder installs `script` (the text of
/// [`SCRIPT`]) as the `probe-shell` package.
pub fn check_contract(
    unit: &str,
    sources: &[crate::image::contract::files::Source],
    script: &str,
) -> Result<(), String> {
    let exec: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .collect();
    if exec != [CONTRACT_EXEC] {
        return Err(format!(
            "harness-probe.service: expected `ExecStart={CONTRACT_EXEC}`, seen {exec:?}"
        ));
    }
    use crate::image::contract::files::Place;
    let pkg = sources
        .iter()
        .find(|s| s.place == Place::Script("probe-shell"))
        .ok_or("the contract image installs no `probe-shell` script package")?;
    if pkg.content != script {
        return Err(format!(
            "the contract image's `probe-shell` package is not {SCRIPT}"
        ));
    }
    Ok(())
}

/// `cp ${SRC} $out/nixos/modules/virtualisation/DST` lines of the NixOS
/// flake: DST → SRC (relative to `nixos-vm/`).
pub fn glue_copies(flake: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in flake.lines() {
        let l = l.trim();
        let Some(rest) = l.strip_prefix("cp ${") else {
            continue;
        };
        let Some((src, dst)) = rest.split_once("} $out/nixos/modules/virtualisation/") else {
            continue;
        };
        out.insert(dst.trim().to_string(), src.trim().to_string());
    }
    out
}

/// The NixOS test image (`nixos_vm`: the `nixos-vm/` directory): the glue
/// is copied into the guest's nixpkgs with every file it reads, and its
/// `harness-backdoor` unit runs the text of `repo_root/`[`SCRIPT`] with
/// `@bash@` substituted, on hvc0 by itself (no `TTYPath`/`StandardInput`).
pub fn check_nixos(nixos_vm: &Path, repo_root: &Path) -> Result<(), String> {
    let flake = std::fs::read_to_string(nixos_vm.join("flake.nix"))
        .map_err(|e| format!("{}: {e}", nixos_vm.join("flake.nix").display()))?;
    let copies = glue_copies(&flake);
    let glue = "harness-qemu-glue.nix";
    if !copies.contains_key(glue) {
        return Err(format!(
            "nixos-vm/flake.nix: expected `cp ${{./qemu-glue.nix}} $out/nixos/modules/virtualisation/{glue}`, seen copies {copies:?}"
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (dst, src) in &copies {
        let from = nixos_vm.join(src);
        std::fs::copy(&from, dir.path().join(dst))
            .map_err(|e| format!("nixos-vm/flake.nix copies {}: {e}", from.display()))?;
    }
    let expr = format!(
        r#"let
  pkgs = {{
    bash = "{STUB_BASH}";
    writeScriptBin = name: text: {{ outPath = "/stub/${{builtins.hashString "sha256" text}}-${{name}}"; }};
    stdenv.hostPlatform.isAarch64 = false;
  }};
  lib = {{ mkDefault = x: x; mkForce = x: x; }};
  glue = import ./{glue} {{ inherit pkgs lib; }};
  svc = glue.systemd.services.harness-backdoor or {{ }};
in {{
  exec = svc.serviceConfig.ExecStart or "";
  keys = builtins.attrNames (svc.serviceConfig or {{ }});
  wantedBy = svc.wantedBy or [ ];
}}"#
    );
    let bin = crate::tools::find("nix-instantiate").map_err(|e| e.to_string())?;
    let out = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .map_err(|e| format!("nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nix-instantiate --eval of nixos-vm/qemu-glue.nix (as the guest's nixpkgs has it) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("nix-instantiate output: {e}"))?;
    let script = std::fs::read_to_string(repo_root.join(SCRIPT))
        .map_err(|e| format!("{SCRIPT}: {e}"))?
        .replace("@bash@", STUB_BASH);
    let want = format!(
        "/stub/{}-probe-shell/bin/probe-shell",
        hex::encode(Sha256::digest(script.as_bytes()))
    );
    let exec = v["exec"].as_str().unwrap_or_default();
    if exec != want {
        return Err(format!(
            "nixos-vm/qemu-glue.nix: expected systemd.services.harness-backdoor to run {SCRIPT} (ExecStart = {want}), seen ExecStart = {exec:?}"
        ));
    }
    for k in ["TTYPath", "StandardInput", "StandardOutput"] {
        if v["keys"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == k))
        {
            return Err(format!(
                "nixos-vm/qemu-glue.nix: harness-backdoor sets serviceConfig.{k}; the probe shell opens /dev/hvc0 itself"
            ));
        }
    }
    if !v["wantedBy"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "multi-user.target"))
    {
        return Err(
            "nixos-vm/qemu-glue.nix: harness-backdoor is not wanted by multi-user.target".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::contract::files;

    fn root() -> std::path::PathBuf {
        crate::repo::root().unwrap()
    }

    fn script() -> String {
        std::fs::read_to_string(root().join(SCRIPT)).unwrap()
    }

    #[test]
    fn the_script_is_a_probe_shell() {
        let s = script();
        assert!(s.contains("echo \"harness-probe: ready\""));
        assert!(s.contains("stty -F \"$dev\" raw -echo"));
        assert!(s.contains("mktemp -d /run/harness-probe."));
        assert!(s.contains(crate::machine::qemu::hvc_probe::READY));
    }

    #[test]
    fn the_contract_guest_runs_the_script_and_a_changed_unit_fails() {
        let unit = std::fs::read_to_string(
            root().join("harness/contract-guest/units/harness-probe.service"),
        )
        .unwrap();
        let sources = files::sources();
        check_contract(&unit, &sources, &script()).unwrap();

        let bare = unit.replace(CONTRACT_EXEC, "/bin/bash --login");
        let e = check_contract(&bare, &sources, &script()).unwrap_err();
        assert!(e.contains("/bin/bash --login"), "{e}");
        let e = check_contract(&unit, &sources, "#!/bin/sh\nexec sh\n").unwrap_err();
        assert!(e.contains(SCRIPT), "{e}");
    }

    fn nixos_copy(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let vm = d.path().join("nixos-vm");
        std::fs::create_dir_all(&vm).unwrap();
        for f in ["flake.nix", "qemu-glue.nix"] {
            std::fs::copy(root().join("nixos-vm").join(f), vm.join(f)).unwrap();
        }
        let glue = std::fs::read_to_string(vm.join("qemu-glue.nix")).unwrap();
        std::fs::write(vm.join("qemu-glue.nix"), edit(&glue)).unwrap();
        let probe = d.path().join("harness/contract-guest");
        std::fs::create_dir_all(&probe).unwrap();
        std::fs::copy(root().join(SCRIPT), probe.join("probe-shell")).unwrap();
        d
    }

    #[test]
    fn the_nixos_image_runs_the_script_and_a_bare_bash_backdoor_fails() {
        let copies =
            glue_copies(&std::fs::read_to_string(root().join("nixos-vm/flake.nix")).unwrap());
        assert_eq!(
            copies.get("harness-probe-shell").map(String::as_str),
            Some("../harness/contract-guest/probe-shell"),
            "{copies:?}"
        );
        check_nixos(&root().join("nixos-vm"), &root()).unwrap();

        // Today's defect: a bare `bash --login` on the tty.
        let d = nixos_copy(|g| {
            g.replace(
                "ExecStart = \"${probeShell}/bin/probe-shell\";",
                "ExecStart = \"${pkgs.bash}/bin/bash --login\"; StandardInput = \"tty\"; TTYPath = \"/dev/hvc0\";",
            )
        });
        let e = check_nixos(&d.path().join("nixos-vm"), d.path()).unwrap_err();
        assert!(e.contains("bash-stub/bin/bash --login"), "{e}");
        // A script other than the shared one.
        let d = nixos_copy(|g| {
            g.replace(
                "(builtins.readFile ./harness-probe-shell)",
                "\"#!/bin/sh\\n\"",
            )
        });
        let e = check_nixos(&d.path().join("nixos-vm"), d.path()).unwrap_err();
        assert!(
            e.contains("expected systemd.services.harness-backdoor to run"),
            "{e}"
        );
    }
}

//! Before a NixOS-image scenario: prove over the probe shell that the
//! guest needs nothing built or fetched for the systems the scenario
//! switches to, so a scenario never passes (or fails) on the strength of
//! a network it should not have, nor waits on builds the image should
//! have carried.
//!
//! The guest's network is restricted (`GuestNet::Offline`), so a fetch
//! could not succeed anyway; this check names what is missing instead of
//! leaving a rebuild to fail or crawl. Two dry runs:
//!
//! - the bootstrap system, exactly as the template's user-data switches to
//!   it: `nix-build '<nixpkgs/nixos>' -A system -I nixos-config=<its
//!   configuration.nix>` (what `nixos-rebuild switch -I …` runs) under
//!   amazon-init's `NIX_PATH` (nixpkgs
//!   `nixos/modules/virtualisation/amazon-init.nix`), which the user-data
//!   inherits and which points `<nixpkgs>` at the image's channel;
//! - the `good` fixture, as the startup script's `nixos-rebuild switch
//!   --flake path:/var/lib/harness/fixtures#good` builds it.
//!
//! Limitation: the bootstrap dry run starts once the user-data has written
//! its configuration, while amazon-init's own switch runs. A path that
//! switch has already finished building is valid by then and not listed;
//! anything it still has to build, and anything it would fetch, is.

use std::time::Duration;

use crate::image::nixos::dry_run;
use crate::machine::probe::{shell_quote, Probe};

/// Where the user-data writes the bootstrap's configuration.nix
/// (`templates/modules/bootstrap/user-data.sh.tftpl`: `conf=…/etc/coder-bootstrap`).
pub const BOOTSTRAP_CONF_DIR: &str = "/etc/coder-bootstrap";

/// amazon-init's `NIX_PATH` (nixpkgs `nixos/modules/virtualisation/amazon-init.nix`).
pub const AMAZON_INIT_NIX_PATH: &str = "nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos:nixos-config=/etc/nixos/configuration.nix:/nix/var/nix/profiles/per-user/root/channels";

/// Longest a dry run may take (evaluating a NixOS system under TCG).
pub const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The bootstrap system's dry run, as the user-data would build it.
pub fn bootstrap_command() -> String {
    bootstrap_command_for(AMAZON_INIT_NIX_PATH, BOOTSTRAP_CONF_DIR)
}

/// [`bootstrap_command`] with another `NIX_PATH` and configuration directory.
pub fn bootstrap_command_for(nix_path: &str, conf_dir: &str) -> String {
    format!(
        "NIX_PATH={} nix-build --dry-run '<nixpkgs/nixos>' -A system -I {} 2>&1",
        shell_quote(nix_path),
        shell_quote(&format!("nixos-config={conf_dir}/configuration.nix"))
    )
}

/// A fixture system's dry run, as `nixos-rebuild switch --flake <uri>` builds it.
pub fn fixture_command(flake: &str) -> String {
    fixture_command_for(super::GUEST_FIXTURES, flake)
}

/// [`fixture_command`] for the fixture flake at `dir`.
pub fn fixture_command_for(dir: &str, flake: &str) -> String {
    let installable =
        format!("path:{dir}#nixosConfigurations.{flake}.config.system.build.toplevel");
    format!(
        "nix --extra-experimental-features 'nix-command flakes' build --dry-run --no-link {} 2>&1",
        shell_quote(&installable)
    )
}

/// The verdict on one dry run's exit status and output: `Ok` when nix
/// evaluated the system and listed nothing to build or fetch.
pub fn judge(what: &str, command: &str, status: i32, output: &str) -> Result<(), String> {
    let tail = || {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    if status != 0 {
        return Err(format!(
            "{what}: expected `{command}` to evaluate and list what it needs; it exited {status}:\n{}",
            tail()
        ));
    }
    let d = dry_run::parse(output);
    if d.nothing_to_do() {
        return Ok(());
    }
    Err(format!(
        "{what}: expected nothing to build or fetch in the offline guest (the test image pre-seeds it, nixos-vm/guest-fixtures.nix); `{command}` lists:\n{}",
        d.describe().trim_end()
    ))
}

/// Run both dry runs over `probe`; waits up to `bootstrap_within` for the
/// user-data to write the bootstrap configuration. The error lists every
/// path that would be built or fetched.
pub async fn check(probe: &dyn Probe, bootstrap_within: Duration) -> anyhow::Result<()> {
    let conf = format!("{BOOTSTRAP_CONF_DIR}/configuration.nix");
    // Non-empty: the user-data writes it with one redirect.
    probe
        .wait_until_succeeds(&format!("test -s {conf}"), bootstrap_within)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "offline check: expected the user-data to write {conf} within {bootstrap_within:?}: {e}"
            )
        })?;
    let mut errors = Vec::new();
    for (what, cmd) in [
        ("the bootstrap system", bootstrap_command()),
        ("the good fixture's system", fixture_command("good")),
    ] {
        let out = probe.exec(&cmd, DRY_RUN_TIMEOUT).await?;
        let text = format!("{}{}", out.stdout, out.stderr);
        if let Err(e) = judge(what, &cmd, out.status, &text) {
            errors.push(e);
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_build_what_the_user_data_and_startup_script_build() {
        let b = bootstrap_command();
        assert!(
            b.contains("nix-build --dry-run '<nixpkgs/nixos>' -A system"),
            "{b}"
        );
        assert!(
            b.contains("-I nixos-config=/etc/coder-bootstrap/configuration.nix"),
            "{b}"
        );
        assert!(
            b.starts_with("NIX_PATH=nixpkgs=/nix/var/nix/profiles/per-user/root/channels/nixos:"),
            "{b}"
        );
        let f = fixture_command("good");
        assert!(
            f.contains("build --dry-run --no-link 'path:/var/lib/harness/fixtures#nixosConfigurations.good.config.system.build.toplevel'"),
            "{f}"
        );
    }

    #[test]
    fn the_user_data_writes_the_configuration_where_the_check_reads_it() {
        let t = std::fs::read_to_string(
            crate::repo::root()
                .unwrap()
                .join("templates/modules/bootstrap/user-data.sh.tftpl"),
        )
        .unwrap();
        assert!(
            t.contains(&format!("conf=\"$prefix{BOOTSTRAP_CONF_DIR}\"")),
            "user-data.sh.tftpl no longer writes to {BOOTSTRAP_CONF_DIR}: update BOOTSTRAP_CONF_DIR"
        );
        assert!(t.contains("\"$conf/configuration.nix\""));
    }

    #[test]
    fn passes_when_nothing_is_missing() {
        assert_eq!(
            judge("x", "c", 0, "building the system configuration...\n"),
            Ok(())
        );
    }

    #[test]
    fn fails_listing_what_would_be_built_or_fetched() {
        let out = "these 2 derivations will be built:\n  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-etc.drv\n  /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system.drv\nthis path will be fetched (1.00 MiB download, 2.00 MiB unpacked):\n  /nix/store/cccccccccccccccccccccccccccccccc-stdenv-linux\n";
        let e = judge("the bootstrap system", "nix-build …", 0, out).unwrap_err();
        assert!(
            e.starts_with("the bootstrap system: expected nothing to build or fetch"),
            "{e}"
        );
        assert!(
            e.contains("-etc.drv") && e.contains("-nixos-system.drv"),
            "{e}"
        );
        assert!(
            e.contains("would be FETCHED") && e.contains("-stdenv-linux"),
            "{e}"
        );
    }

    #[test]
    fn fails_when_the_dry_run_itself_fails() {
        let e = judge(
            "the good fixture's system",
            "nix build …",
            1,
            "error: getting status of '/var/lib/harness/fixtures': No such file or directory\n",
        )
        .unwrap_err();
        assert!(e.contains("exited 1"), "{e}");
        assert!(e.contains("No such file"), "{e}");
    }

    /// A scripted guest (unit-test double of the probe shell): the
    /// configuration exists; dry runs print `bootstrap` / `good`.
    struct Guest {
        bootstrap: &'static str,
        good: &'static str,
    }

    #[async_trait::async_trait]
    impl Probe for Guest {
        async fn exec(
            &self,
            cmd: &str,
            _timeout: Duration,
        ) -> Result<crate::machine::probe::ExecOutput, crate::machine::probe::ProbeError> {
            let stdout = if cmd.contains("nix-build --dry-run") {
                self.bootstrap
            } else if cmd.contains("#nixosConfigurations.good.") {
                self.good
            } else {
                ""
            };
            Ok(crate::machine::probe::ExecOutput {
                command: cmd.into(),
                status: 0,
                stdout: stdout.into(),
                stderr: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn check_over_the_probe_passes_on_a_seeded_guest_and_names_what_a_bare_one_lacks() {
        let seeded = Guest {
            bootstrap: "building the system configuration...\n",
            good: "",
        };
        check(&seeded, Duration::from_secs(5)).await.unwrap();

        let bare = Guest {
            bootstrap: "",
            good: "these 2 paths will be fetched (100.00 MiB download, 400.00 MiB unpacked):\n  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-linux-6.12\n  /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system\n",
        };
        let e = check(&bare, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("the good fixture's system"), "{e}");
        assert!(!e.contains("the bootstrap system"), "{e}");
        assert!(e.contains("-linux-6.12"), "{e}");
    }
}

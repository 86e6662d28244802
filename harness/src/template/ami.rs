//! The NixOS AMI as the template names it (`data "aws_ami" "nixos"` in
//! `templates/modules/ec2-instance/main.tf`, resolved at plan time; the
//! twin proves the lookup against moto): the NixOS project's account
//! ([`NIXOS_OWNER`]), name `nixos/<release>.*`, the variant's
//! architecture.  The release is pinned once, in `templates/variables.tf`
//! (`nixos_release`).

use std::path::Path;

use crate::template::variant::Arch;

/// AWS account that publishes the official NixOS AMIs.
pub const NIXOS_OWNER: &str = "427812963091";
/// The Terraform variable pinning the release.
pub const RELEASE_VAR: &str = "nixos_release";
/// File of the offered regions (the region parameter's options).
pub const REGIONS_FILE: &str = "templates/regions.json";

/// EC2's name for the architecture (`x86_64`, `arm64`).
pub fn ec2_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "arm64",
    }
}

/// `nixos/<release>.*`: official images are named
/// `nixos/<release>.<revision>-<system>` (e.g.
/// `nixos/26.05.10057.cf9d2fb3e50f-x86_64-linux`).
pub fn name_pattern(release: &str) -> String {
    format!("nixos/{release}.*")
}

/// `nixos_release`'s default in `templates/variables.tf` at `root`.
pub fn release(root: &Path) -> anyhow::Result<String> {
    let file = root.join("templates/variables.tf");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    let body: hcl::Body =
        hcl::parse(&text).map_err(|e| anyhow::anyhow!("{}: not valid HCL: {e}", file.display()))?;
    let default = body
        .blocks()
        .find(|b| {
            b.identifier() == "variable"
                && b.labels().first().map(|l| l.as_str()) == Some(RELEASE_VAR)
        })
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .map(|a| a.expr().clone());
    match default {
        Some(hcl::Expression::String(s)) if is_release(&s) => Ok(s),
        Some(other) => anyhow::bail!(
            "{}: expected variable \"{RELEASE_VAR}\" to default to a NixOS release like \"26.05\" (YY.05 or YY.11), seen {other:?}",
            file.display()
        ),
        None => anyhow::bail!(
            "{}: expected a variable \"{RELEASE_VAR}\" with a default (the one place the NixOS release is pinned), seen none",
            file.display()
        ),
    }
}

/// `YY.05` or `YY.11`: NixOS releases twice a year, at the end of May and
/// November (its support calendar: `lint::release`).
pub fn is_release(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b'.'
        && [0, 1].iter().all(|&i| b[i].is_ascii_digit())
        && (&s[3..] == "05" || &s[3..] == "11")
}

/// The offered regions (`templates/regions.json`, a JSON list).
pub fn regions(root: &Path) -> anyhow::Result<Vec<String>> {
    let file = root.join(REGIONS_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the region list: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected a JSON list of region names: {e}",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_read_from_variables_tf() {
        let root = crate::repo::root().unwrap();
        let r = release(&root).unwrap();
        assert!(is_release(&r), "{r}");
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("templates")).unwrap();
        std::fs::write(
            d.path().join("templates/variables.tf"),
            "variable \"nixos_release\" {\n  default = \"latest\"\n}\n",
        )
        .unwrap();
        let e = release(d.path()).unwrap_err().to_string();
        assert!(e.contains("nixos_release") && e.contains("latest"), "{e}");
        assert!(!is_release("25.5") && is_release("24.11") && is_release("26.05"));
        assert!(!is_release("26.06") && !is_release("26.1x"));
    }
}

//! The NixOS AMI, resolved the way the template resolves it at plan time
//! (`data "aws_ami" "nixos"` in `templates/modules/ec2-instance/main.tf`)
//! and the way NixOS users do: the NixOS project's account
//! ([`NIXOS_OWNER`]), name `nixos/<release>.*`, the variant's
//! architecture, available, newest `CreationDate` first.  The release is
//! pinned once, in `templates/variables.tf` (`nixos_release`).

use std::path::Path;

use aws_sdk_ec2::types::{Filter, Image};

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

/// The DescribeImages filters (with owner [`NIXOS_OWNER`]).
pub fn filters(release: &str, arch: Arch) -> Vec<Filter> {
    vec![
        Filter::builder()
            .name("name")
            .values(name_pattern(release))
            .build(),
        Filter::builder()
            .name("architecture")
            .values(ec2_arch(arch))
            .build(),
        Filter::builder().name("state").values("available").build(),
    ]
}

/// The newest image (by `CreationDate`, RFC 3339 so it sorts as text),
/// what Terraform's `most_recent = true` picks.
pub fn newest(images: &[Image]) -> Option<&Image> {
    images
        .iter()
        .filter(|i| i.image_id().is_some())
        .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
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

/// DescribeImages with the template's owner and filters; the newest image
/// id, or an error naming region, arch and release (nothing is created).
pub async fn resolve(
    client: &aws_sdk_ec2::Client,
    region: &str,
    release: &str,
    arch: Arch,
) -> anyhow::Result<String> {
    let out = client
        .describe_images()
        .owners(NIXOS_OWNER)
        .set_filters(Some(filters(release, arch)))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DescribeImages (NixOS {release}, {arch}) in {region}: {}",
                crate::machine::ec2::sweep::err(&e)
            )
        })?;
    match newest(out.images()) {
        Some(i) => {
            let id = i.image_id().unwrap_or_default().to_string();
            tracing::info!(ami = %id, name = i.name().unwrap_or(""), region, %arch, release, "NixOS AMI");
            Ok(id)
        }
        None => anyhow::bail!(
            "no NixOS AMI: expected an available image of owner {NIXOS_OWNER} named `{}` for architecture {} \
             (variant arch {arch}) in region `{region}`, seen none; pick another region (HARNESS_EC2_REGION) \
             or another release ({RELEASE_VAR} in templates/variables.tf)",
            name_pattern(release),
            ec2_arch(arch)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_image_wins_and_filters_match_the_template() {
        let img = |id: &str, date: &str| Image::builder().image_id(id).creation_date(date).build();
        let imgs = [
            img("ami-old", "2025-05-20T10:00:00.000Z"),
            img("ami-new", "2025-09-01T10:00:00.000Z"),
            img("ami-mid", "2025-07-01T10:00:00.000Z"),
        ];
        assert_eq!(newest(&imgs).unwrap().image_id(), Some("ami-new"));
        assert!(newest(&[]).is_none());
        let f = filters("25.05", Arch::Aarch64);
        let pairs: Vec<_> = f
            .iter()
            .map(|f| (f.name().unwrap(), f.values().join(",")))
            .collect();
        assert_eq!(
            pairs,
            [
                ("name", "nixos/25.05.*".to_string()),
                ("architecture", "arm64".to_string()),
                ("state", "available".to_string())
            ]
        );
        // The template's data source uses the very same values.
        let root = crate::repo::root().unwrap();
        let tf =
            std::fs::read_to_string(root.join("templates/modules/ec2-instance/main.tf")).unwrap();
        // Whitespace-insensitive: `terraform fmt` aligns `=` per block.
        let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        let tf = squash(&tf);
        for want in [
            format!("nixos_owner = \"{NIXOS_OWNER}\""),
            "ami_name = \"nixos/${var.nixos_release}.*\"".to_string(),
            "var.arch == \"aarch64\" ? \"arm64\" : \"x86_64\"".to_string(),
            "most_recent = true".to_string(),
        ] {
            assert!(tf.contains(&want), "ec2-instance module lacks `{want}`");
        }
    }

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

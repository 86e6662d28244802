//! Mutated COPIES of `templates/` that re-introduce, one at a time, a
//! defect of the template's AWS half that only the twin tier (real
//! provider, moto double) can show; each must fail the twin for its own
//! reason.  Built on [`crate::workspace::contract::mutate::edited_copy`]
//! (the contract tier's mutations use it too): every edit anchors on text
//! the template has, and an anchor that is gone is an error naming it,
//! never a silent no-op.
//!
//! | mutation | today's defect it re-introduces | how the twin shows it |
//! |---|---|---|
//! | `zone-from-spot-request` | spot through `aws_spot_instance_request`, the home volume's zone read from it (its Read never sets `availability_zone`) | create fails: `availability_zone` is required |
//! | `mutable-parameter-replaces-home` | the home volume's zone follows the instance (no pin): a spot type change replaces the instance, the new zone is unknown, the volume is replaced | the home volume id changes at the `instance_type` change |
//! | `volume-tags-beside-home-tags` | `volume_tags` on the instance beside the home volume's own tags | the home volume carries the root's Name, and the next build changes it back |
//! | `root-tag-on-empty-id` | the spot root volume tagged through `aws_ec2_tag` on `aws_spot_instance_request.root_block_device[0].volume_id`, empty when the tag is created | create fails: `InvalidID: The ID '' is not valid` |

use std::path::{Path, PathBuf};

use crate::workspace::contract::mutate::edited_copy;

/// The module the mutations edit, inside the templates tree.
pub const MODULE: &str = "modules/ec2-instance/main.tf";

/// One re-introduced defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    ZoneFromSpotRequest,
    MutableParameterReplacesHome,
    VolumeTagsBesideHomeTags,
    RootTagOnEmptyId,
}

impl Mutation {
    pub const ALL: [Mutation; 4] = [
        Mutation::ZoneFromSpotRequest,
        Mutation::MutableParameterReplacesHome,
        Mutation::VolumeTagsBesideHomeTags,
        Mutation::RootTagOnEmptyId,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Mutation::ZoneFromSpotRequest => "zone-from-spot-request",
            Mutation::MutableParameterReplacesHome => "mutable-parameter-replaces-home",
            Mutation::VolumeTagsBesideHomeTags => "volume-tags-beside-home-tags",
            Mutation::RootTagOnEmptyId => "root-tag-on-empty-id",
        }
    }

    pub fn from_slug(s: &str) -> anyhow::Result<Mutation> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.slug() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown twin mutation `{s}`; known: {}",
                    Mutation::ALL.map(|m| m.slug()).join(", ")
                )
            })
    }

    /// What the twin's failure must contain for the cause to be named.
    pub fn cause(self) -> &'static str {
        match self {
            Mutation::ZoneFromSpotRequest => "aws_ebs_volume.home: Missing required argument",
            Mutation::MutableParameterReplacesHome => "replace module.instance.aws_ebs_volume.home",
            Mutation::VolumeTagsBesideHomeTags => "expected its own Name",
            Mutation::RootTagOnEmptyId => "InvalidID: The ID '' is not valid",
        }
    }

    /// Apply to the text of `modules/ec2-instance/main.tf`.
    pub fn apply(self, text: &str) -> anyhow::Result<String> {
        match self {
            Mutation::ZoneFromSpotRequest => {
                let t = legacy_spot_request(text, false)?;
                // The old zone: read from the spot request, whose Read
                // never sets it.
                replace_once(
                    &t,
                    "  availability_zone = terraform_data.zone.output\n  size ",
                    "  availability_zone = local.is_spot ? aws_spot_instance_request.this[0].availability_zone : aws_instance.this[0].availability_zone # MUTATION zone-from-spot-request\n  size ",
                )
            }
            Mutation::MutableParameterReplacesHome => {
                // The zone follows the instance: no pin, no ignore_changes.
                let t = replace_once(
                    text,
                    "  availability_zone = terraform_data.zone.output\n  size ",
                    "  availability_zone = aws_instance.this.availability_zone # MUTATION mutable-parameter-replaces-home\n  size ",
                )?;
                replace_once(
                    &t,
                    "  lifecycle {\n    # Never move /home: a zone change would be a new, empty volume.\n    ignore_changes = [availability_zone]\n  }\n",
                    "",
                )
            }
            Mutation::VolumeTagsBesideHomeTags => {
                let t = replace_once(text, "    tags        = local.root_tags\n", "")?;
                replace_once(
                    &t,
                    "  tags = local.instance_tags\n",
                    "  tags        = local.instance_tags\n  volume_tags = local.root_tags # MUTATION volume-tags-beside-home-tags\n",
                )
            }
            Mutation::RootTagOnEmptyId => {
                let t = legacy_spot_request(text, true)?;
                Ok(t + ROOT_TAG_ON_REQUEST)
            }
        }
    }
}

impl std::fmt::Display for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> anyhow::Result<String> {
    let n = text.matches(from).count();
    anyhow::ensure!(
        n == 1,
        "expected the anchor {from:?} once in {MODULE}, seen it {n} time(s)"
    );
    Ok(text.replacen(from, to, 1))
}

/// Lines `[start, end]` of the top-level block whose first line is `head`.
fn block(lines: &[&str], head: &str) -> anyhow::Result<(usize, usize)> {
    let start = lines
        .iter()
        .position(|l| *l == head)
        .ok_or_else(|| anyhow::anyhow!("no block `{head}` in {MODULE}"))?;
    let end = (start + 1..lines.len())
        .find(|&i| lines[i] == "}")
        .ok_or_else(|| anyhow::anyhow!("block `{head}` in {MODULE} does not end"))?;
    Ok((start, end))
}

/// Today's spot path: the on-demand instance stays an `aws_instance` (with
/// `count`), spot becomes the legacy `aws_spot_instance_request`
/// (persistent, stop, `wait_for_fulfillment`), and everything that used the
/// instance uses whichever exists.  `subnet`: place the request in the
/// pinned zone's subnet (what the fix does), or not (what the old template
/// did).
fn legacy_spot_request(text: &str, subnet: bool) -> anyhow::Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = block(&lines, "resource \"aws_instance\" \"this\" {")?;
    let mut out: Vec<String> = lines[..a].iter().map(|s| s.to_string()).collect();
    out.push(lines[a].to_string());
    out.push(
        "  count = local.is_spot ? 0 : 1 # MUTATION: spot through aws_spot_instance_request".into(),
    );
    out.extend(lines[a + 1..=b].iter().map(|s| s.to_string()));
    out.push(String::new());
    out.push(
        LEGACY_REQUEST
            .replace(
                "@SUBNET@",
                if subnet {
                    "  subnet_id                      = data.aws_subnet.zone.id\n"
                } else {
                    ""
                },
            )
            .trim_end()
            .to_string(),
    );
    out.extend(lines[b + 1..].iter().map(|s| s.to_string()));
    let mut t = out.join("\n") + "\n";
    // The moved block and the request tag resource belong to the fix.
    let l: Vec<&str> = t.lines().collect();
    let (ma, mb) = block(&l, "moved {")?;
    let (ta, tb) = block(&l, "resource \"aws_ec2_tag\" \"spot_request\" {")?;
    t = l
        .iter()
        .enumerate()
        .filter(|(i, _)| !(ma..=mb).contains(i) && !(ta..=tb).contains(i))
        .map(|(_, s)| format!("{s}\n"))
        .collect();
    anyhow::ensure!(
        t.contains("aws_instance.this.id"),
        "no `aws_instance.this.id` reference left to re-point in {MODULE}"
    );
    t = t.replace("aws_instance.this.id", "local.instance_id");
    t.push_str(
        "\nlocals {\n  instance_id = local.is_spot ? aws_spot_instance_request.this[0].spot_instance_id : aws_instance.this[0].id\n}\n",
    );
    Ok(t)
}

/// The legacy spot resource of today's template.
const LEGACY_REQUEST: &str = r#"resource "aws_spot_instance_request" "this" {
  count                          = local.is_spot ? 1 : 0
  ami                            = data.aws_ami.nixos.id
  instance_type                  = var.instance_type
  user_data                      = var.user_data
  iam_instance_profile           = var.iam_role_name == "" ? null : aws_iam_instance_profile.this[0].name
@SUBNET@  spot_type                      = "persistent"
  instance_interruption_behavior = "stop"
  spot_price                     = local.spot.max_price
  wait_for_fulfillment           = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_disk_size
    encrypted   = true
  }

  tags = local.request_tags

  lifecycle {
    ignore_changes = [ami, user_data]
  }
}
"#;

/// Today's root-volume tag of the spot instance.
const ROOT_TAG_ON_REQUEST: &str = r#"
resource "aws_ec2_tag" "spot_root" { # MUTATION root-tag-on-empty-id
  for_each    = local.is_spot ? local.root_tags : {}
  resource_id = aws_spot_instance_request.this[0].root_block_device[0].volume_id
  key         = each.key
  value       = each.value
}
"#;

/// Copy `<repo>/templates` to `<dest>/templates` with `m` applied.
pub fn mutated_copy(repo: &Path, dest: &Path, m: Mutation) -> anyhow::Result<PathBuf> {
    edited_copy(repo, dest, &[(MODULE, &|t: &str| m.apply(t))])
        .map_err(|e| e.context(format!("twin mutation {} no longer applies", m.slug())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> String {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        std::fs::read_to_string(repo.join("templates").join(MODULE)).unwrap()
    }

    #[test]
    fn each_mutation_applies_to_the_module_and_leaves_the_real_one_alone() {
        let real = module();
        for m in Mutation::ALL {
            let t = m.apply(&real).unwrap_or_else(|e| panic!("{m}: {e:#}"));
            assert!(t.contains("MUTATION"), "{m}");
            assert_ne!(t, real, "{m}");
            // The result is still HCL.
            hcl::parse(&t).unwrap_or_else(|e| panic!("{m}: {e}\n{t}"));
        }
        let z = Mutation::ZoneFromSpotRequest.apply(&real).unwrap();
        assert!(z.contains("aws_spot_instance_request.this[0].availability_zone"));
        assert!(!z.contains("subnet_id                      = data.aws_subnet.zone.id"));
        let r = Mutation::RootTagOnEmptyId.apply(&real).unwrap();
        assert!(r.contains("subnet_id                      = data.aws_subnet.zone.id"));
        assert!(r.contains("root_block_device[0].volume_id"));
        let d = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let root = mutated_copy(repo, d.path(), Mutation::VolumeTagsBesideHomeTags).unwrap();
        assert!(std::fs::read_to_string(root.join("templates").join(MODULE))
            .unwrap()
            .contains("volume_tags"));
        assert_eq!(module(), real);
        // A missing anchor is an error that names it.
        let e = Mutation::VolumeTagsBesideHomeTags
            .apply("resource {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("local.root_tags"), "{e}");
        assert_eq!(
            Mutation::from_slug("root-tag-on-empty-id").unwrap(),
            Mutation::RootTagOnEmptyId
        );
        assert!(Mutation::from_slug("nope").is_err());
    }

    /// features/twin.feature's mutation rows are exactly these mutations,
    /// each with its cause.
    #[test]
    fn the_feature_table_names_every_mutation_and_its_cause() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let f = std::fs::read_to_string(repo.join("features/twin.feature")).unwrap();
        let rows: Vec<(String, String)> = f
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                let c: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (c[0].to_string(), c[1].to_string())
            })
            .filter(|(m, _)| m != "mutation")
            .collect();
        let want: Vec<(String, String)> = Mutation::ALL
            .iter()
            .map(|m| (m.slug().to_string(), m.cause().to_string()))
            .collect();
        assert_eq!(rows, want);
    }
}

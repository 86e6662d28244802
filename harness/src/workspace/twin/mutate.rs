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

    /// Apply to the text of `modules/ec2-instance/main.tf`.
    pub fn apply(self, _text: &str) -> anyhow::Result<String> {
        anyhow::bail!("not written yet")
    }
}

/// Copy `<repo>/templates` to `<dest>/templates` with `m` applied.
pub fn mutated_copy(repo: &Path, dest: &Path, m: Mutation) -> anyhow::Result<PathBuf> {
    edited_copy(repo, dest, &[(MODULE, &|t: &str| m.apply(t))])
        .map_err(|e| e.context(format!("twin mutation {} no longer applies", m.slug())))
}

//! The IAM policy Coder's provisioner needs to build workspaces from this
//! template, generated from one list: the AWS actions each Terraform
//! resource and data source type of the template calls ([`TYPES`]).
//!
//! Where the actions come from: the real `hashicorp/aws` 5.100.0 binary
//! (the version the template pins) applied the `ec2-instance` module
//! against moto with `TF_LOG_PROVIDER=DEBUG`, on-demand and spot (create,
//! each mutable parameter, stop, start, destroy); every request it logged
//! carries `rpc.method` and the `tf_resource_type`/`tf_data_source_type`
//! that sent it. Actions AWS authorizes without a call of their own
//! (tag-on-create, `iam:PassRole`, the spot service-linked role) and calls
//! only a change this run did not make (a changed instance profile, IMDS
//! options) come from the provider's source and AWS's docs, named per
//! entry. `/work/research/aws-provider.md` §8 lists the same calls.
//!
//! A test parses every `.tf` file under `templates/` (module tests
//! excluded) and fails when a resource or data source type has no entry
//! here; another (and the `iam-policy` lint row) requires
//! `docs/aws-setup.md` to show exactly [`policy_json`]'s output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What an entry of [`TYPES`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Resource,
    Data,
}

impl Kind {
    pub fn block(self) -> &'static str {
        match self {
            Kind::Resource => "resource",
            Kind::Data => "data",
        }
    }
}

/// One Terraform type and the actions the provisioner needs for it.
#[derive(Debug, Clone, Copy)]
pub struct TypeActions {
    pub kind: Kind,
    pub name: &'static str,
    /// Actions the provider calls (seen in the 5.100.0 run, or named in `why`).
    pub actions: &'static [&'static str],
    /// Where the list comes from, and anything beyond the logged calls.
    pub why: &'static str,
}

/// Every type the template may use. Types with no AWS call (the coder
/// provider's, Terraform's own) are listed with no actions, so a new type
/// can never slip in unreviewed.
pub const TYPES: &[TypeActions] = &[
    TypeActions {
        kind: Kind::Data,
        name: "aws_ami",
        actions: &["ec2:DescribeImages", "ec2:GetInstanceUefiData"],
        why: "logged (5.100.0 reads the image's UEFI data after DescribeImages)",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_availability_zones",
        actions: &["ec2:DescribeAvailabilityZones"],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_ebs_volume",
        actions: &["ec2:DescribeVolumes"],
        why: "the provider's Read (DescribeVolumes); not in the logged run",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_ebs_volumes",
        actions: &["ec2:DescribeVolumes"],
        why: "the provider's Read (DescribeVolumes); not in the logged run",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_ec2_instance_type_offerings",
        actions: &["ec2:DescribeInstanceTypeOfferings"],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_subnet",
        actions: &["ec2:DescribeSubnets"],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_subnets",
        actions: &["ec2:DescribeSubnets"],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Data,
        name: "aws_vpc",
        actions: &[
            "ec2:DescribeRouteTables",
            "ec2:DescribeVpcAttribute",
            "ec2:DescribeVpcs",
        ],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_ebs_volume",
        actions: &[
            "ec2:CreateTags",
            "ec2:CreateVolume",
            "ec2:DeleteTags",
            "ec2:DeleteVolume",
            "ec2:DescribeVolumes",
            "ec2:DescribeVolumesModifications",
            "ec2:ModifyVolume",
        ],
        why: "logged; CreateTags for the tags sent with CreateVolume (tag on create), DeleteTags when a tag is removed",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_ec2_instance_state",
        actions: &[
            "ec2:DescribeInstanceStatus",
            "ec2:DescribeInstances",
            "ec2:StartInstances",
            "ec2:StopInstances",
        ],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_ec2_tag",
        actions: &["ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeTags"],
        why: "logged",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_iam_instance_profile",
        actions: &[
            "iam:AddRoleToInstanceProfile",
            "iam:CreateInstanceProfile",
            "iam:DeleteInstanceProfile",
            "iam:GetInstanceProfile",
            "iam:GetRole",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:TagInstanceProfile",
            "iam:UntagInstanceProfile",
            "iam:PassRole",
        ],
        why: "logged; Tag/UntagInstanceProfile for the profile's tags (sent with CreateInstanceProfile); AddRoleToInstanceProfile needs iam:PassRole on the role (IAM API reference)",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_instance",
        actions: &[
            "ec2:AssociateIamInstanceProfile",
            "ec2:CancelSpotInstanceRequests",
            "ec2:CreateTags",
            "ec2:DeleteTags",
            "ec2:DescribeIamInstanceProfileAssociations",
            "ec2:DescribeImages",
            "ec2:DescribeInstanceAttribute",
            "ec2:DescribeInstanceCreditSpecifications",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstances",
            "ec2:DescribeSpotInstanceRequests",
            "ec2:DescribeTags",
            "ec2:DescribeVolumes",
            "ec2:DescribeVolumesModifications",
            "ec2:DescribeVpcs",
            "ec2:DisassociateIamInstanceProfile",
            "ec2:ModifyInstanceAttribute",
            "ec2:ModifyInstanceMetadataOptions",
            "ec2:ModifyVolume",
            "ec2:ReplaceIamInstanceProfileAssociation",
            "ec2:RunInstances",
            "ec2:StartInstances",
            "ec2:StopInstances",
            "ec2:TerminateInstances",
            "iam:CreateServiceLinkedRole",
            "iam:PassRole",
        ],
        why: "logged; a spot aws_instance (instance_market_options) needs AWSServiceRoleForEC2Spot like RequestSpotInstances does (iam:CreateServiceLinkedRole on a fresh account); a changed instance profile (Associate/Replace/Disassociate, DescribeIamInstanceProfileAssociations) and metadata options (ModifyInstanceMetadataOptions) per the provider's Update; a spot aws_instance reads and cancels its request (DescribeSpot/CancelSpotInstanceRequests, 5.100.0 Delete); RunInstances with an instance profile needs iam:PassRole",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_spot_instance_request",
        actions: &[
            "ec2:CancelSpotInstanceRequests",
            "ec2:CreateTags",
            "ec2:DescribeImages",
            "ec2:DescribeInstances",
            "ec2:DescribeSpotInstanceRequests",
            "ec2:DescribeVolumes",
            "ec2:DescribeVpcs",
            "ec2:RequestSpotInstances",
            "ec2:TerminateInstances",
            "iam:CreateServiceLinkedRole",
            "iam:PassRole",
        ],
        why: "logged; CreateTags for the request's tags (tag on create); iam:CreateServiceLinkedRole for AWSServiceRoleForEC2Spot on an account that never requested a Spot Instance (EC2 user guide, service-linked roles for Spot Instance requests); an instance profile needs iam:PassRole",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "aws_volume_attachment",
        actions: &[
            "ec2:AttachVolume",
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:DetachVolume",
            "ec2:StopInstances",
        ],
        why: "logged (stop_instance_before_detaching stops the instance)",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "terraform_data",
        actions: &[],
        why: "built into Terraform: no AWS call",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "coder_agent",
        actions: &[],
        why: "coder provider: no AWS call",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "coder_agent_instance",
        actions: &[],
        why: "coder provider: no AWS call",
    },
    TypeActions {
        kind: Kind::Resource,
        name: "coder_metadata",
        actions: &[],
        why: "coder provider: no AWS call",
    },
    TypeActions {
        kind: Kind::Data,
        name: "coder_parameter",
        actions: &[],
        why: "coder provider: no AWS call",
    },
    TypeActions {
        kind: Kind::Data,
        name: "coder_workspace",
        actions: &[],
        why: "coder provider: no AWS call",
    },
    TypeActions {
        kind: Kind::Data,
        name: "coder_workspace_owner",
        actions: &[],
        why: "coder provider: no AWS call",
    },
];

/// The template's instance profiles are named `coder-<owner>-<workspace>-profile`.
pub const INSTANCE_PROFILE_ARN: &str = "arn:aws:iam::*:instance-profile/coder-*";
/// The spot service-linked role (created once per account).
pub const SPOT_SLR_ARN: &str =
    "arn:aws:iam::*:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot*";

/// `.tf` files of the template (module `tests/` excluded).
pub fn tf_files(root: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let n = e.file_name();
            if p.is_dir() {
                if n != "tests" && n != ".terraform" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "tf") {
                out.push(p);
            }
        }
    }
    let mut v = vec![];
    walk(&root.join("templates"), &mut v);
    v.sort();
    v
}

/// Every `resource`/`data` type the template declares, with the file of
/// its first use; an unparsable file is an error naming it.
pub fn template_types(root: &Path) -> anyhow::Result<Vec<(Kind, String, PathBuf)>> {
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for f in tf_files(root) {
        let text = std::fs::read_to_string(&f)?;
        let body: hcl::Body =
            hcl::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        for b in body.blocks() {
            let kind = match b.identifier() {
                "resource" => Kind::Resource,
                "data" => Kind::Data,
                _ => continue,
            };
            if let Some(t) = b.labels().first() {
                if seen.insert((kind, t.as_str().to_string())) {
                    out.push((kind, t.as_str().to_string(), f.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The entry for a type, if any.
pub fn entry(kind: Kind, name: &str) -> Option<&'static TypeActions> {
    TYPES.iter().find(|t| t.kind == kind && t.name == name)
}

/// Types the template uses that [`TYPES`] does not list.
pub fn unmapped(root: &Path) -> anyhow::Result<Vec<(Kind, String, PathBuf)>> {
    Ok(template_types(root)?
        .into_iter()
        .filter(|(k, n, _)| entry(*k, n).is_none())
        .collect())
}

/// The actions of the types the template uses, sorted and deduplicated.
pub fn actions(root: &Path) -> anyhow::Result<BTreeSet<&'static str>> {
    let mut out = BTreeSet::new();
    for (k, n, _) in template_types(root)? {
        if let Some(e) = entry(k, &n) {
            out.extend(e.actions.iter().copied());
        }
    }
    Ok(out)
}

/// The policy document (pretty JSON, one action per line):
/// - EC2 on `*` (EC2's Describe actions take no resource ARNs, and the
///   template creates instances, volumes and requests whose ids are not
///   known in advance);
/// - the instance-profile actions on the template's profile names only;
/// - `iam:PassRole` to EC2 only (the `iam_role_name` parameter's roles;
///   narrow `Resource` to those roles' ARNs if you can list them);
/// - `iam:CreateServiceLinkedRole` for EC2 Spot only (spot variants, once
///   per account).
pub fn policy_json(root: &Path) -> anyhow::Result<String> {
    let all = actions(root)?;
    let ec2: Vec<&str> = all
        .iter()
        .copied()
        .filter(|a| a.starts_with("ec2:"))
        .collect();
    let profile: Vec<&str> = all
        .iter()
        .copied()
        .filter(|a| (a.starts_with("iam:") && a.contains("InstanceProfile")) || *a == "iam:GetRole")
        .collect();
    let other: Vec<&str> = all
        .iter()
        .copied()
        .filter(|a| !a.starts_with("ec2:") && !profile.contains(a))
        .filter(|a| !["iam:PassRole", "iam:CreateServiceLinkedRole"].contains(a))
        .collect();
    anyhow::ensure!(
        other.is_empty(),
        "harness::template::iam: no statement places {other:?}; extend policy_json"
    );
    let mut statements = vec![serde_json::json!({
        "Sid": "CoderWorkspacesEc2",
        "Effect": "Allow",
        "Action": ec2,
        "Resource": "*",
    })];
    if !profile.is_empty() {
        let (get_role, profile): (Vec<&str>, Vec<&str>) =
            profile.into_iter().partition(|a| *a == "iam:GetRole");
        statements.push(serde_json::json!({
            "Sid": "CoderWorkspaceInstanceProfiles",
            "Effect": "Allow",
            "Action": profile,
            "Resource": INSTANCE_PROFILE_ARN,
        }));
        if !get_role.is_empty() {
            statements.push(serde_json::json!({
                "Sid": "CoderWorkspaceRolesRead",
                "Effect": "Allow",
                "Action": get_role,
                "Resource": "*",
            }));
        }
    }
    if all.contains("iam:PassRole") {
        statements.push(serde_json::json!({
            "Sid": "CoderWorkspaceRolesToEc2",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }));
    }
    if all.contains("iam:CreateServiceLinkedRole") {
        statements.push(serde_json::json!({
            "Sid": "Ec2SpotServiceLinkedRole",
            "Effect": "Allow",
            "Action": ["iam:CreateServiceLinkedRole"],
            "Resource": SPOT_SLR_ARN,
            "Condition": {"StringLike": {"iam:AWSServiceName": "spot.amazonaws.com"}},
        }));
    }
    let doc = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// The marker in `docs/aws-setup.md` before the policy's ```json block.
pub const DOC_MARKER: &str =
    "<!-- provisioner-policy: generated by harness::template::iam::policy_json() -->";
/// The document that shows the policy.
pub const DOC: &str = "docs/aws-setup.md";

/// The ```json block after [`DOC_MARKER`] in `text`, if any.
pub fn documented_policy(text: &str) -> Option<&str> {
    text.split_once(DOC_MARKER)
        .and_then(|(_, a)| a.split_once("```json\n"))
        .and_then(|(_, b)| b.split_once("\n```"))
        .map(|(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_the_template_uses_has_actions() {
        let root = crate::repo::root().unwrap();
        let types = template_types(&root).unwrap();
        // The scanner sees the template's AWS resources.
        for want in ["aws_instance", "aws_ebs_volume", "aws_volume_attachment"] {
            assert!(types.iter().any(|(_, n, _)| n == want), "{want}: {types:?}");
        }
        assert!(types
            .iter()
            .any(|(k, n, _)| *k == Kind::Data && n == "aws_ami"));
        let missing = unmapped(&root).unwrap();
        assert!(
            missing.is_empty(),
            "harness::template::iam::TYPES has no entry for {:?}: add the AWS actions each needs (run it against moto with TF_LOG_PROVIDER=DEBUG and read rpc.method per tf_resource_type)",
            missing
                .iter()
                .map(|(k, n, f)| format!("{} \"{n}\" ({})", k.block(), f.display()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_new_type_without_actions_is_caught() {
        let d = tempfile::tempdir().unwrap();
        crate::template::terraform::copy_tree(
            &crate::repo::root().unwrap().join("templates"),
            &d.path().join("templates"),
        )
        .unwrap();
        std::fs::write(
            d.path().join("templates/modules/ec2-instance/extra.tf"),
            "resource \"aws_eip\" \"x\" {\n  domain = \"vpc\"\n}\n",
        )
        .unwrap();
        let m = unmapped(d.path()).unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!((m[0].0, m[0].1.as_str()), (Kind::Resource, "aws_eip"));
        // Module tests do not count.
        assert!(tf_files(d.path())
            .iter()
            .all(|f| !f.to_string_lossy().contains("/tests/")));
    }

    #[test]
    fn the_policy_scopes_iam_and_covers_what_the_provider_calls() {
        let root = crate::repo::root().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&policy_json(&root).unwrap()).unwrap();
        let st = doc["Statement"].as_array().unwrap();
        let by_sid = |sid: &str| {
            st.iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("{sid}"))
        };
        let ec2 = by_sid("CoderWorkspacesEc2");
        let ec2_actions: Vec<&str> = ec2["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // Spot is an aws_instance with instance_market_options (RunInstances),
        // not aws_spot_instance_request (RequestSpotInstances), since issue 20.
        assert!(!ec2_actions.contains(&"ec2:RequestSpotInstances"));
        for want in [
            "ec2:RunInstances",
            "ec2:DescribeInstanceTypeOfferings",
            "ec2:CreateVolume",
            "ec2:AttachVolume",
            "ec2:ModifyVolume",
            "ec2:CreateTags",
            "ec2:DescribeImages",
            "ec2:StopInstances",
            "ec2:TerminateInstances",
            "ec2:CancelSpotInstanceRequests",
        ] {
            assert!(
                ec2_actions.contains(&want),
                "{want} missing: {ec2_actions:?}"
            );
        }
        assert!(ec2_actions.iter().all(|a| a.starts_with("ec2:")));
        let mut sorted = ec2_actions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ec2_actions, "sorted, once each");
        let profiles = by_sid("CoderWorkspaceInstanceProfiles");
        assert_eq!(profiles["Resource"], INSTANCE_PROFILE_ARN);
        assert!(profiles["Action"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "iam:CreateInstanceProfile"));
        let pass = by_sid("CoderWorkspaceRolesToEc2");
        assert_eq!(pass["Action"], serde_json::json!(["iam:PassRole"]));
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            "ec2.amazonaws.com"
        );
        let slr = by_sid("Ec2SpotServiceLinkedRole");
        assert_eq!(slr["Resource"], SPOT_SLR_ARN);
        assert_eq!(
            slr["Condition"]["StringLike"]["iam:AWSServiceName"],
            "spot.amazonaws.com"
        );
        // No statement grants iam:* or iam actions on "*" beyond GetRole and PassRole.
        for s in st {
            for a in s["Action"].as_array().unwrap() {
                let a = a.as_str().unwrap();
                assert!(!a.ends_with(":*"), "{a}");
                if a.starts_with("iam:") && s["Resource"] == "*" {
                    assert!(a == "iam:GetRole" || a == "iam:PassRole", "{a} on *");
                }
            }
        }
        // The instance-profile name pattern matches the template's.
        let tf =
            std::fs::read_to_string(root.join("templates/modules/ec2-instance/main.tf")).unwrap();
        assert!(
            tf.contains("name  = \"${var.name}-profile\""),
            "instance profile name changed"
        );
        let main = std::fs::read_to_string(root.join("templates/main.tf")).unwrap();
        assert!(
            main.contains("name           = \"coder-${"),
            "workspace name prefix changed"
        );
    }

    #[test]
    fn the_docs_show_the_generated_policy() {
        let root = crate::repo::root().unwrap();
        let text = std::fs::read_to_string(root.join(DOC)).unwrap();
        let block = documented_policy(&text).unwrap_or_else(|| {
            panic!("{DOC}: expected `{DOC_MARKER}` and a ```json block after it")
        });
        assert_eq!(
            block,
            policy_json(&root).unwrap(),
            "{DOC}'s policy differs from the generated one: paste `cargo run -p harness -- policy`"
        );
    }
}

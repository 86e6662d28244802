//! AWS EC2 for the `ec2` tier: what the harness itself does on AWS around
//! the workspaces Coder's provisioner builds with the real template
//! (observation, the spot interruption, tagging and leak-proof cleanup);
//! the harness launches no instance of its own.
//!
//! - [`iam`]: the IAM policy, generated from the list of calls the code makes and what the template's provisioner needs;
//! - [`config`]: credential chain, region and endpoint (`HARNESS_EC2_*`), checked before anything is created;
//! - [`lifecycle`]: instance state, spot request cancel, console output;
//! - [`names`]: every name, description and tag checked against AWS's character sets;
//! - [`retry`]: bounded backoff over EC2's eventual consistency (NotFound right after create), volume waits;
//! - [`observe`]: one way to observe a workspace (instance, volumes, spot request, user-data) by its tags, whatever built it, and the pure checks over what was seen;
//! - [`interrupt`]: a real spot interruption through AWS FIS (or the precise reason it cannot run) and EC2's own restart;
//! - [`sweep`]: delete everything tagged `harness:run-id`, and what the template built for the owner's Coder user (instances, spot requests, volumes, keys, groups, FIS templates);
//! - [`stop`]: the cooperative stop (Ctrl-C) a sweep honours between deletions;
//! - [`terraform_tests`]: `terraform test` of the AWS modules against a mocked provider (mirror).

pub mod config;
pub mod iam;
pub mod interrupt;
pub mod lifecycle;
#[cfg(test)]
pub(crate) mod mock;
pub mod names;
pub mod observe;
pub mod retry;
pub mod stop;
pub mod sweep;
pub mod terraform_tests;

/// Tag every harness-created resource carries; `harness sweep` only ever
/// looks at resources with this tag key.
pub const TAG_RUN_ID: &str = "harness:run-id";
/// The scenario (or `ec2-launch`) that created the resource.
pub const TAG_SCENARIO: &str = "harness:scenario";
/// RFC 3339 creation time; `harness sweep --older-than` compares against it.
pub const TAG_CREATED_AT: &str = "harness:created-at";
/// Who ran the harness (`HARNESS_OWNER`, else `$USER@hostname`).
pub const TAG_OWNER: &str = "harness:owner";

/// The identity tags of one harness run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTags {
    pub run_id: String,
    pub scenario: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub owner: String,
}

impl RunTags {
    /// Fresh tags for a run of `scenario` now.
    pub fn new(scenario: &str) -> RunTags {
        let now = std::time::SystemTime::now();
        let nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let rand: u32 = rand::random();
        RunTags {
            run_id: format!("h{:x}{:08x}", nanos / 1_000_000, rand),
            // Tag values keep to AWS's cross-service character set.
            scenario: names::tag_value(scenario),
            created_at: rfc3339(now),
            owner: default_owner(),
        }
    }

    /// The four tags as (key, value) pairs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        vec![
            (TAG_RUN_ID.to_string(), self.run_id.clone()),
            (TAG_SCENARIO.to_string(), self.scenario.clone()),
            (TAG_CREATED_AT.to_string(), self.created_at.clone()),
            (TAG_OWNER.to_string(), self.owner.clone()),
        ]
    }

    /// Name used for the run's key pair and security group.
    pub fn resource_name(&self) -> String {
        format!("harness-{}", self.run_id)
    }
}

/// `t` as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    DateTime::from_secs(secs)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// Parse an RFC 3339 time (as written by [`rfc3339`]).
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
    let d = DateTime::from_str(s, DateTimeFormat::DateTime).ok()?;
    std::time::SystemTime::try_from(d).ok()
}

/// The owner a run is tagged with and `harness sweep` sweeps by default:
/// `HARNESS_OWNER` (CI sets one per job/cell), else `$USER@hostname`
/// (per developer and machine), as a valid tag value.
pub fn default_owner() -> String {
    names::tag_value(&raw_owner())
}

/// Prefix of the Coder user every `ec2` run creates ([`coder_user`]).
pub const CODER_USER_PREFIX: &str = "harness-";

/// The template's tag naming the workspace owner's Coder username
/// (`local.tags` in templates/main.tf).
pub const TEMPLATE_OWNER_TAG: &str = "coder_owner";
/// The template's tag on everything it creates (templates/main.tf).
pub const TEMPLATE_PROVISIONED_TAG: &str = "Coder_Provisioned";
/// The template's tag naming the workspace.
pub const TEMPLATE_WORKSPACE_TAG: &str = "coder_workspace";

/// The Coder username the `ec2` tier's workspaces belong to for harness
/// owner `owner` ([`default_owner`]): `harness-` and the first 12 hex
/// digits of SHA-256(owner).  The template tags everything it creates with
/// `coder_owner` = this name (templates/main.tf, `local.tags`), so
/// `harness sweep --owner X` finds what a killed run of owner X left
/// although no `harness:*` tag is on it.  A hash because an owner
/// (`user@host`, a CI cell) need not be a valid Coder username: at most 32
/// characters matching `^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$`
/// (coder/coder codersdk/name.go, `UsernameValidRegex`, `NameValid`).
pub fn coder_user(owner: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(owner.as_bytes());
    format!("{CODER_USER_PREFIX}{}", &hex::encode(h)[..12])
}

/// Whether `name` has the shape of a [`coder_user`] (the janitor's
/// `--all-owners` sweep takes only those: a real user's workspace built
/// from the same template in the same account is never a candidate).
pub fn is_coder_user(name: &str) -> bool {
    name.strip_prefix(CODER_USER_PREFIX).is_some_and(|h| {
        h.len() == 12
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn raw_owner() -> String {
    if let Ok(o) = std::env::var("HARNESS_OWNER") {
        if !o.is_empty() {
            return o;
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

/// Tags as EC2 `Tag`s.
pub fn ec2_tags(pairs: &[(String, String)]) -> Vec<aws_sdk_ec2::types::Tag> {
    pairs
        .iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// One `TagSpecification` for resource type `kind`.
pub fn tag_spec(
    kind: aws_sdk_ec2::types::ResourceType,
    pairs: &[(String, String)],
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2_tags(pairs)))
        .build()
}

/// A tag's value from an EC2 tag list.
pub fn tag_value<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_tags_are_complete() {
        let t = RunTags::new("unit");
        let keys: Vec<_> = t.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [TAG_RUN_ID, TAG_SCENARIO, TAG_CREATED_AT, TAG_OWNER]);
        assert!(t.created_at.ends_with('Z'), "{}", t.created_at);
        let back = parse_rfc3339(&t.created_at).unwrap();
        assert_eq!(rfc3339(back), t.created_at);
        assert!(t.resource_name().starts_with("harness-h"));
    }

    /// The Coder user of an owner is a valid Coder username (codersdk
    /// name.go), stable, distinct per owner, and recognisable.
    #[test]
    fn coder_user_is_a_valid_username_per_owner() {
        let a = coder_user("runner@ci-host");
        assert_eq!(a, coder_user("runner@ci-host"));
        assert_ne!(a, coder_user("runner@ci-host2"));
        assert!(a.len() <= 32, "{a}");
        assert!(a
            .split('-')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric())));
        assert!(is_coder_user(&a));
        for not in [
            "admin",
            "harness-",
            "harness-xyz",
            "alice",
            "harness-0123456789abc",
        ] {
            assert!(!is_coder_user(not), "{not}");
        }
    }
}

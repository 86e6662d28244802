//! Every name, description and tag the harness sends to EC2, checked in one
//! place against AWS's character sets before anything is created.  moto
//! accepts anything; AWS does not (a security-group description with an
//! apostrophe fails every launch at CreateSecurityGroup).
//!
//! Sources (the SDK's input docs, which mirror the EC2 API reference):
//! - `CreateSecurityGroupInput` `group_name` / `description`: up to 255
//!   characters; in a VPC `a-z A-Z 0-9`, spaces and `._-:/()#,@[]+=&;{}!$*`;
//!   a name may not start with `sg-`;
//! - `IpRange` `description` (AuthorizeSecurityGroupIngress): the same set,
//!   up to 255;
//! - `ImportKeyPairInput` `key_name`: up to 255 ASCII characters;
//! - tags (EC2 user guide, "Tag restrictions"): key 1–128, value 0–256
//!   Unicode characters, no `aws:` prefix; EC2 itself allows any character,
//!   but the set shared by all services is letters, digits, spaces and
//!   `+ - = . _ : / @`, which the harness keeps to (tags are also read by
//!   other services, e.g. Cost Explorer).

/// Extra characters AWS allows in security-group names and descriptions.
const SG_EXTRA: &str = " ._-:/()#,@[]+=&;{}!$*";
/// Extra characters every AWS service allows in tags.
const TAG_EXTRA: &str = " +-=._:/@";

/// What kind of text a check is about (names the AWS rule in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SecurityGroupName,
    SecurityGroupDescription,
    IpRangeDescription,
    KeyPairName,
    TagKey,
    TagValue,
}

impl Kind {
    fn rule(self) -> &'static str {
        match self {
            Kind::SecurityGroupName | Kind::SecurityGroupDescription | Kind::IpRangeDescription => {
                "1–255 of a-z A-Z 0-9, spaces and ._-:/()#,@[]+=&;{}!$*"
            }
            Kind::KeyPairName => "1–255 printable ASCII characters",
            Kind::TagKey => {
                "1–128 letters, digits, spaces and + - = . _ : / @, not starting with aws:"
            }
            Kind::TagValue => "0–256 letters, digits, spaces and + - = . _ : / @",
        }
    }

    fn allowed(self, c: char) -> bool {
        match self {
            Kind::SecurityGroupName | Kind::SecurityGroupDescription | Kind::IpRangeDescription => {
                c.is_ascii_alphanumeric() || SG_EXTRA.contains(c)
            }
            Kind::KeyPairName => c.is_ascii_graphic() || c == ' ',
            Kind::TagKey | Kind::TagValue => c.is_alphanumeric() || TAG_EXTRA.contains(c),
        }
    }

    fn len_ok(self, n: usize) -> bool {
        match self {
            Kind::TagKey => (1..=128).contains(&n),
            Kind::TagValue => n <= 256,
            _ => (1..=255).contains(&n),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::SecurityGroupName => "security group name",
            Kind::SecurityGroupDescription => "security group description",
            Kind::IpRangeDescription => "ingress rule description",
            Kind::KeyPairName => "key pair name",
            Kind::TagKey => "tag key",
            Kind::TagValue => "tag value",
        })
    }
}

/// `text` is a valid `kind` for AWS, or an error naming the text, the first
/// bad character and the rule.
pub fn check(kind: Kind, text: &str) -> anyhow::Result<()> {
    let n = text.chars().count();
    if !kind.len_ok(n) {
        anyhow::bail!(
            "{kind} {text:?}: expected {}, seen {n} characters",
            kind.rule()
        );
    }
    if let Some(c) = text.chars().find(|c| !kind.allowed(*c)) {
        anyhow::bail!("{kind} {text:?}: expected {}, seen {c:?}", kind.rule());
    }
    if kind == Kind::SecurityGroupName && text.starts_with("sg-") {
        anyhow::bail!("{kind} {text:?}: must not start with `sg-`");
    }
    if kind == Kind::TagKey && text.to_ascii_lowercase().starts_with("aws:") {
        anyhow::bail!("{kind} {text:?}: the `aws:` prefix is reserved for AWS");
    }
    Ok(())
}

/// `text` with every character a tag value may not hold replaced by `-`
/// and cut to 256 characters (scenario names carry parentheses).
pub fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| if Kind::TagValue.allowed(c) { c } else { '-' })
        .take(256)
        .collect()
}

/// Check all `(key, value)` tag pairs.
pub fn check_tags(pairs: &[(String, String)]) -> anyhow::Result<()> {
    for (k, v) in pairs {
        check(Kind::TagKey, k)?;
        check(Kind::TagValue, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_character_sets() {
        // The description every launch sent before: an apostrophe, which
        // AWS rejects (moto accepted it).
        let old = "harness run: SSH from the caller's IP only; deleted with the run";
        let e = check(Kind::SecurityGroupDescription, old)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'\\''") && e.contains("._-:/()#,@[]+=&;{}!$*"),
            "{e}"
        );
        check(
            Kind::SecurityGroupDescription,
            "harness run: SSH from the caller IP only; deleted with the run",
        )
        .unwrap();
        check(Kind::SecurityGroupDescription, "ok ._-:/()#,@[]+=&;{}!$*").unwrap();
        for bad in ["é", "a\"b", "a<b", "a%b", "a\nb", ""] {
            assert!(
                check(Kind::SecurityGroupDescription, bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(check(Kind::SecurityGroupName, &"x".repeat(256)).is_err());
        assert!(check(Kind::SecurityGroupName, "sg-harness").is_err());
        check(Kind::SecurityGroupName, "harness-h1a2b").unwrap();
        check(Kind::KeyPairName, "harness-h1a2b").unwrap();
        assert!(check(Kind::KeyPairName, "schlüssel").is_err());
        check(Kind::TagKey, "harness:run-id").unwrap();
        assert!(check(Kind::TagKey, "aws:x").is_err());
        assert!(check(Kind::TagKey, "").is_err());
        check(Kind::TagValue, "").unwrap();
        check(Kind::TagValue, "2026-11-30T00:00:00Z").unwrap();
        check(Kind::TagValue, "root@host").unwrap();
        assert!(check(Kind::TagValue, "a (b)").is_err());
        assert_eq!(
            tag_value("comes back (aws-nixos-spot)"),
            "comes back -aws-nixos-spot-"
        );
        check(Kind::TagValue, &tag_value(&"(".repeat(300))).unwrap();
    }
}

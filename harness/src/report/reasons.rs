//! Skip reasons, once each: rows carry a short key (`[1]`, `[2]`), and the
//! distinct reasons follow the table once, each with the one thing to do
//! about it.
//!
//! Known causes (no Docker daemon, no NixOS image, no AWS credentials, no
//! Chromium, a provider that is not built, …) are recognised in the raw
//! reason and replaced by a short title and an action; anything else is
//! shortened to one line.  The AWS SDK's credential-chain dump (`… (
//! CredentialsNotLoaded(…), ProviderError(…) …`) is never printed: only the
//! title of the cause survives.

use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;

/// A recognised cause of a skip: a short title and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub title: String,
    pub action: String,
}

struct Known {
    re: Regex,
    /// Title; `$1` … are the regex's captures.
    title: &'static str,
    action: &'static str,
}

fn known() -> &'static [Known] {
    static K: OnceLock<Vec<Known>> = OnceLock::new();
    K.get_or_init(|| {
        let k = |re: &str, title: &'static str, action: &'static str| Known {
            re: Regex::new(re).expect("known-cause regex"),
            title,
            action,
        };
        vec![
            k(
                r"no NixOS image",
                "no NixOS image",
                "set HARNESS_IMAGE_X86_64 / HARNESS_IMAGE_AARCH64 to images built with nixos-vm/ (needs Nix with a binary cache)",
            ),
            k(
                r"(?i)docker is not running|cannot connect to the docker daemon|docker: (command )?not found|`docker info`",
                "no Docker daemon",
                "install docker.io and start it (the real Coder server runs in it)",
            ),
            k(
                r"image (\S+) is not present and cannot be pulled",
                "Coder image $1 not present",
                "docker pull (or docker load) it on a machine with network access",
            ),
            k(
                r"no AWS credentials",
                "no AWS credentials",
                "set AWS_PROFILE (and `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ),
            k(
                r"HARNESS_EC2_FIXTURE_FLAKE is not set",
                "no EC2 fixture flake",
                "set HARNESS_EC2_FIXTURE_FLAKE=github:<owner>/<repo>/<commit>?dir=nixos-vm/ec2 (a reference EC2 instances can fetch; docs/ec2.md)",
            ),
            k(
                r"fetch their fixture flakes from HARNESS_EC2_FIXTURE_FLAKE=\S+, but",
                "EC2 fixture flake not fetchable",
                "point HARNESS_EC2_FIXTURE_FLAKE at a public repository, mirror or HTTPS tarball (docs/ec2.md)",
            ),
            k(
                r"no AWS region",
                "no AWS region",
                "set HARNESS_EC2_REGION (or AWS_REGION), e.g. us-east-1",
            ),
            k(
                r"unknown AWS region",
                "unknown AWS region",
                "set HARNESS_EC2_REGION to a region the template lists",
            ),
            k(
                r"AWS region and credentials: expected them resolved within",
                "AWS credential chain did not answer",
                "set AWS_EC2_METADATA_DISABLED=true and AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ),
            k(
                r"needs provider hashicorp/aws: expected its \S+ binary in a filesystem mirror at (\S+)",
                "no hashicorp/aws provider in the mirror at $1 (ec2-instance module tests)",
                "put terraform-provider-aws under $HARNESS_TF_AWS_MIRROR (registry.terraform.io/hashicorp/aws/<version>/linux_<arch>/)",
            ),
            k(
                r"(?i)chromium[^;]*(not found|not installed|absent|missing)|no chromium",
                "no Chromium",
                "apt-get install -y --no-install-recommends chromium (ci/setup-debian.sh does)",
            ),
            k(
                r"needs provider\(s\) ([a-z0-9_, -]+?), which cannot be installed offline",
                "needs provider(s) $1, not installable offline",
                "its logic is tested through the provider-free modules; run it where the registry (or a provider mirror) is reachable",
            ),
            k(
                r"(?i)terraform-provider-(\S+?)[`'\x22]? (is )?not (built|found|in the mirror)|provider (\S+) (is )?not built",
                "provider not built",
                "run ci/setup-debian.sh: it builds terraform-provider-coder into the filesystem mirror",
            ),
            k(
                r"(?i)checkov[^;]*(not found|not installed)",
                "checkov not installed",
                "run ci/setup-debian.sh: it installs checkov 3.3.30 into its own venv, /opt/harness-checkov-venv, linked as /usr/local/bin/checkov (Debian's system pip refuses, PEP 668)",
            ),
            k(
                r"a step has no definition",
                "a step has no definition",
                "write the step in harness/src/e2e/ (cargo test … --features e2e lists it)",
            ),
            k(
                r"cargo not found",
                "cargo not found",
                "run the gate from a source checkout with the Rust toolchain",
            ),
            k(
                r"no variant loaded",
                "no variant loaded",
                "fix values/*.yml (harness lint says why)",
            ),
        ]
    })
}

/// Every known cause found in `reason`, in table order, each once.
pub fn causes(reason: &str) -> Vec<Cause> {
    let mut out: Vec<Cause> = Vec::new();
    for k in known() {
        if let Some(c) = k.re.captures(reason) {
            let mut title = String::new();
            c.expand(k.title, &mut title);
            let cause = Cause {
                title,
                action: k.action.to_string(),
            };
            if !out.contains(&cause) {
                out.push(cause);
            }
        }
    }
    out
}

/// `reason` without the AWS SDK's credential-chain dump (`no credentials
/// found in chain. Attempted:   Environment: …   Profile: …` up to the next
/// `; `), which `ec2::config` passes through from `DisplayErrorContext`.
pub fn scrub(reason: &str) -> String {
    static CHAIN: OnceLock<Regex> = OnceLock::new();
    let chain = CHAIN.get_or_init(|| Regex::new(r"(?s)\s*Attempted:.*?(; |$)").expect("regex"));
    chain.replace_all(reason, "$1").into_owned()
}

/// Longest one-line reason printed for a cause this module does not know.
const MAX_SHORT: usize = 200;

/// `reason` in one line: the titles of its known causes (`no NixOS image +
/// no Docker daemon`), or else its first line without any AWS SDK error
/// dump, cut to [`MAX_SHORT`] characters.
pub fn short(reason: &str) -> String {
    let c = causes(reason);
    if !c.is_empty() {
        return c
            .iter()
            .map(|c| c.title.as_str())
            .collect::<Vec<_>>()
            .join(" + ");
    }
    static DUMP: OnceLock<Regex> = OnceLock::new();
    // The SDK's DisplayErrorContext: "… (CredentialsNotLoaded(CredentialsNotLoaded { source: …".
    let dump = DUMP.get_or_init(|| Regex::new(r" \([A-Z][A-Za-z]+\(").expect("regex"));
    let reason = scrub(reason);
    let first = reason.trim().lines().next().unwrap_or("").trim();
    let cut = match dump.find(first) {
        Some(m) => first[..m.start()].trim_end(),
        None => first,
    };
    if cut.chars().count() > MAX_SHORT {
        let mut s: String = cut.chars().take(MAX_SHORT - 1).collect();
        s.push('…');
        s
    } else {
        cut.to_string()
    }
}

/// One distinct skip reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `[n]` on the rows.
    pub key: usize,
    /// One line: the known causes' titles or the shortened reason.
    pub title: String,
    /// What to do about it (known causes only), `; `-joined.
    pub action: Option<String>,
    /// How many rows carry this key.
    pub rows: usize,
    /// The first raw reason seen with this key (for the HTML report's detail).
    pub example: String,
}

/// Distinct skip reasons in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Reasons {
    entries: Vec<Entry>,
}

impl Reasons {
    /// The key of `reason`, adding it when new: reasons with the same known
    /// causes (or, for unknown ones, the same short line) share a key.
    pub fn key(&mut self, reason: &str) -> usize {
        let title = short(reason);
        if let Some(e) = self.entries.iter_mut().find(|e| e.title == title) {
            e.rows += 1;
            return e.key;
        }
        let c = causes(reason);
        let action = (!c.is_empty()).then(|| {
            c.iter()
                .map(|c| c.action.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        });
        let key = self.entries.len() + 1;
        self.entries.push(Entry {
            key,
            title,
            action,
            rows: 1,
            example: scrub(reason),
        });
        key
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// For the terminal: two lines per reason.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.entries.is_empty() {
            return s;
        }
        let _ = writeln!(s, "skipped, why, and what to do:");
        for e in &self.entries {
            let _ = writeln!(s, "[{}] {} ({})", e.key, e.title, rows(e.rows));
            if let Some(a) = &e.action {
                for (n, line) in wrap(a, WIDTH - 6).iter().enumerate() {
                    let _ = writeln!(s, "    {} {line}", if n == 0 { "→" } else { " " });
                }
            }
        }
        s
    }

    /// For Markdown (the CI job summary).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        if self.entries.is_empty() {
            return s;
        }
        s.push_str("\n**Skipped, why, and what to do**\n\n");
        for e in &self.entries {
            let _ = write!(
                s,
                "- **[{}]** {} ({})",
                e.key,
                md_escape(&e.title),
                rows(e.rows)
            );
            if let Some(a) = &e.action {
                let _ = write!(s, " → {}", md_escape(a));
            }
            s.push('\n');
        }
        s
    }
}

/// Width the terminal text is wrapped to.
pub(crate) const WIDTH: usize = 100;

/// Greedy word wrap to `width` characters.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

fn rows(n: usize) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// Text safe inside a Markdown table cell or list item.
pub fn md_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the e2e preflight and `ec2_skip_reason` print on a machine
    /// without Docker, Nix images and AWS credentials (the SDK dump included).
    const NIXOS: &str = "no NixOS image: nix cannot build here (no binary cache, no network); set HARNESS_IMAGE_<ARCH> or HARNESS_NIXOS_BUILD=1; the real Coder server cannot run here: Docker is not running (`docker info`: No such file or directory (os error 2))";
    const AWS: &str = "no AWS credentials: expected the standard chain (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE + ~/.aws/credentials or SSO, web identity, instance role) to yield credentials, seen: an error occurred while loading credentials (CredentialsNotLoaded(CredentialsNotLoaded { source: Some(\"no providers in chain provided credentials\") })); export AWS_PROFILE=<profile>";

    #[test]
    fn known_causes_get_a_title_and_an_action() {
        assert_eq!(short(NIXOS), "no NixOS image + no Docker daemon");
        let c = causes(NIXOS);
        assert!(c[0].action.contains("HARNESS_IMAGE_X86_64"), "{c:?}");
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert!(c[1].action.contains("docker.io"), "{c:?}");
        assert_eq!(short(AWS), "no AWS credentials");
        assert_eq!(
            short("needs provider(s) aws, coder, which cannot be installed offline; its logic…"),
            "needs provider(s) aws, coder, not installable offline"
        );
        assert_eq!(short("chromium not found on PATH"), "no Chromium");
    }

    /// Recorded with `HARNESS_BACKEND=ec2 HARNESS_EC2_REGION=us-east-1
    /// AWS_EC2_METADATA_DISABLED=true` and no credentials.
    const CHAIN: &str = "no AWS credentials: expected the standard chain (…) to yield credentials, seen: the credential provider was not enabled: no credentials found in chain. Attempted:   Environment: the credential provider was not enabled: environment variable not set   Profile: the credential provider was not enabled   Ec2InstanceMetadata: the credential provider was not enabled: IMDS disabled by AWS_EC2_METADATA_DISABLED env var set to `true`; export AWS_PROFILE=<profile>";

    #[test]
    fn the_ec2_fixture_flake_causes_are_known() {
        let r = crate::workspace::fixture_flake::ec2_base_problem(None).unwrap();
        assert_eq!(
            short(&format!("EC2 tier (HARNESS_BACKEND=ec2): {r}; {AWS}")),
            "no AWS credentials + no EC2 fixture flake"
        );
    }

    #[test]
    fn the_credential_chain_dump_is_never_kept() {
        let s = scrub(CHAIN);
        assert!(
            !s.contains("Attempted") && !s.contains("Environment:"),
            "{s}"
        );
        assert!(
            s.ends_with("no credentials found in chain.; export AWS_PROFILE=<profile>"),
            "{s}"
        );
        let mut r = Reasons::default();
        r.key(CHAIN);
        assert!(
            !r.entries()[0].example.contains("Profile:"),
            "{:?}",
            r.entries()
        );
        assert_eq!(scrub("plain; text"), "plain; text");
    }

    #[test]
    fn unknown_reasons_are_one_short_line_without_an_sdk_dump() {
        assert_eq!(short("  first line\nsecond"), "first line");
        let dumped = "dispatch failure (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Io } }))";
        assert_eq!(short(dumped), "dispatch failure");
        let long = "x".repeat(500);
        assert_eq!(short(&long).chars().count(), MAX_SHORT);
    }

    #[test]
    fn each_distinct_reason_is_keyed_once_and_listed_once() {
        let mut r = Reasons::default();
        let nixos_qemu = NIXOS.to_string();
        // Same causes, different wording: one key.
        let nixos_other = NIXOS.replace("(os error 2)", "(os error 13)");
        assert_eq!(r.key(&nixos_qemu), 1);
        assert_eq!(r.key(AWS), 2);
        assert_eq!(r.key(&nixos_other), 1);
        assert_eq!(r.key("something else"), 3);
        let t = r.text();
        assert_eq!(t.matches("no NixOS image").count(), 1, "{t}");
        assert!(
            t.contains("[1] no NixOS image + no Docker daemon (2 rows)"),
            "{t}"
        );
        assert!(t.contains("[2] no AWS credentials (1 row)"), "{t}");
        assert!(t.contains("→ set AWS_PROFILE"), "{t}");
        assert!(!t.contains("CredentialsNotLoaded"), "{t}");
        assert!(t.lines().count() <= 1 + 3 * 3, "{t}");
        assert!(t.lines().all(|l| l.chars().count() <= WIDTH), "{t}");
        let m = r.markdown();
        assert!(m.contains("- **[3]** something else (1 row)"), "{m}");
    }
}

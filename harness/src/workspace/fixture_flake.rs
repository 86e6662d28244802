//! Where a real workspace's test flake comes from, per backend: the
//! `flake_uri` parameter the scenario gives the template.
//!
//! - QEMU: the NixOS test image carries the fixtures at
//!   `/var/lib/harness/fixtures` ([`super::real::flake_uri`]).
//! - EC2: the official AMI has no such directory, so the instance fetches
//!   `nixos-vm/ec2` (every fixture for both arches, `<fixture>-<arch>`) from
//!   [`ENV_EC2_FIXTURE_FLAKE`], a flake reference it can reach over the
//!   network: the nightly passes `github:<owner>/<repo>/<commit>?dir=nixos-vm/ec2`,
//!   fetchable when the repository is public. A private repository's
//!   commits are not fetchable without credentials, and credentials do not
//!   belong in user-data (Coder shows it to template admins, EC2 to anyone
//!   with DescribeInstanceAttribute): give instead a reference they can
//!   fetch anonymously, e.g. a public mirror of `nixos-vm/`
//!   (`github:<org>/<mirror>/<rev>?dir=nixos-vm/ec2`) or an HTTPS tarball of
//!   the repository the run controls (an S3 presigned URL,
//!   `tarball+https://…`), docs/ec2.md "Fixture flakes on EC2". The
//!   preflight fetches the reference's URL from the runner without
//!   credentials and skips the EC2 scenarios with the reason when it is not
//!   there (a private repository answers 404), instead of letting every
//!   workspace fail at `nixos-rebuild`.

use crate::machine::backend::Backend;
use crate::template::variant::Arch;

/// The flake reference (no `#…`) of `nixos-vm/ec2` that EC2 instances fetch.
pub const ENV_EC2_FIXTURE_FLAKE: &str = "HARNESS_EC2_FIXTURE_FLAKE";

/// The template's `flake_uri` validation (templates/modules/bootstrap/main.tf):
/// a reference the EC2 base plus `#<fixture>-<arch>` must satisfy.
pub const TEMPLATE_FLAKE_URI_RULE: &str = r"^$|^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/:@%+=?&#-]+$";

/// Schemes an instance cannot fetch: they name the runner's own files.
const LOCAL_SCHEMES: [&str; 4] = ["path:", "git+file:", "file:", "tarball+file:"];

/// The `flake_uri` of fixture `flake` for a machine of `arch` on `backend`;
/// on EC2 `ec2_base` is [`ENV_EC2_FIXTURE_FLAKE`]'s value.
pub fn flake_uri(
    backend: Backend,
    arch: Arch,
    flake: &str,
    ec2_base: Option<&str>,
) -> anyhow::Result<String> {
    match backend {
        Backend::Qemu => Ok(super::real::flake_uri(flake)),
        Backend::Ec2 => {
            let base = ec2_base_problem(ec2_base)
                .map_or_else(|| Ok(ec2_base.unwrap_or_default().trim()), Err)
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(format!("{base}#{flake}-{}", arch.as_str()))
        }
    }
}

/// Why `base` (the value of [`ENV_EC2_FIXTURE_FLAKE`]) cannot give EC2
/// instances their fixtures, if it cannot.
pub fn ec2_base_problem(base: Option<&str>) -> Option<String> {
    let base = base.map(str::trim).unwrap_or_default();
    if base.is_empty() {
        return Some(format!(
            "{ENV_EC2_FIXTURE_FLAKE} is not set: EC2 instances boot the official NixOS AMI, which has no \
             /var/lib/harness/fixtures (only the QEMU test image does); expected a flake reference they can \
             fetch, e.g. github:<owner>/<repo>/<commit>?dir=nixos-vm/ec2 (the nightly sets it; a private \
             repository needs a public mirror or an HTTPS tarball URL, docs/ec2.md)"
        ));
    }
    if base.contains('#') {
        return Some(format!(
            "{ENV_EC2_FIXTURE_FLAKE}={base}: expected a flake reference without `#` (the harness appends #<fixture>-<arch>)"
        ));
    }
    if LOCAL_SCHEMES.iter().any(|s| base.starts_with(s)) {
        return Some(format!(
            "{ENV_EC2_FIXTURE_FLAKE}={base}: names a path on this machine, which an EC2 instance cannot fetch; \
             expected github:…, git+https:…, https:… or tarball+https:…"
        ));
    }
    let rule = regex::Regex::new(TEMPLATE_FLAKE_URI_RULE).expect("regex");
    let probe = format!("{base}#broken-build-aarch64");
    if !rule.is_match(&probe) {
        return Some(format!(
            "{ENV_EC2_FIXTURE_FLAKE}={base}: `{probe}` does not pass the template's flake_uri validation ({TEMPLATE_FLAKE_URI_RULE})"
        ));
    }
    None
}

/// The HTTPS URL whose unauthenticated fetch shows whether an instance can
/// fetch `base`: GitHub's tarball API for `github:owner/repo[/ref]`, the URL
/// itself for `https:`/`tarball+https:`; `None` for other schemes (not
/// checked).
pub fn fetch_url(base: &str) -> Option<String> {
    let base = base.trim();
    if let Some(rest) = base.strip_prefix("github:") {
        let path = rest.split('?').next().unwrap_or(rest);
        let mut parts = path.splitn(3, '/');
        let (owner, repo) = (parts.next()?, parts.next()?);
        if owner.is_empty() || repo.is_empty() {
            return None;
        }
        let reference = parts.next().filter(|r| !r.is_empty()).unwrap_or("HEAD");
        return Some(format!(
            "https://api.github.com/repos/{owner}/{repo}/tarball/{reference}"
        ));
    }
    let url = base.strip_prefix("tarball+").unwrap_or(base);
    url.starts_with("https://").then(|| url.to_string())
}

/// Bound on the preflight's fetch.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Why `url` (see [`fetch_url`]) is not fetchable without credentials, if
/// it is not: a HEAD request (redirects followed) must answer 2xx.
pub async fn unreachable(client: &reqwest::Client, base: &str, url: &str) -> Option<String> {
    let asked = tokio::time::timeout(
        PROBE_TIMEOUT,
        client
            .head(url)
            .header("User-Agent", "coder-template-harness")
            .send(),
    )
    .await;
    let why = match asked {
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
        Ok(Err(e)) => format!("{e}"),
        Ok(Ok(r)) if r.status().is_success() => return None,
        Ok(Ok(r)) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            "HTTP 404 without credentials (a private repository, or no such commit pushed)"
                .to_string()
        }
        Ok(Ok(r)) => format!("HTTP {}", r.status()),
    };
    Some(format!(
        "EC2 instances fetch their fixture flakes from {ENV_EC2_FIXTURE_FLAKE}={base}, but {url} answered: {why}; \
         expected it fetchable without credentials (for a private repository: a public mirror or an HTTPS \
         tarball URL, docs/ec2.md)"
    ))
}

/// [`ec2_base_problem`], then [`unreachable`] for its [`fetch_url`]: the
/// EC2 preflight's reason the scenarios cannot get their flakes.
pub async fn ec2_preflight(base: Option<&str>) -> Option<String> {
    if let Some(p) = ec2_base_problem(base) {
        return Some(p);
    }
    let base = base.unwrap_or_default().trim();
    let url = fetch_url(base)?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .ok()?;
    unreachable(&client, base, &url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_instances_get_a_fetchable_flake_per_fixture_and_arch() {
        let base = "github:acme/templates/0123abc?dir=nixos-vm/ec2";
        assert_eq!(
            flake_uri(Backend::Ec2, Arch::Aarch64, "good", Some(base)).unwrap(),
            "github:acme/templates/0123abc?dir=nixos-vm/ec2#good-aarch64"
        );
        // QEMU keeps the image's local fixtures; EC2 never gets them.
        assert_eq!(
            flake_uri(Backend::Qemu, Arch::X86_64, "good", None).unwrap(),
            "path:/var/lib/harness/fixtures#good"
        );
        let e = flake_uri(Backend::Ec2, Arch::X86_64, "good", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ENV_EC2_FIXTURE_FLAKE) && e.contains("/var/lib/harness/fixtures"),
            "{e}"
        );
        for bad in [
            "path:/var/lib/harness/fixtures",
            "git+file:///repo?dir=nixos-vm/ec2",
        ] {
            let e = ec2_base_problem(Some(bad)).unwrap();
            assert!(e.contains("cannot fetch"), "{e}");
        }
        assert!(ec2_base_problem(Some("github:a/b#good"))
            .unwrap()
            .contains('#'));
        assert!(ec2_base_problem(Some("github:a/b c"))
            .unwrap()
            .contains("validation"));
        assert_eq!(ec2_base_problem(Some(base)), None);
        assert_eq!(
            ec2_base_problem(Some(
                "tarball+https://b.s3.us-east-1.amazonaws.com/f.tar.gz?X-Amz-Signature=ab%2F"
            )),
            None
        );
    }

    #[test]
    fn the_rule_is_the_templates() {
        let root = crate::repo::root().unwrap();
        let main =
            std::fs::read_to_string(root.join("templates/modules/bootstrap/main.tf")).unwrap();
        assert!(
            main.contains(&TEMPLATE_FLAKE_URI_RULE.replace('\\', "\\\\")),
            "templates/modules/bootstrap/main.tf's flake_uri rule changed: update TEMPLATE_FLAKE_URI_RULE"
        );
    }

    #[test]
    fn nixos_vm_ec2_defines_every_fixture_for_both_arches() {
        // The attribute names flake_uri produces, as nixos-vm/ec2/flake.nix
        // builds them (evaluated for real in tests/nixos_vm_flake.rs).
        let root = crate::repo::root().unwrap();
        let flake = std::fs::read_to_string(root.join("nixos-vm/ec2/flake.nix")).unwrap();
        assert!(
            flake.contains(r#"fixtures = [ "good" "broken" "broken-build" ];"#),
            "{flake}"
        );
        assert!(
            flake.contains(r#"arches = { x86_64 = "x86_64-linux"; aarch64 = "aarch64-linux"; };"#)
        );
        assert!(flake.contains(r#"name = "${name}-${arch}";"#));
    }

    #[test]
    fn fetch_urls() {
        assert_eq!(
            fetch_url("github:acme/templates/0123abc?dir=nixos-vm/ec2").as_deref(),
            Some("https://api.github.com/repos/acme/templates/tarball/0123abc")
        );
        assert_eq!(
            fetch_url("github:acme/templates?dir=nixos-vm/ec2").as_deref(),
            Some("https://api.github.com/repos/acme/templates/tarball/HEAD")
        );
        assert_eq!(
            fetch_url("tarball+https://h/f.tar.gz?x=1").as_deref(),
            Some("https://h/f.tar.gz?x=1")
        );
        assert_eq!(fetch_url("git+ssh://git@h/r"), None);
    }

    /// A one-shot HTTP server on loopback answering `status` (a double of
    /// GitHub's tarball API).
    async fn answer(status: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        });
        format!("http://{addr}/repos/acme/private/tarball/HEAD")
    }

    #[tokio::test]
    async fn a_private_repository_is_a_skip_reason_and_a_public_one_is_not() {
        let c = reqwest::Client::new();
        let url = answer("404 Not Found").await;
        let r = unreachable(&c, "github:acme/private", &url).await.unwrap();
        assert!(
            r.contains("404") && r.contains("private") && r.contains(ENV_EC2_FIXTURE_FLAKE),
            "{r}"
        );
        let url = answer("200 OK").await;
        assert_eq!(unreachable(&c, "github:acme/public", &url).await, None);
    }
}

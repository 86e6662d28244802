//! AWS configuration for the EC2 backend: the standard credential chain and
//! region resolution (aws-config), plus `HARNESS_EC2_ENDPOINT` (tests point
//! it at moto on 127.0.0.1) and `HARNESS_EC2_REGION` (like `TERRATEST_REGION`).
//!
//! Everything here is checked before any resource is created: a missing
//! region, an unknown region or missing credentials fail with
//! expected / seen / what to do.

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{ProvideCredentials, Region};

/// Endpoint override (e.g. `http://127.0.0.1:5000` for moto).
pub const ENV_ENDPOINT: &str = "HARNESS_EC2_ENDPOINT";
/// Region override; wins over `AWS_REGION` and the profile's region.
pub const ENV_REGION: &str = "HARNESS_EC2_REGION";
/// CIDR allowed to reach the instances' sshd (default: the caller's IP /32).
pub const ENV_SSH_CIDR: &str = "HARNESS_EC2_SSH_CIDR";

/// AWS commercial regions the harness accepts (the AMI table lists the
/// subset with NixOS images).
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

/// Explicit settings for [`Ec2Ctx::load_with`]; `None` = the AWS chain.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// (access key id, secret) instead of the credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Any provider instead of the credential chain (tests: one that fails).
    pub credentials_provider: Option<aws_sdk_ec2::config::SharedCredentialsProvider>,
}

impl LoadOptions {
    /// `region` (else `HARNESS_EC2_REGION`) and `HARNESS_EC2_ENDPOINT`;
    /// credentials from the standard chain.
    pub fn from_env(region: Option<&str>) -> LoadOptions {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        LoadOptions {
            region: region.map(str::to_string).or_else(|| var(ENV_REGION)),
            endpoint: var(ENV_ENDPOINT),
            ..LoadOptions::default()
        }
    }
}

/// A connected, validated EC2 context for one region.
#[derive(Debug, Clone)]
pub struct Ec2Ctx {
    pub sdk: aws_config::SdkConfig,
    pub client: aws_sdk_ec2::Client,
    /// AWS FIS in the same region (the spot interruption; sweep).
    pub fis: aws_sdk_fis::Client,
    pub region: String,
    /// `HARNESS_EC2_ENDPOINT`, if set.
    pub endpoint: Option<String>,
}

/// The SDK's error chain up to its debug dump (` (ProviderError(…))`,
/// ` (CredentialsNotLoaded(…))`), which says nothing more and runs to
/// hundreds of characters.
fn short_error(s: &str) -> &str {
    let dump = regex::Regex::new(r" \([A-Z][A-Za-z]+\(").expect("regex");
    match dump.find(s) {
        Some(m) => s[..m.start()].trim_end(),
        None => s.trim_end(),
    }
}

/// Check `region` is a known AWS region name.
pub fn check_region(region: &str) -> anyhow::Result<()> {
    if KNOWN_REGIONS.contains(&region) {
        return Ok(());
    }
    anyhow::bail!(
        "unknown AWS region: expected one of {}, seen `{region}`; \
         set {ENV_REGION} (or AWS_REGION / --region) to one of them",
        KNOWN_REGIONS.join(", ")
    )
}

impl Ec2Ctx {
    /// Resolve region (`region` argument, else `HARNESS_EC2_REGION`, else the
    /// aws-config chain: `AWS_REGION`, profile), the endpoint override and
    /// credentials, and check them all.
    pub async fn load(region: Option<&str>) -> anyhow::Result<Ec2Ctx> {
        Self::load_with(LoadOptions::from_env(region)).await
    }

    /// Like [`Ec2Ctx::load`] with explicit settings instead of the
    /// `HARNESS_EC2_*` variables (tests use it to reach their own moto).
    pub async fn load_with(opts: LoadOptions) -> anyhow::Result<Ec2Ctx> {
        let LoadOptions {
            region,
            endpoint,
            static_credentials,
            credentials_provider,
        } = opts;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some((id, secret)) = static_credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "harness-static",
            ));
        }
        if let Some(p) = credentials_provider {
            loader = loader.credentials_provider(p);
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            anyhow::bail!(
                "no AWS region: expected {ENV_REGION}, --region, AWS_REGION or a profile `region`, \
                 seen none; e.g. export {ENV_REGION}=us-east-1"
            );
        };
        check_region(&region)?;
        let Some(creds) = sdk.credentials_provider() else {
            anyhow::bail!(
                "no AWS credentials provider: expected the standard chain, seen none configured; \
                 export AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            );
        };
        if let Err(e) = creds.provide_credentials().await {
            anyhow::bail!(
                "no AWS credentials: expected the standard chain (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE + ~/.aws/credentials or SSO, web identity, instance role) to yield credentials, \
                 seen: {}; export AWS_PROFILE=<profile> (and `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                short_error(&aws_sdk_ec2::error::DisplayErrorContext(&e).to_string())
            );
        }
        let client = aws_sdk_ec2::Client::new(&sdk);
        let fis = aws_sdk_fis::Client::new(&sdk);
        tracing::info!(
            region = %region,
            endpoint = endpoint.as_deref().unwrap_or("AWS"),
            "EC2 configured"
        );
        Ok(Ec2Ctx {
            sdk,
            client,
            fis,
            region,
            endpoint,
        })
    }

    /// The same configuration for another region.
    pub fn for_region(&self, region: &str) -> Ec2Ctx {
        let conf = aws_sdk_ec2::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_string()))
            .build();
        let fis = aws_sdk_fis::config::Builder::from(&self.sdk)
            .region(aws_sdk_fis::config::Region::new(region.to_string()))
            .build();
        Ec2Ctx {
            sdk: self.sdk.clone(),
            client: aws_sdk_ec2::Client::from_conf(conf),
            fis: aws_sdk_fis::Client::from_conf(fis),
            region: region.to_string(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// CIDR allowed to reach sshd.  Choice: only the caller's public IP as
    /// a /32 (from `HARNESS_EC2_SSH_CIDR`, else 127.0.0.1/32 against an
    /// endpoint override such as moto, else https://checkip.amazonaws.com),
    /// never 0.0.0.0/0: the instance is reachable only from where the
    /// harness runs, and only for the run's lifetime (the group is deleted
    /// with the run).
    pub async fn ssh_cidr(&self) -> anyhow::Result<String> {
        if let Ok(c) = std::env::var(ENV_SSH_CIDR) {
            if !c.is_empty() {
                return Ok(c);
            }
        }
        if self.endpoint.is_some() {
            return Ok("127.0.0.1/32".into());
        }
        let ip = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .get("https://checkip.amazonaws.com")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                anyhow::anyhow!(
                    "finding the caller's IP for the SSH security group: expected an answer from \
                     https://checkip.amazonaws.com, seen: {e}; set {ENV_SSH_CIDR}=<your ip>/32"
                )
            })?
            .text()
            .await?;
        let ip: std::net::Ipv4Addr = ip.trim().parse().map_err(|e| {
            anyhow::anyhow!(
                "checkip.amazonaws.com: expected an IPv4 address, seen `{}` ({e}); set {ENV_SSH_CIDR}",
                ip.trim()
            )
        })?;
        Ok(format!("{ip}/32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_errors_lose_the_debug_dump() {
        let s = "an error occurred while loading credentials: failed to load IMDS session token: request forbidden. (ProviderError(ProviderError { source: X }))";
        assert_eq!(
            short_error(s),
            "an error occurred while loading credentials: failed to load IMDS session token: request forbidden."
        );
        assert_eq!(short_error("plain"), "plain");
        assert_eq!(
            short_error("no credentials found in chain. Attempted: Env: not set (CredentialsNotLoaded(CredentialsNotLoaded { source: None }))"),
            "no credentials found in chain. Attempted: Env: not set"
        );
    }

    #[test]
    fn unknown_region_says_what_to_do() {
        check_region("us-east-1").unwrap();
        let e = check_region("mars-north-1").unwrap_err().to_string();
        assert!(
            e.contains("mars-north-1") && e.contains(ENV_REGION) && e.contains("us-east-1"),
            "{e}"
        );
    }
}

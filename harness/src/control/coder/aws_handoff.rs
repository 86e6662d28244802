//! The run's AWS credentials and region, handed to the Coder server's
//! built-in provisioner (`ec2` tier only), so that the real template's
//! `provider "aws"` (templates/main.tf) builds workspaces with them, as a
//! Coder deployment on AWS does with its own role.
//!
//! What reaches the provisioner is exactly [`PROVISIONER_ENV`] (names and
//! non-secret values, in the container's environment) plus one
//! shared-credentials file (`aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`), bind-mounted read-only-by-name from a private
//! temporary directory that is never under `target/` (CI uploads that) and
//! is removed when the hand-off is dropped.  The secrets are never in the
//! container spec (which `harness e2e --plan` prints), never in a log line,
//! and [`AwsHandOff`]'s `Debug` shows names only.
//!
//! The provisioner runs one `terraform` process per build, and the aws
//! provider reads the shared-credentials file at each start, so
//! [`AwsHandOff::refresh`] before every build hands over whatever the
//! harness's own credential chain holds then: a chain that refreshes itself
//! (profile/SSO, `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) is followed
//! build by build.  A fixed session (CI's `aws-actions/configure-aws-credentials`
//! exports AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN for
//! `role-duration-seconds`, 9000 s in ci/nightly.yml) cannot be renewed from
//! inside the job: the cell's timeout stays below it, and a build whose
//! credentials (when their expiry is known) would end before the build's
//! bound is refused up front by [`check_lifetime`], naming the expiry.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_ec2::config::ProvideCredentials;

/// The container path of the credentials directory (the host directory is
/// mounted here; its file name is random, see [`AwsHandOff::new`]).
pub const CONTAINER_DIR: &str = "/run/harness-aws";

/// The profile the shared-credentials file defines.
pub const PROFILE: &str = "harness-provisioner";

/// Every variable the hand-off puts into the Coder server's environment
/// (the provisioner inherits them). None holds a secret.
pub const PROVISIONER_ENV: [&str; 6] = [
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    // The Coder container must never fall back to the metadata service of
    // the machine it runs on (a CI runner may be an EC2 instance with its
    // own role): only the run's credentials build workspaces.
    "AWS_EC2_METADATA_DISABLED",
];

/// One set of credentials as the chain resolved them.
#[derive(Clone)]
pub struct Secrets {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expiry: Option<SystemTime>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiry", &self.expiry.map(crate::machine::ec2::rfc3339))
            .finish()
    }
}

impl Secrets {
    /// Every secret string, for tests that scan output for leaks.
    pub fn values(&self) -> Vec<&str> {
        let mut v = vec![self.access_key_id.as_str(), self.secret_access_key.as_str()];
        v.extend(self.session_token.as_deref());
        v
    }
}

/// The shared-credentials file's text (AWS CLI/SDK `credentials` format).
pub fn credentials_file(s: &Secrets) -> String {
    let mut t = format!(
        "[{PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        s.access_key_id, s.secret_access_key
    );
    if let Some(tok) = &s.session_token {
        t.push_str(&format!("aws_session_token = {tok}\n"));
    }
    t
}

/// Refuse a build that would outlive its credentials: `expiry` must lie at
/// least `need` (the build's bound) after `now`.  Unknown expiry passes
/// (static keys, or a fixed session whose end the chain does not say).
pub fn check_lifetime(
    expiry: Option<SystemTime>,
    now: SystemTime,
    need: Duration,
) -> anyhow::Result<()> {
    let Some(end) = expiry else { return Ok(()) };
    let left = end.duration_since(now).unwrap_or_default();
    if left < need {
        anyhow::bail!(
            "AWS credentials for the Coder provisioner: expected them valid for the next build's bound ({}s), \
             seen them expire at {} ({}s left); renew the session (aws sso login, a longer \
             role-duration-seconds) and run again",
            need.as_secs(),
            crate::machine::ec2::rfc3339(end),
            left.as_secs()
        );
    }
    Ok(())
}

/// The credentials directory and the environment that names it.
pub struct AwsHandOff {
    dir: tempfile::TempDir,
    file_name: String,
    region: String,
    provider: Option<aws_sdk_ec2::config::SharedCredentialsProvider>,
}

impl std::fmt::Debug for AwsHandOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsHandOff")
            .field("dir", &self.dir.path())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsHandOff {
    /// A private directory under the system temp dir (never `target/`):
    /// mode 0711 (the container's user may enter but not list it), holding
    /// one file with a random 128-bit name, mode 0644 (the container runs
    /// as another uid than the harness).
    pub fn new(region: &str) -> anyhow::Result<AwsHandOff> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("harness-aws-")
            .tempdir()
            .context("creating the AWS credentials hand-off directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        Ok(AwsHandOff {
            dir,
            file_name: format!("credentials-{:032x}", rand::random::<u128>()),
            region: region.to_string(),
            provider: None,
        })
    }

    /// Resolve credentials through `provider` (the run's chain) at each
    /// [`AwsHandOff::refresh`].
    pub fn with_provider(mut self, p: aws_sdk_ec2::config::SharedCredentialsProvider) -> Self {
        self.provider = Some(p);
        self
    }

    /// The host directory to bind-mount at [`CONTAINER_DIR`].
    pub fn host_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The credentials file on the host.
    pub fn host_file(&self) -> PathBuf {
        self.dir.path().join(&self.file_name)
    }

    /// The Coder server's extra environment: exactly [`PROVISIONER_ENV`].
    pub fn env(&self) -> Vec<(String, String)> {
        let file = format!("{CONTAINER_DIR}/{}", self.file_name);
        let config = format!("{CONTAINER_DIR}/config");
        let values = [
            file.as_str(),
            config.as_str(),
            PROFILE,
            &self.region,
            &self.region,
            "true",
        ];
        PROVISIONER_ENV
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Write `s` (atomically: a new file renamed over the old one, so a
    /// `terraform` starting meanwhile reads one whole version) and an
    /// empty-but-valid config file for the profile.
    pub fn write(&self, s: &Secrets) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt;
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path())?;
        tmp.write_all(credentials_file(s).as_bytes())?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.persist(self.host_file())
            .map_err(|e| anyhow::anyhow!("writing the AWS credentials hand-off: {}", e.error))?;
        let config = self.dir.path().join("config");
        std::fs::write(
            &config,
            format!("[profile {PROFILE}]\nregion = {}\n", self.region),
        )?;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// Resolve the run's credentials now, check they outlive `need`, and
    /// hand them over. Says which build it is for, never what it wrote.
    pub async fn refresh(&self, need: Duration) -> anyhow::Result<()> {
        let p = self.provider.as_ref().ok_or_else(|| {
            anyhow::anyhow!("AWS credentials hand-off: expected a credential provider, seen none")
        })?;
        let c = p.provide_credentials().await.map_err(|e| {
            anyhow::anyhow!(
                "AWS credentials for the Coder provisioner: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            )
        })?;
        let s = Secrets {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().map(str::to_string),
            expiry: c.expiry(),
        };
        check_lifetime(s.expiry, SystemTime::now(), need)?;
        self.write(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn secrets() -> Secrets {
        Secrets {
            access_key_id: "AKIAHARNESSTESTKEY01".into(),
            secret_access_key: "s3cr3t/harness+test/value0000000000000000".into(),
            session_token: Some("FwoGZXIvYXdzEHarnessSessionToken".into()),
            expiry: None,
        }
    }

    #[test]
    fn env_names_exactly_the_hand_off_and_no_secret() {
        let h = AwsHandOff::new("eu-west-1").unwrap();
        let env = h.env();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, PROVISIONER_ENV);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("AWS_REGION"), "eu-west-1");
        assert_eq!(get("AWS_DEFAULT_REGION"), "eu-west-1");
        assert_eq!(get("AWS_PROFILE"), PROFILE);
        assert_eq!(get("AWS_EC2_METADATA_DISABLED"), "true");
        assert!(get("AWS_SHARED_CREDENTIALS_FILE").starts_with(CONTAINER_DIR));
        // The file name is not guessable from the env of another run.
        assert_ne!(
            AwsHandOff::new("eu-west-1").unwrap().env()[0],
            env[0],
            "a random file name per run"
        );
        // The env is what goes into the container spec: no secret-looking key.
        for (k, _) in &env {
            assert!(!k.contains("SECRET") && !k.contains("TOKEN") && k != "AWS_ACCESS_KEY_ID");
        }
        assert!(!h.host_dir().starts_with(crate::repo::root().unwrap()));
    }

    #[test]
    fn the_file_carries_the_session_and_the_debug_output_does_not() {
        let h = AwsHandOff::new("us-east-1").unwrap();
        let s = secrets();
        h.write(&s).unwrap();
        let text = std::fs::read_to_string(h.host_file()).unwrap();
        assert!(text.starts_with(&format!("[{PROFILE}]\n")), "{text}");
        for v in s.values() {
            assert!(text.contains(v));
        }
        assert!(text.contains("aws_session_token = "));
        let shown = format!("{s:?} {h:?}");
        for v in s.values() {
            assert!(!shown.contains(v), "{shown}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(h.host_dir()), 0o711);
        assert_eq!(mode(&h.host_file()), 0o644);
        let config = std::fs::read_to_string(h.host_dir().join("config")).unwrap();
        assert_eq!(config, format!("[profile {PROFILE}]\nregion = us-east-1\n"));
        let dir = h.host_dir().to_path_buf();
        drop(h);
        assert!(!dir.exists(), "the hand-off is removed with the run");
    }

    #[test]
    fn a_session_ending_before_the_build_is_refused_naming_its_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let need = Duration::from_secs(900);
        check_lifetime(None, now, need).unwrap();
        check_lifetime(Some(now + Duration::from_secs(901)), now, need).unwrap();
        let e = check_lifetime(Some(now + Duration::from_secs(600)), now, need)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("600s left") && e.contains("900s") && e.contains("2027-01-15T08:"),
            "{e}"
        );
        assert!(check_lifetime(Some(now - Duration::from_secs(1)), now, need).is_err());
    }

    #[tokio::test]
    async fn refresh_hands_over_what_the_chain_holds_now() {
        let h = AwsHandOff::new("us-east-1").unwrap();
        let e = h.refresh(Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("provider"), "{e}");
        let creds = aws_sdk_ec2::config::Credentials::new(
            "AKIAFIRST",
            "secret-first",
            Some("token-first".into()),
            None,
            "test",
        );
        let h = h.with_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(creds));
        h.refresh(Duration::from_secs(60)).await.unwrap();
        let text = std::fs::read_to_string(h.host_file()).unwrap();
        assert!(
            text.contains("= AKIAFIRST\n") && text.contains("= token-first\n"),
            "{text}"
        );
        // A chain whose session ends too soon: refused, nothing rewritten.
        let soon = aws_sdk_ec2::config::Credentials::new(
            "AKIASECOND",
            "secret-second",
            None,
            Some(SystemTime::now() + Duration::from_secs(30)),
            "test",
        );
        let h = h.with_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(soon));
        let e = h.refresh(Duration::from_secs(900)).await.unwrap_err();
        assert!(!e.to_string().contains("secret-second"), "{e}");
        assert!(std::fs::read_to_string(h.host_file())
            .unwrap()
            .contains("AKIAFIRST"));
    }
}

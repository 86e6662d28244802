//! Which machine the e2e scenarios boot (`HARNESS_BACKEND`: `qemu` or
//! `ec2`), why the EC2 tier cannot run here (checked without creating
//! anything), and the process-wide EC2 context the tier observes and
//! sweeps with (the instances themselves are built by Coder's provisioner
//! with the real template: `workspace::real`).

use std::path::Path;
use std::time::Duration;

use crate::machine::ec2::config::{Ec2Ctx, LoadOptions, ENV_REGION};
use crate::template::variant::Arch;

/// Environment variable selecting the backend.
pub const ENV_BACKEND: &str = "HARNESS_BACKEND";
/// Bound on resolving region and credentials in [`ec2_skip_reason`].
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the scenarios' instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local QEMU VMs with an emulated IMDS (the default).
    Qemu,
    /// Real EC2 instances (`harness::machine::ec2`).
    Ec2,
}

impl Backend {
    /// `HARNESS_BACKEND`: unset, empty or `qemu` → QEMU, `ec2` → EC2.
    pub fn from_env() -> anyhow::Result<Backend> {
        let v = std::env::var_os(ENV_BACKEND).map(|v| v.to_string_lossy().into_owned());
        Backend::parse(v.as_deref())
    }

    /// [`Backend::from_env`] on a given value (`None` = unset).
    pub fn parse(v: Option<&str>) -> anyhow::Result<Backend> {
        match v.map(str::trim) {
            None | Some("") | Some("qemu") => Ok(Backend::Qemu),
            Some("ec2") => Ok(Backend::Ec2),
            Some(other) => anyhow::bail!(
                "{ENV_BACKEND}: expected `qemu` (the default) or `ec2`, seen `{other}`; \
                 unset it or set one of those"
            ),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Ec2 => "ec2",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the EC2 tier cannot run here, or `None` when it can: no credentials
/// in the AWS chain, no or an unknown region, or no NixOS release pinned in
/// `templates/variables.tf`.  Creates nothing and calls no EC2 API;
/// resolving region and credentials is bounded by [`PREFLIGHT_TIMEOUT`].
/// The AMI itself is looked up (DescribeImages) at launch, before anything
/// is created; a region without a NixOS image is a failure there, not a skip.
pub async fn ec2_skip_reason(root: &Path, arches: &[Arch]) -> Option<String> {
    skip_reason_with(root, arches, LoadOptions::from_env(None)).await
}

/// [`ec2_skip_reason`] with explicit settings instead of `HARNESS_EC2_*`.
pub async fn skip_reason_with(root: &Path, _arches: &[Arch], opts: LoadOptions) -> Option<String> {
    if let Err(e) = crate::template::ami::release(root) {
        return Some(format!("{e:#}"));
    }
    match load_bounded(opts).await {
        Ok(_) => None,
        Err(e) => Some(format!("{e:#}")),
    }
}

async fn load_bounded(opts: LoadOptions) -> anyhow::Result<Ec2Ctx> {
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, Ec2Ctx::load_with(opts)).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "AWS region and credentials: expected them resolved within {PREFLIGHT_TIMEOUT:?}, seen no answer \
             (the chain may be waiting on the instance metadata service); set {ENV_REGION} and \
             AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (AWS_EC2_METADATA_DISABLED=true skips IMDS)"
        ),
    }
}

/// Loaded once per process: every scenario shares region, credentials and
/// client (the process must keep one tokio runtime, as cucumber does).
static CTX: tokio::sync::OnceCell<Ec2Ctx> = tokio::sync::OnceCell::const_new();

/// The process-wide EC2 context (`HARNESS_EC2_*` and the AWS chain).
pub async fn shared_ctx() -> anyhow::Result<&'static Ec2Ctx> {
    CTX.get_or_try_init(|| load_bounded(LoadOptions::from_env(None)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_values() {
        for (v, want) in [
            (None, Backend::Qemu),
            (Some(""), Backend::Qemu),
            (Some("qemu"), Backend::Qemu),
            (Some("ec2"), Backend::Ec2),
        ] {
            assert_eq!(Backend::parse(v).unwrap(), want, "{v:?}");
        }
        let e = Backend::parse(Some("aws")).unwrap_err().to_string();
        assert!(
            e.contains("aws") && e.contains("qemu") && e.contains("ec2") && e.contains(ENV_BACKEND),
            "{e}"
        );
        assert_eq!(Backend::Ec2.as_str(), "ec2");
        assert_eq!(Backend::Qemu.to_string(), "qemu");
    }

    #[tokio::test]
    // ProfileFiles' new home (aws-runtime) is not a direct dependency.
    #[allow(deprecated)]
    async fn no_credentials_is_a_skip_reason_naming_what_to_set() {
        // A credential chain that finds nothing: an empty profile file and
        // a profile name no one has.
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
        let files = ProfileFiles::builder()
            .with_file(ProfileFileKind::Config, &empty)
            .with_file(ProfileFileKind::Credentials, &empty)
            .build();
        let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_files(files)
            .profile_name("harness-no-such-profile")
            .build();
        let opts = LoadOptions {
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            credentials_provider: Some(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                provider,
            )),
            ..LoadOptions::default()
        };
        let root = crate::repo::root().unwrap();
        let t = std::time::Instant::now();
        let why = skip_reason_with(&root, &[Arch::X86_64], opts)
            .await
            .expect("a skip reason");
        assert!(t.elapsed() <= PREFLIGHT_TIMEOUT + Duration::from_secs(1));
        assert!(
            why.contains("no AWS credentials")
                && why.contains("AWS_PROFILE")
                && why.contains("AWS_ACCESS_KEY_ID"),
            "{why}"
        );
    }
}

//! EC2 eventual consistency: a resource used right after it was created can
//! be unknown for a while ("Eventual consistency in the Amazon EC2 API",
//! EC2 API reference): `InvalidGroup.NotFound`, `InvalidKeyPair.NotFound`,
//! `InvalidVolume.NotFound`.  The SDK's standard retry does not retry these
//! codes and its `VolumeAvailable` waiter ends on any error, so the steps
//! that use a fresh group, key pair or volume go through [`eventually`]:
//! a bounded exponential backoff that retries exactly those codes.
//! [`wait_volume`] replaces the SDK's volume waiters for the same reason.

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata;

/// The only error codes [`eventually`] retries.
pub const EVENTUAL_CODES: &[&str] = &[
    "InvalidGroup.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidVolume.NotFound",
];

/// Whether `code` is one of [`EVENTUAL_CODES`].
pub fn is_eventual(code: Option<&str>) -> bool {
    code.is_some_and(|c| EVENTUAL_CODES.contains(&c))
}

/// Bounded exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all (the first included).
    pub tries: u32,
    /// Delay after the first failure; doubled each time up to `max`.
    pub first: Duration,
    pub max: Duration,
}

/// 8 attempts, 1 s doubling to 16 s: about a minute and a half in all,
/// well beyond the seconds AWS documents for propagation.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    tries: 8,
    first: Duration::from_secs(1),
    max: Duration::from_secs(16),
};

impl Backoff {
    /// The delay before attempt `n + 1` (after `n` failures, `n >= 1`).
    pub fn delay(&self, n: u32) -> Duration {
        let d = self
            .first
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)));
        d.min(self.max)
    }
}

/// Run `op` until it succeeds, fails with a code outside
/// [`EVENTUAL_CODES`], or `backoff.tries` attempts are spent (then the last
/// error is returned).
pub async fn eventually<T, E, F, Fut>(what: &str, backoff: &Backoff, mut op: F) -> Result<T, E>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if is_eventual(e.code()) && n < backoff.tries => {
                let d = backoff.delay(n);
                tracing::info!(
                    code = e.code().unwrap_or(""),
                    attempt = n,
                    "{what}: not visible yet (eventual consistency); retrying in {d:?}"
                );
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Poll DescribeVolumes until `id` is in state `want` (`available`,
/// `in-use`), within `timeout`, every `poll`.  `InvalidVolume.NotFound` is
/// "not visible yet", not a failure; `error` or `deleting` state is.
pub async fn wait_volume(
    client: &aws_sdk_ec2::Client,
    id: &str,
    want: &str,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last;
    loop {
        match client.describe_volumes().volume_ids(id).send().await {
            Ok(o) => {
                let state = o
                    .volumes()
                    .first()
                    .and_then(|v| v.state())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                if state == want {
                    return Ok(());
                }
                if matches!(state.as_str(), "error" | "deleting" | "deleted") {
                    anyhow::bail!("volume {id}: expected `{want}`, seen `{state}`");
                }
                last = format!("state `{state}`");
            }
            Err(e) if is_eventual(e.code()) => {
                last = format!("{} (not visible yet)", e.code().unwrap_or_default());
            }
            Err(e) => anyhow::bail!(
                "volume {id}: expected `{want}`, seen DescribeVolumes failing: {}",
                super::sweep::err(&e)
            ),
        }
        if start.elapsed() >= timeout {
            anyhow::bail!("volume {id}: expected `{want}` within {timeout:?}, seen {last}");
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    //! aws-smithy-mocks plays EC2: moto never answers NotFound for a
    //! resource it has just created, AWS may.
    use super::*;
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::authorize_security_group_ingress::{
        AuthorizeSecurityGroupIngressError, AuthorizeSecurityGroupIngressOutput,
    };
    use aws_sdk_ec2::operation::describe_volumes::{DescribeVolumesError, DescribeVolumesOutput};
    use aws_sdk_ec2::types::{Volume, VolumeState};
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, RuleMode};

    const FAST: Backoff = Backoff {
        tries: 4,
        first: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    fn auth_err(code: &'static str) -> impl Fn() -> AuthorizeSecurityGroupIngressError {
        move || {
            AuthorizeSecurityGroupIngressError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("mocked")
                    .build(),
            )
        }
    }

    #[test]
    fn backoff_is_bounded_and_doubles() {
        assert_eq!(DEFAULT_BACKOFF.delay(1), Duration::from_secs(1));
        assert_eq!(DEFAULT_BACKOFF.delay(3), Duration::from_secs(4));
        assert_eq!(DEFAULT_BACKOFF.delay(30), Duration::from_secs(16));
        assert!(is_eventual(Some("InvalidKeyPair.NotFound")));
        assert!(!is_eventual(Some("InvalidGroup.Duplicate")) && !is_eventual(None));
    }

    #[tokio::test]
    async fn not_found_right_after_create_is_retried_then_succeeds() {
        let r = mock!(Client::authorize_security_group_ingress)
            .sequence()
            .error(auth_err("InvalidGroup.NotFound"))
            .times(2)
            .output(|| {
                AuthorizeSecurityGroupIngressOutput::builder()
                    .r#return(true)
                    .build()
            })
            .build();
        let c = super::super::mock::client_with(&[&r], RuleMode::Sequential);
        eventually("AuthorizeSecurityGroupIngress", &FAST, || {
            c.authorize_security_group_ingress().group_id("sg-1").send()
        })
        .await
        .unwrap();
        assert_eq!(r.num_calls(), 3);
    }

    #[tokio::test]
    async fn other_codes_fail_at_once_and_retries_are_bounded() {
        let other = mock!(Client::authorize_security_group_ingress)
            .then_error(auth_err("InvalidPermission.Duplicate"));
        let c = super::super::mock::client_with(&[&other], RuleMode::MatchAny);
        let e = eventually("x", &FAST, || {
            c.authorize_security_group_ingress().group_id("sg-1").send()
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), Some("InvalidPermission.Duplicate"));
        assert_eq!(other.num_calls(), 1);

        let never = mock!(Client::authorize_security_group_ingress)
            .then_error(auth_err("InvalidGroup.NotFound"));
        let c = super::super::mock::client_with(&[&never], RuleMode::MatchAny);
        let e = eventually("x", &FAST, || {
            c.authorize_security_group_ingress().group_id("sg-1").send()
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), Some("InvalidGroup.NotFound"));
        assert_eq!(never.num_calls(), FAST.tries as usize);
    }

    #[tokio::test]
    async fn volume_wait_survives_not_found_and_fails_on_error_state() {
        let vol = |state: VolumeState| {
            move || {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-1")
                            .state(state.clone())
                            .build(),
                    )
                    .build()
            }
        };
        let r = mock!(Client::describe_volumes)
            .sequence()
            .error(|| {
                DescribeVolumesError::generic(
                    ErrorMetadata::builder()
                        .code("InvalidVolume.NotFound")
                        .build(),
                )
            })
            .output(vol(VolumeState::Creating))
            .output(vol(VolumeState::Available))
            .build();
        let c = super::super::mock::client_with(&[&r], RuleMode::Sequential);
        wait_volume(
            &c,
            "vol-1",
            "available",
            Duration::from_secs(60),
            Duration::from_millis(1),
        )
        .await
        .unwrap();
        assert_eq!(r.num_calls(), 3);

        let bad = mock!(Client::describe_volumes).then_output(vol(VolumeState::Error));
        let c = super::super::mock::client_with(&[&bad], RuleMode::MatchAny);
        let e = wait_volume(
            &c,
            "vol-1",
            "available",
            Duration::from_secs(60),
            Duration::from_millis(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("`error`") && e.contains("vol-1"), "{e}");
    }
}

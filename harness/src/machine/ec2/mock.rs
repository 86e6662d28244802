//! DOUBLE OF EC2 for unit tests: an aws-sdk-ec2 client answered only by
//! **aws-smithy-mocks** rules, for what moto cannot produce (access
//! errors, throttling, eventual-consistency NotFound, states in between).

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::Client;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode};

/// An EC2 client answered only by `rules` (smithy mocks), no retries.
pub(crate) fn client_with(rules: &[&Rule], mode: RuleMode) -> Client {
    let mut i = MockResponseInterceptor::new().rule_mode(mode);
    for r in rules {
        i = i.with_rule(r);
    }
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "smithy-mocks"))
        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_mocks::create_mock_http_client())
        .interceptor(i)
        .build();
    Client::from_conf(conf)
}

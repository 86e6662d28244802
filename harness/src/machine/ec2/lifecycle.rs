//! What the harness itself asks of an instance on EC2 (Coder's builds do
//! the rest): its state, the cancel of a spot request (the sweep), and the
//! console output saved to the artifacts directory as evidence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::Client;
use base64::Engine;

/// Bound on an instance reaching a state (the sweep's terminate).
pub const STATE_TIMEOUT: Duration = Duration::from_secs(600);

fn not_found(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("InvalidInstanceID.NotFound") | Some("InvalidInstanceID.Malformed")
    )
}

/// Current state name of `id` (`running`, `stopped`, …), `None` if unknown to EC2.
pub async fn state(client: &Client, id: &str) -> anyhow::Result<Option<String>> {
    match client.describe_instances().instance_ids(id).send().await {
        Ok(o) => Ok(o
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .and_then(|i| i.state())
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())),
        Err(e) if not_found(e.code()) => Ok(None),
        Err(e) => anyhow::bail!("DescribeInstances {id}: {}", super::sweep::err(&e)),
    }
}

/// Cancel a spot request (idempotent).
pub async fn cancel_spot_request(client: &Client, request_id: &str) -> anyhow::Result<()> {
    match client
        .cancel_spot_instance_requests()
        .spot_instance_request_ids(request_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("InvalidSpotInstanceRequestID.NotFound") => Ok(()),
        Err(e) => anyhow::bail!(
            "CancelSpotInstanceRequests {request_id}: {}",
            super::sweep::err(&e)
        ),
    }
}

/// Save the instance's console output (decoded) to `dir/console-<id>.log`.
pub async fn save_console_output(client: &Client, id: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    // `latest` is only supported on Nitro instances; fall back without it.
    let out = match client
        .get_console_output()
        .instance_id(id)
        .latest(true)
        .send()
        .await
    {
        Ok(o) => o,
        Err(_) => client
            .get_console_output()
            .instance_id(id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetConsoleOutput {id}: {}", super::sweep::err(&e)))?,
    };
    let text = out
        .output()
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| b64.to_string())
        })
        .unwrap_or_default();
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("console-{id}.log"));
    std::fs::write(&file, text)?;
    tracing::info!(file = %file.display(), "console output saved");
    Ok(file)
}

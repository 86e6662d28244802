//! Instance lifecycle on EC2: stop / start / terminate with the SDK waiters
//! and bounded timeouts (each is idempotent: twice is fine), and the
//! console output saved to the artifacts directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::Client;
use base64::Engine;

/// Bound on stop / start / terminate.
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

/// Graceful stop (ACPI), waiting for `stopped`.
pub async fn stop(client: &Client, id: &str) -> anyhow::Result<()> {
    stop_instance(client, id, false).await
}

/// Hard stop (`StopInstances --force`: no ACPI, like pulling the plug), waiting for `stopped`.
pub async fn force_stop(client: &Client, id: &str) -> anyhow::Result<()> {
    stop_instance(client, id, true).await
}

async fn stop_instance(client: &Client, id: &str, force: bool) -> anyhow::Result<()> {
    let call = if force {
        "StopInstances --force"
    } else {
        "StopInstances"
    };
    tracing::info!(instance = %id, "{call}");
    client
        .stop_instances()
        .instance_ids(id)
        .force(force)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{call} {id}: {}", super::sweep::err(&e)))?;
    client
        .wait_until_instance_stopped()
        .instance_ids(id)
        .wait(STATE_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!("instance {id}: expected `stopped` within {STATE_TIMEOUT:?}, seen: {e}")
        })?;
    Ok(())
}

/// Start with the same disks, waiting for `running`.
pub async fn start(client: &Client, id: &str) -> anyhow::Result<()> {
    tracing::info!(instance = %id, "StartInstances");
    client
        .start_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("StartInstances {id}: {}", super::sweep::err(&e)))?;
    client
        .wait_until_instance_running()
        .instance_ids(id)
        .wait(STATE_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!("instance {id}: expected `running` within {STATE_TIMEOUT:?}, seen: {e}")
        })?;
    Ok(())
}

/// Terminate, waiting for `terminated`; an instance EC2 no longer knows
/// counts as terminated.  Cancel a persistent spot request first (see
/// [`cancel_spot_request`]) or EC2 relaunches the instance.
pub async fn terminate(client: &Client, id: &str) -> anyhow::Result<()> {
    tracing::info!(instance = %id, "TerminateInstances");
    match client.terminate_instances().instance_ids(id).send().await {
        Ok(_) => {}
        Err(e) if not_found(e.code()) => return Ok(()),
        Err(e) => anyhow::bail!("TerminateInstances {id}: {}", super::sweep::err(&e)),
    }
    client
        .wait_until_instance_terminated()
        .instance_ids(id)
        .wait(STATE_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "instance {id}: expected `terminated` within {STATE_TIMEOUT:?}, seen: {e}"
            )
        })?;
    Ok(())
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

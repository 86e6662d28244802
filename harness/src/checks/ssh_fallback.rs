//! SSH fallback: with a broken flake the agent stays connected and an SSH
//! session gives a shell as the workspace user.

use std::time::Duration;

use crate::control::ControlPlane;
use crate::instance::Instance;

use super::{Evidence, Verdict};

pub async fn check(
    inst: &dyn Instance,
    cp: &dyn ControlPlane,
    user: &str,
) -> anyhow::Result<Verdict> {
    let v = Verdict::new(
        "ssh fallback",
        format!("the agent is still connected and `ssh {user}@workspace id -un` prints {user}"),
    )
    .logs(Some(inst.artifacts().serial_log.clone()));
    let connected = cp.agent_connected().await?;
    let v = v.with(Evidence {
        how: format!("control plane: {}", cp.describe()),
        output: format!("agent connected: {connected}"),
    });
    if !connected {
        return Ok(v.fail("the agent is not connected after the failed rebuild"));
    }
    let Some(target) = inst.ssh() else {
        return Ok(v.fail("the instance offers no SSH endpoint"));
    };
    match crate::ssh::run(&target, user, "id -un", Duration::from_secs(30)).await {
        Ok(out) => {
            let v = v.with(Evidence {
                how: format!("ssh {user}@{}:{} id -un", target.host, target.port),
                output: out.stdout.trim().to_string(),
            });
            if out.status == 0 && out.stdout.trim() == user {
                Ok(v.pass(format!("SSH as {user} gives a shell as {user}")))
            } else {
                Ok(v.fail(format!(
                    "SSH as {user} worked but the shell is {:?} (exit {})",
                    out.stdout.trim(),
                    out.status
                )))
            }
        }
        Err(e) => Ok(v
            .with(Evidence {
                how: format!("ssh {user}@{}:{}", target.host, target.port),
                output: e.to_string(),
            })
            .fail(format!("SSH as {user} failed: {e}"))),
    }
}

//! SSH fallback: with a broken flake the agent stays connected and an SSH
//! session gives a shell as the workspace user.  The SSH path is the
//! control plane's own when it has one (`coder ssh` through the agent, as a
//! user connects); otherwise the instance's sshd.

use std::time::Duration;

use crate::control::ControlPlane;
use crate::machine::instance::Instance;

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
        return Ok(
            v.fail("the agent is not connected after the rebuild (Coder's SSH goes through it)")
        );
    }
    if let Some(out) = cp.agent_ssh("id -un", Duration::from_secs(60)).await {
        return Ok(judge(v, user, "through the agent", out));
    }
    let Some(target) = inst.ssh() else {
        return Ok(v.fail("the instance offers no SSH endpoint"));
    };
    let out = crate::machine::ssh::run(&target, user, "id -un", Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::from);
    Ok(judge(
        v,
        user,
        &format!("to {}:{}", target.host, target.port),
        out,
    ))
}

/// Pass iff the SSH command ran and printed exactly `user`.
fn judge(
    v: Verdict,
    user: &str,
    path: &str,
    out: anyhow::Result<crate::machine::probe::ExecOutput>,
) -> Verdict {
    match out {
        Ok(out) => {
            let v = v.with(&out);
            if out.status == 0 && out.stdout.trim() == user {
                v.pass(format!("SSH {path} gives a shell as {user}"))
            } else {
                v.fail(format!(
                    "SSH {path} answered but the shell is {:?} (exit {}), not {user}",
                    out.stdout.trim(),
                    out.status
                ))
            }
        }
        Err(e) => v
            .with(Evidence {
                how: format!("ssh {path}"),
                output: format!("{e:#}"),
            })
            .fail(format!("SSH {path} failed: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::probe::ExecOutput;

    fn out(status: i32, stdout: &str) -> anyhow::Result<ExecOutput> {
        Ok(ExecOutput {
            command: "coder ssh ws -- id -un".into(),
            status,
            stdout: stdout.into(),
            stderr: String::new(),
        })
    }

    #[test]
    fn judges_the_shell_user() {
        let v = || Verdict::new("ssh fallback", "x");
        assert!(judge(v(), "alice", "through the agent", out(0, "alice\n")).passed);
        let root = judge(v(), "alice", "through the agent", out(0, "root\n"));
        assert!(
            !root.passed && root.seen.contains("\"root\""),
            "{}",
            root.seen
        );
        assert!(!judge(v(), "alice", "p", out(255, "")).passed);
        let e = judge(
            v(),
            "alice",
            "p",
            Err(anyhow::anyhow!("connection refused")),
        );
        assert!(!e.passed && e.seen.contains("connection refused"));
    }
}

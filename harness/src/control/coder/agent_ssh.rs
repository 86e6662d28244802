//! SSH into a workspace through its Coder agent, as a user does:
//! `coder ssh <workspace> -- <cmd>`, with the CLI the server itself ships
//! (`/bin/coder-linux-<arch>`), authenticated by `CODER_URL` and
//! `CODER_SESSION_TOKEN` in the child's environment only.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::machine::probe::ExecOutput;

/// How to reach one workspace with the `coder` CLI.
#[derive(Debug, Clone)]
pub struct AgentSsh {
    pub cli: PathBuf,
    /// The deployment URL as the host sees it (`http://127.0.0.1:<port>`).
    pub url: String,
    pub session_token: String,
    pub workspace: String,
}

impl AgentSsh {
    /// The argv (without the CLI path) for running `cmd` in the workspace.
    pub fn argv(&self, cmd: &str) -> Vec<String> {
        vec![
            "ssh".into(),
            self.workspace.clone(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            crate::machine::probe::shell_quote(cmd),
        ]
    }

    /// Run `cmd` through the agent; errors only when the CLI cannot run or
    /// does not finish within `timeout` (a non-zero exit is an output).
    pub async fn exec(&self, cmd: &str, timeout: Duration) -> anyhow::Result<ExecOutput> {
        let argv = self.argv(cmd);
        let shown = format!("coder {}", argv.join(" "));
        let child = tokio::process::Command::new(&self.cli)
            .args(&argv)
            .env("CODER_URL", &self.url)
            .env("CODER_SESSION_TOKEN", &self.session_token)
            .env(
                "CODER_CONFIG_DIR",
                std::env::temp_dir().join("harness-coder-cli"),
            )
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(timeout, child)
            .await
            .map_err(|_| {
                anyhow::anyhow!("`{shown}`: expected it to finish within {timeout:?}, it did not")
            })?
            .with_context(|| format!("cannot run {}", self.cli.display()))?;
        Ok(ExecOutput {
            command: shown,
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_cli(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("coder");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A shell script standing in for the `coder` binary (a test double of
    /// the CLI's process boundary: argv, environment, exit status).
    #[tokio::test]
    async fn runs_the_cli_with_the_session_in_its_environment() {
        let d = tempfile::tempdir().unwrap();
        let cli = fake_cli(
            d.path(),
            r#"echo "$CODER_URL $CODER_SESSION_TOKEN"; echo "$@" >&2; exit 3"#,
        );
        let s = AgentSsh {
            cli,
            url: "http://127.0.0.1:7".into(),
            session_token: "tok".into(),
            workspace: "ws1".into(),
        };
        let out = s
            .exec("id -un; echo 'x'", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "http://127.0.0.1:7 tok");
        assert_eq!(out.status, 3);
        assert!(
            out.stderr.starts_with("ssh ws1 -- sh -c "),
            "{}",
            out.stderr
        );
        assert!(out.command.starts_with("coder ssh ws1"));

        let slow = AgentSsh {
            cli: fake_cli(d.path(), "sleep 5"),
            ..s.clone()
        };
        let e = slow
            .exec("true", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("within"), "{e}");
        let missing = AgentSsh {
            cli: d.path().join("nope"),
            ..s
        };
        assert!(missing.exec("true", Duration::from_secs(5)).await.is_err());
    }
}

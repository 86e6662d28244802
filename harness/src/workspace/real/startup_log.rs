//! `Then the startup log names "<text>"`: the agent's startup log (the
//! rebuild output the control plane received) contains a given text, e.g.
//! the marker line of `nixos-vm/fixtures/broken-build`, so a failed
//! rebuild is known to have failed for the deliberate reason.

use crate::control::{ControlPlane, ReceivedLog};

/// The first received line containing `needle`, or a message saying what
/// was expected and what was seen.
pub fn find<'a>(logs: &'a [ReceivedLog], needle: &str) -> Result<&'a ReceivedLog, String> {
    if let Some(l) = logs.iter().find(|l| l.output.contains(needle)) {
        return Ok(l);
    }
    let tail: Vec<String> = logs
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|l| format!("  [{}] {}", l.source, l.output))
        .collect();
    Err(format!(
        "expected the startup log to name {needle:?}; seen {} line(s) without it{}",
        logs.len(),
        if tail.is_empty() {
            String::new()
        } else {
            format!(", the last ones:\n{}", tail.join("\n"))
        }
    ))
}

/// [`find`] on what `cp` received so far.
pub async fn names(cp: &dyn ControlPlane, needle: &str) -> anyhow::Result<ReceivedLog> {
    let logs = cp.logs().await?;
    find(&logs, needle).cloned().map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn line(s: &str) -> ReceivedLog {
        ReceivedLog {
            output: s.into(),
            level: "info".into(),
            source: "Startup Script".into(),
            received: SystemTime::now(),
        }
    }

    const MARKER: &str = "HARNESS-DELIBERATE-BUILD-FAILURE";

    #[test]
    fn finds_the_marker_in_nix_build_failure_output() {
        let logs = [
            line("==> nixos-rebuild switch --flake path:/var/lib/harness/fixtures#broken-build"),
            line("error: builder for '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-harness-deliberate-build-failure.drv' failed with exit code 1;"),
            line("       last 1 log lines:"),
            line("       > HARNESS-DELIBERATE-BUILD-FAILURE: this derivation fails on purpose (nixos-vm/fixtures/broken-build)"),
        ];
        assert!(find(&logs, MARKER)
            .unwrap()
            .output
            .contains("fails on purpose"));
    }

    #[test]
    fn a_failure_for_another_reason_is_not_the_deliberate_one() {
        let logs = [
            line("==> nixos-rebuild switch --flake path:/var/lib/harness/fixtures#broken-build"),
            line("error: unable to download 'https://cache.nixos.org/nix-cache-info': Couldn't resolve host name (6)"),
            line("error: 1 dependencies of derivation '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-system-path.drv' failed to build"),
        ];
        let e = find(&logs, MARKER).unwrap_err();
        assert!(e.contains("expected the startup log to name"), "{e}");
        assert!(e.contains("seen 3 line(s)"), "{e}");
        assert!(e.contains("Couldn't resolve host"), "{e}");
        assert!(find(&[], MARKER).unwrap_err().contains("seen 0 line(s)"));
    }

    #[test]
    fn the_feature_asks_for_the_marker_the_fixture_prints() {
        let root = crate::repo::root().unwrap();
        let feature = std::fs::read_to_string(root.join("features/workspace.feature")).unwrap();
        let fixture =
            std::fs::read_to_string(root.join("nixos-vm/fixtures/broken-build/default.nix"))
                .unwrap();
        assert!(
            feature.contains(&format!("the startup log names \"{MARKER}\"")),
            "features/workspace.feature must check the broken-build marker"
        );
        assert!(
            fixture.contains(&format!("marker = \"{MARKER}\";")),
            "nixos-vm/fixtures/broken-build must print the marker the feature checks"
        );
    }

    #[tokio::test]
    async fn against_the_agent_api_double() {
        let api = crate::doubles::agent_api::AgentApiDouble::start("t0k", Default::default())
            .await
            .unwrap();
        let e = names(&api, MARKER).await.unwrap_err().to_string();
        assert!(e.contains("seen 0 line(s)"), "{e}");
        let url = format!(
            "http://127.0.0.1:{}/api/v2/workspaceagents/me/logs",
            api.port()
        );
        let body = serde_json::json!({"logs": [
            {"output": "building the system configuration...", "level": "info"},
            {"output": format!("       > {MARKER}: this derivation fails on purpose"), "level": "info"},
        ]});
        let r = reqwest::Client::new()
            .patch(&url)
            .header("Coder-Session-Token", "t0k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let l = names(&api, MARKER).await.unwrap();
        assert!(l.output.contains("fails on purpose"));
    }
}

//! Agent user: the agent process runs as the configured user (not root),
//! the user exists, and passwordless sudo works for them.

use crate::machine::instance::Instance;
use crate::machine::probe::shell_quote;

use super::Verdict;

/// Default pattern of the agent's command line: the real `coder agent`,
/// or the fixture's stand-in (`coder-agent-double`).
pub const AGENT_PATTERN: &str = "coder(-agent-double| agent)";

pub async fn check(
    inst: &dyn Instance,
    user: &str,
    agent_pattern: &str,
) -> anyhow::Result<Verdict> {
    let v = Verdict::new(
        "agent user",
        format!("user {user} exists; the agent process runs as {user} (not root); `sudo -n true` works for {user}"),
    )
    .logs(Some(inst.artifacts().serial_log.clone()));
    let p = inst.probe();
    let t = crate::machine::probe::DEFAULT_TIMEOUT;
    // 1. The user exists.
    let id = p.exec(&format!("id {}", shell_quote(user)), t).await?;
    let v = v.with(&id);
    if id.status != 0 {
        return Ok(v.fail(format!("user {user} does not exist")));
    }
    // 2. The agent process and its owner (from /proc, no ps needed).
    let ps = p
        .exec(
            &format!(
                "for d in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null); \
                 case \"$c\" in *harness-probe*|'') continue;; esac; \
                 if echo \"$c\" | grep -Eq {pat}; then u=$(awk '/^Uid:/{{print $2}}' $d/status); \
                 n=$(awk -F: -v u=\"$u\" '$3==u{{print $1; exit}}' /etc/passwd); echo \"${{n:-uid$u}} ${{d#/proc/}} $c\"; fi; done",
                pat = shell_quote(agent_pattern)
            ),
            t,
        )
        .await?;
    let v = v.with(&ps);
    let owners: Vec<&str> = ps
        .stdout
        .lines()
        .filter(|l| !l.contains("grep -Eq"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if owners.is_empty() {
        return Ok(v.fail(format!(
            "no agent process matching /{agent_pattern}/ is running"
        )));
    }
    if let Some(bad) = owners.iter().find(|o| **o != user) {
        return Ok(v.fail(format!("the agent runs as {bad}, not {user}")));
    }
    // 3. Passwordless sudo as the user.
    let sudo = p
        .exec(
            &format!(
                "su -s /bin/sh {} -c 'sudo -n true' </dev/null",
                shell_quote(user)
            ),
            t,
        )
        .await?;
    let v = v.with(&sudo);
    if sudo.status != 0 {
        return Ok(v.fail(format!(
            "the agent runs as {user}, but `sudo -n true` fails for {user} (exit {}): {}",
            sudo.status,
            sudo.stderr.trim()
        )));
    }
    Ok(v.pass(format!(
        "agent runs as {user}; {user} exists and has passwordless sudo"
    )))
}

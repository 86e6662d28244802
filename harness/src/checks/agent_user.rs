//! Agent user: the agent process runs as the configured user (not root),
//! the user exists, and passwordless sudo works for them.

use crate::machine::instance::Instance;
use crate::machine::probe::shell_quote;

use super::Verdict;

/// Default pattern of the agent's command line: the real `coder agent`,
/// or the fixture's stand-in (`coder-agent-double`).
pub const AGENT_PATTERN: &str = "coder(-agent-double| agent)";

/// The shell command listing `<owner> <pid> <command line>` of every process
/// whose command line matches `pattern` (extended regex).
pub fn agent_processes(pattern: &str) -> String {
    format!(
        "owner() {{ u=$(awk '/^Uid:/{{print $2}}' /proc/$1/status 2>/dev/null); \
         n=$(awk -F: -v u=\"$u\" '$3==u{{print $1; exit}}' /etc/passwd); echo \"${{n:-uid$u}}\"; }}; \
         if pgrep -af . >/dev/null 2>&1; then \
         pgrep -af {pat} | while read -r pid c; do case \"$c\" in *harness-probe*) continue;; esac; \
         [ -d /proc/$pid ] && echo \"$(owner $pid) $pid $c\"; done; \
         else for d in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null); \
         case \"$c\" in *harness-probe*|'') continue;; esac; \
         if echo \"$c\" | grep -Eq {pat}; then echo \"$(owner ${{d#/proc/}}) ${{d#/proc/}} $c\"; fi; done; fi",
        pat = shell_quote(pattern)
    )
}

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
    // 2. The agent process and its owner: `pgrep -af` where it works, else
    // every /proc/<pid>/cmdline (no ps needed; under TCG that loop forks
    // three tools per process and took 13 s where pgrep takes under 1 s).
    let ps = p.exec(&agent_processes(agent_pattern), t).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths on this host: pgrep, and the /proc loop without it;
    /// each finds a process by its command line and names its owner.
    #[test]
    fn agent_processes_finds_the_process_and_its_owner_with_and_without_pgrep() {
        let mut child = std::process::Command::new("sleep")
            .arg("317.25")
            .spawn()
            .unwrap();
        let me = String::from_utf8(
            std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let cmd = agent_processes("sleep 317[.]25");
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["awk", "tr", "grep", "cat"] {
            std::os::unix::fs::symlink(crate::tools::find(tool).unwrap(), bin.join(tool)).unwrap();
        }
        for path in [std::env::var("PATH").unwrap(), bin.display().to_string()] {
            let out = std::process::Command::new(crate::tools::find("sh").unwrap())
                .args(["-c", &cmd])
                .env("PATH", &path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let line = format!("{} {} sleep 317.25", me.trim(), child.id());
            assert!(
                text.lines().any(|l| l.trim() == line),
                "PATH={path}: {text:?} (want {line:?})"
            );
        }
        child.kill().ok();
        child.wait().ok();
    }
}

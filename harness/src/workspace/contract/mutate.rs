//! Mutated COPIES of `templates/` (never the real one) that re-introduce,
//! one at a time, a defect the contract tier exists to catch.  Each
//! mutation edits the copy's `modules/bootstrap/user-data.sh.tftpl` around
//! anchors every version of the script has (the `systemd-run` command that
//! starts the agent), or the copy's `modules/bootstrap/startup.sh` after its
//! `set -…` line; if an anchor is gone the mutation fails with an error
//! naming it, rather than silently testing nothing.
//!
//! | mutation | defect | how the guest shows it |
//! |---|---|---|
//! | `state-dir-0700` | the directory holding the init script is root-only | systemd cannot exec it as the agent user: `Permission denied` |
//! | `systemd-run-without-path` | the agent's transient unit gets systemd's default PATH | `#!/usr/bin/env sh` finds no `sh`: `No such file or directory` |
//! | `tool-not-on-amazon-init-path` | the user-data calls `mountpoint` (util-linux), which amazon-init's PATH lacks | `mountpoint: command not found`, the agent never starts |
//! | `agent-without-uid` | the agent's transient unit has no `--uid=`: it runs as root | the agent-user check: `the agent runs as root`; the SSH check: the shell is `root` |
//! | `startup-output-to-file` | the startup script sends its output to a file | the log-streaming check: no line reaches the agent-logs API |
//! | `startup-output-at-end` | the startup script buffers its output and prints it when it exits | the log-streaming check: the lines arrive at the end, not streamed |

use std::path::{Path, PathBuf};

use anyhow::Context;

/// One re-introduced defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    StateDir0700,
    SystemdRunWithoutPath,
    ToolNotOnAmazonInitPath,
    AgentWithoutUid,
    StartupOutputToFile,
    StartupOutputAtEnd,
}

impl Mutation {
    pub const ALL: [Mutation; 6] = [
        Mutation::StateDir0700,
        Mutation::SystemdRunWithoutPath,
        Mutation::ToolNotOnAmazonInitPath,
        Mutation::AgentWithoutUid,
        Mutation::StartupOutputToFile,
        Mutation::StartupOutputAtEnd,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Mutation::StateDir0700 => "state-dir-0700",
            Mutation::SystemdRunWithoutPath => "systemd-run-without-path",
            Mutation::ToolNotOnAmazonInitPath => "tool-not-on-amazon-init-path",
            Mutation::AgentWithoutUid => "agent-without-uid",
            Mutation::StartupOutputToFile => "startup-output-to-file",
            Mutation::StartupOutputAtEnd => "startup-output-at-end",
        }
    }

    pub fn from_slug(s: &str) -> anyhow::Result<Mutation> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.slug() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown mutation `{s}`; known: {}",
                    Mutation::ALL.map(|m| m.slug()).join(", ")
                )
            })
    }

    /// Text the failure message must contain for the cause to be named:
    /// the failed start's (the first three), or the failed check's.
    pub fn cause(self) -> &'static str {
        match self {
            Mutation::StateDir0700 => "Permission denied",
            Mutation::SystemdRunWithoutPath => "No such file or directory",
            Mutation::ToolNotOnAmazonInitPath => "mountpoint: command not found",
            Mutation::AgentWithoutUid => "the agent runs as root",
            Mutation::StartupOutputToFile => "no rebuild log line ever reached the agent-logs API",
            Mutation::StartupOutputAtEnd => "logs were delivered at the end, not streamed",
        }
    }

    /// The file of the templates tree this mutation edits.
    pub fn file(self) -> &'static str {
        match self {
            Mutation::StartupOutputToFile | Mutation::StartupOutputAtEnd => STARTUP_SCRIPT,
            _ => USER_DATA_TEMPLATE,
        }
    }

    /// Apply to the text of [`Mutation::file`].
    pub fn apply(self, script: &str) -> anyhow::Result<String> {
        if self.file() == STARTUP_SCRIPT {
            return self.apply_startup(script);
        }
        let lines: Vec<&str> = script.lines().collect();
        let (start, end) = systemd_run_block(&lines)?;
        let indent: String = lines[start]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        let mut out: Vec<String> = lines[..start].iter().map(|s| s.to_string()).collect();
        let block: Vec<String> = lines[start..=end].iter().map(|s| s.to_string()).collect();
        match self {
            Mutation::StateDir0700 => {
                let exe = block
                    .last()
                    .and_then(|l| l.split_whitespace().last())
                    .filter(|t| !t.ends_with('\\'))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "the systemd-run command's last line does not end with the executable"
                        )
                    })?;
                out.push(format!(
                    "{indent}chmod 0700 \"$(dirname {exe})\" # MUTATION state-dir-0700"
                ));
                out.extend(block);
            }
            Mutation::SystemdRunWithoutPath => {
                let re = regex::Regex::new(
                    r#"\s*(--setenv[= ]|-E ?|--property[= ]"?Environment=)"?PATH=("[^"]*"|'[^']*'|[^\s"']*)*"?"#,
                )
                .unwrap();
                let mut removed = 0;
                for l in block {
                    let m = re.replace_all(&l, "");
                    if m != l {
                        removed += 1;
                        let m = m.to_string();
                        // Drop a line that held only the PATH argument.
                        if m.trim() == "\\" {
                            continue;
                        }
                        out.push(m);
                    } else {
                        out.push(l);
                    }
                }
                anyhow::ensure!(
                    removed > 0,
                    "the systemd-run command sets no PATH (--setenv=PATH=…): the real template already starts the agent without PATH"
                );
            }
            Mutation::ToolNotOnAmazonInitPath => {
                out.push(format!(
                    "{indent}mountpoint -q /home || {{ echo \"coder-bootstrap: /home is not mounted\" >&2; exit 1; }} # MUTATION tool-not-on-amazon-init-path"
                ));
                out.extend(block);
            }
            Mutation::AgentWithoutUid => {
                let re = regex::Regex::new(r#"\s*--uid[= ]("[^"]*"|'[^']*'|[^\s"']*)+"#).unwrap();
                let mut removed = 0;
                for l in block {
                    let m = re.replace_all(&l, "").to_string();
                    if m != l {
                        removed += 1;
                        if m.trim() == "\\" {
                            continue;
                        }
                    }
                    out.push(m);
                }
                anyhow::ensure!(
                    removed > 0,
                    "the systemd-run command has no --uid=: the real template already runs the agent as root"
                );
            }
            Mutation::StartupOutputToFile | Mutation::StartupOutputAtEnd => unreachable!(),
        }
        out.extend(lines[end + 1..].iter().map(|s| s.to_string()));
        let mut text = out.join("\n");
        if script.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

impl Mutation {
    /// Startup-script mutations: one line after the script's `set -…`
    /// line redirects its output (the agent streams the script's stdout and
    /// stderr, so this is where a script loses or delays its log).
    fn apply_startup(self, script: &str) -> anyhow::Result<String> {
        let line = match self {
            Mutation::StartupOutputToFile => {
                "exec >>\"${TMPDIR:-/tmp}/coder-startup.log\" 2>&1 # MUTATION startup-output-to-file"
            }
            Mutation::StartupOutputAtEnd => {
                "startup_buf=$(mktemp); exec 3>&1 >\"$startup_buf\" 2>&1; trap 'cat \"$startup_buf\" >&3; rm -f \"$startup_buf\"' EXIT # MUTATION startup-output-at-end"
            }
            _ => unreachable!(),
        };
        let lines: Vec<&str> = script.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("set -"))
            .ok_or_else(|| anyhow::anyhow!("no line starts with `set -` in the startup script"))?;
        let mut out: Vec<&str> = lines[..=at].to_vec();
        out.push(line);
        out.extend(&lines[at + 1..]);
        let mut text = out.join("\n");
        if script.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

impl std::fmt::Display for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

/// The first and last line of the `systemd-run` command (with `\`
/// continuations) that starts the agent.
fn systemd_run_block(lines: &[&str]) -> anyhow::Result<(usize, usize)> {
    let start = lines
        .iter()
        .position(|l| {
            let t = l.trim_start();
            !t.starts_with('#') && t.split_whitespace().next() == Some("systemd-run")
        })
        .ok_or_else(|| {
            anyhow::anyhow!("no line starts with `systemd-run` (the command that starts the agent)")
        })?;
    let mut end = start;
    while lines[end].trim_end().ends_with('\\') && end + 1 < lines.len() {
        end += 1;
    }
    Ok((start, end))
}

/// The bootstrap module's user-data template inside a templates tree.
pub const USER_DATA_TEMPLATE: &str = "modules/bootstrap/user-data.sh.tftpl";

/// The agent's startup script (`coder_agent.startup_script`) inside a templates tree.
pub const STARTUP_SCRIPT: &str = "modules/bootstrap/startup.sh";

/// Copy `<repo>/templates` to `<dest>/templates` with `m` applied; returns
/// `dest`, usable as the root for [`super::render::render`].
pub fn mutated_copy(repo: &Path, dest: &Path, m: Mutation) -> anyhow::Result<PathBuf> {
    edited_copy(repo, dest, &[(m.file(), &|text: &str| m.apply(text))])
        .with_context(|| format!("mutation {m} no longer applies"))
}

/// An edit of one file of the templates tree (path relative to it).
pub type Edit<'a> = (&'a str, &'a dyn Fn(&str) -> anyhow::Result<String>);

/// Copy `<repo>/templates` to `<dest>/templates` (never onto the real one)
/// and apply `edits` to the copy; an edit that cannot apply names its file.
/// Shared by every tier's mutations (contract, twin).
pub fn edited_copy(repo: &Path, dest: &Path, edits: &[Edit]) -> anyhow::Result<PathBuf> {
    let src = repo.join("templates");
    let dst = dest.join("templates");
    anyhow::ensure!(
        std::fs::canonicalize(&src).ok() != std::fs::canonicalize(&dst).ok(),
        "refusing to mutate the real templates/ in place"
    );
    if dst.exists() {
        std::fs::remove_dir_all(&dst)?;
    }
    crate::template::terraform::copy_tree(&src, &dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    for (file, edit) in edits {
        let f = dst.join(file);
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let mutated =
            edit(&text).with_context(|| format!("editing {}", src.join(file).display()))?;
        std::fs::write(&f, mutated)?;
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "set -e\nif x; then\n  :\nelse\n  systemd-run --unit=coder-agent \\\n    --uid=\"$u\" \\\n    --setenv=PATH=\"/run/wrappers/bin:/run/current-system/sw/bin\" \\\n    --property=Restart=always \\\n    \"$agent_dir/init.sh\"\nfi\n";

    #[test]
    fn each_mutation_edits_the_agent_start_only() {
        let a = Mutation::StateDir0700.apply(OLD).unwrap();
        assert!(
            a.contains("  chmod 0700 \"$(dirname \"$agent_dir/init.sh\")\" # MUTATION"),
            "{a}"
        );
        let b = Mutation::SystemdRunWithoutPath.apply(OLD).unwrap();
        assert!(!b.contains("PATH="), "{b}");
        assert!(
            b.contains("--uid=\"$u\" \\\n    --property=Restart=always"),
            "{b}"
        );
        let c = Mutation::ToolNotOnAmazonInitPath.apply(OLD).unwrap();
        assert!(c.contains("  mountpoint -q /home ||"), "{c}");
        for t in [&a, &b, &c] {
            assert!(t.ends_with("fi\n") && t.contains("\"$agent_dir/init.sh\"\nfi"));
        }
        let e = Mutation::SystemdRunWithoutPath
            .apply("systemd-run --uid=x \\\n  /init.sh\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already starts the agent without PATH"), "{e}");
        let e = Mutation::StateDir0700
            .apply("# systemd-run in a comment\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no line starts with `systemd-run`"), "{e}");
        assert_eq!(
            Mutation::from_slug("state-dir-0700").unwrap(),
            Mutation::StateDir0700
        );
        assert!(Mutation::from_slug("x").is_err());
        let u = Mutation::AgentWithoutUid.apply(OLD).unwrap();
        assert!(!u.contains("--uid"), "{u}");
        assert!(
            u.contains("systemd-run --unit=coder-agent \\\n    --setenv=PATH="),
            "{u}"
        );
        let e = Mutation::AgentWithoutUid
            .apply("systemd-run --unit=x \\\n  /init.sh\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already runs the agent as root"), "{e}");
    }

    #[test]
    fn startup_mutations_redirect_the_output_after_set() {
        let script = "#!/usr/bin/env bash\n# c\nset -uo pipefail\necho hi\n";
        for m in [Mutation::StartupOutputToFile, Mutation::StartupOutputAtEnd] {
            let t = m.apply(script).unwrap();
            let lines: Vec<&str> = t.lines().collect();
            assert_eq!(lines[2], "set -uo pipefail");
            assert!(lines[3].starts_with("exec ") || lines[3].starts_with("startup_buf="));
            assert!(lines[3].ends_with(&format!("# MUTATION {m}")), "{t}");
            assert_eq!(lines[4], "echo hi");
            assert!(m.apply("echo no set\n").is_err());
        }
        // The buffered script prints its output when it exits, and only then.
        let sh = crate::tools::find("bash").unwrap();
        let t = Mutation::StartupOutputAtEnd
            .apply("set -u\necho one\necho two >&2\nexit 3\n")
            .unwrap();
        let out = std::process::Command::new(sh)
            .args(["-c", &t])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    }

    #[test]
    fn mutated_copies_never_touch_the_real_templates() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |root: &Path, f: &str| std::fs::read_to_string(root.join("templates").join(f));
        let real = read(repo, USER_DATA_TEMPLATE).unwrap();
        let real_startup = read(repo, STARTUP_SCRIPT).unwrap();
        let d = tempfile::tempdir().unwrap();
        for m in Mutation::ALL {
            let root = mutated_copy(repo, d.path(), m).unwrap();
            let t = read(&root, m.file()).unwrap();
            if matches!(
                m,
                Mutation::SystemdRunWithoutPath | Mutation::AgentWithoutUid
            ) {
                let lines: Vec<&str> = t.lines().collect();
                let (a, b) = systemd_run_block(&lines).unwrap();
                let gone = if m == Mutation::AgentWithoutUid {
                    "--uid"
                } else {
                    "PATH="
                };
                assert!(!lines[a..=b].join("\n").contains(gone), "{t}");
            } else {
                assert!(t.contains(&format!("# MUTATION {m}")), "{t}");
            }
        }
        assert!(mutated_copy(repo, repo, Mutation::StateDir0700).is_err());
        assert_eq!(read(repo, USER_DATA_TEMPLATE).unwrap(), real);
        assert_eq!(read(repo, STARTUP_SCRIPT).unwrap(), real_startup);
    }
}

//! Mutated COPIES of `templates/` (never the real one) that re-introduce,
//! one at a time, a defect the contract tier exists to catch.  Each
//! mutation edits the copy's `modules/bootstrap/user-data.sh.tftpl` around
//! anchors every version of the script has (the `systemd-run` command that
//! starts the agent); if an anchor is gone the mutation fails with an
//! error naming it, rather than silently testing nothing.
//!
//! | mutation | defect | how the guest shows it |
//! |---|---|---|
//! | `state-dir-0700` | the directory holding the init script is root-only | systemd cannot exec it as the agent user: `Permission denied` |
//! | `systemd-run-without-path` | the agent's transient unit gets systemd's default PATH | `#!/usr/bin/env sh` finds no `sh`: `No such file or directory` |
//! | `tool-not-on-amazon-init-path` | the user-data calls `mountpoint` (util-linux), which amazon-init's PATH lacks | `mountpoint: command not found`, the agent never starts |

use std::path::{Path, PathBuf};

use anyhow::Context;

/// One re-introduced defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    StateDir0700,
    SystemdRunWithoutPath,
    ToolNotOnAmazonInitPath,
}

impl Mutation {
    pub const ALL: [Mutation; 3] = [
        Mutation::StateDir0700,
        Mutation::SystemdRunWithoutPath,
        Mutation::ToolNotOnAmazonInitPath,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Mutation::StateDir0700 => "state-dir-0700",
            Mutation::SystemdRunWithoutPath => "systemd-run-without-path",
            Mutation::ToolNotOnAmazonInitPath => "tool-not-on-amazon-init-path",
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

    /// Text the failure message must contain for the cause to be named.
    pub fn cause(self) -> &'static str {
        match self {
            Mutation::StateDir0700 => "Permission denied",
            Mutation::SystemdRunWithoutPath => "No such file or directory",
            Mutation::ToolNotOnAmazonInitPath => "mountpoint: command not found",
        }
    }

    /// Apply to the text of `user-data.sh.tftpl`.
    pub fn apply(self, script: &str) -> anyhow::Result<String> {
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
        }
        out.extend(lines[end + 1..].iter().map(|s| s.to_string()));
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

/// Copy `<repo>/templates` to `<dest>/templates` with `m` applied; returns
/// `dest`, usable as the root for [`super::render::render`].
pub fn mutated_copy(repo: &Path, dest: &Path, m: Mutation) -> anyhow::Result<PathBuf> {
    edited_copy(
        repo,
        dest,
        &[(USER_DATA_TEMPLATE, &|text: &str| m.apply(text))],
    )
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
    }

    #[test]
    fn mutated_copies_never_touch_the_real_templates() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let real =
            std::fs::read_to_string(repo.join("templates").join(USER_DATA_TEMPLATE)).unwrap();
        let d = tempfile::tempdir().unwrap();
        for m in Mutation::ALL {
            let root = mutated_copy(repo, d.path(), m).unwrap();
            let t =
                std::fs::read_to_string(root.join("templates").join(USER_DATA_TEMPLATE)).unwrap();
            if m == Mutation::SystemdRunWithoutPath {
                let lines: Vec<&str> = t.lines().collect();
                let (a, b) = systemd_run_block(&lines).unwrap();
                assert!(!lines[a..=b].join("\n").contains("PATH="), "{t}");
            } else {
                assert!(t.contains(&format!("# MUTATION {m}")), "{t}");
            }
        }
        assert!(mutated_copy(repo, repo, Mutation::StateDir0700).is_err());
        assert_eq!(
            std::fs::read_to_string(repo.join("templates").join(USER_DATA_TEMPLATE)).unwrap(),
            real
        );
    }
}

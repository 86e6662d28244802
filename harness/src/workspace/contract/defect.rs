//! The self-test defects of a contract workspace (`features/contract-selftest.feature`):
//! for each of the four checks, states of a workspace it must fail on,
//! each put into the contract guest by its honest cause: a mutated copy of
//! the template ([`super::mutate`]) where the template can cause it, else a
//! fault run through the probe after the agent's startup ended (the guest
//! breaking under a correct template).  A failing check here proves the
//! check, on the same guest and code path as every other contract scenario.
//!
//! | defect | check | how | cause the check must name |
//! |---|---|---|---|
//! | `home-on-root-disk` | home mount | fault: `/home` unmounted (lazily) after the start | `/home is not a mount point` |
//! | `home-on-tmpfs` | home mount | fault: a tmpfs mounted over `/home` | `/home is a tmpfs mount` |
//! | `agent-as-root` | agent user | mutation `agent-without-uid` | `the agent runs as root` |
//! | `missing-user` | agent user | fault: `userdel -f <user>` (as a configuration that stops declaring the user removes it) | `does not exist` |
//! | `no-sudo` | agent user | fault: the user leaves `wheel` (`security.sudo`'s only grant) | `sudo -n true` fails |
//! | `logs-never-arrive` | log streaming | mutation `startup-output-to-file` | `no rebuild log line ever reached the agent-logs API` |
//! | `logs-only-at-end` | log streaming | mutation `startup-output-at-end` | `logs were delivered at the end, not streamed` |
//! | `ssh-down` | ssh fallback | fault: the agent (the path of `coder ssh`) stopped | `the agent is not connected` |
//! | `ssh-wrong-user` | ssh fallback | mutation `agent-without-uid`: `coder ssh` answers as the agent's user | `the shell is "root"` |
//!
//! SSH on the contract tier is `coder ssh` through the agent (the agent API
//! double's exec queue), as a user reaches a workspace whose flake failed;
//! the instance's sshd is not on that path, so "SSH down" is the agent's
//! SSH path down, not sshd.

use std::fmt;

use super::mutate::Mutation;
use crate::machine::probe::shell_quote;

/// One deliberate defect of a contract workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    HomeOnRootDisk,
    HomeOnTmpfs,
    AgentAsRoot,
    MissingUser,
    NoSudo,
    LogsNeverArrive,
    LogsOnlyAtEnd,
    SshDown,
    SshWrongUser,
}

/// How a defect gets into the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Render a mutated copy of `templates/`.
    Mutation(Mutation),
    /// Run this on the guest (probe, root) once the agent's startup ended.
    AfterStart(String),
}

impl Defect {
    pub const ALL: [Defect; 9] = [
        Defect::HomeOnRootDisk,
        Defect::HomeOnTmpfs,
        Defect::AgentAsRoot,
        Defect::MissingUser,
        Defect::NoSudo,
        Defect::LogsNeverArrive,
        Defect::LogsOnlyAtEnd,
        Defect::SshDown,
        Defect::SshWrongUser,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Defect::HomeOnRootDisk => "home-on-root-disk",
            Defect::HomeOnTmpfs => "home-on-tmpfs",
            Defect::AgentAsRoot => "agent-as-root",
            Defect::MissingUser => "missing-user",
            Defect::NoSudo => "no-sudo",
            Defect::LogsNeverArrive => "logs-never-arrive",
            Defect::LogsOnlyAtEnd => "logs-only-at-end",
            Defect::SshDown => "ssh-down",
            Defect::SshWrongUser => "ssh-wrong-user",
        }
    }

    pub fn from_slug(s: &str) -> anyhow::Result<Defect> {
        Defect::ALL
            .into_iter()
            .find(|d| d.slug() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown contract defect `{s}`; known: {}",
                    Defect::ALL.map(|d| d.slug()).join(", ")
                )
            })
    }

    /// The check that must fail.
    pub fn check(self) -> &'static str {
        match self {
            Defect::HomeOnRootDisk | Defect::HomeOnTmpfs => "home mount",
            Defect::AgentAsRoot | Defect::MissingUser | Defect::NoSudo => "agent user",
            Defect::LogsNeverArrive | Defect::LogsOnlyAtEnd => "log streaming",
            Defect::SshDown | Defect::SshWrongUser => "ssh fallback",
        }
    }

    /// Text the failed check's verdict (`seen`) must contain.
    pub fn cause(self) -> &'static str {
        match self {
            Defect::HomeOnRootDisk => "/home is not a mount point",
            Defect::HomeOnTmpfs => "/home is a tmpfs mount",
            Defect::AgentAsRoot => Mutation::AgentWithoutUid.cause(),
            Defect::MissingUser => "does not exist",
            Defect::NoSudo => "`sudo -n true` fails",
            Defect::LogsNeverArrive => Mutation::StartupOutputToFile.cause(),
            Defect::LogsOnlyAtEnd => Mutation::StartupOutputAtEnd.cause(),
            Defect::SshDown => "the agent is not connected",
            Defect::SshWrongUser => "the shell is \"root\"",
        }
    }

    /// How the defect is put into a workspace of agent user `user`.
    pub fn injection(self, user: &str) -> Injection {
        let u = shell_quote(user);
        let fault = |s: String| Injection::AfterStart(s);
        match self {
            // systemd then stops the units that require /home (the agent's):
            // the state a lost home disk leaves.
            Defect::HomeOnRootDisk => {
                fault("umount -l /home && ! grep -q ' /home ' /proc/mounts".into())
            }
            Defect::HomeOnTmpfs => fault("mount -t tmpfs -o mode=0755 tmpfs /home".into()),
            Defect::AgentAsRoot | Defect::SshWrongUser => {
                Injection::Mutation(Mutation::AgentWithoutUid)
            }
            Defect::MissingUser => fault(format!("userdel -f {u} && ! id {u}")),
            Defect::NoSudo => fault(format!("gpasswd -d {u} wheel")),
            Defect::LogsNeverArrive => Injection::Mutation(Mutation::StartupOutputToFile),
            Defect::LogsOnlyAtEnd => Injection::Mutation(Mutation::StartupOutputAtEnd),
            // The agent API double counts an agent as connected for 15 s
            // after its last call: wait that out, so the check sees the
            // agent gone rather than an unanswered command.
            Defect::SshDown => fault("systemctl stop coder-agent.service && sleep 16".into()),
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defect_round_trips_and_names_its_check_and_cause() {
        for d in Defect::ALL {
            assert_eq!(Defect::from_slug(d.slug()).unwrap(), d);
            assert!(
                ["home mount", "agent user", "log streaming", "ssh fallback"].contains(&d.check())
            );
            assert!(!d.cause().is_empty());
            match d.injection("alice") {
                // A mutation's own cause is the one its defect names, except
                // where a second check sees the same mutation (SSH as root).
                Injection::Mutation(m) if d != Defect::SshWrongUser => {
                    assert_eq!(m.cause(), d.cause(), "{d}")
                }
                Injection::Mutation(m) => assert_eq!(m, Mutation::AgentWithoutUid),
                Injection::AfterStart(cmd) => assert!(!cmd.is_empty()),
            }
        }
        assert!(Defect::from_slug("nope").is_err());
        // Every check has a defect.
        for c in ["home mount", "agent user", "log streaming", "ssh fallback"] {
            assert!(Defect::ALL.iter().any(|d| d.check() == c), "{c}");
        }
    }

    /// `features/contract-selftest.feature`'s tables (the `@smoke` row and
    /// the rest) are exactly [`Defect::ALL`] with each defect's check and
    /// cause.
    #[test]
    fn the_feature_table_is_every_defect_with_its_check_and_cause() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let f = std::fs::read_to_string(repo.join("features/contract-selftest.feature")).unwrap();
        let rows: Vec<(String, String, String)> = f
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                let c: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (c[0].to_string(), c[1].to_string(), c[2].to_string())
            })
            .filter(|(c, _, _)| c != "check")
            .collect();
        let mut rows = rows;
        rows.sort();
        let mut want: Vec<(String, String, String)> = Defect::ALL
            .iter()
            .map(|d| (d.check().into(), d.slug().into(), d.cause().into()))
            .collect();
        want.sort();
        assert_eq!(rows, want);
    }
}

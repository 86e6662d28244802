//! TEST DOUBLE of a workspace on the Debian fixture guest: user-data that
//! plays the template's boot flow (home disk on /home, agent user with
//! passwordless sudo, an agent stand-in streaming a fake rebuild's output
//! to the agent-logs double, SSH for the user), either correctly or with
//! one deliberate defect.  Self-tests boot it to prove each check can pass
//! and can fail; a pass here proves the check, never the template.

use std::fmt;
use std::time::Duration;

use crate::doubles::agent_logs::AgentLogsDouble;
use crate::image::BootImage;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::template::variant::Variant;

/// The console line the double prints once its fake rebuild has ended.
pub const READY_LINE: &str = "workspace-double: ready";

/// What is wrong with the guest (or nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    None,
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

impl Defect {
    pub const ALL: [Defect; 10] = [
        Defect::None,
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
            Defect::None => "none",
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
                    "unknown defect `{s}`; known: {}",
                    Defect::ALL.map(|d| d.slug()).join(", ")
                )
            })
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// The agent stand-in (busybox sh): reports lifecycle, runs a fake
/// rebuild printing one line a second, and delivers its output to the
/// agent-logs double the way the defect says.
pub const AGENT_DOUBLE: &str = r#"#!/bin/sh
# TEST DOUBLE of the Coder agent (harness fixture guest only).
# usage: coder-agent-double API_URL good|broken stream|never|at-end
API=$1 MODE=$2 LOGS=$3
post() { wget -q -O /dev/null --header 'Content-Type: application/json' --post-data "$2" "$API$1" 2>/dev/null; }
lifecycle() { post /api/v2/workspaceagents/me/report-lifecycle "{\"state\":\"$1\"}"; }
send() { post /api/v2/workspaceagents/me/logs "{\"log_source_id\":\"startup\",\"logs\":[{\"output\":\"$1\",\"level\":\"info\"}]}"; }
lifecycle starting
buf=/tmp/coder-agent-double.buf
: > "$buf"
i=1
while [ "$i" -le 6 ]; do
  line="building '/nix/store/fake-step-$i.drv' (fake rebuild of the test double)"
  if [ "$MODE" = broken ] && [ "$i" -eq 6 ]; then line="error: fake evaluation error (broken flake double)"; fi
  echo "$line"
  case "$LOGS" in
    stream) send "$line" ;;
    at-end) echo "$line" >> "$buf" ;;
  esac
  sleep 1
  i=$((i + 1))
done
if [ "$LOGS" = at-end ]; then
  while read -r l; do send "$l"; done < "$buf"
fi
if [ "$MODE" = broken ]; then lifecycle start_error; else lifecycle ready; fi
while true; do post /harness-double/heartbeat '{}'; sleep 3; done
"#;

/// Boot `image` as a fixture workspace of `variant` for `user` (with
/// `defect`, and a failing fake rebuild if `broken_flake`), with its own
/// agent-logs double; returns once the console shows [`READY_LINE`]
/// (within `within`).  `opts` carries label, accelerator and artifacts;
/// its user-data is replaced.
pub async fn boot(
    variant: &Variant,
    image: &BootImage,
    user: &str,
    broken_flake: bool,
    defect: Defect,
    mut opts: BootOptions,
    within: Duration,
) -> anyhow::Result<(QemuInstance, AgentLogsDouble)> {
    let api = AgentLogsDouble::start().await?;
    opts.user_data = user_data(user, &api.guest_url(), broken_flake, defect).into_bytes();
    let inst = QemuInstance::boot(variant, image, opts).await?;
    inst.console()
        .wait_for_line(READY_LINE, inst.boot_offset(), within, &variant.name)
        .await?;
    Ok((inst, api))
}

/// User-data for the fixture guest playing a workspace for `user`.
pub fn user_data(user: &str, api_url: &str, broken_flake: bool, defect: Defect) -> String {
    let q = crate::machine::probe::shell_quote;
    let mode = if broken_flake { "broken" } else { "good" };
    let logs = match defect {
        Defect::LogsNeverArrive => "never",
        Defect::LogsOnlyAtEnd => "at-end",
        _ => "stream",
    };
    format!(
        r#"#!/bin/sh
# TEST DOUBLE: workspace boot flow on the Debian fixture guest (defect: {defect}).
U={u}
API={api}
DEFECT={defect}
say() {{ echo "workspace-double: $*"; }}
case "$DEFECT" in
  home-on-root-disk) mkdir -p /home ;;
  home-on-tmpfs) grep -q ' /home ' /proc/mounts || mount -t tmpfs tmpfs /home ;;
  *)
    mkdir -p /home
    if ! grep -q ' /home ' /proc/mounts; then
      mount -t ext4 /dev/xvdb /home 2>/dev/null || {{ mkfs.ext4 -q -F /dev/xvdb && mount -t ext4 /dev/xvdb /home; }}
    fi ;;
esac
if [ "$DEFECT" = ssh-wrong-user ] && ! id intruder >/dev/null 2>&1; then
  useradd -M -u 4242 -s /bin/sh intruder
fi
if [ "$DEFECT" != missing-user ]; then
  id "$U" >/dev/null 2>&1 || useradd -m -d "/home/$U" -s /bin/sh "$U"
  # useradd leaves the account locked ('!'), and dropbear refuses locked accounts.
  sed -i "s/^$U:!/$U:*/" /etc/shadow /etc/passwd 2>/dev/null
  mkdir -p "/home/$U/.ssh"
  cp /root/.ssh/authorized_keys "/home/$U/.ssh/authorized_keys" 2>/dev/null
  chown -R "$U" "/home/$U"
  chmod 700 "/home/$U/.ssh"
  if [ "$DEFECT" != no-sudo ]; then
    grep -q "^$U " /etc/sudoers || echo "$U ALL=(ALL) NOPASSWD: ALL" >> /etc/sudoers
  fi
  if [ "$DEFECT" = ssh-wrong-user ]; then
    sed -i "s/^\($U:[^:]*\):[0-9]*:/\1:4242:/" /etc/passwd
  fi
fi
[ "$DEFECT" = ssh-down ] && {{ killall dropbear 2>/dev/null || pkill dropbear; }}
mkdir -p /usr/local/bin
cat > /usr/local/bin/coder-agent-double <<'AGENT'
{agent}AGENT
chmod 755 /usr/local/bin/coder-agent-double
if [ "$DEFECT" = agent-as-root ] || [ "$DEFECT" = missing-user ]; then
  setsid /usr/local/bin/coder-agent-double "$API" {mode} {logs} > /var/log/rebuild.log 2>&1 &
else
  touch /var/log/rebuild.log && chown "$U" /var/log/rebuild.log
  setsid su -s /bin/sh "$U" -c "exec /usr/local/bin/coder-agent-double $API {mode} {logs} > /var/log/rebuild.log 2>&1" &
fi
say "ready (defect: $DEFECT)"
"#,
        u = q(user),
        api = q(api_url),
        defect = defect.slug(),
        agent = AGENT_DOUBLE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defect_round_trips_and_renders() {
        for d in Defect::ALL {
            assert_eq!(Defect::from_slug(d.slug()).unwrap(), d);
            let ud = user_data("alice", "http://169.0.0.2:1234", false, d);
            assert!(ud.starts_with("#!/bin/sh\n"));
            assert!(ud.contains(&format!("DEFECT={}", d.slug())));
        }
        assert!(Defect::from_slug("nope").is_err());
    }

    #[test]
    fn user_data_passes_shellcheck() {
        let Ok(sc) = crate::tools::find("shellcheck") else {
            panic!("shellcheck is needed: apt-get install shellcheck");
        };
        let d = tempfile::tempdir().unwrap();
        for defect in [Defect::None, Defect::SshWrongUser] {
            let p = d.path().join("ud.sh");
            std::fs::write(&p, user_data("alice", "http://x", true, defect)).unwrap();
            let out = std::process::Command::new(&sc)
                .args(["-s", "sh", "-S", "error"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

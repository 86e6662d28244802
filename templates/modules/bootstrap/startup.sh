#!/usr/bin/env bash
# Coder agent startup script: applies the workspace flake. Its output is the
# agent's startup log, which Coder streams to the UI while it runs. On
# failure the script exits non-zero (lifecycle "start_error") but the agent
# keeps running, so the user can still open a terminal or SSH in to debug.
#
# FLAKE_URI comes from coder_agent.env; it is only ever used quoted, as one
# argument, never as shell source. The agent unit's PATH (set by the
# user-data) holds /run/wrappers/bin (sudo) and /run/current-system/sw/bin;
# this script needs nothing else.
#
# The flake is built first and its /home checked before switching:
# switch-to-configuration unmounts a file system whose fstab entry
# disappeared and unmounts and remounts one whose device or type changed
# (switch-to-configuration-ng), and systemd stops or restarts the agent's
# unit with /home (RequiresMountsFor=/home/<user>), killing this script and
# the nixos-rebuild it runs. Such a flake is refused with the reason.
set -uo pipefail

# Test hook: the harness runs this script with stub commands under a
# throwaway root; the agent never sets it.
prefix=${CODER_BOOTSTRAP_PREFIX:-}
marker="$prefix/var/lib/coder-bootstrap/flake-applied"
current_system="$prefix/run/current-system"

if [ -z "${FLAKE_URI:-}" ]; then
  echo "==> no NixOS flake is set for this workspace: nothing to apply."
  echo "    Set the workspace parameter \"NixOS flake\" (flake_uri) to your flake,"
  echo "    e.g. github:me/dotfiles#workspace, then restart the workspace."
  echo "    Until then the workspace stays on the bootstrap configuration."
  exit 1
fi

# "device type" of /home in an fstab, read as switch-to-configuration-ng's
# parse_fstab reads it (a line containing `#` is skipped).
home_entry() {
  local line dev mp type
  [ -f "$1" ] || return 0
  while IFS= read -r line; do
    [[ $line == *'#'* ]] && continue
    read -r dev mp type _ <<<"$line"
    if [ "${mp:-}" = /home ]; then
      printf '%s %s\n' "$dev" "$type"
      return 0
    fi
  done <"$1"
}

echo "==> nixos-rebuild build --flake ${FLAKE_URI}"
build_dir=$(mktemp -d)
# stdout: the built system's store path (nixos-rebuild prints only that there).
toplevel=$(cd "$build_dir" && sudo -n nixos-rebuild build --flake "${FLAKE_URI}")
rc=$?
rm -rf "$build_dir"
toplevel=${toplevel##*$'\n'}
if [ "$rc" -ne 0 ] || [ -z "$toplevel" ]; then
  [ "$rc" -ne 0 ] || rc=1
  echo "==> nixos-rebuild failed (exit ${rc}); the agent stays connected: open a terminal or SSH in to debug"
  exit "$rc"
fi

current_home=$(home_entry "$prefix/etc/fstab")
new_home=$(home_entry "$toplevel/etc/fstab")
if [ -n "$current_home" ] && [ "$new_home" != "$current_home" ]; then
  if [ -z "$new_home" ]; then
    echo "==> not switching: your configuration declares no /home file system, but this workspace keeps /home on its home disk (${current_home% *})."
    echo "    Switching would unmount /home, which stops this agent (it runs from /home) and hides your files."
    echo "    Add to your configuration:"
    echo "      fileSystems.\"/home\" = { device = \"/dev/xvdb\"; fsType = \"ext4\"; autoFormat = true; };"
  else
    echo "==> not switching: your configuration mounts /home from ${new_home% *} (${new_home#* }), this workspace from ${current_home% *} (${current_home#* })."
    echo "    Switching would unmount and remount /home, which restarts this agent in the middle of the switch."
    echo "    Declare it as the workspace does (device = \"${current_home% *}\"; fsType = \"${current_home#* }\";), or apply yours"
    echo "    at the next start: run \`sudo nixos-rebuild boot --flake ${FLAKE_URI}\` in a terminal, then restart the workspace."
  fi
  echo "    The workspace stays on its current configuration; the agent stays connected."
  exit 1
fi

echo "==> nixos-rebuild switch --flake ${FLAKE_URI}"
before=$(readlink -f "$current_system" || true)
sudo -n nixos-rebuild switch --flake "${FLAKE_URI}" 2>&1
rc=$?
after=$(readlink -f "$current_system" || true)

# Judged by what is ACTIVE (/run/current-system): switch-to-configuration
# exits non-zero when any unit failed although the new generation is
# active, and nixos-rebuild moves the system profile before it runs, so an
# aborted pre-switch check or boot loader installation moves the profile and
# activates nothing. An active flake is marked applied: otherwise the next
# boot would switch back to the bootstrap configuration and remove the users
# the flake added.
if [ "$rc" -eq 0 ] || [ "$before" != "$after" ]; then
  sudo -n install -D -m 0644 /dev/null "$marker"
fi
if [ "$rc" -eq 0 ]; then
  echo "==> workspace configuration applied"
elif [ "$before" != "$after" ]; then
  echo "==> nixos-rebuild exited ${rc}, but the new generation is active (${after}): some unit failed; see journalctl -b. The agent stays connected."
  exit "$rc"
else
  echo "==> nixos-rebuild failed (exit ${rc}) and activated nothing; the agent stays connected: open a terminal or SSH in to debug"
  exit "$rc"
fi

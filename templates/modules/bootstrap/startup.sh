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
set -uo pipefail

# Test hook: the harness runs this script with stub commands under a
# throwaway root; the agent never sets it.
prefix=${CODER_BOOTSTRAP_PREFIX:-}
marker="$prefix/var/lib/coder-bootstrap/flake-applied"
system_profile="$prefix/nix/var/nix/profiles/system"

if [ -z "${FLAKE_URI:-}" ]; then
  echo "==> no NixOS flake is set for this workspace: nothing to apply."
  echo "    Set the workspace parameter \"NixOS flake\" (flake_uri) to your flake,"
  echo "    e.g. github:me/dotfiles#workspace, then restart the workspace."
  echo "    Until then the workspace stays on the bootstrap configuration."
  exit 1
fi

echo "==> nixos-rebuild switch --flake ${FLAKE_URI}"
before=$(readlink "$system_profile" || true)
sudo -n nixos-rebuild switch --flake "${FLAKE_URI}" 2>&1
rc=$?
after=$(readlink "$system_profile" || true)

# switch-to-configuration exits non-zero when any unit failed, although the
# new generation is active. The flake counts as applied once the system
# profile points at a new generation: otherwise the next boot would switch
# back to the bootstrap configuration and remove the users the flake added.
if [ "$rc" -eq 0 ] || [ "$before" != "$after" ]; then
  sudo -n install -D -m 0644 /dev/null "$marker"
fi
if [ "$rc" -eq 0 ]; then
  echo "==> workspace configuration applied"
elif [ "$before" != "$after" ]; then
  echo "==> nixos-rebuild exited ${rc}, but the new generation is active (${after}): some unit failed; see journalctl -b. The agent stays connected."
  exit "$rc"
else
  echo "==> nixos-rebuild failed (exit ${rc}); the agent stays connected: open a terminal or SSH in to debug"
  exit "$rc"
fi

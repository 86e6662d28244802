#!/usr/bin/env bash
# Coder agent startup script: applies the workspace flake. Its output is the
# agent's startup log, which Coder streams to the UI while it runs. On
# failure the script exits non-zero (lifecycle "start_error") but the agent
# keeps running, so the user can still open a terminal or SSH in to debug.
#
# FLAKE_URI comes from coder_agent.env; it is only ever used quoted, as one
# argument, never as shell source.
set -uo pipefail

marker=/var/lib/coder-bootstrap/flake-applied

echo "==> nixos-rebuild switch --flake ${FLAKE_URI}"
if sudo -n nixos-rebuild switch --flake "${FLAKE_URI}" 2>&1; then
  sudo -n install -D -m 0644 /dev/null "$marker"
  echo "==> workspace configuration applied"
else
  rc=$?
  echo "==> nixos-rebuild failed (exit ${rc}); the agent stays connected: open a terminal or SSH in to debug"
  exit "$rc"
fi

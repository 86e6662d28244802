#!/usr/bin/env bash
# push-all.sh: push one Coder template per values/*.yml file.
#
#   ./push-all.sh [push|create] [--skip-gate]
#
# Runs `harness gate` first and refuses to push if it fails. `create` is an
# alias of `push`: `coder templates create` is deprecated and `push` creates
# missing templates. HARNESS_BIN overrides the harness command (tests stub it).
set -euo pipefail

usage() {
  echo "usage: $0 [push|create] [--skip-gate]" >&2
  exit 2
}

mode=push
skip_gate=0
for arg in "$@"; do
  case "$arg" in
    push | create) mode=$arg ;;
    --skip-gate) skip_gate=1 ;;
    -h | --help) usage ;;
    *)
      echo "push-all.sh: unknown argument: $arg" >&2
      usage
      ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$repo"

if ! command -v coder >/dev/null 2>&1; then
  echo "push-all.sh: expected the 'coder' CLI on PATH, seen: not found." >&2
  echo "  install it from your Coder deployment and run 'coder login' first." >&2
  exit 1
fi

if [[ $skip_gate -eq 0 ]]; then
  if [[ -n ${HARNESS_BIN:-} ]]; then
    harness=("$HARNESS_BIN")
  elif command -v harness >/dev/null 2>&1; then
    harness=(harness)
  else
    harness=(cargo run -q -p harness --)
  fi
  echo "push-all.sh: running ${harness[*]} gate" >&2
  if ! "${harness[@]}" gate; then
    echo "push-all.sh: harness gate failed; nothing pushed (use --skip-gate to override)." >&2
    exit 1
  fi
else
  echo "push-all.sh: --skip-gate given: pushing without running harness gate." >&2
fi

shopt -s nullglob
values=(values/*.yml)
if [[ ${#values[@]} -eq 0 ]]; then
  echo "push-all.sh: expected values/*.yml files in $repo/values, seen: none." >&2
  exit 1
fi

echo "push-all.sh: mode $mode (both modes use 'coder templates push')" >&2
for file in "${values[@]}"; do
  name=$(basename "$file" .yml)
  echo "push-all.sh: pushing template $name ($file)" >&2
  coder templates push --yes -d templates --variables-file "$file" "$name"
done

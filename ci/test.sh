#!/usr/bin/env bash
# The test command: formatting, lints, every Rust test (unit, integration,
# real QEMU boots of the fixture guest on both arches, moto, real Terraform)
# and the cucumber scenarios (`--features e2e`), then the release gate's
# table (lint, render, terraform test, plus the e2e results just produced).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "terraform fmt -check"
terraform fmt -check -recursive templates
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --features e2e -- -D warnings
step "cargo test --features e2e"
cargo test --workspace --features e2e
step "harness gate --allow-skips (lint, render, terraform test, and the e2e results above)"
cargo run -q -p harness -- gate --allow-skips --reuse-e2e

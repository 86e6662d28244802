#!/usr/bin/env bash
# The test command: formatting, lints, every Rust test (unit, integration,
# real QEMU boots of the contract guest on both arches, moto, real Terraform,
# the AWS twin: the whole template with the real providers against moto)
# and the cucumber scenarios (`--features e2e`), then the release gate's
# table (lint, render, terraform test, coder-import with the real coder
# provider, checkov, plus the e2e results just produced).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "terraform fmt -check"
terraform fmt -check -recursive templates
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --features e2e -- -D warnings
step "terraform-provider-coder in the harness's Terraform mirror (no-op when this version is cached; the twin and coder-import need it)"
bash ci/build-coder-provider.sh || echo "coder provider not built (reason above): the coder-import rows and the twin will be skipped" >&2
step "cargo test --features e2e: the e2e scenarios (contract tier: every x86_64 scenario on the spot variant, the @smoke scenario on aarch64; the nightly runs the full matrix) and, beside them, every other test"
# The aarch64 contract guest under TCG costs several times the x86_64 one:
# CI runs its @smoke scenario (good flake, the four checks) on the first
# aarch64 variant. An arch's on-demand variant renders the same user-data
# as its spot variant (tests/static_gate.rs asserts it): CI runs the x86_64
# rows on the spot variant. What is left out is reported as skipped with
# the reason, never as passed.
contract_archs=${HARNESS_CONTRACT_ARCHS-x86_64=spot,aarch64=smoke}
cargo test --workspace --features e2e --no-run
# Every test target but the e2e, from cargo's own list, so a new test file
# runs without editing this script, all beside the e2e: the targets that
# boot guests (guest_tests) each in its own process, the rest one after
# the other in one more. Guests of every process share the machine's guest
# slots (harness::machine::qemu::slots: flock'd files, no more guests than
# cores between the processes). Run in sequence, the e2e and these left a
# core idle for most of their length (41 min warm at stop 29).
guest_tests=(contract_guest offline_net vm)
mapfile -t all_tests < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"] and t["name"] != "e2e":
            print(t["name"])
')
host_tests=()
for t in "${all_tests[@]}"; do
  [[ " ${guest_tests[*]} " == *" $t "* ]] || host_tests+=("--test=$t")
done
for t in "${guest_tests[@]}"; do
  [[ " ${all_tests[*]} " == *" $t "* ]] || { echo "ci/test.sh names a guest test target that cargo does not list: $t" >&2; exit 1; }
done
[ "${#host_tests[@]}" -gt 0 ] || { echo "expected integration test targets besides e2e in cargo metadata; found none" >&2; exit 1; }
mkdir -p target/ci
rm -f target/ci/*.log
# Each in its own process group, so an exit here (a failed e2e, Ctrl-C)
# stops it and the guests its tests run (their own signal cleanup kills
# QEMU).
bg=()
setsid cargo test --workspace --features e2e --lib --bins "${host_tests[@]}" >target/ci/host-tests.log 2>&1 &
bg+=("$!:host-tests")
# The guest tests yield: they take a guest slot only once one has stayed
# free for 10 s, so the e2e's contract pool (the longest chain here), which
# frees a slot between two scenarios and takes it back at once, keeps its
# two; they run in its gaps and after it. (Without this they took both
# slots first and the e2e's first scenario waited 10 min.)
for t in "${guest_tests[@]}"; do
  HARNESS_GUEST_SLOTS_YIELD=10 setsid cargo test -p harness --features e2e --test "$t" >"target/ci/$t.log" 2>&1 &
  bg+=("$!:$t")
done
stop_bg() { for j in "${bg[@]}"; do kill -TERM -- "-${j%%:*}" 2>/dev/null || true; done; }
trap stop_bg EXIT
echo "beside the e2e: the unit tests and ${#host_tests[@]} host test targets (target/ci/host-tests.log), and ${guest_tests[*]} (target/ci/<name>.log)" >&2
e2e_rc=0
HARNESS_CONTRACT_ARCHS=$contract_archs cargo test -p harness --features e2e --test e2e || e2e_rc=$?
# What still runs: a line every 30 s until it ends.
waited=0
while :; do
  running=()
  for j in "${bg[@]}"; do kill -0 "${j%%:*}" 2>/dev/null && running+=("${j#*:}"); done
  [ "${#running[@]}" -gt 0 ] || break
  sleep 5
  waited=$((waited + 5))
  if [ $((waited % 30)) -eq 0 ]; then
    echo "still running after the e2e (${waited} s): ${running[*]}" >&2
  fi
done
failed=()
for j in "${bg[@]}"; do
  wait "${j%%:*}" || failed+=("${j#*:}")
done
trap - EXIT
# Their verdicts (a whole log when it failed).
for j in "${bg[@]}"; do
  name=${j#*:}
  if [[ " ${failed[*]} " == *" $name "* ]]; then
    echo "==> $name FAILED (target/ci/$name.log):"
    cat "target/ci/$name.log"
  else
    grep -E '^ +Running |^test result:' "target/ci/$name.log"
  fi
done
cargo test --workspace --features e2e --doc
if [ "$e2e_rc" -ne 0 ] || [ "${#failed[@]}" -gt 0 ]; then
  echo "cargo test failed: the e2e exited $e2e_rc; failed beside it: ${failed[*]:-none} (logs: target/ci/)" >&2
  exit 1
fi
step "the contract tier really ran: passed contract rows in target/e2e/summary.json, on every selected arch"
CONTRACT_ARCHS=$contract_archs python3 - <<'PY'
import json, os, sys
rows = json.load(open("target/e2e/summary.json"))["rows"]
contract = [r for r in rows if r.get("tier") == "contract"]
passed = [r for r in contract if r["outcome"] == "passed"]
failed = [r for r in contract if r["outcome"] == "failed"]
print(f"contract tier: {len(passed)} passed, {len(failed)} failed, {len(contract) - len(passed) - len(failed)} skipped")
if not passed or failed:
    sys.exit("expected passed and no failed contract rows (the template's user-data on the contract guest)")
selected = os.environ.get("CONTRACT_ARCHS", "")
want = {a.split("=")[0].strip() for a in selected.split(",") if a.strip()} or {"x86_64", "aarch64"}
arches = {r.get("arch") for r in passed}
if not want <= arches:
    sys.exit(f"expected passed contract rows on {sorted(want)} (HARNESS_CONTRACT_ARCHS={selected}), seen {sorted(a for a in arches if a)}")
# features/contract-selftest.feature: every check failing, naming the cause.
selftest = [r for r in contract if "on a contract workspace with the defect" in r["scenario"] and r.get("arch") == "x86_64"]
if "x86_64" in want and (not selftest or any(r["outcome"] != "passed" for r in selftest)):
    sys.exit(f"expected every x86_64 contract self-test row to pass (each check failing for its named cause), seen {[(r['scenario'], r['outcome']) for r in selftest]}")
print(f"contract self-test: {len(selftest)} x86_64 rows passed")
PY
step "the twin tier really ran: every @twin row passed (lives, the spot stop guard, each mutation failing for its cause)"
python3 - <<'PY'
import json, sys
rows = json.load(open("target/e2e/summary.json"))["rows"]
twin = [r for r in rows if r.get("tier") == "twin"]
by = {o: [r for r in twin if r["outcome"] == o] for o in ("passed", "failed", "skipped")}
secs = sum(r["seconds"] for r in twin)
print(f"twin tier: {len(by['passed'])} passed, {len(by['failed'])} failed, {len(by['skipped'])} skipped ({secs:.0f} scenario-seconds)")
for r in by["failed"] + by["skipped"]:
    print(f"  {r['outcome']}: {r['scenario']}: {r.get('reason')}")
if not by["passed"] or by["failed"] or by["skipped"]:
    sys.exit("expected every @twin scenario to pass here (moto, terraform and both providers are on this machine)")
if not any(r["check"] == "twin mutation" for r in by["passed"]):
    sys.exit("expected passed @twin @mutation rows (each mutated template failing the twin for its cause)")
PY
step "harness gate --allow-skips (lint, render, terraform test, and the e2e results above)"
# The binary `cargo test` just built (`cargo run -p harness` resolves the
# same features, so either way nothing compiles twice).
target/debug/harness gate --allow-skips --reuse-e2e
step "HARNESS_BACKEND=ec2 without AWS credentials: the EC2 scenarios are skipped with the reason (strict: failed)"
ec2_env=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE -u HARNESS_EC2_ENDPOINT
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  HARNESS_BACKEND=ec2 HARNESS_EC2_REGION=us-east-1)
out=$("${ec2_env[@]}" cargo test -q -p harness --features e2e --test e2e 2>&1)
grep 'SKIPPED' <<<"$out"
grep -q 'SKIPPED \[[0-9]*\] .*no AWS credentials' <<<"$out"
if "${ec2_env[@]}" HARNESS_STRICT=1 cargo test -q -p harness --features e2e --test e2e >/dev/null 2>&1; then
  echo "HARNESS_STRICT=1 with skipped EC2 scenarios exited 0; expected a failure" >&2
  exit 1
fi

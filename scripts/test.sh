#!/usr/bin/env bash
# Builds the raftcache binary and runs every test: unit, property and storage-conformance tests
# of each crate, then the integration tests in tests/ that start real raftcache processes on
# loopback, the fault suite, a bench smoke run, and rustfmt, clippy and rustdoc. Needs only cargo
# (protoc is vendored). Runs every section, then exits non-zero if any failed.
#
# Environment: RAFTCACHE_TEST_THREADS (integration tests run at once, default 2: each starts a
# 3-node cluster, and more than two clusters overload a 2-core machine), RAFTCACHE_KEEP_TEST_DIRS=1
# (keep a failed test's node data and logs), extra arguments are passed to both `cargo test` runs
# before `--` (e.g. scripts/test.sh --release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="${RAFTCACHE_TEST_THREADS:-2}"
PROFILE_DIR=debug
for arg in "$@"; do [[ "$arg" == "--release" ]] && PROFILE_DIR=release; done
export RAFTCACHE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR/raftcache"

STARTED=$SECONDS
FAILED=()
section() { printf '\n==================== %s ====================\n' "$1"; }
# Runs one section; a failure is recorded and the later sections still run.
run() {
    local name="$1"
    shift
    section "$name"
    local t0=$SECONDS
    if "$@"; then
        printf -- '---- %s: ok (%ss)\n' "$name" "$((SECONDS - t0))"
    else
        printf -- '---- %s: FAILED (exit %s, %ss)\n' "$name" "$?" "$((SECONDS - t0))"
        FAILED+=("$name")
    fi
}

# Every step builds with --workspace so cargo resolves features once; a `-p` build would resolve
# them differently and rebuild much of the dependency tree (and replace the binary under test).
section "build: the raftcache binary"
cargo build "$@" --workspace --bins

# Unit, property and storage-conformance tests of every crate; the `t*` test files are the
# cluster runs below.
run "unit, property and storage-conformance tests" \
    cargo test "$@" --no-fail-fast --workspace --exclude raftcache-tests --lib --bins --test '[!t]*'

run "integration tests: real raftcache clusters on loopback ($THREADS at a time)" \
    cargo test "$@" --no-fail-fast --workspace --exclude raftcache-jepsen --test 't[0-9]*' -- --test-threads="$THREADS"

# The fault suite (jepsen/): checker tests against a brute-force oracle, a short randomized run per
# nemesis against the correct build, and the planted bugs, each of which must be caught.
run "fault suite: checkers, short nemesis runs, planted bugs" \
    cargo test "$@" --no-fail-fast --workspace --exclude raftcache-tests --test 't[0-9]*'

# The load generator against a 1-node cluster, so the bench cannot rot (no timing asserted).
run "bench smoke: 10 s of load on a 1-node cluster" \
    "${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR/raftcache-bench" smoke --duration 10s

# Formatting, lints and the API docs' links, so warnings cannot pile up unseen (clippy checks
# without building, ~1.5 min from cold on 2 cores; rustdoc then reuses its dependencies' metadata).
run "format, lints and docs: rustfmt, clippy -D warnings, rustdoc -D warnings" \
    bash -c 'cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings &&
        RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet'

if ((${#FAILED[@]} > 0)); then
    printf '\n==================== FAILED (%ss): %s ====================\n' "$((SECONDS - STARTED))" "$(IFS=';'; echo "${FAILED[*]}")"
    exit 1
fi
printf '\n==================== all tests passed (%ss) ====================\n' "$((SECONDS - STARTED))"

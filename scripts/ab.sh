#!/usr/bin/env bash
# Compares two builds of raftcache under the same conditions.
#
#   scripts/ab.sh [--pairs N] [--alone] A_DIR B_DIR [raftcache-bench load flags...]
#
# A_DIR and B_DIR each hold a release `raftcache` and `raftcache-bench` (a target/release
# directory, or copies of its two binaries). Each pair starts a 3-node cluster of each build at
# once (ports 7101.. and 7201..) and runs both builds' generators against them at the same time,
# sharing the machine's cores, so a change in the machine's speed hits both alike. On a shared
# 2-core host that speed drifts by 10-30% between runs one after another, more than most single
# changes are worth. Which build gets the first ports alternates between pairs. Prints each
# pair's ops/s and p99, the ratio B/A, and the ratios' range and mean.
#
# Run a build against itself first: the spread of those ratios is what the method cannot tell
# apart (on the development machine, six pairs of one build: -0.3% to +2.6%).
#
# --alone runs each pair's two loads one after the other instead (a fresh cluster each, the
# order swapped every other pair), each with the machine to itself: the setting for a change
# whose effect depends on how busy the machine is (worker threads, CPU placement), which two
# clusters at once would hide. Slower drift still hits both sides alike over several pairs.
# Alone, each pair also shows each side's machine CPU per operation.
#
# Example: scripts/ab.sh --pairs 6 /tmp/before /tmp/after --workload write --clients 64
# Environment: RAFTCACHE_SERVE_ARGS (flags for both clusters' nodes), AB_SERVE_ARGS_A and
# AB_SERVE_ARGS_B (more flags for one side's nodes: one build against itself with a flag changed),
# AB_DURATION (default 12s),
# RAFTCACHE_WORKER_THREADS=default for a build older than `serve --worker-threads` (see
# scripts/cluster.sh). Both clusters run at once, so their six nodes share the cores: a change
# whose effect depends on how busy the machine is can measure differently alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "ab.sh: $*" >&2; exit 1; }

pairs=4 alone=0
while [[ "${1:-}" == --pairs || "${1:-}" == --alone ]]; do
    if [[ "$1" == --alone ]]; then
        alone=1
        shift
        continue
    fi
    [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--pairs takes a positive number, got '${2:-}'"
    pairs="$2"
    shift 2
done
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 2; }
A="$(cd "$1" 2>/dev/null && pwd)" || die "no directory $1"
B="$(cd "$2" 2>/dev/null && pwd)" || die "no directory $2"
shift 2
for d in "$A" "$B"; do
    for b in raftcache raftcache-bench; do
        [[ -x "$d/$b" ]] || die "$d/$b is not an executable"
    done
done

WORK="$(mktemp -d)"
# port SIDE: the first node's port of side SIDE's cluster.
port() { echo $((7001 + $1 * 100)); }
# cluster SIDE ARGS...: cluster.sh for side SIDE's cluster.
cluster() {
    local side="$1"
    shift
    RAFTCACHE_CLUSTER_DIR="$WORK/c$side" RAFTCACHE_BASE_PORT="$(port "$side")" "$ROOT/scripts/cluster.sh" "$@"
}
down() { cluster 1 down >/dev/null 2>&1 & cluster 2 down >/dev/null 2>&1 & wait; }
trap 'down; rm -rf "$WORK"' EXIT

# up SIDE DIR EXTRA_ARGS: a cluster of DIR's build on side SIDE's ports, its nodes given
# EXTRA_ARGS besides RAFTCACHE_SERVE_ARGS.
up() {
    RAFTCACHE_SERVE_ARGS="${RAFTCACHE_SERVE_ARGS:-} $3" RAFTCACHE_BIN="$2/raftcache" cluster "$1" up >"$WORK/up$1.log" 2>&1 ||
        { cat "$WORK/up$1.log" >&2; die "cluster $1 did not start"; }
}
# load SIDE DIR ARGS...: DIR's generator against side SIDE's cluster; its summary line.
load() {
    local side="$1" dir="$2" port
    port="$(port "$1")"
    shift 2
    "$dir/raftcache-bench" load --endpoints "127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))" \
        --duration "${AB_DURATION:-12s}" --warmup 2s "$@" >"$WORK/load$side.log" 2>&1 ||
        { tail -n 5 "$WORK/load$side.log" >&2; die "the load against cluster $side failed"; }
    tail -n 1 "$WORK/load$side.log"
}
field() { awk -v k="$1" '{ for (i = 2; i <= NF; i++) if ($i == k) print $(i - 1) }'; }
p99() { awk '{ for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }'; }

ratios=()
# Alone, each generator's machine CPU per operation is its own cluster's (at once it is not).
cpu_cols() { ((alone)) && printf ' %10s %10s' "$1" "$2"; true; }
printf '%-5s %12s %10s %12s %10s %8s%s\n' pair "A ops/s" "A p99 µs" "B ops/s" "B p99 µs" "B/A" "$(cpu_cols "A cpu µs" "B cpu µs")"
for ((i = 1; i <= pairs; i++)); do
    # Odd pairs: A on side 1; even pairs: B on side 1.
    if ((i % 2)); then sa=1 sb=2; else sa=2 sb=1; fi
    if ((alone)); then
        # One side at a time, on the first side's ports; A first in odd pairs.
        for side in $( ((i % 2)) && echo A B || echo B A); do
            if [[ $side == A ]]; then
                up 1 "$A" "${AB_SERVE_ARGS_A:-}" && load 1 "$A" "$@" >"$WORK/a.txt"
            else
                up 1 "$B" "${AB_SERVE_ARGS_B:-}" && load 1 "$B" "$@" >"$WORK/b.txt"
            fi
            down
        done
    else
        up $sa "$A" "${AB_SERVE_ARGS_A:-}" & up $sb "$B" "${AB_SERVE_ARGS_B:-}" & wait
        load $sa "$A" "$@" >"$WORK/a.txt" & load $sb "$B" "$@" >"$WORK/b.txt" & wait
        down
    fi
    a_ops="$(field ops/s <"$WORK/a.txt")" b_ops="$(field ops/s <"$WORK/b.txt")"
    [[ -n "$a_ops" && -n "$b_ops" ]] || die "no ops/s in the generators' output: $(cat "$WORK/a.txt" "$WORK/b.txt")"
    ratio="$(awk -v a="$a_ops" -v b="$b_ops" 'BEGIN { printf "%.3f", b / a }')"
    ratios+=("$ratio")
    printf '%-5s %12s %10s %12s %10s %8s%s\n' "$i" "$a_ops" "$(p99 <"$WORK/a.txt")" "$b_ops" "$(p99 <"$WORK/b.txt")" "$ratio" \
        "$(cpu_cols "$(field µs/op <"$WORK/a.txt")" "$(field µs/op <"$WORK/b.txt")")"
done
printf '%s\n' "${ratios[@]}" | awk '{ s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
    END { printf "B/A over %d pairs: %.3f to %.3f, mean %.3f\n", NR, lo, hi, s / NR }'

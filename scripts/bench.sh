#!/usr/bin/env bash
# raftcache side by side with etcd and Redis, on this machine, in one run.
#
#   scripts/bench.sh [--quick] [--keep-data] [SUITE FLAGS...]
#
# Installs etcd (Debian's etcd-server), redis-server and protoc (for the bench's etcd client)
# when missing, builds raftcache and raftcache-bench (release), then measures one system at a
# time, each alone on the machine, all on loopback:
#   raftcache  3 nodes, 3 groups, 3 replicas, fsync (the node's defaults)
#   etcd       3 members, default fsync
#   Redis      one server, no persistence (--save '' --appendonly no)
# with the same workloads (`raftcache-bench suite`): write, read, 90/10 mixed; uniform and
# Zipf(0.99) keys over 10,000 keys; 256-byte values; 1, 16, 64 and 256 clients; raftcache reads
# at every consistency level. A full run takes about 20 minutes; --quick about 3 (clients 1, 16,
# 64; fewer levels; 3 s windows).
#
# Results in bench/results/<UTC time>/: summary.json ({"runs": [...]}, one record per
# measurement), summary.md (ratio table raftcache/etcd and raftcache/Redis, goals, every run),
# summary.svg (throughput and p99 against clients), and each server's log. Node data is removed
# at the end unless --keep-data. The ratio table is printed at the end.
#
# SUITE FLAGS go to `raftcache-bench suite` (e.g. --clients 1,64 --duration 5s --key-space 1000);
# `raftcache-bench suite --help` lists them.
# Environment: BENCH_BASE_PORT (default 17100; ports BASE+1.. are used), CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BASE="${BENCH_BASE_PORT:-17100}"
QUICK=()
KEEP_DATA=0
SUITE_ARGS=()

die() { echo "bench.sh: $*" >&2; exit 1; }

while (($# > 0)); do
    case "$1" in
        --quick) QUICK=(--quick) ;;
        --keep-data) KEEP_DATA=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        --out | --out=* | --append | --systems | --systems=* | --raftcache | --raftcache=* | --etcd | --etcd=* | --redis | --redis=*)
            die "$1 is set by bench.sh itself" ;;
        *) SUITE_ARGS+=("$1") ;;
    esac
    shift
done
[[ "$BASE" =~ ^[0-9]+$ ]] && ((BASE >= 1024 && BASE <= 65000)) || die "BENCH_BASE_PORT must be 1024..65000, got '$BASE'"

# ---- install what is missing ----------------------------------------------------------------
SUDO=()
(($(id -u) == 0)) || SUDO=(sudo)
APT_UPDATED=0
apt_candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
apt_install() {
    if ((APT_UPDATED == 0)); then
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    echo "installing $* (apt-get) ..."
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
}
# The Debian package that ships the etcd server: etcd-server (bookworm and later) or etcd.
etcd_package() {
    local p c
    for p in etcd-server etcd; do
        c="$(apt_candidate "$p")"
        [[ -n "$c" && "$c" != "(none)" ]] && { echo "$p"; return 0; }
    done
    return 1
}
if ! command -v etcd >/dev/null; then
    pkg="$(etcd_package || true)"
    if [[ -z "$pkg" ]]; then
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
        pkg="$(etcd_package)" || die "neither etcd-server nor etcd is in the apt sources (apt-cache policy etcd-server etcd)"
    fi
    apt_install "$pkg"
fi
command -v redis-server >/dev/null || apt_install redis-server
command -v protoc >/dev/null || apt_install protobuf-compiler
command -v etcd >/dev/null || die "etcd is not on PATH after installing it"

# ---- build ----------------------------------------------------------------------------------
echo "building raftcache and raftcache-bench (release) ..."
# The tree as built: edits made while the suite runs do not change the binaries measured.
RC_VERSION="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
(cd "$ROOT" && cargo build --release -p raftcache-server -p raftcache-bench --features raftcache-bench/etcd \
    --bin raftcache --bin raftcache-bench)
RC="$TARGET_DIR/release/raftcache"
BENCH="$TARGET_DIR/release/raftcache-bench"

# ---- processes ------------------------------------------------------------------------------
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
PIDS=()
LOGS=()

stop_all() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
    LOGS=()
}
cleanup() {
    stop_all
    if ((KEEP_DATA == 0)); then
        rm -rf "$OUT"/raftcache/n*/data "$OUT"/etcd/e*/data "$OUT"/redis/data
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_ports() {
    local p
    for p in "$@"; do port_in_use "$p" && die "port $p is in use; stop what holds it or set BENCH_BASE_PORT"; done
    return 0
}
# spawn LOG CMD...: runs CMD in the background, output to LOG.
spawn() {
    local log="$1"
    shift
    "$@" >"$log" 2>&1 </dev/null &
    PIDS+=($!)
    LOGS+=("$log")
}
# Fails (with the log's end) if a started process has exited.
check_alive() {
    local i
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            echo "bench.sh: a server exited; the end of ${LOGS[$i]}:" >&2
            tail -n 20 "${LOGS[$i]}" >&2
            exit 1
        fi
    done
}
# measure SYSTEM ENDPOINT-FLAG...: one system's workloads into $OUT/summary.json.
measure() {
    local system="$1"
    shift
    sleep 1
    check_alive
    if ! "$BENCH" suite --out "$OUT" --append --no-report --systems "$system" "$@" "${QUICK[@]}" "${SUITE_ARGS[@]}"; then
        echo "bench.sh: measuring $system failed; server logs are in $OUT/$system/" >&2
        check_alive
        exit 1
    fi
    stop_all
}

# How long one small synced write takes on the disk the data dirs are on, before and after the
# runs: this machine's speed drifts by up to 2x between hours, most in what syncs and wake-ups cost.
sync_probe() {
    local f="$OUT/sync-probe" secs
    dd if=/dev/zero of="$f" bs=1M count=4 conv=fsync status=none
    secs="$(LC_ALL=C dd if=/dev/zero of="$f" bs=2k count=500 oflag=dsync conv=notrunc 2>&1 | awk '/copied/ { print $(NF - 3) }')"
    rm -f "$f"
    awk -v s="$secs" 'BEGIN { if (s == "") print "?"; else printf "%.0f", s * 1e6 / 500 }'
}
SYNC_BEFORE="$(sync_probe)"
echo "disk: one 2 KiB synced write takes $SYNC_BEFORE µs"

# raftcache: 3 nodes.
RC_PORTS=($((BASE + 1)) $((BASE + 2)) $((BASE + 3)))
check_ports "${RC_PORTS[@]}"
initial="" eps=""
for i in 1 2 3; do
    initial+="${initial:+,}$i=127.0.0.1:${RC_PORTS[i - 1]}"
    eps+="${eps:+,}127.0.0.1:${RC_PORTS[i - 1]}"
done
# The three nodes share this machine's cores, as scripts/cluster.sh does.
RC_WORKERS=$(($(nproc) / 3))
((RC_WORKERS >= 1)) || RC_WORKERS=1
for i in 1 2 3; do
    mkdir -p "$OUT/raftcache/n$i"
    spawn "$OUT/raftcache/n$i/node.log" env RUST_LOG="${RUST_LOG:-warn}" "$RC" serve --id "$i" \
        --listen "127.0.0.1:${RC_PORTS[i - 1]}" --data-dir "$OUT/raftcache/n$i/data" --initial-cluster "$initial" \
        --worker-threads "$RC_WORKERS"
done
echo "raftcache: 3 nodes at $eps; waiting for every group to have a leader ..."
"$RC" ctl --endpoints "$eps" wait-ready --timeout 90s >/dev/null || { check_alive; die "raftcache did not become ready"; }
measure raftcache --raftcache "$eps"

# etcd: 3 members.
ETCD_CLIENT=($((BASE + 11)) $((BASE + 12)) $((BASE + 13)))
ETCD_PEER=($((BASE + 21)) $((BASE + 22)) $((BASE + 23)))
check_ports "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}"
initial="" eps=""
for i in 1 2 3; do
    initial+="${initial:+,}e$i=http://127.0.0.1:${ETCD_PEER[i - 1]}"
    eps+="${eps:+,}127.0.0.1:${ETCD_CLIENT[i - 1]}"
done
for i in 1 2 3; do
    mkdir -p "$OUT/etcd/e$i"
    spawn "$OUT/etcd/e$i/etcd.log" etcd --name "e$i" --data-dir "$OUT/etcd/e$i/data" \
        --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i - 1]}" \
        --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i - 1]}" \
        --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i - 1]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i - 1]}" \
        --initial-cluster "$initial" --initial-cluster-token raftcache-bench --initial-cluster-state new
done
echo "etcd $(etcd --version | head -n 1 | awk '{print $3}'): 3 members at $eps"
measure etcd --etcd "$eps"

# Redis: one server, no persistence.
REDIS_PORT=$((BASE + 31))
check_ports "$REDIS_PORT"
mkdir -p "$OUT/redis/data"
spawn "$OUT/redis/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --protected-mode no --daemonize no --dir "$OUT/redis/data"
echo "redis $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/'): 127.0.0.1:$REDIS_PORT"
measure redis --redis "127.0.0.1:$REDIS_PORT"

# ---- report ---------------------------------------------------------------------------------
# summary.md includes this (raftcache-bench report reads machine.txt).
{
    echo "- Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)."
    echo "- Versions: raftcache $RC_VERSION, etcd $(etcd --version | head -n 1 | awk '{print $3}'), redis $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')."
    echo "- Disk: one 2 KiB synced write (\`dd oflag=dsync\`, 500 in a row) took $SYNC_BEFORE µs before the runs and $(sync_probe) µs after."
    echo "- Date: $(date -u +%F). Command: scripts/bench.sh ${QUICK[*]} ${SUITE_ARGS[*]}"
} >"$OUT/machine.txt"
"$BENCH" report "$OUT"

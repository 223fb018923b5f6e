#!/usr/bin/env bash
# A local raftcache cluster in one command.
#
#   scripts/cluster.sh up [N]        build (release) if needed, start N nodes (default 3) on
#                                    127.0.0.1:7001.., wait until every group has a leader
#   scripts/cluster.sh down [--keep-data]
#                                    stop every node (SIGTERM) and remove .cluster/
#   scripts/cluster.sh status        processes, then every group's leader and replicas
#   scripts/cluster.sh kill ID       SIGKILL node ID
#   scripts/cluster.sh stop ID       SIGTERM node ID and wait for it to exit
#   scripts/cluster.sh restart ID    stop node ID if it runs, start it again (same port and data)
#   scripts/cluster.sh pause ID      SIGSTOP node ID (it stays up but stops answering)
#   scripts/cluster.sh resume ID     SIGCONT node ID
#   scripts/cluster.sh logs ID       the last lines of node ID's log
#   scripts/cluster.sh ctl ARGS...   raftcache ctl against this cluster's endpoints
#
# Data, logs and pids live under .cluster/ (git-ignored): .cluster/nID/{data,node.log,pid}.
# Environment: RAFTCACHE_CLUSTER_DIR (instead of .cluster/, for a second cluster beside the
# first), RAFTCACHE_BASE_PORT (default 7001), RAFTCACHE_SERVE_ARGS (more `serve` flags for
# `up`, e.g. "--groups 8 --durability async"), RAFTCACHE_READY_TIMEOUT (seconds, default 60),
# RAFTCACHE_BIN (run this binary instead of building target/release/raftcache), RUST_LOG
# (default info). The nodes share this machine's cores: each runs nproc / N worker threads (at
# least one) unless RAFTCACHE_SERVE_ARGS sets --worker-threads; RAFTCACHE_WORKER_THREADS=default
# passes no such flag (builds older than the flag, or the runtime's own choice).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${RAFTCACHE_CLUSTER_DIR:-$ROOT/.cluster}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${RAFTCACHE_BIN:-$TARGET_DIR/release/raftcache}"
BASE_PORT="${RAFTCACHE_BASE_PORT:-7001}"
READY_TIMEOUT="${RAFTCACHE_READY_TIMEOUT:-60}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
    exit 2
}

addr_of() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }

node_count() {
    [[ -f "$DIR/nodes" ]] || die "no cluster here; run: scripts/cluster.sh up"
    cat "$DIR/nodes"
}

check_id() {
    local n
    n="$(node_count)"
    [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= n )) || die "node id must be 1..$n, got '${1:-}'"
}

endpoints() {
    local n i out=""
    n="$(node_count)"
    for ((i = 1; i <= n; i++)); do out+="${out:+,}$(addr_of "$i")"; done
    echo "$out"
}

pid_of() { [[ -f "$DIR/n$1/pid" ]] && cat "$DIR/n$1/pid" || true; }

alive() { local p; p="$(pid_of "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

# R (running/sleeping), T (stopped), or nothing when the process is gone.
proc_state() {
    local p; p="$(pid_of "$1")"
    [[ -n "$p" && -r "/proc/$p/stat" ]] || return 0
    # The state is the field after the parenthesised command name.
    sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$p/stat"
}

build_if_needed() {
    local reason=""
    if [[ -n "${RAFTCACHE_BIN:-}" ]]; then
        [[ -x "$BIN" ]] || die "RAFTCACHE_BIN=$BIN is not an executable"
        return 0
    fi
    if [[ ! -x "$BIN" ]]; then
        reason="no release binary yet"
    elif [[ -n "$(find "$ROOT/crates" "$ROOT/proto" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$BIN" \
        \( -name '*.rs' -o -name '*.proto' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print -quit 2>/dev/null)" ]]; then
        reason="sources changed since the last build"
    fi
    if [[ -n "$reason" ]]; then
        echo "building raftcache (release; $reason) ..."
        (cd "$ROOT" && cargo build --release -p raftcache-server --bin raftcache)
    fi
}

# Nodes on one machine share its cores: each gets nproc / N worker threads (at least one),
# unless RAFTCACHE_SERVE_ARGS sets --worker-threads (see README, `raftcache serve` flags).
worker_flag() {
    local n="$1" args
    args="$(cat "$DIR/serve_args" 2>/dev/null || true)"
    [[ "$args" == *--worker-threads* || "${RAFTCACHE_WORKER_THREADS:-}" == default ]] && return 0
    local w=$(($(nproc) / n))
    echo "--worker-threads $((w < 1 ? 1 : w))"
}

start_node() {
    local id="$1" n initial="" i
    n="$(node_count)"
    for ((i = 1; i <= n; i++)); do initial+="${initial:+,}$i=$(addr_of "$i")"; done
    mkdir -p "$DIR/n$id"
    {
        echo "===== cluster.sh: starting node $id at $(date -u +%FT%TZ)"
    } >>"$DIR/n$id/node.log"
    # shellcheck disable=SC2086  # RAFTCACHE_SERVE_ARGS is a list of flags on purpose
    RUST_LOG="${RUST_LOG:-info}" nohup "$BIN" serve \
        --id "$id" --listen "$(addr_of "$id")" --data-dir "$DIR/n$id/data" \
        --initial-cluster "$initial" $(worker_flag "$n") $(cat "$DIR/serve_args" 2>/dev/null || true) \
        >>"$DIR/n$id/node.log" 2>&1 </dev/null &
    echo $! >"$DIR/n$id/pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits for `ctl wait-ready`, redrawing one progress line; fails early if a node dies.
wait_ready() {
    local n start now elapsed spin='|/-\' k=0 i
    n="$(node_count)"
    start="$(date +%s)"
    local said="starting"
    while true; do
        # One short attempt at a time, so a node that dies is noticed at once; keep the last
        # thing ctl said ("5/17 groups have a leader") for the progress line.
        if said="$("$BIN" ctl --endpoints "$(endpoints)" --timeout 2s wait-ready --timeout 1s 2>&1 >/dev/null)"; then
            now="$(date +%s)"
            printf '\r\033[Kready: every group has a leader (%ss)\n' "$((now - start))"
            return 0
        fi
        said="$(printf '%s' "$said" | tr '\r' '\n' | sed -e 's/^waiting: //' -e 's/^not ready after [^:]*: //' -e '/^ *$/d' | tail -n 1)"
        for ((i = 1; i <= n; i++)); do
            if ! alive "$i"; then
                printf '\n'
                echo "node $i exited; the end of its log ($DIR/n$i/node.log):" >&2
                tail -n 20 "$DIR/n$i/node.log" >&2
                return 1
            fi
        done
        now="$(date +%s)"
        elapsed=$((now - start))
        if ((elapsed >= READY_TIMEOUT)); then
            printf '\n'
            echo "not every group has a leader after ${READY_TIMEOUT}s; status so far:" >&2
            "$BIN" ctl --endpoints "$(endpoints)" status >&2 || true
            return 1
        fi
        printf '\r\033[Kwaiting for leaders %s %ss  %s' "${spin:k++%4:1}" "$elapsed" "$said"
        sleep 0.5
    done
}

cmd_up() {
    local n="${1:-3}" i port
    [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1)) || die "up takes a node count >= 1, got '$n'"
    if [[ -f "$DIR/nodes" ]]; then
        for ((i = 1; i <= $(cat "$DIR/nodes"); i++)); do
            alive "$i" && die "a cluster is already running here (node $i, pid $(pid_of "$i")); run: scripts/cluster.sh down"
        done
        [[ "$(cat "$DIR/nodes")" == "$n" ]] ||
            die "$DIR holds data of a $(cat "$DIR/nodes")-node cluster; run: scripts/cluster.sh down (removes it)"
        echo "restarting the $n-node cluster from the data kept in $DIR"
    fi
    for ((i = 1; i <= n; i++)); do
        port=$((BASE_PORT + i - 1))
        port_in_use "$port" && die "port $port is in use; stop what holds it or set RAFTCACHE_BASE_PORT"
    done
    build_if_needed
    mkdir -p "$DIR"
    echo "$n" >"$DIR/nodes"
    [[ -n "${RAFTCACHE_SERVE_ARGS:-}" ]] && echo "$RAFTCACHE_SERVE_ARGS" >"$DIR/serve_args"
    for ((i = 1; i <= n; i++)); do start_node "$i"; done
    echo "started $n nodes; logs in $DIR/n*/node.log"
    wait_ready
    echo
    echo "endpoints: $(endpoints)"
    echo
    echo "try:"
    echo "  $BIN ctl --endpoints $(endpoints) set demo hello world"
    echo "  $BIN ctl --endpoints $(endpoints) get demo hello"
    echo "  scripts/cluster.sh status"
}

stop_pid() {
    local id="$1" p i
    p="$(pid_of "$id")"
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || { rm -f "$DIR/n$id/pid"; return 0; }
    kill -CONT "$p" 2>/dev/null || true # a paused node cannot act on SIGTERM
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$p" 2>/dev/null || { rm -f "$DIR/n$id/pid"; return 0; }
        sleep 0.1
    done
    echo "node $id (pid $p) did not exit within 10s of SIGTERM; killing it" >&2
    kill -KILL "$p" 2>/dev/null || true
    rm -f "$DIR/n$id/pid"
}

cmd_down() {
    local keep="${1:-}" n i
    [[ -z "$keep" || "$keep" == "--keep-data" ]] || die "down takes only --keep-data"
    [[ -f "$DIR/nodes" ]] || { echo "no cluster here"; return 0; }
    n="$(cat "$DIR/nodes")"
    for ((i = 1; i <= n; i++)); do stop_pid "$i"; done
    if [[ "$keep" == "--keep-data" ]]; then
        echo "stopped $n nodes; data kept in $DIR (scripts/cluster.sh up $n restarts from it)"
    else
        rm -rf "$DIR"
        echo "stopped $n nodes and removed $DIR"
    fi
}

cmd_status() {
    local n i state
    n="$(node_count)"
    for ((i = 1; i <= n; i++)); do
        case "$(proc_state "$i")" in
            T | t) state="paused (pid $(pid_of "$i"))" ;;
            "" | Z | X) state="down" ;;
            *) state="running (pid $(pid_of "$i"))" ;;
        esac
        printf 'node %s  %-21s %s\n' "$i" "$(addr_of "$i")" "$state"
    done
    echo
    "$BIN" ctl --endpoints "$(endpoints)" --timeout 3s status || true
}

cmd_signal() {
    local what="$1" id="$2" p
    check_id "$id"
    alive "$id" || die "node $id is not running"
    p="$(pid_of "$id")"
    case "$what" in
        kill)
            kill -KILL "$p"
            rm -f "$DIR/n$id/pid"
            echo "node $id killed (SIGKILL)"
            ;;
        stop)
            stop_pid "$id"
            echo "node $id stopped (SIGTERM)"
            ;;
        pause)
            kill -STOP "$p"
            echo "node $id paused (SIGSTOP); resume with: scripts/cluster.sh resume $id"
            ;;
        resume)
            kill -CONT "$p"
            echo "node $id resumed (SIGCONT)"
            ;;
    esac
}

cmd_restart() {
    local id="$1" i
    check_id "$id"
    alive "$id" && stop_pid "$id"
    build_if_needed
    start_node "$id"
    for ((i = 0; i < 100; i++)); do
        if "$BIN" ctl --endpoints "$(addr_of "$id")" --timeout 1s status >/dev/null 2>&1; then
            echo "node $id restarted (pid $(pid_of "$id")) at $(addr_of "$id")"
            return 0
        fi
        alive "$id" || break
        sleep 0.2
    done
    echo "node $id did not come up; the end of its log:" >&2
    tail -n 20 "$DIR/n$id/node.log" >&2
    exit 1
}

main() {
    local cmd="${1:-}"
    [[ -n "$cmd" ]] || usage
    shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status ;;
        kill | stop | pause | resume) [[ $# -eq 1 ]] || usage; cmd_signal "$cmd" "$1" ;;
        restart) [[ $# -eq 1 ]] || usage; cmd_restart "$1" ;;
        logs) [[ $# -eq 1 ]] || usage; check_id "$1"; tail -n 50 "$DIR/n$1/node.log" ;;
        ctl) build_if_needed; exec "$BIN" ctl --endpoints "$(endpoints)" "$@" ;;
        -h | --help | help) usage ;;
        *) echo "cluster.sh: unknown command '$cmd'" >&2; usage ;;
    esac
}

main "$@"

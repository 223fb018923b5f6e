#!/usr/bin/env bash
# Long fault-injection runs of raftcache (see jepsen/README.md).
#
#   scripts/jepsen.sh --time SECS --nemesis kill,pause,partition,delay,clock --seed N [--bug NAME]
#
# Any other `raftcache-jepsen run` flag may follow (--nodes, --groups, --workload, --clients,
# --op-timeout-ms, --max-skew-ms, --results DIR, --quiet, --serve-arg=FLAG); `--help` lists them.
# Exit status: 0 every checker passed, 1 anomaly found, 2 the harness failed.
# The last line on stdout is the results directory (jepsen/results/<time>-<seed>/).
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite's own node binary (raftcache-jepsen-node) always has the fault-injection feature.
# Release by default: nodes built for speed interleave like production ones. JEPSEN_PROFILE=debug
# reuses the debug build (faster to build, slower to run).
profile="${JEPSEN_PROFILE:-release}"
if [ "$profile" = release ]; then
    cargo build --quiet --release -p raftcache-jepsen --bins >&2
else
    cargo build --quiet -p raftcache-jepsen --bins >&2
fi
exec "target/$profile/raftcache-jepsen" run "$@"

#!/usr/bin/env bash
# Full benchmark run on this machine, niced, one bench after another (they would skew each
# other if run together), then the README table regenerated from the JSON.
#
#   benchmarks/run_all.sh [extra args for every bench, e.g. --threads 2]
#
# Results and plots land in benchmarks/results/. Quick CI-sized runs: add --quick (they go to
# benchmarks/results/quick/ and leave the committed results alone).
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in latency streams power; do
    echo "== bench $bench" >&2
    nice -n 10 bridge-edge bench "$bench" "$@"
done
python scripts/bench_table.py

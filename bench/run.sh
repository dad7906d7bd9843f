#!/usr/bin/env bash
# Flotilla's benchmarks: builds the release binaries, then measures job throughput, the raw
# Mosquitto baseline, connection capacity and REST latency on this machine, and writes
# BENCHMARKS.md, bench/scaling.png and bench/results/. Not part of scripts/test.sh.
#
#   bench/run.sh            N = 1,000, 5,000, 10,000 and 19,000 (about 15 minutes)
#   bench/run.sh --quick    N = 1,000 and 5,000 only
#   bench/run.sh --sizes 2000,8000 --runs 1 --no-rest --profile    (see bench/bench.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in mosquitto openssl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --locked -p flotilla -p flotilla-bench
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install -q matplotlib
# The whole run is bounded; every process it starts gets SIGTERM when it ends.
exec timeout -k 30 3600 .venv/bin/python bench/bench.py --command "bench/run.sh $*" "$@"

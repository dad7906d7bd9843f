#!/usr/bin/env bash
# Flotilla's cluster benchmark (bench/cluster.py): jobs run by one SQLite server and by 1, 2 and 3
# replicas on one PostgreSQL database, side by side; --big adds 100,000 devices on 6 replicas.
# Needs PostgreSQL (BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432). Not part of
# scripts/test.sh.
#
#   bench/run-cluster.sh                    5,000 devices, 3 runs of each job per configuration
#   bench/run-cluster.sh --devices 10000 --big
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p flotilla -p flotilla-bench
exec timeout -k 30 5400 python3 bench/cluster.py --command "bench/run-cluster.sh $*" "$@"

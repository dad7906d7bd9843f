#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts the services the tests need, then runs
# every crate's tests. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The filter language's SQL is checked against a real PostgreSQL (127.0.0.1:5432, trust auth).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# The dashboard's browser tests drive Debian's Chromium with playwright-core from npm.
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)

# `promtool check metrics` checks GET /metrics (crates/flotilla/tests/metrics.rs): taken from
# Debian's `prometheus` package without installing it (no root, no Prometheus server started).
if ! command -v promtool >/dev/null; then
  tools="$PWD/target/tools"
  if [ ! -x "$tools/usr/bin/promtool" ]; then
    mkdir -p "$tools"
    (cd "$tools" && { apt-get download -qq prometheus || { apt-get update -qq && apt-get download -qq prometheus; }; } \
      && dpkg -x prometheus_*.deb . && rm prometheus_*.deb)
  fi
  export PATH="$tools/usr/bin:$PATH"
fi

cargo test --workspace --locked

# The end-to-end tests again, each server on a fresh PostgreSQL database instead of SQLite.
FLOTILLA_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432 cargo test --locked -p flotilla --tests

# The device end-to-end tests: the real Azure IoT Python device SDK (azure-iot-device, from
# PyPI) against the built binary, each test on its own server and loopback address.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r tests/sdk/requirements.txt
cargo build --locked -p flotilla
# pytest exits 5 when it collects no test; `set -e` makes that, like any failure, fail the run.
.venv/bin/python -m pytest -q -p no:cacheprovider tests/sdk

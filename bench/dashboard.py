#!/usr/bin/env python3
"""The dashboard's pages on a 100,000-device job: how long each takes to serve.

Starts the release binary on a fresh data dir, writes one stopped job with N devices straight
into its SQLite database (90% completed, 5% failed under two reasons, the last 5% pending, in
batches of 1,000: the engine leaves a stopped job alone, so the numbers are the dashboard's read
path alone), signs in, and requests each page --runs times, one after another. Prints a Markdown
table (median and worst) and writes it to bench/dashboard.md. Stdlib only.

    cargo build --release -p flotilla && python3 bench/dashboard.py [--devices 100000] [--runs 20]
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "flotilla")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def start(data_dir):
    server = subprocess.Popen(
        [BINARY, "serve", "--data-dir", data_dir, "--http-addr", "127.0.0.1:0",
         "--mqtt-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "FLOTILLA_LOG": "warn"})
    addr_file = os.path.join(data_dir, "http.addr")
    for _ in range(300):
        if os.path.exists(addr_file) and open(addr_file).read().strip():
            return server, "http://" + open(addr_file).read().strip()
        time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start")


def big_job(db, devices):
    """One stopped job of `devices` devices, written as the engine would have left it."""
    conn = sqlite3.connect(db, timeout=30)
    pending_from = devices * 95 // 100
    definition = ('{"displayName":"Big","group":"all","batch":{"type":"number","value":1000},'
                  '"cancellationThreshold":{"type":"percentage","value":20,"batch":true},'
                  '"data":[{"type":"command","target":"dtmi:x;1","path":"reboot"}]}')
    def row(i):
        if i >= pending_from:
            return ("big", f"dev-{i:06d}", i, i // 1000, "pending", None, None)
        if i % 20 == 7:
            return ("big", f"dev-{i:06d}", i, i // 1000, "failed", "the device was offline", "offline")
        if i % 20 == 13:
            return ("big", f"dev-{i:06d}", i, i // 1000, "failed",
                    "the device answered 'reboot' with status 500", "rejected")
        return ("big", f"dev-{i:06d}", i, i // 1000, "completed", None, None)
    rows = [row(i) for i in range(devices)]
    failed = sum(1 for r in rows if r[4] == "failed")
    completed = sum(1 for r in rows if r[4] == "completed")
    with conn:
        conn.execute(
            "INSERT INTO jobs (id, sort_key, definition, status, start_ms, total, completed, failed,"
            " batch_size, created_ms) VALUES ('big', '0000000000001-big', ?, 'stopped', ?, ?, ?, ?,"
            " 1000, ?)", (definition, int(time.time() * 1000), devices, completed, failed,
                          int(time.time() * 1000)))
        conn.executemany(
            "INSERT INTO job_devices (job_id, device_id, position, batch, status, reason,"
            " reason_code) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def sign_in(base, token):
    opener = urllib.request.build_opener(NoRedirect)
    data = urllib.parse.urlencode({"token": token}).encode()
    try:
        opener.open(base + "/sign-in", data)
    except urllib.error.HTTPError as e:  # the 303 that carries the cookie
        return e.headers["Set-Cookie"].split(";")[0]
    sys.exit("signing in did not redirect")


def timed(base, cookie, path):
    request = urllib.request.Request(base + path, headers={"Cookie": cookie})
    start = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        body = response.read()
        assert response.status == 200, (path, response.status)
    return time.perf_counter() - start, len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: cargo build --release -p flotilla")
    data_dir = tempfile.mkdtemp(prefix="flotilla-dashboard-bench-")
    server, base = start(data_dir)
    try:
        big_job(os.path.join(data_dir, "flotilla.db"), args.devices)
        cookie = sign_in(base, open(os.path.join(data_dir, "admin-token")).read().strip())
        pages = [
            ("job page (first devices, batches, reasons)", "/jobs/big"),
            ("failed devices, first page", "/jobs/big?status=failed"),
            ("failed for one reason, first page", "/jobs/big?status=failed&reason=offline"),
            ("completed devices, a page deep in the job", "/jobs/big?status=completed&after=80000"),
            ("pending devices (all at the end)", "/jobs/big?status=pending"),
            ("id prefix", "/jobs/big?prefix=dev-0999"),
            ("jobs list", "/jobs"),
            ("the whole CSV", "/jobs/big/export.csv"),
        ]
        lines = [
            f"# Dashboard pages on a {args.devices:,}-device job",
            "",
            f"`python3 bench/dashboard.py --devices {args.devices} --runs {args.runs}` (release build,"
            " SQLite, one request at a time over loopback; the job is written straight into the"
            " database, see the script). Times are the whole request: the reads, the template and"
            " the transfer.",
            "",
            "| page | median | worst | bytes |",
            "|---|---:|---:|---:|",
        ]
        for name, path in pages:
            runs = args.runs if "export" not in path else max(3, args.runs // 5)
            timed(base, cookie, path)  # warm the page cache
            samples = [timed(base, cookie, path) for _ in range(runs)]
            times = [t for t, _ in samples]
            lines.append(f"| {name} | {statistics.median(times) * 1000:.0f} ms"
                         f" | {max(times) * 1000:.0f} ms | {samples[0][1]:,} |")
        lines.append("")
        lines.append(f"Load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}"
                     f" ({os.cpu_count()} cores).")
        text = "\n".join(lines) + "\n"
        print(text)
        with open(os.path.join(ROOT, "bench", "dashboard.md"), "w") as out:
            out.write(text)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The job device export's memory: the server's resident memory while it streams every device of
a 10,000- and a 100,000-device job as CSV and as NDJSON (GET /api/jobs/{id}/devices with
`Accept: text/csv` / `application/x-ndjson`).

Starts the binary on a fresh data dir, writes two stopped jobs straight into its SQLite database
(90% completed, 5% failed under two reasons, 5% pending; the engine leaves a stopped job alone),
then for each job and format downloads the whole export once to warm up and `--runs` times
measured, sampling the server's VmRSS (/proc/PID/status) every 5 ms. Prints a Markdown table:
the resident memory before, the peak while streaming, and the body's size. Flat memory means the
peak does not grow with the job (a buffered body would hold it all: tens of megabytes).
Stdlib only.

    cargo build -p flotilla && python3 bench/export_memory.py [--binary target/debug/flotilla]
"""

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, data_dir):
    server = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--http-addr", "127.0.0.1:0",
         "--mqtt-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "FLOTILLA_LOG": "warn"})
    addr_file = os.path.join(data_dir, "http.addr")
    for _ in range(600):
        if os.path.exists(addr_file) and open(addr_file).read().strip():
            return server, "http://" + open(addr_file).read().strip()
        time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start")


def write_job(db, job, devices):
    """One stopped job of `devices` devices, as the engine would have left it."""
    now = int(time.time() * 1000)
    pending_from = devices * 95 // 100
    definition = ('{"displayName":"Big","group":"all","data":[{"type":"command",'
                  '"target":"dtmi:x;1","path":"reboot"}]}')

    def row(i):
        device = f"{job}-{i:06d}"
        if i >= pending_from:
            return (job, device, i, 0, "pending", None, None, None, 0, None, None)
        if i % 20 == 7:
            return (job, device, i, 0, "failed", "the device was offline", "offline", None, 1,
                    now, now + 5)
        if i % 20 == 13:
            return (job, device, i, 0, "failed", "the device answered 'reboot' with status 500",
                    "rejected", '{"responseCode":500,"response":{"error":"no"}}', 1, now, now + 5)
        return (job, device, i, 0, "completed", None, None,
                '{"responseCode":200,"response":{"ok":true}}', 1, now, now + 5)

    rows = [row(i) for i in range(devices)]
    failed = sum(1 for r in rows if r[4] == "failed")
    completed = sum(1 for r in rows if r[4] == "completed")
    conn = sqlite3.connect(db, timeout=30)
    with conn:
        conn.execute(
            "INSERT INTO jobs (id, sort_key, definition, status, start_ms, total, completed, failed,"
            " batch_size, created_ms) VALUES (?, ?, ?, 'stopped', ?, ?, ?, ?, ?, ?)",
            (job, f"0000000000001-{job}", definition, now, devices, completed, failed, devices,
             now))
        conn.executemany(
            "INSERT INTO job_devices (job_id, device_id, position, batch, status, reason,"
            " reason_code, detail, attempts, started_ms, finished_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def export(base, token, pid, job, accept):
    """Downloads the export, sampling the server's RSS; (peak KiB, bytes, lines, seconds)."""
    peak = [rss_kib(pid)]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    request = urllib.request.Request(
        f"{base}/api/jobs/{job}/devices?api-version=2022-07-31",
        headers={"Authorization": token, "Accept": accept})
    size = lines = 0
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
        while True:
            chunk = response.read(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            lines += chunk.count(b"\n")
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    return peak[0], size, lines, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "flotilla"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: cargo build -p flotilla")
    data_dir = tempfile.mkdtemp(prefix="flotilla-export-bench-")
    server, base = start(args.binary, data_dir)
    try:
        db = os.path.join(data_dir, "flotilla.db")
        jobs = [("small", 10_000), ("big", 100_000)]
        for job, devices in jobs:
            write_job(db, job, devices)
        token = open(os.path.join(data_dir, "admin-token")).read().strip()
        lines = [
            "| job | format | RSS before | peak RSS while streaming | body | rows | time |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for job, devices in jobs:
            for accept in ["text/csv", "application/x-ndjson"]:
                export(base, token, server.pid, job, accept)  # warm up
                before = rss_kib(server.pid)
                runs = [export(base, token, server.pid, job, accept) for _ in range(args.runs)]
                peak = max(r[0] for r in runs)
                size, rows, took = runs[-1][1], runs[-1][2], min(r[3] for r in runs)
                if accept == "text/csv":
                    rows -= 1  # the header line
                assert rows == devices, (job, accept, rows)
                lines.append(f"| {devices:,} devices | {accept} | {before / 1024:.1f} MiB"
                             f" | {peak / 1024:.1f} MiB | {size / 1e6:.1f} MB | {rows:,}"
                             f" | {took:.2f} s |")
        text = "\n".join(lines) + "\n"
        print(f"binary: {args.binary}; load average at the end:"
              f" {' '.join(open('/proc/loadavg').read().split()[:3])} ({os.cpu_count()} cores)")
        print(text)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`flotilla import` at scale: a Flotilla source with N devices (each with its keys, derived from
the default enrollment group, and a cloud property), imported into a fresh data dir; the wall
time and the peak memory (`/usr/bin/time -v`, maximum resident set size) of `flotilla import`.
Writes its section of BENCHMARKS.md (between the `import-bench` markers). Not part of the test
suite.

    .venv/bin/python bench/import.py --devices 100000            # the issue's size
    .venv/bin/python bench/import.py --devices 10000 --bin target/debug/flotilla

The source fleet is made through the REST API, many requests in flight (a template, N devices,
N cloud-property writes). The import runs at `--rate` requests a second (default: unbounded for
a loopback source; IoT Central's own limit of 20 a second makes a real 100,000-device import
take about 3 hours: 2 requests per device).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_ID = "dtmi:contoso:mythermostattemplate;1"
API_VERSION = "2022-07-31"
START, END = "<!-- import-bench:start -->", "<!-- import-bench:end -->"


def serve(binary: Path, data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    log = open(data_dir / "server.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env["FLOTILLA_LOG"] = "warn"
    proc = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0",
         "--mqtt-addr", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while not (data_dir / "http.addr").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((data_dir / "server.log").read_text()[-2000:])
        time.sleep(0.05)
    base = f"http://{(data_dir / 'http.addr').read_text().strip()}"
    return proc, base, (data_dir / "admin-token").read_text().strip()


def put(base: str, token: str, path: str, body: dict) -> None:
    url = f"{base}/api{path}?api-version={API_VERSION}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                     headers={"Authorization": token,
                                              "Content-Type": "application/json"})
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
                return
        except OSError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def make_fleet(base: str, token: str, devices: int, workers: int) -> float:
    template = json.loads((REPO / "fixtures" / "thermostat.template.json").read_text())
    put(base, token, f"/deviceTemplates/{urllib.parse.quote(TEMPLATE_ID, safe='')}", template)

    def one(i: int) -> None:
        device_id = f"bench-{i:06d}"
        put(base, token, f"/devices/{device_id}",
            {"displayName": f"Thermostat {i}", "template": TEMPLATE_ID})
        put(base, token, f"/devices/{device_id}/cloudProperties",
            {"customerName": f"Customer {i % 100}"})

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(one, range(devices)), 1):
            if done % 10000 == 0:
                print(f"  source: {done} devices", file=sys.stderr)
    return time.monotonic() - started


def measure_import(binary: Path, source: str, token: str, target: Path, rate: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env["FLOTILLA_IMPORT_TOKEN"] = token
    env["FLOTILLA_LOG"] = "warn"
    command = [str(binary), "import", "--from", source, "--data-dir", str(target),
               "--rate", str(rate)]
    started = time.monotonic()
    run = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True,
                         text=True)
    wall = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(f"import failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return {"command": command, "wall_s": wall, "peak_rss_kb": peak_kb,
            "report": run.stdout.strip()}


def write_section(text: str) -> None:
    path = REPO / "BENCHMARKS.md"
    current = path.read_text()
    block = f"{START}\n{text}\n{END}"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1]
        current = before + block + after
    elif "## The exact commands" in current:
        current = current.replace("## The exact commands", block + "\n\n## The exact commands", 1)
    else:
        current += "\n" + block + "\n"
    path.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--bin", type=Path, default=REPO / "target" / "release" / "flotilla")
    parser.add_argument("--rate", type=int, default=1_000_000,
                        help="the import's --rate (requests a second)")
    parser.add_argument("--workers", type=int, default=32,
                        help="requests in flight while the source fleet is made")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    binary = args.bin.resolve()
    work = Path(tempfile.mkdtemp(prefix="flotilla-import-bench-"))
    source_dir, target_dir = work / "source", work / "target"
    source_dir.mkdir()
    target_dir.mkdir()
    proc = None
    try:
        proc, base, token = serve(binary, source_dir)
        made = make_fleet(base, token, args.devices, args.workers)
        print(f"source: {args.devices} devices made in {made:.1f} s", file=sys.stderr)
        result = measure_import(binary, base, token, target_dir, args.rate)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    per_second = args.devices / result["wall_s"]
    build = "release" if "release" in str(binary) else "debug (unoptimised)"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    shown = " ".join(["bench/import.py", "--devices", str(args.devices), "--bin",
                      os.path.relpath(binary, REPO)])
    text = "\n".join([
        "## 10. Importing an application (bench/import.py)",
        "",
        f"`flotilla import` of a Flotilla source with **{args.devices:,} devices** (each read "
        "with its credentials and cloud properties: 2 requests per device, besides the pages) "
        f"into a fresh SQLite data dir, on loopback, the {build} binary, `--rate {args.rate}` "
        "(no throttling: the source is local). The source server and the import share the 2 cores.",
        "",
        "| devices | wall time | devices/s | peak memory of `flotilla import` (max RSS) |",
        "|---:|---:|---:|---:|",
        f"| {args.devices:,} | {result['wall_s']:.1f} s | {per_second:,.0f} | "
        f"{result['peak_rss_kb'] / 1024:.1f} MiB |",
        "",
        "The import's report:",
        "",
        "```",
        result["report"],
        "```",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node() or 'this machine'}, "
        f"commit {commit}, with:",
        "",
        "```sh",
        f".venv/bin/python {shown}",
        "```",
        "",
        "Against IoT Central itself the import keeps to 20 requests a second (`--rate`, its "
        f"documented limit): {args.devices:,} devices are then about "
        f"{2 * args.devices / 20 / 60:,.0f} minutes of reading, which is why an interrupted "
        "import resumes where it stopped. Memory stays flat: devices are read a page at a time.",
    ])
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Flotilla's rollout benchmark (issue 14): a paced property job over simulated devices, run for
about a minute per case. It reports, per case, the start rate the job kept (from the start
times of its devices in the NDJSON export) against its `rollout.maxPerMinute`, the rate over
each whole minute, and the dry-run plan's `estimatedSeconds` against the job's real wall time.
Not part of the test suite.

    python3 bench/rollout.py                       # 300 devices, 300/min, then a ramp
    python3 bench/rollout.py --flotilla target/debug/flotilla --devices 200

Pacing is a schedule, not a throughput limit, so a debug build measures it as well as a
release one (the server works far below its capacity here).
"""

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench/bench.py: processes, REST, devices)
from bench import log  # noqa: E402


def export_devices(server, job_id):
    """Every device of the job, from the NDJSON export."""
    request = urllib.request.Request(f"{server.base}/api/jobs/{job_id}/devices?{bench.V}")
    request.add_header("Authorization", server.token)
    request.add_header("Accept", "application/x-ndjson")
    with urllib.request.urlopen(request, timeout=120) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def seconds(text):
    return bench.timestamp(text)


def run_case(server, name, rollout, value):
    body = {"displayName": name, "group": "bench", "data": bench.property_data(value),
            "rollout": rollout}
    plan = bench.check(server.api.call("POST", f"/jobs/{name}/plan", body), (200,), "plan")
    t0 = time.time()
    bench.check(server.api.call("PUT", f"/jobs/{name}", body), (200,), "PUT job")
    while True:
        _, job = server.api.call("GET", f"/jobs/{name}")
        if job and job.get("status") not in ("pending", "running"):
            break
        time.sleep(0.2)
    wall = seconds(job["end"]) - t0
    devices = export_devices(server, name)
    starts = sorted(seconds(d["start"]) for d in devices if d.get("start"))
    span = starts[-1] - starts[0]
    # The rate between the first start and the last (n - 1 intervals), and in each whole
    # minute from the first start.
    overall = (len(starts) - 1) / span * 60 if span > 0 else 0.0
    minutes = []
    edge = starts[0]
    while edge + 60 <= starts[-1]:
        minutes.append(sum(1 for s in starts if edge <= s < edge + 60))
        edge += 60
    result = {
        "case": name,
        "rollout": rollout,
        "devices": len(devices),
        "completed": job["progress"]["completed"],
        "wallSecs": wall,
        "startSpanSecs": span,
        "startsPerMinute": overall,
        "wholeMinutes": minutes,
        "estimatedSeconds": plan["estimatedSeconds"],
        "estimateError": (plan["estimatedSeconds"] - wall) / wall if wall > 0 else 0.0,
    }
    log(f"  {name}: {result['completed']}/{result['devices']} in {wall:.1f} s; starts "
        f"{overall:.0f}/min (whole minutes: {minutes}); plan estimated "
        f"{plan['estimatedSeconds']:.1f} s ({result['estimateError']:+.0%})")
    return result


def markdown(report):
    lines = [
        "## Rollout pacing (bench/rollout.py)",
        "",
        f"Command: `{report['command']}` ({report['date']}, commit {report['commit']}, "
        f"binary `{report['binary']}`). {report['devices']} simulated devices on SQLite; each "
        "case is one property job with the `rollout` shown; start times from the job's NDJSON "
        "export.",
        "",
        "| case | rollout | devices | wall s | starts/min (first to last start) | starts in each whole minute | plan estimate s | estimate vs wall |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['case']} | `{json.dumps(r['rollout'])}` | {r['devices']} | {r['wallSecs']:.1f} | "
            f"{r['startsPerMinute']:.0f} | {', '.join(map(str, r['wholeMinutes'])) or '-'} | "
            f"{r['estimatedSeconds']:.1f} | {r['estimateError']:+.0%} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--rate", type=int, default=300, help="maxPerMinute of the paced case")
    parser.add_argument("--flotilla", help="another build of the flotilla binary")
    parser.add_argument("--out", default=os.path.join(bench.REPO, "bench", "results", "rollout.md"))
    parser.add_argument("--command", default="python3 bench/rollout.py")
    args = parser.parse_args()
    if args.flotilla:
        bench.FLOTILLA = os.path.abspath(args.flotilla)
    tmp = tempfile.mkdtemp(prefix="fbr-")
    logdir = os.path.join(tmp, "logs")
    os.makedirs(logdir)
    commit = bench.subprocess.run(["git", "-C", bench.REPO, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
    report = {"command": args.command, "commit": commit, "devices": args.devices,
              "binary": os.path.relpath(bench.FLOTILLA, bench.REPO),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": []}
    sims = []
    server = None
    try:
        token = "bench-admin-" + secrets.token_hex(16)
        server = bench.Server(tmp, logdir, "rollout", None, {"FLOTILLA_ADMIN_TOKEN": token})
        _, files = bench.prepare_devices(server, args.devices, logdir)
        sims = bench.start_sims(server, files, logdir, "rollout")
        bench.wait_fleet(sims, args.devices, r"connected (\d+)/", "devices connected", 300)
        cases = [
            ("paced", {"maxPerMinute": args.rate}),
            ("ramp", {"maxPerMinute": args.rate * 4,
                      "ramp": {"startPerMinute": args.rate // 2, "factor": 2,
                               "every": {"succeeded": max(1, args.devices // 6)}}}),
        ]
        for k, (name, rollout) in enumerate(cases):
            report["results"].append(run_case(server, f"{name}-{k}", rollout, 60 + k))
    finally:
        for p in sims:
            p.stop()
        if server:
            server.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(markdown(report))
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

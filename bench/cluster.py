#!/usr/bin/env python3
"""Flotilla's cluster benchmark: property and command jobs over one fleet, run by one SQLite
server and by 1, 2 and 3 replicas on one PostgreSQL database, side by side in one run; and,
with --big, a property job over 100,000 devices spread across 6 replicas. Not part of the test
suite. Run it through bench/run-cluster.sh, which builds the release binaries first.

Each configuration gets a fresh database (PostgreSQL: a new database, dropped at the end) and
the same devices: made through replica 1, spread over the replicas in equal shares, each share
connected by its own simulator to its own replica. Jobs are created through replica 1.
Everything runs on loopback addresses; every process started here is stopped here.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench/bench.py: processes, REST, devices, jobs)
from bench import log  # noqa: E402

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
# --keep: the working folder and the databases stay, for a look afterwards.
KEEP = False


def psql(sql):
    subprocess.run(["psql", POSTGRES, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def psql_in(database, sql):
    subprocess.run(["psql", f"{POSTGRES}/{database}", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


class Cluster:
    """`replicas` servers on one fresh PostgreSQL database, or one on SQLite (`replicas` 0)."""

    def __init__(self, tmp, logdir, label, replicas):
        self.database = None
        token = "bench-admin-" + secrets.token_hex(16)
        env = {"FLOTILLA_ADMIN_TOKEN": token}
        url = None
        if replicas > 0:
            self.database = f"flotilla_bench_{label.replace('-', '_').replace('+', '_x')}_{os.getpid()}"
            psql(f"CREATE DATABASE {self.database}")
            url = f"{POSTGRES}/{self.database}"
        self.servers = []
        try:
            for i in range(max(1, replicas)):
                self.servers.append(bench.Server(tmp, logdir, f"{label}-r{i + 1}", url, env))
        except Exception:
            self.stop()
            raise

    @property
    def first(self):
        return self.servers[0]

    def stop(self):
        for server in self.servers:
            server.stop()
        if self.database and not KEEP:
            psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def spread(files, servers, logdir, label):
    """One simulator per credentials file, the files dealt to the replicas in turn."""
    sims = []
    for i, path in enumerate(files):
        server = servers[i % len(servers)]
        sims += bench.start_sims(server, [path], logdir, f"{label}-{i}")
    return sims


def split_files(files, parts):
    """The credentials, re-cut into files of at most PER_PROCESS devices, as many for each of
    `parts` replicas."""
    lines = []
    for path in files:
        with open(path) as f:
            lines += f.readlines()
    # A multiple of `parts`, so every replica gets as many devices.
    count = parts * -(-len(lines) // (parts * bench.PER_PROCESS))
    size = -(-len(lines) // count)
    out = []
    for i in range(count):
        path = f"{files[0]}.part{i}"
        with open(path, "w") as f:
            f.writelines(lines[i * size:(i + 1) * size])
        out.append(path)
    return out


def database_cpu_secs(database):
    """CPU time of the PostgreSQL backends connected to `database` (their process titles name
    it); the servers keep their connections open, so a job's share is the difference."""
    if not database:
        return 0.0
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            total += bench.cpu_secs(int(pid))
    return total


GROUP_COMMIT = ("flotilla_db_group_commit_duration_seconds_sum",
                "flotilla_db_group_commit_duration_seconds_count",
                "flotilla_db_group_commit_writes_sum")


def group_commit_totals(servers):
    """The group-commit writers' totals over `servers` (GET /metrics): seconds in
    transactions, transactions, writes."""
    totals = [0.0, 0.0, 0.0]
    for server in servers:
        request = urllib.request.Request(f"{server.base}/metrics")
        request.add_header("Authorization", f"Bearer {server.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            for line in response.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in GROUP_COMMIT:
                    totals[GROUP_COMMIT.index(name)] += float(value)
    return totals


def timed_job(cluster, sims, job_id, data):
    """`bench.run_job`, with the CPU every replica and the database's backends spent on it, and
    what the group-commit writers did for it."""
    servers0 = sum(bench.cpu_secs(s.pid) for s in cluster.servers)
    db0 = database_cpu_secs(cluster.database)
    commits0 = group_commit_totals(cluster.servers)
    job = bench.run_job(cluster.first, sims, job_id, data, timeout=900)
    job["replicasCpuSecs"] = sum(bench.cpu_secs(s.pid) for s in cluster.servers) - servers0
    job["databaseCpuSecs"] = database_cpu_secs(cluster.database) - db0
    seconds, transactions, writes = (b - a for a, b in zip(commits0, group_commit_totals(cluster.servers)))
    job["transactions"] = int(transactions)
    job["writesPerTransaction"] = writes / transactions if transactions else 0.0
    job["transactionMs"] = 1000 * seconds / transactions if transactions else 0.0
    return job


def cloud_property_data(value):
    return [{"type": "cloudProperty", "target": bench.TEMPLATE, "path": "customerName",
             "value": f"customer {value}"}]


KINDS = {
    "property": lambda k: bench.property_data(70 + k),
    "command": lambda k: bench.command_data(),
    "cloudProperty": cloud_property_data,
}


def measure(tmp, logdir, label, replicas, n, runs, kinds, setup_sql=None):
    log(f"{label}: {n} devices, {replicas or 'SQLite, 1'} replica(s)")
    cluster = Cluster(tmp, logdir, label, replicas)
    sims = []
    try:
        if setup_sql and cluster.database:
            # An experiment's statements (--setup-sql), on the servers' fresh schema before the
            # fleet is made.
            psql_in(cluster.database, setup_sql)
        created, files = bench.prepare_devices(cluster.first, n, logdir)
        connect_secs = 0.0
        if set(kinds) != {"cloudProperty"}:
            files = split_files(files, len(cluster.servers))
            started = time.monotonic()
            sims = spread(files, cluster.servers, logdir, label)
            bench.wait_fleet(sims, n, r"connected (\d+)/", "devices connected", 600)
            connect_secs = time.monotonic() - started
            log(f"  connected in {connect_secs:.1f} s")
        else:
            # A cloud property is the server's alone: no device needs to connect.
            log("  cloud-property jobs only: no device connects")
        result = {"label": label, "replicas": replicas, "devices": n, "connectSecs": connect_secs}
        for kind in kinds:
            data = KINDS[kind]
            jobs = []
            for k in range(runs):
                job = timed_job(cluster, sims, f"{kind}-{label.replace('+', 'x')}-{k}", data(k))
                log(f"  {kind} job {k + 1}: {job['status']} {job['completed']}/{job['devices']} "
                    f"(failed {job['failed']}) in {job['wallSecs']:.2f} s = {job['opsPerSec']:.0f} ops/s; "
                    f"CPU s: servers {job['replicasCpuSecs']:.2f}, database {job['databaseCpuSecs']:.2f}, "
                    f"simulators {job['simCpuSecs']:.2f}; {job['transactions']} transactions of "
                    f"{job['writesPerTransaction']:.0f} writes, {job['transactionMs']:.1f} ms each")
                jobs.append(job)
            result[kind] = sorted(jobs, key=lambda j: j["wallSecs"])[len(jobs) // 2]
            result[kind]["runs"] = [j["wallSecs"] for j in jobs]
        return result
    finally:
        for p in sims:
            p.stop()
        cluster.stop()


def markdown(report):
    lines = [
        "## Several replicas on one PostgreSQL database",
        "",
        f"Command: `{report['command']}` ({report['date']}, commit {report['commit']}). "
        "The same fleet, connected in equal shares to each replica by one simulator per "
        "replica; jobs created through replica 1; median of the runs by wall time.",
        "",
        "| configuration | devices | job | wall s (runs) | ops/s | failed | CPU s: servers | CPU s: database | transactions (writes each, ms each) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        for kind in KINDS:
            if kind not in r:
                continue
            j = r[kind]
            runs = ", ".join(f"{w:.2f}" for w in j["runs"])
            lines.append(f"| {r['label']} | {r['devices']:,} | {kind} | {j['wallSecs']:.2f} ({runs}) | "
                         f"{j['opsPerSec']:,.0f} | {j['failed']} | {j['replicasCpuSecs']:.2f} | "
                         f"{j['databaseCpuSecs']:.2f} | {j['transactions']:,} "
                         f"({j['writesPerTransaction']:.0f}, {j['transactionMs']:.1f}) |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", action="store_true",
                        help="also 100,000 devices across 6 replicas (a property job)")
    parser.add_argument("--kinds", default="property,command,cloudProperty",
                        help="the jobs to run, comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--configs", default="sqlite,pg-1,pg-2,pg-3",
                        help="the configurations, comma-separated: sqlite, pg-N (N replicas), "
                        "pg-N+ (with --setup-sql)")
    parser.add_argument("--setup-sql", help="SQL run on the fresh database of each pg-N+ "
                        "configuration before its fleet is made (an experiment beside pg-N)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder, its logs and the databases")
    parser.add_argument("--flotilla", help="another build of the flotilla binary to measure")
    parser.add_argument("--out", default=os.path.join(bench.REPO, "bench", "results", "cluster.md"))
    parser.add_argument("--command", default="bench/run-cluster.sh")
    args = parser.parse_args()
    global KEEP
    KEEP = args.keep
    if args.flotilla:
        bench.FLOTILLA = os.path.abspath(args.flotilla)
    tmp = tempfile.mkdtemp(prefix="fbc-")
    logdir = os.path.join(tmp, "logs")
    os.makedirs(logdir)
    log(f"working in {tmp}")
    commit = subprocess.run(["git", "-C", bench.REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report = {"command": args.command, "commit": commit,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": []}
    try:
        kinds = args.kinds.split(",")
        # `--configs ""` with --big: the 100,000-device run alone.
        for label in filter(None, args.configs.split(",")):
            # `pg-N+`: N replicas with --setup-sql run on the database first.
            setup = args.setup_sql if label.endswith("+") else None
            replicas = 0 if label == "sqlite" else int(label.removeprefix("pg-").rstrip("+"))
            report["results"].append(
                measure(tmp, logdir, label, replicas, args.devices, args.runs, kinds, setup))
        if args.big:
            report["results"].append(
                measure(tmp, logdir, "pg-6-big", 6, 100_000, 1, ["property"]))
    finally:
        for p in bench.CHILDREN:
            try:
                p.stop(5)
            except Exception:
                pass
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(markdown(report))
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.out}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

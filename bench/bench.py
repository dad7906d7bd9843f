#!/usr/bin/env python3
"""Flotilla's benchmarks: job throughput, the raw-broker baseline, connection capacity and REST
latency, on this machine, written to BENCHMARKS.md. Run it through bench/run.sh, which builds
the release binaries first.

Everything runs on loopback addresses; every process started here is stopped here (and gets
SIGTERM if this script dies), and each has its own time bound.
"""

import argparse
import base64
import ctypes
import datetime
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOTILLA = os.path.join(REPO, "target", "release", "flotilla")
# BENCH_TOOL: another build of the load tools (a debug one, to try a script change quickly).
BENCH = os.environ.get("BENCH_TOOL", os.path.join(REPO, "target", "release", "flotilla-bench"))
TEMPLATE_FILE = os.path.join(REPO, "fixtures", "thermostat.template.json")
TEMPLATE = "dtmi:contoso:mythermostattemplate;1"
V = "api-version=2022-07-31"
PREVIEW = "api-version=2022-10-31-preview"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Per simulator or responder process (the open-files limit is 20,000 per process).
PER_PROCESS = 10_000
# Handshakes per second across a fleet's processes.
CONNECT_RATE = 2000
# Source addresses for device connections (each has its own ephemeral ports).
SOURCE_ADDRS = [f"127.0.0.{i}" for i in range(2, 10)]
# The REST phase runs beside jobs over this many devices.
REST_DEVICES = 10_000
TARGET_OPS = 10_000
TARGET_GET_RATE = 5000
# New jobs per second in the PUT test (each is a job the engine starts and completes).
PUT_RATE = 500
# Rounds of each REST load test; the median round by p99 is reported.
REST_ROUNDS = 3
# Clean runs of each job per size; the median by wall time is reported.
RUNS = 3

START = time.monotonic()
CHILDREN = []  # every process started, for the final cleanup
SHOWN = {}  # the binaries' copies, shown as their originals in the report


def log(message):
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGTERM when this script ends, however it ends.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)


class Proc:
    """A child process whose output goes to a log file; with `watch`, its stdout lines are
    also kept as they come."""

    def __init__(self, name, argv, logdir, env=None, watch=False):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.last_line = ""
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if watch else self.log,
            stderr=self.log,
            env=full_env,
            preexec_fn=_die_with_parent,
            text=True,
        )
        self.pid = self.popen.pid
        CHILDREN.append(self)
        if watch:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.log.write(line)
            self.log.flush()
            self.last_line = line.strip()

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=15):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if hasattr(self, "reader"):
            self.reader.join(5)
        if not self.log.closed:
            self.log.close()


def cpu_secs(pid):
    """User + system CPU time of a process (all its threads, live and ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def mem_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakSampler:
    """Samples the RSS of a process every 50 ms (a check on VmHWM, and the fallback)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = mem_kib(pid)[0]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.peak = max(self.peak, mem_kib(self.pid)[0])
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def settle_rss(pid, secs=3.0):
    """RSS once it stops moving (at most `secs` of waiting)."""
    time.sleep(1.0)
    last = mem_kib(pid)[0]
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = mem_kib(pid)[0]
        if abs(now - last) < 256:
            return now
        last = now
    return last


def machine_busy_secs():
    """CPU seconds the whole machine has spent in user, nice and system time (all cores).
    Interrupts and softirqs (loopback TCP is processed there) and steal are charged to no
    process, so they are left out: they cannot be told apart from our own load."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields[:3]) / CLK_TCK


def wait_for_quiet(what, max_wait=None, threshold=0.15):
    """Waits (at most `max_wait` s, default $BENCH_QUIET_WAIT or 300) until the machine is nearly
    idle before a measurement: other work on these 2 cores would be measured as ours. Returns
    the busy share (of all cores) of the last second looked at."""
    if max_wait is None:
        max_wait = float(os.environ.get("BENCH_QUIET_WAIT", "300"))
    deadline = time.monotonic() + max_wait
    cores = os.cpu_count() or 1
    warned = False
    while True:
        before = machine_busy_secs()
        time.sleep(1.0)
        busy = (machine_busy_secs() - before) / cores
        if busy <= threshold or time.monotonic() > deadline:
            if busy > threshold:
                log(f"  the machine is still {busy:.0%} busy with other work; measuring {what} anyway")
            return busy
        if not warned:
            log(f"  the machine is {busy:.0%} busy with other work; waiting before {what}")
            warned = True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def split_fleet(n):
    """(first, count) per process, at most PER_PROCESS each."""
    parts = []
    first = 0
    while first < n:
        count = min(PER_PROCESS, n - first)
        parts.append((first, count))
        first += count
    return parts


def quote(arg):
    arg = SHOWN.get(arg, arg)
    return arg if re.fullmatch(r"[\w./:,=@%+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------------------------
# REST


class Api:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, version=V, timeout=60):
        sep = "&" if "?" in path else "?"
        url = f"{self.base}/api{path}{sep}{version}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def http_load(logdir, name, url, token, method="GET", body=None, rate=0.0, duration=None,
              requests=None, connections=32, priority=False):
    """Runs `flotilla-bench http` to its end; its JSON result, with the command line."""
    out = os.path.join(logdir, f"{name}.json")
    # With `priority`, the generator runs ahead of everything else on the machine (nice -10,
    # when allowed): its latencies count from when each request was due, so a generator
    # waiting for a core would be measured as server latency.
    prefix = ["nice", "-n", "-10"] if priority and os.geteuid() == 0 else []
    argv = prefix + [BENCH, "http", "--url", url, "--method", method,
                     "--header", f"Authorization: {token}",
                     "--connections", str(connections), "--rate", str(rate), "--out", out]
    if body is not None:
        argv += ["--body", body]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if requests is not None:
        argv += ["--requests", str(requests)]
    proc = Proc(name, argv, logdir)
    try:
        proc.popen.wait((duration or 0) + 600)
    except subprocess.TimeoutExpired:
        pass
    proc.stop()
    with open(out) as f:
        result = json.load(f)
    shown = [a if not a.startswith("Authorization: ") else "Authorization: $TOKEN" for a in argv]
    result["command"] = " ".join(quote(a) for a in shown if a != out).replace(" --out", "")
    return result


# ---------------------------------------------------------------------------------------------
# Mosquitto: the raw-broker baseline


def make_certificates(directory):
    def run(*argv):
        subprocess.run(argv, check=True, cwd=directory, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")


MOSQUITTO_CONF = """# The raw-broker baseline: TLS on loopback, no persistence, no per-client limits.
per_listener_settings false
allow_anonymous true
persistence false
max_inflight_messages 0
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
listener {port} 127.0.0.1
certfile {tmp}/server.pem
keyfile {tmp}/server.key
"""


def start_mosquitto(tmp, logdir, port):
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(MOSQUITTO_CONF.format(port=port, tmp=tmp))
        if os.geteuid() == 0:
            # Run as root, Mosquitto switches to its own user, who cannot read our key.
            f.write("user root\n")
    proc = Proc("mosquitto", ["mosquitto", "-c", conf], logdir)
    wait_port(port, proc)
    return proc


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} is not listening on {port}")


def wait_fleet(procs, n, pattern, what, timeout):
    """Waits until the processes' progress lines add up to n (the pattern's first group)."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        total = 0
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited; see {p.log_path}")
            m = re.search(pattern, p.last_line)
            total += int(m.group(1)) if m else 0
        if total >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"only {total} of {n} {what} after {timeout} s")


def broker_baseline(n, tmp, logdir, rounds):
    port = free_port()
    broker = start_mosquitto(tmp, logdir, port)
    responders = []
    try:
        rss_before = settle_rss(broker.pid, 2)
        parts = split_fleet(n)
        started = time.monotonic()
        for i, (first, count) in enumerate(parts):
            addrs = ",".join(SOURCE_ADDRS[i::len(parts)])
            responders.append(Proc(
                f"responders-{n}-{i}",
                [BENCH, "responders", "--port", str(port), "--ca", f"{tmp}/ca.pem",
                 "--count", str(count), "--first", str(first), "--source-addrs", addrs,
                 "--connect-rate", str(CONNECT_RATE // len(parts)), "--duration", "600"],
                logdir, watch=True))
        wait_fleet(responders, n, r"ready (\d+)", "responders ready", 120)
        connect_secs = time.monotonic() - started
        rss_after = settle_rss(broker.pid)
        cores = os.cpu_count() or 1
        for attempt in range(3):
            quiet = wait_for_quiet(f"the broker round trips at N = {n}")
            cpu = {"broker": cpu_secs(broker.pid),
                   "clients": sum(cpu_secs(p.pid) for p in responders),
                   "all": machine_busy_secs()}
            out = os.path.join(logdir, f"driver-{n}-{attempt + 1}.json")
            argv = [BENCH, "driver", "--port", str(port), "--ca", f"{tmp}/ca.pem",
                    "--count", str(n), "--rounds", str(rounds), "--out", out]
            driver = Proc(f"driver-{n}-{attempt + 1}", argv, logdir)
            driver.popen.wait(600)
            driver.stop()
            with open(out) as f:
                result = json.load(f)
            driver_cpu = result["driverCpuSecs"]
            result["brokerCpuSecs"] = cpu_secs(broker.pid) - cpu["broker"]
            result["clientsCpuSecs"] = sum(cpu_secs(p.pid) for p in responders) - cpu["clients"]
            result["busyBefore"] = quiet
            ours = result["brokerCpuSecs"] + result["clientsCpuSecs"] + driver_cpu
            result["otherCpuSecs"] = max(0.0, machine_busy_secs() - cpu["all"] - ours)
            result["clean"] = result["otherCpuSecs"] <= max(0.15, 0.05 * result["wallSecs"] * cores)
            if result["clean"]:
                break
            log(f"  disturbed by other work ({result['otherCpuSecs']:.2f} s of CPU); measuring again")
        result["rssBeforeKiB"] = rss_before
        result["rssConnectedKiB"] = rss_after
        result["kibPerConnection"] = (rss_after - rss_before) / n
        result["connectSecs"] = connect_secs
        return result
    finally:
        for p in responders:
            p.stop()
        broker.stop()


def mosquitto_version():
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    m = re.search(r"mosquitto version (\S+)", out)
    return m.group(1) if m else "?"


# ---------------------------------------------------------------------------------------------
# Flotilla


class Server:
    """`flotilla serve` on free loopback ports; with `database_url` and `env` (a shared admin
    token), one replica of several on one PostgreSQL database (bench/cluster.py)."""

    def __init__(self, tmp, logdir, name, database_url=None, env=None):
        self.data_dir = os.path.join(tmp, name)
        os.makedirs(self.data_dir)
        self.argv = [FLOTILLA, "serve", "--data-dir", self.data_dir,
                     "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
                     "--https-addr", "127.0.0.1:0",
                     "--job-max-in-flight", "20000", "--job-device-timeout-secs", "120",
                     # The REST load test needs 64 connections; the rest of the files are for
                     # devices (19,000 need more than the default share leaves at 20,000 files).
                     # All of them come from 127.0.0.1, the load test's and the job loop's
                     # polling beside it: the default per-address cap (a quarter, 64) refused the
                     # poller's connection (reset by peer) while the load held 64.
                     "--max-connections", "256", "--max-connections-per-ip", "128"]
        if database_url:
            self.argv += ["--database-url", database_url]
        env = dict(env or {})
        if "BENCH_SERVER_LOG" in os.environ:
            env["FLOTILLA_LOG"] = os.environ["BENCH_SERVER_LOG"]
        self.proc = Proc(name, self.argv, logdir, env=env)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        addr_file = os.path.join(self.data_dir, "http.addr")
        while not (os.path.exists(addr_file) and os.path.exists(os.path.join(self.data_dir, "mqtt.addr"))):
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {self.proc.log_path}")
            time.sleep(0.1)
        time.sleep(0.3)
        with open(addr_file) as f:
            self.base = "http://" + f.read().strip()
        with open(os.path.join(self.data_dir, "mqtt.addr")) as f:
            self.mqtt_port = int(f.read().strip().rsplit(":", 1)[1])
        self.token = env.get("FLOTILLA_ADMIN_TOKEN")
        if not self.token:
            with open(os.path.join(self.data_dir, "admin-token")) as f:
                self.token = f.read().strip()
        self.api = Api(self.base, self.token)

    def stop(self):
        self.proc.stop(30)


def check(result, expected, what):
    status, body = result
    if status not in expected:
        raise RuntimeError(f"{what}: HTTP {status}: {body}")
    return body


def prepare_devices(server, n, logdir):
    """The template, the groups, n devices (made through REST) and their keys (derived from the
    default enrollment group's key, as `GET /devices/{id}/credentials` would give them)."""
    api = server.api
    with open(TEMPLATE_FILE) as f:
        check(api.call("PUT", f"/deviceTemplates/{TEMPLATE}", json.load(f)), (200, 201), "template")
    check(api.call("PUT", "/deviceGroups/bench", {
        "displayName": "Benchmark thermostats",
        "filter": f'SELECT * FROM devices WHERE $template = "{TEMPLATE}"'}), (200, 201), "group")
    check(api.call("PUT", "/deviceGroups/empty", {
        "displayName": "No devices",
        "filter": 'SELECT * FROM devices WHERE $id = "nobody"'}), (200, 201), "group")
    created = http_load(
        logdir, f"create-devices-{n}", f"{server.base}/api/devices/bench-{{n}}?{V}", server.token,
        method="PUT", body=json.dumps({"displayName": "bench {n}", "template": TEMPLATE}),
        requests=n, connections=16)
    if created["ok"] != n:
        raise RuntimeError(f"created {created['ok']} of {n} devices: {created}")
    group = check(api.call("GET", "/enrollmentGroups/sas-iot-devices"), (200,), "enrollment group")
    group_key = base64.b64decode(group["attestation"]["symmetricKey"]["primaryKey"])
    files = []
    for i, (first, count) in enumerate(split_fleet(n)):
        path = os.path.join(server.data_dir, f"credentials-{i}.jsonl")
        with open(path, "w") as f:
            for k in range(first, first + count):
                device = f"bench-{k:05}"
                key = base64.b64encode(hmac.new(group_key, device.encode(), hashlib.sha256).digest())
                f.write(json.dumps({"deviceId": device, "key": key.decode()}) + "\n")
        files.append(path)
    return created, files


def start_sims(server, files, logdir, label):
    sims = []
    for i, path in enumerate(files):
        addrs = ",".join(SOURCE_ADDRS[i::len(files)])
        sims.append(Proc(
            f"sim-{label}-{i}",
            [FLOTILLA, "sim", "--credentials", path, "--data-dir", server.data_dir,
             "--server", "127.0.0.1", "--port", str(server.mqtt_port),
             "--source-addrs", addrs, "--connect-rate", str(CONNECT_RATE // len(files)),
             "--progress-secs", "1", "--duration", "1200"],
            logdir, env={"FLOTILLA_LOG": "warn"}, watch=True))
    return sims


def sims_cpu(sims):
    return sum(cpu_secs(p.pid) for p in sims)


def timestamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_job(server, sims, job_id, data, group="bench", poll=0.05, timeout=600):
    """PUTs a job and waits until it ends: wall time, rates, CPU and peak memory."""
    api = server.api
    quiet = wait_for_quiet(f"job {job_id}")
    peak_reset = reset_peak(server.pid)
    sampler = PeakSampler(server.pid)
    cpu0, sim0, all0 = cpu_secs(server.pid), sims_cpu(sims), machine_busy_secs()
    t0_wall = time.time()
    t0 = time.monotonic()
    check(api.call("PUT", f"/jobs/{job_id}", {"displayName": job_id, "group": group, "data": data}),
          (200,), f"PUT job {job_id}")
    deadline = t0 + timeout
    while True:
        _, body = api.call("GET", f"/jobs/{job_id}")
        if body and body.get("status") not in ("pending", "running"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not end in {timeout} s: {body}")
        time.sleep(poll)
    observed = time.monotonic() - t0
    cpu1, sim1, all1 = cpu_secs(server.pid), sims_cpu(sims), machine_busy_secs()
    sampled_peak = sampler.stop()
    rss, hwm = mem_kib(server.pid)
    # From the PUT to the job's end as the server recorded it (the same clock).
    wall = timestamp(body["end"]) - t0_wall
    progress = body["progress"]
    ops = progress["completed"] + progress["failed"]
    return {
        "job": job_id,
        "status": body["status"],
        "devices": progress["total"],
        "completed": progress["completed"],
        "failed": progress["failed"],
        "wallSecs": wall,
        "runSecs": timestamp(body["end"]) - timestamp(body["start"]),
        "observedSecs": observed,
        "opsPerSec": ops / wall if wall > 0 else 0,
        "serverCpuSecs": cpu1 - cpu0,
        "simCpuSecs": sim1 - sim0,
        "peakRssKiB": max(hwm if peak_reset else 0, sampled_peak),
        "rssAfterKiB": rss,
        # Everything else the machine did meanwhile (this script's polling, the kernel's own
        # threads, other users), and how busy it was just before.
        "otherCpuSecs": max(0.0, (all1 - all0) - (cpu1 - cpu0) - (sim1 - sim0)),
        "busyBefore": quiet,
    }


def repeated_job(server, sims, kind, n, data):
    """Runs a job RUNS times (a new job each time, on the same connected devices); a run during
    which other work took more than a little CPU does not count and is tried again (at most
    twice as many runs in all). Returns the median counted run, with every run listed."""
    cores = os.cpu_count() or 1
    runs = []
    for attempt in range(2 * RUNS):
        run = run_job(server, sims, f"{kind}-{n}-{attempt + 1}", data(attempt))
        run["clean"] = run["otherCpuSecs"] <= max(0.15, 0.05 * run["wallSecs"] * cores)
        log(f"  {kind} job {attempt + 1}: {fmt_job(run)}{'' if run['clean'] else ' (disturbed; not counted)'}")
        runs.append(run)
        if sum(r["clean"] for r in runs) >= RUNS:
            break
        time.sleep(0.5)
    counted = [r for r in runs if r["clean"]] or runs
    median = dict(sorted(counted, key=lambda r: r["wallSecs"])[len(counted) // 2])
    median["runs"] = [{k: r[k] for k in ("job", "wallSecs", "opsPerSec", "serverCpuSecs",
                                          "simCpuSecs", "otherCpuSecs", "clean", "failed")}
                      for r in runs]
    return median


def property_data(value):
    return [{"type": "property", "target": TEMPLATE, "path": "targetTemperature", "value": value}]


def command_data():
    return [{"type": "command", "target": TEMPLATE, "path": "getMaxMinReport",
             "value": "2024-01-01T00:00:00Z"}]


class JobLoop:
    """Property jobs over the bench group, one after another, until stopped."""

    def __init__(self, server):
        self.server = server
        self.jobs = []
        self.first_id = None
        self.running = True
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        api = self.server.api
        k = 0
        try:
            while self.running:
                job_id = f"rest-load-{k}"
                t0 = time.time()
                check(api.call("PUT", f"/jobs/{job_id}", {
                    "displayName": job_id, "group": "bench",
                    "data": property_data(60 + k % 20)}), (200,), "PUT job")
                if self.first_id is None:
                    self.first_id = job_id
                self.ready.set()
                while True:
                    _, body = api.call("GET", f"/jobs/{job_id}")
                    if body and body.get("status") not in ("pending", "running"):
                        break
                    time.sleep(0.1)
                self.jobs.append({"job": job_id, "wallSecs": timestamp(body["end"]) - t0,
                                  "devices": body["progress"]["total"],
                                  "completed": body["progress"]["completed"],
                                  "failed": body["progress"]["failed"]})
                k += 1
        except Exception as e:  # reported by stop()
            self.error = e
            self.ready.set()

    def stop(self):
        self.running = False
        self.thread.join(300)
        if self.error:
            raise self.error
        return self.jobs


def rest_phase(server, sims, logdir, n, secs):
    """Load on three endpoints, one at a time, while property jobs over all n devices run back
    to back."""
    base, token = server.base, server.token
    loop = JobLoop(server)
    loop.ready.wait(60)
    if loop.error:
        raise loop.error
    job = loop.first_id
    # A page from the middle of the job's device list (keyset paging: as cheap as the first).
    middle = base64.urlsafe_b64encode(str(n // 2 - 1).encode()).decode().rstrip("=")
    tests = [
        ("GET /jobs/{id}", "GET", f"{base}/api/jobs/{job}?{V}", None, TARGET_GET_RATE),
        ("GET /jobs/{id}/devices (100 a page)", "GET",
         f"{base}/api/jobs/{job}/devices?{PREVIEW}&maxpagesize=100&$skiptoken={middle}", None,
         TARGET_GET_RATE),
        ("PUT /jobs/{id} (new jobs, empty group)", "PUT", f"{base}/api/jobs/rest-put-{{n}}?{V}",
         json.dumps({"displayName": "put {n}", "group": "empty", "data": property_data(55)}),
         PUT_RATE),
    ]
    results = []
    try:
        for name, method, url, body, rate in tests:
            # REST_ROUNDS rounds of each (the machine's scheduling moves a tail percentile from
            # run to run); the round with the median p99 is reported, with every round's p99.
            rounds = []
            for k in range(REST_ROUNDS):
                time.sleep(1)
                cpu0, sim0 = cpu_secs(server.pid), sims_cpu(sims)
                jobs_before = len(loop.jobs)
                result = http_load(logdir, f"rest-{len(results)}-{k + 1}",
                                   url.replace("rest-put-", f"rest-put-{k + 1}-"), token,
                                   method=method, body=body, rate=rate, duration=secs,
                                   connections=64, priority=True)
                result["name"] = name
                result["serverCpuSecs"] = cpu_secs(server.pid) - cpu0
                result["simCpuSecs"] = sims_cpu(sims) - sim0
                result["jobsFinishedDuring"] = len(loop.jobs) - jobs_before
                log(f"  {name} ({k + 1}): {result['rate']:.0f}/s, p50 {result['p50Ms']:.2f} ms, "
                    f"p99 {result['p99Ms']:.2f} ms, errors {result['errors']}, statuses {result['statuses']}")
                rounds.append(result)
            median = dict(sorted(rounds, key=lambda r: r["p99Ms"])[len(rounds) // 2])
            median["roundsP99Ms"] = [r["p99Ms"] for r in rounds]
            results.append(median)
    finally:
        jobs = loop.stop()
    return {"tests": results, "jobs": jobs, "secs": secs}


def flotilla_run(n, tmp, logdir, rest_secs, profile):
    server = Server(tmp, logdir, f"server-{n}")
    sims = []
    try:
        created, files = prepare_devices(server, n, logdir)
        log(f"  {n} devices created in {created['secs']:.1f} s ({created['rate']:.0f}/s)")
        rss_before = settle_rss(server.pid, 2)
        started = time.monotonic()
        sims = start_sims(server, files, logdir, str(n))
        wait_fleet(sims, n, r"connected (\d+)/", "devices connected", 300)
        connect_secs = time.monotonic() - started
        rss_connected = settle_rss(server.pid, 4)
        log(f"  {n} devices connected in {connect_secs:.1f} s; server RSS "
            f"{rss_before // 1024} -> {rss_connected // 1024} MiB")
        result = {
            "devices": n,
            "create": {"secs": created["secs"], "rate": created["rate"],
                       "command": created["command"]},
            "connectSecs": connect_secs,
            "rssBeforeKiB": rss_before,
            "rssConnectedKiB": rss_connected,
            "kibPerConnection": (rss_connected - rss_before) / n,
            "serverCommand": " ".join(quote(a) for a in server.argv),
            "simCommands": [" ".join(quote(a) for a in p.popen.args) for p in sims],
        }
        if profile:
            perf = start_perf(server.pid, logdir, f"property-{n}")
            profiled = run_job(server, sims, f"profiled-{n}", property_data(69))
            stop_perf(perf)
            log(f"  profiled property job (not counted): {fmt_job(profiled)}")
        result["property"] = repeated_job(server, sims, "property", n, lambda k: property_data(70 + k))
        result["command"] = repeated_job(server, sims, "command", n, lambda k: command_data())
        if rest_secs:
            time.sleep(1)
            result["rest"] = rest_phase(server, sims, logdir, n, rest_secs)
        return result
    finally:
        for p in sims:
            p.stop()
        server.stop()


def start_perf(pid, logdir, name):
    if not shutil.which("perf"):
        log("  perf is not installed (apt-get install linux-perf); no profile")
        return None
    path = os.path.join(logdir, f"perf-{name}.data")
    argv = ["perf", "record", "-F", "999", "-p", str(pid), "-o", path]
    if os.environ.get("BENCH_PERF_CALLGRAPH"):
        argv[2:2] = ["--call-graph", os.environ["BENCH_PERF_CALLGRAPH"]]
    proc = Proc(f"perf-{name}", argv, logdir)
    proc.data = path
    time.sleep(1)
    return proc


def stop_perf(proc):
    if proc is None:
        return
    proc.popen.send_signal(signal.SIGINT)
    try:
        proc.popen.wait(60)
    except subprocess.TimeoutExpired:
        pass
    proc.stop()
    # What the server spent its time on, by function (self time), by library and by thread.
    for sort, suffix in (("dso,symbol", "symbols"), ("dso", "dsos"), ("comm", "threads")):
        with open(proc.data + f".{suffix}.txt", "w") as f:
            subprocess.run(["perf", "report", "-i", proc.data, "--stdio", "--no-children",
                            "--sort", sort, "--percent-limit", "0.3", "-g", "none"],
                           stdout=f, stderr=subprocess.DEVNULL)
    log(f"  profile: {proc.data}.symbols.txt")


def fmt_job(job):
    return (f"{job['status']} {job['completed']}/{job['devices']} (failed {job['failed']}) in "
            f"{job['wallSecs']:.2f} s = {job['opsPerSec']:.0f} ops/s; server CPU "
            f"{job['serverCpuSecs']:.2f} s, sims CPU {job['simCpuSecs']:.2f} s, peak "
            f"{job['peakRssKiB'] // 1024} MiB; other CPU {job['otherCpuSecs']:.2f} s")


# ---------------------------------------------------------------------------------------------
# The machine, the plot and the report


def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def out(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "?"

    commit = out("git", "rev-parse", "--short", "HEAD")
    dirty = out("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": first("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "openFiles": out("sh", "-c", "ulimit -n"),
        "rustc": out("rustc", "--version"),
        "mosquitto": mosquitto_version(),
        "commit": commit + (" with uncommitted changes" if dirty else ""),
        "loadBefore": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "fsync": fsync_rate(),
    }


def fsync_rate():
    """fsyncs per second of a 4 KiB write in the temp dir (what a SQLite commit waits for)."""
    fd, path = tempfile.mkstemp()
    try:
        block = b"\0" * 4096
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
        return n / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def plot(report, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing; no plot (bench/run.sh installs it into .venv)")
        return
    runs = report["runs"]
    ns = [r["devices"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(ns, [r["property"]["wallSecs"] for r in runs], "o-", label="property job (PUT to complete)")
    ax.plot(ns, [r["command"]["wallSecs"] for r in runs], "s-", label="command job (PUT to complete)")
    ax.plot(ns, [r["devices"] / r["broker"]["medianRate"] for r in runs], "^--",
            label="N round trips through Mosquitto (TLS)")
    ax.plot(ns, [r["devices"] / TARGET_OPS for r in runs], ":", color="grey",
            label=f"target: {TARGET_OPS:,} device operations/s")
    ax.set_xlabel("devices (N)")
    ax.set_ylabel("wall time (s)")
    ax.set_title("Job wall time against fleet size (2 cores, loopback)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    global FLOTILLA, BENCH, RUNS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1,000 and 5,000 only")
    parser.add_argument("--sizes", help="comma-separated device counts (default 1000,5000,10000,19000)")
    parser.add_argument("--runs", type=int, default=RUNS, help="counted runs of each job per size")
    parser.add_argument("--rest-secs", type=float, default=10, help="seconds per REST load test")
    parser.add_argument("--no-rest", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="perf record the server during an extra property job at the largest size")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (databases, perf data)")
    parser.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    parser.add_argument("--results", default=os.path.join(REPO, "bench", "results"),
                        help="where results.json and the logs go")
    parser.add_argument("--plot", default=os.path.join(REPO, "bench", "scaling.png"))
    parser.add_argument("--command", default="bench/run.sh", help="how this run was started (for the report)")
    parser.add_argument("--flotilla", help="another build of the flotilla binary to measure (server and simulator)")
    args = parser.parse_args()
    RUNS = max(1, args.runs)
    if args.flotilla:
        FLOTILLA = os.path.abspath(args.flotilla)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [1000, 5000] if args.quick else [1000, 5000, 10_000, 19_000])
    for binary in (FLOTILLA, BENCH):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: run bench/run.sh (it builds the release binaries)")
    rest_n = max([s for s in sizes if s <= REST_DEVICES], default=None)
    os.makedirs(args.results, exist_ok=True)
    # Neutral names for the temp dir and the binaries' copies, so that a `pkill -f flotilla`
    # by someone else on a shared machine does not end a run half-way.
    tmp = tempfile.mkdtemp(prefix="fb-")
    for name, src in (("fb-server", FLOTILLA), ("fb-tools", BENCH)):
        shutil.copy2(src, os.path.join(tmp, name))
        SHOWN[os.path.join(tmp, name)] = os.path.relpath(src, REPO) if src.startswith(REPO) else src
    FLOTILLA, BENCH = os.path.join(tmp, "fb-server"), os.path.join(tmp, "fb-tools")
    logdir = os.path.join(tmp, "logs")
    os.makedirs(logdir)
    log(f"working in {tmp}")
    report = {"machine": machine(), "sizes": sizes, "command": args.command, "runs": [],
              "runsPerJob": RUNS}
    report["machine"]["loadPerPhase"] = []
    log(f"machine: {report['machine']}")
    try:
        make_certificates(tmp)
        for n in sizes:
            rounds = 5 if n <= 5000 else 3
            log(f"N = {n}: raw broker (Mosquitto over TLS), {rounds} rounds of {n} round trips")
            report["machine"]["loadPerPhase"].append((f"broker {n}", loadavg()))
            broker = broker_baseline(n, tmp, logdir, rounds)
            log(f"  {broker['medianRate']:.0f} round trips/s (median); broker CPU "
                f"{broker['brokerCpuSecs']:.2f} s, clients {broker['clientsCpuSecs']:.2f} s, driver "
                f"{broker['driverCpuSecs']:.2f} s; {broker['kibPerConnection']:.1f} KiB per connection")
            log(f"N = {n}: Flotilla")
            report["machine"]["loadPerPhase"].append((f"flotilla {n}", loadavg()))
            run = flotilla_run(n, tmp, logdir, args.rest_secs if (n == rest_n and not args.no_rest) else 0,
                               args.profile and n == max(sizes))
            run["broker"] = broker
            report["runs"].append(run)
            with open(os.path.join(args.results, "results.json"), "w") as f:
                json.dump(report, f, indent=2)
    finally:
        for p in CHILDREN:
            try:
                p.stop(5)
            except Exception:
                pass
    report["totalSecs"] = time.monotonic() - START
    with open(os.path.join(args.results, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    # The logs beside the results (bench/.gitignore keeps them out of commits).
    shutil.rmtree(os.path.join(args.results, "logs"), ignore_errors=True)
    shutil.copytree(logdir, os.path.join(args.results, "logs"),
                    ignore=shutil.ignore_patterns("*.data", "*.jsonl"))
    plot(report, args.plot)
    import report as report_module  # bench/report.py
    with open(args.out, "w") as f:
        f.write(report_module.markdown(report))
    log(f"wrote {args.out}, {args.plot} and {args.results}/results.json")
    if args.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()

"""BENCHMARKS.md from bench/results/results.json. bench.py calls `markdown`; run this file to
rewrite BENCHMARKS.md from the last results without measuring again:

    python3 bench/report.py [results.json]
"""

import json
import os
import sys

TARGET_OPS = 10_000
TARGET_RATIO = 0.5
TARGET_KIB = 20
TARGET_GET_RATE = 5000
TARGET_GET_P99_MS = 10
HERE = os.path.dirname(os.path.abspath(__file__))


def n(x):
    return f"{x:,.0f}"


def ok(good):
    return "✅" if good else "❌"


def markdown(report):
    m = report["machine"]
    runs = report["runs"]
    per_job = report.get("runsPerJob", 1)
    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Measured by one command on one machine, everything on loopback. Every figure below comes "
      "from the same run; the raw-broker baseline (Mosquitto over TLS) was measured in that run "
      "too, just before Flotilla at each fleet size, so the ratios compare like with like.\n")
    w("```sh")
    w(report["command"])
    w("```\n")
    w("`bench/run.sh` builds the release binaries (`cargo build --release -p flotilla -p "
      "flotilla-bench`), installs matplotlib into `.venv` if it is missing, and runs "
      "`bench/bench.py`, which writes this file, `bench/scaling.png` and `bench/results/` "
      "(`results.json`, and every process's log under `logs/`, which git ignores). "
      "`bench/run.sh --quick` measures N = 1,000 and 5,000 only; `bench/bench.py --help` lists "
      "the other options (`--sizes`, `--runs`, `--no-rest`, `--profile`). "
      "`python3 bench/report.py` rewrites this file from the last results. The benchmarks are "
      "not part of `scripts/test.sh`.\n")
    w("## The machine\n")
    w("| | |\n|---|---|")
    w(f"| CPU | {m['cpu']}, **{m['cores']} cores** |")
    w(f"| memory | {m['memory']} |")
    w(f"| kernel | Linux {m['kernel']} |")
    w(f"| open files per process | {m['openFiles']} (a hard limit: one server process holds just under 20,000 connections) |")
    w(f"| disk | {m['fsync']:,.0f} fsyncs/s of a 4 KiB write (what a SQLite commit waits for) |")
    w(f"| Rust | {m['rustc']} |")
    w(f"| Mosquitto | {m['mosquitto']} |")
    w(f"| Flotilla | commit {m['commit']} |")
    w(f"| date | {m['date']} |")
    loads = ", ".join(f"{name}: {load}" for name, load in m.get("loadPerPhase", []))
    w(f"| load average before each phase | {loads} |")
    w("")
    w("The server, the simulated devices, the broker and the load tools all share the 2 cores. "
      "The server runs on its embedded SQLite database (WAL, `synchronous = FULL`: every "
      "commit waits for the disk). Other work on the machine is watched: each measurement "
      "waits until the machine is idle, and a job run during which other processes used more "
      "than a little CPU (`/proc/stat` less the server's and the simulators' own time) is run "
      "again and not counted.\n")

    # 1. Job throughput.
    w("## 1. Job throughput\n")
    w(f"A property job (`targetTemperature`; each device acknowledges it the Plug and Play way) "
      f"and a command job (`getMaxMinReport`; each device answers 200) over N connected "
      f"simulated devices, from the `PUT /jobs/{{id}}` to the job's `end` (`complete`). Each "
      f"job ran {per_job} times (a new job each time, on the same connected devices); the "
      f"table shows the median run, and the last column every counted run. Device operations "
      f"per second = N / wall time. Raw broker: N request/response round trips through "
      f"Mosquitto over TLS at QoS 1 in the same run (section 2). Server CPU and peak memory "
      f"come from `/proc/<pid>/stat` and `/proc/<pid>/status` (`VmHWM`, reset before each "
      f"job); the simulator's own CPU is beside the server's.\n")
    w("| N | job | wall (s) | device ops/s | target ≥ 10,000/s | raw broker round trips/s | "
      "Flotilla / broker | target ≥ 50% | server CPU (s) | server CPU per device (µs) | "
      "simulator CPU (s) | server peak RSS (MiB) | failed | all runs (s) |")
    w("|---:|---|---:|---:|:-:|---:|---:|:-:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        raw = r["broker"]["medianRate"]
        for kind in ("property", "command"):
            j = r[kind]
            ratio = j["opsPerSec"] / raw if raw else 0
            every = ", ".join(f"{x['wallSecs']:.2f}" + ("" if x["clean"] else "*")
                              for x in j.get("runs", []))
            w(f"| {n(r['devices'])} | {kind} | {j['wallSecs']:.2f} | {n(j['opsPerSec'])} | "
              f"{ok(j['opsPerSec'] >= TARGET_OPS)} | {n(raw)} | {ratio:.0%} | "
              f"{ok(ratio >= TARGET_RATIO)} | {j['serverCpuSecs']:.2f} | "
              f"{j['serverCpuSecs'] / max(j['devices'], 1) * 1e6:.0f} | {j['simCpuSecs']:.2f} | "
              f"{j['peakRssKiB'] / 1024:.0f} | {j['failed']} | {every} |")
    w("")
    w("\\* disturbed by other work on the machine; not counted.\n")

    # 2. The raw broker.
    w("## 2. The raw limit: Mosquitto over TLS, same run\n")
    w("Mosquitto on its own loopback port with a TLS listener (a certificate made with openssl "
      "for the run), no persistence, no in-flight or queue limits. N responders (the "
      "simulator's own MQTT client: rumqttc's codec, rustls, TCP_NODELAY; at most 10,000 per "
      "process, spread over the source addresses 127.0.0.2–9) each subscribe to `req/<id>` and "
      "answer every request on `res/<id>`; one driver connection (`flotilla-bench driver`) "
      "publishes one 64-byte request to each and counts the answers, QoS 1 both ways (8 MQTT "
      "packets per round trip at the broker; a Flotilla device operation is 4 to 5 packets at "
      "the server, plus its database work). Rate = N / time from the first request to the "
      "last answer; the median of the rounds.\n")
    w("| N | rounds | round trips/s (median) | every round | broker CPU (s) | responders CPU (s) | driver CPU (s) |")
    w("|---:|---:|---:|---|---:|---:|---:|")
    for r in runs:
        b = r["broker"]
        rates = ", ".join(n(x["rate"]) for x in b["rounds"])
        w(f"| {n(r['devices'])} | {len(b['rounds'])} | {n(b['medianRate'])} | {rates} | "
          f"{b['brokerCpuSecs']:.2f} | {b['clientsCpuSecs']:.2f} | {b['driverCpuSecs']:.2f} |")
    w("")

    # 3. Connections.
    w("## 3. Connection capacity\n")
    w("Idle connected devices (MQTT over TLS, after their twin GET and subscriptions), and the "
      "server's memory per connection: (RSS with all N connected − RSS before the first "
      "connection) / N. Mosquitto's is measured the same way (its idle responders, before the "
      "driver runs).\n")
    w("| N | connected | connect time (s) | server RSS before → connected (MiB) | server KiB per connection | target ≤ 20 KiB | Mosquitto KiB per TLS connection |")
    w("|---:|---:|---:|---|---:|:-:|---:|")
    for r in runs:
        b = r["broker"]
        w(f"| {n(r['devices'])} | {n(r['devices'])} | {r['connectSecs']:.1f} | "
          f"{r['rssBeforeKiB'] / 1024:.0f} → {r['rssConnectedKiB'] / 1024:.0f} | "
          f"{r['kibPerConnection']:.1f} | {ok(r['kibPerConnection'] <= TARGET_KIB)} | "
          f"{b['kibPerConnection']:.1f} |")
    w("")

    # 4. REST.
    rest = [r for r in runs if "rest" in r]
    w("## 4. REST latency while a job runs\n")
    if rest:
        r = rest[0]
        rs = r["rest"]
        jobs = rs["jobs"]
        w(f"Property jobs over all {n(r['devices'])} devices run back to back (a new one as soon "
          f"as the last completes) while `flotilla-bench http` loads one endpoint at a time for "
          f"{rs['secs']:.0f} s, three rounds each (the table shows the round with the median p99, "
          f"and every round's p99), open loop at a fixed rate over 64 keep-alive connections. Latency "
          f"is counted from when each request was due, so queueing in the server shows (the "
          f"generator's timer adds up to about 1 ms; it runs at `nice -10` so that its own "
          f"waiting for a core is not counted as the server's). The GETs read the first of "
          f"those jobs; the device page is 100 devices from the middle of its list "
          f"(`$skiptoken`); each PUT creates a new job (over an empty group, so the engine "
          f"starts and completes it at once).\n")
        w("| request | target rate/s | achieved/s | p50 (ms) | p90 (ms) | p99 (ms) | p99 of each round (ms) | max (ms) | target | non-2xx / errors / unsent | server CPU (s) | simulator CPU (s) | generator CPU (s) | jobs finished meanwhile |")
        w("|---|---:|---:|---:|---:|---:|---|---:|:-:|---:|---:|---:|---:|---:|")
        for t in rs["tests"]:
            is_get = t["method"] == "GET"
            bad = t["answered"] - t["ok"]
            target = (f"{ok(t['p99Ms'] <= TARGET_GET_P99_MS and t['rate'] >= TARGET_GET_RATE * 0.98)} "
                      f"p99 ≤ 10 ms at 5,000/s") if is_get else "—"
            w(f"| `{t['name']}` | {n(t['targetRate'])} | {n(t['rate'])} | {t['p50Ms']:.2f} | "
              f"{t['p90Ms']:.2f} | {t['p99Ms']:.2f} | "
              f"{', '.join(f'{x:.2f}' for x in t.get('roundsP99Ms', [t['p99Ms']]))} | {t['maxMs']:.1f} | {target} | "
              f"{bad} / {t['errors']} / {t.get('unsent', 0)} | {t['serverCpuSecs']:.2f} | {t['simCpuSecs']:.2f} | "
              f"{t['cpuSecs']:.2f} | {t['jobsFinishedDuring']} |")
        w("")
        if jobs:
            walls = sorted(j["wallSecs"] for j in jobs)
            w(f"The jobs meanwhile: {len(jobs)} finished, {walls[0]:.2f}–{walls[-1]:.2f} s each "
              f"(median {walls[len(walls) // 2]:.2f} s, against {r['property']['wallSecs']:.2f} s "
              f"without REST load).\n")
    else:
        w("Not measured in this run (it needs a size of at most 10,000 devices).\n")

    # 5. Scaling.
    w("## 5. How wall time grows with the fleet\n")
    w("![Wall time against N](bench/scaling.png)\n")
    w("| N | property job (s) | ms per device | command job (s) | ms per device | Mosquitto, N round trips (s) |")
    w("|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        p, c = r["property"], r["command"]
        d = r["devices"]
        w(f"| {n(d)} | {p['wallSecs']:.2f} | {p['wallSecs'] / d * 1000:.3f} | {c['wallSecs']:.2f} | "
          f"{c['wallSecs'] / d * 1000:.3f} | {d / r['broker']['medianRate']:.2f} |")
    w("")
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        for kind in ("property", "command"):
            growth = b[kind]["wallSecs"] / a[kind]["wallSecs"]
            w(f"- {kind}: {n(a['devices'])} → {n(b['devices'])} devices "
              f"(×{b['devices'] / a['devices']:.1f}) took ×{growth:.1f} the time.")
        w("")

    # 6. Load tools.
    w("## 6. The load tools are not the bottleneck\n")
    w("- TCP_NODELAY is on in the simulator (`crates/sim/src/mqtt.rs`: `set_nodelay(true)` "
      "before connecting), on the server's accepted device sockets "
      "(`crates/gateway/src/listener.rs`), and in `flotilla-bench` (the driver; the responders "
      "use the simulator's client; the HTTP generator). Mosquitto sets it on its sockets.")
    w("- The simulator's CPU is in the job table beside the server's: a few tens of µs per "
      "device, against the server's one to two hundred. The driver's, the responders' and "
      "the broker's are in section 2, the HTTP generator's in section 4.")
    w("- Simulators and responders hold at most 10,000 devices per process, over 8 loopback "
      "source addresses.\n")

    before_path = os.path.join(HERE, "baseline", "results.json")
    if os.path.exists(before_path):
        with open(before_path) as f:
            before(w, json.load(f), report)

    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            w(f.read().rstrip() + "\n")

    # Commands.
    w("## The exact commands\n")
    w("What `bench/bench.py` ran at each size (paths are in the run's temp dir; the binaries ran "
      "from copies there under neutral names, so that a `pkill -f flotilla` by someone else on "
      "a shared machine cannot end a run).\n")
    for r in runs:
        w(f"**N = {n(r['devices'])}**\n")
        w("```sh")
        w("mosquitto -c <tmp>/mosquitto.conf   # TLS listener on a free loopback port")
        w("target/release/flotilla-bench responders --port P --ca <tmp>/ca.pem --count C --first F "
          "--source-addrs ... --connect-rate R --duration 600   # per 10,000")
        w(f"target/release/flotilla-bench driver --port P --ca <tmp>/ca.pem --count {r['devices']} "
          f"--rounds {len(r['broker']['rounds'])}")
        w(r["serverCommand"])
        w(r["create"]["command"])
        for c in r["simCommands"]:
            w(c)
        w(f"# {per_job}+ times each: PUT /jobs/property-N-k {{group: bench, data: [{{type: property, path: targetTemperature, value: 70+k}}]}}")
        w(f"#                  PUT /jobs/command-N-k  {{group: bench, data: [{{type: command, path: getMaxMinReport}}]}}")
        for t in r.get("rest", {}).get("tests", []):
            w(t["command"])
        w("```\n")
    w(f"Total run time: {report.get('totalSecs', 0) / 60:.1f} minutes.")
    return "\n".join(out) + "\n"


def before(w, old, new):
    """Before and after: the same harness on the commit these changes start from."""
    w("## Before and after\n")
    w(f"The same harness on a release build of the commit these changes start from "
      f"(`bench/baseline/results.json`, measured {old['machine']['date']} with "
      f"`{old['command']}`: one run per job), beside this run.\n")
    w("| N | property job ops/s | command job ops/s | server CPU per property device (µs) | server KiB per idle connection |")
    w("|---:|---:|---:|---:|---:|")
    olds = {r["devices"]: r for r in old["runs"]}
    for r in new["runs"]:
        o = olds.get(r["devices"])
        if not o:
            continue
        per = lambda x: x["property"]["serverCpuSecs"] / max(x["property"]["devices"], 1) * 1e6
        w(f"| {n(r['devices'])} | {n(o['property']['opsPerSec'])} → **{n(r['property']['opsPerSec'])}** | "
          f"{n(o['command']['opsPerSec'])} → **{n(r['command']['opsPerSec'])}** | "
          f"{per(o):.0f} → **{per(r):.0f}** | "
          f"{o['kibPerConnection']:.1f} → **{r['kibPerConnection']:.1f}** |")
    w("")
    old_rest = [r for r in old["runs"] if "rest" in r]
    new_rest = [r for r in new["runs"] if "rest" in r]
    if old_rest and new_rest:
        w("REST while jobs over the same devices run back to back (before: "
          f"{old_rest[0]['rest']['secs']:.0f} s per endpoint):\n")
        w("| request | target rate/s | achieved/s | p50 (ms) | p99 (ms) |")
        w("|---|---:|---:|---:|---:|")
        olds = {t["name"]: t for t in old_rest[0]["rest"]["tests"]}
        for t in new_rest[0]["rest"]["tests"]:
            o = olds.get(t["name"])
            if not o:
                continue
            w(f"| `{t['name']}` | {n(t['targetRate'])} | {n(o['rate'])} → **{n(t['rate'])}** | "
              f"{o['p50Ms']:,.1f} → **{t['p50Ms']:,.2f}** | {o['p99Ms']:,.1f} → **{t['p99Ms']:,.2f}** |")
        w("")


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "results.json")
    with open(path) as f:
        data = json.load(f)
    with open(os.path.join(os.path.dirname(HERE), "BENCHMARKS.md"), "w") as f:
        f.write(markdown(data))

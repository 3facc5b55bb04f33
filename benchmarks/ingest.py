"""Ingest benchmark: floorctl's daemon against the raw clients it is built on.

    .venv/bin/python benchmarks/ingest.py [--quick] [--only mqtt,modbus,jitter,rss,demo]

A benchmark, not a test: it prints a table (value, baseline, ratio, target, MET / NOT MET)
and writes ``benchmarks/results/ingest.json`` (a ``--quick`` run writes nothing unless given
``--output``). What each number means, and the latest full run: docs/performance.md.

- **mqtt**: N JSON payloads (mqtt_json shape, 2 fields) over 50 topics at QoS 1, published by
  one ``mosquitto_pub -l`` process per topic into a private mosquitto (``max_queued_messages
  0``). Subject A: a bare aiomqtt client subscribed to the 50 topics, counting messages.
  Subject B: a floorctl ``Floor`` with 50 mqtt_json devices (one per topic, 2 fields each)
  publishing its state to the same broker, counting readings at a sink. Rate = (messages - 1)
  / (last receive - first receive). A fresh broker per run (the daemon's session is
  persistent by default, so a reused broker would keep queueing for it).
- **modbus**: 50 simulated devices (``simulators.modbus_device.ModbusSimServer``, one server
  and port per device, 10 FLOAT32 holding registers each) in one child process. Subject A:
  50 raw ``AsyncModbusTcpClient`` reading the 20-register block in a tight loop. Subject B: a
  ``Floor`` with the same 50 devices, one ``[[modbus]]`` connection each, at a short interval.
- **jitter**: 500 Modbus devices at 1 s (50 connections x 10 unit ids, 4 FLOAT32 fields each)
  for 30 s after a 2 s warm-up; poll-start lateness from ``counters.jitter``.
- **rss**: a ``Floor`` with 1,000 points (100 Modbus devices x 10 fields at 1 s), VmRSS of
  that process; and of a bare ``import floorctl.daemon``.
- **demo**: the demo floor, the root ``devices.toml`` (21 devices of 9 kinds, 84 points),
  served by ``floorctl simulate`` in a child process (private mosquitto and free ports through
  FLOORCTL_MQTT_PORT, FLOORCTL_MODBUS_PORT, FLOORCTL_MODBUS_PORT_2, FLOORCTL_SICS_PORT), the
  daemon in another, for 30 s (quick: 10 s) after a 10 s (6 s) warm-up: readings/s, points
  good of all, CPU % and RSS of the daemon, p99 poll-start jitter, publisher and hub
  counters, devices not online. A mixed floor has no raw-library baseline: the numbers are
  absolute, with CPU per reading as the comparable cost, and no target.

Every subject, publisher and simulator runs in its own process (benchmarks/ingest_workers.py);
everything listens on 127.0.0.1 only and stops by itself. Each daemon worker starts its Floor
as ``floorctl run`` does, ``gc.collect(); gc.freeze()`` included. A complete run (all
sections, no ``--patches`` / ``--set``) moves the previous complete run of the results file to
its ``"history"``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workerproc import ChildError, WorkerProcess  # noqa: E402

from tests.helpers import Mosquitto  # noqa: E402

WORKERS = Path(__file__).resolve().parent / "ingest_workers.py"
#: experimental floorctl patches for the daemon workers (--patches; see ingest_patches.py)
PATCHES: list[str] = []
RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"

TARGETS = {
    "mqtt": ("daemon / raw aiomqtt msg/s", ">=", 0.6),
    "modbus": ("daemon / raw pymodbus polls/s", ">=", 0.5),
    "jitter": ("p99 poll-start lateness, ms", "<=", 50.0),
    "rss": ("RSS at 1,000 points, MB", "<=", 120.0),
}

FULL = {
    "mqtt": {"messages": 50_000, "topics": 50, "runs": 3, "modes": ["live"]},
    "modbus": {
        "devices": 50,
        "fields": 10,
        "runs": 3,
        "warmup": 2.0,
        "window": 8.0,
        "interval": "auto",  # or e.g. "10ms": skip the sweep
        "sweep": ["40ms", "20ms", "10ms", "5ms"],
        "sweep_window": 2.5,
        "timeout_share": 0.9,  # device timeout = 0.9 x interval
        "publish": True,  # the daemon publishes its state (False: a diagnostic, not the target)
    },
    "jitter": {"connections": 50, "units": 10, "fields": 4, "warmup": 2.0, "window": 30.0},
    "rss": {"connections": 10, "units": 10, "fields": 10, "warmup": 5.0, "window": 10.0},
    "demo": {"warmup": 10.0, "window": 30.0},
}
QUICK = {
    "mqtt": {"messages": 10_000, "topics": 50, "runs": 1, "modes": ["live"]},
    "modbus": {**FULL["modbus"], "runs": 1, "warmup": 1.0, "window": 3.0, "interval": "5ms"},
    "jitter": {**FULL["jitter"], "window": 8.0},
    "rss": {**FULL["rss"], "warmup": 3.0, "window": 4.0},
    "demo": {"warmup": 6.0, "window": 10.0},
}


# --- child processes ---------------------------------------------------------------------------


class Child(WorkerProcess):
    """``python ingest_workers.py ROLE ARGS``: its protocol lines arrive through a thread."""

    def __init__(
        self,
        role: str,
        args: dict[str, Any],
        logdir: Path,
        name: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        name = name or role
        if PATCHES and ("config" in args or "config_path" in args):  # the daemon roles
            args = args | {"patches": PATCHES}
        if "config" in args:  # devices.toml text goes in a file, not on the command line
            path = logdir / f"{name}.toml"
            path.write_text(args["config"])
            args = {k: v for k, v in args.items() if k != "config"} | {"config_file": str(path)}
        super().__init__(WORKERS, role, args, logdir, name, env)

    def finish(self, timeout: float) -> dict[str, Any] | None:
        """Ask the child to stop and return its result line (None if it has none)."""
        with contextlib.suppress(OSError, ValueError):
            self.send("stop")
        try:
            return self.expect("result", timeout)
        except ChildError:
            return None


@contextlib.contextmanager
def child(
    role: str,
    args: dict[str, Any],
    logdir: Path,
    name: str = "",
    env: dict[str, str] | None = None,
) -> Iterator[Child]:
    c = Child(role, args, logdir, name, env)
    try:
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(workdir, persistence=False).start()
    try:
        yield m
    finally:
        m.stop()


# --- configurations ----------------------------------------------------------------------------


def floor_header(mqtt_port: int, *, queue: int = 10_000, client: str = "bench") -> str:
    return f"""
[floor]
id = "bench"
republish = "1m"
stats_interval = "10s"

[[mqtt]]
name = "broker"
port = {mqtt_port}
client_id = "floorctl-{client}-{os.getpid()}-{time.monotonic_ns()}"
max_queued_incoming = {queue}
"""


def mqtt_topics(n: int) -> list[str]:
    return [f"bench/meter-{k:03d}/state" for k in range(n)]


def mqtt_config(mqtt_port: int, topics: list[str], max_queued: int) -> str:
    out = [floor_header(mqtt_port, queue=max_queued, client="mqtt")]
    for k, topic in enumerate(topics):
        out.append(f"""
[[device]]
id = "meter-{k:03d}"
kind = "mqtt_json"
via = "broker"
interval = "1m"

[device.options]
state_topic = "{topic}"
timestamp_path = "ts"

[[device.fields]]
name = "p_kw"
unit = "kW"
path = "p_kw"

[[device.fields]]
name = "v"
unit = "V"
path = "v"
""")
    return "".join(out)


def modbus_config(
    mqtt_port: int | None,
    ports: dict[str, int] | None,
    *,
    connections: int,
    units: int,
    fields: int,
    interval: str,
    timeout: str | None = None,
) -> str:
    """``connections`` x ``units`` Modbus devices with ``fields`` FLOAT32 holding registers.

    ``ports`` None gives placeholder ports (the simulator binds free ones instead)."""
    out = [floor_header(mqtt_port or 1883, client="modbus")]
    for c in range(connections):
        name = f"gw-{c:02d}"
        port = ports[name] if ports else 10_000 + c
        out.append(f'\n[[modbus]]\nname = "{name}"\nport = {port}\ntimeout = "1s"\n')
    for c in range(connections):
        for u in range(1, units + 1):
            out.append(f"""
[[device]]
id = "plc-{c:02d}-{u:02d}"
kind = "modbus"
via = "gw-{c:02d}"
unit_id = {u}
interval = "{interval}"
""")
            if timeout:
                out.append(f'timeout = "{timeout}"\n')
            for f in range(fields):
                out.append(f"""
[[device.fields]]
name = "f{f}"
unit = "kW"
register = "holding"
address = {2 * f}
type = "FLOAT32"
""")
    return "".join(out)


# --- statistics --------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def fmt_range(s: dict[str, Any], digits: int = 0) -> str:
    if len(s["runs"]) == 1:
        return f"{s['median']:,.{digits}f}"
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def stop_hangs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How many daemon runs did not finish ``Floor.run()`` within 5 s of ``stop()``."""
    hung = [r for r in runs if not r["stop"]["stopped"]]
    if hung:
        say(
            f"  !! Floor.run() had not returned 5 s after stop() in {len(hung)} of {len(runs)} runs"
        )
    return {
        "runs": len(runs),
        "hung": len(hung),
        "stuck_tasks": [len(r["stop"].get("stuck_tasks", [])) for r in hung],
    }


def say(text: str) -> None:
    print(text, flush=True)


# --- MQTT --------------------------------------------------------------------------------------


def write_payloads(workdir: Path, topics: list[str], messages: int) -> list[Path]:
    """One file per topic, one JSON payload per line (~90 bytes, mqtt_json shape)."""
    per_topic = messages // len(topics)
    files = []
    ts = 1_795_000_000.0
    for k, _ in enumerate(topics):
        lines = []
        for i in range(per_topic):
            p = 10 + (i * 7 + k) % 1000 / 100
            v = 229 + (i * 13 + k) % 300 / 100
            lines.append(
                f'{{"seq":{i},"dev":"meter-{k:03d}","ts":{ts + i * 0.01:.3f},'
                f'"p_kw":{p:.4f},"v":{v:.2f}}}\n'
            )
        path = workdir / f"payload-{k:03d}.txt"
        path.write_text("".join(lines))
        files.append(path)
    return files


def publish_all(port: int, topics: list[str], files: list[Path], timeout: float) -> dict[str, Any]:
    """One ``mosquitto_pub -l -q 1`` per topic, all at once; wait until all have exited."""
    binary = shutil.which("mosquitto_pub")
    if binary is None:
        raise SystemExit("mosquitto_pub not found: run `make mosquitto` (mosquitto-clients)")
    t0 = time.perf_counter()
    procs = []
    for k, (topic, path) in enumerate(zip(topics, files, strict=True)):
        with open(path, "rb") as fh:
            cmd = [binary, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1", "-l"]
            cmd += ["-M", "100", "-i", f"bench-pub-{os.getpid()}-{k}"]
            procs.append(
                subprocess.Popen(cmd, stdin=fh, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
    failed = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode:
            failed.append(err.decode(errors="replace").strip()[:200])
    return {"seconds": time.perf_counter() - t0, "failed": failed}


def mqtt_run(
    side: str, mode: str, i: int, n: int, topics: list[str], files: list[Path], workdir: Path
) -> dict[str, Any]:
    """One run of one subject on a fresh broker."""
    load = os.getloadavg()[0]
    with broker(workdir / f"broker-{mode}-{side}-{i}") as b:
        args: dict[str, Any] = {
            "port": b.port,
            "topics": topics,
            "expected": n,
            "mode": mode,
            "max_seconds": 120,
            "idle": 5.0,
        }
        if side == "daemon":
            args |= {"config": mqtt_config(b.port, topics, 2 * n), "fields": 2}
        with child(f"mqtt-{side}", args, workdir, f"mqtt-{mode}-{side}-{i}") as sub:
            sub.expect("ready", 30)
            pub = publish_all(b.port, topics, files, timeout=120)
            if mode == "backlog":
                sub.send("go")
            res = sub.expect("result", 130)
    if "error" in res:
        raise ChildError(f"mqtt {mode} {side}: {res['error']}")
    got = res["received"]
    rate = (got - 1) / (res["last"] - res["first"]) if got > 1 else 0.0
    run = {
        "rate": rate,
        "received": got,
        "lost": n - got,
        "seconds": res["last"] - res["first"],
        "cpu_s": res["cpu_s"],
        "cpu_us_per_msg": 1e6 * res["cpu_s"] / got if got else None,
        "publisher_seconds": pub["seconds"],
        "publisher_rate": n / pub["seconds"],
        "publisher_failures": pub["failed"],
        "peak_rss_kb": res.get("rss_kb"),
        "loadavg_before": load,
    }
    if side == "daemon":
        hub = res["stats"]["hubs"]["broker"]
        run |= {
            "readings": res["readings"],
            "dropped": hub["dropped"],
            "hub": hub,
            "publisher": res["stats"]["publisher"],
            "warnings": res["warnings"],
            "stop": res["stop"],
        }
    say(
        f"  mqtt {mode:7s} {side:6s} run {i + 1}: {rate:7,.0f} msg/s  received {got:,.0f}/{n:,}"
        f"  ({run['cpu_us_per_msg'] or 0:.0f} us CPU/msg; publishers "
        f"{run['publisher_rate']:,.0f} msg/s)"
        + (f"  dropped {run['dropped']}" if side == "daemon" else "")
    )
    return run


def run_mqtt(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    topics = mqtt_topics(p["topics"])
    n = p["messages"] // len(topics) * len(topics)
    files = write_payloads(workdir, topics, n)
    out: dict[str, Any] = {
        "params": {
            **p,
            "messages": n,
            "qos": 1,
            "payload_bytes": len(files[0].read_text().splitlines()[0]),
            "payload_example": files[0].read_text().splitlines()[0],
        }
    }
    for mode in p["modes"]:
        runs: dict[str, list[dict[str, Any]]] = {"raw": [], "daemon": []}
        for i in range(p["runs"]):
            for side in ("raw", "daemon"):  # interleaved: drift on a shared machine hits both
                runs[side].append(mqtt_run(side, mode, i, n, topics, files, workdir))
        raw = summary([r["rate"] for r in runs["raw"]])
        daemon = summary([r["rate"] for r in runs["daemon"]])
        raw_cpu = summary([r["cpu_us_per_msg"] for r in runs["raw"]])
        daemon_cpu = summary([r["cpu_us_per_msg"] for r in runs["daemon"]])
        out[mode] = {
            "raw": raw | {"cpu_us_per_msg": raw_cpu, "details": runs["raw"]},
            "daemon": daemon | {"cpu_us_per_msg": daemon_cpu, "details": runs["daemon"]},
            "ratio": daemon["median"] / raw["median"],
            "ratios": [d / r for d, r in zip(daemon["runs"], raw["runs"], strict=True)],
            "cpu_ratio": raw_cpu["median"] / daemon_cpu["median"],
            "lost": sum(r["lost"] for side in runs.values() for r in side),
            "dropped": sum(r["dropped"] for r in runs["daemon"]),
            "stop_hangs": stop_hangs(runs["daemon"]),
        }
    return out


# --- Modbus ------------------------------------------------------------------------------------


def ms(text: str) -> float:
    """ "5ms" -> 0.005 (the benchmark's own intervals are all in ms)."""
    assert text.endswith("ms"), text
    return float(text[:-2]) / 1000


def modbus_side(
    side: str, p: dict[str, Any], ports: dict[str, int], mqtt_port: int, workdir: Path,
    name: str, *, interval: str | None = None, warmup: float, window: float,
) -> dict[str, Any]:  # fmt: skip
    """One run of one subject against the running simulator; returns its numbers."""
    shape = {"connections": p["devices"], "units": 1, "fields": p["fields"]}
    args: dict[str, Any] = {"warmup": warmup, "window": window, "max_seconds": 60 + warmup + window}
    if side == "raw":
        args |= {
            "ports": [ports[k] for k in sorted(ports)],
            "units": [1],
            "address": 0,
            "count": 2 * p["fields"],
        }
    else:
        assert interval is not None
        args["publish"] = p["publish"]
        timeout = f"{ms(interval) * p['timeout_share'] * 1000:g}ms"
        args["config"] = modbus_config(
            mqtt_port, ports, interval=interval, timeout=timeout, **shape
        )
    load = os.getloadavg()[0]
    with child(f"modbus-{side}", args, workdir, name) as sub:
        sub.expect("ready", 30)
        res = sub.expect("result", 40 + warmup + window)
    run = {
        "rate": res["polls"] / res["seconds"],
        "polls": res["polls"],
        "errors": res["errors"],
        "seconds": res["seconds"],
        "cpu_s": res["cpu_s"],
        "cpu_share": res["cpu_s"] / res["seconds"],
        "cpu_us_per_poll": 1e6 * res["cpu_s"] / max(res["polls"], 1),
        "loadavg_before": load,
    }
    if side == "raw":
        run["latency_ms"] = {k: v * 1e3 for k, v in res["latency"].items()}
    else:
        run |= {
            "interval": interval,
            "timeout": timeout,
            "offered": p["devices"] / ms(interval),
            "overruns": res["overruns"],
            "readings": res["readings"],
            "bad": res["bad"],
            "hubs": res["modbus_hubs"],
            "last_errors": res["last_errors"],
            "publisher": res["stats"]["publisher"],
            "warnings": res["warnings"],
            "jitter_ms": {k: v * 1e3 for k, v in res["jitter"].items()},
            "stop": res["stop"],
        }
    return run


def run_modbus(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    shape = {"connections": p["devices"], "units": 1, "fields": p["fields"]}
    with broker(workdir / "broker-modbus") as b:
        sim_cfg = modbus_config(None, None, interval="1s", **shape)
        with child("modbus-sim", {"config": sim_cfg, "max_seconds": 900}, workdir) as sim:
            ports = sim.expect("ready", 60)["ports"]
            # The daemon polls on a fixed schedule and a timeout must be shorter than the
            # interval, so it cannot be driven past saturation the way a tight loop can: find
            # the interval (offered load) at which it delivers the most polls/s.
            sweep = []
            interval = p["interval"]
            if interval == "auto":
                for k, iv in enumerate(p["sweep"]):
                    run = modbus_side(
                        "daemon", p, ports, b.port, workdir, f"modbus-sweep-{k}",
                        interval=iv, warmup=1.0, window=p["sweep_window"],
                    )  # fmt: skip
                    sweep.append(run)
                    say(
                        f"  modbus sweep  {iv:>5s}: offered {run['offered']:6,.0f}/s -> "
                        f"{run['rate']:6,.0f} polls/s, errors {run['errors']}, overruns "
                        f"{run['overruns']}, hub connects {run['hubs']['connects']}, CPU "
                        f"{100 * run['cpu_share']:.0f}%"
                    )
                ok = [r for r in sweep if r["errors"] <= 0.01 * max(r["polls"], 1)] or sweep
                interval = max(ok, key=lambda r: r["rate"])["interval"]
                say(f"  modbus: measuring the daemon at interval {interval}")
            runs: dict[str, list[dict[str, Any]]] = {"raw": [], "daemon": []}
            for i in range(p["runs"]):
                for side in ("raw", "daemon"):
                    run = modbus_side(
                        side, p, ports, b.port, workdir, f"modbus-{side}-{i}",
                        interval=interval, warmup=p["warmup"], window=p["window"],
                    )  # fmt: skip
                    runs[side].append(run)
                    say(
                        f"  modbus {side:6s} run {i + 1}: {run['rate']:8,.0f} polls/s  errors "
                        f"{run['errors']}  CPU {100 * run['cpu_share']:.0f}% "
                        f"({run['cpu_us_per_poll']:.0f} us/poll)"
                        + (f"  overruns {run['overruns']}" if side == "daemon" else "")
                    )
            sim_res = sim.finish(15)
    raw = summary([r["rate"] for r in runs["raw"]])
    daemon = summary([r["rate"] for r in runs["daemon"]])
    raw_cpu = summary([r["cpu_us_per_poll"] for r in runs["raw"]])
    daemon_cpu = summary([r["cpu_us_per_poll"] for r in runs["daemon"]])
    return {
        "params": {
            **p,
            "chosen_interval": interval,
            "topology": "one simulated server, port and connection per device",
        },
        "sweep": sweep,
        "raw": raw | {"cpu_us_per_poll": raw_cpu, "details": runs["raw"]},
        "daemon": daemon | {"cpu_us_per_poll": daemon_cpu, "details": runs["daemon"]},
        "ratio": daemon["median"] / raw["median"],
        "ratios": [d / r for d, r in zip(daemon["runs"], raw["runs"], strict=True)],
        "cpu_ratio": raw_cpu["median"] / daemon_cpu["median"],
        "errors": sum(r["errors"] for side in runs.values() for r in side),
        "stop_hangs": stop_hangs([*sweep, *runs["daemon"]]),
        "simulator": sim_res,
    }


# --- jitter ------------------------------------------------------------------------------------


def run_jitter(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    load = os.getloadavg()[0]
    shape = {"connections": p["connections"], "units": p["units"], "fields": p["fields"]}
    with broker(workdir / "broker-jitter") as b:
        sim_cfg = modbus_config(None, None, interval="1s", **shape)
        with child(
            "modbus-sim", {"config": sim_cfg, "max_seconds": 600}, workdir, "jitter-sim"
        ) as sim:
            ports = sim.expect("ready", 60)["ports"]
            cfg = modbus_config(b.port, ports, interval="1s", **shape)
            args = {
                "config": cfg,
                "warmup": p["warmup"],
                "window": p["window"],
                "max_seconds": 60 + p["warmup"] + p["window"],
            }
            with child("jitter", args, workdir) as sub:
                sub.expect("ready", 60)
                res = sub.expect("result", 60 + p["warmup"] + p["window"])
    ms = {k: v * 1e3 for k, v in res["jitter"].items()}
    say(
        f"  jitter: {res['samples']:,} poll starts on {res['devices_sampled']} devices: "
        f"p50 {ms['p50']:.1f} ms, p99 {ms['p99']:.1f} ms, max {ms['max']:.1f} ms; "
        f"overruns {res['overruns']}, errors {res['errors']}"
    )
    return {
        "params": {**p, "devices": p["connections"] * p["units"], "interval": "1s"},
        "jitter_ms": ms,
        "loop_lag_ms": {k: v * 1e3 for k, v in res["loop_lag"].items()},
        "gc": res["gc"],
        "samples": res["samples"],
        "devices_sampled": res["devices_sampled"],
        "polls": res["polls"],
        "errors": res["errors"],
        "overruns": res["overruns"],
        "readings": res["readings"],
        "cpu_s": res["cpu_s"],
        "seconds": res["seconds"],
        "cpu_share": res["cpu_s"] / res["seconds"],
        "publisher": res["stats"]["publisher"],
        "warnings": res["warnings"],
        "stop": res["stop"],
        "loadavg_before": load,
    }


# --- RSS ---------------------------------------------------------------------------------------


def run_rss(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    with child("bare", {}, workdir) as c:
        bare = c.expect("result", 60)
    shape = {"connections": p["connections"], "units": p["units"], "fields": p["fields"]}
    with broker(workdir / "broker-rss") as b:
        sim_cfg = modbus_config(None, None, interval="1s", **shape)
        with child(
            "modbus-sim", {"config": sim_cfg, "max_seconds": 600}, workdir, "rss-sim"
        ) as sim:
            ports = sim.expect("ready", 60)["ports"]
            cfg = modbus_config(b.port, ports, interval="1s", **shape)
            args = {"config": cfg, "warmup": p["warmup"], "window": p["window"], "max_seconds": 120}
            with child("rss", args, workdir) as sub:
                sub.expect("ready", 60)
                res = sub.expect("result", 60 + p["warmup"] + p["window"])
    samples = res["rss_kb_samples"]
    peak_kb = max(samples)
    out = {
        "params": {**p, "points": res["points"], "interval": "1s"},
        "rss_mb": peak_kb * 1024 / 1e6,
        "rss_mib": peak_kb / 1024,
        "rss_kb_samples": samples,
        "hwm_kb": res["after"]["VmHWM"],
        "rss_anon_kb": res["after"].get("RssAnon"),
        "before_floor_kb": res["before_floor"]["VmRSS"],
        "bare_import_kb": bare["after_import"]["VmRSS"],
        "bare_python_kb": bare["python_only"]["VmRSS"],
        "polls": res["polls"],
        "errors": res["errors"],
        "readings": res["readings"],
        "points": res["points"],
        "stop": res["stop"],
    }
    say(
        f"  rss: {res['points']} points: {out['rss_mb']:.1f} MB (VmRSS max of {len(samples)} "
        f"samples; VmHWM {out['hwm_kb'] / 1024:.1f} MiB); bare `import floorctl.daemon` "
        f"{out['bare_import_kb'] * 1024 / 1e6:.1f} MB; errors {res['errors']}"
    )
    return out


# --- demo floor --------------------------------------------------------------------------------

DEMO_CONFIG = ROOT / "devices.toml"
DEMO_PORT_ENV = ("FLOORCTL_MODBUS_PORT", "FLOORCTL_MODBUS_PORT_2", "FLOORCTL_SICS_PORT")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports of 127.0.0.1 (all held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_ports(ports: list[int], proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until every port of 127.0.0.1 accepts a connection; fail at once if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    left = list(ports)
    while left:
        if proc.poll() is not None:
            raise ChildError(f"floorctl simulate exited ({proc.returncode}) before listening")
        if time.monotonic() > deadline:
            raise ChildError(f"floorctl simulate: ports {left} not listening within {timeout} s")
        try:
            socket.create_connection(("127.0.0.1", left[0]), timeout=0.5).close()
            left.pop(0)
        except OSError:
            time.sleep(0.05)


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulate(env: dict[str, str], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``floorctl simulate devices.toml`` in a child process (SIGTERM stops it)."""
    binary = Path(sys.executable).parent / "floorctl"
    cmd = [str(binary), "simulate", str(DEMO_CONFIG)]
    with open(workdir / "demo-simulate.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_demo(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The demo floor (root devices.toml: 21 devices of 9 kinds, 84 points) served by
    ``floorctl simulate`` in one process, the daemon in another, a private mosquitto.

    There is no raw-library baseline for a mixed floor (Modbus at 1-5 s, MT-SICS over TCP,
    MQTT gateways): the numbers are absolute, with CPU per reading as the comparable cost."""
    load = os.getloadavg()[0]
    with broker(workdir / "broker-demo") as b:
        ports = dict(zip(DEMO_PORT_ENV, map(str, free_ports(len(DEMO_PORT_ENV))), strict=True))
        env = {"FLOORCTL_MQTT_PORT": str(b.port), **ports}
        with simulate(env, workdir) as sim:
            wait_ports([int(v) for v in ports.values()], sim, 30)
            args = {
                "config_path": str(DEMO_CONFIG),
                "warmup": p["warmup"],
                "window": p["window"],
                "max_seconds": 60 + p["warmup"] + p["window"],
            }
            with child("demo-daemon", args, workdir, "demo-daemon", env=env) as sub:
                sub.expect("ready", 60)
                sub.expect("window", 30 + p["warmup"])
                sim_cpu0 = proc_cpu_seconds(sim.pid)
                res = sub.expect("result", 60 + p["window"])
                sim_cpu1 = proc_cpu_seconds(sim.pid)
            sim_exit = sim.poll()
    seconds = res["seconds"]
    readings = res["readings"]
    samples = res["rss_kb_samples"]
    out = {
        "params": {
            **p,
            "config": "devices.toml",
            "devices": len(res["devices"]),
            "points": res["points_total"],
            "topology": "floorctl simulate (one process) -> private mosquitto; daemon in another",
            "baseline": "none: no raw-library equivalent of a mixed floor (absolute numbers)",
        },
        "readings_per_s": readings / seconds,
        "readings": readings,
        "bad": res["bad"],
        "by_quality": res["by_quality"],
        "historical": res["historical"],
        "points_total": res["points_total"],
        "points_seen": res["points_seen"],
        "points_good": res["points_good"],
        "points_never_good": res["points_never_good"],
        "cpu_s": res["cpu_s"],
        "seconds": seconds,
        "cpu_percent": 100 * res["cpu_s"] / seconds,
        "cpu_us_per_reading": 1e6 * res["cpu_s"] / readings if readings else None,
        "rss_mb": max(samples) * 1024 / 1e6 if samples else None,
        "rss_kb_samples": samples,
        "hwm_kb": res["after"].get("VmHWM"),
        "polled_devices": res["polled_devices"],
        "jitter_ms": {k: v * 1e3 for k, v in res["jitter"].items()},
        "jitter_samples": res["jitter_samples"],
        "jitter_worst_devices": [
            {"device": d["device"], "max_ms": d["max"] * 1e3} for d in res["jitter_worst_devices"]
        ],
        "polls": res["polls"],
        "errors": res["errors"],
        "overruns": res["overruns"],
        "publisher": res["publisher"],
        "publisher_total": res["publisher_total"],
        "publish_backlog": res["publish_backlog"],
        "hubs": res["hubs"],
        "hubs_total": res["hubs_total"],
        "dropped": {n: h["dropped"] for n, h in res["hubs"].items() if "dropped" in h},
        "not_online": res["not_online"],
        "device_states": res["device_states"],
        "with_errors": res["with_errors"],
        "stale_points": res["stale_points"],
        "devices": res["devices"],
        "gc": res["gc"],
        "warnings": res["warnings"],
        "stop": res["stop"],
        "simulator_cpu_percent": (
            100 * (sim_cpu1 - sim_cpu0) / seconds
            if sim_cpu0 is not None and sim_cpu1 is not None
            else None
        ),
        "simulator_exit": sim_exit,
        "loadavg_before": load,
    }
    pub = out["publisher"]
    say(
        f"  demo: {readings:,} readings in {seconds:.1f} s = {out['readings_per_s']:.1f}/s "
        f"({res['bad']} not good); points good {res['points_good']}/{res['points_total']}; "
        f"CPU {out['cpu_percent']:.1f}% ({out['cpu_us_per_reading'] or 0:.0f} us/reading); "
        f"RSS {out['rss_mb'] or 0:.1f} MB"
    )
    say(
        f"  demo: p99 poll-start jitter {out['jitter_ms']['p99']:.1f} ms (max "
        f"{out['jitter_ms']['max']:.1f}) over {res['polled_devices']} polled devices; "
        f"published {pub.get('published')}, coalesced {pub.get('coalesced')}, suppressed "
        f"{pub.get('suppressed')}; dropped {out['dropped']}; errors {res['errors']}, overruns "
        f"{res['overruns']}; simulator CPU {out['simulator_cpu_percent'] or 0:.1f}%"
    )
    if res["not_online"]:
        say(f"  demo: not online: {res['not_online']}")
    if res["points_never_good"]:
        say(f"  demo: points never good in the window: {', '.join(res['points_never_good'])}")
    return out


# --- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    mosq = None
    with contextlib.suppress(Exception):
        from tests.helpers import find_mosquitto

        out = subprocess.run(
            [find_mosquitto() or "mosquitto", "-h"], capture_output=True, text=True, timeout=5
        )
        mosq = (out.stdout or out.stderr).splitlines()[0]
    load = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
        "versions": {
            n: version(n) for n in ("floorctl", "aiomqtt", "paho-mqtt", "pymodbus", "attrs")
        },
        "mosquitto": mosq,
        "commit": git_head(),
    }


def git_head() -> dict[str, Any] | None:
    """The commit measured, and whether floorctl/ or simulators/ differ from it (read-only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "floorctl", "simulators", "devices.toml"],
            cwd=ROOT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split("\n")  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"head": head, "modified": [line[3:] for line in dirty if line.strip()]}


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "mqtt" in results:
        for mode in ("live", "backlog"):
            r = results["mqtt"].get(mode)
            if r is None:
                continue
            primary = mode == "live"
            out.append(
                {
                    "metric": f"MQTT ingest, msg/s ({mode})",
                    "value": fmt_range(r["daemon"]),
                    "baseline": fmt_range(r["raw"]) + " raw aiomqtt",
                    "ratio": r["ratio"],
                    "target": ">= 0.6 x" if primary else "(>= 0.6 x)",
                    "met": r["ratio"] >= 0.6 and r["lost"] == 0,
                }
            )
    if "modbus" in results:
        r = results["modbus"]
        out.append(
            {
                "metric": "Modbus polls/s",
                "value": fmt_range(r["daemon"]),
                "baseline": fmt_range(r["raw"]) + " raw pymodbus",
                "ratio": r["ratio"],
                "target": ">= 0.5 x",
                "met": r["ratio"] >= 0.5,
            }
        )
    if "jitter" in results:
        r = results["jitter"]
        out.append(
            {
                "metric": f"p99 poll-start jitter, {r['params']['devices']} dev @ 1 s",
                "value": f"{r['jitter_ms']['p99']:.1f} ms",
                "baseline": f"p50 {r['jitter_ms']['p50']:.1f}, max {r['jitter_ms']['max']:.1f} ms",
                "ratio": None,
                "target": "<= 50 ms",
                "met": r["jitter_ms"]["p99"] <= 50.0,
            }
        )
    if "rss" in results:
        r = results["rss"]
        out.append(
            {
                "metric": f"RSS, {r['points']:,} points",
                "value": f"{r['rss_mb']:.1f} MB",
                "baseline": f"{r['bare_import_kb'] * 1024 / 1e6:.1f} MB bare import",
                "ratio": None,
                "target": "<= 120 MB",
                "met": r["rss_mb"] <= 120.0,
            }
        )
    if "demo" in results:
        r = results["demo"]
        out.append(
            {
                "metric": f"demo floor, {r['params']['devices']} dev / {r['points_total']} points",
                "value": f"{r['readings_per_s']:.1f} readings/s, CPU {r['cpu_percent']:.1f}%",
                "baseline": f"none; {r['cpu_us_per_reading'] or 0:.0f} us CPU/reading",
                "ratio": None,
                "target": "(none)",
                "met": None,
            }
        )
    return out


def print_table(table: list[dict[str, Any]]) -> None:
    head = ("metric", "floorctl", "baseline", "ratio", "target", "")
    cells = [
        (
            t["metric"],
            t["value"],
            t["baseline"],
            "" if t["ratio"] is None else f"{t['ratio']:.2f}",
            t["target"],
            "-" if t["met"] is None else "MET" if t["met"] else "NOT MET",
        )
        for t in table
    ]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    for line in [head, *cells]:
        say("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))


# --- main --------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "mqtt": run_mqtt,
    "modbus": run_modbus,
    "jitter": run_jitter,
    "rss": run_rss,
    "demo": run_demo,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer messages, shorter windows, 1 run")
    ap.add_argument(
        "--only", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS)
    )
    ap.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results file (default {RESULTS.relative_to(ROOT)}; a --quick run writes none)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument(
        "--patches",
        default="",
        help="experiment: monkeypatch the daemon with proposed fixes (see ingest_patches.py); "
        'the results go under "experiments" in the results file, apart from the real ones',
    )
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a parameter, e.g. --set modbus.interval=3ms")  # fmt: skip
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    params = json.loads(json.dumps(QUICK if a.quick else FULL))
    for item in a.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        old = params[section][name]
        if isinstance(old, list):
            params[section][name] = [v for v in value.split(",") if v]
        elif isinstance(old, str):
            params[section][name] = value
        elif isinstance(old, bool):
            params[section][name] = value.lower() in ("1", "true", "yes", "on")
        else:
            params[section][name] = type(old)(value)
    PATCHES[:] = [x.strip() for x in a.patches.split(",") if x.strip()]
    default_out = None if a.quick else RESULTS
    output = a.output if a.output is not None else default_out

    started = time.monotonic()
    info = machine()
    say(
        f"floorctl ingest benchmark ({'quick' if a.quick else 'full'}): {info['cpu_count']} CPUs, "
        f"Python {info['python']}, aiomqtt {info['versions']['aiomqtt']}, "
        f"pymodbus {info['versions']['pymodbus']}, load {info['loadavg_at_start'][0]:.2f}"
        + (f"; PATCHED floorctl: {','.join(PATCHES)}" if PATCHES else "")
    )
    results: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="floorctl-bench-"))
    try:
        for name in only:
            say(f"{name}:")
            t0 = time.monotonic()
            results[name] = SECTIONS[name](params[name], workdir)
            results[name]["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            results[name]["quick"] = a.quick
            results[name]["patches"] = list(PATCHES)
            results[name]["section_seconds"] = time.monotonic() - t0
    finally:
        if a.keep:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    table = rows(results)
    say("")
    print_table(table)
    say(f"\n{time.monotonic() - started:.0f} s in all")

    if output is not None:
        doc: dict[str, Any] = {}
        if output.exists():
            with contextlib.suppress(ValueError):
                doc = json.loads(output.read_text())  # history, experiments, sections not re-run
        experiment = bool(PATCHES or a.set)
        if set(only) == set(SECTIONS) and not experiment and doc.get("sections"):
            # a complete run replaces the last one, which moves to "history" (oldest first)
            old_machine = doc.get("machine", {})
            doc.setdefault("history", []).append(
                {
                    "note": "the previous complete run, moved here by the next one",
                    "written_at": doc.get("written_at"),
                    "commit": old_machine.get("commit"),
                    "loadavg_at_start": old_machine.get("loadavg_at_start"),
                    "summary": doc.get("summary"),
                    "sections": doc["sections"],
                }
            )
            doc["sections"] = {}
        written = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for section in results.values():  # each section says what it measured, and where
            section["machine"] = info
        if experiment:
            # kept apart from the benchmark as defined; the top-level "machine" and
            # "written_at" stay those of the real sections
            key = ",".join([*PATCHES, *a.set])
            doc.setdefault("experiments", {}).setdefault(key, {}).update(results)
        else:
            doc.setdefault("sections", {}).update(results)
            doc |= {"written_at": written, "machine": info}
        doc |= {
            "benchmark": "benchmarks/ingest.py",
            "targets": {k: {"what": w, "op": op, "value": v} for k, (w, op, v) in TARGETS.items()},
            "summary": rows(doc.get("sections", {})),
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(doc, indent=1) + "\n")
        say(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

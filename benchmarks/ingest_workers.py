"""Child processes of benchmarks/ingest.py (one role per process, so each gets a core).

Run as ``python benchmarks/ingest_workers.py ROLE 'JSON-ARGS'``. A worker writes protocol lines
to stdout, each ``@@ {json}``: ``{"event": "ready", ...}`` once it is listening or subscribed,
then ``{"event": "result", ...}``. It stops by itself (``max_seconds``) or when its stdin
closes or says ``stop``. Logs go to stderr (the parent sends them to a file).

Roles:

- ``mqtt-raw``: a bare aiomqtt client subscribed to the bench topics; counts messages.
- ``mqtt-daemon``: a floorctl ``Floor`` with one mqtt_json device per topic; counts readings.
- ``modbus-sim``: the simulators' ``ModbusSimServer``, one per ``[[modbus]]`` connection.
- ``modbus-raw``: one raw ``AsyncModbusTcpClient`` per connection reading in a tight loop.
- ``modbus-daemon``: a floorctl ``Floor`` polling the same devices; counts polls.
- ``jitter``: a ``Floor`` with many devices at 1 s; poll-start lateness from the counters.
- ``rss``: a ``Floor`` with 1,000 points; VmRSS of this process over time.
- ``demo-daemon``: the root devices.toml (the demo floor) against ``floorctl simulate``:
  readings, points, CPU, RSS, jitter, publisher and hub counters over a window.
- ``bare``: ``import floorctl.daemon`` and nothing else; VmRSS.

Every role that runs a ``Floor`` starts it as ``floorctl run`` does, ``gc.freeze()`` included
(``start_floor``).

Only the standard library is imported at module level, so ``rss`` and ``bare`` measure floorctl
and not the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import resource
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.worker")


class _CountWarnings(logging.Handler):
    """Counts WARNING+ records per logger: how much a run logs is part of what it costs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.name] = self.counts.get(record.name, 0) + 1


WARNINGS = _CountWarnings()


# --- protocol --------------------------------------------------------------------------------


def emit(event: str, **data: Any) -> None:
    sys.stdout.write("@@ " + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def vm_status() -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of this process, in kB."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr (on SIGUSR2: where is a worker waiting?)."""
    for task in asyncio.all_tasks():
        print(f"--- {task!r}"[:300], file=sys.stderr)
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                print(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}",
                      file=sys.stderr)  # fmt: skip
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        if coro is None and hasattr(task, "_fut_waiter"):
            print(f"    waiting on {task._fut_waiter!r}"[:300], file=sys.stderr)
    import gc
    import types

    for obj in gc.get_objects():
        if isinstance(obj, types.AsyncGeneratorType) and obj.ag_await is not None:
            print(f"--- async generator {obj.ag_code.co_qualname}", file=sys.stderr)
            coro = obj.ag_await
            while coro is not None:
                frame = getattr(coro, "cr_frame", None)
                if frame is not None:
                    print(f"    {frame.f_code.co_filename}:{frame.f_lineno} "
                          f"{frame.f_code.co_name}", file=sys.stderr)  # fmt: skip
                nxt = getattr(coro, "cr_await", None)
                if nxt is None:
                    print(f"    awaiting {coro!r}"[:300], file=sys.stderr)
                coro = nxt
    sys.stderr.flush()


GO = "go"


def watch_stdin(stop: asyncio.Event, go: asyncio.Event | None = None) -> None:
    """Set ``stop`` when stdin says "stop" or closes (the parent went away); ``go`` on "go"."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, dump_tasks)

    def reader() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
            if line.strip() == GO and go is not None:
                loop.call_soon_threadsafe(go.set)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=reader, daemon=True, name="stdin-watch").start()


def percentiles(values: list[float], ps: tuple[float, ...] = (50, 99)) -> dict[str, float]:
    if not values:
        return {f"p{p:g}": float("nan") for p in ps} | {"max": float("nan")}
    s = sorted(values)
    out = {}
    for p in ps:
        k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
        out[f"p{p:g}"] = s[k]
    out["max"] = s[-1]
    out["mean"] = statistics.fmean(s)
    return out


def watch_gc() -> list[tuple[int, float]]:
    """Record (generation, seconds) of every cyclic-GC pause from now on."""
    import gc

    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(cb)
    return pauses


def gc_summary(pauses: list[tuple[int, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for gen in (0, 1, 2):
        d = [p for g, p in pauses if g == gen]
        out[f"gen{gen}"] = {"count": len(d), "max_ms": 1e3 * max(d, default=0.0),
                            "total_ms": 1e3 * sum(d)}  # fmt: skip
    return out


def make_floor(
    config_text: str | None,
    *,
    sinks: list[Any] | None = None,
    publish: bool = True,
    path: str | None = None,
) -> Any:
    """A Floor from devices.toml text (no environment), or from the file at ``path`` with
    ``${VAR}`` expanded from this process's environment, as ``floorctl run FILE`` loads it."""
    from floorctl.config import load_config, parse_config
    from floorctl.daemon import Floor
    from floorctl.pluginmanager import collect_kinds, get_plugin_manager

    pm = get_plugin_manager(autoload=False)
    kinds = collect_kinds(pm)
    if path is not None:
        config = load_config(path, kinds)
    else:
        assert config_text is not None
        config = parse_config(config_text.encode(), kinds, env={})
    return Floor(config, pm, kinds, sinks=sinks, publish=publish)


async def start_floor(floor: Any, timeout: float = 15.0) -> asyncio.Task[None]:
    """Start ``floor.run()`` the way ``floorctl run`` does and wait until its state hub is up.

    ``floorctl run`` (``floorctl/cli.py`` ``_run_floor``) does ``gc.collect(); gc.freeze()``
    between building the Floor and running it, so everything built at start-up stays out of
    the collector's full passes; the workers build the Floor directly and do the same here.
    """
    import gc

    gc.collect()
    gc.freeze()
    task = asyncio.create_task(floor.run(), name="floor")
    deadline = time.monotonic() + timeout
    while not floor.state_hub.connected.is_set():
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise RuntimeError("the floor did not connect to the broker")
        await asyncio.sleep(0.02)
    return task


async def stop_floor(floor: Any, task: asyncio.Task[None], timeout: float = 5.0) -> dict[str, Any]:
    """``floor.stop()`` and wait at most ``timeout`` s for ``run()`` to return.

    Not ``asyncio.wait_for``: on Python 3.11 that waits for a cancelled task without limit, and
    a Floor whose device task lost its cancellation never finishes (see docs/performance.md).
    """
    t0 = time.monotonic()
    floor.stop()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    info: dict[str, Any] = {"stopped": bool(done), "seconds": time.monotonic() - t0}
    if not done:
        stuck = [
            t.get_name()
            for t in asyncio.all_tasks()
            if t.get_name().startswith("device ") and not t.done()
        ]
        info["stuck_tasks"] = stuck
        log.warning("the floor did not stop within %.0f s; stuck: %s", timeout, stuck[:10])
        dump_tasks()
    return info


def exit_if_stuck(stop: dict[str, Any]) -> None:
    """After the result is out: a floor that did not stop would also hang asyncio.run()."""
    if not stop["stopped"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# --- MQTT ------------------------------------------------------------------------------------


async def wait_go(stop: asyncio.Event, go: asyncio.Event, args: dict[str, Any]) -> bool:
    """Backlog mode: wait until the parent has published everything ("go")."""
    waiters = [asyncio.ensure_future(go.wait()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waiters, timeout=args["max_seconds"], return_when="FIRST_COMPLETED")
    for w in waiters:
        w.cancel()
    return go.is_set() and not stop.is_set()


async def mqtt_raw(args: dict[str, Any]) -> None:
    """aiomqtt with its defaults (unbounded queue), QoS 1 on each topic; just count.

    ``mode`` "live": subscribed while the publishers run. "backlog": subscribe with a
    persistent session, disconnect, let the parent publish everything ("go"), reconnect and
    subscribe again and drain what the broker queued (no publisher running meanwhile).
    """
    import aiomqtt

    stop, go = asyncio.Event(), asyncio.Event()
    watch_stdin(stop, go)
    backlog = args.get("mode") == "backlog"
    expected: int = args["expected"]
    count = 0
    first = last = 0.0
    cpu0 = cpu1 = 0.0
    identity = {"identifier": f"bench-raw-{os.getpid()}", "clean_session": not backlog}
    topics = [(t, 1) for t in args["topics"]]
    if backlog:
        async with aiomqtt.Client("127.0.0.1", args["port"], **identity) as client:
            await client.subscribe(topics)
        emit("ready")
        if not await wait_go(stop, go, args):
            return
    async with aiomqtt.Client("127.0.0.1", args["port"], **identity) as client:
        # Subscribe again on reconnect, as the daemon's MqttHub does: mosquitto flushes a
        # resumed session's queue at once on SUBSCRIBE, and paces it per PUBACK otherwise.
        await client.subscribe(topics)
        if not backlog:
            emit("ready")

        async def consume() -> None:
            nonlocal count, first, last, cpu0, cpu1
            async for _message in client.messages:
                now = time.perf_counter()
                if count == 0:
                    first, cpu0 = now, cpu_seconds()
                count += 1
                last = now
                if count >= expected:
                    cpu1 = cpu_seconds()
                    return

        consumer = asyncio.create_task(consume())
        await wait_done(consumer, stop, lambda: count, lambda: last, args)
        if not cpu1:
            cpu1 = cpu_seconds()
    emit(
        "result",
        received=count,
        first=first,
        last=last,
        cpu_s=cpu1 - cpu0,
        rss_kb=vm_status().get("VmHWM"),
    )


async def wait_done(
    task: asyncio.Task[None], stop: asyncio.Event, count: Any, last: Any, args: dict[str, Any]
) -> None:
    """Until ``task`` ends, ``stop`` is set, nothing arrived for ``idle`` s, or max_seconds."""
    deadline = time.monotonic() + args["max_seconds"]
    idle = args.get("idle", 5.0)
    while not task.done() and not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if count() and time.perf_counter() - last() > idle:
            log.warning("nothing received for %.0f s: giving up with %d", idle, count())
            break
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def mqtt_daemon(args: dict[str, Any]) -> None:
    """A Floor with one mqtt_json device per topic; counts GOOD readings at the sinks.

    Backlog mode: a first Floor subscribes (persistent session, the daemon's default) and
    stops; after "go" a second Floor with the same client id drains the queued messages.
    """
    from floorctl.model import Quality

    stop, go = asyncio.Event(), asyncio.Event()
    watch_stdin(stop, go)
    fields: int = args["fields"]
    expected_readings = args["expected"] * fields
    count = 0
    first = last = 0.0
    cpu0 = cpu1 = 0.0
    done = asyncio.Event()

    def sink(r: Any) -> None:
        nonlocal count, first, last, cpu0, cpu1
        if r.quality is not Quality.GOOD:
            return
        now = time.perf_counter()
        if count == 0:
            first, cpu0 = now, cpu_seconds()
        count += 1
        last = now
        if count >= expected_readings:
            cpu1 = cpu_seconds()
            done.set()

    async def subscribed(floor: Any) -> None:
        hub = floor.state_hub
        deadline = time.monotonic() + 10
        while len(hub._qos) < len(args["topics"]) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # let the SUBACKs of late subscriptions arrive

    publish = args.get("publish", True)
    if args.get("mode") == "backlog":
        floor = make_floor(args["config"], publish=publish)
        task = await start_floor(floor)
        await subscribed(floor)
        first_stop = await stop_floor(floor, task)
        emit("ready")
        if not first_stop["stopped"] or not await wait_go(stop, go, args):
            emit("result", error="first floor did not stop", stop=first_stop)
            exit_if_stuck(first_stop)
            return
        floor = make_floor(args["config"], sinks=[sink], publish=publish)
        task = await start_floor(floor)
    else:
        floor = make_floor(args["config"], sinks=[sink], publish=publish)
        task = await start_floor(floor)
        await subscribed(floor)
        emit("ready")
    waiter = asyncio.create_task(done.wait())
    await wait_done(waiter, stop, lambda: count, lambda: last, args)
    if not cpu1:
        cpu1 = cpu_seconds()
    # let the state publisher finish its backlog (not part of the measured window)
    t0 = time.monotonic()
    while floor.publisher and floor.publisher.backlog and time.monotonic() - t0 < 5:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    stats = floor.stats()
    stop_info = await stop_floor(floor, task)
    emit(
        "result",
        readings=count,
        received=count / fields,
        first=first,
        last=last,
        cpu_s=cpu1 - cpu0,
        stats=stats,
        rss_kb=vm_status().get("VmHWM"),
        warnings=WARNINGS.counts,
        stop=stop_info,
    )
    exit_if_stuck(stop_info)


# --- Modbus ----------------------------------------------------------------------------------


async def modbus_sim(args: dict[str, Any]) -> None:
    """One ModbusSimServer per [[modbus]] connection of the config, each on a free port."""
    from floorctl.config import parse_config
    from floorctl.pluginmanager import collect_kinds, get_plugin_manager
    from simulators.modbus_device import ModbusSimServer

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    kinds = collect_kinds(get_plugin_manager(autoload=False))
    config = parse_config(args["config"].encode(), kinds, env={})
    servers = []
    for conn in config.modbus:
        devices = [d for d in config.devices if d.via == conn.name]
        servers.append(ModbusSimServer(conn, devices, seed=1, host="127.0.0.1", port=0))
    for s in servers:
        await s.start()
    emit("ready", ports={s.connection.name: s.port for s in servers})
    cpu0 = cpu_seconds()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args["max_seconds"])
    cpu = cpu_seconds() - cpu0
    for s in servers:
        await s.stop()
    emit("result", cpu_s=cpu, writes=sum(s.writes for s in servers))


async def modbus_raw(args: dict[str, Any]) -> None:
    """One AsyncModbusTcpClient per connection, each reading its units' blocks in turn."""
    from pymodbus.client import AsyncModbusTcpClient

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    warmup, window = args["warmup"], args["window"]
    address, count = args["address"], args["count"]
    clients = [
        AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0, reconnect_delay=0)
        for port in args["ports"]
    ]
    for c in clients:
        if not await c.connect():
            raise RuntimeError(f"cannot connect to port {c.comm_params.port}")
    emit("ready")
    polls = 0
    errors = 0
    lat: list[float] = []
    measuring = False
    loop = asyncio.get_running_loop()
    end = loop.time() + warmup + window

    async def run(client: AsyncModbusTcpClient) -> None:
        nonlocal polls, errors
        units = args["units"]
        i = 0
        while loop.time() < end and not stop.is_set():
            unit = units[i % len(units)]
            i += 1
            t0 = time.perf_counter()
            try:
                rr = await client.read_holding_registers(address, count=count, device_id=unit)
                if rr.isError():
                    errors += 1
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
            polls += 1
            if measuring and len(lat) < 200_000:
                lat.append(time.perf_counter() - t0)

    tasks = [asyncio.create_task(run(c)) for c in clients]
    await asyncio.sleep(warmup)
    measuring = True
    p0, e0, c0, t0 = polls, errors, cpu_seconds(), time.perf_counter()
    await asyncio.sleep(window)
    p1, e1, c1, t1 = polls, errors, cpu_seconds(), time.perf_counter()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        c.close()
    emit(
        "result",
        polls=p1 - p0,
        errors=e1 - e0,
        seconds=t1 - t0,
        cpu_s=c1 - c0,
        latency=percentiles(lat),
    )


def _poll_totals(floor: Any) -> dict[str, int]:
    tot = {"polls": 0, "errors": 0, "overruns": 0, "readings": 0, "bad": 0}
    for rt in floor.devices.values():
        c = rt.ctx.counters
        tot["polls"] += c.polls
        tot["errors"] += c.errors
        tot["overruns"] += c.overruns
        tot["readings"] += c.readings
        tot["bad"] += c.bad
    return tot


async def modbus_daemon(args: dict[str, Any]) -> None:
    """A Floor polling the simulated devices; polls, errors and CPU over a window."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    floor = make_floor(args["config"], publish=args.get("publish", True))
    task = await start_floor(floor)
    emit("ready")
    await asyncio.sleep(args["warmup"])
    a, c0, t0 = _poll_totals(floor), cpu_seconds(), time.perf_counter()
    for rt in floor.devices.values():
        rt.ctx.counters.jitter.clear()
    await asyncio.sleep(args["window"])
    b, c1, t1 = _poll_totals(floor), cpu_seconds(), time.perf_counter()
    jitter = [j for rt in floor.devices.values() for j in rt.ctx.counters.jitter]
    stats = floor.stats()
    modbus_hubs = {
        k: sum(h[k] for n, h in stats["hubs"].items() if n != "broker")
        for k in ("requests", "failures", "exceptions", "connects", "disconnects")
    }
    last_errors = sorted(
        {rt.ctx.counters.last_error for rt in floor.devices.values() if rt.ctx.counters.last_error}
    )[:5]
    stop_info = await stop_floor(floor, task)
    emit(
        "result",
        **{k: b[k] - a[k] for k in b},
        seconds=t1 - t0,
        cpu_s=c1 - c0,
        jitter=percentiles(jitter),
        stats=stats,
        modbus_hubs=modbus_hubs,
        last_errors=last_errors,
        warnings=WARNINGS.counts,
        stop=stop_info,
    )
    exit_if_stuck(stop_info)


async def jitter(args: dict[str, Any]) -> None:
    """Many devices at a slow interval: poll-start lateness after a warm-up."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    floor = make_floor(args["config"], publish=True)
    task = await start_floor(floor)
    emit("ready")
    await asyncio.sleep(args["warmup"])
    a, c0, t0 = _poll_totals(floor), cpu_seconds(), time.perf_counter()
    for rt in floor.devices.values():
        rt.ctx.counters.jitter.clear()
    gc_pauses = watch_gc()
    # watch the loop itself too: how late does a 10 ms sleep wake up?
    loop_lag: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + args["window"]
    while loop.time() < end and not stop.is_set():
        s = loop.time()
        await asyncio.sleep(0.01)
        loop_lag.append(loop.time() - s - 0.01)
    b, c1, t1 = _poll_totals(floor), cpu_seconds(), time.perf_counter()
    per_device = [list(rt.ctx.counters.jitter) for rt in floor.devices.values()]
    values = [j for d in per_device for j in d]
    stats = floor.stats()
    stop_info = await stop_floor(floor, task)
    emit(
        "result",
        **{k: b[k] - a[k] for k in b},
        seconds=t1 - t0,
        cpu_s=c1 - c0,
        samples=len(values),
        devices_sampled=sum(1 for d in per_device if d),
        jitter=percentiles(values, (50, 90, 99, 99.9)),
        loop_lag=percentiles(loop_lag, (50, 99)),
        gc=gc_summary(gc_pauses),
        stats=stats,
        warnings=WARNINGS.counts,
        stop=stop_info,
    )
    exit_if_stuck(stop_info)


async def rss(args: dict[str, Any]) -> None:
    """A Floor with 1,000 points: VmRSS of this process once a second after warm-up."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    before = vm_status()
    floor = make_floor(args["config"], publish=True)
    task = await start_floor(floor)
    emit("ready")
    await asyncio.sleep(args["warmup"])
    a = _poll_totals(floor)
    samples = []
    for _ in range(int(args["window"])):
        if stop.is_set():
            break
        await asyncio.sleep(1.0)
        samples.append(vm_status()["VmRSS"])
    b = _poll_totals(floor)
    after = vm_status()
    stats = floor.stats()
    points = sum(len(d.config.fields) for d in floor.devices.values())
    stop_info = await stop_floor(floor, task)
    emit(
        "result",
        **{k: b[k] - a[k] for k in b},
        points=points,
        rss_kb_samples=samples,
        before_floor=before,
        after=after,
        stats=stats,
        stop=stop_info,
    )
    exit_if_stuck(stop_info)


async def demo_daemon(args: dict[str, Any]) -> None:
    """The demo floor (the root devices.toml, ports from the environment) against
    ``floorctl simulate``: what it ingests, what it costs, and what is not right, over a window
    after a warm-up. Every number is a difference over the window unless named a total."""
    from floorctl.model import Quality

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    watch_stdin(stop)
    measuring = False
    by_quality: dict[str, int] = {}
    good_points: set[tuple[str, str]] = set()
    seen_points: set[tuple[str, str]] = set()
    historical = 0

    def sink(r: Any) -> None:
        nonlocal historical
        if not measuring:
            return
        key = (r.device, r.point)
        seen_points.add(key)
        by_quality[str(r.quality)] = by_quality.get(str(r.quality), 0) + 1
        if r.historical:
            historical += 1
        if r.quality is Quality.GOOD:
            good_points.add(key)

    floor = make_floor(None, sinks=[sink], publish=True, path=args["config_path"])
    all_points = [(d.config.id, f.name) for d in floor.devices.values() for f in d.config.fields]
    task = await start_floor(floor)
    emit("ready")
    await asyncio.sleep(args["warmup"])

    def device_counters() -> dict[str, dict[str, int]]:
        return {
            rid: {
                "polls": rt.ctx.counters.polls,
                "errors": rt.ctx.counters.errors,
                "overruns": rt.ctx.counters.overruns,
                "readings": rt.ctx.counters.readings,
                "bad": rt.ctx.counters.bad,
            }
            for rid, rt in floor.devices.items()
        }

    def hub_counters() -> dict[str, dict[str, Any]]:
        return {name: hub.counters.as_payload() for name, hub in floor.hubs.items()}

    def publisher_counters() -> dict[str, int]:
        return floor.publisher.counters.as_payload() if floor.publisher else {}

    def delta(b: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
        return {k: b[k] - a[k] if isinstance(b[k], int | float) else b[k] for k in b}

    for rt in floor.devices.values():
        rt.ctx.counters.jitter.clear()
    dev0, hubs0, pub0 = device_counters(), hub_counters(), publisher_counters()
    total0, bad0 = floor.readings_total, floor.bad_total
    gc_pauses = watch_gc()
    emit("window")
    measuring = True
    c0, t0 = cpu_seconds(), time.perf_counter()
    rss_samples = []
    loop = asyncio.get_running_loop()
    end = loop.time() + args["window"]
    while loop.time() < end and not stop.is_set():
        await asyncio.sleep(min(1.0, max(0.0, end - loop.time())))
        rss_samples.append(vm_status()["VmRSS"])
    c1, t1 = cpu_seconds(), time.perf_counter()
    measuring = False
    dev1, hubs1, pub1 = device_counters(), hub_counters(), publisher_counters()
    readings, bad = floor.readings_total - total0, floor.bad_total - bad0
    per_device_jitter = {rid: list(rt.ctx.counters.jitter) for rid, rt in floor.devices.items()}
    jitter_values = [j for d in per_device_jitter.values() for j in d]
    worst = sorted(((max(v), rid) for rid, v in per_device_jitter.items() if v), reverse=True)[:5]
    devices = {rid: delta(dev1[rid], dev0[rid]) for rid in dev1}
    not_online = {
        rid: {
            "state": str(rt.state),
            "last_error": rt.ctx.counters.last_error,
            "kind": rt.config.kind,
        }
        for rid, rt in floor.devices.items()
        if str(rt.state) != "online"
    }
    with_errors = {
        rid: {**d, "last_error": floor.devices[rid].ctx.counters.last_error}
        for rid, d in devices.items()
        if d["errors"] or d["overruns"]
    }
    stats = floor.stats()
    after = vm_status()
    stop_info = await stop_floor(floor, task)
    emit(
        "result",
        seconds=t1 - t0,
        cpu_s=c1 - c0,
        readings=readings,
        bad=bad,
        by_quality=by_quality,
        historical=historical,
        points_total=len(all_points),
        points_seen=len(seen_points),
        points_good=len(good_points),
        points_never_good=sorted(f"{d}.{p}" for d, p in all_points if (d, p) not in good_points),
        polled_devices=sum(1 for v in per_device_jitter.values() if v),
        jitter=percentiles(jitter_values, (50, 99)),
        jitter_samples=len(jitter_values),
        jitter_worst_devices=[{"device": rid, "max": m} for m, rid in worst],
        polls=sum(d["polls"] for d in devices.values()),
        errors=sum(d["errors"] for d in devices.values()),
        overruns=sum(d["overruns"] for d in devices.values()),
        devices=devices,
        with_errors=with_errors,
        not_online=not_online,
        device_states=stats["devices"],
        hubs=delta_hubs(hubs1, hubs0),
        hubs_total=hubs1,
        publisher=delta(pub1, pub0),
        publisher_total=pub1,
        publish_backlog=stats["publish_backlog"],
        stale_points=stats["stale_points"],
        rss_kb_samples=rss_samples,
        after=after,
        gc=gc_summary(gc_pauses),
        warnings=WARNINGS.counts,
        stop=stop_info,
    )
    exit_if_stuck(stop_info)


def delta_hubs(b: dict[str, dict[str, Any]], a: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        name: {
            k: v - a.get(name, {}).get(k, 0)
            if isinstance(v, int) and not isinstance(v, bool)
            else v
            for k, v in h.items()
        }
        for name, h in b.items()
    }


def bare(_: dict[str, Any]) -> None:
    before = vm_status()
    import floorctl.daemon  # noqa: F401

    emit("result", python_only=before, after_import=vm_status())


# --- main ------------------------------------------------------------------------------------

ROLES = {
    "mqtt-raw": mqtt_raw,
    "mqtt-daemon": mqtt_daemon,
    "modbus-sim": modbus_sim,
    "modbus-raw": modbus_raw,
    "modbus-daemon": modbus_daemon,
    "jitter": jitter,
    "rss": rss,
    "demo-daemon": demo_daemon,
}


def main() -> None:
    role, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    args = json.loads(raw)
    if args.get("patches"):  # experiments only: see ingest_patches.py
        import ingest_patches

        ingest_patches.apply(args["patches"])
    if "config_file" in args:  # devices.toml text is passed as a file, not on the command line
        args["config"] = Path(args["config_file"]).read_text()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    logging.getLogger().addHandler(WARNINGS)
    if role == "bare":
        bare(args)
        return
    fn = ROLES[role]
    # the last resort of "stops by itself": dump every thread's stack and exit
    faulthandler.dump_traceback_later(float(args.get("max_seconds", 300)) + 30, exit=True)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` shows where a worker is stuck
    if args.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            asyncio.run(fn(args))
        finally:
            prof.disable()
            prof.dump_stats(args["profile"])
    else:
        asyncio.run(fn(args))


if __name__ == "__main__":
    main()

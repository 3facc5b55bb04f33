"""Child processes of benchmarks/alarms.py (one role per process).

Run as ``python benchmarks/alarms_workers.py ROLE 'JSON-ARGS'``. The protocol is that of
ingest_workers.py: ``@@ {json}`` lines on stdout (``ready``, then ``result``), ``stop`` (or a
closed stdin) on stdin ends the worker, logs go to stderr.

Roles:

- ``background``: paho-mqtt (its own network thread) publishing mqtt_json payloads, several
  fields each, round-robin over the background devices' topics at a fixed total rate (QoS 1),
  from "go" until "stop"; reports messages sent and acknowledged.
- ``relay``: the raw baseline's middle: one plain aiomqtt client subscribed to the background
  topics and the probe topic (QoS 1); it parses each payload (json.loads) and republishes a
  probe message, unchanged, to the echo topic at once (QoS 1, retained, as the daemon publishes
  an alarm).
- ``probe``: two aiomqtt clients (a sensor's connection and an operator's): the first
  publishes an excursion to the probe topic, the second times the matching message on the
  reply topic (the daemon's alarm topic, or the relay's echo topic),
  then a return to normal, ``samples`` times.
- ``daemon``: ``floorctl run`` (its CLI's ``main``, in this process) with experimental
  patches applied first (``PATCHES`` below): proposed floorctl fixes measured before anyone
  edits floorctl/. Only for ``benchmarks/alarms.py --patch``; the benchmark proper runs the
  installed ``floorctl`` script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from ingest_workers import cpu_seconds, emit, percentiles, watch_stdin  # noqa: E402

log = logging.getLogger("bench.alarms")

#: the probe's excursion and normal values: a positive ISO 7 room alarms below 5 Pa (action)
EXCURSION = 3.0
NORMAL = 15.0
#: a unique value per sample (so each alarm message names the publish it answers)
STEP = 1e-4


def background_payload(seq: int, device: int, fields: int) -> bytes:
    """One realistic environmental-monitor message: sequence, timestamp, ``fields`` values."""
    r = random.random()
    values = {
        "t": 18.0 + r * 0.5,  # °C, alert above 19.5 in a classified room
        "rh": 45.0 + r * 2.0,  # %RH, alert at 55
        "dp": 15.0 + r,  # Pa, positive room: alert below 10
        "p05": 1000.0 + 200.0 * r,  # counts/m³, ISO 7: action at 352,000
        "p50": 10.0 + r,  # counts/m³ >= 5.0 µm, ISO 7: action at 2,930
        "v": 0.40 + 0.02 * r,  # m/s downflow
    }
    doc: dict[str, Any] = {"seq": seq, "dev": device, "ts": round(time.time(), 3)}
    for name in list(values)[:fields]:
        doc[name] = round(values[name], 3)
    return json.dumps(doc, separators=(",", ":")).encode()


# --- background load -------------------------------------------------------------------------


def background(args: dict[str, Any]) -> None:
    """Paced publisher: ``rate`` messages/s over ``topics`` from "go" to "stop" (threads)."""
    import paho.mqtt.client as paho

    topics: list[str] = args["topics"]
    rate: float = args["rate"]
    fields: int = args["fields"]
    go, stop = threading.Event(), threading.Event()

    def stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                go.set()
            elif line.strip() == "stop":
                break
        stop.set()
        go.set()

    threading.Thread(target=stdin, daemon=True).start()
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"bench-bg-{os.getpid()}", clean_session=True
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", args["port"], keepalive=60)
    client.loop_start()
    emit("ready")
    go.wait()
    sent = 0
    behind_max = 0
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    tick = 0.005
    while not stop.is_set():
        due = int((time.perf_counter() - t0) * rate)
        behind_max = max(behind_max, due - sent)
        while sent < due:
            k = sent % len(topics)
            client.publish(topics[k], background_payload(sent, k, fields), qos=1)
            sent += 1
        stop.wait(tick)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    deadline = time.monotonic() + 30
    while acked < sent and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    emit(
        "result",
        sent=sent,
        acked=acked,
        seconds=seconds,
        rate=sent / seconds if seconds else 0.0,
        cpu_s=cpu,
        behind_max=behind_max,
    )


# --- the raw baseline's relay ----------------------------------------------------------------


async def relay(args: dict[str, Any]) -> None:
    import aiomqtt

    stop = asyncio.Event()
    watch_stdin(stop)
    probe, echo = args["probe_topic"], args["echo_topic"]
    background_msgs = 0
    relayed = 0
    bad = 0
    tasks: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(
        "127.0.0.1", args["port"], identifier=f"bench-relay-{os.getpid()}"
    ) as client:
        topics = [(t, 1) for t in args["topics"]] + [(probe, 1)]
        for i in range(0, len(topics), 100):
            await client.subscribe(topics[i : i + 100])
        emit("ready")

        async def consume() -> None:
            nonlocal background_msgs, relayed, bad
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
                try:
                    json.loads(payload)
                except ValueError:
                    bad += 1
                if m.topic.value == probe:
                    relayed += 1
                    t = asyncio.create_task(client.publish(echo, payload, qos=1, retain=True))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                else:
                    background_msgs += 1

        c0 = cpu_seconds()
        consumer = asyncio.create_task(consume())
        await stop.wait()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        cpu = cpu_seconds() - c0
    emit("result", background=background_msgs, relayed=relayed, bad=bad, cpu_s=cpu)


# --- the probe -------------------------------------------------------------------------------


async def probe(args: dict[str, Any]) -> None:
    """``samples`` excursion / return-to-normal pairs; end-to-end times from the publish call.

    ``mode`` "daemon": the reply is the alarm message whose ``state`` is ``unack`` (excursion)
    or ``rtn-unack`` (return) and whose ``last.value`` is the value published; its ``last.time``
    (the transition) and ``time`` (the payload built) split the time into inbound and outbound.
    ``mode`` "raw": the reply is the relay's echo of the same payload.

    The operator's connection also subscribes to the probe topic itself (when an idle client
    has the excursion: the broker's hop) and, in daemon mode, to the probe point's state
    message (its ``receive_time``: when the daemon's mqtt_json handler had the message), so
    the inbound time splits further (wall clock; one machine, one clock).
    """
    import aiomqtt

    stop = asyncio.Event()
    go = asyncio.Event()
    watch_stdin(stop, go)
    mode: str = args["mode"]
    samples: int = args["samples"]
    warmup: int = args["warmup_samples"]
    gap: tuple[float, float] = tuple(args["gap"])  # type: ignore[assignment]
    timeout: float = args["timeout"]
    topic, reply = args["probe_topic"], args["reply_topic"]
    point_topic: str | None = args.get("point_topic")
    seen: dict[tuple[str, float], float] = {}  # (what, value) -> wall time
    waiting: dict[tuple[str, float], asyncio.Future[tuple[float, float, dict[str, Any]]]] = {}
    loop = asyncio.get_running_loop()
    published = 0

    def key_of(doc: dict[str, Any]) -> tuple[str, float] | None:
        if mode == "raw":
            v = doc.get("dp")
            return (doc.get("kind", ""), round(float(v), 6)) if v is not None else None
        last = doc.get("last")
        if not last or last.get("value") is None:
            return None
        return (str(doc.get("state")), round(float(last["value"]), 6))

    # two connections, as on a floor: the sensor's (publishes) and the operator's (subscribes).
    # One connection doing both would time mosquitto's Nagle delay instead: its PUBACK to our
    # publish, not yet ACKed by our TCP (delayed ACK, 40 ms), holds back the reply we wait for.
    async with (
        aiomqtt.Client("127.0.0.1", args["port"], identifier=f"bench-sensor-{os.getpid()}") as pub,
        aiomqtt.Client(
            "127.0.0.1", args["port"], identifier=f"bench-probe-{os.getpid()}"
        ) as client,
    ):
        await client.subscribe(reply, qos=1)
        await client.subscribe(topic, qos=1)
        if point_topic:
            await client.subscribe(point_topic, qos=1)

        async def listen() -> None:
            async for m in client.messages:
                now = time.perf_counter()
                wall = time.time()
                try:
                    doc = json.loads(m.payload)  # type: ignore[arg-type]
                except ValueError:
                    continue
                if m.topic.value == topic:  # the excursion itself, as an idle client gets it
                    seen[("broker", round(float(doc["dp"]), 6))] = wall
                    continue
                if point_topic and m.topic.value == point_topic:
                    if doc.get("value") is not None and doc.get("receive_time"):
                        seen[("handler", round(float(doc["value"]), 6))] = doc["receive_time"]
                    continue
                k = key_of(doc)
                fut = waiting.pop(k, None) if k is not None else None
                if fut is not None and not fut.done():
                    fut.set_result((now, wall, doc))

        listener = asyncio.create_task(listen())

        async def one(kind: str, value: float) -> dict[str, Any] | None:
            nonlocal published
            want = ("unack" if kind == "exc" else "rtn-unack") if mode == "daemon" else kind
            fut: asyncio.Future[tuple[float, float, dict[str, Any]]] = loop.create_future()
            waiting[(want, round(value, 6))] = fut
            t_wall = time.time()
            payload = json.dumps({"dp": value, "kind": kind, "t_pub": t_wall})
            t0 = time.perf_counter()
            await pub.publish(topic, payload, qos=1)
            t_call = time.perf_counter()
            published += 1
            try:
                t1, wall1, got = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                waiting.pop((want, round(value, 6)), None)
                return {"kind": kind, "value": value, "timeout": True}
            out: dict[str, Any] = {
                "kind": kind,
                "value": value,
                "latency": t1 - t0,
                "publish_call": t_call - t0,
            }
            v = round(value, 6)
            if ("broker", v) in seen:
                out["broker_hop"] = seen.pop(("broker", v)) - t_wall
            if mode == "daemon":
                last = got.get("last") or {}
                # wall-clock splits (same machine, same clock): publish -> the daemon's handler
                # has the message -> transition decided -> alarm payload built -> received
                t_trans = float(last.get("time", wall1))
                out["inbound"] = t_trans - t_wall
                if ("handler", v) not in seen:
                    await asyncio.sleep(0.15)  # the point state goes out in 0.1 s rounds
                if ("handler", v) in seen:
                    t_handler = seen.pop(("handler", v))
                    out["to_handler"] = t_handler - t_wall
                    out["handler_to_transition"] = t_trans - t_handler
                out["build"] = float(got.get("time", wall1)) - t_trans
                out["outbound"] = wall1 - float(got.get("time", wall1))
            return out

        emit("ready")
        waiters = [asyncio.ensure_future(go.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, return_when="FIRST_COMPLETED")
        for w in waiters:
            w.cancel()
        rng = random.Random(args.get("seed", 1))
        results: list[dict[str, Any]] = []
        c0, t_start = cpu_seconds(), time.perf_counter()
        # a floor far behind answers in seconds: stop at max_seconds with what there is
        limit = t_start + float(args.get("max_seconds") or 1e9)
        i = 0
        while i < warmup + samples and not stop.is_set() and time.perf_counter() < limit:
            for kind, base in (("exc", EXCURSION), ("rtn", NORMAL)):
                r = await one(kind, base + (i % 15_000) * STEP)
                if r is not None and i >= warmup:
                    results.append(r)
                await asyncio.sleep(rng.uniform(*gap))
            i += 1
        seconds = time.perf_counter() - t_start
        cpu = cpu_seconds() - c0
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener

    def stats(kind: str) -> dict[str, Any]:
        ok = [r for r in results if r["kind"] == kind and not r.get("timeout")]
        out: dict[str, Any] = {
            "n": len(ok),
            "timeouts": sum(1 for r in results if r["kind"] == kind and r.get("timeout")),
            "latency_ms": ms(percentiles([r["latency"] for r in ok], (50, 90, 99))),
            "publish_call_ms": ms(percentiles([r["publish_call"] for r in ok], (50, 99))),
        }
        parts = ["broker_hop"]
        if mode == "daemon":
            parts += ["inbound", "to_handler", "handler_to_transition", "build", "outbound"]
        for part in parts:
            values = [r[part] for r in ok if part in r]
            out[f"{part}_ms"] = ms(percentiles(values, (50, 90, 99))) | {"n": len(values)}
        return out

    emit(
        "result",
        cut_short=i < warmup + samples,
        published=published,
        seconds=seconds,
        cpu_s=cpu,
        excursion=stats("exc"),
        rtn=stats("rtn"),
        samples=[
            {
                k: (round(v * 1e3, 3) if isinstance(v, float) and k != "value" else v)
                for k, v in r.items()
            }
            for r in results
        ],
    )


def ms(p: dict[str, float]) -> dict[str, float]:
    return {k: v * 1e3 for k, v in p.items()}


# --- patched daemon (experiments) -------------------------------------------------------------


def _first_str(t: tuple[Any, ...]) -> str:
    return t[0] if t and isinstance(t[0], str) else ""


def _patch_slowlog() -> None:
    """Diagnosis, not a fix: every event-loop callback that takes 5 ms or more is written, with
    its wall time and what it was, to ``$FLOORCTL_SLOWLOG`` (default ``slow-callbacks.log`` in
    the working directory) when the daemon exits. A slow callback holds every message behind
    it; this says which."""
    import asyncio.events
    import atexit

    run = asyncio.events.Handle._run
    slow: list[str] = []

    def _run(self: Any) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        run(self)
        took = time.perf_counter() - t0
        if took >= 0.005:
            cpu = (time.thread_time() - c0) * 1000
            slow.append(f"{time.time():.3f} {took * 1000:.1f} ms cpu {cpu:.1f} ms {self!r:.300}")

    def dump() -> None:
        Path(os.environ.get("FLOORCTL_SLOWLOG", "slow-callbacks.log")).write_text(
            "".join(line + "\n" for line in slow)
        )

    import gc

    gc_started = [0.0, 0.0]

    census = [0]

    def gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if info["generation"] >= 1 and os.environ.get("FLOORCTL_GC_CENSUS"):
                census[0] += 1
                if census[0] % 25 == 0:  # which objects a pass walks, now and then
                    import collections

                    gen = info["generation"]
                    kinds = collections.Counter(
                        type(o).__qualname__ for g in range(gen + 1) for o in gc.get_objects(g)
                    )
                    slow.append(f"census gen{gen}: {sum(kinds.values())} {kinds.most_common(12)}")
                    shapes = collections.Counter(
                        (len(o), *(type(x).__name__ for x in o[:4]), _first_str(o))
                        for g in range(gen + 1)
                        for o in gc.get_objects(g)
                        if type(o) is tuple
                    )
                    slow.append(f"census tuples: {shapes.most_common(8)}")
            gc_started[:] = [time.perf_counter(), time.thread_time()]
            return
        took = time.perf_counter() - gc_started[0]
        cpu = time.thread_time() - gc_started[1]  # without the time the thread was off the CPU
        if took >= 0.002:
            slow.append(
                f"{time.time():.3f} {took * 1000:.1f} ms gc generation {info['generation']}"
                f" collected {info['collected']} cpu {cpu * 1000:.1f} ms"
                f" ({threading.current_thread().name})"
            )

    gc.callbacks.append(gc_timer)
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]
    atexit.register(dump)


def _patch_gc() -> None:
    """Experiment: the garbage collector's thresholds from ``$FLOORCTL_GC`` ("700,10,10")."""
    import gc

    a, b, c = (int(x) for x in os.environ.get("FLOORCTL_GC", "700,10,10").split(","))
    gc.set_threshold(a, b, c)


def _patch_cycles() -> None:
    """Diagnosis: what the daemon leaves in reference cycles. The collector keeps what it
    would have freed (``gc.DEBUG_SAVEALL``); at exit a census of those objects (types, and
    the code of functions, frames and coroutines among them) goes to ``$FLOORCTL_CYCLES``
    (default ``cycles.log``). The daemon's memory grows meanwhile: short runs only."""
    import atexit
    import collections
    import gc

    gc.set_debug(gc.DEBUG_SAVEALL)
    t0 = time.monotonic()

    def where(o: Any) -> str | None:
        code = getattr(o, "__code__", None) or getattr(o, "f_code", None)
        code = code or getattr(o, "cr_code", None) or getattr(o, "gi_code", None)
        if code is None:
            return None
        return f"{type(o).__name__} {code.co_qualname} {code.co_filename}:{code.co_firstlineno}"

    def dump() -> None:
        gc.collect()
        garbage = list(gc.garbage)
        took = time.monotonic() - t0
        kinds = collections.Counter(type(o).__qualname__ for o in garbage)
        code = collections.Counter(w for o in garbage if (w := where(o)) is not None)
        lines = [f"{len(garbage)} objects in cycles in {took:.1f} s"]
        lines += [f"{n:8d}  {k}" for k, n in kinds.most_common(40)]
        lines += ["", "code:"] + [f"{n:8d}  {k}" for k, n in code.most_common(40)]
        Path(os.environ.get("FLOORCTL_CYCLES", "cycles.log")).write_text("\n".join(lines) + "\n")

    atexit.register(dump)


PATCHES = {
    "cycles": _patch_cycles,
    "gc": _patch_gc,
    "slowlog": _patch_slowlog,
}


def daemon(args: dict[str, Any]) -> None:
    for name in args["patches"]:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r} (known: {', '.join(PATCHES)})")
        PATCHES[name]()
    from floorctl.cli import main as floorctl_main

    sys.argv = ["floorctl", *args["argv"]]
    floorctl_main()


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    role, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    args = json.loads(raw)
    if role == "daemon":  # floorctl's CLI sets up its own logging
        daemon(args)
        return
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    if role == "background":
        background(args)
    elif role == "relay":
        asyncio.run(relay(args))
    elif role == "probe":
        asyncio.run(probe(args))
    else:
        raise SystemExit(f"unknown role {role!r} (background, relay, probe, daemon)")


if __name__ == "__main__":
    main()

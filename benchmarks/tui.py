"""TUI benchmark: the terminal UI's CPU with 500 points updating at 1 Hz (issue 6: <= 20 % of
one core), against plain aiomqtt consuming the same subscription.

    .venv/bin/python benchmarks/tui.py                 # 60 s window, about 80 s
    .venv/bin/python benchmarks/tui.py --window 20 --output /tmp/tui.json

A benchmark, not a test: it prints a table and writes ``benchmarks/results/tui.json``.

- A generated floor (``devices.toml`` in a work directory): ``--rooms`` ISO 7 rooms against a
  corridor, ``--devices-per-room`` ``mqtt_json`` room monitors each, 5 points per monitor
  (dp, t, rh, particles >= 0.5 and >= 5.0 µm): 10 x 10 x 5 = 500 points by default.
- A private mosquitto (``max_queued_messages 0``). No daemon: this process publishes what
  ``floorctl run`` would publish for that floor (docs/mqtt.md): on start the retained daemon
  status, every room's status, every device's status and every point's alarm state (normal);
  then every second a new value for every point (``<prefix>/point/<device>/<point>``,
  retained, QoS 1, in 10 paced batches per second, as the state publisher's rounds), and
  every ``stats_interval`` (10 s) the stats and the device statuses.
- Subject: a real ``floorctl tui FILE`` process on a pseudo-terminal of ``--size`` (the pty is
  read and discarded, as a terminal would), on the Floor screen (``--screen`` presses another
  screen's key). Baseline, in the same run and at the same time: a plain aiomqtt process with
  the TUI's subscription (``floorctl.tui.source.STATE_FILTERS``), decoding every payload's
  JSON and counting. CPU = user + system time of each process over the window (psutil), in %
  of one core.
- Liveness: after the window every ``t`` point is published at 55.5; the TUI must draw
  "55.5" within 10 s of that second, or the run is reported as not live (a UI that stopped
  drawing would look cheap). Only on the Floor screen, the one that shows temperatures
  (``tui_live`` is null for the others).

Everything listens on 127.0.0.1 and stops by itself. The machine is shared: the load average
is recorded before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import platform
import pty
import random
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from floorctl.tui.source import STATE_FILTERS  # noqa: E402
from tests.helpers import Mosquitto  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tui.json"
TARGET_CPU_PCT = 20.0
PREFIX = "floorctl/bench"
#: field name, quantity, unit, base value, noise per update
FIELDS = (
    ("dp", "differential_pressure", "Pa", 14.0, 0.4),
    ("t", "temperature", "°C", 19.0, 0.05),
    ("rh", "humidity", "%RH", 42.0, 0.3),
    ("p05", "particles_0_5um", "counts/m³", 3000.0, 400.0),
    ("p50", "particles_5_0um", "counts/m³", 20.0, 5.0),
)
MARKER = 55.5


# --- the floor -------------------------------------------------------------------------------


def floor_toml(rooms: int, per_room: int, port: int) -> str:
    lines = [
        "[floor]",
        'id = "bench"',
        'name = "TUI benchmark floor"',
        "",
        "[[mqtt]]",
        'name = "b"',
        f"port = {port}",
        "",
        "[[room]]",
        'id = "corridor"',
        'name = "Corridor"',
    ]
    for r in range(rooms):
        lines += [
            "",
            "[[room]]",
            f'id = "room-{r:02d}"',
            f'name = "Clean room {r:02d}"',
            "iso_class = 7",
            'pressure = "positive"',
            'pressure_reference = "corridor"',
        ]
    for r, d in devices(rooms, per_room):
        lines += [
            "",
            "[[device]]",
            f'id = "{d}"',
            'kind = "mqtt_json"',
            'via = "b"',
            f'room = "room-{r:02d}"',
            'interval = "1s"',
            "[device.options]",
            f'state_topic = "gw/{d}"',
        ]
        for name, quantity, unit, _, _ in FIELDS:
            lines += [
                "[[device.fields]]",
                f'name = "{name}"',
                f'path = "{name}"',
                f'unit = "{unit}"',
                f'quantity = "{quantity}"',
            ]
    return "\n".join(lines) + "\n"


def devices(rooms: int, per_room: int) -> list[tuple[int, str]]:
    return [(r, f"mon-{r:02d}-{i:02d}") for r in range(rooms) for i in range(per_room)]


# --- what the daemon would publish ----------------------------------------------------------


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class FloorPublisher:
    """Publishes the daemon's state topics for the generated floor."""

    def __init__(self, client: aiomqtt.Client, rooms: int, per_room: int, seed: int) -> None:
        self.client = client
        self.rooms = rooms
        self.devs = devices(rooms, per_room)
        self.rng = random.Random(seed)
        self.values = {(d, f[0]): f[3] for _, d in self.devs for f in FIELDS}
        self.published = 0
        self.started = time.time()

    async def _publish(self, topic: str, doc: dict[str, Any], qos: int = 1) -> None:
        await self.client.publish(topic, dumps(doc), qos=qos, retain=True)
        self.published += 1

    def device_status(self, room: int, device: str, now: float) -> dict[str, Any]:
        return {
            "v": 1,
            "device": device,
            "name": device,
            "kind": "mqtt_json",
            "room": f"room-{room:02d}",
            "via": "b",
            "state": "online",
            "since": self.started,
            "interval": 1.0,
            "stale_after": 3.0,
            "counters": {"readings": 0, "bad": 0, "errors": 0, "last_error": None},
            "driver": None,
            "time": now,
        }

    async def birth(self) -> None:
        now = time.time()
        await self._publish(
            f"{PREFIX}/status",
            {
                "v": 1,
                "state": "online",
                "floor": "bench",
                "version": importlib.metadata.version("floorctl"),
                "pid": os.getpid(),
                "since": now,
                "config_sha256": "0" * 64,
                "time": now,
            },
        )
        for r in range(self.rooms):
            await self._publish(
                f"{PREFIX}/room/room-{r:02d}/status",
                {"v": 1, "room": f"room-{r:02d}", "status": "ok", "time": now},
            )
        for r, d in self.devs:
            await self._publish(f"{PREFIX}/device/{d}/status", self.device_status(r, d, now))
            for name, quantity, _, base, _ in FIELDS:
                await self._publish(
                    f"{PREFIX}/alarm/{d}/{name}",
                    {
                        "v": 1,
                        "device": d,
                        "point": name,
                        "room": f"room-{r:02d}",
                        "quantity": quantity,
                        "state": "normal",
                        "severity": None,
                        "value": base,
                        "last": None,
                        "time": now,
                    },
                )

    def point(self, device: str, name: str, unit: str, value: float, now: float) -> bytes:
        return dumps(
            {
                "v": 1,
                "device": device,
                "point": name,
                "value": value,
                "unit": unit,
                "quality": "good",
                "source_time": None,
                "receive_time": now,
                "detail": None,
                "historical": False,
            }
        )

    async def second(self, marker: bool = False) -> None:
        """One new value of every point, in 10 batches 100 ms apart."""
        start = time.monotonic()
        msgs = []
        now = time.time()
        for _, d in self.devs:
            for name, _, unit, base, noise in FIELDS:
                v = self.values[d, name]
                v = v + self.rng.gauss(0, noise) + 0.1 * (base - v)  # a random walk near base
                v = max(v, 0.0) if name.startswith("p") else v
                if marker and name == "t":
                    v = MARKER
                self.values[d, name] = v
                value = round(v) if name.startswith("p") else round(v, 2)
                msgs.append((f"{PREFIX}/point/{d}/{name}", self.point(d, name, unit, value, now)))
        batch = max(1, len(msgs) // 10)
        for i in range(0, len(msgs), batch):
            await asyncio.gather(
                *(self.client.publish(t, p, qos=1, retain=True) for t, p in msgs[i : i + batch])
            )
            self.published += len(msgs[i : i + batch])
            await asyncio.sleep(max(0.0, start + (i // batch + 1) * 0.1 - time.monotonic()))

    async def stats(self) -> None:
        now = time.time()
        await self._publish(
            f"{PREFIX}/stats",
            {"v": 1, "readings": self.published, "bad": 0, "stale_points": 0, "time": now},
            qos=0,
        )
        for r, d in self.devs:
            await self._publish(f"{PREFIX}/device/{d}/status", self.device_status(r, d, now), 0)


# --- the processes ---------------------------------------------------------------------------


class PtyProcess:
    """A command on a pseudo-terminal; a thread reads (and keeps the tail of) what it draws."""

    def __init__(self, argv: list[str], size: tuple[int, int], env: dict[str, str]) -> None:
        cols, rows = size
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.environ.update(env)
            os.environ.update({"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)})
            os.execv(argv[0], argv)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.bytes = 0
        self.tail = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.bytes += len(chunk)
                self.tail = (self.tail + chunk)[-200_000:]

    def drawn_since(self, mark: int) -> bytes:
        with self._lock:
            new = self.bytes - mark
            return self.tail[-new:] if new > 0 else b""

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def stop(self, timeout: float = 10.0) -> int | None:
        with contextlib.suppress(OSError):
            os.write(self.fd, b"q")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return None


async def baseline(port: int) -> None:
    """The baseline process: the TUI's subscription, every payload decoded, nothing drawn.
    Prints the message count when SIGTERM arrives."""
    count = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def consume(client: aiomqtt.Client) -> None:
        nonlocal count
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray) and payload:
                json.loads(payload)
            count += 1

    async with aiomqtt.Client("127.0.0.1", port, clean_session=True) as client:
        for f in STATE_FILTERS:
            await client.subscribe(f"{PREFIX}/{f}", qos=1)
        print("ready", flush=True)
        task = asyncio.create_task(consume(client))
        await stop.wait()
        task.cancel()
    print(count, flush=True)


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


# --- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = Mosquitto(work / "broker").start()
    cfg = work / "devices.toml"
    cfg.write_text(floor_toml(args.rooms, args.devices_per_room, broker.port))
    points = args.rooms * args.devices_per_room * len(FIELDS)
    floorctl = str(Path(sys.executable).with_name("floorctl"))
    check = await asyncio.create_subprocess_exec(
        floorctl,
        "check-config",
        str(cfg),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, problems = await check.communicate()
    if check.returncode != 0:
        raise SystemExit(f"the generated floor is not valid:\n{problems.decode()}")
    env = {"FLOORCTL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    tui: PtyProcess | None = None
    base: asyncio.subprocess.Process | None = None
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, max_queued_outgoing_messages=0) as c:
            c.pending_calls_threshold = 1000  # 50 publishes in flight per batch, on purpose
            pub = FloorPublisher(c, args.rooms, args.devices_per_room, seed=1)
            await pub.birth()
            await pub.second()
            tui = PtyProcess([floorctl, "tui", str(cfg)], tuple(args.size), env)
            base = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--baseline-process",
                str(broker.port),
                stdout=asyncio.subprocess.PIPE,
            )
            assert base.stdout is not None
            assert (await asyncio.wait_for(base.stdout.readline(), 20)).strip() == b"ready"
            if args.screen != "1":
                await asyncio.sleep(3)
                tui.send(args.screen.encode())
            tick = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.warmup:  # the TUI starts and gets the floor
                await pub.second()
                tick += 1
                if tick % 10 == 0:
                    await pub.stats()
            subject = psutil.Process(tui.pid)
            reference = psutil.Process(base.pid)
            brokerp = psutil.Process(broker.pid)  # type: ignore[arg-type]
            me = psutil.Process()
            spy = None
            if args.py_spy:  # samples the TUI without stopping it (--nonblocking)
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(tui.pid),
                    "--duration",
                    str(int(args.window)),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(args.py_spy),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            c0 = [cpu_seconds(p) for p in (subject, reference, brokerp, me)]
            b0, p0, w0 = tui.bytes, pub.published, time.monotonic()
            while time.monotonic() - w0 < args.window:
                await pub.second()
                tick += 1
                if tick % 10 == 0:
                    await pub.stats()
            wall = time.monotonic() - w0
            c1 = [cpu_seconds(p) for p in (subject, reference, brokerp, me)]
            drawn, sent = tui.bytes - b0, pub.published - p0
            if spy is not None:
                await asyncio.wait_for(spy.wait(), 30)
            rss_mb = subject.memory_info().rss / 1e6
            # liveness: the marker value must reach the screen
            mark = tui.bytes
            t1 = time.monotonic()
            await pub.second(marker=True)  # the marker goes out over 1 s
            live_after = None
            while time.monotonic() - t1 < 11:
                if str(MARKER).encode() in tui.drawn_since(mark):
                    live_after = time.monotonic() - t1
                    break
                await asyncio.sleep(0.05)
        base.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(base.communicate(), 10)
        received = int(out.split()[-1])
    finally:
        if tui is not None:
            tui.stop()
        if base is not None and base.returncode is None:
            base.kill()
            await base.wait()
        broker.stop()
    cpu = [100.0 * (b - a) / wall for a, b in zip(c0, c1, strict=True)]
    return {
        "points": points,
        "update_hz": 1.0,
        "messages_per_s": round(sent / wall, 1),
        "window_s": round(wall, 1),
        "terminal": f"{args.size[0]}x{args.size[1]}",
        "screen": args.screen,
        "tui_cpu_pct": round(cpu[0], 1),
        "baseline_cpu_pct": round(cpu[1], 1),
        "ratio": round(cpu[0] / cpu[1], 2) if cpu[1] > 0 else None,
        "broker_cpu_pct": round(cpu[2], 1),
        "publisher_cpu_pct": round(cpu[3], 1),
        "tui_bytes_drawn_per_s": round(drawn / wall),
        "tui_rss_mb": round(rss_mb, 1),
        # the marker is a temperature: only the Floor screen shows every room's
        "tui_live": live_after is not None if args.screen == "1" else None,
        "marker_drawn_after_s": None if live_after is None else round(live_after, 2),
        "baseline_messages_received": received,
        "target_cpu_pct": TARGET_CPU_PCT,
        "met": cpu[0] <= TARGET_CPU_PCT and (live_after is not None or args.screen != "1"),
        "profiled": bool(args.py_spy),
        "profile": profile_summary(args.py_spy) if args.py_spy else None,
    }


#: where the TUI's time goes: (label, substring of a py-spy frame)
PROFILE_GROUPS = (
    ("screen layout (Screen._refresh_layout)", "Screen._refresh_layout"),
    ("  of it: tile heights (Widget.get_content_height)", "Widget.get_content_height"),
    ("painting (Compositor.render_update)", "Compositor.render_update"),
    ("FloorApp.redraw (the screens' updates)", "FloorApp.redraw"),
    ("  of it: RoomTile.show", "RoomTile.show"),
    ("MQTT receive (paho + aiomqtt)", "aiomqtt/"),
    ("state model (floorctl/tui/state.py)", "floorctl/tui/state.py"),
    ("terminal writes (LinuxDriver.write)", "LinuxDriver.write"),
)
#: frames that are a thread waiting, not working (py-spy's idle detection misses them)
WAITING = ("select (selectors.py", "Condition.wait (threading.py", "acquire")


def profile_summary(path: Path) -> dict[str, Any]:
    """Share of the busy samples (not waiting in select or on a condition) under each
    PROFILE_GROUPS frame, from py-spy's raw (collapsed) output."""
    total = busy = 0
    hits = dict.fromkeys((label for label, _ in PROFILE_GROUPS), 0)
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        if any(w in stack.rsplit(";", 1)[-1] for w in WAITING):
            continue
        busy += count
        for label, frame in PROFILE_GROUPS:
            if frame in stack:
                hits[label] += count
    return {
        "samples": total,
        "busy_samples": busy,
        "share_of_busy_pct": {
            k: round(100 * v / busy, 1) if busy else None for k, v in hits.items()
        },
    }


def machine() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "floorctl"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {n: version(n) for n in ("floorctl", "textual", "aiomqtt", "paho-mqtt")},
        "commit": commit or None,
        #: the work tree measured differs from the commit in these files
        "uncommitted": [line[3:] for line in dirty if line.strip()],
        "note": "shared 2-core machine: the TUI, the baseline, mosquitto and the publisher "
        "share it with other work; see loadavg",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=60.0, help="measured seconds (default 60)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before (default 10)")
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--devices-per-room", type=int, default=10)
    ap.add_argument(
        "--size", type=int, nargs=2, default=[160, 48], metavar=("COLS", "ROWS"), help="terminal"
    )
    ap.add_argument("--screen", default="1", help="screen key to show: 1 floor ... 5 audit")
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="profile the TUI over the window with py-spy (pip install py-spy) into FILE "
        "(collapsed stacks); the run's numbers then include the sampling's cost",
    )
    ap.add_argument("--baseline-process", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_process:
        asyncio.run(baseline(args.baseline_process))
        return
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="floorctl-tui-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    load_after = os.getloadavg()
    doc = {
        "benchmark": "tui",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": load_after},
        "result": result,
    }
    r = result
    status = "MET" if r["met"] else "NOT MET"
    print(
        f"TUI benchmark (shared 2-core machine; load {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after)"
    )
    print(
        f"  {r['points']} points at 1 Hz ({r['messages_per_s']} msg/s), {r['window_s']} s, "
        f"terminal {r['terminal']}, screen {r['screen']}"
    )
    print(f"  {'what':<34} {'CPU % of one core':>18}")
    print(f"  {'floorctl tui (real process, pty)':<34} {r['tui_cpu_pct']:>18}")
    print(f"  {'baseline: plain aiomqtt + json':<34} {r['baseline_cpu_pct']:>18}")
    print(f"  {'ratio':<34} {r['ratio']!s:>18}")
    print(f"  {'mosquitto / publisher':<34} {r['broker_cpu_pct']:>9} / {r['publisher_cpu_pct']}")
    print(
        f"  target <= {TARGET_CPU_PCT:g} %: {status}; live: {r['tui_live']} "
        f"(marker drawn after {r['marker_drawn_after_s']} s); "
        f"{r['tui_bytes_drawn_per_s']} bytes drawn/s; RSS {r['tui_rss_mb']} MB; "
        f"baseline received {r['baseline_messages_received']} messages"
    )
    if r["profile"]:
        print(f"  where the TUI's busy time went (py-spy, {r['profile']['busy_samples']} samples):")
        for label, pct in r["profile"]["share_of_busy_pct"].items():
            print(f"    {pct:>5} %  {label}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"  written to {args.output}")


if __name__ == "__main__":
    main()

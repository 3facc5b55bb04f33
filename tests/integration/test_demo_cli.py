"""`floorctl demo --headless` as a real process: the embedded broker, the demo floor's
simulators and the daemon come up, readings flow, the demo scenario raises an alarm in its
first minute, and SIGINT stops everything (exit 0, nothing left running or listening)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from floorctl.cli import Ctx, cli
from floorctl.pluginmanager import get_plugin_manager

from .floorkit import Watcher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READING = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}Z  (\S+  )?(?P<device>[\w.-]+)/(?P<point>\w+) = ")
ALARM = re.compile(r"ALARM (?P<device>[\w.-]+)/(?P<point>\w+): normal -> unack \((?P<sev>\w+) ")


class Demo:
    """A `floorctl demo` process with its stdout and stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, *args: str, tmp: Path) -> Demo:
        env = {**os.environ, "TMPDIR": str(tmp), "FLOORCTL_DISABLE_PLUGIN_AUTOLOAD": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "floorctl",
            "demo",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        async for line in stream:
            into.append(line.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, pattern: re.Pattern[str], where: str, timeout: float) -> re.Match:
        lines = self.out if where == "out" else self.err
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in lines[seen:]:
                if m := pattern.search(line):
                    return m
            seen = len(lines)
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"no {pattern.pattern!r} on std{where} within {timeout:g}s; stderr:\n"
            + "\n".join(self.err[-40:])
        )

    async def finish(self, timeout: float) -> int:
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._readers)
        return rc


def leftovers(tmp: Path) -> list[str]:
    return [n for n in os.listdir(tmp) if n.startswith("floorctl-demo-")]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
async def test_headless_demo_reads_alarms_and_stops_on_sigint(tmp_path: Path) -> None:
    # --speed 4: the scenario's buffer-room excursion starts at 15 s of simulated time, 3.75 s
    # real; the alert then needs the default 30 s on-delay of differential pressure
    demo = await Demo.start("--headless", "--speed", "4", tmp=tmp_path)
    try:
        m = await demo.wait_for(re.compile(r"amqtt on 127\.0\.0\.1:(\d+)"), "err", 30)
        mqtt_port = int(m.group(1))
        m = await demo.wait_for(re.compile(r"simulated devices on (.*)$"), "err", 5)
        sim_ports = [int(p) for p in re.findall(r"=(\d+)", m.group(1))]
        assert len(sim_ports) == 3, m.group(0)
        await demo.wait_for(re.compile(r"tech / 1111 \(technician\)"), "err", 5)
        store = Path((await demo.wait_for(re.compile(r"records in (\S+)"), "err", 5)).group(1))
        assert store.parent.parent == tmp_path
        async with Watcher(mqtt_port, "floorctl/demo/#") as w:
            # readings flow from every family of device: Modbus, MT-SICS, MQTT gateways
            for device in ("thp-buffer", "bal-1", "logger-corridor", "door-hd"):
                await demo.wait_for(re.compile(rf"  {re.escape(device)}/\w+ = "), "out", 20)
            await w.wait_for(
                lambda msgs: any(
                    t == "floorctl/demo/status" and b["state"] == "online" for t, b, _ in msgs
                ),
                timeout=10,
            )
            started = time.monotonic()
            alarm = await demo.wait_for(ALARM, "out", 60)
            assert (alarm["device"], alarm["point"]) == ("thp-buffer", "dp"), alarm.group(0)
            assert time.monotonic() - started < 60
            await w.wait_for(
                lambda msgs: any(
                    t == "floorctl/demo/alarm/thp-buffer/dp" and b["state"] == "unack"
                    for t, b, _ in msgs
                ),
                timeout=10,
            )
        children = psutil.Process(demo.proc.pid).children(recursive=True)
        stopping = time.monotonic()
        demo.proc.send_signal(signal.SIGINT)
        rc = await demo.finish(15)
        took = time.monotonic() - stopping
    finally:
        if demo.proc.returncode is None:
            demo.proc.kill()
            await demo.proc.wait()
    stderr = "\n".join(demo.err)
    assert rc == 0, stderr[-3000:]
    assert took < 5.0, f"stopping took {took:.1f}s"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert demo.err[-1] == "demo: stopped", demo.err[-5:]
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in (mqtt_port, *sim_ports) if accepts(p)], "a port still listens"
    assert not leftovers(tmp_path), "the demo's folder was left behind"
    readings = [m for line in demo.out if (m := READING.match(line))]
    assert len({r["device"] for r in readings}) == 21  # every device of the demo floor


async def test_demo_on_a_real_broker(mosquitto, tmp_path: Path) -> None:
    """--broker HOST:PORT: no embedded broker; the floor is published on the one named."""
    demo = await Demo.start(
        "--headless",
        "--broker",
        f"127.0.0.1:{mosquitto.port}",
        tmp=tmp_path,
    )
    try:
        line = (await demo.wait_for(re.compile(r"demo: MQTT .*"), "err", 30)).group(0)
        assert line.startswith(f"demo: MQTT broker on 127.0.0.1:{mosquitto.port};"), line
        async with Watcher(mosquitto.port, "floorctl/demo/point/#") as w:
            await w.wait_for(lambda msgs: len({t for t, _, _ in msgs}) >= 20, timeout=20)
        demo.proc.send_signal(signal.SIGTERM)
        rc = await demo.finish(15)
    finally:
        if demo.proc.returncode is None:
            demo.proc.kill()
            await demo.proc.wait()
    assert rc == 0, "\n".join(demo.err[-30:])
    assert "Traceback" not in "\n".join(demo.err)


def run_cli(args: list[str], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`floorctl demo ...` in this process (for what fails before the demo runs)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    result = CliRunner().invoke(cli, ["demo", *args], obj=Ctx(get_plugin_manager(autoload=False)))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--broker", "localhost"], 2, "Invalid value for --broker: expected HOST:PORT"),
        (["--broker", "h:99999"], 2, "between 1 and 65535"),
        (["--broker", "::1:1883"], 2, "[::1]:1883"),
        (["missing.toml"], 1, "missing.toml: cannot read file"),
        (["--speed", "0"], 2, "--speed"),
    ],
)
def test_bad_input_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    rc, stderr = run_cli(["--headless", *args], tmp_path, monkeypatch)
    assert rc == code, stderr
    assert message in stderr, stderr
    assert not leftovers(tmp_path)


def test_bad_scenario_names_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        '[scenario]\nduration = "1m"\n\n[[step]]\nat = "5s"\ndevice = "no-such-device"\n'
        'fault = "silent"\n'
    )
    rc, stderr = run_cli(["--headless", "--scenario", str(scenario)], tmp_path, monkeypatch)
    assert rc == 1, stderr
    assert f"{scenario}:6: step[0].device: no device 'no-such-device'" in stderr, stderr
    assert not leftovers(tmp_path)

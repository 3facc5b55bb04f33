"""`floorctl run` as a process: clean stop on signals, --once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from .floorkit import Watcher, publish

pytestmark = pytest.mark.integration

CONFIG = """
[floor]
id = "cli"

[[mqtt]]
name = "broker"
port = {port}
client_id = "floorctl-cli-{port}"

[[device]]
id = "th1"
kind = "mqtt_json"
via = "broker"
interval = "1s"

[device.options]
state_topic = "gw/th1"

[[device.fields]]
name = "t"
unit = "°C"
path = "t"
"""


def floorctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "floorctl", *args]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_cleanly_within_two_seconds(mosquitto, tmp_path: Path, sig: int) -> None:
    cfg = tmp_path / "devices.toml"
    cfg.write_text(CONFIG.format(port=mosquitto.port))
    async with Watcher(mosquitto.port, "floorctl/cli/status") as w:
        proc = await asyncio.create_subprocess_exec(
            *floorctl("run", str(cfg), "-q"), stderr=asyncio.subprocess.PIPE
        )
        try:
            await w.wait_for(lambda m: any(b["state"] == "online" for _, b, _ in m), timeout=15)
            await publish(mosquitto.port, "gw/th1", b'{"t": 20.5}')
            await asyncio.sleep(0.2)
            started = time.monotonic()
            proc.send_signal(sig)
            rc = await asyncio.wait_for(proc.wait(), 5)
            took = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert rc == 0, stderr
        assert took < 2.0, f"stop took {took:.2f}s"
        assert "Traceback" not in stderr, stderr
        await w.wait_for(lambda m: m[-1][1]["state"] == "offline")


async def test_once_prints_each_device_once(mosquitto, tmp_path: Path) -> None:
    cfg = tmp_path / "devices.toml"
    cfg.write_text(CONFIG.format(port=mosquitto.port))
    # a retained message is delivered the moment the daemon subscribes
    await publish(mosquitto.port, "gw/th1", b'{"t": 21.25}', retain=True)
    proc = await asyncio.create_subprocess_exec(
        *floorctl("run", str(cfg), "--once", "-q"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 1 and "th1/t = 21.25 °C" in lines[0], lines


async def test_once_reports_silent_devices_and_exits_1(mosquitto, tmp_path: Path) -> None:
    cfg = tmp_path / "devices.toml"
    text = CONFIG.format(port=mosquitto.port)
    cfg.write_text(text.replace('interval = "1s"', 'interval = "200ms"'))
    proc = await asyncio.create_subprocess_exec(
        *floorctl("run", str(cfg), "--once", "-q"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert out.decode() == ""
    assert "no reading from th1" in err.decode()


async def test_bad_config_exits_1_with_problems(tmp_path: Path) -> None:
    cfg = tmp_path / "devices.toml"
    cfg.write_text(CONFIG.format(port=70000))
    proc = await asyncio.create_subprocess_exec(
        *floorctl("run", str(cfg)), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert "mqtt[broker].port: port must be 1..65535, got 70000" in err.decode()

"""The root devices.toml, as the README runs it: `floorctl simulate` + `floorctl run`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from floorctl.config import load_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from tests.helpers import free_port

from .floorkit import Watcher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_simulate_plus_run_puts_every_point_on_the_state_topics(mosquitto) -> None:
    env = {
        **os.environ,
        "FLOORCTL_MQTT_PORT": str(mosquitto.port),
        "FLOORCTL_MODBUS_PORT": str(free_port()),
        "FLOORCTL_MODBUS_PORT_2": str(free_port()),
        "FLOORCTL_SICS_PORT": str(free_port()),
    }
    config = load_config(ROOT / "devices.toml", collect_kinds(get_plugin_manager()), env=env)
    points = {f"{d.id}/{f.name}" for d in config.devices for f in d.fields}
    prefix = config.floor.prefix
    procs = []
    try:
        async with Watcher(mosquitto.port, f"{prefix}/#") as w:
            for args in (["simulate"], ["run", "-q"]):
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "floorctl",
                        *args,
                        str(ROOT / "devices.toml"),
                        env=env,
                        cwd=ROOT,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )

            def good_points() -> set[str]:
                return {
                    t.removeprefix(f"{prefix}/point/")
                    for t, b, _ in w.messages
                    if t.startswith(f"{prefix}/point/") and b["quality"] == "good"
                }

            await w.wait_for(lambda m: good_points() >= points, timeout=20)

            def device_states() -> dict[str, str]:
                return {
                    t: b["state"]
                    for t, b, _ in w.messages
                    if "/device/" in t and t.endswith("/status")
                }

            await w.wait_for(
                lambda m: (
                    len(device_states()) == len(config.devices)
                    and set(device_states().values()) == {"online"}
                ),
                timeout=15,
            )
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            await asyncio.wait_for(p.wait(), 5)
    assert [p.returncode for p in procs] == [0, 0]

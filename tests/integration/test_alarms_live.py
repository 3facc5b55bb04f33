"""The alarm engine in the daemon: an excursion on MQTT becomes a published alarm at once."""

from __future__ import annotations

import json

import pytest

from floorctl import hookimpl
from floorctl.config import parse_config
from floorctl.daemon import Floor
from floorctl.limits import Quantity
from floorctl.pluginmanager import collect_kinds, get_plugin_manager

from .floorkit import Watcher, publish, wait_until

pytestmark = pytest.mark.integration

FLOOR = """
[floor]
id = "al"
[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-al-${PORT}"
[[room]]
id = "ante"
iso_class = 8
pressure = "positive"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
pressure_reference = "ante"
[[device]]
id = "mon"
kind = "mqtt_json"
via = "b"
room = "buffer"
interval = "300ms"
[device.options]
state_topic = "gw/mon"
[[device.fields]]
name = "dp"
unit = "Pa"
path = "dp"
quantity = "differential_pressure"
"""


class Pager:
    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def floorctl_on_alarm(self, transition) -> None:
        self.seen.append(transition)


async def test_excursion_to_published_alarm_and_room_status(mosquitto) -> None:
    pager = Pager()
    pm = get_plugin_manager(autoload=False, plugins=[pager])
    kinds = collect_kinds(pm)
    config = parse_config(FLOOR.encode(), kinds, env={"PORT": str(mosquitto.port)})
    fast = {
        Quantity.DIFFERENTIAL_PRESSURE: {
            "alert_on_delay": "0s",
            "action_on_delay": "0s",
            "off_delay": "0s",
        }
    }
    floor = Floor(config, pm, kinds, alarm_defaults=fast)
    import asyncio

    task = asyncio.create_task(floor.run())
    try:
        await floor.state_hub.wait_connected(10)
        async with Watcher(mosquitto.port, "floorctl/al/#") as w:
            await publish(mosquitto.port, "gw/mon", json.dumps({"dp": 13.0}))
            await w.wait_for(
                lambda m: any(
                    t == "floorctl/al/room/buffer/status" and b["status"] == "ok" for t, b, _ in m
                )
            )
            # the cascade collapses: below the 5 Pa action limit of a positive ISO 7 room
            await publish(mosquitto.port, "gw/mon", json.dumps({"dp": 3.0}))
            await w.wait_for(
                lambda m: any(
                    t == "floorctl/al/alarm/mon/dp"
                    and b["state"] == "unack"
                    and b["severity"] == "action"
                    for t, b, _ in m
                )
            )
            alarm = [b for t, b, _ in w.messages if t == "floorctl/al/alarm/mon/dp"][-1]
            assert alarm["last"]["limit"] == 5.0 and alarm["last"]["value"] == 3.0
            assert alarm["room"] == "buffer" and alarm["quantity"] == "differential_pressure"
            await w.wait_for(
                lambda m: (
                    [b["status"] for t, b, _ in m if t == "floorctl/al/room/buffer/status"][-1]
                    == "action"
                )
            )
            assert any(t.to_state.value == "unack" for t in pager.seen)
            # back above both limits: returned to normal, still to be acknowledged
            await publish(mosquitto.port, "gw/mon", json.dumps({"dp": 13.0}))
            await w.wait_for(
                lambda m: (
                    [b["state"] for t, b, _ in m if t == "floorctl/al/alarm/mon/dp"][-1]
                    == "rtn-unack"
                )
            )
            await w.wait_for(
                lambda m: (
                    [b["status"] for t, b, _ in m if t == "floorctl/al/room/buffer/status"][-1]
                    == "ok"
                )
            )
            # the sensor goes quiet: cannot evaluate, and the room is never "ok" meanwhile
            await w.wait_for(
                lambda m: (
                    [b["state"] for t, b, _ in m if t == "floorctl/al/alarm/mon/dp"][-1]
                    == "cannot-evaluate"
                ),
                timeout=10,
            )
            await w.wait_for(
                lambda m: (
                    [b["status"] for t, b, _ in m if t == "floorctl/al/room/buffer/status"][-1]
                    == "no-data"
                )
            )
        await wait_until(lambda: floor.alarm_errors == 0)
    finally:
        floor.stop()
        await asyncio.wait_for(task, 5)

"""The daemon records the floor in its SQLite store: readings, events, alarms, audit."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from floorctl.config import parse_config
from floorctl.daemon import Floor
from floorctl.limits import Quantity
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store

from .floorkit import publish, wait_until

pytestmark = pytest.mark.integration

FLOOR = """
[floor]
id = "rec"
store = "${DB}"
[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-rec-${PORT}"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
[[device]]
id = "mon"
kind = "mqtt_json"
via = "b"
room = "buffer"
interval = "2s"
[device.options]
state_topic = "gw/mon"
[[device.fields]]
name = "dp"
unit = "Pa"
path = "dp"
quantity = "differential_pressure"
"""


async def test_the_daemon_records_readings_events_alarms_and_its_config(
    mosquitto, tmp_path
) -> None:
    db = tmp_path / "floor.db"
    pm = get_plugin_manager(autoload=False)
    kinds = collect_kinds(pm)
    text = FLOOR.encode()
    config = parse_config(text, kinds, env={"PORT": str(mosquitto.port), "DB": str(db)})
    fast = {Quantity.DIFFERENTIAL_PRESSURE: {"alert_on_delay": "0s", "action_on_delay": "0s"}}
    floor = Floor(config, pm, kinds, alarm_defaults=fast)
    task = asyncio.create_task(floor.run())
    try:
        await floor.state_hub.wait_connected(10)
        for dp in (13.0, 12.5, 3.0):
            await publish(mosquitto.port, "gw/mon", json.dumps({"dp": dp}))
        await wait_until(lambda: floor.alarms.point("mon", "dp").state.value == "unack")
    finally:
        floor.stop()
        await asyncio.wait_for(task, 10)  # a clean stop writes what is still queued

    with Store(db) as store:
        values = [r.value for r in store.readings("mon", "dp", 0, 1e12)]
        assert values == [13.0, 12.5, 3.0]
        kinds_seen = {e.kind for e in store.events(0, 1e12)}
        assert "daemon-start" in {getattr(k, "value", k) for k in kinds_seen}
        history = store.alarm_history("mon/dp", 0, 1e12)
        assert [(h.from_state, h.to_state) for h in history] == [("normal", "unack")]
        assert history[0].value == 3.0 and history[0].limit == 5.0
        trail = AuditTrail(store)
        (entry,) = [e for e in trail.entries() if e.action == "config.load"]
        assert entry.config_hash == config.sha256 and entry.user_id == "system"
        assert trail.verify().ok
    # the record tables refuse rewriting
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("DELETE FROM alarm_history")
    conn.close()

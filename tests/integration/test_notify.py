"""The built-in notify plugin: [[notify]] targets get alarm transitions, filtered, off the loop."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from .floorkit import ANTE_AND_BUFFER, dp_monitor, publish, running_floor, wait_until

pytestmark = pytest.mark.integration

PAGER = """
import json, os, sys
doc = json.loads(sys.stdin.read())
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"doc": doc, "env": {k: v for k, v in os.environ.items()
                                            if k.startswith("FLOORCTL_")}}) + "\\n")
"""

FLOOR = (
    """
[floor]
id = "nt"
[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-nt-${PORT}"
"""
    + ANTE_AND_BUFFER
    + """
[[room]]
id = "store"
iso_class = 8
pressure = "positive"
pressure_reference = "ante"

[[notify]]
name = "log"
kind = "file"
path = "${DIR}/alarms.jsonl"
states = ["unack", "normal", "rtn-unack"]

[[notify]]
name = "pager"
kind = "command"
command = ["${PY}", "${DIR}/pager.py", "${DIR}/paged.jsonl"]
min_priority = "high"
rooms = ["buffer"]

[[notify]]
name = "broken"
kind = "command"
command = ["${PY}", "-c", "import sys; print('gateway down', file=sys.stderr); sys.exit(3)"]
"""
    + dp_monitor("mon")
    + dp_monitor("mon2", "store")
)


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


async def test_targets_get_what_they_asked_for(mosquitto, tmp_path: Path) -> None:
    (tmp_path / "pager.py").write_text(PAGER)
    log, paged = tmp_path / "alarms.jsonl", tmp_path / "paged.jsonl"
    env = {"PORT": mosquitto.port, "DIR": tmp_path, "PY": sys.executable}
    async with running_floor(FLOOR, **env) as (floor, _seen):
        port = mosquitto.port
        await publish(port, "gw/mon2", json.dumps({"dp": 7.0}))  # store: alert (medium)
        await publish(port, "gw/mon", json.dumps({"dp": 7.0}))  # buffer: alert (medium)
        await publish(port, "gw/mon", json.dumps({"dp": 3.0}))  # buffer: action (high)
        await publish(port, "gw/mon", json.dumps({"dp": 12.0}))  # back to normal
        await wait_until(lambda: len(lines(log)) >= 4, timeout=15, what="the log file")
        await wait_until(lambda: len(lines(paged)) >= 1, timeout=15, what="the pager")
        await wait_until(lambda: floor.stats()["notify"]["broken"]["failed"] >= 3, timeout=15)
        await asyncio.sleep(0.3)  # anything else would have arrived by now
        stats = floor.stats()["notify"]
    logged = [(d["device"], d["to"], d["cause"]) for d in lines(log)]
    assert ("mon2", "unack", "activate") in logged
    assert ("mon", "unack", "activate") in logged
    assert ("mon", "unack", "escalate") in logged
    assert ("mon", "rtn-unack", "clear") in logged
    assert all(d["floor"] == "nt" and d["v"] == 1 for d in lines(log))
    # the pager: only high priority, only the buffer room, with the environment set
    page = lines(paged)
    assert [(p["doc"]["device"], p["doc"]["cause"]) for p in page] == [("mon", "escalate")]
    e = page[0]["env"]
    assert (e["FLOORCTL_ALARM_ROOM"], e["FLOORCTL_ALARM_PRIORITY"]) == ("buffer", "high")
    assert (e["FLOORCTL_ALARM_STATE"], e["FLOORCTL_ALARM_SEVERITY"]) == ("unack", "action")
    assert (e["FLOORCTL_ALARM_VALUE"], e["FLOORCTL_ALARM_LIMIT"]) == ("3.0", "5.0")
    assert e["FLOORCTL_FLOOR"] == "nt" and e["FLOORCTL_ALARM_TIME"].endswith("Z")
    # a failing program is counted with its error; the alarms went on regardless
    assert stats["broken"]["last_error"].endswith("exited 3: gateway down")
    assert stats["log"]["failed"] == 0 and stats["pager"]["sent"] == 1

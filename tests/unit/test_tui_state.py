"""The terminal's state model, from recorded messages (no Textual, no broker)."""

from __future__ import annotations

import datetime as dt
import json

from floorctl.config import parse_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.scheduler.problem import Problem, Resource, ResourceKind, Window
from floorctl.scheduler.schedule import Assignment, Schedule
from floorctl.tui import gantt
from floorctl.tui.format import shelf_until
from floorctl.tui.screens.alarms import last_text
from floorctl.tui.screens.signature import describe_reply
from floorctl.tui.source import decode
from floorctl.tui.state import FloorState

FLOOR = """
[floor]
id = "t"
[[mqtt]]
name = "b"
[[room]]
id = "ante"
iso_class = 8
pressure = "positive"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
pressure_reference = "ante"
[[room]]
id = "hood"
iso_class = 5
within = "buffer"
[[device]]
id = "mon"
kind = "mqtt_json"
via = "b"
room = "buffer"
[device.options]
state_topic = "gw/mon"
[[device.fields]]
name = "dp"
unit = "Pa"
path = "dp"
quantity = "differential_pressure"
[[device.fields]]
name = "t"
unit = "°C"
path = "t"
quantity = "temperature"
[[device]]
id = "pc"
kind = "mqtt_json"
via = "b"
room = "hood"
[device.options]
state_topic = "gw/pc"
[[device.fields]]
name = "p05"
unit = "counts/m³"
path = "p05"
quantity = "particles_0_5um"
"""
P = "floorctl/t"
T = 1_800_000_000.0


def state() -> FloorState:
    kinds = collect_kinds(get_plugin_manager(autoload=False))
    return FloorState(parse_config(FLOOR.encode(), kinds, env={}))


def point(device: str, name: str, value: object, quality: str = "good", t: float = T) -> tuple:
    doc = {"v": 1, "device": device, "point": name, "value": value, "unit": None}
    doc.update(quality=quality, receive_time=t, detail=None, historical=False)
    return f"{P}/point/{device}/{name}", doc


def alarm(device: str, name: str, st: str, priority: str, t: float, **last: object) -> tuple:
    doc = {
        "v": 1,
        "device": device,
        "point": name,
        "room": "buffer",
        "state": st,
        "severity": "action",
        "value": 3.0,
        "last": {"cause": "activate", "time": t, "priority": priority, **last},
        "time": t,
    }
    return f"{P}/alarm/{device}/{name}", doc


def test_points_rooms_and_stale_values() -> None:
    s = state()
    s.apply_all(
        [
            (f"{P}/point/mon/dp", {**point("mon", "dp", 14.87)[1], "unit": "Pa"}),
            point("mon", "t", 19.44),
            point("pc", "p05", 1234.0, quality="stale"),
            (f"{P}/room/buffer/status", {"v": 1, "room": "buffer", "status": "alert", "time": T}),
        ]
    )
    assert s.take_changes() == {"points", "rooms"}
    assert not s.dirty
    rooms = {r.id: r for r in s.iter_room_tiles()}
    assert set(rooms) == {"ante", "buffer"}  # the hood is inside the buffer room's tile
    buffer = rooms["buffer"]
    assert (buffer.iso_class, buffer.status, buffer.active_alarms) == ("ISO 7", "alert", 0)
    texts = {r.label: (r.text, r.stale) for r in buffer.readings}
    assert texts["dP vs ante"] == ("+14.9 Pa", False)  # the sign is always shown
    assert texts["T"] == ("19.4", False)
    (hood,) = buffer.units
    assert (hood.id, hood.iso_class, hood.status) == ("hood", "ISO 5", "unknown")
    assert hood.readings[0].text == "1,234 STALE (stale)" and hood.readings[0].stale

    # a device in comm-loss makes its good-looking points stale too
    s.apply(
        f"{P}/device/mon/status",
        {"v": 1, "device": "mon", "state": "comm-loss", "since": T, "counters": {}, "time": T},
    )
    texts = {r.label: r.text for r in s.room_view(s.config.rooms[1]).readings}
    assert texts["dP vs ante"] == "+14.9 Pa STALE (comm-loss)"
    assert s.is_stale(("mon", "t"))
    # a retained topic cleared (empty payload) removes the value
    s.apply(f"{P}/point/mon/t", decode(b""))
    assert ("mon", "t") not in s.points


def test_alarms_sorted_by_priority_then_time_and_hidden_lists() -> None:
    s = state()
    s.apply_all(
        [
            alarm("mon", "dp", "unack", "high", T - 60),
            alarm("mon", "t", "acked", "low", T - 10),
            alarm("pc", "p05", "unack", "high", T - 5),
            alarm(
                "mon", "x", "shelved", "medium", T - 1, cause="shelve", detail="until 1800000100"
            ),
            alarm("mon", "y", "normal", "low", T),
            alarm("mon", "z", "out-of-service", "low", T),
        ]
    )
    assert [a.id for a in s.shown_alarms()] == ["pc/p05", "mon/dp", "mon/t"]
    assert [a.id for a in s.sorted_alarms(["shelved"])] == ["mon/x"]
    assert [a.id for a in s.sorted_alarms(["out-of-service"])] == ["mon/z"]
    assert s.alarms[("mon", "dp")].state_name == "Unacknowledged"
    assert s.active_alarms("buffer") == 3
    shelved = s.alarms[("mon", "x")]
    assert shelf_until(shelved.last["detail"]) == 1800000100.0
    assert last_text(shelved, T).startswith("shelve until ")
    assert last_text(shelved, T).endswith("(in 100s)")
    assert shelf_until("role supervisor; until 1.8e+09") is None  # precision lost: not shown
    s.apply(*alarm("mon", "x", "unack", "medium", T + 200, cause="shelf-expired"))
    assert last_text(s.alarms[("mon", "x")], T + 201).startswith("shelf expired at ")


def test_garbage_is_counted_never_raised() -> None:
    s = state()
    s.apply(f"{P}/point/mon/dp", "not json")
    s.apply(f"{P}/alarm/mon/dp", {"no": "state"})
    s.apply("elsewhere/point/a/b", {"value": 1})
    s.apply(f"{P}/what/ever", {})
    s.apply(f"{P}/status", {"v": 1, "state": "online"})
    assert (s.ignored, s.applied) == (4, 1)
    assert s.take_changes() == {"daemon"}


def test_series_merges_history_and_live_samples_and_keeps_gaps() -> None:
    s = state()
    key = ("mon", "dp")
    s.watch([key])
    since, until = T - 600, T
    for i in range(5, 10):  # live samples in minutes 5..9
        s.apply(*point("mon", "dp", float(i), t=since + i * 60 + 1))
    s.apply(*point("mon", "dp", 99.0, quality="bad", t=since + 9 * 60 + 30))  # not trended
    history = [(since, 1.0), (since + 60, 2.0)]  # minutes 0 and 1 from the store
    assert s.series(key, history, since, until, 10) == [1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    s.watch([])
    assert s.live == {}


def test_describe_reply_is_verbatim() -> None:
    ok = {"status": "accepted", "result": "unack -> acked", "audit_seq": 812}
    assert describe_reply(ok) == (True, "accepted: unack -> acked (audit entry 812)")
    refused = {
        "status": "refused",
        "reason": "auth",
        "error": "wrong password or PIN for tech: 3 attempts left before lockout",
    }
    assert describe_reply(refused) == (
        False,
        "refused (auth): wrong password or PIN for tech: 3 attempts left before lockout",
    )


def test_gantt_marks_batches_outages_now_and_out_of_service() -> None:
    epoch = dt.datetime(2025, 3, 3, 6, tzinfo=dt.UTC)
    problem = Problem(
        name="p",
        epoch=epoch,
        resources=(
            Resource("buffer", ResourceKind.ROOM, capacity=2),
            Resource("hood", ResourceKind.UNIT, within="buffer", outages=(Window(60, 120),)),
        ),
    )
    sched = Schedule.build(epoch, [Assignment("B1/fill", "B1", 0, 30, (("u", ("hood",)),))])
    g = gantt.render(problem, sched, start=0, span=120, width=20, now=45, out_of_service={"buffer"})
    rows = {r.resource: r for r in g.rows}
    assert rows["hood"].cells.startswith("???")  # no batch symbol: B1 is not a plan batch
    assert rows["buffer"].out_of_service and rows["buffer"].label.startswith("buffer OUT")
    assert "#" in rows["hood"].cells and "|" in rows["buffer"].cells
    assert g.now_column is not None and "v now" in g.header
    assert json.dumps(g.text())  # plain text throughout

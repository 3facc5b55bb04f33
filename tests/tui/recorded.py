"""A recorded floor for TUI tests and snapshots: the demo floor (devices.toml) as the daemon
publishes it at one frozen moment, plus canned answers to the history and audit queries."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from floorctl.config import Config, load_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.tui.app import FloorApp
from floorctl.tui.source import RecordedSource

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
PLAN = ROOT / "examples" / "plans" / "demo" / "facility.toml"
SCHEDULE = DATA / "demo-schedule.json"
#: the schedule as the snapshots show it (they run from the repository's root)
SCHEDULE_SHOWN = Path("tests/tui/data/demo-schedule.json")
#: Wed 5 Mar 2025 12:00 in the plan's time zone (America/New_York, UTC-5 then)
NOW = dt.datetime(2025, 3, 5, 17, 0, tzinfo=dt.UTC).timestamp()
P = "floorctl/demo"


def demo_config() -> Config:
    return load_config(str(ROOT / "devices.toml"), collect_kinds(get_plugin_manager()))


def _point(device: str, point: str, value: Any, unit: str | None, quality: str = "good") -> tuple:
    return (
        f"{P}/point/{device}/{point}",
        {
            "v": 1,
            "device": device,
            "point": point,
            "value": value,
            "unit": unit,
            "quality": quality,
            "source_time": None,
            "receive_time": NOW - (95 if quality == "stale" else 2),
            "detail": "no value within 3s" if quality == "stale" else None,
            "historical": False,
        },
    )


def _alarm(
    device: str,
    point: str,
    room: str,
    state: str,
    severity: str,
    priority: str,
    ago: float,
    value: float,
    cause: str = "activate",
    **last: Any,
) -> tuple:
    t = NOW - ago
    return (
        f"{P}/alarm/{device}/{point}",
        {
            "v": 1,
            "device": device,
            "point": point,
            "room": room,
            "quantity": None,
            "state": state,
            "severity": severity,
            "value": value,
            "last": {
                "device": device,
                "point": point,
                "from": "normal",
                "to": state,
                "cause": cause,
                "time": t,
                "severity": severity,
                "priority": priority,
                "value": value,
                "limit": None,
                "condition": None,
                "user": None,
                "comment": None,
                "detail": None,
                **last,
            },
            "time": t,
        },
    )


def _device(config: Config, device: str, state: str, readings: int, errors: int = 0) -> tuple:
    d = config.device(device)
    assert d is not None
    last_error = "modbus ems: connection down, next attempt in 2.0s" if errors else None
    return (
        f"{P}/device/{device}/status",
        {
            "v": 1,
            "device": device,
            "name": d.name,
            "kind": d.kind,
            "room": d.room,
            "via": d.via,
            "state": state,
            "since": NOW - (94 if state == "comm-loss" else 3600),
            "interval": float(d.interval),
            "stale_after": d.stale_after,
            "counters": {
                "readings": readings,
                "bad": 1 if errors else 0,
                "errors": errors,
                "polls": readings + errors,
                "overruns": 0,
                "last_error": last_error,
                "last_error_time": NOW - 94 if errors else None,
                "last_reading_time": NOW - (95 if state == "comm-loss" else 1),
            },
            "driver": None,
            "time": NOW,
        },
    )


def messages(config: Config) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        (
            f"{P}/status",
            {
                "v": 1,
                "state": "online",
                "floor": "demo",
                "version": "0.1.0",
                "pid": 4711,
                "since": NOW - 5400,
                "config_sha256": "0" * 64,
                "time": NOW - 5400,
            },
        )
    ]
    for d in config.devices:
        if d.id == "thp-hd":
            out.append(_device(config, d.id, "comm-loss", 5300, errors=3))
        else:
            out.append(_device(config, d.id, "online", 5400))
    out += [_point(d, p, v, _unit(config, d, p), _quality(d)) for (d, p), v in VALUES.items()]
    return out + _alarms_and_rooms()


def _unit(config: Config, device: str, point: str) -> str | None:
    d = config.device(device)
    assert d is not None
    f = d.get_field(point)
    assert f is not None
    return f.unit


def _quality(device: str) -> str:
    return "stale" if device == "thp-hd" else "good"


VALUES = {
    ("thp-ante", "t"): 19.1,
    ("thp-ante", "rh"): 41.0,
    ("thp-ante", "dp"): 12.4,
    ("thp-buffer", "t"): 19.3,
    ("thp-buffer", "rh"): 43.5,
    ("thp-buffer", "dp"): 3.2,
    ("thp-hd", "t"): 19.0,
    ("thp-hd", "rh"): 40.2,
    ("thp-hd", "dp"): -11.8,
    ("pc-buffer", "counts_0_5"): 120_400.0,
    ("pc-buffer", "counts_5_0"): 310.0,
    ("pc-hd", "counts_0_5"): 80_100.0,
    ("pc-hd", "counts_5_0"): 120.0,
    ("pc-laf-1", "counts_0_5"): 1_400.0,
    ("pc-laf-1", "counts_5_0"): 0.0,
    ("pc-bsc-1", "counts_0_5"): 2_100.0,
    ("pc-bsc-1", "counts_5_0"): 0.0,
    ("logger-corridor", "t"): 21.4,
    ("logger-corridor", "rh"): 38.0,
    ("laf-1", "downflow"): 0.45,
    ("laf-2", "downflow"): 0.44,
    ("bsc-1", "downflow"): 0.33,
    ("bsc-1", "inflow"): 0.52,
    ("bsc-2", "downflow"): 0.31,
    ("bsc-2", "inflow"): 0.50,
}


def _alarms_and_rooms() -> list[tuple[str, Any]]:
    out = [
        _alarm("thp-buffer", "dp", "buffer", "unack", "action", "high", 40, 3.2, limit=5.0),
        _alarm("pc-buffer", "counts_0_5", "buffer", "acked", "alert", "low", 900, 120_400.0),
        _alarm("thp-hd", "_comm", "hd-buffer", "unack", "action", "high", 94, 1.0),
        _alarm("thp-hd", "dp", "hd-buffer", "cannot-evaluate", "action", "medium", 94, -11.8),
        _alarm(
            "fridge-1",
            "temperature",
            "ante",
            "shelved",
            "alert",
            "medium",
            600,
            8.4,
            cause="shelve",
            user="sup",
            comment="door seal replaced",
            detail=f"role supervisor; until {NOW + 1200:.3f}",
        ),
        _alarm(
            "bsc-2",
            "downflow",
            "bsc-2",
            "out-of-service",
            "alert",
            "low",
            7200,
            0.31,
            cause="remove-from-service",
            user="qa",
            comment="recertification",
        ),
        _alarm(
            "autoclave-1",
            "temperature",
            "corridor",
            "suppressed",
            "alert",
            "low",
            300,
            20.0,
            cause="suppress",
        ),
    ]
    for room, status in (
        ("corridor", "ok"),
        ("ante", "ok"),
        ("buffer", "action"),
        ("hd-buffer", "no-data"),
        ("laf-1", "ok"),
        ("laf-2", "ok"),
        ("bsc-1", "no-data"),
        ("bsc-2", "out-of-service"),
    ):
        out.append(
            (f"{P}/room/{room}/status", {"v": 1, "room": room, "status": status, "time": NOW - 600})
        )
    return out


def history(args: dict[str, Any]) -> dict[str, Any]:
    """The history query's answer: a smooth wave per point, with a gap (buckets 20..24)."""
    since, until, n = float(args["since"]), float(args["until"]), int(args["buckets"])
    width = (until - since) / n
    seed = sum(map(ord, f"{args['device']}/{args['point']}"))
    level = VALUES.get((args["device"], args["point"]), 10.0) or 1.0
    series = []
    for i in range(n - 1):  # the current minute comes from live values
        if 20 <= i < 25:
            continue
        avg = level * (1 + 0.2 * math.sin((i + seed) / 6))
        series.append([since + i * width, avg * 0.95, avg, avg * 1.05, 12])
    return {
        "v": 1,
        "id": "h",
        "status": "done",
        "device": args["device"],
        "point": args["point"],
        "since": since,
        "until": until,
        "series": series,
    }


def audit(args: dict[str, Any]) -> dict[str, Any]:
    base = dt.datetime.fromtimestamp(NOW, dt.UTC)
    entries = []
    rows = [
        (
            "sup",
            "Sam Supervisor",
            "alarm.shelve",
            "alarm:fridge-1/temperature",
            "acked",
            "shelved",
            "door seal replaced",
            "approved",
        ),
        ("system", None, "alarm.activate", "alarm:thp-buffer/dp", "normal", "unack", None, None),
        (
            "tech",
            "Terry Tech",
            "alarm.ack",
            "alarm:pc-buffer/counts_0_5",
            "unack",
            "acked",
            "door was propped; closed it",
            "acknowledged",
        ),
        ("admin", "Ada Admin", "user.add", "user:tech", None, "technician", None, None),
    ]
    for i, (user, name, action, target, old, new, reason, meaning) in enumerate(rows):
        t = base - dt.timedelta(minutes=10 * i + 1)
        entries.append(
            {
                "seq": 812 - i,
                "time": t.isoformat().replace("+00:00", "Z"),
                "user_id": user,
                "printed_name": name,
                "action": action,
                "target": target,
                "old_value": old,
                "new_value": new,
                "reason": reason,
                "meaning": meaning,
                "config_hash": "468f",
                "prev_hash": "ab" * 32,
                "hash": "cd" * 32,
            }
        )
    return {
        "v": 1,
        "id": "a",
        "status": "done",
        "entries": entries,
        "verify": {
            "ok": True,
            "entries": 812,
            "head_seq": 812,
            "head_hash": "cd" * 32,
            "broken_seq": None,
            "problem": None,
            "describe": "audit trail intact: 812 entries, head 812 cdcdcdcdcdcd",
        },
    }


def recorded_app(
    *,
    read_only: bool = False,
    plan: Path = PLAN,
    schedule: Path | None = SCHEDULE,
    banner: str | None = "demo users: tech / 1111 (technician), sup / 2222 (supervisor)",
) -> FloorApp:
    config = demo_config()
    source = RecordedSource(messages(config), replies={"history": history, "audit": audit})
    return FloorApp(
        config,
        read_only=read_only,
        plan=plan,
        schedule=schedule,
        banner=banner,
        source=source,
        clock=lambda: NOW,
    )


# --- the batch record floor (tests/batchrecord/) ---------------------------------------------

BR = ROOT / "tests" / "batchrecord"
#: the plan and schedule as the batch-view tests give them (relative to the repository's root)
BR_PLAN_SHOWN = Path("tests/batchrecord/plan.toml")
BR_SCHEDULE_SHOWN = Path("tests/tui/data/br-schedule.json")
#: the daemon's answer to the batch-record query for B1 of that floor, recorded by
#: ``FLOORCTL_TUI_RECORD_DATA=1 pytest tests/tui/test_tui_batch_live.py`` (with its schedule)
BR_REPLY = DATA / "batch-record-B1.json"
#: when QA reviews the batch: just after the recorded answer was made (21 Nov 2026 13:18 UTC)
BR_NOW = dt.datetime(2026, 11, 21, 13, 30, tzinfo=dt.UTC).timestamp()


def batch_record(args: dict[str, Any]) -> dict[str, Any]:
    """The batch-record query's answer: the recorded one for B1 when asked with the plan and
    schedule files as absolute paths (what the daemon needs), else refused as the daemon
    refuses."""
    import json

    plan, schedule = Path(str(args.get("plan"))), Path(str(args.get("schedule")))
    if not (plan.is_absolute() and schedule.is_absolute()):
        error = "plan and schedule: absolute paths expected by this recording"
    elif (plan, schedule) != (BR / "plan.toml", DATA / "br-schedule.json"):
        error = f"this recording has the batch record of {BR / 'plan.toml'} only"
    elif args.get("batch") != "B1":
        error = f"this recording has no batch record of {args.get('batch')!r}"
    else:
        reply: dict[str, Any] = json.loads(BR_REPLY.read_text(encoding="utf-8"))
        return reply
    return {"v": 1, "id": "r", "status": "refused", "reason": "bad-request", "error": error}


def batch_app(*, read_only: bool = False, schedule: Path | None = BR_SCHEDULE_SHOWN) -> FloorApp:
    """The batch record floor, recorded: its daemon online, the B1 record as the answer."""
    config = load_config(str(BR / "devices.toml"), collect_kinds(get_plugin_manager()))
    status = {
        "v": 1,
        "state": "online",
        "floor": "br",
        "version": "0.1.0",
        "pid": 4711,
        "since": BR_NOW - 7200,
        "config_sha256": "0" * 64,
        "time": BR_NOW - 7200,
    }
    source = RecordedSource(
        [("floorctl/br/status", status)], replies={"batch-record": batch_record}
    )
    return FloorApp(
        config,
        read_only=read_only,
        plan=BR_PLAN_SHOWN,
        schedule=schedule,
        source=source,
        clock=lambda: BR_NOW,
    )

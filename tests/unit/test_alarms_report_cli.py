"""`floorctl alarms report` over a real store: the KPIs of a known alarm history."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from floorctl.alarms.cli import parse_when
from floorctl.cli import cli
from floorctl.store.db import AlarmTransition, Store


def history(now: float) -> list[AlarmTransition]:
    rows: list[AlarmTransition] = []
    t0 = now - 3600
    # a chattering point: 4 activations within a minute, each cleared after 2 s (fleeting)
    for i in range(4):
        at = t0 + i * 10
        rows.append(AlarmTransition(at, "pc-1/p05", "normal", "unack", "alert", cause="activate",
                                    priority="low"))  # fmt: skip
        rows.append(AlarmTransition(at + 2, "pc-1/p05", "unack", "rtn-unack", cause="clear"))
        rows.append(AlarmTransition(at + 3, "pc-1/p05", "rtn-unack", "normal", cause="ack"))
    # a flood: 12 points within 5 minutes
    for i in range(12):
        rows.append(AlarmTransition(t0 + 600 + i * 20, f"thp-{i}/t", "normal", "unack", "action",
                                    cause="activate", priority="high"))  # fmt: skip
    # standing since two days ago, still active
    rows.append(AlarmTransition(now - 2 * 86400, "fridge/t", "normal", "unack", "alert",
                                cause="activate", priority="medium"))  # fmt: skip
    # active long ago, but cleared before the window: not standing
    rows.append(AlarmTransition(now - 3 * 86400, "old/t", "normal", "unack", "alert",
                                cause="activate", priority="low"))  # fmt: skip
    rows.append(AlarmTransition(now - 2.5 * 86400, "old/t", "unack", "rtn-unack", cause="clear"))
    return rows


def test_report_text_and_json(tmp_path) -> None:
    now = time.time()
    db = tmp_path / "f.db"
    with Store(db) as store:
        store.write_alarm_transitions(history(now))
    runner = CliRunner()
    result = runner.invoke(cli, ["alarms", "report", "--db", str(db), "--since", "2h"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Annunciations: 16; " in out
    assert "Floods (more than 10 in 10 minutes): 1" in out
    assert "Chattering (3 or more activations in 60 s): 1" in out
    assert "pc-1/p05: 4 from" in out
    assert "Fleeting (cleared within 10 s): 4" in out
    assert "Standing (active over 24 h): 1" in out and "fridge/t: since" in out
    assert "low 25%, medium 0%, high 75%" in out
    result = runner.invoke(cli, ["alarms", "report", "--db", str(db), "--since", "2h", "--json"])
    doc = json.loads(result.output)
    assert doc["rate"]["annunciations"] == 16
    assert doc["bad_actors"][0] == {"alarm": "pc-1/p05", "activations": 4, "share": 0.25}
    assert [s["alarm"] for s in doc["standing"]] == ["fridge/t"]


def test_report_bad_window_and_missing_store(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["alarms", "report", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 2 and "does not exist" in result.output
    db = tmp_path / "f.db"
    Store(db).close()
    result = runner.invoke(cli, ["alarms", "report", "--db", str(db), "--since", "yesterday"])
    assert result.exit_code == 2 and "a duration ago ('7d', '12h') or an ISO" in result.output
    result = runner.invoke(
        cli, ["alarms", "report", "--db", str(db), "--since", "1h", "--until", "2h"]
    )
    assert result.exit_code == 2 and "the window must end after it starts" in result.output


def test_parse_when() -> None:
    assert parse_when("90m", 10_000.0) == 10_000.0 - 5400
    assert parse_when("2026-11-01T00:00:00", 0.0) == 1_793_491_200.0
    assert parse_when("2026-11-01T01:00:00+01:00", 0.0) == 1_793_491_200.0

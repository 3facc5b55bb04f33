"""The daemon's store writer thread (real SQLite files): order, audit of transitions, snapshots,
submissions; and the upgrade of a version-1 store."""

from __future__ import annotations

import sqlite3

import pytest

from floorctl.alarms.engine import AlarmPoint, AlarmPointConfig
from floorctl.model import Quality, Reading
from floorctl.store import db as store_db
from floorctl.store.audit import AuditTrail
from floorctl.store.db import SCHEMA_VERSION, Store
from floorctl.store.writer import StoreWriter


def transitions() -> tuple[AlarmPoint, list]:
    p = AlarmPoint(AlarmPointConfig(device="d", point="p", action_low=5.0))
    out = p.feed(Reading("d", "p", 3.0, Quality.GOOD, receive_time=1.0), 1.0)
    out += p.acknowledge("tech", "seen", 2.0)
    return p, out


def test_transitions_are_audited_and_saved_with_the_state_before_a_submission_returns(tmp_path):
    w = StoreWriter(tmp_path / "f.db", raw_retention_s=3600, flush_interval=30.0)
    w.start()
    try:
        p, (activate, ack) = transitions()
        w.reading(Reading("d", "p", 3.0, Quality.GOOD, receive_time=1.0))
        w.alarm(activate)
        w.alarm(ack, audit_seq=None)
        w.alarm_state("d/p", p.state.value, p.snapshot(), 2.0)
        # flush_interval is 30 s: only the submission makes the writer write now, and it runs
        # after everything queued before it
        counts = w.submit(
            lambda s, t: (s.count_readings(), len(s.alarm_history()), s.alarm_states())
        ).result(timeout=10)
        assert counts[0] == 1 and counts[1] == 2
        assert counts[2]["d/p"][0] == "acked"
        assert counts[2]["d/p"][1] == p.snapshot()
        boom = w.submit(lambda s, t: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            boom.result(timeout=10)
    finally:
        w.close()
    with Store(tmp_path / "f.db") as s:
        history = s.alarm_history()
        entries = {e.seq: e for e in AuditTrail(s).entries()}
        assert AuditTrail(s).verify().ok
    assert [h.cause for h in history] == ["activate", "ack"]
    assert [h.priority for h in history] == ["high", "high"]
    first = entries[history[0].audit_seq]
    assert (first.user_id, first.action, first.old_value) == ("system", "alarm.activate", "normal")
    assert entries[history[1].audit_seq].action == "alarm.ack"


def _count(tmp_path) -> int:
    con = sqlite3.connect(tmp_path / "f.db")
    try:
        return con.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        con.close()


def test_readings_wait_for_the_interval_unless_a_batch_is_full(tmp_path):
    import time

    w = StoreWriter(tmp_path / "f.db", raw_retention_s=3600, flush_interval=30.0, batch=50)
    w.start()
    try:
        for i in range(49):
            w.reading(Reading("d", "p", float(i), Quality.GOOD, receive_time=1.0 + i))
        time.sleep(0.3)
        assert _count(tmp_path) == 0  # a reading does not wake the writer
        w.reading(Reading("d", "p", 49.0, Quality.GOOD, receive_time=50.0))  # the batch is full
        deadline = time.monotonic() + 10
        while _count(tmp_path) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(tmp_path) == 50
    finally:
        w.close()


def test_close_writes_everything_queued_even_beyond_a_batch(tmp_path):
    w = StoreWriter(tmp_path / "f.db", raw_retention_s=3600, flush_interval=30.0, batch=1000)
    w.start()
    for i in range(2500):
        w.reading(Reading("d", "p", float(i), Quality.GOOD, receive_time=1.0 + i))
    w.close()
    assert _count(tmp_path) == 2500


def test_submit_after_close_fails_instead_of_hanging(tmp_path):
    w = StoreWriter(tmp_path / "f.db", raw_retention_s=3600)
    w.start()
    w.close()
    with pytest.raises(RuntimeError, match="is closed"):
        w.submit(lambda s, t: None).result(timeout=5)


def test_a_version_1_store_is_upgraded_and_keeps_its_records(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    monkeypatch.setattr(store_db, "SCHEMA_VERSION", 1)
    with Store(path) as s:
        AuditTrail(s).append(user_id="system", printed_name="t", action="x", target="y")
    monkeypatch.undo()
    assert (
        sqlite3.connect(path).execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
    )
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert AuditTrail(s).verify().ok
        s.save_alarm_states([("d/p", "acked", {"state": "acked"}, 1.0)])
        assert s.alarm_states() == {"d/p": ("acked", {"state": "acked"}, 1.0)}


def test_series_buckets_raw_and_rolled_up_values_and_keeps_gaps(tmp_path):
    with Store(tmp_path / "f.db", raw_retention_s=600) as s:
        rows = [
            Reading("d", "p", float(i), Quality.GOOD, receive_time=1000.0 + i) for i in range(60)
        ]
        rows += [Reading("d", "p", None, Quality.STALE, receive_time=1030.5)]  # not a value
        rows += [Reading("d", "p", 5.0, Quality.GOOD, receive_time=1200.0 + i) for i in range(3)]
        s.write_readings(rows)
        series = s.series("d", "p", 1000.0, 1300.0, buckets=10)  # 30 s buckets
        assert [(t, lo, hi, n) for t, lo, _avg, hi, n in series] == [
            (1000.0, 0.0, 29.0, 30), (1030.0, 30.0, 59.0, 30), (1180.0, 5.0, 5.0, 3)
        ]  # fmt: skip
        assert series[0][2] == 14.5
        # older than the raw window: from the 1-minute rollups, the same numbers
        s.compact(now=1000.0 + 60 + 600 + 60)
        assert s.count_readings() < 64
        rolled = s.series("d", "p", 1000.0, 1300.0, buckets=5)  # 60 s buckets
        assert [(lo, hi, n) for _t, lo, _a, hi, n in rolled][:1] == [(0.0, 59.0, 60)]
        with pytest.raises(ValueError):
            s.series("d", "p", 10.0, 5.0)

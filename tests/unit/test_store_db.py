"""The record store: WAL, schema, batched writes, compaction into 1-minute rollups."""

from __future__ import annotations

import math
import random
import sqlite3
import time

import pytest

from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.store.audit import AuditTrail
from floorctl.store.db import SCHEMA_VERSION, AlarmTransition, Store, StoreError, open_store

T0 = 1_790_000_040.0  # a whole minute (divisible by 60)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "floorctl.db", raw_retention_s=3600)
    yield s
    s.close()


def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "f.db"
    with open_store(path) as s:
        assert s.journal_mode == "wal"
        assert s.schema_version == SCHEMA_VERSION
    # reopening runs no migration twice and keeps WAL (a property of the file)
    with open_store(path) as s:
        assert s.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "f.db"
    open_store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_readings_round_trip_every_value_kind(store):
    rows = [
        Reading("dp-1", "dp", -12.5, Quality.GOOD, receive_time=T0, unit="Pa"),
        Reading("dp-1", "count", 7, Quality.GOOD, receive_time=T0 + 1),
        Reading("door", "open", True, Quality.GOOD, receive_time=T0 + 2),
        Reading("bal", "mode", "stable", Quality.UNCERTAIN, receive_time=T0 + 3),
        Reading.bad("dp-1", "dp", "timeout", receive_time=T0 + 4, quality=Quality.STALE),
        Reading("dp-1", "dp", math.nan, Quality.BAD, receive_time=T0 + 5, detail="NaN"),
        Reading(
            "pc-1",
            "p05",
            3,
            Quality.GOOD,
            receive_time=T0 + 9,
            source_time=T0 - 30,
            historical=True,
        ),
    ]
    assert store.write_readings(rows) == 7
    back = store.readings()
    assert [r.value for r in back] == [3, -12.5, 7, 1, "stable", None, None]
    assert back[0].historical and back[0].source_time == T0 - 30
    assert back[1].unit == "Pa" and back[1].quality is Quality.GOOD
    assert back[5].quality is Quality.STALE and back[5].detail == "timeout"
    assert [r.value for r in store.readings(device="dp-1", point="dp")] == [-12.5, None, None]
    assert len(store.readings(start=T0 + 1, end=T0 + 3)) == 2


def test_a_failed_batch_writes_nothing(store):
    good = [Reading("d", "p", i, Quality.GOOD, receive_time=T0 + i) for i in range(10)]
    with pytest.raises(RuntimeError), store.transaction():
        store.write_readings(good)
        raise RuntimeError("crash mid-batch")
    assert store.count_readings() == 0


def test_stored_records_cannot_be_rewritten(store):
    store.write_readings([Reading("d", "p", 1.0, Quality.GOOD, receive_time=T0)])
    store.write_events([Event(EventKind.COMM_LOSS, "d", "x", time=T0)])
    store.write_alarm_transitions([AlarmTransition(T0, "d/p", "normal", "unack")])
    c = store.conn
    for sql in (
        "UPDATE readings SET value = 2",
        "UPDATE events SET detail = 'y'",
        "DELETE FROM events",
        "UPDATE alarm_history SET to_state = 'normal'",
        "DELETE FROM alarm_history",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            c.execute(sql)


def test_events_and_alarm_transitions_round_trip(store):
    events = [
        Event(EventKind.COMM_LOSS, "dp-1", "no reply", time=T0),
        Event(EventKind.COMM_RESTORED, "dp-1", "", time=T0 + 5),
    ]
    store.write_events(events)
    assert store.events() == events
    assert store.events(start=T0 + 1) == events[1:]
    alarms = [
        AlarmTransition(T0, "room-3/dp", "normal", "unack", "action", -2.0, 2.5, "excursion"),
        AlarmTransition(
            T0 + 60, "room-3/dp", "unack", "acked", "action", cause="ack", audit_seq=17
        ),
        AlarmTransition(T0 + 70, "room-4/t", "normal", "cannot-evaluate", cause="stale"),
    ]
    store.write_alarm_transitions(alarms)
    assert store.alarm_history() == alarms
    assert store.alarm_history(point="room-3/dp") == alarms[:2]


def _stats(values):
    return min(values), sum(values) / len(values), max(values)


def test_compact_keeps_min_avg_max_exactly(store):
    rng = random.Random(4)
    rows, expected = [], {}
    # 10 minutes of 1 Hz data for two points, plus bad-quality and non-numeric noise
    for i in range(600):
        t = T0 + i + rng.random() * 0.5
        for point in ("dp", "t"):
            v = rng.uniform(-30, 30) if point == "dp" else rng.randint(15, 25)
            rows.append(Reading("r1", point, v, Quality.GOOD, receive_time=t, unit="Pa"))
            expected.setdefault((point, int(t // 60) * 60), []).append(v)
        if i % 7 == 0:
            rows.append(Reading("r1", "dp", 999.0, Quality.BAD, receive_time=t))
            rows.append(Reading("r1", "dp", "err", Quality.GOOD, receive_time=t))
    store.write_readings(rows)
    total = store.count_readings()

    now = T0 + 3600 + 5 * 60 + 30  # cutoff rounds down to T0 + 300: minutes 0..4 fold
    result = store.compact(now)
    assert result.cutoff == T0 + 300
    assert store.count_readings() == total - result.raw_deleted
    assert all(r.receive_time >= T0 + 300 for r in store.readings())

    rollups = {(r.point, r.minute): r for r in store.rollups(device="r1")}
    assert set(rollups) == {k for k in expected if k[1] < T0 + 300}
    for key, r in rollups.items():
        vmin, vavg, vmax = _stats(expected[key])
        assert (r.min, r.max, r.n_stat) == (vmin, vmax, len(expected[key]))
        assert r.avg == pytest.approx(vavg, rel=1e-12)
        assert r.unit == "Pa"
    # the noise is counted but never enters the statistics
    noisy = rollups[("dp", int(T0))]
    assert noisy.n > noisy.n_stat

    # compaction is in the audit trail, and the trail verifies
    entry = AuditTrail(store).head()
    assert entry.action == "store.compact" and str(result.raw_deleted) in entry.new_value
    assert AuditTrail(store).verify().ok

    # a second pass over the rest, then a late (historical) reading for a folded minute merges
    store.compact(T0 + 3600 + 3600)
    assert store.count_readings() == 0
    late = Reading(
        "r1",
        "dp",
        -100.0,
        Quality.GOOD,
        receive_time=T0 + 7200 + 1,
        source_time=T0 + 10,
        historical=True,
    )
    store.write_readings([late])
    assert store.compact(T0 + 3600 + 3600).raw_deleted == 1
    merged = next(r for r in store.rollups(device="r1", point="dp") if r.minute == T0)
    values = [*expected[("dp", int(T0))], -100.0]
    assert merged.min == -100.0 and merged.max == max(values) and merged.n_stat == len(values)
    assert merged.avg == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert sum(r.n_stat for r in store.rollups()) == sum(map(len, expected.values())) + 1


def test_compact_with_nothing_old_changes_nothing(store):
    store.write_readings([Reading("d", "p", 1.0, Quality.GOOD, receive_time=T0)])
    result = store.compact(T0 + 10)
    assert (result.raw_deleted, result.rollups_written) == (0, 0)
    assert AuditTrail(store).head() is None


def test_batched_write_throughput(store, capsys):
    n, batch = 50_000, 1_000
    rows = [
        Reading(
            f"dev-{i % 50}",
            f"p{i % 7}",
            float(i),
            Quality.GOOD,
            receive_time=T0 + i * 0.01,
            unit="Pa",
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    for i in range(0, n, batch):
        store.write_readings(rows[i : i + batch])
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    with capsys.disabled():
        print(f"\nstore: {rate:,.0f} readings/s in batches of {batch} (synchronous=FULL, WAL)")
    assert store.count_readings() == n
    assert rate > 10_000  # the daemon's 5k readings/s target, with margin

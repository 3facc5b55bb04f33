"""The hash-chained audit trail: append, verify, tamper detection, export."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import sqlite3

import pytest

from floorctl.store.audit import GENESIS_HASH, AuditTrail, canonical_json, file_sha256
from floorctl.store.db import open_store

T0 = 1_790_000_040.0


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "floorctl.db")
    yield s
    s.close()


def _fill(trail: AuditTrail, n: int = 8) -> None:
    for i in range(n):
        trail.append(
            user_id="jdoe",
            printed_name="Jane Doe",
            action="limit.change",
            target=f"room-{i}/dp",
            old_value=-2.5,
            new_value={"alert": -5.0, "action": -2.5},
            reason=f"change control CC-{100 + i}",
            when=T0 + i,
        )


def _raw(store):
    """A raw connection that can get behind the triggers (what an attacker with the file has)."""
    c = sqlite3.connect(store.path, isolation_level=None)
    c.execute("DROP TRIGGER audit_no_update")
    c.execute("DROP TRIGGER audit_no_delete")
    return c


def test_entries_chain_from_genesis(store):
    trail = AuditTrail(store)
    assert trail.verify().ok and trail.verify().entries == 0
    _fill(trail)
    entries = list(trail.entries())
    assert [e.seq for e in entries] == list(range(1, 9))
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    for e in entries:
        fields = {
            k: getattr(e, k)
            for k in (
                "seq",
                "time",
                "user_id",
                "printed_name",
                "action",
                "target",
                "old_value",
                "new_value",
                "reason",
                "meaning",
                "config_hash",
                "prev_hash",
            )
        }
        assert e.hash == hashlib.sha256(canonical_json(fields)).hexdigest()
    assert entries[0].time == "2026-09-21T14:14:00.000000Z"
    assert entries[0].old_value == "-2.5"
    assert json.loads(entries[0].new_value) == {"alert": -5.0, "action": -2.5}
    result = trail.verify()
    assert result.ok and result.entries == 8 and result.head_hash == entries[-1].hash
    assert "intact: 8 entries" in result.describe()


def test_update_and_delete_are_rejected(store):
    _fill(AuditTrail(store), 3)
    for sql in ("UPDATE audit SET reason = 'nothing'", "DELETE FROM audit WHERE seq = 3"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.conn.execute(sql)
    # from another connection too: the triggers live in the file
    other = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("UPDATE audit SET new_value = '0' WHERE seq = 2")
    other.close()
    assert AuditTrail(store).verify().ok


@pytest.mark.parametrize("column", ["new_value", "user_id", "time", "reason", "action"])
def test_one_changed_byte_names_that_entry(store, column):
    trail = AuditTrail(store)
    _fill(trail)
    raw = _raw(store)
    (text,) = raw.execute(f"SELECT {column} FROM audit WHERE seq = 5").fetchone()
    flipped = text[:-1] + chr(ord(text[-1]) ^ 1)  # one byte, one bit
    raw.execute(f"UPDATE audit SET {column} = ? WHERE seq = 5", (flipped,))
    raw.close()
    result = trail.verify()
    assert not result.ok
    assert result.broken_seq == 5
    assert result.problem.startswith("hash mismatch")
    assert result.entries == 4  # entries 1..4 were good
    assert "BROKEN at seq 5" in result.describe()


def test_rewritten_entry_with_recomputed_hash_breaks_the_next_link(store):
    trail = AuditTrail(store)
    _fill(trail)
    e = trail.get(3)
    forged = {
        k: getattr(e, k)
        for k in (
            "seq",
            "time",
            "user_id",
            "printed_name",
            "action",
            "target",
            "old_value",
            "new_value",
            "reason",
            "meaning",
            "config_hash",
            "prev_hash",
        )
    }
    forged["new_value"] = "-9.9"
    raw = _raw(store)
    raw.execute(
        "UPDATE audit SET new_value = ?, hash = ? WHERE seq = 3",
        ("-9.9", hashlib.sha256(canonical_json(forged)).hexdigest()),
    )
    raw.close()
    result = trail.verify()
    assert (result.ok, result.broken_seq) == (False, 4)
    assert result.problem.startswith("prev_hash mismatch")


def test_deleted_entry_is_a_gap(store):
    trail = AuditTrail(store)
    _fill(trail)
    raw = _raw(store)
    raw.execute("DELETE FROM audit WHERE seq = 6")
    raw.close()
    result = trail.verify()
    assert (result.ok, result.broken_seq) == (False, 7)
    assert result.problem.startswith("gap in seq: expected 6")


def test_appending_continues_the_chain_after_reopen(tmp_path):
    path = tmp_path / "f.db"
    with open_store(path) as s:
        _fill(AuditTrail(s), 2)
    with open_store(path) as s:
        trail = AuditTrail(s)
        e = trail.append(
            user_id="system",
            printed_name="floorctl",
            action="config.load",
            target="devices.toml",
            config_hash="ab" * 32,
        )
        assert e.seq == 3 and e.prev_hash == trail.get(2).hash
        assert trail.verify().ok


def test_config_hash_of_a_file(tmp_path):
    f = tmp_path / "devices.toml"
    f.write_bytes(b"[[room]]\nid = 'r1'\n")
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


def test_export_csv_and_json(store, tmp_path):
    trail = AuditTrail(store)
    _fill(trail, 4)
    assert trail.export(tmp_path / "a.csv", "csv") == 4
    with open(tmp_path / "a.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4]
    assert rows[2]["reason"] == "change control CC-102"
    assert rows[3]["hash"] == trail.get(4).hash
    assert trail.export(tmp_path / "a.json", "json") == 4
    doc = json.loads((tmp_path / "a.json").read_text("utf-8"))
    assert [e["seq"] for e in doc["entries"]] == [1, 2, 3, 4]
    assert doc["entries"][0]["printed_name"] == "Jane Doe"
    assert doc["entries"][0]["signatures"] == []
    with pytest.raises(ValueError):
        trail.export(tmp_path / "a.xml", "xml")


def test_append_joins_an_outer_transaction(store):
    trail = AuditTrail(store)
    with pytest.raises(RuntimeError), store.transaction():
        trail.append(user_id="u", printed_name="U", action="a", target="t")
        raise RuntimeError
    assert trail.head() is None

"""The append-only, hash-chained audit trail (21 CFR 11.10(e)).

Every entry carries the SHA-256 of the entry before it (``prev_hash``) and its own ``hash``,
computed over a canonical JSON of all its fields (``prev_hash`` included). SQLite triggers
refuse UPDATE and DELETE on the table; :meth:`AuditTrail.verify` walks the chain and names the
first entry that does not hold, so a change made behind the triggers' back is found.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import asdict, frozen

from floorctl.store.db import Store

GENESIS_HASH = "0" * 64

#: The entry fields, in column order; all but ``seq`` are text (or NULL).
FIELDS = (
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
    "hash",
)


@frozen
class AuditEntry:
    seq: int
    time: str  # ISO 8601 UTC, microseconds, "Z"
    user_id: str
    printed_name: str
    action: str  # "alarm.ack", "login.failed", "config.load", "user.add" ...
    target: str  # what it acted on: "alarm:room-3/dp", "user:jdoe", "devices.toml"
    old_value: str | None
    new_value: str | None
    reason: str | None  # the why: a comment or reason for change
    meaning: str | None  # meaning of the signature, when the entry was signed
    config_hash: str | None  # sha256 of a configuration file, where relevant
    prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        return canonical_json({k: v for k, v in asdict(self).items() if k != "hash"})


@frozen
class VerifyResult:
    ok: bool
    entries: int  # entries checked
    head_seq: int | None  # last entry's seq (record it elsewhere to detect truncation)
    head_hash: str | None
    broken_seq: int | None = None
    problem: str | None = None  # "hash mismatch: ..." / "prev_hash mismatch: ..." / "gap ..."

    def describe(self) -> str:
        if self.ok:
            return (
                f"audit trail intact: {self.entries} entr{'y' if self.entries == 1 else 'ies'}, "
                f"head seq {self.head_seq} "
                f"hash {self.head_hash}"
            )
        return f"audit trail BROKEN at seq {self.broken_seq}: {self.problem}"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The hash to record for a configuration file (``config_hash``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def utc_iso(when: float | None = None) -> str:
    when = time.time() if when is None else when
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str | None:
    """Old/new values are stored as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class AuditTrail:
    """The audit trail of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self,
        *,
        user_id: str,
        printed_name: str,
        action: str,
        target: str,
        old_value: Any = None,
        new_value: Any = None,
        reason: str | None = None,
        meaning: str | None = None,
        config_hash: str | None = None,
        when: float | None = None,
    ) -> AuditEntry:
        """Append one entry (inside the caller's transaction, if any) and return it."""
        if not user_id or not action or target is None:
            raise ValueError("an audit entry needs a user id, an action and a target")
        with self.store.transaction() as c:
            last = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            fields = {
                "seq": seq,
                "time": utc_iso(when),
                "user_id": user_id,
                "printed_name": printed_name,
                "action": action,
                "target": target,
                "old_value": _text(old_value),
                "new_value": _text(new_value),
                "reason": reason,
                "meaning": meaning,
                "config_hash": config_hash,
                "prev_hash": prev,
            }
            entry = AuditEntry(**fields, hash=sha256_hex(canonical_json(fields)))
            c.execute(
                f"INSERT INTO audit ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
                tuple(getattr(entry, f) for f in FIELDS),
            )
        return entry

    def get(self, seq: int) -> AuditEntry | None:
        row = self.store.conn.execute(
            f"SELECT {', '.join(FIELDS)} FROM audit WHERE seq = ?", (seq,)
        ).fetchone()
        return AuditEntry(*row) if row else None

    def entries(self, since_seq: int = 0) -> Iterator[AuditEntry]:
        cur = self.store.conn.execute(
            f"SELECT {', '.join(FIELDS)} FROM audit WHERE seq > ? ORDER BY seq", (since_seq,)
        )
        for row in cur:
            yield AuditEntry(*row)

    def head(self) -> AuditEntry | None:
        row = self.store.conn.execute(
            f"SELECT {', '.join(FIELDS)} FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return AuditEntry(*row) if row else None

    def verify(self) -> VerifyResult:
        """Walk the chain from seq 1; stop at the first entry that does not hold.

        Then check every electronic signature: its own hash, and that the audit entry it
        signs still has the hash it signed (11.70).
        """
        prev_hash, expected_seq, n = GENESIS_HASH, 1, 0
        last: AuditEntry | None = None

        def broken(seq: int, problem: str) -> VerifyResult:
            return VerifyResult(
                ok=False,
                entries=n,
                head_seq=last.seq if last else None,
                head_hash=last.hash if last else None,
                broken_seq=seq,
                problem=problem,
            )

        for entry in self.entries():
            if entry.seq != expected_seq:
                return broken(entry.seq, f"gap in seq: expected {expected_seq}, found {entry.seq}")
            computed = sha256_hex(entry.canonical())
            if computed != entry.hash:
                return broken(
                    entry.seq,
                    f"hash mismatch: stored {entry.hash}, contents hash to {computed} "
                    "(the entry was changed after it was written)",
                )
            if entry.prev_hash != prev_hash:
                return broken(
                    entry.seq,
                    f"prev_hash mismatch: entry says {entry.prev_hash}, entry {entry.seq - 1} "
                    f"hashes to {prev_hash} (an earlier entry was changed or removed)",
                )
            prev_hash, expected_seq, last, n = entry.hash, expected_seq + 1, entry, n + 1

        for sig_id, record_seq, record_hash, sig_hash, sig_fields in _signature_rows(self.store):
            if sha256_hex(canonical_json(sig_fields)) != sig_hash:
                return broken(record_seq, f"signature {sig_id} was changed after signing")
            row = self.store.conn.execute(
                "SELECT hash FROM audit WHERE seq = ?", (record_seq,)
            ).fetchone()
            if row is None or row[0] != record_hash:
                return broken(
                    record_seq, f"signature {sig_id} no longer matches the record it signed"
                )
        return VerifyResult(
            ok=True,
            entries=n,
            head_seq=last.seq if last else None,
            head_hash=last.hash if last else None,
        )

    def export(self, path: str | Path, format: str = "csv") -> int:
        """Write a human-readable copy of the whole trail (with signatures); returns entries."""
        if format not in {"csv", "json"}:
            raise ValueError(f"format must be csv or json, not {format!r}")
        entries = list(self.entries())
        signatures = signatures_by_record(self.store)
        path = Path(path)
        if format == "json":
            doc = {
                "exported_at": utc_iso(),
                "store": str(self.store.path),
                "entries": [
                    {**asdict(e), "signatures": signatures.get(e.seq, [])} for e in entries
                ],
            }
            path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", "utf-8")
        else:
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow([*FIELDS, "signatures"])
                for e in entries:
                    sigs = "; ".join(
                        f"{s['printed_name']} ({s['user_id']}) {s['meaning']} at {s['time']}"
                        + (f": {s['comment']}" if s["comment"] else "")
                        for s in signatures.get(e.seq, [])
                    )
                    w.writerow([getattr(e, k) for k in FIELDS] + [sigs])
        return len(entries)


SIGNATURE_FIELDS = (
    "time",
    "user_id",
    "printed_name",
    "meaning",
    "comment",
    "record_seq",
    "record_hash",
)


def _signature_rows(store: Store) -> Iterator[tuple[int, int, str, str, dict[str, Any]]]:
    cur = store.conn.execute(
        f"SELECT id, hash, {', '.join(SIGNATURE_FIELDS)} FROM signatures ORDER BY id"
    )
    for sig_id, sig_hash, *values in cur:
        fields = dict(zip(SIGNATURE_FIELDS, values, strict=True))
        yield sig_id, fields["record_seq"], fields["record_hash"], sig_hash, fields


def signatures_by_record(store: Store) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for sig_id, record_seq, _rh, sig_hash, fields in _signature_rows(store):
        out.setdefault(record_seq, []).append({"id": sig_id, **fields, "hash": sig_hash})
    return out

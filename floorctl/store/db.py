"""The embedded record store: one SQLite file in WAL mode.

What lives here (docs/records.md): raw readings inside a retention window and 1-minute
min/avg/max rollups beyond it, events, alarm transitions, electronic signatures, users and the
hash-chained audit trail (its logic is in :mod:`floorctl.store.audit`).

Records are never rewritten: triggers reject UPDATE on readings, events, alarm transitions,
signatures and the audit trail, and DELETE on all of them except raw readings, which only
:meth:`Store.compact` removes after folding them into the rollups (and says so in the audit trail).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from floorctl.model import Event, EventKind, Quality, Reading

#: Raw readings younger than this stay raw; older ones become 1-minute rollups.
DEFAULT_RAW_RETENTION_S = 90 * 24 * 3600.0
ROLLUP_S = 60

_NO_UPDATE = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;
"""
_NO_DELETE = """
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;
"""


def _append_only(table: str, *, delete: bool = True) -> str:
    sql = _NO_UPDATE.format(table=table)
    return sql + (_NO_DELETE.format(table=table) if delete else "")


# Each migration runs once, in order, inside one transaction with its schema_version row.
# Add new ones at the end; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # 1: initial layout
    """
    CREATE TABLE readings (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        point TEXT NOT NULL,
        value,                          -- no affinity: stores int, real, text or NULL as given
        unit TEXT,
        quality TEXT NOT NULL,
        detail TEXT,
        source_time REAL,
        receive_time REAL NOT NULL,
        historical INTEGER NOT NULL DEFAULT 0,
        t REAL NOT NULL                 -- when the value was true: source_time, else receive_time
    );
    CREATE INDEX readings_point_t ON readings (device, point, t);
    CREATE INDEX readings_t ON readings (t);
    """
    + _append_only("readings", delete=False)
    + """
    CREATE TABLE readings_1m (
        device TEXT NOT NULL,
        point TEXT NOT NULL,
        minute INTEGER NOT NULL,        -- UNIX seconds at the start of the minute (UTC)
        unit TEXT,
        n INTEGER NOT NULL,             -- raw rows folded in, any quality
        n_stat INTEGER NOT NULL,        -- good numeric rows behind min/avg/max
        vmin REAL, vavg REAL, vmax REAL,
        vsum REAL,                      -- kept so later merges keep avg exact
        first_t REAL NOT NULL,
        last_t REAL NOT NULL,
        PRIMARY KEY (device, point, minute)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_time ON events (time);
    """
    + _append_only("events")
    + """
    CREATE TABLE alarm_history (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        point TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        severity TEXT,
        value,
        limit_value,
        cause TEXT,
        detail TEXT,
        audit_seq INTEGER
    );
    CREATE INDEX alarm_history_point_time ON alarm_history (point, time);
    CREATE INDEX alarm_history_time ON alarm_history (time);
    """
    + _append_only("alarm_history")
    + """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        user_id TEXT NOT NULL,
        printed_name TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        reason TEXT,
        meaning TEXT,
        config_hash TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    """
    + _append_only("audit")
    + """
    CREATE TABLE signatures (
        id INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        user_id TEXT NOT NULL,
        printed_name TEXT NOT NULL,
        meaning TEXT NOT NULL,
        comment TEXT,
        record_seq INTEGER NOT NULL REFERENCES audit (seq),
        record_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX signatures_record ON signatures (record_seq);
    """
    + _append_only("signatures")
    + """
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        printed_name TEXT NOT NULL,
        role TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        salt BLOB NOT NULL,
        scrypt_n INTEGER NOT NULL,
        scrypt_r INTEGER NOT NULL,
        scrypt_p INTEGER NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        must_change INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        secret_changed_at TEXT NOT NULL
    );
    -- user ids are never reused or reassigned (11.100): users are disabled, never deleted
    """
    + _NO_DELETE.format(table="users"),
    # 2: alarm state that survives a restart, signed limit changes in force, alarm priority
    """
    ALTER TABLE alarm_history ADD COLUMN priority TEXT;
    -- not a record (alarm_history and the audit trail are): the latest state of each alarm,
    -- replaced as it changes, so a restarted daemon takes up acknowledgements and shelves
    CREATE TABLE alarm_state (
        point TEXT PRIMARY KEY,         -- "device/point"
        state TEXT NOT NULL,
        snapshot TEXT NOT NULL,         -- JSON of floorctl.alarms.engine.AlarmPoint.snapshot()
        time REAL NOT NULL
    ) WITHOUT ROWID;
    -- alarm settings changed at runtime by a signed request, on top of devices.toml; the
    -- audit entry (audit_seq) holds who, when, why and the old and new values
    CREATE TABLE alarm_settings (
        point TEXT PRIMARY KEY,         -- "device/point"
        settings TEXT NOT NULL,         -- JSON object of alarm settings (docs/alarms.md)
        audit_seq INTEGER NOT NULL REFERENCES audit (seq),
        time REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: actual start and end of batch operations, signed by the technician who recorded them
    """
    CREATE TABLE operation_actuals (
        id INTEGER PRIMARY KEY,
        batch TEXT NOT NULL,
        operation TEXT NOT NULL,
        event TEXT NOT NULL CHECK (event IN ('start', 'end')),
        time REAL NOT NULL,             -- when it happened (may be earlier than recorded_at)
        recorded_at REAL NOT NULL,
        user_id TEXT NOT NULL,
        comment TEXT,
        audit_seq INTEGER NOT NULL REFERENCES audit (seq)
    );
    CREATE INDEX operation_actuals_batch ON operation_actuals (batch, operation, id);
    """
    + _append_only("operation_actuals"),
)

SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The store file cannot be used (newer schema, not a floorctl store ...)."""


@frozen
class AlarmTransition:
    """One alarm state change, as the alarm engine reports it. Columns are deliberately generic."""

    time: float
    point: str  # the alarm's identity: "device/point" or an alarm id
    from_state: str
    to_state: str
    severity: str | None = None  # priority or level (alert/action, low/medium/high)
    value: float | int | str | None = None
    limit: float | int | str | None = None
    cause: str | None = None  # what moved it: "excursion", "ack", "shelve-expired", ...
    detail: str | None = None
    audit_seq: int | None = None  # the audit entry recording this transition, if any
    priority: str | None = None  # low / medium / high (the KPIs' priority distribution)


@frozen
class Actual:
    """The actual start or end of one operation of a batch, as a technician recorded it."""

    batch: str
    operation: str
    event: str  # "start" | "end"
    time: float  # when it happened
    recorded_at: float
    user_id: str
    comment: str | None
    audit_seq: int  # the signed audit entry
    id: int | None = None


def current_actuals(actuals: Iterable[Actual]) -> dict[tuple[str, str], dict[str, Actual]]:
    """(batch, operation) -> {"start": ..., "end": ...}: the latest record of each event wins
    (an earlier one was corrected)."""
    out: dict[tuple[str, str], dict[str, Actual]] = {}
    for a in actuals:
        out.setdefault((a.batch, a.operation), {})[a.event] = a
    return out


@frozen
class Rollup:
    device: str
    point: str
    minute: int
    unit: str | None
    n: int
    n_stat: int
    min: float | None
    avg: float | None
    max: float | None
    first_t: float
    last_t: float


@frozen
class CompactResult:
    cutoff: float
    raw_deleted: int
    rollups_written: int


def _db_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool):
        return int(value)
    return value


def reading_row(r: Reading) -> tuple[Any, ...]:
    """The ``readings`` row of a reading: plain values only, so a queued row is a tuple the
    garbage collector stops tracking (the daemon queues rows, not Reading objects). Ids are
    made plain ``str``: an instance of a str subclass (config's ``Ident``) is a tracked object,
    and a tuple holding one stays tracked."""
    return (
        str(r.device),
        str(r.point),
        _db_value(r.value),
        r.unit,
        Quality(r.quality).value,
        r.detail,
        r.source_time,
        r.receive_time,
        int(r.historical),
        r.source_time if r.source_time is not None else r.receive_time,
    )


class Store:
    """An open record store. Use :func:`open_store` or ``Store(path)``; close it when done.

    One connection, autocommit mode; :meth:`transaction` groups writes (nestable: only the
    outermost one commits). Not thread-safe: give each thread or process its own Store.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        raw_retention_s: float = DEFAULT_RAW_RETENTION_S,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.raw_retention_s = float(raw_retention_s)
        self.conn = sqlite3.connect(
            str(self.path), isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        self._depth = 0
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
                raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
            self.conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _migrate(self) -> None:
        with self.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = c.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[
                0
            ]
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this floorctl "
                    f"understands ({SCHEMA_VERSION}); upgrade floorctl"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(MIGRATIONS[version - 1]):
                    c.execute(statement)
                c.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    @property
    def schema_version(self) -> int:
        return self.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]

    @property
    def journal_mode(self) -> str:
        return self.conn.execute("PRAGMA journal_mode").fetchone()[0]

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # -- readings --------------------------------------------------------------------------

    def write_readings(self, readings: Iterable[Reading]) -> int:
        """Insert readings in one transaction; returns how many were written."""
        return self.write_reading_rows([reading_row(r) for r in readings])

    def write_reading_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Insert rows made by :func:`reading_row` in one transaction."""
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO readings (device, point, value, unit, quality, detail, source_time, "
                "receive_time, historical, t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def readings(
        self,
        device: str | None = None,
        point: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[Reading]:
        """Raw readings (ordered by time true, then insertion) with start <= t < end."""
        where, args = _filters(device=device, point=point, start=start, end=end, tcol="t")
        rows = self.conn.execute(
            "SELECT device, point, value, unit, quality, detail, source_time, receive_time, "
            f"historical FROM readings{where} ORDER BY t, id",
            args,
        ).fetchall()
        return [
            Reading(
                device=d,
                point=p,
                value=v,
                unit=u,
                quality=Quality(q),
                detail=det,
                source_time=st,
                receive_time=rt,
                historical=bool(h),
            )
            for d, p, v, u, q, det, st, rt, h in rows
        ]

    def series(
        self, device: str, point: str, start: float, end: float, buckets: int = 120
    ) -> list[tuple[float, float, float, float, int]]:
        """The good numeric values of one point in ``[start, end)`` as at most ``buckets``
        (bucket start, min, avg, max, n), from raw readings and, older than the raw window,
        the 1-minute rollups. Empty buckets are left out: a gap stays a gap."""
        if end <= start or buckets < 1:
            raise ValueError("series: the window must end after it starts, buckets >= 1")
        width = (end - start) / buckets
        acc: dict[int, list[float]] = {}

        def fold(b: int, lo: float, total: float, hi: float, n: int) -> None:
            a = acc.setdefault(b, [math.inf, 0.0, -math.inf, 0])
            a[0], a[1], a[2], a[3] = min(a[0], lo), a[1] + total, max(a[2], hi), a[3] + n

        raw = self.conn.execute(
            "SELECT CAST((t - ?) / ? AS INTEGER) AS b, min(value), sum(value), max(value), "
            "count(*) FROM readings WHERE device = ? AND point = ? AND t >= ? AND t < ? "
            "AND quality = 'good' AND typeof(value) IN ('integer', 'real') GROUP BY b",
            (start, width, device, point, start, end),
        )
        for b, lo, total, hi, n in raw:
            fold(min(int(b), buckets - 1), lo, total, hi, n)
        rolled = self.conn.execute(
            "SELECT CAST((minute - ?) / ? AS INTEGER) AS b, min(vmin), sum(vsum), max(vmax), "
            "sum(n_stat) FROM readings_1m WHERE device = ? AND point = ? AND minute > ? "
            "AND minute < ? AND n_stat > 0 GROUP BY b",
            (start, width, device, point, start - ROLLUP_S, end),
        )
        for b, lo, total, hi, n in rolled:  # a minute overlapping the start counts in bucket 0
            fold(max(0, min(int(b), buckets - 1)), lo, total, hi, n)
        return [
            (start + b * width, a[0], a[1] / a[3], a[2], int(a[3]))
            for b, a in sorted(acc.items())
            if a[3]
        ]

    def count_readings(self) -> int:
        return self.conn.execute("SELECT count(*) FROM readings").fetchone()[0]

    def rollups(
        self,
        device: str | None = None,
        point: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[Rollup]:
        where, args = _filters(device=device, point=point, start=start, end=end, tcol="minute")
        rows = self.conn.execute(
            "SELECT device, point, minute, unit, n, n_stat, vmin, vavg, vmax, first_t, last_t "
            f"FROM readings_1m{where} ORDER BY device, point, minute",
            args,
        ).fetchall()
        return [Rollup(*row) for row in rows]

    def compact(self, now: float | None = None) -> CompactResult:
        """Fold raw readings older than the retention window into 1-minute rollups; delete them.

        Only whole minutes are folded (the cutoff is rounded down to a minute), statistics
        use good-quality numeric values, and a late reading for an already rolled-up minute
        is merged (count, min, max and sum), so no statistic is ever lost. One transaction,
        recorded in the audit trail.
        """
        from floorctl.store.audit import AuditTrail

        now = time.time() if now is None else now
        cutoff = math.floor((now - self.raw_retention_s) / ROLLUP_S) * ROLLUP_S
        stat = "(quality = 'good' AND typeof(value) IN ('integer', 'real'))"
        with self.transaction() as c:
            written = c.execute(
                f"""
                INSERT INTO readings_1m (device, point, minute, unit, n, n_stat,
                                         vmin, vavg, vmax, vsum, first_t, last_t)
                SELECT device, point, CAST(t / {ROLLUP_S} AS INTEGER) * {ROLLUP_S} AS m, max(unit),
                       count(*), sum({stat}),
                       min(CASE WHEN {stat} THEN value END),
                       avg(CASE WHEN {stat} THEN value END),
                       max(CASE WHEN {stat} THEN value END),
                       sum(CASE WHEN {stat} THEN value END),
                       min(t), max(t)
                FROM readings WHERE t < ?
                GROUP BY device, point, m
                ON CONFLICT (device, point, minute) DO UPDATE SET
                    unit = coalesce(excluded.unit, unit),
                    n = n + excluded.n,
                    n_stat = n_stat + excluded.n_stat,
                    vmin = CASE WHEN vmin IS NULL OR excluded.vmin < vmin
                                THEN excluded.vmin ELSE vmin END,
                    vmax = CASE WHEN vmax IS NULL OR excluded.vmax > vmax
                                THEN excluded.vmax ELSE vmax END,
                    vsum = coalesce(vsum, 0) + coalesce(excluded.vsum, 0),
                    vavg = CASE WHEN n_stat + excluded.n_stat > 0
                                THEN (coalesce(vsum, 0) + coalesce(excluded.vsum, 0))
                                     / (n_stat + excluded.n_stat) END,
                    first_t = min(first_t, excluded.first_t),
                    last_t = max(last_t, excluded.last_t)
                """,
                (cutoff,),
            ).rowcount
            deleted = c.execute("DELETE FROM readings WHERE t < ?", (cutoff,)).rowcount
            if deleted:
                AuditTrail(self).append(
                    user_id="system",
                    printed_name="floorctl",
                    action="store.compact",
                    target="readings",
                    new_value=(
                        f"{deleted} raw readings before {cutoff:.0f} folded into "
                        f"{written} 1-minute rollups"
                    ),
                    reason=f"raw retention {self.raw_retention_s:.0f} s",
                    when=now,
                )
        return CompactResult(cutoff=cutoff, raw_deleted=deleted, rollups_written=written)

    # -- events and alarm transitions -------------------------------------------------------

    def write_events(self, events: Iterable[Event]) -> int:
        rows = [(e.time, EventKind(e.kind).value, e.source, e.detail) for e in events]
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO events (time, kind, source, detail) VALUES (?, ?, ?, ?)", rows
            )
        return len(rows)

    def events(self, start: float | None = None, end: float | None = None) -> list[Event]:
        where, args = _filters(start=start, end=end, tcol="time")
        rows = self.conn.execute(
            f"SELECT kind, source, detail, time FROM events{where} ORDER BY time, id", args
        ).fetchall()
        return [Event(kind=EventKind(k), source=s, detail=d, time=t) for k, s, d, t in rows]

    def write_alarm_transitions(self, transitions: Sequence[AlarmTransition]) -> int:
        rows = [
            (
                a.time,
                a.point,
                a.from_state,
                a.to_state,
                a.severity,
                _db_value(a.value),
                _db_value(a.limit),
                a.cause,
                a.detail,
                a.audit_seq,
                a.priority,
            )
            for a in transitions
        ]
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO alarm_history (time, point, from_state, to_state, severity, value, "
                "limit_value, cause, detail, audit_seq, priority) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def activations_standing_at(self, t: float) -> list[AlarmTransition]:
        """For each alarm still active (unack or acked) at ``t``: the activation that began
        it (the standing-alarm KPI needs activations from before its window)."""
        cols = (
            "time, point, from_state, to_state, severity, value, limit_value, cause, detail, "
            "audit_seq, priority"
        )
        rows = self.conn.execute(
            f"""
            WITH last AS (
                SELECT point, max(id) AS id FROM alarm_history WHERE time < ? GROUP BY point
            ), active AS (
                SELECT h.point FROM alarm_history h JOIN last ON h.id = last.id
                WHERE h.to_state IN ('unack', 'acked')
            )
            SELECT {cols} FROM alarm_history WHERE id IN (
                SELECT max(h.id) FROM alarm_history h JOIN active a ON h.point = a.point
                WHERE h.time < ? AND h.cause = 'activate' GROUP BY h.point
            ) ORDER BY time, id
            """,
            (t, t),
        ).fetchall()
        return [AlarmTransition(*row) for row in rows]

    # -- actual start and end of batch operations ----------------------------------------------

    def record_actual(self, actual: Actual) -> Actual:
        """Append one actual (a later record of the same event corrects an earlier one)."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO operation_actuals (batch, operation, event, time, recorded_at, "
                "user_id, comment, audit_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    actual.batch,
                    actual.operation,
                    actual.event,
                    actual.time,
                    actual.recorded_at,
                    actual.user_id,
                    actual.comment,
                    actual.audit_seq,
                ),
            )
        return attrs.evolve(actual, id=cur.lastrowid)

    def actuals(self, batch: str | None = None) -> list[Actual]:
        """Every actual recorded (of one batch), in the order recorded."""
        where, args = ("", ()) if batch is None else (" WHERE batch = ?", (batch,))
        rows = self.conn.execute(
            "SELECT batch, operation, event, time, recorded_at, user_id, comment, audit_seq, id "
            f"FROM operation_actuals{where} ORDER BY id",
            args,
        ).fetchall()
        return [Actual(*row) for row in rows]

    # -- alarm state that survives a restart ---------------------------------------------------

    def save_alarm_states(self, states: Iterable[tuple[str, str, dict[str, Any], float]]) -> int:
        """Replace the saved state of each (point, state, snapshot, time)."""
        rows = [(p, st, json.dumps(snap, sort_keys=True), t) for p, st, snap, t in states]
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO alarm_state (point, state, snapshot, time) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def alarm_states(self) -> dict[str, tuple[str, dict[str, Any], float]]:
        """point -> (state, snapshot, time) as last saved."""
        rows = self.conn.execute("SELECT point, state, snapshot, time FROM alarm_state")
        return {p: (st, json.loads(snap), t) for p, st, snap, t in rows}

    def set_alarm_settings(
        self, point: str, settings: dict[str, Any], audit_seq: int, when: float
    ) -> None:
        """Record the settings a signed limit change put in force (``{}`` clears them)."""
        with self.transaction() as c:
            if settings:
                c.execute(
                    "INSERT OR REPLACE INTO alarm_settings (point, settings, audit_seq, time) "
                    "VALUES (?, ?, ?, ?)",
                    (point, json.dumps(settings, sort_keys=True), audit_seq, when),
                )
            else:
                c.execute("DELETE FROM alarm_settings WHERE point = ?", (point,))

    def alarm_settings(self) -> dict[str, tuple[dict[str, Any], int, float]]:
        """point -> (settings, audit_seq, time) of the runtime limit changes in force."""
        rows = self.conn.execute("SELECT point, settings, audit_seq, time FROM alarm_settings")
        return {p: (json.loads(st), seq, t) for p, st, seq, t in rows}

    def alarm_history(
        self, point: str | None = None, start: float | None = None, end: float | None = None
    ) -> list[AlarmTransition]:
        where, args = _filters(point=point, start=start, end=end, tcol="time")
        rows = self.conn.execute(
            "SELECT time, point, from_state, to_state, severity, value, limit_value, cause, "
            f"detail, audit_seq, priority FROM alarm_history{where} ORDER BY time, id",
            args,
        ).fetchall()
        return [AlarmTransition(*row) for row in rows]


def open_store(path: str | Path, **kwargs: Any) -> Store:
    """Open (creating and migrating if needed) the store at ``path``."""
    return Store(path, **kwargs)


def _filters(*, tcol: str, start=None, end=None, **eq: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in eq.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if start is not None:
        clauses.append(f"{tcol} >= ?")
        args.append(start)
    if end is not None:
        clauses.append(f"{tcol} < ?")
        args.append(end)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement keeps triggers whole)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise StoreError(f"incomplete SQL in a migration: {buf.strip()[:80]}")
    return statements

"""The daemon's store writer: one thread owns the SQLite connection and writes in batches.

The event loop only appends to a queue (never blocks on disk, never wakes the thread for a
reading); the thread drains it every ``flush_interval`` (at once when a batch is full, for a
submission someone waits for, and for the stop), writing readings, events and alarm
transitions, each kind in one transaction, and runs ``compact()`` once an hour. ``close()``
writes what is still queued and closes the store, so a clean stop loses nothing; after a
kill -9 what was committed is intact (WAL) and at most the last interval is missing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from floorctl.store.audit import AuditTrail
from floorctl.store.db import AlarmTransition, Store, reading_row

log = logging.getLogger("floorctl.store")

_STOP = object()
T = TypeVar("T")


class StoreWriter:
    def __init__(
        self,
        path: str | Path,
        *,
        raw_retention_s: float,
        flush_interval: float = 0.5,
        batch: int = 5000,
        compact_every: float = 3600.0,
    ) -> None:
        self.path = Path(path)
        self.raw_retention_s = raw_retention_s
        self.flush_interval = flush_interval
        self.batch = batch
        self.compact_every = compact_every
        self.written = {"readings": 0, "events": 0, "alarms": 0, "audit": 0}
        self.errors = 0
        # appended by the event loop, drained by the thread (deque appends and pops are atomic).
        # A reading does not wake the thread: at 5,000 readings/s a blocking queue's get woke
        # it for each one, a GIL hand-over per reading taken from the event loop
        self._items: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="floorctl-store", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    # --- the event loop's side: never blocks --------------------------------------------------

    def _put(self, item: Any) -> None:
        """Queue a record; wake the writer only when a batch is full."""
        self._items.append(item)
        if len(self._items) >= self.batch:
            self._wake.set()

    def _put_now(self, item: Any) -> None:
        """Queue something that should not wait for the next flush, and wake the writer."""
        self._items.append(item)
        self._wake.set()

    def reading(self, r: Any) -> None:
        # queued as one flat tuple of plain values ("reading", *row), which the garbage
        # collector untracks at its first pass; a Reading, or a tuple holding one, stays
        # tracked. 2,500 readings wait per 0.5 s flush at 5,000 readings/s: as objects they
        # made every gen-1 pass walk them (5-8 ms of the event loop's CPU each)
        self._put(("reading", *reading_row(r)))

    def event(self, e: Any) -> None:
        self._put(("event", e))

    def alarm(self, t: Any, *, audit_seq: int | None = None) -> None:
        """An alarm engine transition (floorctl.alarms.engine.Transition). Without
        ``audit_seq`` (the signed entry of an operator action) the writer appends a system
        audit entry for it; either way its alarm_history row names that entry."""
        self._put(("alarm", (t, audit_seq)))

    def alarm_state(self, point: str, state: str, snapshot: dict[str, Any], when: float) -> None:
        """The latest state of one alarm (replaces the saved one)."""
        self._put(("state", (point, state, snapshot, when)))

    def audit(self, **entry: Any) -> None:
        """An audit trail entry (floorctl.store.audit.AuditTrail.append's arguments)."""
        self._put(("audit", entry))

    def call(self, fn: Callable[[Store, AuditTrail], Any]) -> None:
        """Run something in the writer thread with the store (reads for status, say)."""
        self._put(("call", fn))

    def submit(self, fn: Callable[[Store, AuditTrail], T]) -> Future[T]:
        """Run ``fn`` in the writer thread after everything queued before it is written;
        the future holds its result or exception (``asyncio.wrap_future`` to await it)."""
        future: Future[T] = Future()
        self._put_now(("submit", (fn, future)))
        if not self._thread.is_alive() and self._ready.is_set():
            future.set_exception(RuntimeError(f"store {self.path} is closed"))
        return future

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"store {self.path}: did not open within {timeout:g}s")
        if self._failure is not None:
            raise self._failure

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._stopping = True
            self._put_now(_STOP)
            self._thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            store = Store(self.path, raw_retention_s=self.raw_retention_s)
        except BaseException as exc:  # reported to start()
            self._failure = exc
            self._ready.set()
            return
        trail = AuditTrail(store)
        self._ready.set()
        next_compact = time.monotonic() + self.compact_every
        try:
            stopping = False
            while not stopping:
                items = self._take()
                stopping = any(item is _STOP for item in items)
                self._write(store, trail, [i for i in items if i is not _STOP])
                if time.monotonic() >= next_compact:
                    next_compact = time.monotonic() + self.compact_every
                    self._guard(lambda: store.compact(time.time()), "compact")
        finally:
            store.close()

    def _take(self) -> list[Any]:
        """Up to ``batch`` queued items, in order: after ``flush_interval``, or at once when
        woken (a full batch, something that should not wait, the stop). After the stop,
        everything queued before it."""
        if not self._wake.wait(self.flush_interval) and not self._items:
            return []
        self._wake.clear()
        n = len(self._items) if self._stopping else min(len(self._items), self.batch)
        items = [self._items.popleft() for _ in range(n)]
        if self._items:
            self._wake.set()  # more than a batch was waiting: write the rest at once
        return items

    def _write(self, store: Store, trail: AuditTrail, items: list[Any]) -> None:
        """Write in queue order: runs of readings, events, alarm transitions and alarm states
        are written in bulk, and flushed before any audit entry, call or submission."""
        pending: dict[str, list[Any]] = {"reading": [], "event": [], "alarm": [], "state": []}
        for item in items:
            kind = item[0]
            payload = item[1:] if kind == "reading" else item[1]
            if kind in pending:
                pending[kind].append(payload)
                continue
            self._flush(store, trail, pending)
            if kind == "audit":
                if self._guard(lambda p=payload: trail.append(**p), "audit"):
                    self.written["audit"] += 1
            elif kind == "call":
                self._guard(lambda p=payload: p(store, trail), "call")
            elif kind == "submit":
                fn, future = payload
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(store, trail))
                    except BaseException as exc:  # handed to the caller
                        future.set_exception(exc)
        self._flush(store, trail, pending)

    def _flush(self, store: Store, trail: AuditTrail, pending: dict[str, list[Any]]) -> None:
        readings, events = pending["reading"], pending["event"]
        alarms, states = pending["alarm"], pending["state"]
        if readings and self._guard(lambda: store.write_reading_rows(readings), "readings"):
            self.written["readings"] += len(readings)
        if events and self._guard(lambda: store.write_events(events), "events"):
            self.written["events"] += len(events)
        if alarms or states:

            def write_alarms() -> None:
                with store.transaction():
                    rows = [_alarm_row(t, seq or _audit_transition(trail, t)) for t, seq in alarms]
                    store.write_alarm_transitions(rows)
                    store.save_alarm_states(states)

            if self._guard(write_alarms, "alarm transitions"):
                self.written["alarms"] += len(alarms)
        for batch in pending.values():
            batch.clear()

    def _guard(self, fn: Callable[[], Any], what: str) -> bool:
        try:
            fn()
        except Exception:  # a disk problem is logged and counted; the floor keeps running
            self.errors += 1
            log.exception("store %s: writing %s failed", self.path, what)
            return False
        return True


def _audit_transition(trail: AuditTrail, t: Any) -> int:
    """The system's audit entry for a process transition (an operator action has its own,
    signed one)."""
    entry = trail.append(
        user_id=t.user or "system",
        printed_name="floorctl alarm engine" if not t.user else t.user,
        action=f"alarm.{t.cause.value}",
        target=f"alarm:{t.device}/{t.point}",
        old_value=t.from_state.value,
        new_value={
            "state": t.to_state.value,
            "severity": None if t.severity is None else t.severity.value,
            "priority": None if t.priority is None else t.priority.value,
            "value": t.value,
            "limit": t.limit,
            "condition": t.condition,
        },
        reason="; ".join(x for x in (t.detail, t.comment) if x) or None,
        when=t.time,
    )
    return entry.seq


def _alarm_row(t: Any, audit_seq: int | None) -> AlarmTransition:
    return AlarmTransition(
        time=t.time,
        point=f"{t.device}/{t.point}",
        from_state=t.from_state.value,
        to_state=t.to_state.value,
        severity=None if t.severity is None else t.severity.value,
        value=t.value,
        limit=t.limit,
        cause=t.cause.value,
        detail="; ".join(
            x for x in (t.detail, f"user {t.user}" if t.user else None, t.comment) if x
        )
        or None,
        audit_seq=audit_seq,
        priority=None if t.priority is None else t.priority.value,
    )

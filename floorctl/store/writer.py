"""The daemon's store writer: one thread owns the SQLite connection and writes in batches.

The event loop only appends to a queue (never blocks on disk); the thread drains it every
``flush_interval`` (or at once when a batch is large), writing readings, events and alarm
transitions, each kind in one transaction, and runs ``compact()`` once an hour. ``close()``
writes what is still queued and closes the store, so a clean stop loses nothing; after a
kill -9 what was committed is intact (WAL) and at most the last interval is missing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from floorctl.store.audit import AuditTrail
from floorctl.store.db import AlarmTransition, Store

log = logging.getLogger("floorctl.store")

_STOP = object()


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
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="floorctl-store", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    # --- the event loop's side: never blocks --------------------------------------------------

    def reading(self, r: Any) -> None:
        self._queue.put(("reading", r))

    def event(self, e: Any) -> None:
        self._queue.put(("event", e))

    def alarm(self, t: Any) -> None:
        """An alarm engine transition (floorctl.alarms.engine.Transition)."""
        self._queue.put(("alarm", _alarm_row(t)))

    def audit(self, **entry: Any) -> None:
        """An audit trail entry (floorctl.store.audit.AuditTrail.append's arguments)."""
        self._queue.put(("audit", entry))

    def call(self, fn: Callable[[Store, AuditTrail], Any]) -> None:
        """Run something in the writer thread with the store (reads for status, say)."""
        self._queue.put(("call", fn))

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"store {self.path}: did not open within {timeout:g}s")
        if self._failure is not None:
            raise self._failure

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
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
        items: list[Any] = []
        deadline = time.monotonic() + self.flush_interval
        while len(items) < self.batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            items.append(item)
            if item is _STOP:
                # drain what was queued before the stop
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        return items
        return items

    def _write(self, store: Store, trail: AuditTrail, items: list[Any]) -> None:
        by_kind: dict[str, list[Any]] = {"reading": [], "event": [], "alarm": []}
        for kind, payload in items:
            if kind in by_kind:
                by_kind[kind].append(payload)
            elif kind == "audit":
                if self._guard(lambda p=payload: trail.append(**p), "audit"):
                    self.written["audit"] += 1
            elif kind == "call":
                self._guard(lambda p=payload: p(store, trail), "call")
        if by_kind["reading"] and self._guard(
            lambda: store.write_readings(by_kind["reading"]), "readings"
        ):
            self.written["readings"] += len(by_kind["reading"])
        if by_kind["event"] and self._guard(lambda: store.write_events(by_kind["event"]), "events"):
            self.written["events"] += len(by_kind["event"])
        if by_kind["alarm"] and self._guard(
            lambda: store.write_alarm_transitions(by_kind["alarm"]), "alarm transitions"
        ):
            self.written["alarms"] += len(by_kind["alarm"])

    def _guard(self, fn: Callable[[], Any], what: str) -> bool:
        try:
            fn()
        except Exception:  # a disk problem is logged and counted; the floor keeps running
            self.errors += 1
            log.exception("store %s: writing %s failed", self.path, what)
            return False
        return True


def _alarm_row(t: Any) -> AlarmTransition:
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
    )

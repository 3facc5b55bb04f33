"""The built-in notification plugin: alarm transitions to a file or a program (``[[notify]]``).

It is the example of a ``floorctl_on_alarm`` plugin (docs/plugins.md) and a usable one: point
``command`` at the site's pager or e-mail gateway. The daemon registers one
:class:`NotifyPlugin` with the floor's ``[[notify]]`` targets. The hook only filters and queues;
each target has a thread of its own that appends or runs the program, so a slow or hanging
program never holds up the alarm engine. Failures are logged and counted, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import subprocess
import threading
from typing import Any

from attrs import define

from floorctl import hookimpl
from floorctl.config import AlarmPriority, Config, NotifyConfig, NotifyKind

log = logging.getLogger("floorctl.notify")

_RANK = {AlarmPriority.LOW: 1, AlarmPriority.MEDIUM: 2, AlarmPriority.HIGH: 3}
_STOP = object()
#: transitions waiting per target before new ones are dropped (and counted)
QUEUE_LIMIT = 1000


@define
class NotifyCounters:
    sent: int = 0
    failed: int = 0
    dropped: int = 0  # the target's queue was full
    last_error: str | None = None

    def as_payload(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }


def document(transition: Any, *, floor: str, room: str | None) -> dict[str, Any]:
    """The JSON document a target receives (docs/alarms.md, Notifications)."""
    return {"v": 1, "floor": floor, "room": room, **transition.as_payload()}


def environment(doc: dict[str, Any]) -> dict[str, str]:
    """``FLOORCTL_ALARM_*`` variables for a program target."""
    when = dt.datetime.fromtimestamp(doc["time"], dt.UTC).isoformat().replace("+00:00", "Z")
    env = {
        "FLOORCTL_FLOOR": doc["floor"],
        "FLOORCTL_ALARM_DEVICE": doc["device"],
        "FLOORCTL_ALARM_POINT": doc["point"],
        "FLOORCTL_ALARM_ROOM": doc["room"] or "",
        "FLOORCTL_ALARM_STATE": doc["to"],
        "FLOORCTL_ALARM_FROM": doc["from"],
        "FLOORCTL_ALARM_CAUSE": doc["cause"],
        "FLOORCTL_ALARM_SEVERITY": doc["severity"] or "",
        "FLOORCTL_ALARM_PRIORITY": doc["priority"] or "",
        "FLOORCTL_ALARM_VALUE": "" if doc["value"] is None else repr(doc["value"]),
        "FLOORCTL_ALARM_LIMIT": "" if doc["limit"] is None else repr(doc["limit"]),
        "FLOORCTL_ALARM_TIME": when,
    }
    return env


class Target:
    """One ``[[notify]]`` target with its own thread and bounded queue."""

    def __init__(self, cfg: NotifyConfig, config: Config) -> None:
        self.cfg = cfg
        self.floor = config.floor.id
        self.path = cfg.file_path(config.path)
        self.rooms = {d.id: d.room for d in config.devices}
        self.counters = NotifyCounters()
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name=f"notify-{cfg.name}", daemon=True)
        self._thread.start()

    def wants(self, t: Any) -> bool:
        if t.to_state.value not in self.cfg.states:
            return False
        if (
            t.priority is not None
            and _RANK[AlarmPriority(t.priority.value)] < _RANK[self.cfg.min_priority]
        ):
            return False
        return not self.cfg.rooms or self.rooms.get(t.device) in self.cfg.rooms

    def offer(self, t: Any) -> None:
        if not self.wants(t):
            return
        doc = document(t, floor=self.floor, room=self.rooms.get(t.device))
        try:
            self._queue.put_nowait(doc)
        except queue.Full:
            self.counters.dropped += 1
            log.error("notify %s: %d waiting; dropped %s", self.cfg.name, QUEUE_LIMIT, doc)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the thread."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            doc = self._queue.get()
            if doc is _STOP:
                return
            try:
                self._deliver(doc)
                self.counters.sent += 1
            except Exception as exc:  # a notification failure never stops the others
                self.counters.failed += 1
                self.counters.last_error = f"{type(exc).__name__}: {exc}"
                log.error("notify %s failed: %s", self.cfg.name, self.counters.last_error)

    def _deliver(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, ensure_ascii=False, sort_keys=True)
        if self.cfg.kind is NotifyKind.FILE:
            assert self.path is not None
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            return
        result = subprocess.run(
            list(self.cfg.command),
            input=line + "\n",
            text=True,
            capture_output=True,
            timeout=float(self.cfg.timeout),
            env={**os.environ, **environment(doc)},
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{self.cfg.command[0]} exited {result.returncode}: {tail[0]}")


class NotifyPlugin:
    """The floor's ``[[notify]]`` targets behind the ``floorctl_on_alarm`` hook."""

    def __init__(self, config: Config) -> None:
        self.targets = [Target(cfg, config) for cfg in config.notify]

    @hookimpl
    def floorctl_on_alarm(self, transition: Any) -> None:
        for target in self.targets:
            target.offer(transition)

    def counters(self) -> dict[str, Any]:
        return {t.cfg.name: t.counters.as_payload() for t in self.targets}

    def close(self) -> None:
        for target in self.targets:
            target.close()

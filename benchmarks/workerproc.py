"""A benchmark's worker subprocess: ``python SCRIPT ROLE ARGS``. It answers on stdout with
``@@ {json}`` protocol lines (read by a thread), logs to a file, and stops on a ``stop`` line.
Shared by benchmarks/ingest.py and benchmarks/alarms.py."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ChildError(RuntimeError):
    pass


class WorkerProcess:
    def __init__(
        self,
        script: Path,
        role: str,
        args: dict[str, Any],
        logdir: Path,
        name: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.role = role
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), role, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            text=True,
            env=None if env is None else os.environ | env,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                self._lines.put(json.loads(line[3:]))
        self._lines.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{self.name}: no {event!r} within {timeout:.0f} s{self.tail()}")
            try:
                msg = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                self.proc.wait(5)
                raise ChildError(
                    f"{self.name} exited ({self.proc.returncode}) before {event!r}{self.tail()}"
                )
            if msg.get("event") == event:
                return msg

    def tail(self, lines: int = 25) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n  " + "\n  ".join(text) if text else ""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send("stop")
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

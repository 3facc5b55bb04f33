"""Shared test helpers: free TCP ports and a private mosquitto broker.

Tests import from here (``from tests.helpers import free_port, Mosquitto``); the fixtures
that wrap :class:`Mosquitto` live in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"

# Debian installs the broker in /usr/sbin, which is not on a non-root user's PATH.
_MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """The broker did not start or stop as asked."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary ($MOSQUITTO_BIN, then PATH, then /usr/sbin), or None."""
    env = os.environ.get("MOSQUITTO_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Mosquitto:
    """A private mosquitto broker on 127.0.0.1, run in the foreground by ``subprocess.Popen``.

    Everything lives in ``workdir``: ``mosquitto.conf``, ``mosquitto.log``, the captured
    stdout/stderr (``mosquitto.stderr``) and, with ``persistence=True``, ``mosquitto.db``.
    ``max_queued_messages 0`` and ``max_inflight_messages 0`` lift mosquitto's per-client
    limits, so a slow subscriber never has QoS 1/2 messages silently dropped (the default
    queue of 1000 does that). ``restart()`` keeps the port and the persistence directory.
    """

    START_TIMEOUT = 10.0
    STOP_TIMEOUT = 10.0

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        persistence: bool = False,
        port: int | None = None,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise MosquittoError(
                "mosquitto binary not found (looked at $MOSQUITTO_BIN, PATH, /usr/sbin): "
                "run `make mosquitto` to install it"
            )
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.extra_config = tuple(extra_config)
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "mosquitto.stderr"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------

    def _write_config(self) -> None:
        lines = [
            f"listener {self._port} {HOST}",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.persistence:
            # 2.0 adds the "/" itself; mosquitto 1.x concatenated, so keep the trailing slash.
            lines += [f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines.append(f"log_dest file {self.log_path}")
        if os.geteuid() == 0:
            # As root mosquitto otherwise drops to user "mosquitto", which cannot write here.
            lines.append("user root")
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = START_TIMEOUT) -> Mosquitto:
        """Start the broker and wait until it accepts TCP connections on ``port``."""
        if self.running:
            raise MosquittoError(f"mosquitto already running (pid {self.pid})")
        # A port picked by free_port() can be taken by someone else before mosquitto binds it;
        # on the first start (port not given by the caller) retry on a fresh port.
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                self._port_fixed = True  # restarts keep this port
                return self
            except MosquittoError as exc:
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    self._port = free_port()
                    continue
                raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        self._write_config()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise MosquittoError(
                    f"mosquitto exited with code {code} while starting on port {self._port}\n"
                    + self._diagnostics()
                )
            # "running" is logged after the listener is bound: this tells our mosquitto apart
            # from another process that happens to accept on the same port.
            if self._log_since(log_offset, "running") and self._accepts():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise MosquittoError(
                    f"mosquitto did not accept connections on {HOST}:{self._port} "
                    f"within {timeout:.0f} s\n" + self._diagnostics()
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((HOST, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_since(self, offset: int, needle: str) -> bool:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return needle.encode() in fh.read()
        except FileNotFoundError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``sig`` and wait for the broker to exit; return its exit code.

        With SIGTERM mosquitto saves its persistence database before exiting. If it has not
        exited after ``timeout`` seconds it is SIGKILLed and MosquittoError is raised.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            # sent again every 2 s: once, right after a restart, mosquitto 2.0.11 carried on
            # through a SIGTERM for 10 s (CI, a loaded machine); the signal is idempotent
            deadline = time.monotonic() + timeout
            while True:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=min(2.0, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() < deadline:
                        continue
                proc.kill()
                proc.wait()
                self._proc = None
                raise MosquittoError(
                    f"mosquitto (pid {proc.pid}) ignored signal {sig} for {timeout:.0f} s; "
                    "killed it\n" + self._diagnostics()
                ) from None
        self._proc = None
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the broker (no database save, no clean disconnects) and wait for it."""
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> Mosquitto:
        """Stop (if running) and start again on the same port with the same persistence dir."""
        self.stop(sig)
        return self.start()

    # -- diagnostics ------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of mosquitto.log (all starts of this broker, appended)."""
        return _tail(self.log_path, lines)

    def stderr_tail(self, lines: int = 20) -> str:
        """Last ``lines`` lines of what mosquitto wrote to stdout/stderr (config errors)."""
        return _tail(self.stderr_path, lines)

    def _diagnostics(self) -> str:
        return (
            f"--- {self.config_path}\n{self.config_path.read_text()}"
            f"--- tail of {self.log_path}\n{self.log_tail()}\n"
            f"--- tail of {self.stderr_path}\n{self.stderr_tail()}"
        )

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Mosquitto {HOST}:{self._port} persistence={self.persistence} {state}>"

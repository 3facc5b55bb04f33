"""kill -9 of `floorctl run`, then a restart: alarm states, acknowledgements, shelves, the audit
chain and the readings received before the kill are all as they were. The CLI is the client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store
from floorctl.store.users import Users

from .floorkit import ANTE_AND_BUFFER, Watcher, dp_monitor, make_users, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOR = (
    """
[floor]
id = "rs"
store = "{db}"
[[mqtt]]
name = "b"
port = {port}
client_id = "floorctl-rs-{port}"
"""
    + ANTE_AND_BUFFER
    + dp_monitor("mon").replace("{", "{{").replace("}", "}}")
    + dp_monitor("mon2").replace("{", "{{").replace("}", "}}")
)
PREFIX = "floorctl/rs"


def floorctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "floorctl", *args]


async def cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *floorctl(*args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def latest(w: Watcher, device: str, after: float = 0.0) -> dict | None:
    docs = [b for b in w.on(f"{PREFIX}/alarm/{device}/dp") if b["time"] > after]
    return docs[-1] if docs else None


async def test_kill_9_and_restart_keep_alarm_state_and_records(mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "floor.db"
    make_users(db)
    cfg = tmp_path / "devices.toml"
    cfg.write_text(FLOOR.format(db=db, port=mosquitto.port))
    port = mosquitto.port
    async with Watcher(port, f"{PREFIX}/#") as w:
        daemon = await asyncio.create_subprocess_exec(
            *floorctl("run", str(cfg), "-q"), stderr=asyncio.subprocess.PIPE
        )
        try:
            await w.wait_for(
                lambda m: any(t == f"{PREFIX}/status" and b["state"] == "online" for t, b, _ in m),
                timeout=20,
            )
            # the daemon subscribes to the devices after it reports online: feed until it reads
            while not any(
                t == f"{PREFIX}/device/mon/status" and b["state"] == "online"
                for t, b, _ in w.messages
            ):
                await publish(port, "gw/mon", json.dumps({"dp": 12.0}))
                await asyncio.sleep(0.2)
            for i in range(20):  # readings that must be in the store after the kill
                await publish(port, "gw/mon", json.dumps({"dp": 3.0 + i / 100}))
            await publish(port, "gw/mon2", json.dumps({"dp": 7.0}))
            await w.wait_for(lambda m: (latest(w, "mon") or {}).get("state") == "unack")
            await w.wait_for(lambda m: (latest(w, "mon2") or {}).get("state") == "unack")

            code, out, err = await cli(
                "alarms", "ack", "mon/dp", "-c", str(cfg), "--user", "tech",
                "--comment", "door propped; closed", "--password-stdin", stdin="1111\n",
            )  # fmt: skip
            assert code == 0, out + err
            assert "mon/dp ack: accepted: unack -> acked (audit entry" in out
            code, out, err = await cli(
                "alarms", "shelve", "mon2/dp", "--for", "1h", "-c", str(cfg), "--user", "sup",
                "--comment", "sensor being replaced", "--password-stdin", stdin="2222\n",
            )  # fmt: skip
            assert code == 0, out + err
            # a refused one exits 1 and says why
            code, out, err = await cli(
                "alarms", "unshelve", "mon2/dp", "-c", str(cfg), "--user", "plan",
                "--password-stdin", stdin="4444\n",
            )  # fmt: skip
            assert code == 1 and "refused (role)" in err, err
            code, out, err = await cli("alarms", "list", "-c", str(cfg))
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].split()[:3] == ["ALARM", "ROOM", "STATE"]
            rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
            assert rows["mon/dp"][1:4] == ["buffer", "acked", "action"]
            assert rows["mon2/dp"][2] == "shelved"
            assert lines[-1].startswith("mon2/dp")  # shelved ones come last

            await asyncio.sleep(1.5)  # the writer commits every 0.5 s
            with Store(db) as store:
                before = [(e.seq, e.hash) for e in AuditTrail(store).entries()]
                readings_before = len(store.readings("mon", "dp", 0, 1e12))
            assert readings_before >= 20
            os.kill(daemon.pid, signal.SIGKILL)
            await daemon.wait()
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
        assert daemon.returncode == -signal.SIGKILL

        restarted = time.time()
        daemon = await asyncio.create_subprocess_exec(
            *floorctl("run", str(cfg), "-q"), stderr=asyncio.subprocess.PIPE
        )
        try:
            await w.wait_for(lambda m: latest(w, "mon", restarted) is not None, timeout=20)
            # as before the kill: acknowledged (not annunciating again), and still shelved
            assert latest(w, "mon", restarted)["state"] == "acked"
            await w.wait_for(lambda m: latest(w, "mon2", restarted) is not None)
            assert latest(w, "mon2", restarted)["state"] == "shelved"
            # the process goes on from there: still out of limits stays acked, back in clears
            while not any(
                t == f"{PREFIX}/device/mon/status"
                and b["state"] == "online"
                and b["time"] > restarted
                for t, b, _ in w.messages
            ):
                await publish(port, "gw/mon", json.dumps({"dp": 3.2}))
                await asyncio.sleep(0.2)
            await publish(port, "gw/mon", json.dumps({"dp": 12.0}))
            await w.wait_for(lambda m: latest(w, "mon", restarted)["state"] == "normal")
            states = [b["state"] for b in w.on(f"{PREFIX}/alarm/mon/dp") if b["time"] > restarted]
            assert "unack" not in states
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 10) == 0
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()

    with Store(db) as store:
        trail = AuditTrail(store)
        result = trail.verify()
        after = list(trail.entries())
        readings_after = len(store.readings("mon", "dp", 0, 1e12))
        sigs = Users(store).signatures()
    assert result.ok, result.describe()
    assert [(e.seq, e.hash) for e in after[: len(before)]] == before  # the chain as it was
    assert readings_after >= readings_before + 2
    loads = [e for e in after if e.action == "config.load"]
    assert len(loads) == 2
    assert json.loads(loads[1].new_value)["alarm_states_restored"] >= 2
    assert {(s.user_id, s.meaning) for s in sigs} == {
        ("tech", "acknowledged"),
        ("sup", "approved"),
    }

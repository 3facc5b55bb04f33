"""Actual start and end of operations, signed through the daemon, from the CLI."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store
from floorctl.store.users import Users

from .floorkit import ANTE_AND_BUFFER, Watcher, dp_monitor, make_users

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOR = (
    """
[floor]
id = "ba"
store = "{db}"
[[mqtt]]
name = "b"
port = {port}
client_id = "floorctl-ba-{port}"
"""
    + ANTE_AND_BUFFER
    + dp_monitor("mon").replace("{", "{{").replace("}", "}}")
)


async def floorctl(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "floorctl", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_record_start_end_and_a_correction(mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    make_users(db)
    cfg = tmp_path / "devices.toml"
    cfg.write_text(FLOOR.format(db=db, port=mosquitto.port))
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "floorctl", "run", str(cfg), "-q"
    )
    try:
        async with Watcher(mosquitto.port, "floorctl/ba/status") as w:
            await w.wait_for(lambda m: any(b["state"] == "online" for _, b, _ in m), timeout=20)
        sign = ("-c", str(cfg), "--password-stdin")
        code, out, err = await floorctl("batch", "end", "B1", "fill", "--user", "tech", *sign,
                                        stdin="1111\n")  # fmt: skip
        assert code == 1 and "refused (state): B1/fill has no recorded start" in err, err
        code, out, err = await floorctl("batch", "start", "B1", "fill", "--at", "10m",
                                        "--user", "tech", *sign, stdin="1111\n")  # fmt: skip
        assert code == 0 and "B1/fill start: recorded: start " in out, out + err
        code, out, err = await floorctl("batch", "start", "B1", "fill", "--at", "12m",
                                        "--user", "plan", "--comment", "x", *sign,
                                        stdin="4444\n")  # fmt: skip
        assert code == 1 and "refused (role)" in err, err
        code, out, err = await floorctl("batch", "start", "B1", "fill", "--at", "12m",
                                        "--user", "tech", *sign, stdin="1111\n")  # fmt: skip
        assert code == 1 and "a correction needs a comment" in err, err
        code, out, err = await floorctl(
            "batch", "start", "B1", "fill", "--at", "12m", "--user", "sup",
            "--comment", "started at 10:48, clock on the cart was wrong", *sign, stdin="2222\n",
        )  # fmt: skip
        assert code == 0 and "(corrects " in out, out + err
        code, out, err = await floorctl("batch", "end", "B1", "fill", "--user", "tech", *sign,
                                        stdin="1111\n")  # fmt: skip
        assert code == 0, out + err
    finally:
        daemon.terminate()
        await daemon.wait()
    code, out, err = await floorctl("batch", "actuals", "B1", "--db", str(db))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    assert "(corrected later)" in lines[0] and "by tech" in lines[0]
    assert "by sup" in lines[1] and "clock on the cart was wrong" in lines[1]
    assert lines[2].split()[2] == "end"
    with Store(db) as store:
        actions = [(e.user_id, e.action, e.target) for e in AuditTrail(store).entries()]
        sigs = {(s.user_id, s.meaning) for s in Users(store).signatures()}
        assert AuditTrail(store).verify().ok
    assert ("tech", "batch.start", "batch:B1/fill") in actions
    assert ("sup", "batch.start", "batch:B1/fill") in actions
    assert ("tech", "batch.end", "batch:B1/fill") in actions
    assert ("plan", "batch.start.refused", "batch:B1/fill") in actions
    assert sigs == {("tech", "performed"), ("sup", "performed")}

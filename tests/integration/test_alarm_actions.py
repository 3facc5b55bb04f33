"""Signed operator actions on alarms over MQTT: accepted, refused (and why), audited, lockout."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from typing import Any

import aiomqtt
import pytest

from floorctl.client import ClientError, query, retained
from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store
from floorctl.store.users import Users

from .floorkit import (
    ANTE_AND_BUFFER,
    PEOPLE,
    Watcher,
    dp_monitor,
    make_users,
    publish,
    running_floor,
    signer,
    wait_until,
)

pytestmark = pytest.mark.integration

FLOOR = (
    """
[floor]
id = "act"
store = "${DB}"
[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-act-${PORT}"
"""
    + ANTE_AND_BUFFER
    + dp_monitor("mon")
)

PREFIX = "floorctl/act"


async def ask(port: int, action: str, who: dict[str, str], args: Any = None, **extra: Any) -> dict:
    """Send one alarm request for mon/dp and return the daemon's reply."""
    rid = uuid.uuid4().hex
    body = {"v": 1, "id": rid, "action": action, **who, **extra}
    if args is not None:
        body["args"] = args
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{PREFIX}/reply/{rid}", qos=1)
        await client.publish(f"{PREFIX}/request/alarm/mon/dp", json.dumps(body), qos=1)
        async with asyncio.timeout(10):
            async for m in client.messages:
                return json.loads(m.payload)
    raise AssertionError("no reply")


def alarm_states(w: Watcher) -> list[str]:
    return [b["state"] for b in w.on(f"{PREFIX}/alarm/mon/dp")]


async def test_ack_refusals_acceptance_and_audit(mosquitto, tmp_path) -> None:
    db = tmp_path / "f.db"
    make_users(db)
    port = mosquitto.port
    async with (
        running_floor(FLOOR, PORT=port, DB=db) as (floor, _seen),
        Watcher(port, f"{PREFIX}/alarm/mon/#") as w,
    ):
        p = floor.alarms.point("mon", "dp")
        # nothing to acknowledge yet: refused for the state, before any signature is checked
        r = await ask(port, "ack", signer("tech"))
        assert (r["status"], r["reason"]) == ("refused", "state")
        assert "cannot ack an alarm in state normal" in r["error"]

        await publish(port, "gw/mon", json.dumps({"dp": 3.0}))  # below action_low 5 Pa
        await wait_until(lambda: p.state.value == "unack", what="unack")

        # a planner may not acknowledge: refused, and on record as a refusal
        r = await ask(port, "ack", signer("plan", "seen it"))
        assert (r["status"], r["reason"]) == ("refused", "role")
        assert "has role planner; this needs one of: supervisor, technician" in r["error"]
        # action level: the comment is mandatory
        r = await ask(port, "ack", signer("tech"))
        assert (r["status"], r["reason"]) == ("refused", "argument")
        assert "a comment is mandatory for an action-level alarm" in r["error"]
        # the unknown and the badly formed
        r = await ask(port, "ack", signer("nobody", "x", secret="1234"))
        assert (r["status"], r["reason"]) == ("refused", "auth")
        r = await ask(port, "explode", signer("tech", "x"))
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        r = await ask(port, "ack", {"user": "tech", "comment": "x"})
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        assert "secret: required" in r["error"]
        assert p.state.value == "unack"

        r = await ask(port, "ack", signer("tech", "door was propped; closed it"))
        assert (r["status"], r["state"], r["result"]) == ("accepted", "acked", "unack -> acked")
        await w.wait_for(lambda m: "acked" in alarm_states(w))
        last = w.on(f"{PREFIX}/alarm/mon/dp")[-1]["last"]
        assert (last["user"], last["comment"]) == ("tech", "door was propped; closed it")
        seq = r["audit_seq"]

        # shelving needs a supervisor and a reason; it expires by itself
        r = await ask(port, "shelve", signer("tech", "noisy"), {"duration": 1})
        assert (r["status"], r["reason"]) == ("refused", "role")
        r = await ask(port, "shelve", signer("sup"), {"duration": 1})
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        assert "comment: required for shelve" in r["error"]
        r = await ask(port, "shelve", signer("sup", "sensor swap"), {"duration": 99999})
        assert (r["status"], r["reason"]) == ("refused", "argument")
        assert "at most 28800 s" in r["error"]
        r = await ask(port, "shelve", signer("sup", "sensor swap"), {"duration": "1s"})
        assert (r["status"], r["state"]) == ("accepted", "shelved")
        await wait_until(lambda: p.state.value == "unack", timeout=5, what="shelf expiry")

        # a limit change is QA's, kept in the store, and in force at once
        r = await ask(port, "set-limits", signer("sup", "new SOP"), {"settings": {"action_low": 2}})
        assert (r["status"], r["reason"]) == ("refused", "role")
        r = await ask(
            port, "set-limits", signer("qa", "SOP-17 rev 3"), {"settings": {"alert_low": "x"}}
        )
        assert (r["status"], r["reason"]) == ("refused", "argument")
        r = await ask(
            port,
            "set-limits",
            signer("qa", "SOP-17 rev 3"),
            {"settings": {"action_low": 2.5, "alert_low": 8}},
        )
        assert r["status"] == "accepted", r
        assert (p.config.action_low, p.config.alert_low) == (2.5, 8)

    with Store(db) as store:
        trail = AuditTrail(store)
        assert trail.verify().ok
        entries = list(trail.entries())
        ack = trail.get(seq)
        sigs = Users(store).signatures(seq)
        settings = store.alarm_settings()
        history = store.alarm_history("mon/dp")
    assert (ack.action, ack.user_id, ack.printed_name, ack.meaning) == (
        "alarm.ack",
        "tech",
        PEOPLE["tech"][0],
        "acknowledged",
    )
    assert (ack.old_value, json.loads(ack.new_value)["state"]) == ("unack", "acked")
    assert ack.reason == "door was propped; closed it"
    # the signature shows printed name, time and meaning, and binds the entry's hash
    assert [(s.printed_name, s.meaning, s.record_hash) for s in sigs] == [
        ("Terry Tech", "acknowledged", ack.hash)
    ]
    actions = [(e.user_id, e.action) for e in entries]
    assert ("plan", "alarm.ack.refused") in actions
    assert ("tech", "alarm.shelve.refused") in actions
    assert ("sup", "alarm.set-limits.refused") in actions
    assert ("nobody", "login.failed") in actions
    assert ("qa", "alarm.set-limits") in actions
    assert ("system", "alarm.activate") in actions  # process transitions are audited too
    assert ("system", "alarm.shelf-expired") in actions
    assert settings["mon/dp"][0] == {"action_low": 2.5, "alert_low": 8}
    # each transition in the history names its audit entry; the ack names the signed one
    assert all(h.audit_seq is not None for h in history)
    assert [h.audit_seq for h in history if h.cause == "ack"] == [seq]


async def test_five_wrong_pins_lock_the_account(mosquitto, tmp_path) -> None:
    db = tmp_path / "f.db"
    make_users(db)
    port = mosquitto.port
    async with running_floor(FLOOR, PORT=port, DB=db) as (floor, _seen):
        p = floor.alarms.point("mon", "dp")
        await publish(port, "gw/mon", json.dumps({"dp": 7.0}))  # alert level
        await wait_until(lambda: p.state.value == "unack", what="unack")
        errors = []
        for _ in range(5):
            r = await ask(port, "ack", signer("tech", secret="0000"))
            assert (r["status"], r["reason"]) == ("refused", "auth")
            errors.append(r["error"])
        assert "4 attempts left before lockout" in errors[0]
        assert "1 attempt left before lockout" in errors[3]
        assert "the account is now locked; an admin must unlock it" in errors[4]
        # the right PIN no longer helps
        r = await ask(port, "ack", signer("tech"))
        assert (r["status"], r["reason"]) == ("refused", "locked")
        assert p.state.value == "unack"
        # someone else still can
        r = await ask(port, "ack", signer("sup"))
        assert r["status"] == "accepted"
    with Store(db) as store:
        entries = list(AuditTrail(store).entries())
        user = Users(store).get("tech")
    assert user is not None and user.locked
    fails = [e for e in entries if e.action == "login.failed" and e.user_id == "tech"]
    assert len(fails) == 6  # five wrong PINs, then the attempt on a locked account
    locked = [e for e in entries if e.action == "user.locked"]
    assert len(locked) == 1 and locked[0].reason == "5 consecutive failed attempts"


async def test_no_store_no_signed_actions(mosquitto) -> None:
    text = FLOOR.replace('store = "${DB}"\n', "")
    async with running_floor(text, PORT=mosquitto.port) as (floor, _seen):
        await publish(mosquitto.port, "gw/mon", json.dumps({"dp": 7.0}))
        p = floor.alarms.point("mon", "dp")
        await wait_until(lambda: p.state.value == "unack", what="unack")
        r = await ask(mosquitto.port, "ack", signer("tech"))
        assert (r["status"], r["reason"]) == ("refused", "no-store")
        assert "[floor] store is not set" in r["error"]


async def test_alarm_state_is_republished_after_a_broker_restart(mosquitto, tmp_path) -> None:
    """A broker without persistence forgets retained messages: the daemon publishes every
    alarm state and room status again when it reconnects."""
    db = tmp_path / "f.db"
    make_users(db)
    port = mosquitto.port
    async with running_floor(FLOOR, PORT=port, DB=db) as (floor, _seen):
        p = floor.alarms.point("mon", "dp")
        await publish(port, "gw/mon", json.dumps({"dp": 3.0}))
        await wait_until(lambda: p.state.value == "unack", what="unack")
        r = await ask(port, "ack", signer("tech", "seen"))
        assert r["status"] == "accepted"
        mosquitto.restart(signal.SIGKILL)
        config = floor.config
        # the broker forgot every retained message; the daemon publishes them again
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                docs = await retained(config.state_connection, f"{PREFIX}/#", timeout=5)
            except ClientError:
                docs = {}
            alarm = docs.get(f"{PREFIX}/alarm/mon/dp") or {}
            room = docs.get(f"{PREFIX}/room/buffer/status") or {}
            if alarm.get("state") == "acked" and room.get("status") == "action":
                break
            assert asyncio.get_running_loop().time() < deadline, docs
            await asyncio.sleep(0.3)


async def test_history_and_audit_queries(mosquitto, tmp_path) -> None:
    db = tmp_path / "f.db"
    make_users(db)
    port = mosquitto.port
    async with running_floor(FLOOR, PORT=port, DB=db) as (floor, seen):
        conn = floor.config.state_connection
        start = time.time()
        for v in (12.0, 14.0, 3.0):
            await publish(port, "gw/mon", json.dumps({"dp": v}))
        await wait_until(lambda: len(seen) >= 3, what="readings")
        await wait_until(lambda: floor.alarms.point("mon", "dp").state.value == "unack")
        await asyncio.sleep(1.0)  # the writer commits every 0.5 s
        r = await query(
            conn, PREFIX, "history", {"device": "mon", "point": "dp", "since": start - 1,
                                      "until": time.time() + 1, "buckets": 1}
        )  # fmt: skip
        assert r["status"] == "done", r
        [(_t0, lo, avg, hi, n)] = r["series"]
        assert (lo, hi, n) == (3.0, 14.0, 3) and avg == pytest.approx(29 / 3)
        r = await query(conn, PREFIX, "history", {"device": "mon", "point": "nope"})
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        r = await query(conn, PREFIX, "audit", {"limit": 5, "verify": True})
        assert r["status"] == "done", r
        assert len(r["entries"]) == 5
        seqs = [e["seq"] for e in r["entries"]]
        assert seqs == sorted(seqs, reverse=True)  # newest first
        assert r["entries"][0]["action"] == "alarm.activate"
        assert r["verify"]["ok"] and r["verify"]["describe"].startswith("audit trail intact")
        r = await query(conn, PREFIX, "audit", {"limit": 100000})
        assert (r["status"], r["reason"]) == ("refused", "bad-request")

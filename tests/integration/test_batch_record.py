"""The batch environmental record from a scripted floor history in a real store: an excursion
during filling, a clean batch, a data gap, signed acknowledgements and actuals, weighings, an
autoclave cycle. `floorctl batch-record` in md, json and html."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from floorctl.cli import Ctx, cli
from floorctl.client import query
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.pluginmanager import get_plugin_manager
from floorctl.scheduler import read_schedule
from floorctl.scheduler.plan import load_plan
from floorctl.scheduler.schedule import assignment_view
from floorctl.store.audit import AuditTrail
from floorctl.store.db import Actual, AlarmTransition, Store
from floorctl.store.users import Users

from .floorkit import make_users, running_floor

HERE = Path(__file__).parent.parent / "batchrecord"


def window(schedule, problem, op_id: str) -> tuple[float, float]:
    import datetime as dt

    a = schedule.index()[op_id]
    v = assignment_view(problem, a, schedule.epoch)
    return dt.datetime.fromisoformat(v["start"]).timestamp(), dt.datetime.fromisoformat(
        v["end"]
    ).timestamp()


@pytest.fixture(scope="module")
def floor(tmp_path_factory):
    """A solved schedule and a store holding two days of the floor's history around it."""
    d = tmp_path_factory.mktemp("br")
    for name in ("devices.toml", "plan.toml"):
        shutil.copy(HERE / name, d / name)
    runner = CliRunner()
    ctx = Ctx(get_plugin_manager())
    r = runner.invoke(cli, ["schedule", str(d / "plan.toml"), "--out", str(d / "s.json"), "-q"],
                      obj=ctx)  # fmt: skip
    assert r.exit_code == 0, r.output
    problem = load_plan(d / "plan.toml")
    schedule = read_schedule(d / "s.json")
    w = {op: window(schedule, problem, op) for op in schedule.index()}
    db = d / "floor.db"
    make_users(db)
    t0, t1 = w["B1/compound"][0] - 3600, max(b for _, b in w.values()) + 3600
    fill1, fill2 = w["B1/fill"], w["B2/fill"]
    comp1 = w["B1/compound"]
    gap = (comp1[0] + 600, comp1[0] + 1200)  # 10 minutes without a pressure reading
    excursion = (fill1[0] + 900, fill1[0] + 1200)  # 5 minutes at action level in the hood
    rows: list[Reading] = []
    t = t0
    while t < t1:
        if not gap[0] <= t < gap[1]:
            rows.append(Reading("mon", "dp", 14.0, Quality.GOOD, receive_time=t, unit="Pa"))
        p05 = 5000.0 if excursion[0] <= t < excursion[1] else 120.0
        rows.append(Reading("pc-laf-1", "p05", p05, Quality.GOOD, receive_time=t))
        t += 30.0
    # two weighings in B2's fill (the same stable weight read again is the same weighing)
    for dt_, v, q in [(60, 0.0, Quality.GOOD), (120, 12.503, Quality.UNCERTAIN),
                      (150, 12.501, Quality.GOOD), (180, 12.501, Quality.GOOD),
                      (600, 3.2, Quality.GOOD)]:  # fmt: skip
        rows.append(Reading("bal-1", "weight", v, q, receive_time=fill2[0] + dt_, unit="g"))
    with Store(db) as store:
        store.write_readings(rows)
        store.write_events(
            [Event(EventKind.CYCLE, "autoclave-1",
                   "cycle 4711 complete, result pass, start 2026-11-18T11:02:00Z, end "
                   "2026-11-18T11:40:00Z, F0 18.2 min", time=w["B1/sterilise"][0] + 2400)]
        )  # fmt: skip
        users = Users(store)
        trail = AuditTrail(store)
        # the excursion's alarm: activated by the engine, acknowledged with a signature
        act = trail.append(user_id="system", printed_name="floorctl alarm engine",
                           action="alarm.activate", target="alarm:pc-laf-1/p05",
                           old_value="normal", new_value={"state": "unack"},
                           when=excursion[0] + 60)  # fmt: skip
        ack, _sig = users.signed_action(
            "tech", "1111", "acknowledged", action="alarm.ack", target="alarm:pc-laf-1/p05",
            comment="glove change near the counter", old_value="unack",
            new_value={"state": "acked"}, roles=("technician",), now=excursion[0] + 200,
        )  # fmt: skip
        store.write_alarm_transitions([
            AlarmTransition(excursion[0] + 60, "pc-laf-1/p05", "normal", "unack", "action",
                            5000.0, 3520.0, "activate", None, act.seq, "high"),
            AlarmTransition(excursion[0] + 200, "pc-laf-1/p05", "unack", "acked", "action",
                            5000.0, 3520.0, "ack", "user tech", ack.seq, "high"),
            AlarmTransition(excursion[1] + 30, "pc-laf-1/p05", "acked", "normal", None,
                            120.0, 3520.0, "clear", None, None, None),
        ])  # fmt: skip
        # B2 ran with actuals recorded; B1 did not
        for op in ("compound", "fill", "sterilise"):
            for event, when in zip(("start", "end"), w[f"B2/{op}"], strict=True):
                entry, _ = users.signed_action(
                    "tech", "1111", "performed", action=f"batch.{event}",
                    target=f"batch:B2/{op}", new_value={"time": when}, roles=("technician",),
                    now=when,
                )  # fmt: skip
                store.record_actual(Actual("B2", op, event, when, when, "tech", None, entry.seq))
    return d, ctx


def record(floor, batch: str, fmt: str = "json"):
    d, ctx = floor
    r = CliRunner().invoke(
        cli,
        ["batch-record", batch, "--plan", str(d / "plan.toml"), "--schedule", str(d / "s.json"),
         "--format", fmt],
        obj=ctx,
    )  # fmt: skip
    return r


def test_an_excursion_during_filling_is_in_the_record_and_the_qa_list(floor) -> None:
    r = record(floor, "B1")
    assert r.exit_code == 1, r.output  # items need attention
    doc = json.loads(r.output)
    assert doc["schema"] == "floorctl.batch-record/1" and doc["clean"] is False
    fill = next(op for op in doc["operations"] if op["name"] == "fill")
    assert (fill["unit"], fill["room"], fill["iso5"], fill["basis"]) == (
        "laf-1", "buffer", True, "planned"
    )  # fmt: skip
    p05 = next(p for p in fill["points"] if p["device"] == "pc-laf-1")
    assert p05["outside_action_s"] == pytest.approx(300.0)
    assert p05["max"] == 5000.0 and p05["limits"]["action_high"] == 3520.0
    [ack] = [a for a in fill["alarms"] if a["cause"] == "ack"]
    assert (ack["signed_by"], ack["meaning"], ack["comment"]) == (
        "Terry Tech", "acknowledged", "glove change near the counter"
    )  # fmt: skip
    attention = "\n".join(doc["attention"])
    assert "fill (laf-1): pc-laf-1/p05 outside its ACTION limits for 5.0 min" in attention
    assert "ACTION-LEVEL EXCURSION during ISO 5 operation(s): fill" in doc["verdicts"]
    # a gap is reported, never hidden
    comp = next(op for op in doc["operations"] if op["name"] == "compound")
    [gap] = comp["gaps"]
    # the last value before the silence holds for the stale window (3 x 30 s), then: a gap
    assert (gap["device"], gap["end"] - gap["start"], gap["why"]) == ("mon", 540.0, "no reading")
    assert "data gap on mon/dp" in attention and "(9.0 min, no reading)" in attention
    assert "compound: planned times only (no signed actual start and end)" in attention
    steril = next(op for op in doc["operations"] if op["name"] == "sterilise")
    assert [c["detail"].split(",")[0] for c in steril["cycles"]] == ["cycle 4711 complete"]


def test_a_batch_made_while_everything_was_normal_comes_out_clean(floor) -> None:
    r = record(floor, "B2", "md")
    assert r.exit_code == 0, r.output
    text = r.output
    assert "- nothing: the record is clean" in text
    assert "- no action-level excursion during ISO 5 operations" in text
    assert "- no data gaps" in text
    assert "- every operation has signed actual start and end times" in text
    assert "- audit trail intact:" in text
    # the weighings on the hood's balance during filling: two, not the repeats or the empty pan
    weighings = [ln for ln in text.splitlines() if " bal-1: " in ln]
    assert [ln.split(": ")[1] for ln in weighings] == ["12.501 g", "3.2 g"]
    assert "batch.start batch:B2/fill [performed]" in text


def test_html_is_printable_with_a_trend_per_point_and_its_limits(floor) -> None:
    r = record(floor, "B1", "html")
    assert r.exit_code == 1
    html = r.output
    assert html.startswith("<!doctype html>") and "@media print" in html
    assert html.count("<svg") >= 2  # mon/dp and pc-laf-1/p05
    assert "<title>action_high 3520</title>" in html and "<title>alert_low 10</title>" in html


def test_bad_input_names_the_problem(floor) -> None:
    r = record(floor, "B9")
    assert r.exit_code == 2 and "no batch 'B9' in the plan (batches: B1, B2)" in r.output


@pytest.mark.integration
async def test_the_record_through_the_daemon(floor, mosquitto) -> None:
    """Terminals get the same record with a query (they need no access to the store)."""
    d, _ctx = floor
    text = (d / "devices.toml").read_text()
    text = text.replace("port = 1883", f"port = {mosquitto.port}")
    text = text.replace('store = "floor.db"', f'store = "{d / "floor.db"}"')
    async with running_floor(text) as (f, _seen):
        args = {"batch": "B2", "plan": str(d / "plan.toml"), "schedule": str(d / "s.json")}
        r = await query(f.config.state_connection, "floorctl/br", "batch-record", args)
        assert r["status"] == "done", r
        assert r["clean"] is True and r["record"]["batch"] == "B2"
        assert "- every operation has signed actual start and end times" in r["markdown"]
        r = await query(
            f.config.state_connection, "floorctl/br", "batch-record", {**args, "batch": "B9"}
        )
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        assert "no batch 'B9'" in r["error"]


@pytest.mark.integration
@pytest.mark.slow
async def test_a_live_excursion_during_filling_reaches_the_record(floor, mosquitto, tmp_path):
    """The whole path: the technician starts filling (signed), the hood's particle count goes
    to action level on the live floor, the alarm is acknowledged, filling ends; the record of
    that batch shows the excursion, the signed acknowledgement and the actual window."""
    import asyncio
    import time
    import uuid

    import aiomqtt

    from floorctl.batches import ActualRequest
    from floorctl.commands import Signer

    from .floorkit import publish, signer, wait_until

    d, ctx = floor
    db = tmp_path / "live.db"
    make_users(db)
    text = (d / "devices.toml").read_text()
    text = text.replace("port = 1883", f"port = {mosquitto.port}")
    text = text.replace('store = "floor.db"', f'store = "{db}"')
    port = mosquitto.port

    async def ask(topic: str, body: bytes, rid: str) -> dict:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(f"floorctl/br/reply/{rid}", qos=1)
            await client.publish(topic, body, qos=1)
            async with asyncio.timeout(10):
                async for m in client.messages:
                    return json.loads(m.payload)
        raise AssertionError("no reply")

    async def actual(event: str) -> None:
        req = ActualRequest.new("B1", "fill", event, Signer("tech", "1111"))
        r = await ask("floorctl/br/request/actual", req.payload(), req.id)
        assert r["status"] == "accepted", r

    async with running_floor(text) as (f, _seen):
        p = f.alarms.point("pc-laf-1", "p05")
        await actual("start")
        while p.value is None:  # the daemon subscribes after it connects: feed until it reads
            await publish(port, "gw/pc", json.dumps({"p05": 120.0}))
            await asyncio.sleep(0.2)
        for v in (4800.0, 5100.0, 5000.0):  # two of three samples out: action (N-of-M)
            await publish(port, "gw/pc", json.dumps({"p05": v}))
            await asyncio.sleep(0.3)
        await wait_until(lambda: p.state.value == "unack", what="the particle alarm")
        rid = uuid.uuid4().hex
        body = {"v": 1, "id": rid, "action": "ack", **signer("tech", "glove breach, regloved")}
        r = await ask("floorctl/br/request/alarm/pc-laf-1/p05", json.dumps(body).encode(), rid)
        assert r["status"] == "accepted", r
        for _ in range(3):
            await publish(port, "gw/pc", json.dumps({"p05": 110.0}))
            await asyncio.sleep(0.3)
        await wait_until(lambda: p.state.value == "normal", what="back to normal")
        await actual("end")
        await asyncio.sleep(1.0)  # the store writer commits every 0.5 s
    r = CliRunner().invoke(
        cli,
        ["batch-record", "B1", "--plan", str(d / "plan.toml"), "--schedule", str(d / "s.json"),
         "--db", str(db), "-c", str(d / "devices.toml"), "--format", "json"],
        obj=ctx,
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    doc = json.loads(r.output)
    fill = next(op for op in doc["operations"] if op["name"] == "fill")
    assert fill["basis"] == "actual" and fill["window"][1] <= time.time()
    p05 = next(x for x in fill["points"] if x["device"] == "pc-laf-1")
    assert p05["max"] == 5100.0 and p05["outside_action_s"] > 0
    causes = [(a["cause"], a["signed_by"]) for a in fill["alarms"]]
    assert ("activate", None) in causes and ("ack", "Terry Tech") in causes
    assert any("pc-laf-1/p05 outside its ACTION limits" in x for x in doc["attention"])
    assert "ACTION-LEVEL EXCURSION during ISO 5 operation(s): fill" in doc["verdicts"]

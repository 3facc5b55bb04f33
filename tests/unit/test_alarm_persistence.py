"""Alarm state across restarts, limit changes, and the signed-action dry run (pure logic)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorctl.alarms import actions
from floorctl.alarms.actions import AlarmRequest, parse_alarm_request
from floorctl.alarms.engine import ActionRefused, AlarmPoint, AlarmPointConfig, Transition
from floorctl.alarms.states import AlarmState, InvalidTransition
from floorctl.commands import BadRequest, Signer
from floorctl.model import Quality, Reading

S = AlarmState
CONFIGS = [
    {"action_low": 5.0, "alert_low": 10.0, "deadband": 0.5, "alert_on_delay": 3.0,
     "action_on_delay": 5.0, "off_delay": 2.0},
    {"alert_high": 20.0, "action_high": 30.0, "latching": True, "realarm": 20.0},
    {"action_high": 100.0, "alert_high": 50.0, "n_of_m": (2, 3)},
]  # fmt: skip


def make(i: int) -> AlarmPoint:
    return AlarmPoint(AlarmPointConfig(device="d", point="p", **CONFIGS[i]))  # type: ignore[arg-type]


def reading(v: float | None, t: float) -> Reading:
    q = Quality.GOOD if v is not None else Quality.STALE
    return Reading("d", "p", v, q, receive_time=t)


# a step: ("value", v) | ("stale",) | ("ack",) | ("reset",) | ("shelve", seconds) |
# ("unshelve",) | ("oos",) | ("rts",) | ("suppress", on) | ("tick",); 1 s apart
step = st.one_of(
    st.tuples(st.just("value"), st.floats(min_value=0.0, max_value=120.0)),
    st.tuples(st.sampled_from(["stale", "ack", "reset", "unshelve", "oos", "rts", "tick"])),
    st.tuples(st.just("shelve"), st.floats(min_value=1.0, max_value=10.0)),
    st.tuples(st.just("suppress"), st.booleans()),
)


def do(p: AlarmPoint, s: tuple, t: float) -> list[Transition]:
    try:
        match s:
            case ("value", v):
                return p.feed(reading(v, t), t)
            case ("stale",):
                return p.feed(reading(None, t), t)
            case ("ack",):
                return p.acknowledge("u", "c", t)
            case ("reset",):
                return p.reset("u", "c", t)
            case ("shelve", secs):
                return p.shelve(secs, "why", "supervisor", t, user="u")
            case ("unshelve",):
                return p.unshelve("u", t)
            case ("oos",):
                return p.set_out_of_service(True, "u", "maint", t)
            case ("rts",):
                return p.set_out_of_service(False, "u", "done", t)
            case ("suppress", on):
                return p.suppress(on, t)
            case _:
                return p.tick(t)
    except (InvalidTransition, ActionRefused):
        return []


@settings(max_examples=150, deadline=None)
@given(
    cfg=st.integers(0, len(CONFIGS) - 1),
    before=st.lists(step, max_size=25),
    after=st.lists(step, max_size=25),
)
def test_a_restored_point_behaves_exactly_like_the_one_that_was_saved(
    cfg: int, before: list, after: list
) -> None:
    original = make(cfg)
    t = 1000.0
    for s in before:
        t += 1.0
        do(original, s, t)
    # through JSON, as the store keeps it
    snap = json.loads(json.dumps(original.snapshot()))
    restored = make(cfg)
    restored.restore(snap, t)
    # the rate of change restarts and stale_after counts from the restart: neither is
    # configured here, so from now on both points must do exactly the same
    assert restored.state is original.state
    for s in after:
        t += 1.0
        assert do(restored, s, t) == do(original, s, t)
        assert restored.snapshot() == original.snapshot()


def test_restore_keeps_ack_and_shelf_and_a_lapsed_shelf_expires_on_the_first_tick() -> None:
    p = make(0)
    p.feed(reading(3.0, 0.0), 0.0)
    p.tick(10.0)
    assert p.state is S.UNACK
    p.acknowledge("tech", "closed the door", 11.0)
    q = make(0)
    q.restore(json.loads(json.dumps(p.snapshot())), 500.0)
    assert q.state is S.ACKED
    assert q.feed(reading(3.0, 501.0), 501.0) == []  # still out: no new annunciation
    q.shelve(60.0, "sensor swap", "supervisor", 502.0, user="sup")
    r = make(0)
    r.restore(json.loads(json.dumps(q.snapshot())), 9000.0)  # down for longer than the shelf
    assert r.state is S.SHELVED
    out = r.tick(9000.5)
    assert [(x.cause.value, x.to_state) for x in out] == [("shelf-expired", S.UNACK)]


def test_a_bad_snapshot_is_refused_with_the_point_named() -> None:
    with pytest.raises(ValueError, match=r"bad alarm snapshot for \('d', 'p'\)"):
        make(0).restore({"state": "dancing"}, 0.0)


def test_replace_config_keeps_the_state_and_applies_new_limits_from_the_next_value() -> None:
    p = make(0)
    p.feed(reading(3.0, 0.0), 0.0)
    p.tick(10.0)
    p.acknowledge("tech", "seen", 11.0)
    p.replace_config(actions.config_with(p.config, {"action_low": 2.0, "alert_low": 2.5}))
    assert p.state is S.ACKED and p.config.action_low == 2.0
    out = p.feed(reading(3.0, 12.0), 12.0)  # inside the new limits: clears after the off-delay
    assert out == []
    out = p.tick(20.0)
    assert [(t.cause.value, t.to_state) for t in out] == [("clear", S.NORMAL)]


def request(action: str, **args: object) -> AlarmRequest:
    return AlarmRequest.new("d", "p", action, Signer("tech", "1111", "why"), args)


def test_dry_run_leaves_the_point_untouched_and_says_what_would_happen() -> None:
    p = make(0)
    p.feed(reading(3.0, 0.0), 0.0)
    p.tick(10.0)
    before = p.snapshot()
    would = actions.dry_run(p, request("ack"), 11.0)
    assert [(t.cause.value, t.to_state) for t in would] == [("ack", S.ACKED)]
    assert p.snapshot() == before
    with pytest.raises(InvalidTransition):
        actions.dry_run(p, request("reset"), 11.0)
    with pytest.raises(ActionRefused, match="at most 28800 s"):
        actions.dry_run(p, request("shelve", duration="9h"), 11.0)
    with pytest.raises(ActionRefused, match=r"args\.duration is required"):
        actions.dry_run(p, request("shelve"), 11.0)
    with pytest.raises(ActionRefused, match="unknown alarm setting 'alert_hihg'"):
        actions.limit_settings(p, {"settings": {"alert_hihg": 3}})
    with pytest.raises(ActionRefused, match="action_low"):
        actions.limit_settings(p, {"settings": {"action_low": 50}})  # above alert_low


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"\xff", "not a JSON document"),
        (b"[]", "must be a JSON object"),
        (b'{"action": "ack"}', "id: required"),
        (b'{"id": "a", "action": "dance"}', "action: one of ack, reset, shelve"),
        (b'{"id": "a", "action": "ack", "secret": "1"}', "user: required"),
        (b'{"id": "a", "action": "ack", "user": "u"}', "secret: required"),
        (b'{"id": "a", "action": "shelve", "user": "u", "secret": "s"}', "comment: required"),
        (b'{"id": "a", "action": "ack", "user": "u", "secret": "s", "args": 3}', "args: must"),
        (b'{"id": "a", "v": 9, "action": "ack", "user": "u", "secret": "s"}', "v: this daemon"),
    ],
)
def test_bad_alarm_requests_name_what_is_wrong(doc: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_alarm_request("d", "p", doc)


def test_the_secret_is_never_in_a_repr() -> None:
    req = parse_alarm_request(
        "d", "p", b'{"id": "a", "action": "ack", "user": "u", "secret": "s3cr3t"}'
    )
    assert "s3cr3t" not in repr(req)

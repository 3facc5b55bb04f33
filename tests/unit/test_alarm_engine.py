"""The per-point alarm engine: delays, deadband, rate, re-alarm, latching, N-of-M, shelving,
escalation, cannot-evaluate, two-sided limits; and the engine built from resolved limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorctl.alarms.engine import (
    DEFAULTS,
    ActionRefused,
    AlarmEngine,
    AlarmPoint,
    AlarmPointConfig,
    Cause,
    Priority,
    Severity,
    Transition,
)
from floorctl.alarms.states import AlarmState, InvalidTransition
from floorctl.limits import Limit, PointLimits, Quantity
from floorctl.model import Quality, Reading

S = AlarmState


def point(**kw: object) -> AlarmPoint:
    kw.setdefault("device", "d")
    kw.setdefault("point", "p")
    return AlarmPoint(AlarmPointConfig(**kw))  # type: ignore[arg-type]


def good(v: float, t: float) -> Reading:
    return Reading("d", "p", v, Quality.GOOD, receive_time=t)


def run(p: AlarmPoint, samples: list[tuple[float, float]]) -> list[Transition]:
    out: list[Transition] = []
    for t, v in samples:
        out += p.feed(good(v, t), t)
    return out


def causes(ts: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.cause.value, t.from_state.value, t.to_state.value) for t in ts]


# --- on-delay, off-delay, deadband ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    length=st.floats(min_value=0.0, max_value=29.9),
    start=st.floats(min_value=1.0, max_value=100.0),
    step=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
)
def test_an_excursion_shorter_than_the_on_delay_never_alarms(
    length: float, start: float, step: float
) -> None:
    p = point(alert_high=10.0, alert_on_delay=30.0)
    out = p.feed(good(5.0, 0.0), 0.0)
    t = start
    while t <= start + length:
        out += p.feed(good(12.0, t), t)
        t += step
    out += p.feed(good(5.0, start + length), start + length)
    out += p.tick(start + 1000.0)
    assert out == []
    assert p.state is S.NORMAL


def test_an_excursion_longer_than_the_on_delay_alarms_at_the_delay() -> None:
    p = point(alert_high=10.0, alert_on_delay=30.0)
    assert run(p, [(0, 12.0), (10, 12.0), (20, 12.0)]) == []
    assert p.tick(29.9) == []
    (t,) = p.tick(30.0)
    assert (t.cause, t.to_state, t.severity, t.limit, t.condition, t.value) == (
        Cause.ACTIVATE,
        S.UNACK,
        Severity.ALERT,
        10.0,
        "alert_high",
        12.0,
    )


def test_sample_and_hold_a_late_reading_first_runs_the_delay() -> None:
    p = point(alert_high=10.0, alert_on_delay=30.0)
    p.feed(good(12.0, 0.0), 0.0)
    # the next value arrives 40 s later and is normal: the excursion lasted 40 s
    out = p.feed(good(5.0, 40.0), 40.0)
    assert causes(out) == [("activate", "normal", "unack"), ("clear", "unack", "rtn-unack")]


def test_off_delay_holds_the_alarm_and_a_return_cancels_the_clear() -> None:
    p = point(alert_high=10.0, off_delay=20.0)
    assert causes(run(p, [(0, 12.0)])) == [("activate", "normal", "unack")]
    assert run(p, [(5, 9.0), (15, 9.0)]) == []  # back inside, off-delay running
    assert run(p, [(20, 11.0)]) == []  # out again before 25: the clear is cancelled
    assert run(p, [(30, 9.0)]) == [] and p.tick(49.9) == []
    (t,) = p.tick(50.0)
    assert (t.cause, t.to_state) == (Cause.CLEAR, S.RTN_UNACK)


def test_deadband_stops_chatter_around_a_limit() -> None:
    p = point(alert_high=10.0, deadband=0.5)
    wobble = [(float(i), 10.1 if i % 2 else 9.7) for i in range(1, 40)]
    out = run(p, wobble)
    assert causes(out) == [("activate", "normal", "unack")]
    out = run(p, [(50, 9.5)])  # at limit - deadband: cleared
    assert causes(out) == [("clear", "unack", "rtn-unack")]


def test_without_deadband_the_same_wobble_chatters() -> None:
    p = point(alert_high=10.0)
    out = run(p, [(float(i), 10.1 if i % 2 else 9.7) for i in range(1, 11)])
    assert sum(t.cause is Cause.ACTIVATE for t in out) == 5


# --- rate of change, re-alarm, latching, N-of-M ---------------------------------------------


def test_rate_of_change_alarms_before_a_limit_is_reached() -> None:
    p = point(alert_high=10.0, action_high=20.0, alert_on_delay=60, rate_limit=6.0)  # /min
    assert run(p, [(0, 0.0), (10, 0.5)]) == []  # 3 per minute
    (t,) = run(p, [(20, 2.0)])  # 9 per minute
    assert (t.cause, t.severity, t.condition, t.limit) == (
        Cause.ACTIVATE,
        Severity.ALERT,
        "rate",
        6.0,
    )
    out = run(p, [(30, 2.1)])  # steady again
    assert causes(out) == [("clear", "unack", "rtn-unack")]


def test_rate_severity_can_be_action() -> None:
    p = point(action_high=20.0, rate_limit=6.0, rate_severity=Severity.ACTION)
    (t,) = run(p, [(0, 0.0), (10, 5.0)])
    assert t.severity is Severity.ACTION and t.priority is Priority.HIGH


def test_realarm_reannunciates_a_standing_alarm() -> None:
    p = point(alert_high=10.0, realarm=600.0)
    run(p, [(0, 12.0)])
    assert causes(p.tick(600.0)) == [("realarm", "unack", "unack")]
    p.acknowledge("tech", "", 700.0)
    assert p.tick(1299.0) == []
    (t,) = p.tick(1300.0)
    assert (t.cause, t.from_state, t.to_state) == (Cause.REALARM, S.ACKED, S.UNACK)
    run(p, [(1400, 5.0)])
    assert p.tick(5000.0) == []  # not active: no re-alarm


def test_latching_holds_until_acknowledged_and_reset() -> None:
    p = point(alert_high=10.0, latching=True)
    out = run(p, [(0, 12.0), (1, 5.0)])
    assert causes(out)[-1] == ("clear", "unack", "latched-unack")
    with pytest.raises(InvalidTransition, match=r"latched-unack.*acknowledge it first"):
        p.reset("tech", "", 2.0)
    p.acknowledge("tech", "", 3.0)
    assert p.state is S.LATCHED_ACK
    (t,) = p.reset("sup", "area cleaned", 4.0)
    assert (t.cause, t.to_state, t.user, t.comment) == (
        Cause.RESET,
        S.NORMAL,
        "sup",
        "area cleaned",
    )


def test_latched_acked_alarm_that_recurs_is_a_new_alarm() -> None:
    p = point(alert_high=10.0, latching=True)
    run(p, [(0, 12.0)])
    p.acknowledge("tech", "", 1.0)
    run(p, [(2, 5.0)])
    assert p.state is S.LATCHED_ACK
    assert causes(run(p, [(3, 12.0)])) == [("activate", "latched-ack", "unack")]


def test_n_of_m_for_particle_counts() -> None:
    p = point(alert_high=100.0, action_high=1000.0, n_of_m=(2, 3))
    assert run(p, [(0, 50.0), (60, 5000.0), (120, 50.0), (180, 50.0)]) == []  # one spike
    (t,) = run(p, [(240, 150.0)]) + run(p, [(300, 120.0)])
    assert (t.cause, t.severity, t.condition) == (Cause.ACTIVATE, Severity.ALERT, "alert_high")
    out = run(p, [(360, 1500.0), (420, 2000.0)])  # two of three above action
    assert causes(out) == [("escalate", "unack", "unack")]
    assert out[0].severity is Severity.ACTION
    assert run(p, [(480, 10.0)]) == []  # 1500, 2000, 10: still two of three above action
    out = run(p, [(540, 10.0)])  # 2000, 10, 10: fewer than 2 of 3 above either limit
    assert causes(out) == [("clear", "unack", "rtn-unack")]


def test_particle_defaults_use_two_of_three() -> None:
    assert DEFAULTS[Quantity.PARTICLES_0_5].n_of_m == (2, 3)


# --- shelving, suppression, out of service --------------------------------------------------


def test_shelving_expires_by_itself_into_the_current_condition() -> None:
    p = point(alert_high=10.0)
    run(p, [(0, 12.0)])
    (t,) = p.shelve(60.0, "door held for delivery", "supervisor", 1.0, user="sup")
    assert (t.to_state, t.comment, t.user) == (S.SHELVED, "door held for delivery", "sup")
    assert "role supervisor" in (t.detail or "")
    assert run(p, [(10, 25.0), (20, 5.0), (30, 12.0)]) == []  # evaluated, not annunciated
    assert p.tick(60.9) == []
    (t,) = p.tick(61.0)
    assert (t.cause, t.from_state, t.to_state) == (Cause.SHELF_EXPIRED, S.SHELVED, S.UNACK)
    assert p.shelf is None


def test_shelving_expiry_with_the_condition_gone_returns_to_normal() -> None:
    p = point(alert_high=10.0)
    run(p, [(0, 12.0)])
    p.shelve(60.0, "nuisance", "supervisor", 1.0)
    run(p, [(5, 5.0)])
    assert causes(p.tick(100.0)) == [("shelf-expired", "shelved", "normal")]


def test_shelving_needs_a_reason_a_role_and_a_bounded_duration() -> None:
    p = point(alert_high=10.0, shelve_max=3600.0)
    with pytest.raises(ActionRefused, match="reason is required"):
        p.shelve(60.0, "", "supervisor", 0.0)
    with pytest.raises(ActionRefused, match="role is required"):
        p.shelve(60.0, "x", " ", 0.0)
    with pytest.raises(ActionRefused, match="at most 3600"):
        p.shelve(3601.0, "x", "supervisor", 0.0)
    with pytest.raises(ActionRefused):
        p.shelve(0.0, "x", "supervisor", 0.0)
    assert p.state is S.NORMAL and p.shelf is None
    p.shelve(60.0, "x", "supervisor", 0.0)
    with pytest.raises(InvalidTransition, match="cannot shelve an alarm in state shelved"):
        p.shelve(60.0, "x", "supervisor", 1.0)


def test_out_of_service_and_design_suppression() -> None:
    p = point(alert_high=10.0)
    p.set_out_of_service(True, "sup", "transmitter swap", 0.0)
    assert run(p, [(1, 12.0)]) == []
    p.suppress(True, 2.0)  # remembered while out of service
    assert p.state is S.OUT_OF_SERVICE
    assert causes(p.set_out_of_service(False, "sup", "done", 3.0)) == [
        ("return-to-service", "out-of-service", "suppressed")
    ]
    assert causes(p.suppress(False, 4.0)) == [("unsuppress", "suppressed", "unack")]
    with pytest.raises(ActionRefused, match="reason is required"):
        p.set_out_of_service(True, "sup", "", 5.0)


# --- escalation and acknowledgement ---------------------------------------------------------


def test_escalation_alert_to_action_reannunciates_an_acknowledged_alarm() -> None:
    p = point(alert_high=10.0, action_high=20.0)
    run(p, [(0, 12.0)])
    p.acknowledge("tech", "", 1.0)  # alert level: no comment needed
    (t,) = run(p, [(2, 25.0)])
    assert (t.cause, t.from_state, t.to_state, t.severity, t.limit, t.priority) == (
        Cause.ESCALATE,
        S.ACKED,
        S.UNACK,
        Severity.ACTION,
        20.0,
        Priority.HIGH,
    )
    with pytest.raises(ActionRefused, match="comment is mandatory"):
        p.acknowledge("tech", "  ", 3.0)
    (t,) = p.acknowledge("tech", "door closed, QA informed", 3.0)
    assert (t.to_state, t.comment, t.severity) == (S.ACKED, "door closed, QA informed", "action")
    (t,) = run(p, [(4, 15.0)])
    assert (t.cause, t.to_state, t.severity) == (Cause.DEESCALATE, S.ACKED, Severity.ALERT)
    (t,) = run(p, [(5, 5.0)])
    assert (t.cause, t.to_state) == (Cause.CLEAR, S.NORMAL)


def test_action_level_that_returned_still_needs_a_comment() -> None:
    p = point(alert_high=10.0, action_high=20.0)
    run(p, [(0, 25.0), (1, 5.0)])
    assert p.state is S.RTN_UNACK
    with pytest.raises(ActionRefused):
        p.acknowledge("tech", "", 2.0)
    p.acknowledge("tech", "checked", 2.0)
    assert p.state is S.NORMAL and p.peak is None


def test_invalid_operator_actions_name_state_and_action() -> None:
    p = point(alert_high=10.0)
    with pytest.raises(InvalidTransition, match="cannot ack an alarm in state normal"):
        p.acknowledge("tech", "x", 0.0)
    with pytest.raises(InvalidTransition, match="cannot unshelve an alarm in state normal"):
        p.unshelve("tech", 0.0)
    with pytest.raises(ActionRefused, match="user is required"):
        run(p, [(1, 12.0)])
        p.acknowledge("", "x", 2.0)


# --- cannot evaluate ------------------------------------------------------------------------


@pytest.mark.parametrize("q", [Quality.STALE, Quality.BAD, Quality.DEVICE_ERROR])
def test_bad_input_is_cannot_evaluate_never_normal(q: Quality) -> None:
    p = point(alert_high=10.0)
    run(p, [(0, 5.0)])
    (t,) = p.feed(Reading.bad("d", "p", "sensor dead", quality=q, receive_time=1.0), 1.0)
    assert (t.cause, t.from_state, t.to_state, t.detail) == (
        Cause.INPUT_LOST,
        S.NORMAL,
        S.CANNOT_EVALUATE,
        "sensor dead",
    )
    assert p.feed(Reading.bad("d", "p", "still dead", quality=q), 2.0) == []
    (t,) = run(p, [(3, 5.0)])
    assert (t.cause, t.to_state) == (Cause.INPUT_RESTORED, S.NORMAL)


def test_restored_input_still_out_annunciates_again() -> None:
    p = point(alert_high=10.0)
    run(p, [(0, 12.0)])
    p.acknowledge("tech", "", 1.0)
    p.feed(Reading.bad("d", "p", "timeout"), 2.0)
    assert causes(run(p, [(3, 12.0)])) == [("input-restored", "cannot-evaluate", "unack")]


def test_an_unacknowledged_alarm_survives_a_loss_of_input() -> None:
    p = point(alert_high=10.0)
    run(p, [(0, 12.0)])
    p.feed(Reading.bad("d", "p", "timeout"), 1.0)
    assert causes(run(p, [(2, 5.0)])) == [("input-restored", "cannot-evaluate", "rtn-unack")]


def test_non_numbers_are_bad_and_uncertain_or_historical_readings_are_skipped() -> None:
    p = point(alert_high=10.0)
    assert causes(run(p, [(0, float("nan"))])) == [("input-lost", "normal", "cannot-evaluate")]
    p.feed(Reading("d", "p", 5.0, Quality.GOOD), 1.0)
    assert p.feed(Reading("d", "p", 50.0, Quality.UNCERTAIN), 2.0) == []
    assert p.feed(Reading("d", "p", 50.0, Quality.GOOD, historical=True), 3.0) == []
    assert p.feed(Reading("d", "p", True, Quality.GOOD), 4.0)[0].cause is Cause.INPUT_LOST


def test_stale_after_without_fresh_values() -> None:
    p = point(alert_high=10.0, stale_after=60.0)
    run(p, [(0, 5.0)])
    assert p.tick(59.0) == []
    assert causes(p.tick(60.0)) == [("input-lost", "normal", "cannot-evaluate")]


def test_unshelving_a_dead_point_shows_cannot_evaluate() -> None:
    p = point(alert_high=10.0)
    p.shelve(60.0, "x", "supervisor", 0.0)
    assert p.feed(Reading.bad("d", "p", "dead"), 1.0) == []
    assert causes(p.unshelve("sup", 2.0)) == [("unshelve", "shelved", "cannot-evaluate")]
    assert causes(run(p, [(3, 5.0)])) == [("input-restored", "cannot-evaluate", "normal")]


# --- two-sided limits and the engine --------------------------------------------------------


def _limits(device: str, pt: str, q: Quantity, **values: float | None) -> PointLimits:
    keys = ("action_low", "alert_low", "alert_high", "action_high")
    return PointLimits(
        device=device,
        point=pt,
        quantity=q,
        unit=None,
        room="hd",
        **{k: Limit(values.get(k), "test") for k in keys},
    )


HD = _limits(
    "hd-dp",
    "dp",
    Quantity.DIFFERENTIAL_PRESSURE,
    action_low=-7.5,
    alert_low=-7.0,
    alert_high=-3.0,
    action_high=-2.5,
)


def test_negative_hd_room_alarms_on_both_sides_with_default_delays() -> None:
    engine = AlarmEngine.from_limits({("hd-dp", "dp"): HD})
    p = engine.point("hd-dp", "dp")
    assert (p.config.alert_on_delay, p.config.action_on_delay, p.config.deadband) == (30, 60, 0.5)

    def feed(v: float, t: float) -> list[Transition]:
        return engine.feed(Reading("hd-dp", "dp", v, Quality.GOOD), t)

    assert feed(-5.0, 0.0) == []
    assert feed(-1.0, 10.0) == []  # door open: not negative enough
    (t,) = engine.tick(40.0)
    assert (t.severity, t.condition, t.limit) == (Severity.ALERT, "alert_high", -3.0)
    (t,) = engine.tick(70.0)
    assert (t.cause, t.severity, t.condition, t.limit) == (
        Cause.ESCALATE,
        Severity.ACTION,
        "action_high",
        -2.5,
    )
    assert [x.cause for x in feed(-5.0, 80.0) + engine.tick(90.0)] == [Cause.CLEAR]
    engine.point("hd-dp", "dp").acknowledge("tech", "doors", 91.0)
    assert feed(-9.0, 100.0) == []  # too negative
    (t,) = engine.tick(130.0)
    assert (t.condition, t.limit) == ("alert_low", -7.0)
    (t,) = engine.tick(160.0)
    assert (t.condition, t.limit, t.severity) == ("action_low", -7.5, Severity.ACTION)


def test_engine_overrides_defaults_and_skips_points_without_limits() -> None:
    fridge = _limits("f1", "t", Quantity.REFRIGERATOR_TEMPERATURE, action_high=8.0)
    none = _limits("f1", "rh", Quantity.HUMIDITY)
    engine = AlarmEngine.from_limits(
        {("hd-dp", "dp"): HD, ("f1", "t"): fridge, ("f1", "rh"): none},
        defaults={Quantity.DIFFERENTIAL_PRESSURE: {"alert_on_delay": "45s"}},
        overrides={("f1", "t"): {"action_on_delay": "20m", "latching": True, "priority": "medium"}},
    )
    assert set(engine.points) == {("hd-dp", "dp"), ("f1", "t")}
    assert engine.point("hd-dp", "dp").config.alert_on_delay == 45.0
    cfg = engine.point("f1", "t").config
    assert (cfg.action_on_delay, cfg.latching, cfg.priority, cfg.off_delay) == (
        1200.0,
        True,
        Priority.MEDIUM,
        60.0,
    )
    assert engine.feed(Reading("nope", "x", 1.0, Quality.GOOD), 0.0) == []
    assert engine.states() == {("hd-dp", "dp"): S.NORMAL, ("f1", "t"): S.NORMAL}
    with pytest.raises(KeyError, match=r"no alarm point f1.x"):
        engine.point("f1", "x")


def test_engine_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown alarm setting 'on_delay'"):
        AlarmEngine.from_limits({("hd-dp", "dp"): HD}, overrides={("hd-dp", "dp"): {"on_delay": 1}})
    with pytest.raises(ValueError, match="unknown points"):
        AlarmEngine.from_limits({}, overrides={("a", "b"): {}})
    with pytest.raises(ValueError, match=r"alert_high .* must be at most action_high"):
        AlarmPointConfig(device="d", point="p", alert_high=30.0, action_high=20.0)
    with pytest.raises(ValueError, match="deadband"):
        AlarmPointConfig(device="d", point="p", deadband=-1.0)
    with pytest.raises(ValueError, match="n_of_m"):
        AlarmPointConfig(device="d", point="p", n_of_m=(4, 3))
    c = AlarmPointConfig(device="d", point="p", alert_high=1.0)
    with pytest.raises(ValueError, match=r"duplicate alarm point d.p"):
        AlarmEngine([c, c])


def test_transition_payload() -> None:
    p = point(alert_high=10.0)
    (t,) = run(p, [(0, 12.0)])
    payload = t.as_payload()
    assert payload == {
        "device": "d",
        "point": "p",
        "from": "normal",
        "to": "unack",
        "cause": "activate",
        "time": 0.0,
        "severity": "alert",
        "priority": "low",
        "value": 12.0,
        "limit": 10.0,
        "condition": "alert_high",
        "user": None,
        "comment": None,
        "detail": None,
    }

"""Alarm KPIs (ISA-18.2 / EEMUA 191) over lists of transitions."""

from __future__ import annotations

import pytest

from floorctl.alarms import kpi
from floorctl.alarms.engine import AlarmPoint, AlarmPointConfig, Cause, Priority, Transition
from floorctl.alarms.states import AlarmState
from floorctl.model import Quality, Reading

S = AlarmState


def act(t: float, pt: str = "p", prio: Priority = Priority.LOW) -> Transition:
    return Transition("d", pt, S.NORMAL, S.UNACK, Cause.ACTIVATE, t, priority=prio)


def clear(t: float, pt: str = "p") -> Transition:
    return Transition("d", pt, S.UNACK, S.RTN_UNACK, Cause.CLEAR, t)


def test_rate_average_and_peak_per_ten_minutes() -> None:
    ts = [act(10), act(20), act(700), clear(30)]
    r = kpi.alarm_rate(ts, since=0, until=1800)
    assert (r.buckets, r.total, r.average, r.peak, r.peak_start) == (3, 3, 1.0, 2, 0.0)
    empty = kpi.alarm_rate([], since=0, until=1)
    assert (empty.buckets, empty.peak, empty.peak_start) == (1, 0, None)
    with pytest.raises(ValueError):
        kpi.alarm_rate([], since=5, until=5)


def test_escalation_and_realarm_count_as_annunciations_but_not_as_activations() -> None:
    esc = Transition("d", "p", S.ACKED, S.UNACK, Cause.ESCALATE, 5)
    in_place = Transition("d", "p", S.UNACK, S.UNACK, Cause.ESCALATE, 6)
    assert kpi.annunciations([act(1), esc, in_place]) == [act(1), esc]
    assert kpi.activations([act(1), esc, in_place]) == [act(1)]


def test_flood_is_more_than_ten_in_ten_minutes() -> None:
    ten = [act(i * 50.0, pt=f"p{i}") for i in range(10)]  # 10 within 450 s: not a flood
    assert kpi.floods(ten) == []
    eleven = [*ten, act(590.0, pt="p10")]
    assert kpi.floods(eleven) == [kpi.Flood(0.0, 590.0, 11)]
    spaced = [act(i * 61.0, pt=f"q{i}") for i in range(11)]  # 11 over 610 s
    assert kpi.floods(spaced) == []
    two = [*eleven, *(act(5000.0 + i) for i in range(12))]
    assert [(f.start, f.count) for f in kpi.floods(two)] == [(0.0, 11), (5000.0, 12)]


def test_chattering_is_three_activations_within_a_minute() -> None:
    ts = [act(0, "a"), act(30, "a"), act(60, "a"), act(0, "b"), act(30, "b"), act(61, "b")]
    assert kpi.chattering(ts) == [kpi.Chatter(("d", "a"), 0.0, 3)]


def test_fleeting_standing_and_still_active() -> None:
    day = 24 * 3600.0
    ts = [act(0, "fleet"), clear(4, "fleet"), act(0, "slow"), clear(60, "slow"), act(0, "stand")]
    shelved = Transition("d", "sh", S.UNACK, S.SHELVED, Cause.SHELVE, 3)
    ts += [act(0, "sh"), shelved]
    fl = kpi.fleeting(ts, until=day + 1)
    assert [(i.key[1], i.duration) for i in fl] == [("fleet", 4.0)]  # shelving is not fleeting
    st = kpi.standing(ts, until=day + 1)
    assert [(i.key[1], i.ended_by) for i in st] == [("stand", None)]
    assert kpi.standing(ts, until=day) == []  # exactly 24 h is not over 24 h


def test_bad_actors_and_priority_distribution() -> None:
    ts = [act(i, "a") for i in range(6)] + [act(i, "b", Priority.HIGH) for i in range(3)]
    ts.append(act(1, "c", Priority.MEDIUM))
    top = kpi.bad_actors(ts, top=2)
    assert [(b.key[1], b.activations, b.share) for b in top] == [("a", 6, 0.6), ("b", 3, 0.3)]
    assert kpi.priority_distribution(ts) == {
        Priority.LOW: 0.6,
        Priority.MEDIUM: 0.1,
        Priority.HIGH: 0.3,
    }
    assert kpi.priority_distribution([]) == dict.fromkeys(Priority, 0.0)


def test_report_over_a_real_engine_run() -> None:
    """A point without deadband chatters; the report sees it, and filters to the window."""
    p = AlarmPoint(AlarmPointConfig(device="d", point="dp", alert_high=10.0))
    out: list[Transition] = []
    for i in range(1, 31):
        v = 10.5 if i % 2 else 9.5
        out += p.feed(Reading("d", "dp", v, Quality.GOOD), float(i))
    rep = kpi.report([*out, act(-5.0, "old")], since=0.0, until=600.0)
    assert rep.rate.total == 15 and rep.rate.peak == 15
    assert [f.count for f in rep.floods] == [15]
    assert rep.chattering[0].key == ("d", "dp") and rep.chattering[0].count == 15
    assert len(rep.fleeting) == 15 and rep.standing == []
    assert rep.bad_actors[0].activations == 15 and len(rep.bad_actors) == 1
    assert rep.priorities[Priority.LOW] == 1.0

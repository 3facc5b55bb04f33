"""The ISA-18.2 state machine against an independent reference model of domain.md §2.2.

The reference below is written from the prose of §2.2 as plain if/else, without looking at
floorctl/alarms/states.py's table; the tests compare the two exhaustively for single steps,
and drive a real AlarmPoint with hypothesis' stateful testing against the same reference.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from floorctl.alarms.engine import AlarmPoint, AlarmPointConfig
from floorctl.alarms.states import (
    AlarmState,
    Context,
    Event,
    InvalidTransition,
    allowed_actions,
    next_state,
)
from floorctl.model import Quality, Reading

S = AlarmState
E = Event

# --- the reference model --------------------------------------------------------------------


class Refused(Exception):
    pass


def ref_step(
    state: S,
    ev: E,
    *,
    active: bool,
    evaluable: bool,
    latching: bool,
    suppressed: bool,
    before: S,
) -> S:
    def back() -> S:  # E/F/G -> A or B "depending on whether condition still present"
        if suppressed:
            return S.SUPPRESSED
        if not evaluable:
            return S.CANNOT_EVALUATE
        return S.UNACK if active else S.NORMAL

    def cleared(s: S) -> S:
        if s == S.UNACK:
            return S.LATCHED_UNACK if latching else S.RTN_UNACK
        if s == S.ACKED:
            return S.LATCHED_ACK if latching else S.NORMAL
        return s

    seen = (S.NORMAL, S.UNACK, S.ACKED, S.RTN_UNACK, S.LATCHED_UNACK, S.LATCHED_ACK)
    if ev == E.ACTIVATE:  # A->B, D->B; a latched alarm recurring is a new alarm
        return (
            S.UNACK if state in (S.NORMAL, S.RTN_UNACK, S.LATCHED_UNACK, S.LATCHED_ACK) else state
        )
    if ev == E.CLEAR:  # B->D, C->A (latched variants hold)
        return cleared(state)
    if ev in (E.ESCALATE, E.REALARM):  # C->B
        return S.UNACK if state in (S.UNACK, S.ACKED) else state
    if ev == E.INPUT_LOST:
        return S.CANNOT_EVALUATE if state in seen else state
    if ev == E.INPUT_RESTORED:
        if state != S.CANNOT_EVALUATE:
            return state
        if not evaluable:
            return state
        return S.UNACK if active else cleared(before)
    if ev == E.SHELF_EXPIRED:
        return back() if state == S.SHELVED else state
    if ev == E.ACK:  # B->C, D->A
        mapping = {S.UNACK: S.ACKED, S.RTN_UNACK: S.NORMAL, S.LATCHED_UNACK: S.LATCHED_ACK}
        if state not in mapping:
            raise Refused
        return mapping[state]
    if ev == E.RESET:
        if state != S.LATCHED_ACK:
            raise Refused
        return S.NORMAL
    if ev == E.SHELVE:  # any -> E, but not over design suppression or out of service
        if state in (S.SHELVED, S.SUPPRESSED, S.OUT_OF_SERVICE):
            raise Refused
        return S.SHELVED
    if ev == E.UNSHELVE:
        if state != S.SHELVED:
            raise Refused
        return back()
    if ev == E.SUPPRESS:
        if state in (S.SUPPRESSED, S.OUT_OF_SERVICE):
            raise Refused
        return S.SUPPRESSED
    if ev == E.UNSUPPRESS:
        if state != S.SUPPRESSED:
            raise Refused
        return back()
    if ev == E.REMOVE_FROM_SERVICE:
        if state == S.OUT_OF_SERVICE:
            raise Refused
        return S.OUT_OF_SERVICE
    if ev == E.RETURN_TO_SERVICE:
        if state != S.OUT_OF_SERVICE:
            raise Refused
        return back()
    raise AssertionError(ev)


def _both(state: S, ev: E, **ctx: object) -> tuple[object, object]:
    try:
        expected: object = ref_step(state, ev, **ctx)  # type: ignore[arg-type]
    except Refused:
        expected = Refused
    try:
        got: object = next_state(
            state,
            ev,
            Context(
                active=ctx["active"],  # type: ignore[arg-type]
                evaluable=ctx["evaluable"],  # type: ignore[arg-type]
                latching=ctx["latching"],  # type: ignore[arg-type]
                suppressed=ctx["suppressed"],  # type: ignore[arg-type]
                before_loss=ctx["before"],  # type: ignore[arg-type]
            ),
        )
    except InvalidTransition as e:
        assert e.state is state and e.event is ev
        assert state.value in str(e) and ev.value in str(e)
        got = Refused
    return expected, got


def test_every_single_step_matches_the_reference() -> None:
    n = 0
    for state, ev, a, ev_ok, latch, supp, before in itertools.product(
        S, E, *([[False, True]] * 4), S
    ):
        ctx = dict(active=a, evaluable=ev_ok, latching=latch, suppressed=supp, before=before)
        expected, got = _both(state, ev, **ctx)
        assert got == expected, (state, ev, ctx)
        n += 1
    assert n == len(S) * len(E) * 16 * len(S)


@st.composite
def _walks(draw: st.DrawFn) -> list[tuple[E, dict[str, object]]]:
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        ev = draw(st.sampled_from(E))
        ctx = {
            "active": draw(st.booleans()),
            "evaluable": draw(st.booleans()),
            "latching": draw(st.booleans()),
            "suppressed": draw(st.booleans()),
        }
        steps.append((ev, ctx))
    return steps


@pytest.mark.parametrize("start", [S.NORMAL, S.OUT_OF_SERVICE])
@given(walk=_walks())
@settings(max_examples=60, deadline=None)
def test_random_sequences_match_the_reference(
    start: S, walk: list[tuple[E, dict[str, object]]]
) -> None:
    state, before = start, S.NORMAL
    for ev, ctx in walk:
        expected, got = _both(state, ev, before=before, **ctx)
        assert got == expected
        if got is Refused:
            continue
        assert isinstance(got, S)
        if got is S.CANNOT_EVALUATE and state is not S.CANNOT_EVALUATE:
            before = state if ev is E.INPUT_LOST else S.NORMAL
        state = got


def test_process_events_are_never_refused() -> None:
    for state, ev in itertools.product(S, [e for e in E if e.is_process]):
        next_state(state, ev, Context())


def test_refusal_names_state_and_action() -> None:
    with pytest.raises(InvalidTransition, match=r"cannot ack an alarm in state normal"):
        next_state(S.NORMAL, E.ACK)
    with pytest.raises(InvalidTransition, match=r"latched-unack.*acknowledge it first"):
        next_state(S.LATCHED_UNACK, E.RESET)
    with pytest.raises(InvalidTransition, match=r"shelve.*out-of-service"):
        next_state(S.OUT_OF_SERVICE, E.SHELVE)


def test_allowed_actions() -> None:
    assert set(allowed_actions(S.UNACK)) == {E.ACK, E.SHELVE, E.SUPPRESS, E.REMOVE_FROM_SERVICE}
    assert allowed_actions(S.OUT_OF_SERVICE) == [E.RETURN_TO_SERVICE]


def test_state_sets() -> None:
    assert {s for s in S if s.active} == {
        S.UNACK,
        S.ACKED,
        S.RTN_UNACK,
        S.LATCHED_UNACK,
        S.LATCHED_ACK,
    }
    assert {s for s in S if not s.annunciated} == {S.SHELVED, S.SUPPRESSED, S.OUT_OF_SERVICE}
    assert S.CANNOT_EVALUATE.annunciated and not S.CANNOT_EVALUATE.active


# --- a real AlarmPoint driven against the reference -----------------------------------------

ALERT, ACTION = 10.0, 20.0
VALUES = {"in": 5.0, "alert": 15.0, "action": 25.0}


def _severity(v: float) -> int:
    return 2 if v > ACTION else 1 if v > ALERT else 0


class PointMachine(RuleBasedStateMachine):
    """Readings, operator actions and time against the reference; no delays, no deadband."""

    @initialize(latching=st.booleans())
    def setup(self, latching: bool) -> None:
        self.point = AlarmPoint(
            AlarmPointConfig(
                device="d", point="p", alert_high=ALERT, action_high=ACTION, latching=latching
            )
        )
        self.latching = latching
        self.now = 0.0
        self.state, self.sev, self.evaluable, self.suppressed = S.NORMAL, 0, True, False
        self.before = S.NORMAL
        self.shelf_until: float | None = None

    def _ref(self, ev: E) -> S:
        return ref_step(
            self.state,
            ev,
            active=self.sev > 0,
            evaluable=self.evaluable,
            latching=self.latching,
            suppressed=self.suppressed,
            before=self.before,
        )

    def _go(self, ev: E) -> None:
        new = self._ref(ev)
        if new is S.CANNOT_EVALUATE and self.state is not S.CANNOT_EVALUATE:
            self.before = self.state if ev is E.INPUT_LOST else S.NORMAL
        self.state = new

    def _time(self, dt: float) -> None:
        self.now += dt
        if (
            self.state is S.SHELVED
            and self.shelf_until is not None
            and self.now >= self.shelf_until
        ):
            self.shelf_until = None
            self._go(E.SHELF_EXPIRED)

    @rule(level=st.sampled_from(sorted(VALUES)))
    def good(self, level: str) -> None:
        self._time(1.0)
        v = VALUES[level]
        self.point.feed(Reading("d", "p", v, Quality.GOOD), self.now)
        new = _severity(v)
        if not self.evaluable:
            self.evaluable, self.sev = True, new
            self._go(E.INPUT_RESTORED)
            return
        old, self.sev = self.sev, new
        if old == 0 and new > 0:
            self._go(E.ACTIVATE)
        elif old > 0 and new == 0:
            self._go(E.CLEAR)
        elif new > old:
            self._go(E.ESCALATE)

    @rule(q=st.sampled_from([Quality.STALE, Quality.BAD, Quality.DEVICE_ERROR]))
    def bad(self, q: Quality) -> None:
        self._time(1.0)
        self.point.feed(Reading.bad("d", "p", "lost", quality=q), self.now)
        if self.evaluable:
            self.evaluable = False
            self._go(E.INPUT_LOST)

    def _operator(self, ev: E, call) -> None:  # type: ignore[no-untyped-def]
        self._time(1.0)
        try:
            expected = self._ref(ev)
        except Refused:
            with pytest.raises(InvalidTransition):
                call()
            return
        call()
        self._go(ev)
        assert expected is self.state

    @rule()
    def ack(self) -> None:
        self._operator(E.ACK, lambda: self.point.acknowledge("tech", "seen", self.now))

    @rule()
    def reset(self) -> None:
        self._operator(E.RESET, lambda: self.point.reset("tech", "reset", self.now))

    @rule(duration=st.sampled_from([5.0, 500.0]))
    def shelve(self, duration: float) -> None:
        def call() -> None:
            self.point.shelve(duration, "door work", "supervisor", self.now, user="sup")
            self.shelf_until = self.now + duration

        self._operator(E.SHELVE, call)

    @rule()
    def unshelve(self) -> None:
        self._operator(E.UNSHELVE, lambda: self.point.unshelve("sup", self.now))

    @rule(on=st.booleans())
    def out_of_service(self, on: bool) -> None:
        ev = E.REMOVE_FROM_SERVICE if on else E.RETURN_TO_SERVICE
        self._operator(
            ev, lambda: self.point.set_out_of_service(on, "sup", "maintenance", self.now)
        )

    @rule(on=st.booleans())
    def suppress(self, on: bool) -> None:
        self._time(1.0)
        self.point.suppress(on, self.now)
        if on == self.suppressed:
            return
        self.suppressed = on
        if self.state is not S.OUT_OF_SERVICE:
            self._go(E.SUPPRESS if on else E.UNSUPPRESS)

    @rule(dt=st.sampled_from([3.0, 1000.0]))
    def wait(self, dt: float) -> None:
        self._time(dt)
        self.point.tick(self.now)

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "point"):
            assert self.point.state is self.state

    @invariant()
    def a_dead_sensor_never_looks_normal(self) -> None:
        if hasattr(self, "point") and not self.point.evaluable:
            assert self.point.state in (
                S.CANNOT_EVALUATE,
                S.SHELVED,
                S.SUPPRESSED,
                S.OUT_OF_SERVICE,
            )


PointMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_point_against_reference = PointMachine.TestCase

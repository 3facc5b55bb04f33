"""The ISA-18.2 alarm state model (domain.md §2.2), as one explicit transition table.

States A..G of the standard's figure, the two latched sub-states, and CANNOT_EVALUATE (the
input is stale, bad or in device error: a dead sensor never looks normal).

Events are of two kinds:

* process events (the evaluated condition changed, a timer ran out) are total: where the
  table has no row the state is kept, because the process cannot be "refused";
* operator and design actions (acknowledge, reset, shelve, ...) are partial: where the table has
  no row, :class:`InvalidTransition` names the state and the action.

Some targets depend on the condition at that moment rather than on the state alone; they are
written in the table as a :class:`Resolve` rule and resolved by :func:`next_state` from a
:class:`Context`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from attrs import frozen


class AlarmState(enum.StrEnum):
    NORMAL = "normal"  # A: not active, nothing to acknowledge
    UNACK = "unack"  # B: active, unacknowledged (annunciating)
    ACKED = "acked"  # C: active, acknowledged
    RTN_UNACK = "rtn-unack"  # D: returned to normal before acknowledgement
    LATCHED_UNACK = "latched-unack"  # latching: returned to normal, held, unacknowledged
    LATCHED_ACK = "latched-ack"  # latching: returned to normal, acknowledged, awaiting reset
    SHELVED = "shelved"  # E: operator-shelved, time-limited, expires by itself
    SUPPRESSED = "suppressed"  # F: suppressed by design (logic)
    OUT_OF_SERVICE = "out-of-service"  # G: maintenance, until returned to service
    CANNOT_EVALUATE = "cannot-evaluate"  # input stale / bad / device error

    @property
    def active(self) -> bool:
        """In the ISA-18.2 active set (needs the operator's attention)."""
        return self in ACTIVE

    @property
    def annunciated(self) -> bool:
        """Shown to the operator (not shelved, suppressed or out of service)."""
        return self not in HIDDEN

    @property
    def unacknowledged(self) -> bool:
        return self in (AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED_UNACK)


S = AlarmState
ACTIVE = frozenset({S.UNACK, S.ACKED, S.RTN_UNACK, S.LATCHED_UNACK, S.LATCHED_ACK})
HIDDEN = frozenset({S.SHELVED, S.SUPPRESSED, S.OUT_OF_SERVICE})
#: states in which the condition is evaluated and annunciated
EVALUATING = frozenset({S.NORMAL, *ACTIVE})


class Event(enum.StrEnum):
    # process events (total)
    ACTIVATE = "activate"  # the condition became active (after on-delay)
    CLEAR = "clear"  # the condition returned to normal (after off-delay)
    ESCALATE = "escalate"  # severity rose while active (alert -> action)
    REALARM = "realarm"  # still active after the re-alarm time
    INPUT_LOST = "input-lost"  # stale / bad / device-error input
    INPUT_RESTORED = "input-restored"  # a good value again
    SHELF_EXPIRED = "shelf-expired"
    # operator and design actions (partial: invalid ones raise)
    ACK = "ack"
    RESET = "reset"  # a latched alarm, after acknowledgement
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE_FROM_SERVICE = "remove-from-service"
    RETURN_TO_SERVICE = "return-to-service"

    @property
    def is_process(self) -> bool:
        return self in PROCESS_EVENTS


E = Event
PROCESS_EVENTS = frozenset(
    {E.ACTIVATE, E.CLEAR, E.ESCALATE, E.REALARM, E.INPUT_LOST, E.INPUT_RESTORED, E.SHELF_EXPIRED}
)


class Resolve(enum.Enum):
    """A target that depends on the condition, not only on the state."""

    #: E/F/G -> A or B (domain.md §2.2), or F if still design-suppressed, or CANNOT_EVALUATE
    BY_CONDITION = "by-condition"
    #: UNACK -> RTN_UNACK or LATCHED_UNACK; ACKED -> NORMAL or LATCHED_ACK (latching)
    ON_CLEAR = "on-clear"
    #: CANNOT_EVALUATE -> UNACK if active, else the state held before the loss, cleared
    ON_RESTORE = "on-restore"


@frozen
class Context:
    """What the table needs to know beyond the state."""

    active: bool = False  # the (delayed) condition is active now
    evaluable: bool = True  # the input is good now
    latching: bool = False
    suppressed: bool = False  # the design-suppression flag is set
    before_loss: AlarmState = S.NORMAL  # the state in which input was lost


class InvalidTransition(ValueError):
    def __init__(self, state: AlarmState, event: Event, why: str = "") -> None:
        self.state = state
        self.event = event
        msg = f"cannot {event.value} an alarm in state {state.value}"
        super().__init__(f"{msg}: {why}" if why else msg)


_ANNUNCIATING = [S.NORMAL, *sorted(ACTIVE), S.CANNOT_EVALUATE]

#: (state, event) -> target; process events missing here keep the state, actions raise.
TABLE: Mapping[tuple[AlarmState, Event], AlarmState | Resolve] = {
    # A->B alarm occurs; D->B re-alarm; a latched alarm that becomes active again is a new alarm
    (S.NORMAL, E.ACTIVATE): S.UNACK,
    (S.RTN_UNACK, E.ACTIVATE): S.UNACK,
    (S.LATCHED_UNACK, E.ACTIVATE): S.UNACK,
    (S.LATCHED_ACK, E.ACTIVATE): S.UNACK,
    # B->D (or latched), C->A (or latched)
    (S.UNACK, E.CLEAR): Resolve.ON_CLEAR,
    (S.ACKED, E.CLEAR): Resolve.ON_CLEAR,
    # C->B when severity escalates; B stays B (the record carries the new severity)
    (S.ACKED, E.ESCALATE): S.UNACK,
    (S.UNACK, E.ESCALATE): S.UNACK,
    # re-alarm time: C->B; B is re-annunciated in place
    (S.ACKED, E.REALARM): S.UNACK,
    (S.UNACK, E.REALARM): S.UNACK,
    # input loss from any evaluating state, and back
    **{(s, E.INPUT_LOST): S.CANNOT_EVALUATE for s in EVALUATING},
    (S.CANNOT_EVALUATE, E.INPUT_RESTORED): Resolve.ON_RESTORE,
    # operator acknowledgement: B->C, D->A, latched unack -> latched ack
    (S.UNACK, E.ACK): S.ACKED,
    (S.RTN_UNACK, E.ACK): S.NORMAL,
    (S.LATCHED_UNACK, E.ACK): S.LATCHED_ACK,
    (S.LATCHED_ACK, E.RESET): S.NORMAL,
    # any annunciating -> E; E -> A/B on unshelve or expiry
    **{(s, E.SHELVE): S.SHELVED for s in _ANNUNCIATING},
    (S.SHELVED, E.UNSHELVE): Resolve.BY_CONDITION,
    (S.SHELVED, E.SHELF_EXPIRED): Resolve.BY_CONDITION,
    # design suppression overrides shelving; out of service overrides everything
    **{(s, E.SUPPRESS): S.SUPPRESSED for s in [*_ANNUNCIATING, S.SHELVED]},
    (S.SUPPRESSED, E.UNSUPPRESS): Resolve.BY_CONDITION,
    **{
        (s, E.REMOVE_FROM_SERVICE): S.OUT_OF_SERVICE
        for s in AlarmState
        if s is not S.OUT_OF_SERVICE
    },
    (S.OUT_OF_SERVICE, E.RETURN_TO_SERVICE): Resolve.BY_CONDITION,
}


def _on_clear(state: AlarmState, latching: bool) -> AlarmState:
    if state is S.UNACK:
        return S.LATCHED_UNACK if latching else S.RTN_UNACK
    if state is S.ACKED:
        return S.LATCHED_ACK if latching else S.NORMAL
    return state


def resolve(rule: Resolve, ctx: Context) -> AlarmState:
    if rule is Resolve.ON_RESTORE:
        if not ctx.evaluable:
            return S.CANNOT_EVALUATE
        return S.UNACK if ctx.active else _on_clear(ctx.before_loss, ctx.latching)
    if rule is Resolve.BY_CONDITION:
        if ctx.suppressed:
            return S.SUPPRESSED
        if not ctx.evaluable:
            return S.CANNOT_EVALUATE
        return S.UNACK if ctx.active else S.NORMAL
    raise AssertionError(rule)  # ON_CLEAR is resolved with the state, in next_state


def next_state(state: AlarmState, event: Event, ctx: Context | None = None) -> AlarmState:
    """The state after ``event``; raises InvalidTransition for an action the state refuses."""
    ctx = ctx or Context()
    target = TABLE.get((state, event))
    if target is None:
        if event.is_process:
            return state
        raise InvalidTransition(state, event, _why(state, event))
    if target is Resolve.ON_CLEAR:
        return _on_clear(state, ctx.latching)
    if isinstance(target, Resolve):
        return resolve(target, ctx)
    return target


def allowed_actions(state: AlarmState) -> list[Event]:
    """The operator/design actions the state accepts (for UIs and the command layer)."""
    return [e for e in Event if not e.is_process and (state, e) in TABLE]


def _why(state: AlarmState, event: Event) -> str:
    if event is E.ACK:
        return "nothing to acknowledge"
    if event is E.RESET and state is S.LATCHED_UNACK:
        return "acknowledge it first"
    if event is E.RESET:
        return "only a latched, acknowledged alarm can be reset"
    if state in HIDDEN:
        return f"it is {state.value}; undo that first"
    return f"allowed here: {', '.join(e.value for e in allowed_actions(state)) or 'none'}"

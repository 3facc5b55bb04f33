"""Per-point alarm evaluation: limits, deadband, delays, rate of change, N-of-M, re-alarm,
latching, shelving, suppression, out of service, cannot-evaluate.

Pure logic with an injected clock: every call takes ``now`` (UNIX seconds) and returns the
:class:`Transition` records it caused, in order. The daemon publishes them; the store audits them.

Alert and action are two conditions of ONE alarm per point. The alarm carries a severity
(``alert`` or ``action``, the higher of the confirmed conditions). An alert that rises to action
is an escalation: ACKED -> UNACK (domain.md §2.2 "C->B re-alarm if severity escalates"), and
UNACK stays UNACK with a record of the new severity. A fall from action back to alert is
recorded (cause ``deescalate``) without changing the state. See docs/alarms.md.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping

import attrs
from attrs import define, field, frozen

from floorctl.alarms.states import (
    EVALUATING,
    AlarmState,
    Context,
    Event,
    InvalidTransition,
    next_state,
)
from floorctl.limits import LIMIT_KEYS, PointLimits, Quantity, check_order
from floorctl.model import Quality, Reading

Key = tuple[str, str]


class Severity(enum.StrEnum):
    ALERT = "alert"
    ACTION = "action"

    @property
    def rank(self) -> int:
        return 1 if self is Severity.ALERT else 2


class Priority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Cause(enum.StrEnum):
    """Why a transition happened: an :class:`Event` value, or ``deescalate``."""

    ACTIVATE = "activate"
    CLEAR = "clear"
    ESCALATE = "escalate"
    DEESCALATE = "deescalate"
    REALARM = "realarm"
    INPUT_LOST = "input-lost"
    INPUT_RESTORED = "input-restored"
    SHELF_EXPIRED = "shelf-expired"
    ACK = "ack"
    RESET = "reset"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE_FROM_SERVICE = "remove-from-service"
    RETURN_TO_SERVICE = "return-to-service"


class ActionRefused(ValueError):
    """An operator action the state allows, refused for a missing or bad argument."""


@frozen
class Transition:
    """One change of an alarm (or a re-annunciation / severity change in place)."""

    device: str
    point: str
    from_state: AlarmState
    to_state: AlarmState
    cause: Cause
    time: float
    severity: Severity | None = None  # of the condition after the transition
    priority: Priority | None = None
    value: float | None = None  # last good value
    limit: float | None = None  # the limit (or rate limit) of the condition concerned
    condition: str | None = None  # "action_high", "alert_low", "rate", ...
    user: str | None = None
    comment: str | None = None
    detail: str | None = None

    @property
    def key(self) -> Key:
        return (self.device, self.point)

    def as_payload(self) -> dict[str, object]:
        return {
            "device": self.device,
            "point": self.point,
            "from": self.from_state.value,
            "to": self.to_state.value,
            "cause": self.cause.value,
            "time": self.time,
            "severity": None if self.severity is None else self.severity.value,
            "priority": None if self.priority is None else self.priority.value,
            "value": self.value,
            "limit": self.limit,
            "condition": self.condition,
            "user": self.user,
            "comment": self.comment,
            "detail": self.detail,
        }


# --- configuration ----------------------------------------------------------------------------


def _non_negative(_: object, a: attrs.Attribute, v: float | None) -> None:
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{a.name} must be a finite number >= 0, got {v!r}")


def _positive(_: object, a: attrs.Attribute, v: float | None) -> None:
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{a.name} must be a finite number > 0, got {v!r}")


def _n_of_m(_: object, a: attrs.Attribute, v: tuple[int, int] | None) -> None:
    if v is not None and not (len(v) == 2 and 1 <= v[0] <= v[1]):
        raise ValueError(f"{a.name} must be (n, m) with 1 <= n <= m, got {v!r}")


def _tuple_or_none(v: object) -> tuple[int, int] | None:
    return None if v is None else tuple(v)  # type: ignore[arg-type, return-value]


@frozen
class QuantityDefaults:
    """Alarm settings a quantity gets unless the point overrides them (docs/alarms.md)."""

    deadband: float = field(default=0.0, validator=_non_negative)
    alert_on_delay: float = field(default=0.0, validator=_non_negative)
    action_on_delay: float = field(default=0.0, validator=_non_negative)
    off_delay: float = field(default=0.0, validator=_non_negative)
    rate_limit: float | None = field(default=None, validator=_positive)  # units per minute
    rate_severity: Severity = Severity.ALERT
    realarm: float | None = field(default=None, validator=_positive)
    priority: Priority = Priority.LOW  # of the alert level
    action_priority: Priority = Priority.HIGH
    latching: bool = False
    n_of_m: tuple[int, int] | None = field(
        default=None, converter=_tuple_or_none, validator=_n_of_m
    )
    shelve_max: float = field(default=8 * 3600.0, validator=_positive)
    stale_after: float | None = field(default=None, validator=_positive)


Q = Quantity
#: domain.md §7 engineering suggestions; QA approves the site values.
DEFAULTS: Mapping[Quantity, QuantityDefaults] = {
    Q.DIFFERENTIAL_PRESSURE: QuantityDefaults(
        deadband=0.5,
        alert_on_delay=30.0,
        action_on_delay=60.0,
        off_delay=10.0,
        priority=Priority.MEDIUM,
    ),
    Q.TEMPERATURE: QuantityDefaults(
        deadband=0.2, alert_on_delay=60.0, action_on_delay=60.0, off_delay=30.0
    ),
    Q.HUMIDITY: QuantityDefaults(
        deadband=1.0, alert_on_delay=60.0, action_on_delay=60.0, off_delay=30.0
    ),
    Q.REFRIGERATOR_TEMPERATURE: QuantityDefaults(
        deadband=0.3, alert_on_delay=900.0, action_on_delay=900.0, off_delay=60.0
    ),
    Q.FREEZER_TEMPERATURE: QuantityDefaults(
        deadband=0.5, alert_on_delay=900.0, action_on_delay=900.0, off_delay=60.0
    ),
    Q.PARTICLES_0_5: QuantityDefaults(n_of_m=(2, 3)),
    Q.PARTICLES_5_0: QuantityDefaults(n_of_m=(2, 3)),
    Q.DOWNFLOW_VELOCITY: QuantityDefaults(
        deadband=0.01, alert_on_delay=30.0, action_on_delay=30.0, off_delay=10.0
    ),
    Q.INFLOW_VELOCITY: QuantityDefaults(
        deadband=0.01, alert_on_delay=30.0, action_on_delay=30.0, off_delay=10.0
    ),
}
_DURATIONS = {
    "alert_on_delay",
    "action_on_delay",
    "off_delay",
    "realarm",
    "shelve_max",
    "stale_after",
}


def _check_limits(inst: AlarmPointConfig, _: attrs.Attribute, __: object) -> None:
    problem = check_order({k: getattr(inst, k) for k in LIMIT_KEYS})
    if problem:
        raise ValueError(f"{inst.device}.{inst.point}: {problem}")


@frozen
class AlarmPointConfig(QuantityDefaults):
    """Everything one point's alarm needs: its limits plus the settings of QuantityDefaults."""

    device: str = field(kw_only=True)
    point: str = field(kw_only=True)
    quantity: Quantity | None = field(default=None, kw_only=True)
    unit: str | None = field(default=None, kw_only=True)
    action_low: float | None = field(default=None, kw_only=True)
    alert_low: float | None = field(default=None, kw_only=True)
    alert_high: float | None = field(default=None, kw_only=True)
    action_high: float | None = field(default=None, kw_only=True, validator=_check_limits)

    @property
    def key(self) -> Key:
        return (self.device, self.point)

    @property
    def has_condition(self) -> bool:
        return self.rate_limit is not None or any(getattr(self, k) is not None for k in LIMIT_KEYS)

    @classmethod
    def from_limits(
        cls,
        limits: PointLimits,
        defaults: QuantityDefaults | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> AlarmPointConfig:
        base = defaults if defaults is not None else DEFAULTS.get(limits.quantity)
        settings = attrs.asdict(base or QuantityDefaults(), recurse=False)
        settings.update({k: limits.get(k).value for k in LIMIT_KEYS})
        settings.update(_normalise(overrides or {}, where=f"{limits.device}.{limits.point}"))
        return cls(
            device=limits.device,
            point=limits.point,
            quantity=limits.quantity,
            unit=limits.unit,
            **settings,
        )


def check_settings(settings: Mapping[str, object]) -> None:
    """Raise ValueError naming what is wrong in a table of alarm settings (devices.toml)."""
    values = _normalise(settings, where="alarm settings")
    values = {k: v for k, v in values.items() if k not in LIMIT_KEYS}
    for k, v in values.items():
        if k in _DURATIONS or k in ("deadband", "rate_limit"):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{k}: expected a number or a duration, got {v!r}")
        if k == "latching" and not isinstance(v, bool):
            raise ValueError(f"latching: expected true or false, got {v!r}")
    attrs.evolve(QuantityDefaults(), **values)  # the validators check ranges


def _normalise(overrides: Mapping[str, object], *, where: str) -> dict[str, object]:
    """Check override keys; durations may be strings ("30s", "15m") as in devices.toml."""
    from floorctl.config import parse_duration

    names = {a.name for a in attrs.fields(QuantityDefaults)} | set(LIMIT_KEYS)
    out: dict[str, object] = {}
    for k, v in overrides.items():
        if k not in names:
            raise ValueError(
                f"{where}: unknown alarm setting {k!r} (known: {', '.join(sorted(names))})"
            )
        if k in _DURATIONS and isinstance(v, str):
            v = float(parse_duration(v))
        elif k in ("priority", "action_priority") and isinstance(v, str):
            try:
                v = Priority(v)
            except ValueError:
                raise ValueError(
                    f"{k}: {v!r} is not one of {', '.join(p.value for p in Priority)}"
                ) from None
        elif k == "rate_severity" and isinstance(v, str):
            try:
                v = Severity(v)
            except ValueError:
                raise ValueError(
                    f"{k}: {v!r} is not one of {', '.join(x.value for x in Severity)}"
                ) from None
        out[k] = v
    return out


# --- runtime ----------------------------------------------------------------------------------


@define
class _Condition:
    """One delayed condition: a limit level (alert or action) or the rate of change."""

    name: str  # "alert", "action", "rate"
    severity: Severity
    low: float | None
    high: float | None
    on_delay: float
    raw: bool = False  # undelayed, with hysteresis
    side: str | None = None  # "high" | "low" while raw
    confirmed: bool = False  # after on-delay / before off-delay ends
    confirmed_side: str | None = None
    on_due: float | None = None
    off_due: float | None = None

    def set_raw(self, out: str | None, now: float, off_delay: float) -> None:
        if out is not None:
            self.side = out
            if not self.raw:
                self.raw = True
                if self.confirmed:
                    self.off_due = None
                else:
                    self.on_due = now + self.on_delay
        elif self.raw:
            self.raw, self.side = False, None
            if self.confirmed:
                self.off_due = now + off_delay
            else:
                self.on_due = None
        if self.raw and self.confirmed:
            self.confirmed_side = self.side

    def advance(self, now: float) -> None:
        if self.on_due is not None and now >= self.on_due:
            self.confirmed, self.confirmed_side, self.on_due = True, self.side, None
        if self.off_due is not None and now >= self.off_due:
            self.confirmed, self.confirmed_side, self.off_due = False, None, None

    def forget_pending(self) -> None:
        """Input lost: timers stop; an unconfirmed excursion is forgotten."""
        self.on_due = self.off_due = None
        if not self.confirmed:
            self.raw, self.side = False, None

    def limit(self, side: str | None) -> float | None:
        return self.high if side == "high" else self.low if side == "low" else None


@define
class Shelf:
    user: str
    reason: str
    role: str
    since: float
    until: float


@define
class AlarmPoint:
    """The alarm of one point. Not thread-safe: the daemon is its only writer."""

    config: AlarmPointConfig
    state: AlarmState = AlarmState.NORMAL
    severity: Severity | None = None  # of the confirmed condition, whatever the state
    peak: Severity | None = None  # highest severity since the alarm last became active
    value: float | None = None
    evaluable: bool = True
    suppressed: bool = False
    shelf: Shelf | None = None
    _before_loss: AlarmState = AlarmState.NORMAL
    _last_good: float | None = None  # time of the last good value
    _prev: tuple[float, float] | None = None  # (time, value) for the rate of change
    _annunciated_at: float | None = None
    _window: deque[float] = field(init=False)
    _conditions: list[_Condition] = field(init=False)
    _cond: _Condition | None = field(default=None, init=False)  # the condition last in charge

    def __attrs_post_init__(self) -> None:
        c = self.config
        self._window = deque(maxlen=c.n_of_m[1] if c.n_of_m else 1)
        self._conditions = []
        if c.alert_low is not None or c.alert_high is not None:
            self._conditions.append(
                _Condition("alert", Severity.ALERT, c.alert_low, c.alert_high, c.alert_on_delay)
            )
        if c.action_low is not None or c.action_high is not None:
            self._conditions.append(
                _Condition(
                    "action", Severity.ACTION, c.action_low, c.action_high, c.action_on_delay
                )
            )
        if c.rate_limit is not None:
            self._conditions.append(_Condition("rate", c.rate_severity, None, c.rate_limit, 0.0))

    @property
    def key(self) -> Key:
        return self.config.key

    # --- process side -------------------------------------------------------------------------

    def feed(self, reading: Reading, now: float) -> list[Transition]:
        """Evaluate one reading received at ``now``.

        Timers first run up to ``now`` on the value held so far (sample-and-hold), then the new
        value is applied. UNCERTAIN and historical (store-and-forward) readings are not
        evaluated; any other quality but GOOD, or a value that is not a finite number, is a loss
        of input.
        """
        out = self.tick(now)
        if reading.historical or reading.quality is Quality.UNCERTAIN:
            return out
        value = reading.value
        number = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        if reading.quality is not Quality.GOOD or not number:
            detail = reading.detail or (
                f"quality {reading.quality.value}"
                if reading.quality is not Quality.GOOD
                else f"not a finite number: {value!r}"
            )
            out += self._lose_input(now, detail)
            return out
        assert isinstance(value, int | float)
        v = float(value)
        restored = not self.evaluable
        self.evaluable = True
        self._last_good = now
        self.value = v
        self._evaluate(v, now)
        if restored:
            out += self._input_restored(now)
        else:
            out += self._sync(now)
        return out

    def tick(self, now: float) -> list[Transition]:
        """Run timers: on/off delays, re-alarm, shelf expiry, staleness."""
        out: list[Transition] = []
        c = self.config
        if (
            self.evaluable
            and c.stale_after is not None
            and self._last_good is not None
            and now - self._last_good >= c.stale_after
        ):
            out += self._lose_input(now, f"no fresh value for {c.stale_after:g} s")
        if self.evaluable:
            for cond in self._conditions:
                cond.advance(now)
            out += self._sync(now)
        if self.shelf is not None and self.state is AlarmState.SHELVED and now >= self.shelf.until:
            shelf = self.shelf
            self.shelf = None
            out += self._apply(
                Event.SHELF_EXPIRED, now, detail=f"shelved by {shelf.user} until {shelf.until:.3f}"
            )
        if (
            c.realarm is not None
            and self.state in (AlarmState.UNACK, AlarmState.ACKED)
            and self.severity is not None
            and self._annunciated_at is not None
            and now - self._annunciated_at >= c.realarm
        ):
            out += self._apply(Event.REALARM, now, force_record=True)
        return out

    def _evaluate(self, v: float, now: float) -> None:
        db = self.config.deadband
        n_of_m = self.config.n_of_m
        self._window.append(v)
        prev, self._prev = self._prev, (now, v)
        for cond in self._conditions:
            if cond.name == "rate":
                if prev is None or now <= prev[0]:
                    continue
                rate = abs(v - prev[1]) / (now - prev[0]) * 60.0
                assert cond.high is not None
                cond.set_raw("high" if rate > cond.high else None, now, self.config.off_delay)
                cond.advance(now)
                continue
            if n_of_m is None:
                side = _out(v, cond, db)
            else:
                sides = [s for s in (_out(x, cond, db) for x in self._window) if s is not None]
                side = sides[-1] if len(sides) >= n_of_m[0] else None
            cond.set_raw(side, now, self.config.off_delay)
            cond.advance(now)

    def _confirmed(self) -> tuple[Severity | None, _Condition | None]:
        best: _Condition | None = None
        for cond in self._conditions:
            if cond.confirmed and (best is None or cond.severity.rank > best.severity.rank):
                best = cond
        return (best.severity if best else None), best

    def _sync(self, now: float) -> list[Transition]:
        """Turn a change of the confirmed severity into a process event."""
        new, cond = self._confirmed()
        old = self.severity
        if new == old:
            if cond is not None:
                self._cond = cond
            return []
        self.severity = new
        if cond is not None:
            self._cond = cond
        if old is None:
            self.peak = new
            return self._apply(Event.ACTIVATE, now)
        if new is None:
            return self._apply(Event.CLEAR, now)
        if new.rank > old.rank:
            self.peak = new
            return self._apply(Event.ESCALATE, now, force_record=True)
        if self.state in (AlarmState.UNACK, AlarmState.ACKED):
            return [self._record(self.state, self.state, Cause.DEESCALATE, now)]
        return []

    def _lose_input(self, now: float, detail: str) -> list[Transition]:
        if not self.evaluable:
            return []
        self.evaluable = False
        self._prev = None
        for cond in self._conditions:
            cond.forget_pending()
        if self.state in EVALUATING:
            self._before_loss = self.state
        return self._apply(Event.INPUT_LOST, now, detail=detail)

    def _input_restored(self, now: float) -> list[Transition]:
        self.severity, cond = self._confirmed()
        if cond is not None:
            self._cond = cond
        if self.severity is not None and self._before_loss not in (
            AlarmState.UNACK,
            AlarmState.ACKED,
        ):
            self.peak = self.severity
        return self._apply(Event.INPUT_RESTORED, now)

    # --- operator and design side ---------------------------------------------------------

    def acknowledge(self, user: str, comment: str, now: float) -> list[Transition]:
        """Acknowledge; a comment is mandatory when the alarm reached action level."""
        out = self.tick(now)
        self._check_allowed(Event.ACK)
        _require(user, "user", self.state, Event.ACK)
        if self.peak is Severity.ACTION and not comment.strip():
            raise ActionRefused(
                f"acknowledging {self.config.device}.{self.config.point}: a comment is "
                "mandatory for an action-level alarm"
            )
        return out + self._apply(Event.ACK, now, user=user, comment=comment)

    def reset(self, user: str, comment: str, now: float) -> list[Transition]:
        """Release a latched, acknowledged alarm."""
        out = self.tick(now)
        self._check_allowed(Event.RESET)
        _require(user, "user", self.state, Event.RESET)
        return out + self._apply(Event.RESET, now, user=user, comment=comment)

    def shelve(
        self, duration: float, reason: str, role: str, now: float, user: str = ""
    ) -> list[Transition]:
        """Shelve for ``duration`` seconds (at most ``shelve_max``); expires by itself."""
        out = self.tick(now)
        self._check_allowed(Event.SHELVE)
        _require(reason, "reason", self.state, Event.SHELVE)
        _require(role, "role", self.state, Event.SHELVE)
        cap = self.config.shelve_max
        if not (math.isfinite(duration) and 0 < duration <= cap):
            raise ActionRefused(
                f"shelving {self.config.device}.{self.config.point}: duration must be "
                f"more than 0 and at most {cap:g} s, got {duration:g}"
            )
        self.shelf = Shelf(user=user, reason=reason, role=role, since=now, until=now + duration)
        return out + self._apply(
            Event.SHELVE,
            now,
            user=user or None,
            comment=reason,
            detail=f"role {role}; until {now + duration:.3f}",
        )

    def unshelve(self, user: str, now: float, comment: str = "") -> list[Transition]:
        out = self.tick(now)
        self._check_allowed(Event.UNSHELVE)
        self.shelf = None
        return out + self._apply(Event.UNSHELVE, now, user=user, comment=comment)

    def set_out_of_service(self, on: bool, user: str, reason: str, now: float) -> list[Transition]:
        event = Event.REMOVE_FROM_SERVICE if on else Event.RETURN_TO_SERVICE
        out = self.tick(now)
        self._check_allowed(event)
        _require(user, "user", self.state, event)
        _require(reason, "reason", self.state, event)
        self.shelf = None
        return out + self._apply(event, now, user=user, comment=reason)

    def suppress(self, on: bool, now: float, detail: str = "") -> list[Transition]:
        """Suppression by design (logic, e.g. the unit is not operating). Never refused: while
        out of service the flag is only remembered, and applies on return to service."""
        out = self.tick(now)
        if self.suppressed == on:
            return out
        self.suppressed = on
        if self.state is AlarmState.OUT_OF_SERVICE:
            return out
        if on:
            self.shelf = None
            return out + self._apply(Event.SUPPRESS, now, detail=detail or None)
        return out + self._apply(Event.UNSUPPRESS, now, detail=detail or None)

    # --- persistence ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Everything that survives a restart, as JSON-able data (the store keeps it)."""
        return {
            "state": self.state.value,
            "severity": None if self.severity is None else self.severity.value,
            "peak": None if self.peak is None else self.peak.value,
            "value": self.value,
            "evaluable": self.evaluable,
            "suppressed": self.suppressed,
            "shelf": None if self.shelf is None else attrs.asdict(self.shelf),
            "before_loss": self._before_loss.value,
            "annunciated_at": self._annunciated_at,
            "window": list(self._window),
            "cond": None if self._cond is None else self._cond.name,
            "conditions": {
                c.name: {
                    "raw": c.raw,
                    "side": c.side,
                    "confirmed": c.confirmed,
                    "confirmed_side": c.confirmed_side,
                    "on_due": c.on_due,
                    "off_due": c.off_due,
                }
                for c in self._conditions
            },
        }

    def restore(self, snap: Mapping[str, object], now: float) -> None:
        """Take up the state of :meth:`snapshot` after a restart, as if no time had passed
        for the alarm: acknowledgements, shelves and confirmed conditions hold; a shelf that
        ran out meanwhile expires on the next tick. The input counts as fresh from ``now``
        (the daemon's own stale detection covers a device that does not come back), and the
        rate of change starts again from the next value. Raises ValueError on a bad snapshot.
        """
        try:
            state = AlarmState(snap["state"])
            severity = None if snap["severity"] is None else Severity(snap["severity"])
            peak = None if snap["peak"] is None else Severity(snap["peak"])
            shelf = snap.get("shelf")
            conds = snap.get("conditions") or {}
            assert isinstance(conds, Mapping)
            self.state = state
            self.severity, self.peak = severity, peak
            value = snap.get("value")
            self.value = None if value is None else float(value)  # type: ignore[arg-type]
            self.evaluable = bool(snap.get("evaluable", True))
            self.suppressed = bool(snap.get("suppressed", False))
            self.shelf = None if not shelf else Shelf(**shelf)  # type: ignore[arg-type]
            self._before_loss = AlarmState(snap.get("before_loss", "normal"))
            at = snap.get("annunciated_at")
            self._annunciated_at = None if at is None else float(at)  # type: ignore[arg-type]
            self._window.clear()
            self._window.extend(float(x) for x in snap.get("window") or [])  # type: ignore[union-attr]
            for c in self._conditions:
                saved = conds.get(c.name)
                if saved:
                    for k in ("raw", "side", "confirmed", "confirmed_side", "on_due", "off_due"):
                        setattr(c, k, saved.get(k))
            by_name = {c.name: c for c in self._conditions}
            self._cond = by_name.get(snap.get("cond"))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"bad alarm snapshot for {self.key}: {exc}") from None
        self._prev = None
        self._last_good = now if self.evaluable else None

    def replace_config(self, config: AlarmPointConfig) -> None:
        """New limits or settings for this point (a signed limit change): the alarm state,
        acknowledgements and shelf stay; the conditions are evaluated again from the next
        value (a condition confirmed before keeps counting as confirmed until then)."""
        if config.key != self.key:
            raise ValueError(f"config for {config.key} given to point {self.key}")
        snap, last, prev = self.snapshot(), self._last_good, self._prev
        self.config = config
        self.__attrs_post_init__()
        self.restore(snap, 0.0)
        self._last_good, self._prev = last, prev

    # --- plumbing -------------------------------------------------------------------------

    def _check_allowed(self, event: Event) -> None:
        next_state(self.state, event, self._context())  # raises InvalidTransition

    def _context(self) -> Context:
        return Context(
            active=self.severity is not None,
            evaluable=self.evaluable,
            latching=self.config.latching,
            suppressed=self.suppressed,
            before_loss=self._before_loss,
        )

    def _apply(
        self,
        event: Event,
        now: float,
        *,
        user: str | None = None,
        comment: str | None = None,
        detail: str | None = None,
        force_record: bool = False,
    ) -> list[Transition]:
        old = self.state
        new = next_state(old, event, self._context())
        if new is old and not (force_record and old in (AlarmState.UNACK, AlarmState.ACKED)):
            return []
        self.state = new
        if new is AlarmState.CANNOT_EVALUATE and event is not Event.INPUT_LOST:
            self._before_loss = AlarmState.NORMAL
        if (
            new is AlarmState.UNACK
            and old is not AlarmState.UNACK
            and event
            in (Event.UNSHELVE, Event.SHELF_EXPIRED, Event.UNSUPPRESS, Event.RETURN_TO_SERVICE)
        ):
            self.peak = self.severity
        if new is AlarmState.UNACK or event is Event.ACK:
            self._annunciated_at = now
        if new is AlarmState.NORMAL:
            self.peak = None
        return [self._record(old, new, Cause(event.value), now, user, comment, detail)]

    def _record(
        self,
        old: AlarmState,
        new: AlarmState,
        cause: Cause,
        now: float,
        user: str | None = None,
        comment: str | None = None,
        detail: str | None = None,
    ) -> Transition:
        cond = self._cond
        limit = condition = None
        if cond is not None:
            side = cond.confirmed_side or cond.side or ("high" if cond.high is not None else "low")
            limit = cond.limit(side)
            condition = "rate" if cond.name == "rate" else f"{cond.name}_{side}"
        sev = self.severity
        prio = None
        if sev is not None:
            prio = self.config.action_priority if sev is Severity.ACTION else self.config.priority
        return Transition(
            device=self.config.device,
            point=self.config.point,
            from_state=old,
            to_state=new,
            cause=cause,
            time=now,
            severity=sev,
            priority=prio,
            value=self.value,
            limit=limit,
            condition=condition,
            user=user or None,
            comment=comment or None,
            detail=detail,
        )


def _out(v: float, cond: _Condition, deadband: float) -> str | None:
    """Which side of ``cond``'s limits ``v`` is out on, with hysteresis while already out."""
    if cond.high is not None:
        edge = cond.high - deadband if (cond.raw and cond.side == "high") else cond.high
        if v > edge:
            return "high"
    if cond.low is not None:
        edge = cond.low + deadband if (cond.raw and cond.side == "low") else cond.low
        if v < edge:
            return "low"
    return None


def _require(text: str, what: str, state: AlarmState, event: Event) -> None:
    if not text or not text.strip():
        raise ActionRefused(f"cannot {event.value} (state {state.value}): {what} is required")


# --- the engine -------------------------------------------------------------------------------


class AlarmEngine:
    """All alarm points of the floor, by (device, point)."""

    def __init__(self, configs: Iterable[AlarmPointConfig]) -> None:
        self.points: dict[Key, AlarmPoint] = {}
        for c in configs:
            if c.key in self.points:
                raise ValueError(f"duplicate alarm point {c.device}.{c.point}")
            self.points[c.key] = AlarmPoint(c)

    def add(self, config: AlarmPointConfig) -> AlarmPoint:
        """Add one point (the daemon's device communication alarms, say)."""
        if config.key in self.points:
            raise ValueError(f"duplicate alarm point {config.device}.{config.point}")
        self.points[config.key] = p = AlarmPoint(config)
        return p

    @classmethod
    def from_limits(
        cls,
        limits: Mapping[Key, PointLimits],
        *,
        defaults: Mapping[Quantity, Mapping[str, object]] | None = None,
        overrides: Mapping[Key, Mapping[str, object]] | None = None,
    ) -> AlarmEngine:
        """Build from ``resolve_limits(config)``: quantity defaults (DEFAULTS, changed by
        ``defaults``), then per-point ``overrides``. Points without any limit are left out."""
        per_quantity = dict(DEFAULTS)
        for q, changes in (defaults or {}).items():
            base = per_quantity.get(Quantity(q), QuantityDefaults())
            per_quantity[Quantity(q)] = attrs.evolve(
                base, **_normalise(changes, where=f"defaults[{q}]")
            )
        overrides = overrides or {}
        unknown = set(overrides) - set(limits)
        if unknown:
            raise ValueError(f"alarm overrides for unknown points: {sorted(unknown)}")
        configs = [
            AlarmPointConfig.from_limits(pl, per_quantity.get(pl.quantity), overrides.get(key))
            for key, pl in limits.items()
        ]
        return cls(c for c in configs if c.has_condition)

    def point(self, device: str, point: str) -> AlarmPoint:
        try:
            return self.points[(device, point)]
        except KeyError:
            raise KeyError(f"no alarm point {device}.{point}") from None

    def feed(self, reading: Reading, now: float) -> list[Transition]:
        p = self.points.get(reading.key)
        return [] if p is None else p.feed(reading, now)

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for p in self.points.values():
            out += p.tick(now)
        return out

    def states(self) -> dict[Key, AlarmState]:
        return {k: p.state for k, p in self.points.items()}


__all__ = [
    "DEFAULTS",
    "ActionRefused",
    "AlarmEngine",
    "AlarmPoint",
    "AlarmPointConfig",
    "Cause",
    "InvalidTransition",
    "Priority",
    "QuantityDefaults",
    "Severity",
    "Shelf",
    "Transition",
]

"""Alarm-system KPIs after ISA-18.2 / EEMUA 191 (domain.md §2.5), over a list of transitions.

Pure functions. Definitions (docs/alarms.md):

* an *annunciation* is a transition into UNACK from any other state (a new alarm, an escalation
  of an acknowledged one, a re-alarm of an acknowledged one, or an unshelve/return to a still
  active condition); it is what an operator hears, so rates, floods and priorities count these;
* an *activation* is a transition with cause ``activate`` (the condition became active);
  chattering, fleeting, standing and bad actors count these;
* an activation's *active interval* runs until the point's next transition out of
  {UNACK, ACKED} (a clear, shelving, loss of input, ...), or until the window ends.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from attrs import frozen

from floorctl.alarms.engine import Cause, Key, Priority, Transition
from floorctl.alarms.states import AlarmState

TEN_MINUTES = 600.0
FLOOD_THRESHOLD = 10  # more than this many annunciations in 10 minutes
CHATTER_COUNT = 3  # this many activations ...
CHATTER_WINDOW = 60.0  # ... within this many seconds
FLEETING_MAX = 10.0  # active for less than this, cleared without operator action
STANDING_MIN = 24 * 3600.0  # active for longer than this

_ACTIVE = (AlarmState.UNACK, AlarmState.ACKED)


def annunciations(transitions: Iterable[Transition]) -> list[Transition]:
    return [
        t
        for t in transitions
        if t.to_state is AlarmState.UNACK and t.from_state is not AlarmState.UNACK
    ]


def activations(transitions: Iterable[Transition]) -> list[Transition]:
    return [t for t in transitions if t.cause is Cause.ACTIVATE]


@frozen
class Rate:
    buckets: int  # 10-minute periods in the window
    total: int
    average: float  # annunciations per 10 minutes
    peak: int  # most annunciations in one 10-minute period
    peak_start: float | None  # start of that period


def alarm_rate(transitions: Sequence[Transition], since: float, until: float) -> Rate:
    """Annunciations per fixed 10-minute period from ``since`` (a last partial period counts
    as a whole one)."""
    if until <= since:
        raise ValueError("the window must end after it starts")
    n = max(1, math.ceil((until - since) / TEN_MINUTES))
    counts = [0] * n
    for t in annunciations(transitions):
        if since <= t.time < until:
            counts[int((t.time - since) // TEN_MINUTES)] += 1
    peak = max(counts)
    return Rate(
        buckets=n,
        total=sum(counts),
        average=sum(counts) / n,
        peak=peak,
        peak_start=since + counts.index(peak) * TEN_MINUTES if peak else None,
    )


@frozen
class Flood:
    start: float  # first annunciation of the flood
    end: float  # last annunciation of the flood
    count: int


def floods(transitions: Sequence[Transition], threshold: int = FLOOD_THRESHOLD) -> list[Flood]:
    """Periods with more than ``threshold`` annunciations within 10 minutes.

    Every run of ``threshold + 1`` annunciations spanning less than 10 minutes is flooded;
    overlapping runs are merged into one period.
    """
    times = sorted(t.time for t in annunciations(transitions))
    spans: list[list[float]] = []
    for i in range(len(times) - threshold):
        a, b = times[i], times[i + threshold]
        if b - a < TEN_MINUTES:
            if spans and a <= spans[-1][1]:
                spans[-1][1] = b
            else:
                spans.append([a, b])
    return [Flood(a, b, sum(1 for x in times if a <= x <= b)) for a, b in spans]


@frozen
class Chatter:
    key: Key
    first: float  # time of the first activation in the densest minute
    count: int  # most activations within CHATTER_WINDOW


def chattering(
    transitions: Sequence[Transition],
    count: int = CHATTER_COUNT,
    window: float = CHATTER_WINDOW,
) -> list[Chatter]:
    """Points with ``count`` or more activations within ``window`` seconds."""
    by_key: dict[Key, list[float]] = defaultdict(list)
    for t in activations(transitions):
        by_key[t.key].append(t.time)
    out = []
    for key, times in by_key.items():
        times.sort()
        best, first, j = 0, 0.0, 0
        for i, t0 in enumerate(times):
            while j < len(times) and times[j] - t0 <= window:
                j += 1
            if j - i > best:
                best, first = j - i, t0
        if best >= count:
            out.append(Chatter(key, first, best))
    return sorted(out, key=lambda c: (-c.count, c.key))


@frozen
class Interval:
    key: Key
    start: float
    end: float  # the window end if still active
    ended_by: Cause | None  # None: still active at the window end

    @property
    def duration(self) -> float:
        return self.end - self.start


def active_intervals(transitions: Sequence[Transition], until: float) -> list[Interval]:
    by_key: dict[Key, list[Transition]] = defaultdict(list)
    for t in sorted(transitions, key=lambda t: t.time):
        by_key[t.key].append(t)
    out = []
    for key, ts in by_key.items():
        start: float | None = None
        for t in ts:
            if start is None:
                if t.cause is Cause.ACTIVATE:
                    start = t.time
            elif t.to_state not in _ACTIVE:
                out.append(Interval(key, start, t.time, t.cause))
                start = None
        if start is not None:
            out.append(Interval(key, start, max(until, start), None))
    return out


def fleeting(
    transitions: Sequence[Transition], until: float, max_duration: float = FLEETING_MAX
) -> list[Interval]:
    """Activations cleared by the process (not shelved, not lost) within ``max_duration``."""
    return [
        i
        for i in active_intervals(transitions, until)
        if i.ended_by is Cause.CLEAR and i.duration < max_duration
    ]


def standing(
    transitions: Sequence[Transition], until: float, min_duration: float = STANDING_MIN
) -> list[Interval]:
    """Activations active for longer than ``min_duration`` (still active ones included)."""
    return [i for i in active_intervals(transitions, until) if i.duration > min_duration]


@frozen
class BadActor:
    key: Key
    activations: int
    share: float  # of all activations in the window


def bad_actors(transitions: Sequence[Transition], top: int = 10) -> list[BadActor]:
    counts = Counter(t.key for t in activations(transitions))
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [BadActor(k, n, n / total) for k, n in ranked]


def priority_distribution(transitions: Sequence[Transition]) -> dict[Priority, float]:
    """Share of annunciations per priority (EEMUA target about 80 % low, 15 % medium,
    5 % high); an empty window gives zeros."""
    counts = Counter(t.priority for t in annunciations(transitions) if t.priority is not None)
    total = sum(counts.values())
    return {p: (counts[p] / total if total else 0.0) for p in Priority}


@frozen
class Report:
    since: float
    until: float
    rate: Rate
    floods: list[Flood]
    chattering: list[Chatter]
    fleeting: list[Interval]
    standing: list[Interval]
    bad_actors: list[BadActor]
    priorities: dict[Priority, float]


def report(transitions: Iterable[Transition], since: float, until: float, top: int = 10) -> Report:
    """All KPIs over the transitions with ``since <= time < until``."""
    window = sorted((t for t in transitions if since <= t.time < until), key=lambda t: t.time)
    return Report(
        since=since,
        until=until,
        rate=alarm_rate(window, since, until),
        floods=floods(window),
        chattering=chattering(window),
        fleeting=fleeting(window, until),
        standing=standing(window, until),
        bad_actors=bad_actors(window, top),
        priorities=priority_distribution(window),
    )

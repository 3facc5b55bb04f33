"""Text for people: times, ages, durations (pure; the screens share them)."""

from __future__ import annotations

import datetime as dt
import re
import time

#: a shelf's end in a shelve transition's detail; a number in exponent form (``1.79e+09``)
#: has lost its precision and is not used
_UNTIL = re.compile(r"until (\d+(?:\.\d+)?)(?![\d.eE])")


def clock_time(t: float | None) -> str:
    """Local wall-clock time of a UNIX time, to the second ("-" when unknown)."""
    if t is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(t))


def date_time(t: float | str | None) -> str:
    """Local date and time of a UNIX time or an ISO 8601 text (the audit trail's)."""
    if isinstance(t, str):
        try:
            t = dt.datetime.fromisoformat(t).timestamp()
        except ValueError:
            return t
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def age(seconds: float | None) -> str:
    """A duration, short: 42s, 7m, 3.2h, 2.0d ("-" when unknown)."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def shelf_until(detail: str | None) -> float | None:
    """The end of a shelf from a shelve transition's detail (``role supervisor; until T``);
    None when it is not there in full precision."""
    if not detail:
        return None
    m = _UNTIL.search(detail)
    return float(m.group(1)) if m else None


def number(v: float) -> str:
    """A value for a table: four significant digits, big counts with thousands separators."""
    return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"

"""Alarm management after ISA-18.2 / IEC 62682: state model, per-point engine, KPIs.

Pure logic: time is passed in as float seconds; nothing here does I/O or awaits.
See docs/alarms.md.
"""

from floorctl.alarms.engine import (
    AlarmEngine,
    AlarmPoint,
    AlarmPointConfig,
    Cause,
    Priority,
    QuantityDefaults,
    Severity,
    Transition,
)
from floorctl.alarms.states import AlarmState, Event, InvalidTransition

__all__ = [
    "AlarmEngine",
    "AlarmPoint",
    "AlarmPointConfig",
    "AlarmState",
    "Cause",
    "Event",
    "InvalidTransition",
    "Priority",
    "QuantityDefaults",
    "Severity",
    "Transition",
]

"""What every device simulator shares with the scenario engine: a clock and a fault interface.

**Time.** ``SimClock`` runs simulated time: ``clock.now()`` is seconds since the start of the
simulation, ``speed`` times faster than real time (``floorctl simulate --speed 60``: an hour in
a minute). Signals and scenario timelines use simulated time. Protocol timing does not: devices
answer and publish at their configured real intervals, and timestamps in payloads are real UNIX
time (``clock.wall()``), so the daemon's stale detection and store-and-forward logic see a real
device.

**Faults.** A simulator that can misbehave implements ``Faultable``. The scenario engine calls
``start_fault(device, Fault)`` at the scripted time and ``end_fault(device, name)`` when its
duration is over. Generic fault names (a simulator supports those that make sense for its
protocol, and raises ``UnsupportedFault`` for the rest, so a scenario naming an impossible fault
fails before it starts, in ``check_fault``):

- ``excursion``: a field's value moves: ``params`` has ``field`` and ``to`` (a value) or ``by``
  (an offset), optionally ``ramp`` (seconds of simulated time to get there).
- ``silent``: the device stops answering (Modbus: no reply, so the client times out; MQTT: no
  publishes; a TCP device: connection accepted, nothing answered).
- ``exception``: Modbus only; ``params["code"]`` (default 4, server device failure).
- ``malformed``: MQTT or line protocols; the next messages are garbage (``params["payload"]``
  as the exact bytes, or a built-in malformed document).

Kind-specific faults (``laser``, ``flow``, ``service`` for a particle counter; ``door_open``;
``sash``; ``abort`` for an autoclave cycle; ``compressor`` for cold storage; ``backfill`` for a
store-and-forward logger, which goes offline for the fault's duration and then sends what it
buffered with the samples' own timestamps) are named by the simulators that support them and
documented in docs/devices.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from attrs import define, field, frozen


class UnsupportedFault(ValueError):
    """A simulator was asked for a fault its protocol cannot show."""


@frozen
class Fault:
    name: str
    params: Mapping[str, Any] = field(factory=dict)


@define
class SimClock:
    """Simulated seconds since start, ``speed`` x real time; real UNIX time for payloads."""

    speed: float = 1.0
    _t0: float = field(factory=time.monotonic)
    _wall0: float = field(factory=time.time)

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def wall(self) -> float:
        """Real UNIX time (timestamps in payloads; devices' clocks are real clocks)."""
        return time.time()

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds last in real time."""
        return simulated / self.speed


@runtime_checkable
class Faultable(Protocol):
    """A simulator whose devices can be made to misbehave on a scenario's timeline."""

    def device_ids(self) -> Iterable[str]: ...

    def check_fault(self, device_id: str, fault: Fault) -> None:
        """Raise UnsupportedFault (or ValueError naming the bad parameter) before the run."""

    def start_fault(self, device_id: str, fault: Fault) -> None: ...

    def end_fault(self, device_id: str, name: str) -> None: ...

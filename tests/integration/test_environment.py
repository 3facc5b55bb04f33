"""The environmental kinds over real sockets: the daemon (running_floor) against the
simulators of simulators/environment.py on a Modbus TCP port and a private mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Sequence

import pytest

from floorctl import hookimpl
from floorctl.decode import ByteOrder
from floorctl.limits import Quantity
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.plugins.environment import iso
from simulators.environment import EnvironmentModbusServer
from simulators.faults import Fault
from simulators.serve import Simulator, serve
from tests.helpers import free_port

from .floorkit import make_config, running_floor, wait_until

pytestmark = pytest.mark.integration

HEADER = """
[floor]
id = "env"

[[mqtt]]
name = "local"
port = "${PORT}"
client_id = "floorctl-env-${PORT}"

[[modbus]]
name = "bms"
port = "${MPORT}"
timeout = "300ms"
reconnect_max = "500ms"

[[room]]
id = "ante"
iso_class = 8
pressure = "positive"

[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
pressure_reference = "ante"

[[room]]
id = "hd-buffer"
iso_class = 7
pressure = "negative"
pressure_reference = "ante"

[[room]]
id = "hood-1"
iso_class = 5
within = "buffer"

"""

MODBUS_DEVICES = """
# a generic device first: the environmental simulator must still serve the connection
[[device]]
id = "rm-generic"
kind = "modbus"
via = "bms"
unit_id = 9
interval = "500ms"
[[device.fields]]
name = "x"
unit = "Pa"
register = "input"
address = 0
type = "FLOAT32"
byte_order = "CDAB"

[[device]]
id = "thp-buffer"
kind = "modbus_thp"
via = "bms"
unit_id = 1
room = "buffer"
interval = "200ms"

[[device]]
id = "thp-hd"
kind = "modbus_thp"
via = "bms"
unit_id = 2
room = "hd-buffer"
interval = "200ms"

[[device]]
id = "pc-hood"
kind = "particle_counter"
via = "bms"
unit_id = 3
room = "hood-1"
interval = "250ms"
expire_after = "5s"
[device.options]
sample_time = "1s"
"""

LOGGER = """
[[device]]
id = "logger"
kind = "mqtt_env"
via = "local"
room = "buffer"
interval = "200ms"
[device.options]
state_topic = "env/logger-1"
"""

FLOOR = HEADER + MODBUS_DEVICES + LOGGER


class EventLog:
    """Keeps every floor event (floorctl_on_event)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def floorctl_on_event(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: EventKind, source: str) -> list[Event]:
        return [e for e in self.events if e.kind is kind and e.source == source]


@contextlib.asynccontextmanager
async def simulated(
    text: str, *, speed: float = 1.0, **env: object
) -> AsyncIterator[list[Simulator]]:
    """Every simulator of the floor, as `floorctl simulate` builds them (serve())."""
    config, _, _ = make_config(text, **env)
    stop = asyncio.Event()
    sims: list[Simulator] = []
    ready = asyncio.Event()

    def started(running: Sequence[Simulator]) -> None:
        sims.extend(running)
        ready.set()

    task = asyncio.create_task(serve(config, stop=stop, started=started, speed=speed))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield sims
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def owner(sims: Sequence[Simulator], device_id: str):
    return next(s for s in sims if device_id in s.device_ids())  # type: ignore[attr-defined]


def last(seen: list[Reading], device: str, point: str) -> Reading | None:
    return next((r for r in reversed(seen) if r.device == device and r.point == point), None)


@pytest.mark.slow
async def test_good_readings_counter_records_and_kind_faults(mosquitto) -> None:
    mport = free_port()
    log = EventLog()
    env = {"PORT": mosquitto.port, "MPORT": mport}
    async with (
        simulated(FLOOR, speed=10.0, **env) as sims,
        running_floor(FLOOR, plugins=[log], **env) as (floor, seen),
    ):
        config = floor.config
        points = {(d.id, f.name) for d in config.devices for f in d.fields}

        def good() -> set[tuple[str, str]]:
            return {r.key for r in seen if r.quality is Quality.GOOD and not r.historical}

        await wait_until(lambda: good() >= points, timeout=10, what="every point good")
        assert {rt.state for rt in floor.devices.values()} == {"online"}
        units = {(d.id, f.name): (f.unit, f.quantity) for d in config.devices for f in d.fields}
        assert units[("thp-hd", "dp")] == ("Pa", Quantity.DIFFERENTIAL_PRESSURE)
        assert units[("pc-hood", "counts_0_5")] == ("counts/m³", Quantity.PARTICLES_0_5)
        assert units[("logger", "rh")] == ("%RH", Quantity.HUMIDITY)
        for r in seen:
            assert r.unit == units[r.key][0]
        hd = last(seen, "thp-hd", "dp")
        assert hd is not None and -7.5 < hd.value < 0  # a negative HD room
        t = last(seen, "thp-buffer", "t")
        assert t is not None and 17.0 < t.value < 20.0 and t.source_time is None
        logged = last(seen, "logger", "t")
        assert logged is not None and abs(logged.source_time - logged.receive_time) < 1.0

        # the counter: one record per sample, each taken once, timestamps from the counter
        await wait_until(
            lambda: len({r.source_time for r in seen if r.key == ("pc-hood", "raw_0_5")}) >= 3,
            timeout=8,
            what="three records",
        )
        raws = [r for r in seen if r.key == ("pc-hood", "raw_0_5")]
        times = [r.source_time for r in raws]
        assert len(times) == len(set(times)), "a record was counted twice"
        assert all(t == int(t) for t in times) and sorted(times) == times
        assert {round(b - a) for a, b in itertools.pairwise(times)} == {1}
        conc = {r.source_time: r.value for r in seen if r.key == ("pc-hood", "counts_0_5")}
        vols = {r.source_time: r.value for r in seen if r.key == ("pc-hood", "volume")}
        for r in raws:  # counts per m³ = raw counts / sample volume (1 CFM x 1 s = 0.472 L)
            assert vols[r.source_time] == pytest.approx(0.4719474432)
            assert conc[r.source_time] == pytest.approx(r.value / 0.0004719474432)

        # fault bits -> device-error with the fault named, then good again
        counter = owner(sims, "pc-hood")
        counter.start_fault("pc-hood", Fault("laser"))
        await wait_until(
            lambda: (
                (r := last(seen, "pc-hood", "counts_0_5")) is not None
                and r.quality is Quality.DEVICE_ERROR
            ),
            timeout=15,
            what="laser -> device-error",
        )
        assert last(seen, "pc-hood", "raw_5_0").detail == "laser alert (record status bit 0)"
        counter.end_fault("pc-hood", "laser")
        counter.start_fault("pc-hood", Fault("service"))
        await wait_until(
            lambda: "instrument service" in (last(seen, "pc-hood", "volume").detail or ""),
            timeout=15,
            what="service -> device-error",
        )
        assert "device error (status bit 3)" in last(seen, "pc-hood", "volume").detail
        counter.end_fault("pc-hood", "service")
        await wait_until(
            lambda: last(seen, "pc-hood", "counts_0_5").quality is Quality.GOOD,
            timeout=15,
            what="good again",
        )
        reported = " | ".join(e.detail for e in log.of(EventKind.DEVICE_ERROR, "pc-hood"))
        assert "laser alert" in reported and "instrument service" in reported

        # a door opens: the buffer room's cascade collapses, then recovers when it closes
        thp = owner(sims, "thp-buffer")
        thp.start_fault("thp-buffer", Fault("door_open", {"residual": 0.1}))
        await wait_until(
            lambda: last(seen, "thp-buffer", "dp").value < 3.0, timeout=15, what="dp dip"
        )
        thp.end_fault("thp-buffer", "door_open")
        await wait_until(
            lambda: last(seen, "thp-buffer", "dp").value > 13.0, timeout=8, what="recovery"
        )


async def test_thp_with_the_wrong_byte_order_never_goes_online(mosquitto) -> None:
    mport = free_port()
    log = EventLog()
    env = {"PORT": mosquitto.port, "MPORT": mport}
    config, _, _ = make_config(FLOOR, **env)
    modbus = [d for d in config.devices if d.via == "bms"]
    # a gateway in front of thp-buffer swaps the words: the floats go out ABCD
    sim = EnvironmentModbusServer(
        config.modbus[0], modbus, config=config, wire_byte_order={"thp-buffer": ByteOrder.ABCD}
    )
    await sim.start()
    try:
        async with running_floor(FLOOR, plugins=[log], **env) as (floor, seen):
            await wait_until(
                lambda: bool(log.of(EventKind.DEVICE_ERROR, "thp-buffer")),
                timeout=15,
                what="device-error event",
            )
            await wait_until(
                lambda: floor.devices["thp-hd"].state == "online", timeout=15, what="thp-hd"
            )
            await asyncio.sleep(1.5)  # the daemon retries (1 s, then 2 s backoff)
            rt = floor.devices["thp-buffer"]
            assert rt.state != "online"
            assert [r for r in seen if r.device == "thp-buffer" and r.quality is Quality.GOOD] == []
            message = rt.ctx.counters.last_error or ""
            assert message.startswith("RegisterCheckError: device 'thp-buffer': test register 7938")
            assert "misconfigured byte order" in message and 'byte_order = "ABCD"' in message
            assert "reads -2.72435e+23 as CDAB (words 0xC2F6 0xE666)" in message
            event = log.of(EventKind.DEVICE_ERROR, "thp-buffer")[0]
            assert event.detail in message
            assert last(seen, "thp-hd", "t").quality is Quality.GOOD  # its neighbour is fine
    finally:
        await sim.stop()


async def test_mqtt_env_backfill_gives_historical_readings_and_one_gap_event(mosquitto) -> None:
    log = EventLog()
    env = {"PORT": mosquitto.port, "MPORT": free_port()}
    text = HEADER + LOGGER
    async with (
        simulated(text, **env) as sims,
        running_floor(text, plugins=[log], **env) as (_, seen),
    ):
        await wait_until(
            lambda: sum(r.key == ("logger", "t") for r in seen) >= 5, what="live samples"
        )
        publisher = owner(sims, "logger")
        publisher.start_fault("logger", Fault("backfill"))
        await asyncio.sleep(2.0)  # the logger is offline, sampling into its buffer
        publisher.end_fault("logger", "backfill")
        await wait_until(
            lambda: bool(log.of(EventKind.DATA_GAP, "logger")), timeout=15, what="data-gap"
        )
        # the whole backlog arrives (slowly on a loaded machine), then no second event
        await wait_until(
            lambda: sum(r.key == ("logger", "t") and r.historical for r in seen) >= 5,
            timeout=15,
            what="the backlog",
        )
        await asyncio.sleep(0.8)
        (gap,) = log.of(EventKind.DATA_GAP, "logger")

        temps = [r for r in seen if r.key == ("logger", "t")]
        late = [r for r in temps if r.historical]
        assert 5 <= len(late) <= 11  # 2 s at 200 ms, less the newest (still within 400 ms)
        assert all(r.quality is Quality.GOOD for r in late)
        first_late, last_late = late[0].source_time, late[-1].source_time
        live = sorted(r.source_time for r in temps if not r.historical)
        start = max(t for t in live if t < first_late)
        end = min(t for t in live if t > last_late)
        assert end - start > 1.2  # the held samples, less the newest ones (live by then)
        match = re.fullmatch(
            r"data gap (\S+) to (\S+) \([\d.]+ s\): (\d+) buffered sample\(s\) arrived late "
            r"\((\S+) \.\. (\S+)\), (\d+) expected at 0.2 s",
            gap.detail,
        )
        assert match is not None, gap.detail
        assert match.groups()[:5] == (
            iso(start),
            iso(end),
            str(len(late)),
            iso(first_late),
            iso(last_late),
        )
        assert int(match.group(6)) >= len(late)


async def test_overlapping_counter_excursions_end_one_at_a_time() -> None:
    """The scenario engine ends one field's excursion while another goes on."""
    config, _, _ = make_config(FLOOR, PORT=1883, MPORT=free_port())
    modbus = [d for d in config.devices if d.via == "bms"]
    sim = EnvironmentModbusServer(config.modbus[0], modbus, config=config)
    sim.start_fault("pc-hood", Fault("excursion", {"field": "counts_0_5", "to": 9000.0}))
    sim.start_fault("pc-hood", Fault("excursion", {"field": "counts_5_0", "to": 40.0}))
    assert set(sim.counters["pc-hood"].excursions) == {"counts_0_5", "counts_5_0"}
    sim.end_excursion("pc-hood", "counts_0_5")
    assert set(sim.counters["pc-hood"].excursions) == {"counts_5_0"}
    sim.end_fault("pc-hood", "excursion")
    assert sim.counters["pc-hood"].excursions == {}

"""Equipment kinds against their simulators over real sockets: the daemon reads a Modbus TCP
server (bsc, laf, cold storage, door) and a mosquitto broker (autoclaves, a freezer), and
every fault shows up as the quality or event an operator would see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from floorctl.limits import Quantity
from floorctl.model import Quality, Reading
from simulators.equipment import EquipmentModbusSim, EquipmentMqttSim
from simulators.faults import Fault, SimClock
from simulators.modbus_device import ModbusSimServer
from simulators.scenario import Scenario, ScenarioError
from simulators.serve import build_simulators
from tests.helpers import free_port

from .floorkit import Watcher, make_config, running_floor, wait_until

pytestmark = pytest.mark.integration

MODBUS_FLOOR = """
[floor]
id = "eqmb"

[[mqtt]]
name = "local"
port = "${PORT}"

[[modbus]]
name = "bms"
port = "${MPORT}"
timeout = "200ms"
reconnect_max = "300ms"

[[room]]
id = "hd-buffer"
iso_class = 7
pressure = "negative"

[[room]]
id = "bsc-1"
iso_class = 5
within = "hd-buffer"

[[device]]
id = "bsc-1"
kind = "bsc"
via = "bms"
unit_id = 21
room = "bsc-1"
interval = "100ms"

[[device]]
id = "laf-1"
kind = "bsc"
via = "bms"
unit_id = 22
interval = "100ms"
[device.options]
type = "laf"
encoding = "int16"
register = "holding"

[[device]]
id = "fridge-1"
kind = "cold_storage"
via = "bms"
unit_id = 23
interval = "100ms"
[device.options]
type = "refrigerator"
encoding = "int16"

[[device]]
id = "door-ante"
kind = "door"
via = "bms"
unit_id = 24
interval = "100ms"
[device.options]
open_input = 3
interlock_input = 4
invert = true
"""


def last(seen: list[Reading], device: str, point: str) -> Reading | None:
    return next((r for r in reversed(seen) if (r.device, r.point) == (device, point)), None)


def has(seen: list[Reading], device: str, point: str, test: Callable[[Reading], bool]) -> bool:
    r = last(seen, device, point)
    return r is not None and test(r)


async def test_modbus_equipment_readings_and_faults(mosquitto) -> None:
    mport = free_port()
    async with running_floor(MODBUS_FLOOR, PORT=mosquitto.port, MPORT=mport) as (floor, seen):
        config = floor.config
        sim = EquipmentModbusSim(config.modbus[0], config.devices, clock=SimClock(600.0))
        await sim.start()
        try:
            await wait_until(
                lambda: all(rt.state == "online" for rt in floor.devices.values()), what="online"
            )
            await asyncio.sleep(0.3)
            points = {(r.device, r.point): r for r in seen}
            assert set(points) == {(d.id, f.name) for d in config.devices for f in d.fields}
            assert {r.quality for r in points.values()} == {Quality.GOOD}
            down = points[("bsc-1", "downflow")]
            assert down.unit == "m/s" and 0.30 <= down.value <= 0.45
            assert 0.30 <= points[("bsc-1", "inflow")].value <= 0.60
            assert 0.35 <= points[("laf-1", "downflow")].value <= 0.45  # INT16 cm/s, scaled
            assert points[("bsc-1", "fan_on")].value is True
            temp = points[("fridge-1", "temperature")]
            assert temp.unit == "°C" and 2.5 <= temp.value <= 8.0
            assert isinstance(points[("door-ante", "open")].value, bool)
            quantities = {(d.id, f.name): f.quantity for d in config.devices for f in d.fields}
            assert quantities[("bsc-1", "inflow")] is Quantity.INFLOW_VELOCITY
            assert quantities[("fridge-1", "temperature")] is Quantity.REFRIGERATOR_TEMPERATURE

            # sash raised: alarm bit, inflow below 0.40 m/s, the cabinet's airflow alarm
            sim.start_fault("bsc-1", Fault("sash"))
            await wait_until(
                lambda: has(seen, "bsc-1", "sash_alarm", lambda r: r.value is True), what="sash"
            )
            await wait_until(
                lambda: has(seen, "bsc-1", "inflow", lambda r: r.value < 0.40), what="inflow"
            )
            await wait_until(  # a bit: the poll may read the bits before the values moved
                lambda: has(seen, "bsc-1", "airflow_alarm", lambda r: r.value is True),
                what="airflow alarm",
            )
            sim.end_fault("bsc-1", "sash")

            # door left open (the contact is inverted on the wire: the driver undoes it)
            sim.start_fault("door-ante", Fault("door_open"))
            await wait_until(
                lambda: has(seen, "door-ante", "open", lambda r: r.value is True), what="open"
            )
            t_open = time.time()
            await asyncio.sleep(0.5)
            assert all(
                r.value is True
                for r in seen
                if (r.device, r.point) == ("door-ante", "open") and r.receive_time > t_open + 0.2
            )
            sim.end_fault("door-ante", "door_open")

            # compressor fails: it stops and the temperature climbs
            before = last(seen, "fridge-1", "temperature").value  # type: ignore[union-attr]
            sim.start_fault("fridge-1", Fault("compressor"))
            await wait_until(
                lambda: (
                    has(seen, "fridge-1", "compressor", lambda r: r.value is False)
                    and has(seen, "fridge-1", "temperature", lambda r: r.value > before + 1.5)
                ),
                what="warming",
            )

            # a Modbus exception from one cabinet: device-error, the hood beside it is fine
            sim.start_fault("bsc-1", Fault("exception", {"code": 4}))
            await wait_until(
                lambda: has(seen, "bsc-1", "downflow", lambda r: r.quality is Quality.DEVICE_ERROR),
                what="device-error",
            )
            assert "Modbus exception 4" in (last(seen, "bsc-1", "downflow").detail or "")  # type: ignore[union-attr]
            assert has(seen, "laf-1", "downflow", lambda r: r.quality is Quality.GOOD)
            sim.end_fault("bsc-1", "exception")
            await wait_until(
                lambda: has(seen, "bsc-1", "downflow", lambda r: r.quality is Quality.GOOD),
                what="recovered",
            )
        finally:
            await sim.stop()


async def test_silent_bsc_goes_stale_and_comes_back(mosquitto) -> None:
    mport = free_port()
    async with (
        Watcher(mosquitto.port, "floorctl/eqmb/events") as w,
        running_floor(MODBUS_FLOOR, PORT=mosquitto.port, MPORT=mport) as (floor, seen),
    ):
        devices = [d for d in floor.config.devices if d.id in ("bsc-1", "laf-1")]
        sim = EquipmentModbusSim(floor.config.modbus[0], devices, clock=SimClock(60.0))
        await sim.start()
        try:
            await wait_until(lambda: floor.devices["bsc-1"].state == "online", what="online")
            sim.start_fault("bsc-1", Fault("silent"))
            since = time.time()
            await w.wait_for(
                lambda m: any(
                    b["kind"] == "comm-loss" and b["source"] == "bsc-1" and b["time"] > since
                    for _, b, _ in m
                )
            )
            assert has(seen, "bsc-1", "downflow", lambda r: r.quality is Quality.STALE)
            sim.end_fault("bsc-1", "silent")
            await w.wait_for(
                lambda m: any(
                    b["kind"] == "comm-restored" and b["source"] == "bsc-1" and b["time"] > since
                    for _, b, _ in m
                )
            )
            await wait_until(
                lambda: has(seen, "bsc-1", "downflow", lambda r: r.quality is Quality.GOOD),
                what="good again",
            )
        finally:
            await sim.stop()


MQTT_FLOOR = """
[floor]
id = "eqmq"

[[mqtt]]
name = "local"
port = "${PORT}"

[[device]]
id = "ac-1"
kind = "autoclave"
via = "local"
interval = "50ms"
expire_after = "2s"

[[device]]
id = "ac-2"
kind = "autoclave"
via = "local"
interval = "50ms"
expire_after = "2s"
[device.options]
state_topic = "site/sterile/ac-2/state"
pressure_unit = "bar"

[[device]]
id = "freezer-1"
kind = "cold_storage"
via = "local"
interval = "100ms"
[device.options]
type = "freezer"
"""


def _phases(seen: list[Reading], device: str) -> list[str]:
    out: list[str] = []
    for r in seen:
        if (r.device, r.point) == (device, "phase") and r.value is not None:
            if not out or out[-1] != r.value:
                out.append(str(r.value))
    return out


async def test_autoclave_cycles_abort_and_mqtt_faults(mosquitto) -> None:
    async with (
        Watcher(mosquitto.port, "floorctl/eqmq/events") as w,
        running_floor(MQTT_FLOOR, PORT=mosquitto.port) as (floor, seen),
    ):
        sim = EquipmentMqttSim(floor.config.mqtt[0], floor.config.devices, clock=SimClock(1200.0))
        await sim.start()
        try:
            # ac-2's first cycle is aborted once it is in exposure
            await wait_until(
                lambda: has(seen, "ac-2", "phase", lambda r: r.value == "exposure"), what="exp"
            )
            sim.start_fault("ac-2", Fault("abort"))
            await wait_until(
                lambda: has(seen, "ac-2", "phase", lambda r: r.value == "aborted"), what="abort"
            )
            phase = last(seen, "ac-2", "phase")
            result = last(seen, "ac-2", "result")
            assert phase is not None and result is not None
            assert phase.quality is Quality.DEVICE_ERROR
            assert (result.quality, result.value) == (Quality.DEVICE_ERROR, "fail")
            cycle = last(seen, "ac-2", "cycle_id")
            assert cycle is not None and phase.detail == f"cycle {cycle.value} aborted"
            await w.wait_for(
                lambda m: any(
                    b["kind"] == "device-error"
                    and b["source"] == "ac-2"
                    and b["detail"].startswith(f"cycle {cycle.value} aborted, result fail")
                    for _, b, _ in m
                )
            )
            assert last(seen, "ac-2", "pressure").unit == "bar"  # type: ignore[union-attr]

            # ac-1 runs its first cycle to the end: pass, F0 15..20 min, start < end
            await wait_until(
                lambda: has(seen, "ac-1", "result", lambda r: r.value == "pass"),
                timeout=10,
                what="a passed cycle",
            )
            assert _phases(seen, "ac-1")[:6] == [
                "idle", "conditioning", "exposure", "exhaust", "drying", "complete",
            ]  # fmt: skip
            f0 = last(seen, "ac-1", "f0")
            start, end = last(seen, "ac-1", "cycle_start"), last(seen, "ac-1", "cycle_end")
            assert f0 is not None and f0.unit == "min" and 15.0 <= f0.value <= 20.0
            assert start is not None and end is not None and start.value < end.value
            temps = [r.value for r in seen if (r.device, r.point) == ("ac-1", "temperature")]
            assert max(temps) == pytest.approx(121.6, abs=0.6)  # the exposure plateau
            assert not any(
                b["source"] == "ac-1" and b["kind"] == "device-error"
                for b in w.on("floorctl/eqmq/events")
            )
            (record,) = floor.devices["ac-1"].driver.cycles  # type: ignore[union-attr]
            assert (record.result, record.phase) == ("pass", "complete")
            # every finished cycle is an event, passed or not
            await w.wait_for(
                lambda m: any(
                    b["kind"] == "cycle" and b["source"] == "ac-1" and "result pass" in b["detail"]
                    for _, b, _ in m
                )
            )
            assert any(
                b["kind"] == "cycle" and b["source"] == "ac-2" and "aborted" in b["detail"]
                for b in w.on("floorctl/eqmq/events")
            )

            # the freezer: in range; garbage then silence
            temp = last(seen, "freezer-1", "temperature")
            assert temp is not None and -22.0 <= temp.value <= -17.0
            sim.start_fault("freezer-1", Fault("malformed"))
            await wait_until(
                lambda: has(seen, "freezer-1", "temperature", lambda r: r.quality is Quality.BAD),
                what="bad",
            )
            sim.end_fault("freezer-1", "malformed")
            sim.start_fault("freezer-1", Fault("silent"))
            since = time.time()
            await w.wait_for(
                lambda m: any(
                    b["kind"] == "comm-loss" and b["source"] == "freezer-1" and b["time"] > since
                    for _, b, _ in m
                )
            )
            assert has(seen, "freezer-1", "temperature", lambda r: r.quality is Quality.STALE)
        finally:
            await sim.stop()


# --- serving a devices.toml: groups, factories and scenario checks ---------------------------

SNIPPET = """
[[mqtt]]
name = "local"
port = "${PORT}"

[[modbus]]
name = "bms"
port = "${MPORT}"

[[device]]
id = "bsc-1"
kind = "bsc"
via = "bms"
unit_id = 21

[[device]]
id = "rm-1"
kind = "modbus"
via = "bms"
unit_id = 1
[[device.fields]]
name = "dp"
unit = "Pa"
register = "input"
address = 0
type = "FLOAT32"

[[device]]
id = "ac-1"
kind = "autoclave"
via = "local"

[[device]]
id = "fridge-1"
kind = "cold_storage"
via = "local"
[device.options]
type = "refrigerator"
"""


def test_serve_builds_equipment_simulators_and_scenarios_check_their_faults() -> None:
    config, _, _ = make_config(SNIPPET, PORT=free_port(), MPORT=free_port())
    sims = build_simulators(config)
    by_type = {type(s).__name__: s for s in sims}
    assert set(by_type) == {"EquipmentModbusSim", "EquipmentMqttSim"}
    modbus = by_type["EquipmentModbusSim"]
    assert isinstance(modbus, EquipmentModbusSim)
    assert isinstance(modbus.server, ModbusSimServer)
    assert sorted(modbus.device_ids()) == ["bsc-1", "rm-1"]  # the generic device too
    mqtt_ids = sorted(i for s in sims if isinstance(s, EquipmentMqttSim) for i in s.device_ids())
    assert mqtt_ids == ["ac-1", "fridge-1"]
    good = Scenario.parse(
        '[scenario]\nduration = "10m"\n'
        '[[step]]\nat = "1m"\ndevice = "bsc-1"\nfault = "sash"\nfor = "2m"\n'
        '[[step]]\nat = "1m"\ndevice = "ac-1"\nfault = "abort"\n'
        '[[step]]\nat = "1m"\ndevice = "fridge-1"\nfault = "compressor"\n'
        '[[step]]\nat = "1m"\ndevice = "rm-1"\nfault = "exception"\n'
        '[[step]]\nat = "2m"\ndevice = "bsc-1"\nfault = "excursion"\nfield = "downflow"\nto = 0.2'
    )
    good.check(sims, config)
    bad = Scenario.parse(
        '[scenario]\nduration = "10m"\n'
        '[[step]]\nat = "1m"\ndevice = "ac-1"\nfault = "exception"\n'
        '[[step]]\nat = "1m"\ndevice = "bsc-1"\nfault = "abort"\n'
        '[[step]]\nat = "1m"\ndevice = "bsc-1"\nfault = "excursion"\nfield = "exhaust"\nto = 1.0'
    )
    with pytest.raises(ScenarioError) as err:
        bad.check(sims, config)
    text = str(err.value)
    assert "device 'ac-1' (autoclave) cannot show 'exception'" in text
    assert (
        "device 'bsc-1' (bsc) cannot show 'abort' (it can: excursion, silent, exception, sash)"
        in text
    )
    assert "is not a field of this device" in text

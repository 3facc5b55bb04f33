"""Balances: the MT-SICS reply parser (from the protocol description, docs/guide §5.1), the
quality rules, the point maps and options, the mqtt_balance payload rules and the simulator's
weighing model."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floorctl.config import ConfigError, parse_config
from floorctl.driver import CommandError, DeviceContext
from floorctl.model import Event, EventKind, Quality
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.plugins.balances import (
    LineSplitter,
    MqttBalanceDriver,
    SicsParseError,
    SicsReply,
    SicsStatus,
    Weighing,
    parse_reply,
    weighing_from_reply,
    weighing_readings,
)
from simulators.balances import (
    MALFORMED_LINE,
    BalanceModel,
    MqttBalancePublisher,
    MtSicsSimulator,
    SeededLoads,
    SignalLoads,
    serial_number,
)
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.serve import SimRequest, build_simulators
from simulators.signals import Excursion, FaultParamError, Signal, Step, parse_all

KINDS = collect_kinds(get_plugin_manager(autoload=False))

# --- the parser, on lines written from the protocol description -----------------------------


@pytest.mark.parametrize(
    ("line", "command", "status", "value", "unit"),
    [
        (b"S S      100.00 g\r\n", "S", SicsStatus.STABLE, 100.0, "g"),
        (b"S D      100.02 g\r\n", "S", SicsStatus.DYNAMIC, 100.02, "g"),
        (b"S S     -12.34 g\r\n", "S", SicsStatus.STABLE, -12.34, "g"),
        (b"S S -     12.34 g\r\n", "S", SicsStatus.STABLE, -12.34, "g"),  # sign apart
        (b"S S +     12.34 g\r\n", "S", SicsStatus.STABLE, 12.34, "g"),
        (b"S S 100.00 g\r\n", "S", SicsStatus.STABLE, 100.0, "g"),  # single spaces
        (b"S  S   100.00   g\r\n", "S", SicsStatus.STABLE, 100.0, "g"),  # extra spaces
        (b"S S     0.0512 mg\r\n", "S", SicsStatus.STABLE, 0.0512, "mg"),
        (b"S D     1.2345 kg\r\n", "S", SicsStatus.DYNAMIC, 1.2345, "kg"),
        (b"S S      62.50 ct\r\n", "S", SicsStatus.STABLE, 62.5, "ct"),
        (b"S S          3 lb\r\n", "S", SicsStatus.STABLE, 3.0, "lb"),
        (b"S S       .5 g\r\n", "S", SicsStatus.STABLE, 0.5, "g"),
        (b"S S      100.00 g", "S", SicsStatus.STABLE, 100.0, "g"),  # no CR LF
        (b"S S      100.00 g\n", "S", SicsStatus.STABLE, 100.0, "g"),  # LF only
        (b"S S      100.00 g\r", "S", SicsStatus.STABLE, 100.0, "g"),  # CR only
        ("S S      100.00 g\r\n", "S", SicsStatus.STABLE, 100.0, "g"),  # already text
        (b"S I\r\n", "S", SicsStatus.NOT_EXECUTABLE, None, None),
        (b"S +\r\n", "S", SicsStatus.OVERLOAD, None, None),
        (b"S -\r\n", "S", SicsStatus.UNDERLOAD, None, None),
        (b"S L\r\n", "S", SicsStatus.LOGICAL, None, None),
        (b"T S      12.34 g\r\n", "T", SicsStatus.STABLE, 12.34, "g"),
        (b"T I\r\n", "T", SicsStatus.NOT_EXECUTABLE, None, None),
        (b"T +\r\n", "T", SicsStatus.OVERLOAD, None, None),
        (b"T -\r\n", "T", SicsStatus.UNDERLOAD, None, None),
        (b"TA A       0.00 g\r\n", "TA", SicsStatus.DONE, 0.0, "g"),
        (b"Z A\r\n", "Z", SicsStatus.DONE, None, None),
        (b"Z I\r\n", "Z", SicsStatus.NOT_EXECUTABLE, None, None),
        (b"Z +\r\n", "Z", SicsStatus.OVERLOAD, None, None),
        (b"Z -\r\n", "Z", SicsStatus.UNDERLOAD, None, None),
        (b"ZI D\r\n", "ZI", SicsStatus.DYNAMIC, None, None),  # zeroed while dynamic
        (b"ZI S\r\n", "ZI", SicsStatus.STABLE, None, None),
        (b"C B\r\n", "C", SicsStatus.MORE, None, None),
        (b"C A\r\n", "C", SicsStatus.DONE, None, None),
        (b"I15 A 123014\r\n", "I15", SicsStatus.DONE, 123014.0, None),
        (b"DAT A 01 10 2021\r\n", "DAT", SicsStatus.DONE, None, None),
    ],
)
def test_replies(line, command, status, value, unit) -> None:
    r = parse_reply(line)
    assert (r.command, r.status, r.value, r.unit) == (command, status, value, unit)
    assert r.general_error is None


@pytest.mark.parametrize(
    ("line", "meaning"),
    [
        (b"ES\r\n", "syntax error"),
        (b"ET\r\n", "transmission error"),
        (b"EL\r\n", "logical error"),
        (b"EL", "logical error"),
        (b"  ES  \r\n", "syntax error"),
    ],
)
def test_general_errors(line, meaning) -> None:
    r = parse_reply(line)
    assert r.status is None and r.general_error == line.strip().decode()
    assert r.describe().startswith(meaning)
    # a general error answers whatever was asked
    assert r.answers("SI") and r.answers("T") and r.answers("I4")


def test_serial_number_in_quotes() -> None:
    r = parse_reply(b'I4 A "B123456789"\r\n')
    assert (r.command, r.status, r.text) == ("I4", SicsStatus.DONE, "B123456789")
    assert r.answers("I4") and r.answers("@")  # @ is answered with an I4 line
    assert parse_reply(b'I4 A "0123456789"').text == "0123456789"  # stays a string
    i2 = parse_reply(b'I2 A "WXS205SDU WXA-Bridge 220.00900 g"\r\n')
    assert i2.text == "WXS205SDU WXA-Bridge 220.00900 g" and i2.value is None


def test_hardware_error_in_the_weight_field() -> None:
    r = parse_reply(b"S S    Error 15t\r\n")
    assert r.weight_error == "15t" and r.value is None
    assert r.describe() == "adjustment needed, from terminal (Error 15t)"
    assert parse_reply(b"S S Error 10b").describe() == "EEPROM error, from electronics (Error 10b)"
    assert parse_reply(b"S S Error 77").describe() == "hardware error 77 (Error 77)"


def test_which_command_a_reply_answers() -> None:
    weight = parse_reply(b"S S 1.00 g")
    assert weight.answers("SI") and weight.answers("S") and not weight.answers("T")
    assert parse_reply(b"T S 1.00 g").answers("T") and not parse_reply(b"T S 1.00 g").answers("S")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\r\n",
        b"   ",
        b"S",  # no status
        b"S X 1.00 g",  # unknown status
        b"S S",  # stable without a weight
        b"S D\r\n",
        b"S S abc g",
        b"S S 1.2.3 g",
        b"S S 1,5 g",  # decimal comma
        b"S S 100.00 g 7",  # a third datum
        b"S S 100.00 9g",  # not a unit
        b"s s 100.00 g",  # lower case
        b"1 S 100.00 g",
        b"ES 12",
        b'I4 A "B1234',  # unbalanced quote
        b"S S 100.00 g\x00",
        b"\xfeS?S 12,,3 \x00g",
        b"S S \xb5g",  # not ASCII
        b"S S " + b"1" * 300 + b" g",  # overlong
        MALFORMED_LINE,
    ],
)
def test_garbage_is_refused(line) -> None:
    with pytest.raises(SicsParseError):
        parse_reply(line)


@given(st.binary(max_size=80))
def test_parser_never_fails_otherwise(data: bytes) -> None:
    try:
        r = parse_reply(data)
    except SicsParseError:
        return
    assert isinstance(r, SicsReply)
    if r.status in (SicsStatus.STABLE, SicsStatus.DYNAMIC):
        assert r.value is not None or r.weight_error is not None


def test_line_splitter() -> None:
    s = LineSplitter()
    assert s.feed(b"S S 1.00 g\r") == [b"S S 1.00 g"]
    assert s.feed(b"\nS D 2.00") == []  # the LF of the CR LF, then half a line
    assert s.feed(b" g\r\nZ A\nT I\r\r\n") == [b"S D 2.00 g", b"Z A", b"T I"]
    long = LineSplitter(limit=16)
    assert long.feed(b"x" * 20) == [b"x" * 20]  # cut, returned for the parser to refuse
    assert long.feed(b"S I\r\n") == [b"S I"]


# --- quality rules --------------------------------------------------------------------------


def weigh(line: bytes, unit: str | None = "g") -> Weighing:
    return weighing_from_reply(parse_reply(line), unit)


def test_stable_weight_is_good() -> None:
    assert weigh(b"S S      100.00 g") == Weighing(100.0, "g", True, Quality.GOOD)
    assert weigh(b"S S     -12.34 g").value == -12.34


def test_dynamic_weight_is_uncertain_with_its_value() -> None:
    w = weigh(b"S D      99.87 g")
    assert (w.value, w.stable, w.quality, w.detail) == (99.87, False, Quality.UNCERTAIN, "dynamic")


def test_no_stable_weight_is_bad_and_never_zero() -> None:
    w = weigh(b"S I")
    assert w.quality is Quality.BAD and w.value is None
    assert w.detail is not None and w.detail.startswith("no stable weight")


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (b"S +", "overload"),
        (b"S -", "underload"),
        (b"ES", "syntax error"),
        (b"ET", "transmission error"),
        (b"EL", "logical error"),
        (b"S S Error 15t", "adjustment needed"),
        (b"S L", "logical error"),
    ],
)
def test_what_the_balance_reports_is_a_device_error(line, detail) -> None:
    w = weigh(line)
    assert w.quality is Quality.DEVICE_ERROR and w.value is None
    assert w.detail is not None and w.detail.startswith(detail)


def test_units() -> None:
    w = weigh(b"S S 100.0 mg")  # the point is in g: a real value, not fit for a record
    assert (w.value, w.unit, w.quality) == (100.0, "mg", Quality.UNCERTAIN)
    assert w.detail == "balance reports mg, the point is in g"
    assert weigh(b"S S 1.5 kg", "kg").quality is Quality.GOOD
    assert weigh(b"S S 1.5 kg", None).quality is Quality.GOOD  # no expectation
    no_unit = weigh(b"S S 100.00")
    assert no_unit.quality is Quality.BAD and no_unit.value is None


def test_readings_of_a_weighing() -> None:
    config = parse_config(MT_SICS.format(fields=FIELDS_PRECISION).encode(), KINDS, env={})
    fields = {f.name: f for f in config.device("bal-1").fields}
    weight, stable = weighing_readings("bal-1", fields, weigh(b"S D 12.3456 g"), 5.0)
    assert (weight.value, weight.quality, weight.unit, weight.receive_time) == (
        12.35,
        Quality.UNCERTAIN,
        "g",
        5.0,
    )
    assert (stable.value, stable.quality) == (False, Quality.GOOD)
    weight, stable = weighing_readings("bal-1", fields, weigh(b"S I"), 5.0)
    assert weight.value is None and stable.value is None
    assert stable.quality is Quality.BAD and weight.quality is Quality.BAD


# --- the mt_sics kind -----------------------------------------------------------------------

MT_SICS = """
[[mqtt]]
name = "b"

[[device]]
id = "bal-1"
kind = "mt_sics"
interval = "1s"

[device.options]
host = "127.0.0.1"
port = 4305
{fields}
"""

FIELDS_PRECISION = """
[[device.fields]]
name = "weight"
precision = 2

[[device.fields]]
name = "stable"
"""


def test_mt_sics_point_map() -> None:
    config = parse_config(MT_SICS.format(fields="").encode(), KINDS, env={})
    d = config.device("bal-1")
    assert [(f.name, f.unit) for f in d.fields] == [
        ("weight", "g"),
        ("stable", None),
        ("tare", "g"),
        ("serial", None),
    ]
    options = config.device_options["bal-1"]
    assert (options.host, options.port, options.weigh_command) == ("127.0.0.1", 4305, "SI")
    kg = parse_config(
        MT_SICS.format(fields='[[device.fields]]\nname = "weight"\nunit = "kg"').encode(),
        KINDS,
        env={},
    )
    assert [(f.name, f.unit) for f in kg.device("bal-1").fields] == [("weight", "kg")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('host = "h"', "device[bal-1].options.port: required key is missing"),
        ('host = "h"\nport = 4305\nweigh_command = "SIR"', 'must be "SI" (immediate) or "S"'),
        ('host = "h"\nport = 4305\nstable_timeout = "20s"', "shorter than 15s"),
        ('host = "h"\nport = 4305\nline_timeout = "0s"', "line_timeout: must be longer"),
        ('host = ""\nport = 4305', "options.host: must not be empty"),
        ('host = "h"\nport = 70000', "port must be 1..65535"),
        ('host = "h"\nport = 4305\nbaud = 9600', "options.baud: unknown key"),
    ],
)
def test_mt_sics_options_are_checked(options, message) -> None:
    text = '[[mqtt]]\nname = "b"\n[[device]]\nid = "bal-1"\nkind = "mt_sics"\n'
    text += f"[device.options]\n{options}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text.encode(), KINDS, env={})
    assert message in str(exc.value)


def test_mt_sics_opens_its_own_socket() -> None:
    text = MT_SICS.format(fields="").replace('kind = "mt_sics"', 'kind = "mt_sics"\nvia = "b"')
    with pytest.raises(ConfigError, match="opens its own connection; remove via"):
        parse_config(text.encode(), KINDS, env={})


# --- the mqtt_balance kind ------------------------------------------------------------------

MQTT_BALANCE = """
[[mqtt]]
name = "b"

[[device]]
id = "bal-2"
kind = "mqtt_balance"
via = "b"

[device.options]
state_topic = "gw/bal-2/state"
{options}
"""


def mqtt_driver(options: str = "") -> tuple[MqttBalanceDriver, list[Event]]:
    config = parse_config(MQTT_BALANCE.format(options=options).encode(), KINDS, env={})
    events: list[Event] = []
    ctx = DeviceContext(
        config.device("bal-2"), config.device_options["bal-2"], None, emit_event=events.append
    )
    return MqttBalanceDriver(ctx), events


def parse(driver: MqttBalanceDriver, doc: object) -> dict[str, tuple]:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return {
        r.point: (r.value, r.quality, r.unit, r.detail)
        for r in driver.parse("gw/bal-2/state", payload, 1.0)
    }


STABLE = {"weight": 12.5, "unit": "g", "stable": True, "serial": "B0001"}


def test_mqtt_balance_stable_weight() -> None:
    driver, _ = mqtt_driver()
    assert parse(driver, STABLE) == {
        "weight": (12.5, Quality.GOOD, "g", None),
        "stable": (True, Quality.GOOD, None, None),
        "serial": ("B0001", Quality.GOOD, None, None),
    }
    assert driver.serial == "B0001" and driver.commands == {}


@pytest.mark.parametrize(
    ("change", "quality", "detail"),
    [
        ({"stable": False}, Quality.UNCERTAIN, "dynamic"),
        ({"stable": None}, Quality.UNCERTAIN, "stability flag None unreadable"),
        ({"stable": "S"}, Quality.UNCERTAIN, "stability flag 'S' unreadable"),
        ({"unit": "mg"}, Quality.UNCERTAIN, "balance reports mg, the point is in g"),
        ({"weight": None}, Quality.BAD, "no weight (null)"),
        ({"weight": "12.5"}, Quality.BAD, "weight is not a number: '12.5'"),
        ({"weight": True}, Quality.BAD, "weight is not a number: True"),
        ({"unit": None}, Quality.BAD, "weight without a unit"),
        ({"error": "overload"}, Quality.DEVICE_ERROR, "balance error: overload"),
        ({"error": None}, Quality.GOOD, None),
    ],
)
def test_mqtt_balance_quality_rules(change, quality, detail) -> None:
    driver, _ = mqtt_driver()
    weight = parse(driver, {**STABLE, **change})["weight"]
    assert weight[1:2] + weight[3:] == (quality, detail)
    if quality in (Quality.BAD, Quality.DEVICE_ERROR):
        assert weight[0] is None


def test_mqtt_balance_missing_values() -> None:
    driver, _ = mqtt_driver()
    no_weight = parse(driver, {"unit": "g", "stable": True})
    assert no_weight["weight"][:2] == (None, Quality.BAD)
    no_flag = parse(driver, {"weight": 1.0, "unit": "g"})
    assert no_flag["weight"][1:] == (Quality.UNCERTAIN, "g", "no stability flag")
    assert no_flag["stable"][:2] == (None, Quality.BAD)
    assert no_flag["serial"] == (None, Quality.BAD, None, "no serial number in the payload")
    nan = parse(driver, b'{"weight": NaN, "unit": "g", "stable": true}')
    assert nan["weight"] == (None, Quality.BAD, "g", "weight is NaN")
    with pytest.raises(ValueError):
        parse(driver, b'{"weight": 1.0,,')
    with pytest.raises(ValueError, match="not a JSON object"):
        parse(driver, [1, 2])


def test_mqtt_balance_paths_timestamp_and_commands() -> None:
    driver, _ = mqtt_driver(
        'weight_path = "data.w"\nstable_path = "data.flags[0]"\nunit_path = ""\n'
        'serial_path = ""\ntimestamp_path = "ts"\ncommand_topic = "gw/bal-2/cmd"'
    )
    readings = driver.parse(
        "gw/bal-2/state", b'{"data": {"w": 3.25, "flags": [true]}, "ts": 1795256941000}', 2.0
    )
    weight, stable, serial = readings
    assert (weight.value, weight.quality, weight.unit) == (3.25, Quality.GOOD, "g")
    assert weight.source_time == 1795256941.0 and stable.value is True
    assert (serial.quality, serial.detail) == (Quality.BAD, "the gateway sends none")
    assert set(driver.commands) == {"tare", "zero"}


async def test_mqtt_balance_without_command_topic_has_no_commands() -> None:
    driver, _ = mqtt_driver()
    with pytest.raises(CommandError, match="has no command 'tare'"):
        await driver.command("tare", {})


def test_mqtt_balance_events_once_per_fault_and_on_a_new_serial() -> None:
    driver, events = mqtt_driver()
    parse(driver, {**STABLE, "weight": None, "error": "overload"})
    parse(driver, {**STABLE, "weight": None, "error": "overload"})
    parse(driver, STABLE)
    parse(driver, {**STABLE, "serial": "B0002"})
    assert [(e.kind, e.detail) for e in events] == [
        (EventKind.DEVICE_ERROR, "balance error: overload"),
        (EventKind.DEVICE_ERROR, "serial number changed from B0001 to B0002: balance replaced?"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('command_topic = "gw/+/cmd"', "command_topic: must be a topic without wildcards"),
        ('command_topic = "gw/bal-2/state"', "must differ from state_topic"),
        ('weight_path = "a..b"', "options.weight_path: bad path"),
        ("qos = 3", "qos: must be 0, 1 or 2"),
    ],
)
def test_mqtt_balance_options_are_checked(options, message) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(MQTT_BALANCE.format(options=options).encode(), KINDS, env={})
    assert message in str(exc.value)


# --- the simulators' weighing model -----------------------------------------------------------


def model(**kw) -> BalanceModel:
    loads = kw.pop("loads", SignalLoads(Signal(base=100.0)))
    return BalanceModel("bal-1", "B1", "g", loads, noise=0.0, **kw)


def test_model_settles_after_a_change_of_load() -> None:
    m = model(loads=SignalLoads(Signal(base=0.0, steps=(Step(at=10.0, to=50.0),))))
    assert m.sample(5.0) == m.sample(5.0) and m.sample(5.0).stable
    assert m.sample(5.0).net == 0.0
    moving = m.sample(10.2)
    assert not moving.stable and moving.net != 50.0
    assert m.settled_in(10.5) == pytest.approx(1.5)
    settled = m.sample(12.5)
    assert settled.stable and settled.net == 50.0


def test_model_tare_zero_and_ranges() -> None:
    m = model()
    assert m.do_zero(1.0) == "+"  # 100 g is far outside the zero range
    assert m.do_tare(1.0) is None and m.tare == 100.0 and m.sample(1.0).net == 0.0
    m.start_excursion(2.0, Excursion("weight", to=1.5))
    assert not m.sample(2.5).stable
    assert m.sample(10.0).net == -98.5
    assert m.do_zero(10.0) is None and m.tare == 0.0 and m.sample(10.0).net == 0.0
    m.end_excursion(20.0)
    assert not m.sample(20.1).stable and m.sample(30.0).net == 98.5
    m.faults["overload"] = Fault("overload")
    assert m.sample(30.0).range == "+" and m.do_tare(30.0) == "+"
    assert model(capacity=50.0).sample(1.0).range == "+"  # 100 g on a 50 g balance
    assert m.fmt(-0.001) == "      0.00" and m.fmt(100.0) == "    100.00"


def test_seeded_loads_are_deterministic() -> None:
    a, b = SeededLoads(1, 220.0), SeededLoads(2, 220.0)
    loads = [a(t)[0] for t in range(0, 2000, 20)]
    assert loads == [SeededLoads(1, 220.0)(t)[0] for t in range(0, 2000, 20)]
    assert loads != [b(t)[0] for t in range(0, 2000, 20)]
    assert all(v == 0.0 or 2.0 <= v <= 132.0 for v in loads)
    assert 0.0 in loads and len(set(loads)) > 10
    assert serial_number(0, "bal-1") == serial_number(0, "bal-1") != serial_number(1, "bal-1")


def sim_config(text: str):
    return parse_config(text.encode(), KINDS, env={})


async def test_simulated_mt_sics_replies() -> None:
    config = sim_config(
        MT_SICS.format(fields="[device.simulate.weight]\nbase = 100.0\nnoise = 0.0")
    )
    devices = config.devices
    req = SimRequest(config, None, devices, parse_all(devices), seed=0, clock=SimClock())
    sim = MtSicsSimulator(req, stability_timeout=0.05)
    bal = sim.models["bal-1"]
    assert await sim.respond(bal, "SI") == b"S S     100.00 g\r\n"
    assert await sim.respond(bal, "@") == f'I4 A "{bal.serial}"\r\n'.encode()
    assert await sim.respond(bal, "XYZ 1") == b"ES\r\n"
    assert await sim.respond(bal, "T") == b"T S     100.00 g\r\n"
    assert await sim.respond(bal, "TA") == b"TA A     100.00 g\r\n"
    assert await sim.respond(bal, "Z") == b"Z +\r\n"
    sim.set_fault("bal-1", "unstable")
    assert (await sim.respond(bal, "SI")).startswith(b"S D ")
    assert await sim.respond(bal, "S") == b"S I\r\n"
    sim.end_fault("bal-1", "unstable")
    sim.set_fault("bal-1", "hardware")
    assert await sim.respond(bal, "SI") == b"S S     Error 15t\r\n"
    sim.set_fault("bal-1", "silent")
    assert await sim.respond(bal, "SI") is None
    with pytest.raises(UnsupportedFault):
        sim.check_fault("bal-1", Fault("exception"))
    with pytest.raises(FaultParamError, match="excursion: give exactly one of to or by"):
        sim.check_fault("bal-1", Fault("excursion", {"field": "weight", "to": 1.0, "by": 2.0}))
    with pytest.raises(FaultParamError, match=r"excursion\.field: string 'tare' is not a field"):
        sim.check_fault("bal-1", Fault("excursion", {"field": "tare", "to": 1.0}))
    with pytest.raises(FaultParamError, match=r"error\.code: must be one of ES, ET, EL"):
        sim.check_fault("bal-1", Fault("error", {"code": "EX"}))
    with pytest.raises(FaultParamError, match=r"overload\.level: unknown parameter"):
        sim.check_fault("bal-1", Fault("overload", {"level": 2}))
    sim.start_fault("bal-1", Fault("excursion", {"field": "weight", "to": 5.0, "ramp": "4s"}))
    assert bal.load_at(sim.clock.now() + 2.0)[0] == pytest.approx(52.5, abs=0.5)  # halfway


def test_simulators_are_registered_for_both_kinds() -> None:
    text = MT_SICS.format(fields="") + MQTT_BALANCE.format(options="").replace(
        '[[mqtt]]\nname = "b"\n', ""
    )
    sims = build_simulators(sim_config(text))
    assert sorted(type(s).__name__ for s in sims) == ["MqttBalancePublisher", "MtSicsSimulator"]
    mqtt = next(s for s in sims if isinstance(s, MqttBalancePublisher))
    doc = mqtt.document(mqtt.gateways["bal-2"], 0.0)
    weight = doc.pop("weight")
    assert doc == {"stable": True, "unit": "g", "serial": serial_number(0, "bal-2"), "error": None}
    assert math.isclose(weight, 0.0, abs_tol=0.02)  # an empty pan, readout noise

"""simulators.signals: seeded, pure signal models and the [device.simulate] parser."""

from __future__ import annotations

import math
import statistics

import pytest

from floorctl.config import DeviceConfig, FieldConfig
from floorctl.decode import DataType, RegisterTable
from simulators.faults import Fault
from simulators.signals import (
    Excursion,
    FaultParamError,
    Signal,
    SignalKind,
    SimulateConfigError,
    Step,
    check_fault_params,
    default_signal,
    fault_seconds,
    field_seed,
    parse_excursion,
    parse_simulate,
    stable_seed,
)


def _field(name: str, unit: str | None = None, **kw) -> FieldConfig:
    return FieldConfig(name=name, unit=unit, **kw)


def _device(simulate: dict, *fields: FieldConfig, device_id: str = "ahu-03") -> DeviceConfig:
    if not fields:
        fields = (
            _field("dp", "Pa", register=RegisterTable.HOLDING, address=0, type=DataType.FLOAT32),
            _field("run", register=RegisterTable.COIL, address=0),
        )
    return DeviceConfig(id=device_id, kind="modbus", fields=fields, simulate=simulate)


# --- determinism --------------------------------------------------------------------------


def test_field_seed_is_stable_across_runs():
    # sha256-based: a change here means every recorded simulation changes
    assert field_seed(0, "ahu-03", "dp") == 1108535399094312461
    assert field_seed(7, "ahu-03", "dp") == 2138663105574245822
    assert stable_seed("a", "b") != stable_seed("ab")
    assert 0 <= field_seed(2**70, "x", "y") < 2**63


def test_value_is_a_pure_function_of_seed_and_time():
    a = Signal(base=15, noise=0.3, seed=42)
    b = Signal(base=15, noise=0.3, seed=42)
    times = [0.0, 0.5, 1.0, 10.0, 3600.0]
    forward = [a.value(t) for t in times]
    backward = [b.value(t) for t in reversed(times)][::-1]
    assert forward == backward
    assert a.value(1.0) == a.value(1.0)
    assert forward != [Signal(base=15, noise=0.3, seed=43).value(t) for t in times]


def test_noise_is_gaussian_with_the_given_sd():
    s = Signal(base=20, noise=0.5, seed=1)
    values = [s.value(t * 0.1) for t in range(4000)]
    assert statistics.fmean(values) == pytest.approx(20, abs=0.05)
    assert statistics.stdev(values) == pytest.approx(0.5, rel=0.08)


def test_parsed_signals_are_deterministic_and_seeded_per_field():
    dev = _device({"dp": {"noise": 1.0}})
    one, two = parse_simulate(dev, seed=5), parse_simulate(dev, seed=5)
    assert one == two
    assert one["dp"].seed == field_seed(5, "ahu-03", "dp")
    assert parse_simulate(dev, seed=6)["dp"].value(3.0) != one["dp"].value(3.0)
    # same spec, other device: other noise
    other = parse_simulate(_device({"dp": {"noise": 1.0}}, device_id="ahu-04"), seed=5)
    assert other["dp"].value(3.0) != one["dp"].value(3.0)


def test_device_seed_replaces_global_seed():
    dev = _device({"seed": 99, "dp": {"noise": 1.0}})
    assert parse_simulate(dev, seed=1) == parse_simulate(dev, seed=2)
    assert parse_simulate(dev)["dp"].seed == field_seed(99, "ahu-03", "dp")


# --- shapes -------------------------------------------------------------------------------


def test_drift_in_units_per_hour():
    s = Signal(base=10, drift=2)
    assert s.value(0) == 10
    assert s.value(1800) == pytest.approx(11)
    assert s.value(7200) == pytest.approx(14)


def test_steps_to_and_by():
    s = Signal(base=15, steps=(Step(at=60, to=5), Step(at=120, by=-1)))
    assert s.value(59.9) == 15
    assert s.value(60) == 5
    assert s.value(119) == 5
    assert s.value(120) == 4
    assert s.value(1e6) == 4


def test_step_to_sets_the_level_and_drift_continues():
    s = Signal(base=0, drift=3600, steps=(Step(at=10, to=100),))  # 1 unit per second
    assert s.value(5) == pytest.approx(5)
    assert s.value(10) == pytest.approx(100)
    assert s.value(15) == pytest.approx(105)


def test_sine():
    s = Signal(base=10, period=40, amplitude=2)
    assert s.value(0) == pytest.approx(10)
    assert s.value(10) == pytest.approx(12)
    assert s.value(30) == pytest.approx(8)


def test_clamps_apply_last():
    s = Signal(base=5, noise=10, min=0, max=8, seed=3)
    values = [s.value(t) for t in range(500)]
    assert min(values) == 0 and max(values) == 8
    assert any(0 < v < 8 for v in values)


def test_boolean_signal():
    s = Signal(base=0, kind=SignalKind.BOOL, steps=(Step(at=5, to=1), Step(at=9, to=0)))
    assert [s.sample(t) for t in (0, 5, 8, 9)] == [False, True, True, False]
    assert s.value(6) == 1.0


def test_int_signal_rounds():
    s = Signal(base=3, noise=2, min=0, kind=SignalKind.INT, seed=9)
    samples = [s.sample(t) for t in range(300)]
    assert all(isinstance(v, int) and v >= 0 for v in samples)
    assert len(set(samples)) > 3


# --- defaults by unit ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "base", "noise"),
    [
        ("Pa", 15, 0.3),
        ("°C", 20, 0.05),
        ("degC", 20, 0.05),
        ("C", 20, 0.05),
        ("%RH", 45, 0.3),
        ("%", 45, 0.3),
        ("m/s", 1, 0.01),
        (None, 1, 0.01),
    ],
)
def test_defaults_by_unit(unit, base, noise):
    s = default_signal(_field("x", unit))
    assert (s.base, s.noise, s.kind) == (base, noise, SignalKind.FLOAT)


@pytest.mark.parametrize("unit", ["counts/m3", "counts"])
def test_default_counts_are_small_positive_integers(unit):
    s = default_signal(_field("pc", unit), seed=4)
    assert s.kind is SignalKind.INT
    samples = [s.sample(t) for t in range(200)]
    assert all(isinstance(v, int) and 0 <= v < 20 for v in samples)
    assert max(samples) > 0


@pytest.mark.parametrize(
    "f",
    [
        _field("run", register=RegisterTable.COIL, address=0),
        _field("alarm", register=RegisterTable.DISCRETE, address=3),
        _field("door", "bool", path="door"),
    ],
)
def test_default_booleans_are_false(f):
    s = default_signal(f)
    assert s.kind is SignalKind.BOOL
    assert s.sample(0) is False and s.sample(1000) is False


def test_fields_without_a_table_get_defaults():
    signals = parse_simulate(_device({}))
    assert signals["dp"].base == 15 and signals["dp"].noise == 0.3
    assert signals["run"].kind is SignalKind.BOOL


# --- parsing ------------------------------------------------------------------------------


def test_parse_full_spec():
    dev = _device(
        {
            "dp": {
                "base": 12.5,
                "noise": 0,
                "drift": 1,
                "period": 60,
                "amplitude": 0.5,
                "min": -10,
                "max": 50,
                "steps": [{"at": 30, "by": 1}, {"at": 10, "to": 2.5}],
            },
            "run": {"base": True, "steps": [{"at": 5, "to": False}]},
        }
    )
    s = parse_simulate(dev)
    dp = s["dp"]
    assert (dp.base, dp.noise, dp.drift, dp.period, dp.amplitude, dp.min, dp.max) == (
        12.5, 0.0, 1.0, 60.0, 0.5, -10.0, 50.0,
    )  # fmt: skip
    assert [st.at for st in dp.steps] == [10, 30]  # sorted
    assert s["run"].sample(0) is True and s["run"].sample(5) is False


def test_parse_raw_words():
    dev = _device({"dp": {"raw": [0x7FC0, 0]}, "run": {"raw": [1]}})
    s = parse_simulate(dev)
    assert s["dp"].raw == (0x7FC0, 0)
    assert s["run"].raw == (1,)


def _problems(simulate: dict, *fields: FieldConfig) -> list[str]:
    with pytest.raises(SimulateConfigError) as info:
        parse_simulate(_device(simulate, *fields))
    return str(info.value).splitlines()


def test_error_wrong_type_names_the_key_path():
    assert _problems({"dp": {"noise": "x"}}) == [
        "device[ahu-03].simulate.dp.noise: expected a number, got string 'x'"
    ]


def test_error_bool_is_not_a_number():
    assert _problems({"dp": {"base": True}}) == [
        "device[ahu-03].simulate.dp.base: expected a number, got boolean true"
    ]


def test_error_unknown_key():
    (line,) = _problems({"dp": {"nosie": 1}})
    assert line.startswith("device[ahu-03].simulate.dp.nosie: unknown key (expected one of base,")


def test_error_unknown_field():
    (line,) = _problems({"dpp": {"base": 1}})
    assert line == (
        "device[ahu-03].simulate.dpp: unknown field (fields of this device: dp, run; or seed)"
    )


def test_error_field_spec_not_a_table():
    assert _problems({"dp": 3}) == [
        "device[ahu-03].simulate.dp: expected a table [device.simulate.dp], got number 3"
    ]


def test_error_seed_type():
    assert _problems({"seed": 1.5}) == [
        "device[ahu-03].simulate.seed: expected an integer, got number 1.5"
    ]


def test_error_steps():
    lines = _problems(
        {
            "dp": {
                "steps": [
                    {"at": 1},
                    {"at": 2, "to": 1, "by": 1},
                    {"to": 3},
                    {"at": -1, "to": 3},
                    {"at": 1, "to": "3"},
                    {"at": 1, "by": 1, "when": 2},
                    5,
                ]
            }
        }
    )
    p = "device[ahu-03].simulate.dp.steps"
    assert lines == [
        f"{p}[0]: give exactly one of to or by",
        f"{p}[1]: give exactly one of to or by",
        f"{p}[2].at: required (seconds since start)",
        f"{p}[3].at: must be 0 or more",
        f"{p}[4].to: expected a number, got string '3'",
        f"{p}[5].when: unknown key (expected at, to or by)",
        f"{p}[6]: expected a table {{at = ..., to = ...}}, got number 5",
    ]


def test_error_steps_not_a_list():
    (line,) = _problems({"dp": {"steps": {"at": 1, "to": 2}}})
    assert line.startswith("device[ahu-03].simulate.dp.steps: expected an array")


def test_error_ranges():
    lines = _problems({"dp": {"noise": -1, "period": 0, "min": 5, "max": 1, "drift": math.inf}})
    p = "device[ahu-03].simulate.dp"
    assert sorted(lines) == sorted(
        [
            f"{p}.noise: must be 0 or more",
            f"{p}.period: must be more than 0 seconds",
            f"{p}.min: min (5) is above max (1)",
            f"{p}.drift: must be finite",
        ]
    )


def test_error_amplitude_needs_period():
    assert _problems({"dp": {"amplitude": 1}}) == [
        "device[ahu-03].simulate.dp.amplitude: needs a period"
    ]


def test_error_boolean_field_rejects_analog_keys():
    lines = _problems({"run": {"noise": 0.1, "steps": [{"at": 1, "by": 1}]}})
    assert lines == [
        "device[ahu-03].simulate.run.noise: not valid for a boolean field (use base and steps)",
        "device[ahu-03].simulate.run.steps[0].by: not valid for a boolean field "
        "(use to = true/false)",
    ]


def test_error_raw():
    p = "device[ahu-03].simulate"
    assert _problems({"dp": {"raw": [1]}}) == [
        f"{p}.dp.raw: holding field 'dp' needs 2 word(s), got 1"
    ]
    assert _problems({"dp": {"raw": [1, 70000]}}) == [
        f"{p}.dp.raw[1]: expected an integer 0..65535, got number 70000"
    ]
    assert _problems({"run": {"raw": [2]}}) == [
        f"{p}.run.raw[0]: expected an integer 0..1, got number 2"
    ]
    assert _problems({"t": {"raw": [1]}}, _field("t", "C", path="temp")) == [
        f"{p}.t.raw: raw applies to Modbus register fields only"
    ]


def test_every_problem_is_reported_at_once():
    lines = _problems({"dp": {"noise": "x", "drift": "y"}, "nope": {}, "run": {"base": "on"}})
    assert len(lines) == 4
    assert "device[ahu-03].simulate.run.base: expected true or false, got string 'on'" in lines
    assert all(line.startswith("device[ahu-03].simulate.") for line in lines)


# --- excursions and fault parameters --------------------------------------------------------


def _signals() -> dict[str, Signal]:
    return {
        "dp": Signal(base=12.5, noise=0.3, seed=5),
        "count": Signal(base=3, kind=SignalKind.INT),
        "door": Signal(base=0.0, kind=SignalKind.BOOL),
        "status": Signal(raw=(0xBEEF,)),
    }


def test_excursion_to_moves_the_level_and_keeps_the_noise():
    s = _signals()["dp"]
    exc = Excursion("dp", to=2.0, start=100.0)
    for t in (100.0, 150.0, 3600.0):
        assert exc.apply(s, t) == pytest.approx(2.0 + (s.value(t) - s.trend(t)))
    quiet = Signal(base=12.5, drift=3600.0)  # +1 per second: "to" holds the level anyway
    assert Excursion("dp", to=2.0).apply(quiet, 500.0) == pytest.approx(2.0)


def test_excursion_ramps_linearly_in_simulated_time():
    s = Signal(base=10.0)
    up = Excursion("dp", by=6.0, ramp=60.0, start=100.0)
    assert [up.apply(s, t) for t in (90.0, 100.0, 130.0, 160.0, 1000.0)] == pytest.approx(
        [10.0, 10.0, 13.0, 16.0, 16.0]
    )
    down = Excursion("dp", to=4.0, ramp=30.0, start=0.0)
    assert [down.apply(s, t) for t in (0.0, 15.0, 30.0)] == pytest.approx([10.0, 7.0, 4.0])
    assert math.isnan(Excursion("dp", to=math.nan, ramp=30.0).apply(s, 1.0))  # NaN: at once


def test_boolean_excursion_switches_at_once():
    door = _signals()["door"]
    assert Excursion("door", to=1.0).apply(door, 0.0) == 1.0
    assert Excursion("door", to=0.0).apply(Signal(base=1.0, kind=SignalKind.BOOL), 5.0) == 0.0


def test_parse_excursion():
    sigs = _signals()
    assert parse_excursion("rm-1", Fault("excursion", {"field": "dp", "to": 2}), sigs) == (
        Excursion("dp", to=2.0)
    )
    got = parse_excursion(
        "rm-1", Fault("excursion", {"field": "dp", "by": -1.5, "ramp": "1m30s"}), sigs
    )
    assert got == Excursion("dp", by=-1.5, ramp=90.0)
    assert parse_excursion("rm-1", Fault("excursion", {"field": "door", "to": True}), sigs) == (
        Excursion("door", to=1.0)
    )


@pytest.mark.parametrize(
    ("params", "param", "reason"),
    [
        ({"to": 1}, "field", "required (the field to move)"),
        ({"field": "nope", "to": 1}, "field", "string 'nope' is not a field of this device"),
        ({"field": "dp"}, None, "give exactly one of to or by"),
        ({"field": "dp", "to": 1, "by": 1}, None, "give exactly one of to or by"),
        ({"field": "dp", "to": "high"}, "to", "expected a number, got string 'high'"),
        ({"field": "dp", "by": math.inf}, "by", "expected a finite number"),
        ({"field": "dp", "to": 1, "ramp": -3}, "ramp", "seconds >= 0"),
        ({"field": "dp", "to": 1, "ramp": "soon"}, "ramp", "bad duration 'soon'"),
        ({"field": "dp", "to": 1, "rate": 2}, "rate", "unknown parameter (expected field, to"),
        ({"field": "door", "by": 1}, "by", "is boolean: use to = true or false"),
        ({"field": "door", "to": 1}, "to", "expected true or false, got number 1"),
        ({"field": "door", "to": True, "ramp": 5}, "ramp", "it cannot ramp"),
        ({"field": "status", "by": 1}, "by", "serves raw register words: use to"),
    ],
)
def test_parse_excursion_names_the_device_and_the_bad_parameter(params, param, reason):
    with pytest.raises(FaultParamError) as info:
        parse_excursion("rm-1", Fault("excursion", params), _signals())
    assert info.value.param == param and info.value.device_id == "rm-1"
    assert reason in info.value.reason
    where = f"excursion.{param}" if param else "excursion"
    assert str(info.value).startswith(f"device 'rm-1': {where}: ")


def test_fault_seconds_and_unknown_params():
    assert fault_seconds("2m") == 120.0 and fault_seconds(1.5) == 1.5 and fault_seconds(0) == 0
    for bad in (-1, True, math.nan, [1]):
        with pytest.raises(ValueError):
            fault_seconds(bad)
    check_fault_params("d", Fault("silent"), ())
    with pytest.raises(FaultParamError, match=r"silent\.for: unknown parameter \(it takes no"):
        check_fault_params("d", Fault("silent", {"for": 1}), ())

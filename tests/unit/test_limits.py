"""Alert and action limits: defaults by class and regime, room and point overrides, sources."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from floorctl.cli import Ctx, cli
from floorctl.config import ConfigError, parse_config
from floorctl.limits import Quantity, check_order, resolve_limits
from floorctl.pluginmanager import collect_kinds, get_plugin_manager

KINDS = collect_kinds(get_plugin_manager(autoload=False))

BASE = """
[[mqtt]]
name = "b"

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
id = "hd"
iso_class = 7
pressure = "negative"
pressure_reference = "ante"
{hd_limits}

[[room]]
id = "bsc-1"
iso_class = 5
within = "hd"

[[room]]
id = "store"

[[device]]
id = "m"
kind = "mqtt_json"
via = "b"
room = "{room}"
[device.options]
state_topic = "x"

[[device.fields]]
name = "dp"
path = "dp"
unit = "Pa"
quantity = "differential_pressure"
{dp_limits}

[[device.fields]]
name = "t"
path = "t"
quantity = "temperature"

[[device.fields]]
name = "pc05"
path = "pc05"
quantity = "particles_0_5um"

[[device.fields]]
name = "pc50"
path = "pc50"
quantity = "particles_5_0um"

[[device.fields]]
name = "fridge"
path = "f"
quantity = "refrigerator_temperature"

[[device.fields]]
name = "door"
path = "door"
"""


def load(room: str = "buffer", hd_limits: str = "", dp_limits: str = ""):
    text = BASE.format(room=room, hd_limits=hd_limits, dp_limits=dp_limits)
    config = parse_config(text.encode(), KINDS, env={})
    return config, resolve_limits(config, KINDS)


def values(pl) -> tuple:
    return tuple(pl.get(k).value for k in ("action_low", "alert_low", "alert_high", "action_high"))


def test_positive_room_defaults() -> None:
    _, limits = load("buffer")
    dp = limits[("m", "dp")]
    assert values(dp) == (5.0, 10.0, None, None)
    assert "USP <797>" in dp.action_low.source and dp.action_high.source == "none"
    assert values(limits[("m", "t")]) == (None, None, 19.5, 20.0)
    assert values(limits[("m", "pc05")]) == (None, None, 176_000.0, 352_000.0)
    assert values(limits[("m", "pc50")]) == (None, None, 1_465.0, 2_930.0)
    assert ("m", "door") not in limits  # no quantity, no limits


def test_negative_hd_room_is_a_two_sided_band() -> None:
    _, limits = load("hd")
    assert values(limits[("m", "dp")]) == (-7.5, -7.0, -3.0, -2.5)


def test_iso5_unit_within_a_room_and_fixed_storage_limits() -> None:
    config, limits = load("bsc-1")
    assert config.room("bsc-1").within == "hd"
    assert values(limits[("m", "pc05")]) == (None, None, 1_760.0, 3_520.0)
    assert values(limits[("m", "pc50")]) == (None, None, 14.5, 29.0)
    assert "Annex 1 grade A" in limits[("m", "pc50")].action_high.source
    assert values(limits[("m", "dp")]) == (None, None, None, None)  # unidirectional: no regime
    assert values(limits[("m", "fridge")]) == (2.0, 3.0, 7.0, 8.0)


def test_unclassified_room_has_no_environmental_defaults() -> None:
    _, limits = load("store")
    assert values(limits[("m", "t")]) == (None, None, None, None)
    assert limits[("m", "t")].alert_high.source == "none"
    assert values(limits[("m", "fridge")]) == (2.0, 3.0, 7.0, 8.0)  # storage limits go anywhere


def test_room_then_point_overrides_with_sources() -> None:
    _, limits = load(
        "hd",
        hd_limits="[room.limits.differential_pressure]\naction_low = -8.0\nalert_low = -7.5",
        dp_limits="limits = { alert_high = -3.5 }",
    )
    dp = limits[("m", "dp")]
    assert values(dp) == (-8.0, -7.5, -3.5, -2.5)
    assert dp.action_low.source == "room[hd].limits.differential_pressure"
    assert dp.alert_high.source == "device[m].fields[dp].limits"
    assert dp.action_high.source.startswith("default: negative HD room")


@pytest.mark.parametrize(
    ("hd_limits", "dp_limits", "expected"),
    [
        (
            "[room.limits.differential_pressure]\nalert_low = -2.0\nalert_high = -3.0",
            "",
            "room[hd].limits.differential_pressure: alert_low (-2) must be below alert_high (-3)",
        ),
        (
            "",
            "limits = { action_high = -5.0, alert_high = -4.0 }",
            "device[m].fields[dp].limits: alert_high (-4) must be at most action_high (-5)",
        ),
        (
            # alone fine, but with the inherited default action_high of -2.5 it crosses
            "[room.limits.differential_pressure]\nalert_high = -1.0",
            "",
            "room[hd].limits.differential_pressure: with the limits m/dp inherits: "
            "alert_high (-1) must be at most action_high (-2.5)",
        ),
        (
            "[room.limits.dew_point]\nalert_high = 1.0",
            "",
            "room[hd].limits.dew_point: quantity must be one of",
        ),
    ],
)
def test_limit_order_problems(hd_limits: str, dp_limits: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load("hd", hd_limits=hd_limits, dp_limits=dp_limits)
    assert any(expected in p.format() for p in err.value.problems), [
        p.format() for p in err.value.problems
    ]


def test_within_problems() -> None:
    text = BASE.format(room="buffer", hd_limits="", dp_limits="").replace(
        'id = "store"', 'id = "store"\nwithin = "bsc-1"'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text.encode(), KINDS, env={})
    assert [p.message for p in err.value.problems] == [
        "'bsc-1' stands within 'hd' itself: one level only (an ISO 5 unit within a room)"
    ]


def test_check_order() -> None:
    assert (
        check_order({"action_low": 1.0, "alert_low": 2.0, "alert_high": 3.0, "action_high": 4.0})
        is None
    )
    assert (
        check_order({"alert_low": 2.0, "alert_high": 2.0})
        == "alert_low (2) must be below alert_high (2)"
    )
    assert check_order({"action_low": 2.0, "alert_low": 2.0}) is None  # equal is allowed
    assert check_order({"action_low": 5.0, "action_high": 1.0}) is not None


def test_config_show_prints_limits_with_sources(tmp_path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(BASE.format(room="hd", hd_limits="", dp_limits=""))
    runner = CliRunner()
    result = runner.invoke(
        cli, ["config", "show", str(path)], obj=Ctx(get_plugin_manager(autoload=False))
    )
    assert result.exit_code == 0, result.output
    assert "room hd: ISO 7, negative pressure, against ante" in result.output
    assert "room bsc-1: ISO 5, no pressure regime, within hd" in result.output
    assert "m/dp  differential_pressure Pa" in result.output
    assert "no limits (quantity unknown; set `quantity` on the field): m/door" in result.output
    result = runner.invoke(
        cli, ["config", "show", "--json", str(path)], obj=Ctx(get_plugin_manager(autoload=False))
    )
    data = json.loads(result.output)
    dp = next(p for p in data["points"] if p["point"] == "dp")
    assert dp["quantity"] == Quantity.DIFFERENTIAL_PRESSURE.value
    assert dp["action_high"] == {"value": -2.5, "source": dp["action_high"]["source"]}


ALARMS = """
[floor.alarms.differential_pressure]
alert_on_delay = "5s"
priority = "high"
"""


def test_alarm_settings_from_devices_toml_reach_the_engine() -> None:
    from floorctl.daemon import Floor

    point = 'alarm = { action_on_delay = "2m" }'
    text = ALARMS + BASE.format(room="buffer", hd_limits="", dp_limits=point)
    pm = get_plugin_manager(autoload=False)
    config = parse_config(text.encode(), KINDS, env={})
    floor = Floor(config, pm, KINDS, publish=False)
    dp = floor.alarms.point("m", "dp").config
    assert (dp.alert_on_delay, dp.action_on_delay, dp.priority.value) == (5.0, 120.0, "high")
    assert dp.deadband == 0.5  # the shipped default where the site sets nothing
    t = floor.alarms.point("m", "t").config
    assert t.alert_on_delay == 60.0  # another quantity: untouched


T = "[floor.alarms.temperature]\n"
W = "floor.alarms.temperature: "


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (T + 'alert_on_dely = "5s"', W + "alarm settings: unknown alarm setting 'alert_on_dely'"),
        (T + 'alert_on_delay = "5 parsecs"', W + "bad duration '5 parsecs'"),
        (T + 'priority = "urgent"', W + "priority: 'urgent' is not one of low, medium, high"),
        (T + "deadband = -1", W + "deadband must be a finite number >= 0"),
    ],
)
def test_bad_alarm_settings_are_problems_with_paths(table: str, message: str) -> None:
    text = table + "\n" + BASE.format(room="buffer", hd_limits="", dp_limits="")
    with pytest.raises(ConfigError) as err:
        parse_config(text.encode(), KINDS, env={})
    found = [p.format() for p in err.value.problems]
    assert any(message in line for line in found), found


def test_a_bad_point_alarm_setting_names_the_field() -> None:
    text = BASE.format(room="buffer", hd_limits="", dp_limits='alarm = { latching = "yes" }')
    with pytest.raises(ConfigError) as err:
        parse_config(text.encode(), KINDS, env={})
    assert [p.format() for p in err.value.problems] == [
        "devices.toml:44: device[m].fields[dp].alarm: latching: expected true or false, got 'yes'"
    ]

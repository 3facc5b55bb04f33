"""Kinds with their own point map (Kind.points): defaults, subsets and overrides."""

from __future__ import annotations

import pytest

from floorctl import hookimpl
from floorctl.config import ConfigError, FieldConfig, Ident, parse_config
from floorctl.driver import PolledDriver
from floorctl.kinds import Kind, Transport
from floorctl.limits import Quantity, resolve_limits
from floorctl.pluginmanager import collect_kinds, get_plugin_manager


class _Driver(PolledDriver):
    async def poll(self):  # pragma: no cover - never run here
        return []


def _points(device, options):
    return [
        FieldConfig(name=Ident("t"), unit="°C", quantity=Quantity.TEMPERATURE),
        FieldConfig(name=Ident("rh"), unit="%RH", quantity=Quantity.HUMIDITY),
        FieldConfig(name=Ident("dp"), unit="Pa", quantity=Quantity.DIFFERENTIAL_PRESSURE),
    ]


class MapPlugin:
    @hookimpl
    def floorctl_register_kinds(self, registry):
        registry.add(
            Kind(
                "thp_test",
                _Driver,
                Transport.MODBUS,
                points=_points,
                alt_transports=frozenset({Transport.MQTT}),
            )
        )


KINDS = collect_kinds(get_plugin_manager(autoload=False, plugins=[MapPlugin()]))

TOML = """
[[mqtt]]
name = "b"
[[modbus]]
name = "plc"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
[[device]]
id = "x"
kind = "thp_test"
via = "{via}"
room = "buffer"
{fields}
"""


def load(fields: str = "", via: str = "plc"):
    return parse_config(TOML.format(fields=fields, via=via).encode(), KINDS, env={})


def test_no_fields_means_every_point_of_the_map() -> None:
    config = load()
    d = config.device("x")
    assert [(f.name, f.unit, f.quantity) for f in d.fields] == [
        ("t", "°C", Quantity.TEMPERATURE),
        ("rh", "%RH", Quantity.HUMIDITY),
        ("dp", "Pa", Quantity.DIFFERENTIAL_PRESSURE),
    ]
    limits = resolve_limits(config)
    assert limits[("x", "dp")].action_low.value == 5.0


def test_listed_fields_select_and_override() -> None:
    config = load('[[device.fields]]\nname = "dp"\ndeadband = 0.5\nlimits = { alert_low = 12.0 }')
    (dp,) = config.device("x").fields
    assert (dp.name, dp.unit, dp.quantity, dp.deadband) == (
        "dp",
        "Pa",
        Quantity.DIFFERENTIAL_PRESSURE,
        0.5,
    )
    limits = resolve_limits(config)
    assert limits[("x", "dp")].alert_low.value == 12.0
    assert limits[("x", "dp")].alert_low.source == "device[x].fields[dp].limits"


def test_unknown_point_is_a_problem() -> None:
    with pytest.raises(ConfigError) as err:
        load('[[device.fields]]\nname = "co2"')
    assert [p.format() for p in err.value.problems] == [
        "devices.toml:16: device[x].fields[co2].name: "
        "kind 'thp_test' has no point 'co2' (it has: t, rh, dp)"
    ]


def test_alternative_transport() -> None:
    assert load(via="b").device("x").via == "b"
    with pytest.raises(ConfigError) as err:
        parse_config(
            TOML.format(fields="", via="b").replace('via = "b"', "").encode(), KINDS, env={}
        )
    assert "needs an [[modbus]] or [[mqtt]] connection" in str(err.value)

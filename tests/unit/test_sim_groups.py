"""Devices sharing one simulated server: the right family serves them, or a clear error."""

from __future__ import annotations

import pytest

from floorctl.config import parse_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from simulators.modbus_device import SimulatorError
from simulators.serve import SIMULATORS, build_simulators, load_builtin_simulators

KINDS = collect_kinds(get_plugin_manager(autoload=False))

HEAD = """
[[mqtt]]
name = "m"
[[modbus]]
name = "gw"
port = 15999
[[device]]
id = "g"
kind = "modbus"
via = "gw"
unit_id = 1
[[device.fields]]
name = "v"
register = "input"
address = 0
type = "FLOAT32"
"""


def device(id_: str, kind: str, unit: int) -> str:
    return f'[[device]]\nid = "{id_}"\nkind = "{kind}"\nvia = "gw"\nunit_id = {unit}\n'


async def test_the_specific_family_serves_a_connection_whatever_comes_first() -> None:
    load_builtin_simulators()
    config = parse_config((HEAD + device("door1", "door", 3)).encode(), KINDS, env={})
    (sim,) = build_simulators(config)
    assert type(sim).__module__ == SIMULATORS["door"].factory.__module__  # not the generic one
    assert "door1" in set(sim.device_ids())


async def test_two_families_on_one_connection_are_refused() -> None:
    text = HEAD + device("thp", "modbus_thp", 2) + device("door1", "door", 3)
    config = parse_config(text.encode(), KINDS, env={})
    with pytest.raises(SimulatorError, match=r"thp \(modbus_thp\); door1 \(door\)"):
        build_simulators(config)

"""floorctl.schema: the JSON Schema of devices.toml, checked with jsonschema on the corpus."""

from __future__ import annotations

import enum
import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal

import attrs
import jsonschema
import pytest
from click.testing import CliRunner

from floorctl import config
from floorctl.cli import Ctx, cli
from floorctl.config import Duration, Ident, parse_duration
from floorctl.decode import DataType, RegisterTable
from floorctl.kinds import Kind, KindRegistry, Transport
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.schema import json_schema

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ROOT_DEVICES = Path(__file__).resolve().parents[2] / "devices.toml"


@pytest.fixture(scope="module")
def kinds() -> KindRegistry:
    return collect_kinds(get_plugin_manager(autoload=False))


@pytest.fixture(scope="module")
def schema(kinds) -> dict:
    return json_schema(kinds)


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def _load(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _error_paths(validator, data) -> set[str]:
    return {"/".join(map(str, e.absolute_path)) for e in validator.iter_errors(data)}


def test_schema_is_valid_draft_2020_12(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(schema)) == schema


def test_cli_prints_the_schema(kinds, schema):
    ctx = Ctx(get_plugin_manager(autoload=False))
    result = CliRunner().invoke(cli, ["config", "schema"], obj=ctx)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == schema


def test_every_type_of_the_config_classes_is_described(schema):
    assert "$comment" not in json.dumps(schema)


def test_docs_example_validates(validator):
    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = docs.read_text(encoding="utf-8")
    example = text.split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert _error_paths(validator, tomllib.loads(example)) == set()


def test_root_devices_toml_validates(validator):
    if not ROOT_DEVICES.exists():
        pytest.skip("no devices.toml at the top of the repository yet")
    assert _error_paths(validator, _load(ROOT_DEVICES)) == set()


@pytest.mark.parametrize("path", sorted((CONFIGS / "good").glob("*.toml")), ids=lambda p: p.stem)
def test_good_configs_validate(validator, path):
    assert _error_paths(validator, _load(path)) == set()


@pytest.mark.parametrize(
    ("name", "paths"),
    [
        ("unknown_section", {""}),
        ("unknown_key", {"floor", "mqtt/0", "modbus/0", "room/0", "device/0", "device/0/fields/1"}),
        (
            "wrong_types",
            {
                "room",
                "mqtt/0/port",
                "mqtt/0/host",
                "device/0/enabled",
                "device/0/options",
                "device/0/fields/1/scale",
            },
        ),
        (
            "bad_durations",
            {
                "floor/republish",
                "floor/stats_interval",
                "mqtt/0/keepalive",
                "modbus/0/timeout",
                "device/0/interval",
                "device/0/timeout",
                "device/0/expire_after",
            },
        ),
        (
            "out_of_range",
            {
                "mqtt/0/port",
                "mqtt/0/max_queued_incoming",
                "modbus/0/port",
                "device/0/unit_id",
                "device/0/fields/1/address",
                "device/0/fields/2/address",
                "device/1/unit_id",
            },
        ),
        (
            "bad_ids",
            {
                "floor/id",
                "mqtt/0/name",
                "modbus/0/name",
                "room/0/id",
                "room/1/id",
                "device/0/id",
                "device/1/fields/1/name",
                "device/2/id",
            },
        ),
        ("unknown_kind", {"device/0/kind"}),
        ("unknown_option", {"device/0/options"}),
        ("mqtt_json_no_state_topic", {"device/0", "device/1/options"}),
        ("no_mqtt", {""}),
        ("kind_mismatch", {"device/0", "device/0/fields/0", "device/1/fields/0"}),
        ("unknown_via", {"device/1"}),
    ],
)
def test_bad_configs_do_not_validate(validator, name, paths):
    assert _error_paths(validator, _load(CONFIGS / "bad" / f"{name}.toml")) == paths


@pytest.mark.parametrize(
    "name",
    ["duplicate_device_ids", "unknown_room", "overlap_across_devices", "timeout_not_shorter"],
)
def test_cross_references_are_left_to_check_config(validator, name):
    assert _error_paths(validator, _load(CONFIGS / "bad" / f"{name}.toml")) == set()


# --- generated from the classes -------------------------------------------------------------


def _config_classes() -> list[type]:
    seen: list[type] = []
    todo = [cls for cls, _ in config._SECTIONS.values()]
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.append(cls)
        for hint in typing.get_type_hints(cls).values():
            for t in (hint, *typing.get_args(hint)):
                if attrs.has(t):
                    todo.append(t)
    return seen


def test_every_attribute_of_every_config_class_is_in_the_schema(schema):
    classes = _config_classes()
    assert config.FieldConfig in classes
    for cls in classes:
        definition = schema["$defs"][cls.__name__]
        assert definition["additionalProperties"] is False
        assert list(definition["properties"]) == [a.name for a in attrs.fields(cls)]
        required = [a.name for a in attrs.fields(cls) if a.default is attrs.NOTHING]
        assert definition.get("required", []) == required


def test_every_object_definition_is_closed(schema):
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition["additionalProperties"] is False, name
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(config._SECTIONS)
    assert schema["properties"]["floor"]["$ref"] == "#/$defs/FloorConfig"
    for key in ("mqtt", "modbus", "room", "device"):
        assert schema["properties"][key]["type"] == "array"


def _prop(schema, cls: str, key: str) -> dict:
    return schema["$defs"][cls]["properties"][key]


def _integer(prop: dict) -> dict:
    (integer,) = [s for s in prop["anyOf"] if s.get("type") == "integer"]
    return integer


def test_ranges_come_from_the_converter_hooks(schema):
    assert _integer(_prop(schema, "MqttConnection", "port")) == {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
    }
    assert _integer(_prop(schema, "ModbusConnection", "port"))["minimum"] == 1
    assert _integer(_prop(schema, "DeviceConfig", "unit_id")) == {
        "type": "integer",
        "minimum": 0,
        "maximum": 255,
    }
    assert _integer(_prop(schema, "FieldConfig", "address")) == {
        "type": "integer",
        "minimum": 0,
        "maximum": 65535,
    }
    assert _integer(_prop(schema, "FloorConfig", "point_qos")) == {"type": "integer"}


def test_enums(schema):
    def values(name: str) -> list:
        (e,) = [s for s in schema["$defs"][name]["anyOf"] if "enum" in s]
        return e["enum"]

    assert values("DataType") == [m.value for m in DataType]
    assert values("ByteOrder") == ["ABCD", "CDAB", "BADC", "DCBA"]
    assert values("RegisterTable") == [m.value for m in RegisterTable]
    assert values("IsoClass") == [5, 7, 8, "unclassified"]
    assert _prop(schema, "FieldConfig", "type") == {"$ref": "#/$defs/DataType"}
    assert _prop(schema, "RoomConfig", "iso_class")["$ref"] == "#/$defs/IsoClass"


def test_defaults_and_descriptions(schema):
    assert _prop(schema, "MqttConnection", "port")["default"] == 1883
    assert _prop(schema, "ModbusConnection", "port")["default"] == 502
    assert _prop(schema, "FloorConfig", "republish")["default"] == "1m"
    assert _prop(schema, "FloorConfig", "id")["default"] == "floor"
    assert _prop(schema, "FieldConfig", "byte_order")["default"] == "ABCD"
    assert _prop(schema, "FieldConfig", "sentinels")["default"] == []
    assert _prop(schema, "RoomConfig", "iso_class")["default"] == "unclassified"
    assert _prop(schema, "DeviceConfig", "enabled")["default"] is True
    assert "default" not in _prop(schema, "DeviceConfig", "timeout")  # None: not writable
    assert (
        _prop(schema, "FloorConfig", "state_via")["description"]
        == "the [[mqtt]] connection the live floor is published on"
    )
    assert _prop(schema, "ModbusOptions", "address_base")["description"].startswith(
        "1 if the register map is written 1-based"
    )
    assert schema["$defs"]["FloorConfig"]["description"].startswith("The `[floor]` table")
    assert "description" in schema["$defs"]["Duration"]


@pytest.mark.parametrize(
    "text", ["500ms", "5s", "1m30s", "2h", "1.5s", " 5s ", "", "5", "5 parsecs", "-5s", "1m 30s"]
)
def test_duration_pattern_agrees_with_parse_duration(schema, text):
    pattern = schema["$defs"]["Duration"]["anyOf"][0]["pattern"]
    try:
        parse_duration(text)
        ok = True
    except ValueError:
        ok = False
    assert bool(re.search(pattern, text)) is ok


@pytest.mark.parametrize(
    "text", ["rm-1", "a", "A.b_c-1", "x" * 64, "x" * 65, "-a", "_a", "a b", "a/b", "a+b", "a#b", ""]
)
def test_ident_pattern_agrees_with_the_loader(schema, text):
    (pattern, _env) = [s["pattern"] for s in schema["$defs"]["Ident"]["anyOf"]]
    assert bool(re.search(pattern, text)) is bool(config._IDENT.match(text))


def test_env_references_are_accepted_for_numbers_and_booleans(validator):
    data = {
        "floor": {"point_qos": "${QOS:-1}"},
        "mqtt": [{"name": "m", "port": "${PORT:-1883}", "tls": "${TLS}"}],
        "device": [
            {
                "id": "d",
                "kind": "modbus",
                "via": "${VIA:-bms}",
                "unit_id": "${UNIT}",
                "interval": "${INTERVAL:-1s}",
                "fields": [{"name": "x", "register": "${REG}", "address": "${ADDR}"}],
            }
        ],
    }
    assert _error_paths(validator, data) == set()
    data["mqtt"][0]["port"] = "1883"  # a string without ${...} is not a port
    assert _error_paths(validator, data) == {"mqtt/0/port"}


# --- a plugin kind's options -----------------------------------------------------------------


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@attrs.frozen
class Channel:
    """One analogue channel of the probe."""

    number: int
    label: str = ""  # shown on the display


@attrs.frozen
class ProbeOptions:
    host: str  # the probe's own address
    #: how often the probe is asked for a sample
    period: Duration = Duration(2.0)
    mode: Mode = Mode.FAST
    units: Literal["metric", "imperial"] = "metric"
    channels: tuple[Channel, ...] = ()
    tag: Ident | None = None


def _probe_registry() -> KindRegistry:
    registry = KindRegistry()
    registry.add(
        Kind(name="probe", driver=lambda ctx: None, transport=Transport.NONE, options=ProbeOptions)
    )
    return registry


def test_plugin_options_class_gets_a_def_and_a_rule():
    schema = json_schema(_probe_registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    probe = schema["$defs"]["ProbeOptions"]
    assert probe["required"] == ["host"]
    assert probe["properties"]["host"]["description"] == "the probe's own address"
    assert probe["properties"]["period"] == {
        "$ref": "#/$defs/Duration",
        "description": "how often the probe is asked for a sample",
        "default": "2s",
    }
    assert probe["properties"]["mode"]["default"] == "fast"
    assert schema["$defs"]["Channel"]["description"] == "One analogue channel of the probe."
    label = schema["$defs"]["Channel"]["properties"]["label"]
    assert label["description"] == "shown on the display"
    (rule,) = schema["$defs"]["DeviceConfig"]["allOf"]
    assert rule["if"]["properties"]["kind"] == {"const": "probe"}
    assert rule["then"]["properties"]["options"] == {"$ref": "#/$defs/ProbeOptions"}
    assert rule["then"]["required"] == ["options"]


def test_plugin_options_validate():
    validator = jsonschema.Draft202012Validator(json_schema(_probe_registry()))
    device = {
        "id": "p1",
        "kind": "probe",
        "options": {
            "host": "10.0.0.9",
            "period": "500ms",
            "mode": "slow",
            "units": "imperial",
            "channels": [{"number": 1, "label": "dp"}, {"number": 2}],
        },
        "fields": [{"name": "dp"}],
    }
    data = {"mqtt": [{"name": "m"}], "device": [device]}
    assert _error_paths(validator, data) == set()
    device["via"] = "m"  # transport none: the kind opens its own connection
    device["options"]["channels"][1]["gain"] = 2
    device["options"]["mode"] = "turbo"
    assert _error_paths(validator, data) == {
        "device/0",
        "device/0/options/channels/1",
        "device/0/options/mode",
    }


def test_a_new_attribute_shows_up_without_touching_the_schema(monkeypatch, kinds):
    @attrs.frozen
    class FloorWithShifts(config.FloorConfig):
        shift: Duration = Duration(8 * 3600.0)  # length of a production shift

    monkeypatch.setitem(config._SECTIONS, "floor", (FloorWithShifts, False))
    schema = json_schema(kinds)
    properties = schema["$defs"]["FloorWithShifts"]["properties"]
    assert list(properties)[-1] == "shift"
    # inherited attributes keep their descriptions
    assert properties["republish"]["description"] == "every point is published at least this often"
    assert properties["shift"] == {
        "$ref": "#/$defs/Duration",
        "description": "length of a production shift",
        "default": "8h",
    }


@attrs.frozen
class OddOptions:
    blob: bytes = b""


def test_an_unknown_type_in_a_plugin_does_not_break_the_schema():
    registry = KindRegistry()
    registry.add(
        Kind(name="odd", driver=lambda ctx: None, transport=Transport.MQTT, options=OddOptions)
    )
    blob = json_schema(registry)["$defs"]["OddOptions"]["properties"]["blob"]
    assert set(blob) == {"$comment"}

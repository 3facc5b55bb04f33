"""devices.toml loading: the config corpus through the real CLI, plus focused unit tests.

tests/configs/bad/NAME.toml each hold one kind of problem; NAME.expected is exactly what
``floorctl check-config NAME.toml`` prints on stderr, run from inside tests/configs/bad/.
tests/configs/good/*.toml must pass. ${FLOORCTL_TEST_*} variables used by the corpus are
set from CORPUS_ENV or unset, whatever the calling shell has.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from floorctl import config
from floorctl.cli import Ctx, cli
from floorctl.config import (
    Config,
    ConfigError,
    Duration,
    MqttConnection,
    Problem,
    expand_env,
    format_duration,
    line_index,
    load_config,
    parse_config,
    parse_duration,
)
from floorctl.kinds import KindRegistry
from floorctl.limits import LimitConfig
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.plugins.generic import ModbusOptions, MqttJsonOptions

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BAD = CONFIGS / "bad"
GOOD = CONFIGS / "good"
ROOT_DEVICES = Path(__file__).resolve().parents[2] / "devices.toml"

#: values of the ${VAR}s that the corpus expects to be set; any other is unset
CORPUS_ENV = {"FLOORCTL_TEST_MQTT_PASSWORD": "s3cret"}

#: corpus files whose .expected holds the right answer that floorctl/config.py does not give
#: yet; strict, so each flips to a failure (remove it here) once config.py is fixed
#: corpus files whose expected output is known to be wrong today (strict xfail: a fix makes
#: them pass and fail the run until the entry is removed). Empty: keep it that way.
KNOWN_BUGS: dict[str, str] = {}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _env_for(path: Path) -> dict[str, str | None]:
    names = set(_VAR.findall(path.read_bytes().decode("utf-8", "replace")))
    return {name: CORPUS_ENV.get(name) for name in names}


def _corpus(directory: Path) -> list[object]:
    return [
        pytest.param(
            p.name,
            id=p.stem,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[p.name])]
            if p.name in KNOWN_BUGS
            else [],
        )
        for p in sorted(directory.glob("*.toml"))
    ]


@pytest.fixture(scope="module")
def kinds() -> KindRegistry:
    return collect_kinds(get_plugin_manager(autoload=False))


@pytest.fixture(scope="module")
def ctx() -> Ctx:
    return Ctx(get_plugin_manager(autoload=False))


def _check_config(ctx: Ctx, directory: Path, name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(directory)
    return CliRunner().invoke(
        cli, ["check-config", name], obj=ctx, env=_env_for(directory / name), catch_exceptions=False
    )


# --- the corpus -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", _corpus(BAD))
def test_bad_config_reports_exactly_the_expected_problems(ctx, monkeypatch, name):
    expected = (BAD / name).with_suffix(".expected").read_text(encoding="utf-8")
    result = _check_config(ctx, BAD, name, monkeypatch)
    assert result.stderr == expected
    assert result.stdout == ""
    assert result.exit_code == 1


@pytest.mark.parametrize("name", _corpus(GOOD))
def test_good_config_passes(ctx, monkeypatch, name):
    result = _check_config(ctx, GOOD, name, monkeypatch)
    assert result.stderr == ""
    assert result.stdout.startswith(f"{name}: ok: ")
    assert result.exit_code == 0


def test_root_devices_toml_passes(ctx, monkeypatch):
    if not ROOT_DEVICES.exists():
        pytest.skip("no devices.toml at the top of the repository yet")
    result = _check_config(ctx, ROOT_DEVICES.parent, ROOT_DEVICES.name, monkeypatch)
    assert result.stderr == ""
    assert result.exit_code == 0


def test_every_bad_config_has_an_expected_file():
    tomls = {p.stem for p in BAD.glob("*.toml")}
    expected = {p.stem for p in BAD.glob("*.expected")}
    assert tomls, "no corpus found"
    assert sorted(tomls - expected) == [], "a .toml in bad/ without its .expected"
    assert sorted(expected - tomls) == [], "an .expected in bad/ without its .toml"
    assert set(KNOWN_BUGS) <= {p.name for p in (*BAD.glob("*.toml"), *GOOD.glob("*.toml"))}


@pytest.mark.parametrize("path", sorted(BAD.glob("*.expected")), ids=lambda p: p.stem)
def test_expected_file_is_well_formed(path):
    """Problem lines (<file>[:<line>]: ...) in line order, then the count of them."""
    name = path.with_suffix(".toml").name
    *problems, summary = path.read_text(encoding="utf-8").splitlines()
    assert problems
    n = len(problems)
    assert summary == f"{n} problem{'s' if n != 1 else ''} in {name}"
    lines = []
    for problem in problems:
        m = re.match(rf"{re.escape(name)}(?::(\d+))?: \S", problem)
        assert m, problem
        lines.append(int(m.group(1) or 0))
    assert lines == sorted(lines), "problems are reported in line order"


def test_many_problems_are_reported_together():
    lines = (BAD / "many_problems.expected").read_text(encoding="utf-8").splitlines()
    assert len(lines) - 1 >= 20
    for section in ("floor.", "mqtt[", "modbus[", "room[", "device["):
        assert any(f": {section}" in line for line in lines), section


def test_usage_error_exits_2(ctx):
    result = CliRunner().invoke(cli, ["check-config", "a.toml", "b.toml"], obj=ctx)
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["check-config", "--no-such-option"], obj=ctx)
    assert result.exit_code == 2


def test_unreadable_file_is_a_problem(ctx, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["check-config", "missing.toml"], obj=ctx)
    assert result.exit_code == 1
    assert result.stderr == (
        "missing.toml: cannot read file: No such file or directory\n1 problem in missing.toml\n"
    )


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        (" 5s ", 5.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text, seconds):
    d = parse_duration(text)
    assert isinstance(d, Duration)
    assert d == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", " ", "5", "s", "5 s", "5 parsecs", "-5s", "1m 30s", "5sec", "5S", "1,5s", "5s5"]
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (0.001, "1ms"),
        (5.0, "5s"),
        (1.5, "1.5s"),
        (90.0, "90s"),
        (60.0, "1m"),
        (600.0, "10m"),
        (7200.0, "2h"),
        (0.0, "0s"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
    assert repr(Duration(seconds)) == text


# --- ${VAR} expansion -----------------------------------------------------------------------

MQTT_PORT_FROM_ENV = b"""
[[mqtt]]
name = "local"
host = "${HOST:-127.0.0.1}"
port = "${PORT:-1883}"
tls = "${TLS:-false}"
keepalive = "${KEEPALIVE:-15s}"
"""


def test_env_set_default_and_numbers_from_env(kinds):
    config = parse_config(MQTT_PORT_FROM_ENV, kinds, env={})
    (mqtt,) = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls, mqtt.keepalive) == ("127.0.0.1", 1883, False, 15.0)
    assert type(mqtt.port) is not str

    env = {"HOST": "broker.local", "PORT": "8883", "TLS": "TRUE", "KEEPALIVE": "1m"}
    (mqtt,) = parse_config(MQTT_PORT_FROM_ENV, kinds, env=env).mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls, mqtt.keepalive) == ("broker.local", 8883, True, 60.0)
    assert isinstance(mqtt.port, int)


def test_env_number_that_is_not_a_number(kinds):
    with pytest.raises(ConfigError) as info:
        parse_config(MQTT_PORT_FROM_ENV, kinds, env={"PORT": "mqtt"}, filename="d.toml")
    assert [p.format("d.toml") for p in info.value.problems] == [
        "d.toml:5: mqtt[local].port: expected an integer, got string 'mqtt' (from ${...})"
    ]


def test_env_port_out_of_range(kinds):
    with pytest.raises(ConfigError) as info:
        parse_config(MQTT_PORT_FROM_ENV, kinds, env={"PORT": "99999"})
    assert info.value.problems == [
        Problem("mqtt[local].port", "port must be 1..65535, got 99999", 5)
    ]


def test_env_unset_is_one_problem_with_its_line(kinds):
    text = b'[[mqtt]]\nname = "local"\nusername = "${MQTT_USER}"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, kinds, env={})
    assert info.value.problems == [
        Problem("mqtt[local].username", "environment variable MQTT_USER is not set", 3)
    ]


def test_expand_env_walks_tables_and_arrays():
    data = {"a": "x-${A}-y", "b": ["${B:-2}", 3, "plain"], "c": {"d": "${D:-}"}, "e": 5}
    expanded, problems = expand_env(data, {"A": "1"})
    assert problems == []
    assert expanded == {"a": "x-1-y", "b": ["2", 3, "plain"], "c": {"d": ""}, "e": 5}
    _, problems = expand_env({"t": [{"k": "${NOPE}"}]}, {})
    assert problems == [(("t", 0, "k"), "environment variable NOPE is not set")]


def test_env_set_to_empty_is_empty_without_a_default():
    expanded, problems = expand_env({"a": "${A}"}, {"A": ""})
    assert (expanded, problems) == ({"a": ""}, [])


def test_env_default_applies_to_an_empty_variable():
    expanded, _ = expand_env({"port": "${PORT:-1883}"}, {"PORT": ""})
    assert expanded == {"port": "1883"}


# --- line numbers ---------------------------------------------------------------------------

NESTED = """\
[floor]
id = "f"

[[device]]
id = "a"
[device.options]
state_topic = "t/a"

[[device.fields]]
name = "a1"

[[device.fields]]
name = "a2"
address = 3

[[device]]
id = "b"

[[device.fields]]
name = "b1"
[device.simulate.b1]
base = 1.0

[[device]]
id = "c"
fields = [{ name = "c1" }, { name = "c2" }]
"""


def test_line_index_on_nested_arrays_of_tables():
    index = line_index(NESTED)
    assert index[("floor",)] == 1
    assert index[("floor", "id")] == 2
    assert index[("device", 0)] == 4
    assert index[("device", 0, "options")] == 6
    assert index[("device", 0, "options", "state_topic")] == 7
    assert index[("device", 0, "fields", 0)] == 9
    assert index[("device", 0, "fields", 0, "name")] == 10
    assert index[("device", 0, "fields", 1)] == 12
    assert index[("device", 0, "fields", 1, "address")] == 14
    # a new [[device]] restarts the count of its [[device.fields]]
    assert index[("device", 1)] == 16
    assert index[("device", 1, "fields", 0)] == 19
    assert index[("device", 1, "simulate", "b1")] == 21
    assert index[("device", 1, "simulate", "b1", "base")] == 22
    assert ("device", 1, "fields", 1) not in index
    # inline arrays of tables: the key's own line
    assert index[("device", 2, "fields")] == 26


def test_problem_line_falls_back_to_the_enclosing_table(kinds):
    text = (
        b'[[mqtt]]\nname = "m"\n[[modbus]]\nname = "b"\n'
        b'[[device]]\nid = "d"\nkind = "modbus"\nvia = "b"\n'
        b'[[device.fields]]\nname = "x"\nregister = "holding"\ntype = "UINT16"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, kinds, env={})
    # address is not written: the problem is on the [[device.fields]] header
    assert info.value.problems == [Problem("device[d].fields[x].address", "required", 9)]


def test_problem_format():
    assert Problem("a.b", "bad", 3).format("f.toml") == "f.toml:3: a.b: bad"
    assert Problem("a.b", "bad").format("f.toml") == "f.toml: a.b: bad"
    assert Problem("", "bad").format() == "devices.toml: bad"


# --- Config helpers -------------------------------------------------------------------------

HELPERS = b"""
[floor]
id = "suite-a"

[[mqtt]]
name = "first"

[[mqtt]]
name = "second"

[[modbus]]
name = "bms"

[[room]]
id = "buffer"

[[device]]
id = "fast"
kind = "modbus"
via = "bms"
room = "buffer"
interval = "1s"

[device.options]
address_base = 1

[[device.fields]]
name = "dp"
register = "input"
address = 1
type = "FLOAT32"

[[device]]
id = "slow"
kind = "mqtt_json"
via = "second"
interval = "1m"
expire_after = "10m"

[device.options]
state_topic = "a/b"

[[device.fields]]
name = "t"
path = "t"

[[device]]
id = "explicit"
kind = "modbus"
via = "bms"
unit_id = 9
interval = "10s"
timeout = "7s"

[[device.fields]]
name = "dp"
register = "input"
address = 0
type = "FLOAT32"
"""


@pytest.fixture(scope="module")
def helpers(kinds) -> Config:
    return parse_config(HELPERS, kinds, env={}, filename="helpers.toml")


def test_state_connection_defaults_to_the_first_mqtt(helpers, kinds):
    assert helpers.floor.state_via is None
    assert helpers.state_connection.name == "first"
    with_via = HELPERS.replace(b'id = "suite-a"', b'id = "suite-a"\nstate_via = "second"')
    config = parse_config(with_via, kinds, env={})
    assert isinstance(config.state_connection, MqttConnection)
    assert config.state_connection.name == "second"


def test_request_timeout_defaults(helpers):
    fast, slow, explicit = helpers.devices
    assert fast.request_timeout == pytest.approx(0.5)  # half the interval
    assert slow.request_timeout == pytest.approx(5.0)  # at most 5 s
    assert explicit.request_timeout == pytest.approx(7.0)  # as written


def test_stale_after(helpers):
    fast, slow, explicit = helpers.devices
    assert fast.stale_after == pytest.approx(3.0)  # three intervals
    assert slow.stale_after == pytest.approx(600.0)  # expire_after when longer
    assert explicit.stale_after == pytest.approx(30.0)


def test_modbus_unit_defaults_to_1(helpers):
    fast, _, explicit = helpers.devices
    assert fast.unit_id is None
    assert fast.modbus_unit == 1
    assert explicit.modbus_unit == 9


def test_lookups_options_and_identity(helpers):
    assert helpers.floor.prefix == "floorctl/suite-a"
    assert helpers.device("slow").room is None
    assert helpers.room("buffer").iso_class.value == "unclassified"
    assert helpers.connection("bms").port == 502
    assert helpers.connection("nope") is None
    assert helpers.device_options["fast"] == ModbusOptions(address_base=1)
    assert helpers.device_options["slow"] == MqttJsonOptions(state_topic="a/b")
    assert helpers.path == "helpers.toml"
    assert len(helpers.sha256) == 64


def test_load_config_reads_a_file(kinds):
    config = load_config(GOOD / "minimal.toml", kinds)
    assert [c.name for c in config.mqtt] == ["local"]
    assert config.path == str(GOOD / "minimal.toml")


def test_mqtt_repr_never_shows_the_password(kinds):
    text = b'[[mqtt]]\nname = "m"\npassword = "${P}"\n'
    (mqtt,) = parse_config(text, kinds, env={"P": "s3cret-value"}).mqtt
    assert mqtt.password == "s3cret-value"
    assert "s3cret" not in repr(mqtt)


# --- docs/configuration.md ------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_docs_example_is_a_valid_devices_toml(kinds):
    text = DOCS.read_text(encoding="utf-8")
    example = text.split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example.encode(), kinds, env={"FLOORCTL_MQTT_PASSWORD": "x"})
    assert [d.id for d in config.devices] == ["rm-buffer", "th-corridor"]


def test_docs_describe_every_key(kinds):
    """Each key of each config class has a table row in configuration.md, and each key of each
    built-in kind's options one in devices.md (the generic kinds' in either)."""
    text = DOCS.read_text(encoding="utf-8")
    devices_text = (DOCS.parent / "devices.md").read_text(encoding="utf-8")
    classes = [cls for cls, _ in config._SECTIONS.values()]
    classes += [config.FieldConfig, LimitConfig]
    for cls in classes:
        for a in attrs.fields(cls):
            assert f"| `{a.name}` |" in text, f"{cls.__name__}.{a.name} is not in {DOCS.name}"
    for kind in kinds:
        for a in attrs.fields(kind.options):
            row = f"| `{a.name}` |"
            assert row in devices_text or row in text, (
                f"option {a.name} of kind {kind.name} is in neither devices.md nor {DOCS.name}"
            )

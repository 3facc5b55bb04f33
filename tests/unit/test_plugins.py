"""The plugin machinery: hook docs in step with the specs, kinds, loading, CLI wiring.

Test plugins are classes declared inside the tests and registered on a fresh plugin manager
(``get_plugin_manager(autoload=False, plugins=[...])``), so installed plugins never interfere.
A plugin registered without a name is named after its ``__name__`` (pluggy's canonical name),
which is why the test plugins set one.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pluggy
import pytest
from attrs import frozen
from click.testing import CliRunner

import floorctl.cli as cli_module
from floorctl import hookimpl, hookspecs
from floorctl.config import ConfigError, parse_config
from floorctl.driver import DeviceContext, PolledDriver
from floorctl.kinds import Kind, KindError, KindRegistry, Transport
from floorctl.model import Quality, Reading
from floorctl.pluginmanager import (
    BUILTIN_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    collect_kinds,
    get_plugin_manager,
    plugin_names,
)

#: every kind the built-in plugins register (the list grows with the product)
BUILTIN_KINDS = collect_kinds(get_plugin_manager(autoload=False)).names()

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


class ProbeDriver(PolledDriver):
    """The smallest real driver: one good reading per field."""

    async def poll(self) -> list[Reading]:
        return [
            Reading(self.device.id, f.name, 1.0, Quality.GOOD, unit=f.unit)
            for f in self.device.fields
        ]


def probe_kind(name: str, **kwargs: object) -> Kind:
    return Kind(name=name, driver=ProbeDriver, transport=Transport.NONE, **kwargs)  # type: ignore[arg-type]


# --- docs/plugins.md documents every hook under its exact signature ---------------------------


def hookspec_functions() -> dict[str, object]:
    """name -> function of every hook spec in floorctl/hookspecs.py."""
    marker = f"{hookspecs.hookspec.project_name}_spec"
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, marker)
    }


def expected_heading(name: str, fn: object) -> str:
    params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    return f"{name}({', '.join(params)})"


def documented_hooks() -> dict[str, list[str]]:
    """Hook name -> the headings (any level) that name it, without the ``#``s.

    ``## floorctl_x(a, b)`` gives ``floorctl_x(a, b)``; headings in fenced code do not count.
    """
    found: dict[str, list[str]] = {}
    in_code = False
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"^#+\s+`?(floorctl_\w+)(.*?)`?\s*$", line)
        if m and not in_code:
            found.setdefault(m.group(1), []).append(m.group(1) + m.group(2))
    return found


def test_hookspecs_are_found() -> None:
    specs = hookspec_functions()
    assert "floorctl_register_kinds" in specs
    # every hook the plugin manager knows comes from hookspecs.py, and the other way round
    pm = get_plugin_manager(autoload=False)
    assert {h for h in vars(pm.hook) if h.startswith("floorctl_")} == set(specs)


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_plugin_hooks_are_documented(name: str) -> None:
    fn = hookspec_functions()[name]
    headings = documented_hooks().get(name)
    assert headings, f"docs/plugins.md has no section for {name}"
    assert headings == [expected_heading(name, fn)], (
        f"docs/plugins.md: the heading of {name} must be its exact signature "
        f"`## {expected_heading(name, fn)}`, found {headings}"
    )


def test_docs_document_no_hook_that_does_not_exist() -> None:
    unknown = sorted(set(documented_hooks()) - set(hookspec_functions()))
    assert not unknown, f"docs/plugins.md documents hooks not in floorctl/hookspecs.py: {unknown}"


def test_hook_headings_are_level_two_sections() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, fn in hookspec_functions().items():
        assert f"\n## {expected_heading(name, fn)}\n" in text


# --- kinds ----------------------------------------------------------------------------------


def test_plugin_kind_is_collected_with_its_owner() -> None:
    class AcmePlugin:
        __name__ = "acme"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("acme_probe", description="ACME probe"))

    plugin = AcmePlugin()
    pm = get_plugin_manager(autoload=False, plugins=[plugin])
    kinds = collect_kinds(pm)
    assert kinds.names() == sorted(["acme_probe", *BUILTIN_KINDS])
    assert kinds.owner("acme_probe") == pm.get_name(plugin) == "acme"
    assert kinds.owner("modbus") == kinds.owner("mqtt_json") == "generic"
    kind = kinds.get("acme_probe")
    assert kind is not None and kind.driver is ProbeDriver and kind.description == "ACME probe"


def test_builtin_kinds_come_through_the_same_hook() -> None:
    pm = get_plugin_manager(autoload=False)
    generic = pm.get_plugin("generic")
    assert generic is not None and generic.__name__ == "floorctl.plugins.generic"
    impls = pm.hook.floorctl_register_kinds.get_hookimpls()
    assert sorted(impl.plugin_name for impl in impls) == sorted(BUILTIN_PLUGINS)


def test_duplicate_kind_names_both_plugins() -> None:
    class First:
        __name__ = "first"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("probe"))

    class Second:
        __name__ = "second"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("probe"))

    pm = get_plugin_manager(autoload=False, plugins=[First(), Second()])
    with pytest.raises(
        KindError, match=r"kind 'probe' registered twice: by 'first' and by 'second'"
    ):
        collect_kinds(pm)


def test_a_plugin_cannot_take_over_a_builtin_kind() -> None:
    class Squatter:
        __name__ = "squatter"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("modbus"))

    pm = get_plugin_manager(autoload=False, plugins=[Squatter()])
    with pytest.raises(
        KindError, match=r"kind 'modbus' registered twice: by 'generic' and by 'squatter'"
    ):
        collect_kinds(pm)


def test_registering_something_else_than_a_kind_names_the_plugin() -> None:
    class Sloppy:
        __name__ = "sloppy"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add({"name": "probe"})  # type: ignore[arg-type]

    pm = get_plugin_manager(autoload=False, plugins=[Sloppy()])
    with pytest.raises(
        KindError, match=r"plugin 'sloppy' registered \{'name': 'probe'\}, not a Kind"
    ):
        collect_kinds(pm)


def test_kinds_implementation_may_take_no_arguments() -> None:
    calls: list[str] = []

    class Quiet:
        __name__ = "quiet"

        @hookimpl
        def floorctl_register_kinds(self) -> None:
            calls.append("called")

    pm = get_plugin_manager(autoload=False, plugins=[Quiet()])
    assert collect_kinds(pm).names() == BUILTIN_KINDS
    assert calls == ["called"]


def test_plugin_kind_options_and_validate_reach_check_config() -> None:
    @frozen
    class ProbeOptions:
        gain: float = 1.0

    def validate(device, options):  # the documented signature: (DeviceConfig, options)
        if options.gain <= 0:
            yield ("options", "gain"), "must be positive"
        for j, f in enumerate(device.fields):
            if f.name != "level":
                yield ("fields", j, "name"), "probes only measure 'level'"

    class Probes:
        __name__ = "probes"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("probe", options=ProbeOptions, validate=validate))

    kinds = collect_kinds(get_plugin_manager(autoload=False, plugins=[Probes()]))
    head = '[[mqtt]]\nname = "local"\n'
    good = head + textwrap.dedent(
        """
        [[device]]
        id = "p1"
        kind = "probe"
        options = { gain = 2.5 }
        fields = [{ name = "level" }]
        """
    )
    config = parse_config(good.encode(), kinds)
    assert config.device_options["p1"] == ProbeOptions(gain=2.5)

    bad = textwrap.dedent(
        """
        [[mqtt]]
        name = "local"

        [[device]]
        id = "p1"
        kind = "probe"
        options = { gain = -1.0 }
        fields = [{ name = "depth", register = "input" }]

        [[device]]
        id = "p2"
        kind = "probe"
        via = "local"
        options = { gain = "2" }
        """
    )
    with pytest.raises(ConfigError) as err:
        parse_config(bad.encode(), kinds, filename="devices.toml")
    problems = {(p.path, p.message) for p in err.value.problems}
    assert ("device[p1].options.gain", "must be positive") in problems
    assert ("device[p1].fields[depth].name", "probes only measure 'level'") in problems
    assert ("device[p1].fields[depth].register", "not a field key of kind 'probe'") in problems
    assert ("device[p2].via", "kind 'probe' opens its own connection; remove via") in problems
    assert ("device[p2].options.gain", "expected a number, got string '2'") in problems


# --- loading: check_pending, autoload, the environment variable ----------------------------


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def floorctl_register_kind(self, registry: KindRegistry) -> None:  # missing "s"
            raise AssertionError("never called")

    with pytest.raises(
        pluggy.PluginValidationError, match=r"unknown hook 'floorctl_register_kind'"
    ):
        get_plugin_manager(autoload=False, plugins=[Typo()])


def test_misspelled_hook_argument_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def floorctl_register_kinds(self, registy: KindRegistry) -> None:
            raise AssertionError("never called")

    with pytest.raises(pluggy.PluginValidationError, match=r"registy"):
        get_plugin_manager(autoload=False, plugins=[Typo()])


def test_a_function_without_hookimpl_is_not_an_implementation() -> None:
    class Unmarked:
        __name__ = "unmarked"

        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("probe"))

    pm = get_plugin_manager(autoload=False, plugins=[Unmarked()])
    assert "probe" not in collect_kinds(pm)


PLUGIN_MODULE = "floorctl_test_entry_point_plugin"


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution on sys.path with a ``floorctl`` entry point, as pip would leave it."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(
        textwrap.dedent(
            """
            from floorctl import hookimpl
            from floorctl.driver import PolledDriver
            from floorctl.kinds import Kind, Transport

            class ProbeDriver(PolledDriver):
                async def poll(self):
                    return []

            @hookimpl
            def floorctl_register_kinds(registry):
                registry.add(Kind(name="ep_probe", driver=ProbeDriver, transport=Transport.NONE,
                                  description="from an entry point"))
            """
        )
    )
    dist_info = tmp_path / "floorctl_test_ep-1.2.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: floorctl-test-ep\nVersion: 1.2\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nep_probe = {PLUGIN_MODULE}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    yield "ep_probe"
    sys.modules.pop(PLUGIN_MODULE, None)


def test_entry_points_are_autoloaded(installed_plugin: str) -> None:
    pm = get_plugin_manager()
    assert pm.get_plugin(installed_plugin) is not None
    kinds = collect_kinds(pm)
    assert kinds.owner("ep_probe") == installed_plugin
    rows = {name: (origin, hooks) for name, origin, hooks in plugin_names(pm)}
    assert rows[installed_plugin] == ("floorctl-test-ep 1.2", ["floorctl_register_kinds"])
    assert rows["generic"] == ("floorctl.plugins.generic", ["floorctl_register_kinds"])


@pytest.mark.parametrize("value", ["1", "true", "0"])  # like pytest's: any non-empty value
def test_disable_autoload_env_keeps_builtins_only(
    installed_plugin: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    pm = get_plugin_manager()
    assert pm.get_plugin(installed_plugin) is None
    assert PLUGIN_MODULE not in sys.modules  # not even imported
    assert [name for name, _, _ in plugin_names(pm)] == sorted(BUILTIN_PLUGINS)
    assert collect_kinds(pm).names() == collect_kinds(get_plugin_manager(autoload=False)).names()


def test_explicit_autoload_overrides_the_env(
    installed_plugin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert get_plugin_manager(autoload=True).get_plugin(installed_plugin) is not None
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert get_plugin_manager(autoload=False).get_plugin(installed_plugin) is None


def test_entry_point_named_like_a_builtin_is_skipped(installed_plugin: str, tmp_path: Path) -> None:
    """Documented in docs/plugins.md: pick a unique entry-point name."""
    (tmp_path / "floorctl_test_ep-1.2.dist-info" / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ngeneric = {PLUGIN_MODULE}\n"
    )
    pm = get_plugin_manager()
    assert pm.get_plugin("generic").__name__ == "floorctl.plugins.generic"
    assert "ep_probe" not in collect_kinds(pm)


# --- the command line -------------------------------------------------------------------------


class Greeter:
    """A plugin adding a command, as a third-party package would."""

    __name__ = "greeter"

    @hookimpl
    def floorctl_add_commands(self, cli: click.Group) -> None:
        @cli.command("hello")
        @click.option("--name", default="floor")
        @click.pass_obj
        def hello(obj: cli_module.Ctx, name: str) -> None:
            """Say hello from a plugin."""
            click.echo(f"hello {name}: {len(obj.kinds)} kinds")


@pytest.fixture
def cli_group(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """floorctl's top-level group, with whatever tests add to it removed afterwards."""
    group = cli_module.cli
    monkeypatch.setattr(group, "commands", dict(group.commands))
    return group


def test_add_commands_shows_in_help(cli_group: click.Group) -> None:
    # the wiring of floorctl.cli.main(): build the manager, let plugins add commands, run
    pm = get_plugin_manager(autoload=False, plugins=[Greeter()])
    pm.hook.floorctl_add_commands(cli=cli_group)
    runner = CliRunner()
    result = runner.invoke(cli_group, ["--help"], obj=cli_module.Ctx(pm))
    assert result.exit_code == 0, result.output
    assert re.search(r"^  hello\s+Say hello from a plugin\.$", result.output, re.M), result.output
    assert re.search(r"^  plugins\s", result.output, re.M)  # the built-in commands are still there

    result = runner.invoke(cli_group, ["hello", "--name", "suite"], obj=cli_module.Ctx(pm))
    assert result.exit_code == 0, result.output
    assert result.output == f"hello suite: {len(BUILTIN_KINDS)} kinds\n"


def test_main_wires_add_commands(
    cli_group: click.Group, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        cli_module,
        "get_plugin_manager",
        lambda: get_plugin_manager(autoload=False, plugins=[Greeter()]),
    )
    monkeypatch.setattr(sys, "argv", ["floorctl", "--help"])
    with pytest.raises(SystemExit) as exit_:
        cli_module.main()
    assert exit_.value.code == 0
    assert "Say hello from a plugin." in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", ["floorctl", "hello"])
    with pytest.raises(SystemExit) as exit_:
        cli_module.main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"hello floor: {len(BUILTIN_KINDS)} kinds\n"


def test_floorctl_plugins_lists_builtin_plugin_with_its_kinds(cli_group: click.Group) -> None:
    pm = get_plugin_manager(autoload=False)
    result = CliRunner().invoke(cli_group, ["plugins"], obj=cli_module.Ctx(pm))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("generic  (floorctl.plugins.generic)")
    assert re.fullmatch(r"  kind modbus +via modbus +Modbus TCP device .*", lines[start + 1])
    assert re.fullmatch(
        r"  kind mqtt_json +via mqtt +device or gateway publishing JSON .*", lines[start + 2]
    )
    assert lines[start + 3] == "  hooks: floorctl_register_kinds"
    for name in BUILTIN_PLUGINS:
        assert f"{name}  (floorctl.plugins.{name})" in lines
    assert lines[-1] == "hooks: " + ", ".join(sorted(hookspec_functions()))


def test_floorctl_plugins_lists_a_test_plugin(cli_group: click.Group) -> None:
    class AcmePlugin:
        __name__ = "acme"

        @hookimpl
        def floorctl_register_kinds(self, registry: KindRegistry) -> None:
            registry.add(probe_kind("acme_probe", description="ACME probe"))

        @hookimpl
        def floorctl_on_reading(self, reading: Reading) -> None:
            pass

    pm = get_plugin_manager(autoload=False, plugins=[AcmePlugin()])
    runner = CliRunner()
    result = runner.invoke(cli_group, ["plugins"], obj=cli_module.Ctx(pm))
    assert result.exit_code == 0, result.output
    assert re.search(r"^acme  \(acme\)$", result.output, re.M), result.output
    assert re.search(r"^  kind acme_probe +via none +ACME probe$", result.output, re.M)
    assert "  hooks: floorctl_on_reading, floorctl_register_kinds" in result.output

    result = runner.invoke(cli_group, ["plugins", "--json"], obj=cli_module.Ctx(pm))
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["acme"]["kinds"] == ["acme_probe"]
    assert rows["generic"]["kinds"] == ["modbus", "mqtt_json"]


# --- runtime notifications --------------------------------------------------------------------


def test_notification_hooks_reach_every_plugin() -> None:
    seen: list[tuple[str, str]] = []

    class Listener:
        __name__ = "listener"

        @hookimpl
        def floorctl_on_reading(self, reading: Reading) -> None:
            seen.append(("reading", reading.point))

    pm = get_plugin_manager(autoload=False, plugins=[Listener()])
    reading = Reading("d1", "t", 21.0, Quality.GOOD)
    assert pm.hook.floorctl_on_reading(reading=reading) == []  # on_* hooks return nothing
    assert seen == [("reading", "t")]


async def test_probe_driver_honours_the_driver_contract() -> None:
    """The driver the test kinds use is a real PolledDriver: start -> read_once -> stop."""
    kinds = KindRegistry()
    kinds.add(probe_kind("probe"))
    toml = """
        [[mqtt]]
        name = "m"

        [[device]]
        id = "p1"
        kind = "probe"
        fields = [{ name = "level", unit = "%" }]
    """
    config = parse_config(textwrap.dedent(toml).encode(), kinds)
    device = config.devices[0]
    driver = kinds.get("probe").driver(DeviceContext(device, config.device_options["p1"], hub=None))  # type: ignore[union-attr]
    await driver.start()
    try:
        (reading,) = await driver.read_once(1.0)
    finally:
        await driver.stop()
    assert (reading.device, reading.point, reading.value, reading.quality, reading.unit) == (
        "p1", "level", 1.0, Quality.GOOD, "%",
    )  # fmt: skip

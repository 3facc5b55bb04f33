"""The ``floorctl`` command line. Plugins add commands through ``floorctl_add_commands``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import sys
from typing import Any

import click
import pluggy

from floorctl import __version__
from floorctl.alarms.cli import parse_assignments
from floorctl.alarms.cli import register_commands as register_alarm_commands
from floorctl.batches import register_commands as register_batch_commands
from floorctl.config import Config, ConfigError, load_config
from floorctl.demo import register_commands as register_demo_commands
from floorctl.kinds import KindRegistry
from floorctl.model import Quality, Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager, plugin_names
from floorctl.scheduler.cli import register_commands as register_schedule_commands
from floorctl.store.cli import register_commands as register_store_commands
from floorctl.tui.cli import register_commands as register_tui_commands

DEFAULT_CONFIG = "devices.toml"
#: seconds; the daemon's GIL switch interval (CPython's default is 0.005), see _run_floor
GIL_SWITCH_INTERVAL = 0.001


class Ctx:
    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or get_plugin_manager()
        self.kinds: KindRegistry = collect_kinds(self.pm)

    def load(self, path: str) -> Config:
        try:
            return load_config(path, self.kinds)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem.format(exc.filename), err=True)
            n = len(exc.problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''} in {exc.filename}", err=True)
            sys.exit(1)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 2:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="floorctl")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """floorctl: the production-floor controller for 503B outsourcing facilities."""
    ctx.ensure_object(Ctx)


config_argument = click.argument("file", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))


@cli.command("check-config")
@config_argument
@click.pass_obj
def check_config(obj: Ctx, file: str) -> None:
    """Check a devices.toml; list every problem with its key path and line.

    Exit 0 when clean, 1 when there are problems, 2 on a usage error.
    """
    config = obj.load(file)
    click.echo(
        f"{file}: ok: {_n(len(config.rooms), 'room')}, {_n(len(config.devices), 'device')}, "
        f"{_n(sum(len(d.fields) for d in config.devices), 'point')}, "
        f"{len(config.mqtt)} MQTT and {_n(len(config.modbus), 'Modbus connection')}"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration format."""


@config_group.command("schema")
@click.pass_obj
def config_schema(obj: Ctx) -> None:
    """Print the JSON Schema of devices.toml (including every installed kind's options)."""
    from floorctl.schema import json_schema

    click.echo(json.dumps(json_schema(obj.kinds), indent=2))


@config_group.command("show")
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def config_show(obj: Ctx, file: str, as_json: bool) -> None:
    """Print the rooms and every point's resolved alert and action limits, with where each
    limit came from (default, room override or point override)."""
    from floorctl.limits import LIMIT_KEYS, resolve_limits

    config = obj.load(file)
    limits = resolve_limits(config, obj.kinds)
    if as_json:
        rooms = [
            {
                "id": r.id,
                "name": r.name,
                "iso_class": r.iso_class.value,
                "pressure": r.pressure.value if r.pressure else None,
                "pressure_reference": r.pressure_reference,
                "within": r.within,
            }
            for r in config.rooms
        ]
        click.echo(
            json.dumps(
                {"rooms": rooms, "points": [pl.as_dict() for pl in limits.values()]}, indent=2
            )
        )
        return
    by_room: dict[str | None, list[Any]] = {}
    for pl in limits.values():
        by_room.setdefault(pl.room, []).append(pl)
    for r in [*config.rooms, None]:
        rid = r.id if r is not None else None
        points = by_room.get(rid, [])
        if r is None and not points:
            continue
        if r is None:
            click.echo("no room")
        else:
            parts = [
                str(r.iso_class),
                f"{r.pressure} pressure" if r.pressure else "no pressure regime",
            ]
            if r.pressure_reference:
                parts.append(f"against {r.pressure_reference}")
            if r.within:
                parts.append(f"within {r.within}")
            click.echo(f"room {r.id}{f' ({r.name})' if r.name else ''}: {', '.join(parts)}")
        for pl in points:
            unit = f" {pl.unit}" if pl.unit else ""
            click.echo(f"  {pl.device}/{pl.point}  {pl.quantity.value}{unit}")
            for key in LIMIT_KEYS:
                lim = pl.get(key)
                value = "-" if lim.value is None else f"{lim.value:g}"
                source = "" if lim.value is None else f"  [{lim.source}]"
                click.echo(f"    {key:<12} {value:>10}{source}")
    unknown = [
        f"{d.id}/{f.name}" for d in config.devices for f in d.fields if (d.id, f.name) not in limits
    ]
    if unknown:
        click.echo(
            f"no limits (quantity unknown; set `quantity` on the field): {', '.join(unknown)}"
        )


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(obj: Ctx, as_json: bool) -> None:
    """List plugins, the device kinds they register and the hooks they implement."""
    rows = plugin_names(obj.pm)
    kinds_by_plugin: dict[str, list[str]] = {}
    for kind in obj.kinds:
        kinds_by_plugin.setdefault(obj.kinds.owner(kind.name), []).append(kind.name)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"name": n, "origin": o, "hooks": h, "kinds": kinds_by_plugin.get(n, [])}
                    for n, o, h in rows
                ],
                indent=2,
            )
        )
        return
    for name, origin, hooks in rows:
        click.echo(f"{name}  ({origin})")
        for kname in kinds_by_plugin.get(name, []):
            kind = obj.kinds.get(kname)
            assert kind is not None
            click.echo(f"  kind {kname:<14} via {kind.transport.value:<7} {kind.description}")
        click.echo(f"  hooks: {', '.join(hooks) or '-'}")
    click.echo(
        f"\nhooks: {', '.join(sorted(h for h in dir(obj.pm.hook) if h.startswith('floorctl_')))}"
    )


def format_reading(r: Reading, room: str | None = None) -> str:
    when = dt.datetime.fromtimestamp(r.receive_time, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    value = (
        "-"
        if r.value is None
        else (f"{r.value:.6g}" if isinstance(r.value, float) else str(r.value))
    )
    unit = f" {r.unit}" if r.unit and r.value is not None else ""
    flag = (
        "" if r.quality is Quality.GOOD else f"  [{r.quality}{': ' + r.detail if r.detail else ''}]"
    )
    where = f"{room}  " if room else ""
    return f"{when}Z  {where}{r.device}/{r.point} = {value}{unit}{flag}"


@cli.command("run")
@config_argument
@click.option("--once", is_flag=True, help="Read every device once, print the readings and exit.")
@click.option("--print", "print_readings", is_flag=True, help="Also print every reading to stdout.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
@click.pass_obj
def run(obj: Ctx, file: str, once: bool, print_readings: bool, verbose: int, quiet: bool) -> None:
    """Run the floor: read every device of FILE and publish the live floor on MQTT."""
    _setup_logging(verbose, quiet)
    config = obj.load(file)
    if once:
        sys.exit(asyncio.run(_run_once(obj, config)))
    asyncio.run(_run_floor(obj, config, print_readings))


async def _run_floor(obj: Ctx, config: Config, print_readings: bool) -> None:
    from floorctl.daemon import Floor

    rooms = {d.id: d.room for d in config.devices}
    sinks = []
    if print_readings:
        sinks.append(lambda r: click.echo(format_reading(r, rooms.get(r.device))))
    floor = Floor(config, obj.pm, obj.kinds, sinks=sinks)
    floor.install_signal_handlers()
    # everything built so far lives as long as the daemon: keep it out of the collector's
    # full passes (they were the longest event-loop pauses, hence the poll-jitter tail)
    gc.collect()
    gc.freeze()
    # the store thread turns readings into rows holding the GIL; at the default 5 ms switch
    # interval the event loop waited up to 5 ms at a time for it, a message's alarm with it
    # (docs/performance.md, Alarms: the p99 at 5,000 readings/s fell from 22 ms to 13 ms)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    logging.getLogger("floorctl").info(
        "floor %s: %d devices, publishing under %s/ on %s",
        config.floor.id,
        len(floor.devices),
        config.floor.prefix,
        config.state_connection.name,
    )
    await floor.run()


async def _run_once(obj: Ctx, config: Config) -> int:
    """Like Telegraf's --test: each device read once, readings printed, nothing published."""
    from floorctl.daemon import Floor

    floor = Floor(config, obj.pm, obj.kinds, publish=False)
    hub_tasks = [asyncio.create_task(hub.run()) for hub in floor.hubs.values()]
    silent: list[str] = []
    try:

        async def one(rt: Any) -> list[Reading]:
            kind = obj.kinds.get(rt.config.kind)
            wait = max(float(rt.config.interval) * 3, float(rt.config.request_timeout) + 1.0)
            driver = None
            try:
                driver = kind.driver(rt.ctx)  # type: ignore[union-attr]
                if rt.ctx.hub is not None and hasattr(rt.ctx.hub, "wait_connected"):
                    await rt.ctx.hub.wait_connected(timeout=wait)
                await driver.start()
                return await driver.read_once(wait)
            except Exception as exc:
                rt.ctx.counters.error(str(exc) or type(exc).__name__)
                return []
            finally:
                if driver is not None:
                    with contextlib.suppress(Exception):
                        await driver.stop()

        active = [rt for rt in floor.devices.values() if rt.config.enabled]
        results = await asyncio.gather(*(one(rt) for rt in active))
        for rt, readings in zip(active, results, strict=True):
            if not readings:
                silent.append(f"{rt.config.id}: {rt.ctx.counters.last_error or 'no reading'}")
            for r in readings:
                click.echo(format_reading(r, rt.config.room))
    finally:
        for t in hub_tasks:
            t.cancel()
        await asyncio.gather(*hub_tasks, return_exceptions=True)
    for line in silent:
        click.echo(f"no reading from {line}", err=True)
    return 1 if silent else 0


@cli.command("device")
@click.argument("device_id", metavar="DEVICE")
@click.argument("command", required=False)
@click.argument("args", nargs=-1, metavar="[KEY=VALUE]...")
@click.option(
    "-c",
    "--config",
    "file",
    default=DEFAULT_CONFIG,
    type=click.Path(dir_okay=False),
    show_default=True,
    help="The floor's devices.toml.",
)
@click.option(
    "--direct",
    is_flag=True,
    help="Talk to the device itself instead of through the running daemon.",
)
@click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait for the reply.")
@click.option("--user", default=None, help="Your user id: commands through the daemon are signed.")
@click.option("--comment", default="", help="Why (kept with the signature).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password or PIN from the first line of stdin instead of a prompt.",
)
@click.pass_obj
def device(
    obj: Ctx,
    device_id: str,
    command: str | None,
    args: tuple[str, ...],
    file: str,
    direct: bool,
    timeout: float,
    user: str | None,
    comment: str,
    password_stdin: bool,
) -> None:
    """Run a device command (tare, zero, ...), or list a device's commands.

    The request goes to the running daemon (`floorctl run`) over MQTT, signed with --user and
    the password or PIN (asked for); the daemon checks the signature and role, records it, runs
    the command through the device's driver and replies. --direct opens the device itself, for
    commissioning when no daemon holds it: nothing is signed or recorded then.
    Exit 0 when the device did it, 1 when refused or failed, 2 on a usage error.
    """
    config = obj.load(file)
    dev = config.device(device_id)
    if dev is None:
        raise click.UsageError(
            f"no device {device_id!r} in {file} (devices: "
            f"{', '.join(d.id for d in config.devices)})"
        )
    kind = obj.kinds.get(dev.kind)
    commands = _device_commands(kind, dev, config.device_options.get(dev.id))
    if command is None:
        if not commands:
            click.echo(f"{device_id} ({dev.kind}) has no commands")
        for name, what in sorted(commands.items()):
            click.echo(f"{name:<12} {what}")
        return
    if command not in commands:
        raise click.UsageError(
            f"device {device_id!r} ({dev.kind}) has no command {command!r} "
            f"(it has: {', '.join(sorted(commands)) or 'none'})"
        )
    arguments = parse_assignments(args, "argument")
    signer = None
    if not direct:
        if not user:
            raise click.UsageError(
                "--user is required: device commands through the daemon are signed "
                "(or --direct, for commissioning without a daemon)"
            )
        from floorctl.alarms.cli import read_signer

        signer = read_signer(user, comment, password_stdin)
    if direct:
        answer = asyncio.run(_command_direct(obj, config, dev.id, command, arguments, timeout))
    else:
        answer = asyncio.run(
            _command_via_daemon(config, dev.id, command, arguments, signer, timeout)
        )
    status = answer["status"]
    if status == "done":
        click.echo(
            f"{device_id} {command}: done"
            + (f": {answer['result']}" if answer.get("result") else "")
        )
        return
    click.echo(f"{device_id} {command}: {status}: {answer.get('error')}", err=True)
    sys.exit(1)


def _device_commands(kind: Any, dev: Any, options: Any) -> dict[str, str]:
    """The commands of this device: a driver may offer fewer than its class (a gateway
    balance without a command topic has none), so ask an instance built without a hub."""
    from floorctl.driver import DeviceContext

    if kind is None:
        return {}
    try:
        driver = kind.driver(DeviceContext(device=dev, options=options, hub=None))
        return dict(getattr(driver, "commands", {}))
    except Exception:
        return dict(getattr(kind.driver, "commands", {}))


async def _command_via_daemon(
    config: Config,
    device_id: str,
    command: str,
    args: dict[str, Any],
    signer: Any,
    timeout: float,
) -> dict[str, Any]:
    from floorctl.client import ClientError, request
    from floorctl.commands import CommandRequest
    from floorctl.publisher import Topics

    topics = Topics(config.floor.prefix)
    req = CommandRequest.new(device_id, command, args, signer)
    try:
        return await request(
            config.state_connection,
            topics.command(device_id),
            req.payload(),
            reply_topic=topics.reply(req.id),
            request_id=req.id,
            timeout=timeout,
        )
    except ClientError as exc:
        return {"status": "failed", "error": f"{exc} (--direct talks to the device itself)"}


async def _command_direct(
    obj: Ctx, config: Config, device_id: str, command: str, args: dict[str, Any], timeout: float
) -> dict[str, Any]:
    from floorctl.commands import CommandRequest
    from floorctl.daemon import DeviceState, Floor

    floor = Floor(config, obj.pm, obj.kinds, publish=False)
    rt = floor.devices[device_id]
    hub = rt.ctx.hub
    hub_task = asyncio.create_task(hub.run()) if hub is not None else None
    try:
        kind = obj.kinds.get(rt.config.kind)
        assert kind is not None
        rt.driver = kind.driver(rt.ctx)
        async with asyncio.timeout(timeout):
            if hub is not None and hasattr(hub, "wait_connected"):
                await hub.wait_connected()
            await rt.driver.start()
            rt.state = DeviceState.ONLINE
            return await floor.run_command(CommandRequest.new(device_id, command, args))
    except TimeoutError:
        return {"status": "failed", "error": f"no answer within {timeout:g}s"}
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if rt.driver is not None:
            with contextlib.suppress(Exception):
                await rt.driver.stop()
        if hub_task is not None:
            hub_task.cancel()
            await asyncio.gather(hub_task, return_exceptions=True)
        if hasattr(hub, "close"):
            hub.close()


@cli.command("simulate")
@config_argument
@click.option(
    "--scenario",
    "scenario_file",
    metavar="FILE",
    default=None,
    help="Scenario TOML scripting faults on a timeline (or a built-in name: demo, smoke).",
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (signals and the scenario's timeline).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed for the signal models (default: the scenario's seed, else 0).",
)
@click.option("-v", "--verbose", count=True)
@click.pass_obj
def simulate(
    obj: Ctx, file: str, scenario_file: str | None, speed: float, seed: int | None, verbose: int
) -> None:
    """Serve every device of FILE from protocol-true simulators (Modbus TCP, MQTT).

    With --scenario, faults (excursions, silent devices, Modbus exceptions, malformed
    payloads, kind-specific faults) start and end on the scenario's timeline; a scenario
    that does not fit FILE is reported before anything starts (exit 1).
    """
    import math
    import signal

    from simulators.modbus_device import SimulatorError
    from simulators.scenario import Scenario, ScenarioError, resolve_scenario
    from simulators.serve import serve
    from simulators.signals import SimulateConfigError

    if not (math.isfinite(speed) and speed > 0):
        raise click.BadParameter(
            f"must be a finite number > 0, got {speed:g}", param_hint="--speed"
        )

    def problems(lines: list[str], filename: str) -> None:
        for line in lines:
            click.echo(line, err=True)
        n = len(lines)
        click.echo(f"{n} problem{'s' if n != 1 else ''} in {filename}", err=True)
        sys.exit(1)

    _setup_logging(verbose, False)
    config = obj.load(file)
    scenario = None
    if scenario_file is not None:
        try:
            scenario = Scenario.load(resolve_scenario(scenario_file))
        except ScenarioError as exc:
            problems([p.format(exc.filename) for p in exc.problems], exc.filename)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, seed=seed, stop=stop, speed=speed, scenario=scenario)

    try:
        asyncio.run(main())
    except ScenarioError as exc:
        problems([p.format(exc.filename) for p in exc.problems], exc.filename)
    except SimulateConfigError as exc:
        problems([f"{file}: {path}: {msg}" for path, msg in exc.problems], file)
    except SimulatorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


# records: `floorctl audit verify|export`, `floorctl user add|disable|unlock|passwd|list`
register_store_commands(cli)
register_schedule_commands(cli)
register_alarm_commands(cli)
register_demo_commands(cli)
register_tui_commands(cli)
register_batch_commands(cli)


def main() -> None:
    pm = get_plugin_manager()
    pm.hook.floorctl_add_commands(cli=cli)
    try:
        cli(obj=Ctx(pm))
    except KeyboardInterrupt:
        sys.exit(130)

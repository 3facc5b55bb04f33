"""``floorctl demo``: the demo floor on one machine, with nothing installed but the package.

One process, one event loop, in this order:

1. an embedded MQTT broker (amqtt, :mod:`floorctl.demo_broker`) on a free 127.0.0.1 port,
   unless ``--broker HOST:PORT`` names a real one;
2. a temporary store with the demo users (:data:`DEMO_USERS`);
3. the floor's protocol-true simulators (``floorctl simulate FILE --scenario demo``) on free
   ports, passed to devices.toml through ``FLOORCTL_MODBUS_PORT``, ``FLOORCTL_MODBUS_PORT_2``
   and ``FLOORCTL_SICS_PORT``;
4. the daemon (:class:`floorctl.daemon.Floor`), recording into the store;
5. the terminal UI (:class:`floorctl.tui.app.FloorApp`) in the foreground, with the demo
   users' credentials in its banner; or, with ``--headless``, readings and alarm transitions
   printed as ``floorctl run --print`` prints readings.

Quitting the UI (``q``), SIGINT or SIGTERM stop everything in the reverse order. Why the
simulators run in this process and not in a child: docs/tui.md, "The demo".
:func:`running_demo` is the same thing without a UI, for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import click
from attrs import frozen

from floorctl import hookimpl
from floorctl.config import Config, ConfigError, load_config

if TYPE_CHECKING:  # the daemon, amqtt and the simulators load only when the demo runs
    import pluggy

    from floorctl.alarms.engine import Transition
    from floorctl.daemon import Floor
    from floorctl.demo_broker import EmbeddedBroker
    from floorctl.kinds import KindRegistry
    from floorctl.limits import Quantity
    from floorctl.model import Reading
    from floorctl.store.users import ScryptParams

__all__ = [
    "DEMO_ADMIN",
    "DEMO_USERS",
    "DemoError",
    "DemoFloor",
    "DemoUser",
    "banner",
    "create_demo_users",
    "parse_broker",
    "register_commands",
    "running_demo",
]

log = logging.getLogger("floorctl.demo")

#: the devices.toml variables the demo sets to the ports it chose
PORT_VARIABLES = ("FLOORCTL_MODBUS_PORT", "FLOORCTL_MODBUS_PORT_2", "FLOORCTL_SICS_PORT")
#: seconds the daemon and the simulators each get to stop before the demo gives up on them
STOP_TIMEOUT = 10.0


@frozen
class DemoUser:
    user_id: str
    printed_name: str
    role: str
    pin: str


#: the first user of the demo store (adds the others); PINs this short are for the demo only
DEMO_ADMIN = DemoUser("admin", "Demo Admin", "admin", "9999")
#: the people who sign alarm actions and device commands in the demo (docs/alarms.md)
DEMO_USERS = (
    DemoUser("tech", "Terry Tech", "technician", "1111"),
    DemoUser("sup", "Sam Supervisor", "supervisor", "2222"),
    DemoUser("qa", "Quinn QA", "qa", "3333"),
)


class DemoError(Exception):
    """The demo could not start: the message says what and where."""


def banner(users: Iterable[DemoUser] = DEMO_USERS) -> str:
    """The one line the UI shows on every screen: who can sign, with which PIN."""
    people = ", ".join(f"{u.user_id} / {u.pin} ({u.role})" for u in users)
    return f"Demo users (id / PIN): {people}"


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6-address]:PORT`` for IPv6) -> (host, port); ValueError says why."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, [{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"the port must be a number, got {port_text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"the port must be between 1 and 65535, got {port}")
    return host, port


def create_demo_users(
    path: Path,
    *,
    admin: DemoUser = DEMO_ADMIN,
    users: Iterable[DemoUser] = DEMO_USERS,
    params: ScryptParams | None = None,
) -> None:
    """A new store at ``path`` with the demo admin and users, each ready to sign (their PIN
    set by themselves, so no change is due), every step in the store's audit trail."""
    from floorctl.store.db import Store
    from floorctl.store.users import Users

    with Store(path) as store:
        accounts = Users(store, params=params)
        first = accounts.add(
            admin.user_id, admin.printed_name, admin.role, admin.pin, by=None, reason="demo set-up"
        )
        for u in users:
            accounts.add(u.user_id, u.printed_name, u.role, "0000", by=first, reason="demo set-up")
            me = accounts.authenticate(u.user_id, "0000")
            accounts.set_secret(u.user_id, u.pin, by=me, reason="demo set-up")


@attrs.define(eq=False)
class DemoFloor:
    """What :func:`running_demo` started (all of it running while the context is open)."""

    config: Config
    floor: Floor
    broker_host: str
    broker_port: int
    #: the embedded broker, or None when ``broker`` named a real one
    embedded: EmbeddedBroker | None
    store: Path | None
    workdir: Path
    #: the devices.toml variables set for the simulators' ports
    env: dict[str, str]
    scenario: Any  # simulators.scenario.ScenarioRun | None

    @property
    def broker(self) -> str:
        return f"{self.broker_host}:{self.broker_port}"


def demo_config(
    file: str | Path,
    kinds: KindRegistry,
    *,
    broker: tuple[str, int],
    env: Mapping[str, str],
) -> Config:
    """``file`` loaded with ``env`` over the process environment, every ``[[mqtt]]``
    connection pointed at ``broker`` (the simulators' gateways and the daemon's state
    connection meet there). ConfigError as ``floorctl check-config`` reports it."""
    config = load_config(file, kinds, env={**os.environ, **env})
    host, port = broker
    mqtt = tuple(attrs.evolve(c, host=host, port=port) for c in config.mqtt)
    return attrs.evolve(config, mqtt=mqtt)


@contextlib.asynccontextmanager
async def running_demo(
    file: str | Path,
    pm: pluggy.PluginManager,
    kinds: KindRegistry,
    *,
    workdir: Path,
    broker: tuple[str, int] | None = None,
    scenario: str | Path | None = "demo",
    speed: float = 1.0,
    sinks: Iterable[Callable[[Reading], None]] = (),
    alarm_defaults: Mapping[Quantity, Mapping[str, object]] | None = None,
    scrypt: ScryptParams | None = None,
) -> AsyncIterator[DemoFloor]:
    """Start the demo's parts in this event loop (broker, store with the demo users,
    simulators with ``scenario``, daemon) and stop them all, in reverse order, on leaving.

    :param workdir: an existing folder for the store (``floorctl.db``); the caller removes it.
    :param broker: a real broker's (host, port); None starts the embedded one.
    :param scenario: a scenario file or built-in name (``demo``); None: no faults.
    :param speed: simulated seconds per real second (signals and the scenario's timeline;
        the daemon's alarm delays stay in real time).
    :param alarm_defaults: per-quantity alarm settings over devices.toml's (tests shorten
        the on-delays with it).
    :param scrypt: the demo users' key-derivation cost (default: the store's default).
    """
    from floorctl.daemon import Floor
    from floorctl.demo_broker import EmbeddedBroker, free_ports
    from simulators.scenario import Scenario, ScenarioRun, resolve_scenario
    from simulators.serve import serve

    run = None
    if scenario is not None:
        run = ScenarioRun(Scenario.load(resolve_scenario(str(scenario))))  # ScenarioError

    async with contextlib.AsyncExitStack() as stack:
        embedded: EmbeddedBroker | None = None
        if broker is None:
            embedded = EmbeddedBroker()
            await embedded.start()
            stack.push_async_callback(embedded.stop)
            broker = (embedded.host, embedded.port)
        store = workdir / "floorctl.db"
        ports = free_ports(len(PORT_VARIABLES))
        env = {
            "FLOORCTL_MQTT_PORT": str(broker[1]),
            "FLOORCTL_STORE": str(store),
            **{name: str(port) for name, port in zip(PORT_VARIABLES, ports, strict=True)},
        }
        config = demo_config(file, kinds, broker=broker, env=env)
        store_path = config.floor.store_path(config.path)
        users = None
        if store_path is not None:
            # scrypt takes about 0.1-0.3 s per PIN: in a thread, while the simulators start
            users = asyncio.create_task(
                asyncio.to_thread(create_demo_users, store_path, params=scrypt)
            )
            # a thread cannot be cancelled: whatever happens next, wait until it is done
            stack.push_async_callback(asyncio.gather, users, return_exceptions=True)

        stop_sims = asyncio.Event()
        sims_started = asyncio.Event()
        sims = asyncio.create_task(
            serve(
                config,
                stop=stop_sims,
                speed=speed,
                scenario=run,
                started=lambda _running: sims_started.set(),
            ),
            name="demo simulators",
        )

        async def stop_simulators() -> None:
            stop_sims.set()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await sims
            except TimeoutError:
                log.warning("the simulators did not stop within %gs", STOP_TIMEOUT)
            except Exception:  # it failed while running: said once, at the end
                if started.done() and not started.cancelled():
                    log.exception("the simulators failed")

        stack.push_async_callback(stop_simulators)
        started = asyncio.create_task(sims_started.wait())
        await asyncio.wait({sims, started}, return_when=asyncio.FIRST_COMPLETED)
        if sims.done():  # failed to start: ScenarioError, SimulatorError, SimulateConfigError
            started.cancel()
            sims.result()
            raise DemoError("the simulators stopped as soon as they started")
        if users is not None:
            await users

        floor = Floor(config, pm, kinds, sinks=list(sinks), alarm_defaults=alarm_defaults)
        daemon = asyncio.create_task(floor.run(), name="demo daemon")

        async def stop_daemon() -> None:
            floor.stop()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await daemon
            except TimeoutError:
                log.warning("the daemon did not stop within %gs", STOP_TIMEOUT)
            except Exception:
                if connected.done() and not connected.cancelled():
                    log.exception("the daemon failed")

        stack.push_async_callback(stop_daemon)
        connected = asyncio.create_task(floor.state_hub.wait_connected(15))
        await asyncio.wait({daemon, connected}, return_when=asyncio.FIRST_COMPLETED)
        if daemon.done():
            connected.cancel()
            daemon.result()
            raise DemoError("the daemon stopped as soon as it started")
        try:
            await connected
        except TimeoutError:
            raise DemoError(
                f"the daemon could not connect to the MQTT broker {broker[0]}:{broker[1]} "
                "within 15 s"
            ) from None
        yield DemoFloor(
            config=config,
            floor=floor,
            broker_host=broker[0],
            broker_port=broker[1],
            embedded=embedded,
            store=store_path,
            workdir=workdir,
            env=env,
            scenario=run,
        )


# --- the command ---------------------------------------------------------------------------


class AlarmPrinter:
    """Prints each alarm transition (the headless demo's view of the alarm engine)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    @hookimpl
    def floorctl_on_alarm(self, transition: Transition) -> None:
        t = transition
        when = dt.datetime.fromtimestamp(t.time, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        what = f"{t.severity} " if t.severity else ""
        value = "" if t.value is None else f", value {t.value:g}"
        limit = "" if t.limit is None else f", limit {t.limit:g}"
        who = f", by {t.user}" if t.user else ""
        self.echo(
            f"{when}Z  ALARM {t.device}/{t.point}: {t.from_state} -> {t.to_state} "
            f"({what}{t.cause}{value}{limit}{who})"
        )


def demo_app_class() -> type:
    """The floor's UI as the demo runs it: Ctrl-C quits (and so stops the demo) instead of
    Textual's hint to press Ctrl-Q, as a terminal user expects of a command in the
    foreground."""
    from textual.binding import Binding

    from floorctl.tui import app as tui_app
    from floorctl.tui.app import FloorApp

    class DemoApp(FloorApp):
        # Textual resolves a relative CSS path against the module of the class that runs
        CSS_PATH = Path(tui_app.__file__).with_name(str(FloorApp.CSS_PATH))
        BINDINGS: ClassVar[list[Any]] = [
            Binding("ctrl+c", "quit", "Quit", show=False, priority=True)
        ]

    return DemoApp


_DATE_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2})T(?=\d{2}:\d{2})")
_PLAN_START = re.compile(r'^start\s*=\s*"?(\d{4}-\d{2}-\d{2})T', re.M)
_PLAN_FLOOR = re.compile(r'^(floor\s*=\s*)"([^"]+)"', re.M)
_PLAN_BATCHES = re.compile(r'^(batches\s*=\s*)"([^"]+)"', re.M)


def rebase_plan(plan: Path, workdir: Path, today: dt.date) -> Path:
    """A copy of ``plan`` (and its batches file) in ``workdir`` with every date moved by the
    same number of days, so that the plan starts today at its own time of day and "now" falls
    inside it; its ``floor`` made absolute. A plan without a ``start`` is returned as it is."""
    text = plan.read_text(encoding="utf-8")
    m = _PLAN_START.search(text)
    if m is None:
        return plan
    offset = today - dt.date.fromisoformat(m.group(1))

    def shift(t: str) -> str:
        return _DATE_TIME.sub(
            lambda d: (dt.date.fromisoformat(d.group(1)) + offset).isoformat() + "T", t
        )

    dst = workdir / "plan"
    dst.mkdir(exist_ok=True)
    text = _PLAN_FLOOR.sub(
        lambda f: f'{f.group(1)}"{(plan.parent / f.group(2)).resolve().as_posix()}"', text
    )
    batches = _PLAN_BATCHES.search(text)
    if batches is not None:
        src = plan.parent / batches.group(2)
        (dst / src.name).write_text(shift(src.read_text(encoding="utf-8")), encoding="utf-8")
        text = _PLAN_BATCHES.sub(lambda b: f'{b.group(1)}"{src.name}"', text)
    out = dst / plan.name
    out.write_text(shift(text), encoding="utf-8")
    return out


def first_schedule(plan: Path, out: Path, time_limit: float = 5.0) -> str:
    """Solve ``plan`` once (the demo's schedule to start from); returns a one-line summary."""
    from floorctl.scheduler import SolveOptions, solve, write_schedule
    from floorctl.scheduler.plan import load_plan

    problem = load_plan(plan)
    result = solve(problem, SolveOptions(time_limit=time_limit, workers=2))
    if result.schedule is None:
        return f"no schedule for {plan.name} ({result.status.value})"
    write_schedule(out, result.schedule, problem)
    return f"schedule of {len(problem.batches)} batches ({result.status.value}) in {out.name}"


def _plan_default(file: str) -> Path | None:
    """The scheduler's demo plan next to the demo floor's devices.toml, if it is there."""
    plan = Path(file).resolve().parent / "examples" / "plans" / "demo" / "facility.toml"
    return plan if plan.is_file() else None


def register_commands(cli: click.Group) -> None:
    @cli.command("demo")
    @click.argument("file", default="devices.toml", type=click.Path(dir_okay=False))
    @click.option(
        "--broker",
        "broker_text",
        metavar="HOST:PORT",
        default=None,
        help="Use this MQTT broker instead of starting the embedded one.",
    )
    @click.option(
        "--scenario",
        default="demo",
        show_default=True,
        metavar="FILE",
        help="Scenario TOML for the simulators, or a built-in name (demo: the demo floor's).",
    )
    @click.option(
        "--speed",
        type=click.FloatRange(min=0, min_open=True, max=1e6),
        default=1.0,
        show_default=True,
        help="Simulated seconds per real second (signals and the scenario's timeline).",
    )
    @click.option(
        "--plan",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="The plan (facility.toml) for the Schedule screen "
        "[default: examples/plans/demo/facility.toml next to FILE].",
    )
    @click.option(
        "--headless",
        is_flag=True,
        help="No terminal UI: print readings and alarm transitions until SIGINT/SIGTERM.",
    )
    @click.option(
        "--keep",
        is_flag=True,
        help="Keep the demo's folder (store, log) at exit instead of removing it.",
    )
    @click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
    @click.pass_obj
    def demo(
        obj: Any,
        file: str,
        broker_text: str | None,
        scenario: str,
        speed: float,
        plan: Path | None,
        headless: bool,
        keep: bool,
        verbose: int,
    ) -> None:
        """The demo floor on this machine: MQTT broker, simulated devices with a scenario
        that raises alarms in the first minute, the daemon, and the terminal UI.

        The UI shows the demo users and their PINs (to acknowledge alarms and sign device
        commands). Quit with q (or Ctrl-C): everything stops. Without --broker, an embedded
        broker (amqtt: MQTT 3.1.1 only, demo scale) listens on a free 127.0.0.1 port.
        """
        from floorctl.cli import _setup_logging
        from floorctl.demo_broker import BrokerStartError

        broker = None
        if broker_text is not None:
            try:
                broker = parse_broker(broker_text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--broker") from None
        obj.load(file)  # every problem of FILE reported (exit 1) before anything starts
        if plan is None and not headless:
            plan = _plan_default(file)
        workdir = Path(tempfile.mkdtemp(prefix="floorctl-demo-"))
        root = logging.getLogger()
        logfile: logging.Handler | None = None
        if headless:
            _setup_logging(verbose, False)
        else:  # the UI owns the terminal: log to a file
            logfile = logging.FileHandler(workdir / "demo.log")
            logfile.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
            )
            root.addHandler(logfile)
            root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
            if verbose < 2:
                logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        code = 1
        try:
            main = _headless if headless else _with_ui
            code = asyncio.run(
                main(
                    obj,
                    file,
                    workdir=workdir,
                    broker=broker,
                    scenario=scenario,
                    speed=speed,
                    plan=plan,
                )
            )
        except DemoError as exc:
            click.echo(f"demo: {exc}", err=True)
        except BrokerStartError as exc:
            click.echo(f"demo: {exc}", err=True)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem.format(exc.filename), err=True)
        except Exception as exc:
            # the simulators' own errors (scenario, [device.simulate], ports) name their file
            from simulators.modbus_device import SimulatorError
            from simulators.scenario import ScenarioError
            from simulators.signals import SimulateConfigError

            if isinstance(exc, ScenarioError):
                for p in exc.problems:
                    click.echo(p.format(exc.filename), err=True)
            elif isinstance(exc, SimulateConfigError):
                for path, msg in exc.problems:
                    click.echo(f"{file}: {path}: {msg}", err=True)
            elif isinstance(exc, SimulatorError):
                click.echo(f"demo: simulators: {exc}", err=True)
            else:
                raise
        finally:
            if logfile is not None:
                root.removeHandler(logfile)
                logfile.close()
            if keep:
                store = workdir / "floorctl.db"
                click.echo(f"demo: kept {workdir}; the records: floorctl audit verify --db {store}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(code)


def _stop_on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    # SIGHUP: the terminal went away (a closed window, a dropped ssh session)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop)


def _describe(demo: DemoFloor, echo: Callable[[str], None]) -> None:
    where = "embedded amqtt" if demo.embedded is not None else "broker"
    ports = ", ".join(f"{k}={v}" for k, v in demo.env.items() if k in PORT_VARIABLES)
    echo(f"demo: MQTT {where} on {demo.broker}; floor under {demo.config.floor.prefix}/#")
    echo(f"demo: simulated devices on {ports}")
    if demo.scenario is not None:
        echo(
            f"demo: scenario {demo.scenario.scenario.name!r}: {demo.scenario.scenario.description}"
        )
    echo(f"demo: {banner()}")
    if demo.store is not None:
        echo(f"demo: records in {demo.store}")


async def _headless(
    obj: Any,
    file: str,
    *,
    workdir: Path,
    broker: tuple[str, int] | None,
    scenario: str,
    speed: float,
    plan: Path | None,
) -> int:
    from floorctl.cli import format_reading

    printer = AlarmPrinter(click.echo)
    obj.pm.register(printer, name="demo-alarm-printer")
    rooms: dict[str, str | None] = {}
    stop = asyncio.Event()
    _stop_on_signals(stop.set)
    async with running_demo(
        file,
        obj.pm,
        obj.kinds,
        workdir=workdir,
        broker=broker,
        scenario=scenario,
        speed=speed,
        sinks=[lambda r: click.echo(format_reading(r, rooms.get(r.device)))],
    ) as demo:
        rooms.update({d.id: d.room for d in demo.config.devices})
        _describe(demo, lambda line: click.echo(line, err=True))
        click.echo("demo: running; Ctrl-C stops everything", err=True)
        await stop.wait()
        click.echo("demo: stopping", err=True)
    click.echo("demo: stopped", err=True)
    return 0


async def _with_ui(
    obj: Any,
    file: str,
    *,
    workdir: Path,
    broker: tuple[str, int] | None,
    scenario: str,
    speed: float,
    plan: Path | None,
) -> int:
    click.echo("demo: starting the broker, the simulators and the daemon ...", err=True)
    schedule = workdir / "schedule.json"
    if plan is not None and plan == _plan_default(file):
        # the demo plan is dated; move it to start today so "now" is inside it, and give the
        # Schedule screen a schedule to start from
        plan = rebase_plan(plan, workdir, dt.date.today())
        click.echo("demo: planning the demo batches (a few seconds) ...", err=True)
        summary = await asyncio.to_thread(first_schedule, plan, schedule)
        log.info("demo: %s", summary)
    async with running_demo(
        file, obj.pm, obj.kinds, workdir=workdir, broker=broker, scenario=scenario, speed=speed
    ) as demo:
        lines: list[str] = []
        _describe(demo, lines.append)
        log.info("%s", "\n".join(lines))
        app = demo_app_class()(demo.config, plan=plan, schedule=schedule, banner=banner())
        _stop_on_signals(app.exit)
        await app.run_async()
    for line in lines:
        click.echo(line)
    click.echo("demo: stopped")
    return app.return_code or 0

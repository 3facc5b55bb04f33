"""``python -m simulators [FILE] [--scenario FILE] [--speed N] [--seed N] [--bind ADDR]``.

Serves every device of FILE (default devices.toml) until Ctrl-C, like ``floorctl simulate``;
this entry point needs nothing but the config loader. Exit 1 when the devices file, its
``[device.simulate]`` tables or the scenario have problems (printed on stderr, nothing
started), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys

from floorctl.config import ConfigError, load_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from simulators.modbus_device import SimulatorError
from simulators.scenario import Scenario, ScenarioError, resolve_scenario
from simulators.serve import serve
from simulators.signals import SimulateConfigError


def print_problems(text: str, count: int, filename: str) -> None:
    print(text, file=sys.stderr)
    print(f"{count} problem{'s' if count != 1 else ''} in {filename}", file=sys.stderr)


async def _main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, collect_kinds(get_plugin_manager()))
    except ConfigError as exc:
        print_problems(str(exc), len(exc.problems), exc.filename or args.file)
        return 1
    scenario = None
    if args.scenario:
        try:
            scenario = Scenario.load(resolve_scenario(args.scenario))
        except ScenarioError as exc:
            print_problems(str(exc), len(exc.problems), exc.filename)
            return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(
            config, seed=args.seed, stop=stop, bind=args.bind, speed=args.speed, scenario=scenario
        )
    except SimulateConfigError as exc:
        text = "\n".join(f"{args.file}: {path}: {msg}" for path, msg in exc.problems)
        print_problems(text, len(exc.problems), args.file)
        return 1
    except ScenarioError as exc:
        print_problems(str(exc), len(exc.problems), exc.filename)
        return 1
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    parser.add_argument("file", nargs="?", default="devices.toml")
    parser.add_argument(
        "--scenario", default=None, help="scenario TOML (or a built-in name: demo, smoke)"
    )
    parser.add_argument(
        "--speed", type=_speed, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="signal seed (default: the scenario's, else 0)"
    )
    parser.add_argument("--bind", default=None, help="listen address for Modbus servers")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

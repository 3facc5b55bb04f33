"""``python -m simulators devices.toml [--seed N] [--bind ADDR]``: serve until Ctrl-C.

``floorctl simulate`` does the same; this entry point needs nothing but the config loader.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from floorctl.config import ConfigError, load_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from simulators.serve import serve
from simulators.signals import SimulateConfigError


async def _main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, collect_kinds(get_plugin_manager()))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(config, seed=args.seed, stop=stop, bind=args.bind)
    except SimulateConfigError as exc:
        print(f"{args.file}: {exc}".replace("\n", f"\n{args.file}: "), file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    parser.add_argument("file", nargs="?", default="devices.toml")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bind", default=None, help="listen address for Modbus servers")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

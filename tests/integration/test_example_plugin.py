"""The example plugin package (examples/floorctl-vaisala-hmt), installed with pip, end to end.

How it is installed: a FRESH virtual environment is created in a temporary directory
(``python -m venv --without-pip``), and floorctl's own environment is layered beneath it by a
``.pth`` file that calls ``site.addsitedir`` on this interpreter's site-packages (so floorctl and
its dependencies, editable install included, import there without being installed again, and
without the system interpreter's packages that ``--system-site-packages`` would bring). pip, run
from this interpreter with ``--python <venv>``, installs a copy of the example into that
environment only. The project's .venv is never changed, so tests running concurrently never see
the example, and nothing needs uninstalling. Entry points are found the normal way: floorctl
runs as ``<venv>/bin/python -m floorctl``.

Building needs a PEP 517 backend. When this interpreter can build a wheel offline (setuptools
>= 70.1, or the ``wheel`` package next to an older setuptools) pip runs with ``--no-index
--no-build-isolation`` and needs no package index; otherwise (the project's .venv today has
setuptools 65.5 without ``wheel``) pip's isolated build fetches setuptools from the configured
indexes, which on the project's machines include a local mirror. Measured on the 2-core project
machine: venv 0.1 s; pip install 1.7 s offline, 3.5-4 s isolated (about 10 s if pypi.org is
unreachable and only the local mirror answers); each ``floorctl`` subprocess 0.2-0.6 s; about
8.5 s for the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from tests.helpers import HOST, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "floorctl-vaisala-hmt"
DIST = "floorctl-example-hmt"


# --- the fresh environment -----------------------------------------------------------------


def _can_build_offline() -> bool:
    """True when setuptools can build a wheel here without fetching anything."""
    try:
        import setuptools
    except ImportError:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    parts = re.findall(r"\d+", setuptools.__version__)[:2]
    return tuple(int(p) for p in parts) >= (70, 1)  # bdist_wheel moved into setuptools


class HmtEnv:
    """A fresh venv holding the installed example, and ways to run floorctl in it."""

    def __init__(self, root: Path, python: Path, install_seconds: float) -> None:
        self.root = root
        self.python = python
        self.install_seconds = install_seconds

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("FLOORCTL_DISABLE_PLUGIN_AUTOLOAD", None)
        env.pop("PYTHONPATH", None)  # only the venv (and the layered .venv) may provide code
        env["PYTHONIOENCODING"] = "utf-8"  # readings carry units like "°C"
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "floorctl", *args]

    def floorctl(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, encoding="utf-8",
            env=self.env(env), cwd=self.root, timeout=timeout, check=False,
        )  # fmt: skip

    async def floorctl_async(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """Like floorctl(), without blocking the event loop (the Modbus server runs on it)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), env=self.env(), cwd=self.root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode("utf-8"), err.decode("utf-8")


@pytest.fixture(scope="session")
def hmt_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HmtEnv]:
    root = tmp_path_factory.mktemp("example_hmt")
    started = time.perf_counter()
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    # floorctl's environment beneath the fresh one: addsitedir also runs its .pth files, which
    # is what makes floorctl's editable install importable
    base = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site_packages / "zz_floorctl_base.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in base)
    )
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    source = root / "src"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    pip = [
        sys.executable, "-m", "pip", "--python", str(python), "install",
        "--no-deps", "--no-input", "--disable-pip-version-check",
    ]  # fmt: skip
    if _can_build_offline():
        pip += ["--no-index", "--no-build-isolation"]
    done = subprocess.run([*pip, str(source)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"pip could not install {EXAMPLE} into {venv}:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    yield HmtEnv(root, python, time.perf_counter() - started)


def test_installed_distribution_declares_the_entry_point(hmt_env: HmtEnv) -> None:
    probe = textwrap.dedent(
        """
        import importlib.metadata as md
        dist = md.distribution("floorctl-example-hmt")
        print(dist.version)
        print(*sorted(f"{e.group}:{e.name}={e.value}" for e in dist.entry_points))
        import floorctl_example_hmt, floorctl
        print(floorctl_example_hmt.__file__)
        """
    )
    done = subprocess.run(
        [str(hmt_env.python), "-c", probe], capture_output=True, text=True, check=True,
        env=hmt_env.env(),
    )  # fmt: skip
    version, entry_points, module_file = done.stdout.splitlines()
    assert version == "0.1.0"
    assert entry_points == "floorctl:example_hmt=floorctl_example_hmt"
    # installed into the fresh venv, not imported from the source tree
    assert Path(module_file).is_relative_to(hmt_env.root / "venv")
    assert hmt_env.install_seconds < 120


# --- floorctl plugins / check-config ------------------------------------------------------


def test_floorctl_plugins_lists_the_example(hmt_env: HmtEnv) -> None:
    done = hmt_env.floorctl("plugins")
    assert done.returncode == 0, done.stderr
    assert f"example_hmt  ({DIST} 0.1.0)" in done.stdout
    assert re.search(r"^  kind example_hmt +via modbus +Vaisala HMT330", done.stdout, re.M)
    assert "generic  (floorctl.plugins.generic)" in done.stdout

    rows = {row["name"]: row for row in json.loads(hmt_env.floorctl("plugins", "--json").stdout)}
    assert rows["example_hmt"]["kinds"] == ["example_hmt"]
    assert rows["example_hmt"]["hooks"] == ["floorctl_register_kinds"]
    assert rows["example_hmt"]["origin"] == f"{DIST} 0.1.0"
    assert rows["generic"]["kinds"] == ["modbus", "mqtt_json"]


def test_disable_autoload_hides_the_example_but_keeps_builtins(hmt_env: HmtEnv) -> None:
    done = hmt_env.floorctl("plugins", env={"FLOORCTL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr
    assert "example_hmt" not in done.stdout
    assert "kind modbus" in done.stdout


def devices_toml(
    modbus_port: int,
    devices: str,
    *,
    mqtt_port: int | None = None,
) -> str:
    # [[mqtt]] is required by the format; run --once publishes nothing, and its hub just keeps
    # retrying a port where nothing listens until the command ends
    return textwrap.dedent(
        f"""
        [floor]
        id = "hmt-test"

        [[mqtt]]
        name = "local"
        port = {mqtt_port or free_port()}

        [[modbus]]
        name = "bms"
        host = "{HOST}"
        port = {modbus_port}
        timeout = "1s"

        [[room]]
        id = "buffer"
        iso_class = 7
        """
    ) + textwrap.dedent(devices)


ONE_DEVICE = """
    [[device]]
    id = "hmt-01"
    kind = "example_hmt"
    via = "bms"
    unit_id = 1
    room = "buffer"
    interval = "2s"

    [[device.fields]]
    name = "t"
    deadband = 0.1

    [[device.fields]]
    name = "rh"
    precision = 2
"""


def test_check_config_accepts_an_example_device(hmt_env: HmtEnv) -> None:
    path = hmt_env.root / "good.toml"
    path.write_text(devices_toml(free_port(), ONE_DEVICE))
    done = hmt_env.floorctl("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "ok: 1 room, 1 device, 2 points" in done.stdout


def test_check_config_reports_what_the_kind_does_not_know(hmt_env: HmtEnv) -> None:
    path = hmt_env.root / "bad.toml"
    bad = """
        [[device]]
        id = "hmt-01"
        kind = "example_hmt"
        via = "bms"

        [[device.fields]]
        name = "t"

        [[device.fields]]
        name = "dp"
        address = 4

        [[device]]
        id = "hmt-02"
        kind = "example_hmt"
        via = "bms"
        options = { register = "coil" }
        fields = [{ name = "rh" }]

        [[device]]
        id = "hmt-03"
        kind = "example_hmt"
        via = "bms"
        options = { check_test_regster = false }
        fields = [{ name = "rh" }]
    """
    path.write_text(devices_toml(free_port(), bad))
    done = hmt_env.floorctl("check-config", str(path))
    assert done.returncode == 1, done.stdout
    problems = done.stderr.splitlines()
    assert any(
        re.fullmatch(
            r".*bad\.toml:\d+: device\[hmt-01\]\.fields\[dp\]\.name: unknown measurement 'dp'; "
            r"kind 'example_hmt' has rh \(relative humidity, %RH\), t \(temperature, °C\)",
            line,
        )
        for line in problems
    ), done.stderr
    assert "device[hmt-01].fields[dp].address: not a field key of kind 'example_hmt'" in done.stderr
    assert (
        'device[hmt-02].options.register: must be "holding" or "input" (measurements are registers)'
        in done.stderr
    )
    assert "device[hmt-03].options.check_test_regster: unknown key" in done.stderr
    assert problems[-1].startswith("4 problems in "), done.stderr


# --- end to end against a Modbus TCP server -------------------------------------------------


def cdab(value: float) -> list[int]:
    """A FLOAT32 as the transmitter sends it: IEEE-754 binary32, low word first."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [lo, hi]


# Vaisala's own example: 30.56 %RH is 0x41F47AE1, read as the words 0x7AE1, 0x41F4
assert cdab(30.56) == [0x7AE1, 0x41F4]
TEST_REGISTER = 0x1F01
TEST_WORDS = [0xE666, 0xC2F6]  # -123.45 = 0xC2F6E666, low word first


def hmt_unit(
    unit: int,
    rh: list[int] | None,
    t: list[int] | None,
    *,
    test: list[int] | None = TEST_WORDS,
    status: int | None = None,
) -> SimDevice:
    """One transmitter: registers it does not define answer ILLEGAL ADDRESS."""
    blocks: list[SimData] = []
    if rh is not None or t is not None:
        assert rh is not None and t is not None
        blocks.append(SimData(0, values=[*rh, *t], datatype=SimType.REGISTERS))
    if status is not None:
        blocks.append(SimData(0x0200, values=[status], datatype=SimType.REGISTERS))
    if test is not None:
        blocks.append(SimData(TEST_REGISTER, values=list(test), datatype=SimType.REGISTERS))
    return SimDevice(id=unit, simdata=blocks)


@contextlib.asynccontextmanager
async def modbus_server(*units: SimDevice) -> AsyncIterator[int]:
    port = free_port()
    server = ModbusTcpServer(list(units), address=(HOST, port))
    await server.serve_forever(background=True)
    try:
        yield port
    finally:
        await server.shutdown()


def reading_line(out: str, device: str, point: str) -> str:
    lines = [ln for ln in out.splitlines() if f" {device}/{point} = " in ln]
    assert len(lines) == 1, f"expected one reading of {device}/{point} in:\n{out}"
    return lines[0]


async def test_run_once_prints_t_and_rh(hmt_env: HmtEnv) -> None:
    async with modbus_server(hmt_unit(1, cdab(30.56), cdab(21.5))) as port:
        path = hmt_env.root / "run_once.toml"
        path.write_text(devices_toml(port, ONE_DEVICE))
        code, out, err = await hmt_env.floorctl_async("run", "--once", "-q", str(path))
    assert code == 0, err
    assert re.search(r"Z  buffer  hmt-01/t = 21\.5 °C$", reading_line(out, "hmt-01", "t"))
    assert re.search(r"Z  buffer  hmt-01/rh = 30\.56 %RH$", reading_line(out, "hmt-01", "rh"))
    assert "no reading" not in err


async def test_run_once_turns_bad_device_input_into_readings(hmt_env: HmtEnv) -> None:
    devices = """
        [[device]]
        id = "hmt-nan"
        kind = "example_hmt"
        via = "bms"
        unit_id = 2
        options = { check_status = true, register = "input" }
        fields = [{ name = "t" }, { name = "rh", unit = "%" }]

        [[device]]
        id = "hmt-fault"
        kind = "example_hmt"
        via = "bms"
        unit_id = 3
        options = { check_status = true }
        fields = [{ name = "t" }]

        [[device]]
        id = "hmt-nomap"
        kind = "example_hmt"
        via = "bms"
        unit_id = 4
        fields = [{ name = "rh" }]
    """
    nan = [0x0000, 0x7FC0]  # quiet NaN, low word first: "measurement not available"
    async with modbus_server(
        hmt_unit(2, cdab(45.25), nan, status=1),
        hmt_unit(3, cdab(40.0), cdab(19.75), status=0),
        hmt_unit(4, None, None),
    ) as port:
        path = hmt_env.root / "bad_input.toml"
        path.write_text(devices_toml(port, devices))
        code, out, err = await hmt_env.floorctl_async("run", "--once", "-q", str(path))
    # every device produced readings, so nothing is silent and the exit code is 0
    assert code == 0, err
    assert reading_line(out, "hmt-nan", "t").endswith("hmt-nan/t = -  [bad: NaN]")
    assert reading_line(out, "hmt-nan", "rh").endswith("hmt-nan/rh = 45.25 %")
    assert reading_line(out, "hmt-fault", "t").endswith(
        "hmt-fault/t = 19.75 °C  [device-error: transmitter reports a fault "
        "(status register 0513 = 0, 1 = no errors)]"
    )
    assert reading_line(out, "hmt-nomap", "rh").endswith(
        "hmt-nomap/rh = -  [device-error: Modbus exception 2 (illegal data address) "
        "for holding 0..1 unit 4]"
    )


async def test_run_once_reports_a_failed_test_register_check(hmt_env: HmtEnv) -> None:
    devices = """
        [[device]]
        id = "hmt-swapped"
        kind = "example_hmt"
        via = "bms"
        unit_id = 1
        fields = [{ name = "t" }]

        [[device]]
        id = "hmt-other"
        kind = "example_hmt"
        via = "bms"
        unit_id = 2
        fields = [{ name = "t" }]

        [[device]]
        id = "hmt-unchecked"
        kind = "example_hmt"
        via = "bms"
        unit_id = 2
        options = { check_test_register = false }
        fields = [{ name = "rh" }]

        [[device]]
        id = "hmt-good"
        kind = "example_hmt"
        via = "bms"
        unit_id = 3
        fields = [{ name = "rh" }]
    """
    async with modbus_server(
        # a gateway that swaps words: the test register arrives high word first
        hmt_unit(1, cdab(30.0), cdab(20.0), test=[0xC2F6, 0xE666]),
        # some other device: the register exists but holds something else
        hmt_unit(2, cdab(30.0), cdab(20.0), test=[0, 0]),
        hmt_unit(3, cdab(33.5), cdab(20.0)),
    ) as port:
        path = hmt_env.root / "test_register.toml"
        path.write_text(devices_toml(port, devices))
        code, out, err = await hmt_env.floorctl_async("run", "--once", "-q", str(path))
    assert code == 1, out
    assert (
        "no reading from hmt-swapped: device 'hmt-swapped': test register 7938 "
        "(address 0x1F01, holding) reads -2.72435e+23 as CDAB (words 0xC2F6, 0xE666), "
        "expected -123.45: misconfigured byte order; the words decode to -123.45 as ABCD: "
        'set byte_order = "ABCD" in [device.options]'
    ) in err
    assert (
        "no reading from hmt-other: device 'hmt-other': test register 7938 "
        "(address 0x1F01, holding) reads 0 as CDAB (words 0x0000, 0x0000), expected -123.45: "
        "wrong device (not a Vaisala HMT330?) or misconfigured byte order"
    ) in err
    # the other devices were read all the same
    assert reading_line(out, "hmt-good", "rh").endswith("hmt-good/rh = 33.5 %RH")
    assert reading_line(out, "hmt-unchecked", "rh").endswith("hmt-unchecked/rh = 30 %RH")
    assert "hmt-swapped/" not in out and "hmt-other/" not in out

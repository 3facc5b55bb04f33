"""Generate a realistic 503B production plan of a given size (for benchmarks and demos).

    .venv/bin/python examples/plangen.py OUT_DIR --batches 60 --weeks 3 --seed 1

writes ``OUT_DIR/facility.toml`` and ``OUT_DIR/batches.csv`` in the plan format of
docs/planning.md, which ``floorctl.scheduler.load_plan`` reads. The same arguments always give
byte-identical files.

**The facility** is the demo floor's (the ``[[room]]`` tables of devices.toml, copied into the
plan so that it stands alone): the ante room, the buffer room with LAF hoods laf-1 and laf-2,
the negative-pressure HD buffer room with BSCs bsc-1 and bsc-2. Added on top: two autoclaves,
a depyrogenation oven and a vial filling line (in the buffer room's process); staff on a day
and a late shift (weekdays), with qualifications (aseptic, media-fill, hazardous-drug,
autoclave-operator, filling-line, qa-release), their number scaled to the weekly load; QA
reviewers on the day shift. Line clearance between batches on the hoods and the filling line
(longer between product families, two hours of decontamination after a hazardous drug on a
BSC). A hood certification and an autoclave preventive-maintenance window, and a few staff
absences, at seeded times.

**The products** (one recipe each; families give the changeovers):

- syringes filled aseptically in a LAF hood (family ``syringe``): compound, fill within 4 h;
- antibiotic IV bags (family ``bag``): compound and fill in a LAF hood;
- ophthalmic vials (family ``vial``): vials depyrogenated (used within 72 h), compounded in a
  LAF hood, filled on the filling line within 4 h;
- terminally sterilised vials (family ``vial``): compounded in the buffer room, filled on the
  filling line, autoclaved within 8 h (a soft limit: late sterilisation is penalised);
- hazardous-drug syringes and bags (family ``cytotoxic``, USP <800>): BSC only, staff
  qualified for hazardous drugs, fill within 2 h.

Every batch ends with QA release after the USP <71> sterility test: at least 14 days after the
fill (or the sterilisation). Each batch has a release date (components available) in the
first ``weeks`` of the plan, a due date (the customer's: release + 14 days of sterility hold
+ a few days' production allowance) and a hard deadline from beyond-use dating: the batch must
be released while at least the customer's minimum remaining dating is left of its
beyond-use date (BUD counted from the release date, when compounding can start at the
earliest). The plan's horizon covers the production weeks plus the sterility hold.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import random
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import click
from attrs import frozen

ROOT = Path(__file__).resolve().parent.parent
DEVICES = ROOT / "devices.toml"
#: the rooms of devices.toml a plan uses (the corridor takes no production)
ROOMS = ("ante", "buffer", "hd-buffer", "laf-1", "laf-2", "bsc-1", "bsc-2")
STERILITY_HOLD_DAYS = 14


@frozen
class Product:
    """A recipe and how batches of it are ordered."""

    recipe: str
    family: str
    weight: float  # share of the batch mix
    quantity: tuple[int, int]  # units per batch, min and max (multiples of 50)
    bud_days: int  # beyond-use date from compounding (stability-study dating)
    min_remaining_days: int  # the customer's minimum remaining dating on receipt
    hazardous: bool = False


PRODUCTS: tuple[Product, ...] = (
    Product("pn-syringe", "syringe", 0.24, (200, 600), 90, 45),
    Product("ketamine-syringe", "syringe", 0.14, (150, 500), 90, 45),
    Product("abx-bag", "bag", 0.18, (100, 300), 60, 30),
    Product("ophth-vial", "vial", 0.12, (300, 1200), 120, 60),
    Product("saline-vial", "vial", 0.14, (500, 2000), 180, 90),
    Product("mtx-syringe", "cytotoxic", 0.10, (100, 300), 60, 30, hazardous=True),
    Product("cyclo-bag", "cytotoxic", 0.08, (50, 150), 45, 21, hazardous=True),
)

#: the recipes, as TOML (durations: fixed part + per unit; lags; who may do the work)
RECIPES = """\
# --- recipes ------------------------------------------------------------------------------

[[recipe]]
id = "pn-syringe"                     # aseptically filled syringes (no terminal sterilisation)
family = "syringe"

[[recipe.operation]]
name = "stage"                        # components wiped and passed in through the ante room
rooms = ["ante"]
duration = "20m"
per_unit = "1s"
headcount = 1
qualifications = ["aseptic"]

[[recipe.operation]]
name = "compound"
units = ["laf-1", "laf-2"]
duration = "45m"
per_unit = "3s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "12h"

[[recipe.operation]]
name = "fill"
units = ["laf-1", "laf-2"]
duration = "30m"
per_unit = "6s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "4h"                        # hold time: bulk filled within 4 h of compounding

[[recipe.operation]]
name = "qa-release"                   # after the USP <71> sterility-test incubation
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "ketamine-syringe"
family = "syringe"

[[recipe.operation]]
name = "stage"
rooms = ["ante"]
duration = "20m"
per_unit = "1s"
headcount = 1
qualifications = ["aseptic"]

[[recipe.operation]]
name = "compound"
units = ["laf-1", "laf-2"]
duration = "30m"
per_unit = "2s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "12h"

[[recipe.operation]]
name = "fill"
units = ["laf-1", "laf-2"]
duration = "30m"
per_unit = "5s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "4h"

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "abx-bag"                        # antibiotic IV bags
family = "bag"

[[recipe.operation]]
name = "stage"
rooms = ["ante"]
duration = "20m"
per_unit = "2s"
headcount = 1
qualifications = ["aseptic"]

[[recipe.operation]]
name = "compound"
units = ["laf-1", "laf-2"]
duration = "1h"
per_unit = "6s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "12h"

[[recipe.operation]]
name = "fill"
units = ["laf-1", "laf-2"]
duration = "30m"
per_unit = "12s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "4h"

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "ophth-vial"                     # ophthalmic vials, aseptic fill on the line
family = "vial"

[[recipe.operation]]
name = "depyrogenate"                 # glass vials, dry heat
equipment = ["depyrogenation-oven"]
duration = "5h"

[[recipe.operation]]
name = "compound"
units = ["laf-1", "laf-2"]
duration = "1h"
per_unit = "1s"
headcount = 2
qualifications = ["aseptic", "media-fill"]
max_lag = "72h"                       # depyrogenated glass is used within 3 days

[[recipe.operation]]
name = "fill"
rooms = ["buffer"]
equipment = ["filling-line"]
duration = "1h"
per_unit = "3s"
headcount = 2
qualifications = ["aseptic", "filling-line"]
max_lag = "4h"

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "saline-vial"                    # filled, then terminally sterilised
family = "vial"

[[recipe.operation]]
name = "compound"
rooms = ["buffer"]
duration = "1h"
per_unit = "1s"
headcount = 1
qualifications = ["aseptic"]

[[recipe.operation]]
name = "fill"
rooms = ["buffer"]
equipment = ["filling-line"]
duration = "1h"
per_unit = "2s"
headcount = 2
qualifications = ["aseptic", "filling-line"]
max_lag = "6h"

[[recipe.operation]]
name = "sterilise"
equipment = ["autoclave"]
duration = "2h30m"
headcount = 1
qualifications = ["autoclave-operator"]
max_lag = "8h"                        # sterilised within 8 h of filling
max_lag_penalty = 10                  # soft: 10 points per minute over, listed as a violation

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "mtx-syringe"                    # methotrexate: a hazardous drug (USP <800>)
family = "cytotoxic"
hazardous = true

[[recipe.operation]]
name = "compound"
units = ["bsc-1", "bsc-2"]
duration = "1h"
per_unit = "4s"
headcount = 2
qualifications = ["aseptic", "hazardous-drug"]

[[recipe.operation]]
name = "fill"
units = ["bsc-1", "bsc-2"]
duration = "45m"
per_unit = "6s"
headcount = 2
qualifications = ["aseptic", "hazardous-drug"]
max_lag = "2h"

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

[[recipe]]
id = "cyclo-bag"                      # cyclophosphamide bags: a hazardous drug
family = "cytotoxic"
hazardous = true

[[recipe.operation]]
name = "compound"
units = ["bsc-1", "bsc-2"]
duration = "1h"
per_unit = "10s"
headcount = 2
qualifications = ["aseptic", "hazardous-drug"]

[[recipe.operation]]
name = "fill"
units = ["bsc-1", "bsc-2"]
duration = "30m"
per_unit = "12s"
headcount = 2
qualifications = ["aseptic", "hazardous-drug"]
max_lag = "2h"

[[recipe.operation]]
name = "qa-release"
duration = "30m"
headcount = 1
qualifications = ["qa-release"]
min_lag = "14d"

# --- changeovers: line clearance on the hoods and the filling line ------------------------

[[changeover]]
from = "*"
to = "*"
duration = "30m"                      # line clearance between batches
resources = ["laf-1", "laf-2", "bsc-1", "bsc-2", "filling-line-1"]

[[changeover]]
from = "syringe"
to = "bag"
duration = "45m"
resources = ["laf-1", "laf-2"]

[[changeover]]
from = "bag"
to = "syringe"
duration = "45m"
resources = ["laf-1", "laf-2"]

[[changeover]]
from = "cytotoxic"
to = "*"
duration = "2h"                       # decontamination after a hazardous drug (USP <800>)
resources = ["bsc-1", "bsc-2"]

[[changeover]]
from = "vial"
to = "vial"
duration = "1h"                       # line clearance and change parts on the filling line
resources = ["filling-line-1"]
"""


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string for these values


def _toml_time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def floor_rooms(devices: Path) -> list[dict[str, object]]:
    """The production rooms of a devices.toml (id, name, ISO class, pressure, within)."""
    try:
        raw = tomllib.loads(devices.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{devices}: {exc}") from exc
    rooms = {r.get("id"): r for r in raw.get("room", []) if isinstance(r, dict)}
    missing = [r for r in ROOMS if r not in rooms]
    if missing:
        raise click.ClickException(f"{devices}: no room(s) {', '.join(missing)} ([[room]] id)")
    return [rooms[r] for r in ROOMS]


def _weekday_dates(start: dt.date, weeks: int) -> list[dt.date]:
    days = [start + dt.timedelta(days=k) for k in range(weeks * 7)]
    return [d for d in days if d.weekday() < 5]


def generate(
    batches: int,
    weeks: int,
    seed: int,
    *,
    start: dt.date = dt.date(2025, 3, 3),
    devices: Path = DEVICES,
    name: str | None = None,
) -> tuple[str, str]:
    """The plan's facility.toml and batches.csv texts."""
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    if not 1 <= weeks <= 12:
        raise ValueError(f"weeks must be in 1..12, got {weeks}")
    rng = random.Random(seed)
    per_week = batches / weeks
    name = name or f"gen-{batches}b-{weeks}w-s{seed}"
    epoch = dt.datetime.combine(start, dt.time(6, 0))
    horizon_days = weeks * 7 + STERILITY_HOLD_DAYS + 7
    workdays = _weekday_dates(start, weeks)

    # staff on each shift scales with the weekly load; >= 2 HD-qualified per shift
    per_shift = max(3, math.ceil(per_week / 5))
    out = io.StringIO()
    w = out.write
    w(f"# Generated by examples/plangen.py --batches {batches} --weeks {weeks} --seed {seed}\n")
    w("# A synthetic 503B plan on the demo floor's rooms (devices.toml). docs/planning.md.\n\n")
    w("[plan]\n")
    w(f"name = {_toml_str(name)}\n")
    w(f"start = {_toml_time(epoch)}\n")
    w('timezone = "America/New_York"\n')
    w(f'horizon = "{horizon_days}d"\n')
    w('grid = "15m"\n')
    w('batches = "batches.csv"\n\n')
    w('[replan]\nmoved_batch = 120\nreassigned = 30\nmove_tolerance = "0m"\n\n')

    w("# --- rooms (as in devices.toml) --------------------------------------------\n")
    capacity = {"ante": 2, "buffer": 3, "hd-buffer": 2}
    headcount = {"ante": 3, "buffer": 6, "hd-buffer": 4}
    cert_day = rng.choice(workdays[3:] or workdays)
    cert_hood = rng.choice(["laf-1", "laf-2", "bsc-1", "bsc-2"])
    for room in floor_rooms(devices):
        rid = str(room["id"])
        w("\n[[room]]\n")
        w(f"id = {_toml_str(rid)}\n")
        w(f"name = {_toml_str(str(room.get('name', rid)))}\n")
        if "iso_class" in room:
            w(f"iso_class = {int(room['iso_class'])}\n")  # type: ignore[call-overload]
        if "pressure" in room:
            w(f"pressure = {_toml_str(str(room['pressure']))}\n")
        if "within" in room:
            w(f"within = {_toml_str(str(room['within']))}\n")
        if rid in capacity:
            w(f"capacity = {capacity[rid]}\n")
            w(f"headcount = {headcount[rid]}\n")
        if rid == cert_hood:
            s = dt.datetime.combine(cert_day, dt.time(6, 0))
            e = s + dt.timedelta(hours=8)
            w(
                f"outages = [{{ start = {_toml_time(s)}, end = {_toml_time(e)}, "
                'reason = "hood certification" }]\n'
            )

    w("\n# --- equipment -------------------------------------------------------------\n")
    pm_day = rng.choice(workdays[1:] or workdays)
    pm_start = dt.datetime.combine(pm_day, dt.time(6, 0))
    equipment = [
        ("depyro-1", "depyrogenation-oven", None),
        ("autoclave-1", "autoclave", (pm_start, pm_start + dt.timedelta(hours=8))),
        ("autoclave-2", "autoclave", None),
        ("filling-line-1", "filling-line", None),
    ]
    for eid, etype, outage in equipment:
        w(f"\n[[equipment]]\nid = {_toml_str(eid)}\ntype = {_toml_str(etype)}\n")
        if outage is not None:
            w(
                f"outages = [{{ start = {_toml_time(outage[0])}, end = {_toml_time(outage[1])}, "
                'reason = "preventive maintenance" }]\n'
            )

    w("\n# --- staff -----------------------------------------------------------------\n")
    w('\n[[shift]]\nid = "day"\nstart = "06:00"\nend = "14:30"\n')
    w('days = ["mon", "tue", "wed", "thu", "fri"]\n')
    w('\n[[shift]]\nid = "late"\nstart = "14:00"\nend = "22:30"\n')
    w('days = ["mon", "tue", "wed", "thu", "fri"]\n')
    people = 0
    for shift in ("day", "late"):
        for k in range(per_shift):
            people += 1
            quals = ["aseptic"]
            if k != per_shift - 1 or rng.random() < 0.5:
                quals.append("media-fill")
            if k < 2 or rng.random() < 0.3:
                quals.append("hazardous-drug")
            if k % 3 == 2 or k == 0:
                quals.append("autoclave-operator")
            if k % 2 == 1 or k == 0:
                quals.append("filling-line")
            w(f'\n[[staff]]\nid = "op{people:02d}"\n')
            w(f"qualifications = [{', '.join(_toml_str(q) for q in quals)}]\n")
            w(f'shifts = ["{shift}"]\n')
            if rng.random() < 0.25:
                day = rng.choice(workdays)
                s = dt.datetime.combine(day, dt.time(0, 0))
                w(
                    f"absences = [{{ start = {_toml_time(s)}, "
                    f'end = {_toml_time(s + dt.timedelta(days=1))}, reason = "leave" }}]\n'
                )
    for k in range(2):
        w(f'\n[[staff]]\nid = "qa{k + 1}"\nqualifications = ["qa-release"]\nshifts = ["day"]\n')
    w("\n")
    w(RECIPES)

    # --- batches ---
    products = list(PRODUCTS)
    weights = [p.weight for p in products]
    rows: list[list[str]] = []
    releases = sorted(rng.choice(workdays) for _ in range(batches))
    for k, day in enumerate(releases, start=1):
        p = rng.choices(products, weights)[0]
        lo, hi = p.quantity
        quantity = rng.randrange(lo, hi + 1, 50)
        release = dt.datetime.combine(day, dt.time(6, 0))
        allowance = rng.choice((3, 4, 5, 7))  # production days the customer allows
        due = release + dt.timedelta(days=STERILITY_HOLD_DAYS + allowance, hours=8)
        # released while >= min_remaining_days of the BUD are left (BUD from compounding,
        # which cannot start before the release date)
        deadline = release + dt.timedelta(days=p.bud_days - p.min_remaining_days)
        deadline = max(deadline, due + dt.timedelta(days=3))
        priority = rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]
        rows.append(
            [
                f"B{k:03d}",
                p.recipe,
                str(quantity),
                _toml_time(release),
                _toml_time(due),
                _toml_time(deadline),
                str(priority),
            ]
        )
    csv_out = io.StringIO()
    writer = csv.writer(csv_out, lineterminator="\n")
    writer.writerow(["id", "recipe", "quantity", "release", "due", "deadline", "priority"])
    writer.writerows(rows)
    return out.getvalue(), csv_out.getvalue()


def write_plan(
    out_dir: Path,
    batches: int,
    weeks: int,
    seed: int,
    *,
    start: dt.date = dt.date(2025, 3, 3),
    devices: Path = DEVICES,
) -> Path:
    """Write ``facility.toml`` and ``batches.csv`` into ``out_dir``; return the plan's path."""
    facility, batches_csv = generate(batches, weeks, seed, start=start, devices=devices)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "batches.csv").write_text(batches_csv, encoding="utf-8")
    plan = out_dir / "facility.toml"
    plan.write_text(facility, encoding="utf-8")
    return plan


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--batches", type=click.IntRange(min=1), default=60, show_default=True)
@click.option(
    "--weeks",
    type=click.IntRange(1, 12),
    default=3,
    show_default=True,
    help="Production weeks (batch release dates fall in them).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2025-03-03",
    show_default=True,
    help="The plan's first day (06:00 local is time 0).",
)
@click.option(
    "--devices",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=DEVICES,
    show_default=True,
    help="devices.toml whose rooms to use.",
)
def main(
    out_dir: Path, batches: int, weeks: int, seed: int, start: dt.datetime, devices: Path
) -> None:
    """Write a generated 503B plan (facility.toml + batches.csv) into OUT_DIR."""
    plan = write_plan(out_dir, batches, weeks, seed, start=start.date(), devices=devices)
    click.echo(f"wrote {plan} and {plan.parent / 'batches.csv'}")


def _main(argv: Sequence[str] | None = None) -> None:
    main(args=list(argv) if argv is not None else None)


if __name__ == "__main__":
    _main(sys.argv[1:])

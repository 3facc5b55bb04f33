"""PSPLIB .sm parser, UGent best-known tables, and the adapter onto the scheduler's problem.

The real instances are read from the shared PSPLIB folder (not copied into the repository:
PSPLIB carries no licence for redistribution); ``FLOORCTL_PSPLIB_DIR`` points elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from ortools.sat.python import cp_model

from floorctl.scheduler import SolveOptions, Status, check, solve
from floorctl.scheduler.psplib import (
    Instance,
    PsplibError,
    parse_best_known,
    parse_sm,
    read_best_known,
    read_sm,
    to_problem,
)

DATA = Path(os.environ.get("FLOORCTL_PSPLIB_DIR", "/work/shared/benchmarks/psplib"))
J301_1 = DATA / "j30" / "instances" / "j301_1.sm"
J30_BKS = DATA / "bks_ugent_2024" / "J30.csv"


@pytest.fixture(scope="module")
def psplib_dir() -> Path:
    if not J301_1.is_file():
        pytest.fail(f"PSPLIB data not found at {DATA} (set FLOORCTL_PSPLIB_DIR)")
    return DATA


def _section(text: str, title: str) -> list[list[int]]:
    """The integer rows of one section, read independently of the parser under test."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows: list[list[int]] = []
    for line in lines[start + 1 :]:
        if line.startswith("*"):
            break
        if re.fullmatch(r"[\s\d]+", line) and line.strip():
            rows.append([int(x) for x in line.split()])
    return rows


# --- the parser on a real file ----------------------------------------------------------------


def test_real_j30_file_matches_its_text(psplib_dir: Path) -> None:
    text = J301_1.read_text()
    inst = read_sm(J301_1)
    precedence = _section(text, "PRECEDENCE RELATIONS:")
    requests = _section(text, "REQUESTS/DURATIONS:")
    (capacities,) = _section(text, "RESOURCEAVAILABILITIES:")

    assert inst.name == "j301_1"
    assert inst.n_jobs == 32 == len(precedence) == len(requests)
    assert inst.horizon == 158
    assert inst.capacities == tuple(capacities) == (12, 13, 4, 12)
    assert inst.nonrenewable_capacities == ()
    assert sum(len(j.successors) for j in inst.jobs) == sum(row[2] for row in precedence)
    assert len(list(inst.precedences())) == sum(row[2] for row in precedence)
    for job, prow, rrow in zip(inst.jobs, precedence, requests, strict=True):
        assert job.number == prow[0] == rrow[0]
        assert job.successors == tuple(prow[3:])
        assert job.duration == rrow[2]
        assert job.demands == tuple(rrow[3:])
    assert inst.job(2).duration == 8 and inst.job(2).successors == (6, 11, 15)
    assert inst.jobs[0].duration == 0 and inst.sink.duration == 0 and inst.sink.successors == ()
    # the PROJECT INFORMATION line's MPM-Time is the critical path length
    assert inst.critical_path() == 38


def test_every_j30_critical_path_matches_the_ugent_cpm_column(psplib_dir: Path) -> None:
    """480 files parsed; CPM (critical path) from the UGent table is an independent check."""
    lines = J30_BKS.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ID;"))
    columns = lines[header].split(";")
    cpm = {}
    for line in lines[header + 1 :]:
        if line.startswith("#"):
            break
        row = line.split(";")
        cpm[row[columns.index("Ref1")].removesuffix(".sm")] = int(row[columns.index("CPM")])
    paths = sorted((psplib_dir / "j30" / "instances").glob("*.sm"))
    assert len(paths) == 480
    for path in paths:
        inst = read_sm(path)
        assert inst.n_jobs == 32 and inst.n_resources == 4
        assert inst.critical_path() == cpm[inst.name], inst.name


# --- the parser's errors --------------------------------------------------------------------

TINY = """\
************************************************************************
jobs (incl. supersource/sink ):  4
horizon                       :  10
RESOURCES
  - renewable                 :  1   R
  - nonrenewable              :  0   N
  - doubly constrained        :  0   D
************************************************************************
PRECEDENCE RELATIONS:
jobnr.    #modes  #successors   successors
   1        1          2           2   3
   2        1          1           4
   3        1          1           4
   4        1          0
************************************************************************
REQUESTS/DURATIONS:
jobnr. mode duration  R 1
------------------------------------------------------------------------
  1      1     0       0
  2      1     3       2
  3      1     4       2
  4      1     0       0
************************************************************************
RESOURCEAVAILABILITIES:
  R 1
    3
************************************************************************
"""


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_tiny_instance_parses() -> None:
    inst = parse_sm(TINY, source="tiny.sm")
    assert inst.name == "tiny"
    assert [j.duration for j in inst.jobs] == [0, 3, 4, 0]
    assert list(inst.precedences()) == [(1, 2), (1, 3), (2, 4), (3, 4)]
    assert inst.capacities == (3,)
    assert inst.critical_path() == 4


@pytest.mark.parametrize(
    ("old", "new", "message", "line_fragment"),
    [
        (
            "   2        1          1           4",
            "   2        2          1           4",
            "job 2 has 2 modes: only single-mode is supported",
            "   2        2          1",
        ),
        (
            "   3        1          1           4",
            "   3        1          2           4",
            "job 3 says 2 successors but lists 1",
            "   3        1          2",
        ),
        (
            "   3        1          1           4",
            "   3        1          1           9",
            "job 3: successor 9 is not in 1..4",
            "   3        1          1           9",
        ),
        ("  3      1     4       2", "  3      1     x       2", "'x' is not an integer", "x  "),
        (
            "  3      1     4       2",
            "  3      1     4       2   1",
            "expected job, mode, duration and 1 demand(s), got 5 numbers",
            "  3      1     4       2   1",
        ),
        ("  3      1     4       2", "  3      1     4       5", "needs 5 of resource R1", "REQ"),
        ("    3\n", "    3  4\n", "expected 1 capacities, got 2", "    3  4"),
        (
            "   4        1          0",
            "   4        1          1           2",
            "cycle through job(s) 2, 4",
            "PRECEDENCE RELATIONS",
        ),
        ("   4        1          0\n", "", "precedence relations miss job(s) 4", "PRECEDENCE"),
    ],
)
def test_errors_name_the_file_and_line(
    old: str, new: str, message: str, line_fragment: str
) -> None:
    assert old in TINY
    text = TINY.replace(old, new, 1)
    with pytest.raises(PsplibError) as info:
        parse_sm(text, source="bad.sm")
    line = _line_of(text, line_fragment)
    assert str(info.value) == f"bad.sm:{line}: {info.value.message}"
    assert message in info.value.message
    assert info.value.source == "bad.sm" and info.value.line == line


def test_missing_section_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PsplibError, match=r"^cut\.sm: no line starting with 'RESOURCEAVAIL"):
        parse_sm(TINY.split("RESOURCEAVAILABILITIES")[0], source="cut.sm")
    missing = tmp_path / "nope.sm"
    with pytest.raises(PsplibError, match=rf"^{re.escape(str(missing))}: cannot read"):
        read_sm(missing)


# --- best-known tables ----------------------------------------------------------------------


def test_ugent_tables(psplib_dir: Path) -> None:
    j30 = read_best_known(J30_BKS)
    assert len(j30) == 480 and all(b.optimal and b.lb == b.ub for b in j30.values())
    assert j30["j301_1"].ub == 43
    j60 = read_best_known(psplib_dir / "bks_ugent_2024" / "J60_1.csv")  # cp1252 notes
    assert len(j60) == 480
    assert sum(b.optimal for b in j60.values()) == 462
    open_one = j60["j609_1"]
    assert (open_one.lb, open_one.ub, open_one.optimal) == (84, 87, False)


BKS_TEXT = """\
Title;T
ID;Ref1;Ref2;LB value;UB value;OPT value
1;a_1.sm;0;10;12;0
2;a_2.sm;0;7;7;7
# Record sets:
ID;1
"""


def test_best_known_parse_and_errors() -> None:
    table = parse_best_known(BKS_TEXT, source="t.csv")
    assert table["a_1"].ub == 12 and not table["a_1"].optimal
    assert table["a_2"].optimal
    bad = BKS_TEXT.replace("2;a_2.sm;0;7;7;7", "2;a_2.sm;0;9;7;0")
    with pytest.raises(PsplibError, match=r"^t\.csv:4: a_2: LB 9 > UB 7$"):
        parse_best_known(bad, source="t.csv")
    bad = BKS_TEXT.replace("0;10;12;0", "0;10;?;0")
    with pytest.raises(PsplibError, match=r"^t\.csv:3: a_1: UB value '\?' is not an integer$"):
        parse_best_known(bad, source="t.csv")
    with pytest.raises(PsplibError, match=r"^t\.csv: no header row"):
        parse_best_known("Title;T\n", source="t.csv")


# --- the adapter onto the product's problem, solved by the product's core ---------------------


def _plain_optimum(inst: Instance) -> int:
    """The plain CP-SAT RCPSP model (scheduling guide §2), as an independent reference."""
    m = cp_model.CpModel()
    s = {j.number: m.new_int_var(0, inst.horizon, f"s{j.number}") for j in inst.jobs}
    iv = {j.number: m.new_fixed_size_interval_var(s[j.number], j.duration, "") for j in inst.jobs}
    for p, q in inst.precedences():
        m.add(s[q] >= s[p] + inst.job(p).duration)
    for r, cap in enumerate(inst.capacities):
        used = [j for j in inst.jobs if j.demands[r] and j.duration]
        m.add_cumulative([iv[j.number] for j in used], [j.demands[r] for j in used], cap)
    m.minimize(s[inst.sink.number])
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10
    assert solver.solve(m) == cp_model.OPTIMAL
    return round(solver.objective_value)


def test_adapter_maps_jobs_resources_and_precedences(psplib_dir: Path) -> None:
    inst = read_sm(J301_1)
    problem = to_problem(inst)
    assert problem.grid == 1 and problem.horizon == inst.horizon == 158
    assert [(r.id, r.capacity) for r in problem.resources] == [
        ("R1", 12),
        ("R2", 13),
        ("R3", 4),
        ("R4", 12),
    ]
    assert len(problem.operations) == 32 and len(problem.batches) == 1
    assert len(problem.precedences) == len(list(inst.precedences()))
    job2 = problem.operation("j2")
    assert job2.duration == 8
    assert [(q.candidates, q.demand) for q in job2.requirements] == [(("R1",), 4)]
    assert {(p.before, p.after) for p in problem.precedences if p.before == "j2"} == {
        ("j2", "j6"),
        ("j2", "j11"),
        ("j2", "j15"),
    }
    assert problem.operation("j1").milestone and problem.operation("j32").milestone


def test_tiny_instance_through_the_core_reaches_the_plain_optimum() -> None:
    # two jobs of demand 2 on a capacity-3 resource cannot overlap: 3 + 4 = 7, not 4
    inst = parse_sm(TINY, source="tiny.sm")
    optimum = _plain_optimum(inst)
    assert optimum == 7
    result = solve(to_problem(inst), SolveOptions(time_limit=10, workers=2, seed=1))
    assert result.status is Status.OPTIMAL
    assert result.schedule is not None and result.schedule.makespan == optimum
    assert result.objective.makespan == optimum
    assert check(to_problem(inst), result.schedule) == []


def test_known_j30_instance_reaches_the_known_optimum(psplib_dir: Path) -> None:
    """j301_1: optimum 43 in J30.csv (and j30opt.sm); proved in ~0.02 s by both models."""
    inst = read_sm(J301_1)
    known = read_best_known(J30_BKS)["j301_1"]
    assert known.optimal and known.ub == 43
    problem = to_problem(inst)
    result = solve(problem, SolveOptions(time_limit=10, workers=2, seed=1))
    assert result.status is Status.OPTIMAL
    assert result.schedule is not None and result.schedule.makespan == known.ub
    assert check(problem, result.schedule) == []
    # the schedule respects the file itself, read independently of the adapter
    at = {a.operation: a for a in result.schedule.assignments}
    for p, q in inst.precedences():
        assert at[f"j{q}"].start >= at[f"j{p}"].end
    for t in range(known.ub):
        running = [j for j in inst.jobs if at[f"j{j.number}"].start <= t < at[f"j{j.number}"].end]
        for r, cap in enumerate(inst.capacities):
            assert sum(j.demands[r] for j in running) <= cap

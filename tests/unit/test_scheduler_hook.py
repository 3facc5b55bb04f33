"""floorctl_add_schedule_constraints: a test plugin adds a real site rule to the model."""

from __future__ import annotations

import datetime as dt

from floorctl import hookimpl
from floorctl.pluginmanager import get_plugin_manager
from floorctl.scheduler import (
    Batch,
    Operation,
    Problem,
    Requirement,
    Resource,
    SolveOptions,
    Status,
    solve,
)

EPOCH = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)


def test_site_rule_plugin_changes_the_schedule():
    class NoFillBeforeNoon:
        """Site rule: no 'fill' starts in the first 6 hours (the morning is for cleaning)."""

        __name__ = "no-fill-before-noon"

        @hookimpl
        def floorctl_add_schedule_constraints(self, model, problem):
            for op in problem.operations:
                if op.name == "fill":
                    model.model.add(model.start(op.id) * model.grid >= 6 * 60)

    p = Problem(
        name="hook",
        epoch=EPOCH,
        grid=15,
        horizon=24 * 60,  # a derived horizon is tight: rules added by hooks need room
        resources=(Resource("M"),),
        batches=(Batch("a", due=60),),
        operations=(Operation("a/fill", "a", "fill", 60, (Requirement("m", ("M",)),)),),
    )
    opts = SolveOptions(time_limit=5)
    plain = solve(p, opts)
    assert plain.schedule.index()["a/fill"].start == 0
    pm = get_plugin_manager(autoload=False, plugins=[NoFillBeforeNoon()])

    def hook(m, prob):
        pm.hook.floorctl_add_schedule_constraints(model=m, problem=prob)

    ruled = solve(p, opts, hooks=[hook])
    assert ruled.status is Status.OPTIMAL
    assert ruled.schedule.index()["a/fill"].start == 360
    assert ruled.objective.weighted_tardiness == 360  # the rule costs 6 h of lateness

"""Every floorctl hook. docs/plugins.md documents each one under its exact signature.

Hook names follow ``floorctl_<verb>_<noun>``: ``register_*`` receive a registry object,
``add_*`` mutate a host object, ``on_*`` are notifications that return None and must not block.
pluggy has no async support: hooks return objects, and the daemon awaits methods on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from floorctl.alarms.engine import Transition
    from floorctl.kinds import KindRegistry
    from floorctl.model import Event, Reading
    from floorctl.scheduler.model import SchedulingModel
    from floorctl.scheduler.problem import Problem

hookspec = pluggy.HookspecMarker("floorctl")


# --- registration --------------------------------------------------------------------------


@hookspec(historic=True)
def floorctl_register_kinds(registry: KindRegistry) -> None:
    """Register device kinds.

    Call ``registry.add(Kind(...))`` once per kind. A kind is an attrs options class (the shape
    of ``[device.options]``) plus a driver factory; see docs/plugins.md.

    :param registry: the floor's kind registry.
    """


# --- command line --------------------------------------------------------------------------


@hookspec
def floorctl_add_commands(cli: click.Group) -> None:
    """Add commands to the ``floorctl`` command line.

    :param cli: the top-level click group; call ``cli.add_command(...)`` or decorate with
        ``@cli.command()``.
    """


# --- scheduling ----------------------------------------------------------------------------


@hookspec
def floorctl_add_schedule_constraints(model: SchedulingModel, problem: Problem) -> None:
    """Add site rules to the batch scheduler's CP-SAT model, after it is built and before
    it is solved (``floorctl schedule``).

    :param model: the ``floorctl.scheduler.SchedulingModel``: ``model.model`` is the
        ``cp_model.CpModel``; ``model.start(op_id)`` a start variable (grid ticks),
        ``model.end_minutes(op_id)`` the exact end in minutes, ``model.uses(resource_id,
        op_id)`` the literal "the operation uses the resource" (None if it cannot).
    :param problem: the ``floorctl.scheduler.Problem`` being solved, frozen.
    """


# --- runtime notifications -----------------------------------------------------------------


@hookspec
def floorctl_on_reading(reading: Reading) -> None:
    """Called for every reading the daemon ingests, good or bad, in arrival order.

    Runs on the daemon's event loop: it must return quickly and must not block. An exception
    raised here is logged and counted; it never stops ingest.

    :param reading: the reading, frozen.
    """


@hookspec
def floorctl_on_alarm(transition: Transition) -> None:
    """Called for every alarm state transition, at once and in order: an alarm raised,
    escalated, acknowledged, shelved, returned to normal, or a point that cannot be evaluated.

    Notifications (a pager, a file, an e-mail gateway) are plugins of this hook. Same rules as
    ``floorctl_on_reading``: quick, non-blocking; exceptions are logged and counted.

    :param transition: the transition record (``floorctl.alarms.engine.Transition``), frozen.
    """


@hookspec
def floorctl_on_event(event: Event) -> None:
    """Called for every floor event: comm loss and recovery, hub up/down, queue overflow.

    Same rules as ``floorctl_on_reading``: quick, non-blocking, exceptions are logged.

    :param event: the event, frozen.
    """

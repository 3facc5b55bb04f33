"""``floorctl tui [FILE] [--read-only] [--plan PLAN] [--schedule SCHEDULE]``."""

from __future__ import annotations

from pathlib import Path

import click


def register_commands(cli: click.Group) -> None:
    """Add ``floorctl tui`` to the command line."""
    cli.add_command(tui)


@click.command("tui")
@click.argument("file", default="devices.toml", type=click.Path(dir_okay=False))
@click.option(
    "--read-only", is_flag=True, help="Watch only: no acknowledging, commands or schedule changes."
)
@click.option(
    "--plan",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The production plan (facility.toml) for the Schedule screen.",
)
@click.option(
    "--schedule",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The current schedule (JSON); accepting a regenerated one writes it here.",
)
@click.pass_obj
def tui(obj: object, file: str, read_only: bool, plan: Path | None, schedule: Path | None) -> None:
    """The floor's terminal UI: rooms, alarms, schedule, devices, audit trail (docs/tui.md).

    A client of the running daemon (`floorctl run`): it reads the state topics on the broker
    that FILE names and sends signed requests; several terminals can watch one floor.
    """
    from floorctl.tui.app import FloorApp

    config = obj.load(file)  # type: ignore[attr-defined]
    if schedule is not None and plan is None:
        raise click.UsageError("--schedule needs --plan (the schedule is read against the plan)")
    FloorApp(config, read_only=read_only, plan=plan, schedule=schedule).run()

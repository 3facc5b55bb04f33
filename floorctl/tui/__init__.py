"""The floor's terminal UI (Textual): ``floorctl tui``. docs/tui.md describes the screens.

Stable interface (the demo and the benchmarks build on it; additions only):

- ``floorctl.tui.app.FloorApp(config, *, read_only=False, plan=None, schedule=None,
  banner=None, source=None, clock=time.time, kinds=None)``: a ``textual.app.App``.

  - ``config``: the floor's :class:`floorctl.config.Config` (loaded with the kinds, so every
    device's points are known).
  - ``read_only``: write actions (acknowledge, shelve, unshelve, reset, device commands,
    regenerate / accept a schedule, record an actual start / end) are hidden and refused with a
    message.
  - ``plan`` / ``schedule``: the plan (facility.toml) and the current schedule (JSON) for the
    Schedule screen; accepting a regenerated schedule writes ``schedule`` atomically. The batch
    view asks the daemon for a batch's record with both, as absolute paths.
  - ``banner``: one line shown on every screen (the demo puts its users' credentials there).
  - ``source``: a :class:`floorctl.tui.source.StateSource`. Default: a live
    :class:`~floorctl.tui.source.MqttSource` on ``config.state_connection`` reading the state
    topics under ``config.floor.prefix`` (status, stats, events, point/#, device/#, alarm/#,
    room/#; not the request topics, which carry signatures). Tests and snapshots pass a
    :class:`~floorctl.tui.source.RecordedSource` (a list of ``(topic, payload)`` messages,
    payloads as dicts or JSON bytes, plus canned query replies: ``history``, ``audit``,
    ``batch-record``).
  - ``clock``: UNIX time now; tests freeze it.
  - ``kinds``: the device kinds (a :class:`floorctl.kinds.KindRegistry`) that name each
    device's commands; default: the installed plugins' kinds.

  Attributes for drivers of the app: ``state`` (:class:`floorctl.tui.state.FloorState`, the
  pure model), ``redraws`` (how many redraws ran), ``source_status``.
- ``floorctl.tui.cli.register_commands(cli)``: adds ``floorctl tui [FILE=devices.toml]
  [--read-only] [--plan PLAN] [--schedule SCHEDULE]``.
"""

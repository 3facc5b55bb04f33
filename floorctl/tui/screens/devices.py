"""Devices: connection state, age of the last reading, error counters; device commands (tare,
zero, ...) through the signature modal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from floorctl.commands import CommandRequest, Signer
from floorctl.config import Config
from floorctl.kinds import KindRegistry
from floorctl.publisher import Topics
from floorctl.tui.format import age, clock_time
from floorctl.tui.screens.base import FloorView
from floorctl.tui.screens.signature import SignatureModal, SignRequest

REQUEST_TIMEOUT = 20.0
COLUMNS = (
    "Device",
    "Room",
    "Kind",
    "State",
    "Since",
    "Last reading",
    "Readings",
    "Bad",
    "Errors",
    "Overruns",
    "Last error",
)


def device_commands(config: Config, kinds: KindRegistry | None) -> dict[str, dict[str, str]]:
    """Each device's commands (name -> what it does), from its kind's driver: a driver may offer
    fewer than its class (a gateway balance without a command topic has none), so ask an
    instance built without a hub, as ``floorctl device`` does."""
    from floorctl.driver import DeviceContext
    from floorctl.pluginmanager import collect_kinds, get_plugin_manager

    if kinds is None:
        kinds = collect_kinds(get_plugin_manager())
    out: dict[str, dict[str, str]] = {}
    for dev in config.devices:
        kind = kinds.get(dev.kind)
        if kind is None:
            out[dev.id] = {}
            continue
        try:
            ctx = DeviceContext(device=dev, options=config.device_options.get(dev.id), hub=None)
            driver = kind.driver(ctx)
            out[dev.id] = dict(getattr(driver, "commands", {}))
        except Exception:  # a driver that cannot be built offline: its class's list
            out[dev.id] = dict(getattr(kind.driver, "commands", {}))
    return out


class DevicesScreen(FloorView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "device_command", "Command", id="devices.command"),
        Binding("j", "cursor_down", "Down", id="devices.down", show=False),
        Binding("k", "cursor_up", "Up", id="devices.up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._commands: dict[str, dict[str, str]] | None = None

    def body(self) -> Iterable[Widget]:
        table: DataTable[str] = DataTable(id="device-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="device-detail")

    @property
    def commands(self) -> dict[str, dict[str, str]]:
        if self._commands is None:
            self._commands = device_commands(self.floor_app.config, self.floor_app.kinds)
        return self._commands

    def update_view(self, changes: frozenset[str]) -> None:
        if not changes & {"devices", "clock"}:
            return
        app = self.floor_app
        now = app.clock()
        table = self.query_one("#device-table", DataTable)
        rows = []
        for dev in app.config.devices:
            st = app.state.devices.get(dev.id)
            if st is None:
                rows.append((dev.id, dev.room or "-", dev.kind, "NO STATUS") + ("-",) * 7)
                continue
            c = st.counters
            last = st.last_reading_time
            err = c.get("last_error")
            err_text = "-"
            if err:
                err_text = f"{err} ({clock_time(c.get('last_error_time'))})"
            rows.append(
                (
                    dev.id,
                    dev.room or "-",
                    st.kind or dev.kind,
                    st.state.upper(),
                    clock_time(st.since),
                    "never" if last is None else f"{age(now - last)} ago",
                    str(c.get("readings", "-")),
                    str(c.get("bad", "-")),
                    str(c.get("errors", "-")),
                    str(c.get("overruns", "-")),
                    err_text,
                )
            )
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)
        self._show_detail()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _selected(self) -> str | None:
        table = self.query_one("#device-table", DataTable)
        devices = self.floor_app.config.devices
        if not devices or not 0 <= table.cursor_row < len(devices):
            return None
        return devices[table.cursor_row].id

    def _show_detail(self) -> None:
        device = self._selected()
        detail = self.query_one("#device-detail", Static)
        if device is None:
            detail.update("")
            return
        dev = self.floor_app.config.device(device)
        cmds = self.commands.get(device, {})
        text = f"{device}: {dev.name if dev else ''}"
        text += (
            f"\ncommands: {', '.join(sorted(cmds))} (c: run one, signed)"
            if cmds
            else "\nno commands"
        )
        detail.update(text)

    def action_cursor_down(self) -> None:
        self.query_one("#device-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#device-table", DataTable).action_cursor_up()

    def action_device_command(self) -> None:
        app = self.floor_app
        if not app.allows("device_command"):
            app.refuse_write("device commands")
            return
        device = self._selected()
        if device is None:
            self.notify("no device selected", severity="warning")
            return
        cmds = self.commands.get(device, {})
        if not cmds:
            self.notify(f"{device} has no commands", severity="warning")
            return
        topics = Topics(app.config.floor.prefix)

        async def send(signer: Signer, args: dict[str, Any]) -> Mapping[str, Any]:
            command = args.pop("command")
            req = CommandRequest.new(device, command, args, signer)
            return await app.source.request(
                topics.command(device), req.payload(), req.id, REQUEST_TIMEOUT
            )

        st = app.state.devices.get(device)
        request = SignRequest(
            f"Command to {device}",
            f"state {st.state if st else 'unknown'}; the daemon runs it through the device's "
            "driver. Signature meaning: performed; who may: technician, supervisor.",
            send,
            choices=tuple((name, f"{name}: {what}") for name, what in sorted(cmds.items())),
        )
        app.push_screen(SignatureModal(request))

"""Updating a ``Static``'s text cheaply: the screens redraw four times a second while readings
arrive, and a ``Static.update`` lays out the whole screen unless told that the widget's size
stays (a layout re-measures every widget of the screen)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static


def extent(text: str) -> tuple[int, int]:
    """(line count, widest line in terminal cells) of ``text``."""
    lines = text.split("\n")
    return len(lines), max(cell_len(line) for line in lines)


def keeps_height(widget: Static, old: str | None, new: str) -> bool:
    """Whether ``new`` text takes the height ``old`` takes in ``widget``: as many lines, none
    wider than the widget (a wider line wraps). False before the widget is laid out."""
    width = widget.content_size.width
    if old is None or width <= 0:
        return False
    (n_old, w_old), (n_new, w_new) = extent(old), extent(new)
    return n_old == n_new and max(w_old, w_new) <= width


def set_text(widget: Static, text: str | Text) -> bool:
    """Show ``text`` in ``widget`` unless it is already shown; lay the screen out only when the
    widget's height may change. True when the text changed."""
    shown = widget.content
    old = shown.plain if isinstance(shown, Text) else shown if isinstance(shown, str) else None
    if isinstance(text, str) and isinstance(shown, str) and text == shown:
        return False
    if isinstance(text, Text) and isinstance(shown, Text) and text == shown:
        return False
    new = text.plain if isinstance(text, Text) else text
    widget.update(text, layout=not keeps_height(widget, old, new))
    return True

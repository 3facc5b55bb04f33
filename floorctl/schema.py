"""JSON Schema (draft 2020-12) of devices.toml, generated from the attrs classes in config.py.

Nothing here lists fields by hand: the schema is a walk over the attrs classes the loader
structures into (``config._SECTIONS``), their type hints and defaults, and the options class
of every installed kind. Descriptions come from the code: a class docstring describes its
table, and an attribute's trailing ``# comment`` (or a ``#:`` comment on the lines above it)
describes its key. The constrained types take their rules from config.py itself: the id
and duration patterns from its regular expressions, the integer ranges from the converter's
hooks. So adding an attribute to a config class shows up here without touching this file.

The schema is what an editor can check alone. Cross-references (``via``, ``room``,
``pressure_reference``), duplicates, register overlaps and each kind's ``validate`` stay with
``floorctl check-config``.
"""

from __future__ import annotations

import ast
import collections.abc
import enum
import functools
import inspect
import io
import math
import re
import sys
import tokenize
import types
import typing
from typing import Any

import attrs

from floorctl import config
from floorctl.kinds import KindRegistry, Transport

__all__ = ["DIALECT", "json_schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: a string holding a ${VAR} or ${VAR:-default} reference (config.py's own expression)
ENV_PATTERN = config._VAR.pattern
#: an id or name, anchored as the loader anchors it
IDENT_PATTERN = config._IDENT.pattern
#: one or more "<number><unit>" parts, as parse_duration reads them
DURATION_PATTERN = rf"^\s*(?:{config._DURATION_PART.pattern})+\s*$"

_ENV_REF = {"$ref": "#/$defs/env"}
_NOQA = re.compile(r"^noqa(?::\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?\s*(?:-\s*)?")


def json_schema(kinds: KindRegistry) -> dict[str, Any]:
    """The JSON Schema of devices.toml with the ``[device.options]`` of every kind in ``kinds``."""
    builder = _Builder()
    properties: dict[str, Any] = {}
    for key, (cls, is_array) in config._SECTIONS.items():
        ref = builder.ref(cls)
        if is_array:
            properties[key] = {
                "type": "array",
                "description": f"[[{key}]] tables",
                "items": ref,
            }
        else:
            properties[key] = {**ref, "description": f"the [{key}] table"}
    # The one rule that is not a type: the live floor is published on MQTT.
    properties["mqtt"]["minItems"] = 1

    device_cls = config._SECTIONS["device"][0]
    builder.add_kinds(builder.defs[builder.name(device_cls)], kinds)

    return {
        "$schema": DIALECT,
        "title": "floorctl devices.toml",
        "description": "The connections, rooms and devices of one production floor "
        "(reference: docs/configuration.md). Checked in full by `floorctl check-config`.",
        "type": "object",
        "properties": properties,
        "required": ["mqtt"],
        "additionalProperties": False,
        "$defs": {
            "env": {
                "type": "string",
                "pattern": ENV_PATTERN,
                "description": "${VAR} or ${VAR:-default}, expanded from the environment "
                "before the value is checked",
            },
            **dict(sorted(builder.defs.items())),
        },
    }


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._names: dict[type, str] = {}

    # -- $defs --------------------------------------------------------------------------------

    def name(self, cls: type) -> str:
        if cls not in self._names:
            name = cls.__name__
            if name in self._names.values() or name == "env":
                name = f"{cls.__module__}.{cls.__qualname__}"
            self._names[cls] = name
        return self._names[cls]

    def ref(self, cls: type) -> dict[str, Any]:
        name = self.name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a class may refer to itself
            self.defs[name] = self._define(cls)
        return {"$ref": f"#/$defs/{_pointer(name)}"}

    def _define(self, cls: type) -> dict[str, Any]:
        if attrs.has(cls):
            return self._object(cls)
        if issubclass(cls, enum.Enum):
            values = [_json_value(m.value) for m in cls]
            return {"anyOf": [{"enum": values}, _ENV_REF], **_doc(cls)}
        if issubclass(cls, config.Duration):
            return {
                "type": "string",
                "anyOf": [{"pattern": DURATION_PATTERN}, {"pattern": ENV_PATTERN}],
                **_doc(cls),
                "examples": ["500ms", "5s", "1m30s", "2h"],
            }
        if issubclass(cls, config.Ident):
            return {
                "type": "string",
                "anyOf": [{"pattern": IDENT_PATTERN}, {"pattern": ENV_PATTERN}],
                **_doc(cls),
            }
        raise TypeError(f"no $defs entry for {cls!r}")

    def _object(self, cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        comments = _attribute_comments(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for a in attrs.fields(cls):
            prop = dict(self.type_schema(hints.get(a.name, a.type)))
            if comments.get(a.name):
                prop["description"] = comments[a.name]
            if a.default is attrs.NOTHING:
                required.append(a.name)
            else:
                default = _json_default(a.default)
                if default is not None:
                    prop["default"] = default
            properties[a.name] = prop
        out: dict[str, Any] = {"type": "object", **_doc(cls), "properties": properties}
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out

    # -- types --------------------------------------------------------------------------------

    def type_schema(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return {}
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            # TOML has no null: an Optional key is simply one that may be left out
            if len(options) == 1:
                return self.type_schema(options[0])
            return {"anyOf": [self.type_schema(a) for a in options]}
        if origin is typing.Literal:
            return {"anyOf": [{"enum": [_json_value(a) for a in args]}, _ENV_REF]}
        if origin is typing.Annotated:
            return self.type_schema(args[0])
        if origin in (tuple, list, set, frozenset, collections.abc.Sequence):
            if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
                return {
                    "type": "array",
                    "prefixItems": [self.type_schema(a) for a in args],
                    "items": False,
                }
            return {"type": "array", "items": self.type_schema(args[0]) if args else {}}
        if origin in (dict, collections.abc.Mapping):
            value = self.type_schema(args[1]) if len(args) == 2 else {}
            if not value:
                return {"type": "object"}
            return {"type": "object", "additionalProperties": value}
        if not isinstance(tp, type):
            return _undescribed(tp)
        if attrs.has(tp) or issubclass(tp, enum.Enum | config.Duration | config.Ident):
            return self.ref(tp)
        if issubclass(tp, bool):
            return {"anyOf": [{"type": "boolean"}, _ENV_REF]}
        if issubclass(tp, int):
            return {"anyOf": [{"type": "integer", **_int_range(tp)}, _ENV_REF]}
        if issubclass(tp, float):
            return {"anyOf": [{"type": "number"}, _ENV_REF]}
        if issubclass(tp, str):
            return {"type": "string"}
        if tp in (tuple, list, set, frozenset):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        return _undescribed(tp)

    # -- kinds --------------------------------------------------------------------------------

    def add_kinds(self, device: dict[str, Any], kinds: KindRegistry) -> None:
        """``kind`` as an enum, and per kind: its options class, field keys and transport."""
        props = device["properties"]
        names = kinds.names()
        if names:
            kind_desc = "device kind; `floorctl plugins` lists the installed ones"
            props["kind"] = {"anyOf": [{"enum": names}, _ENV_REF], "description": kind_desc}
        props["options"] = {
            "type": "object",
            "description": "options of the device's kind ([device.options]); their keys "
            "depend on kind",
        }
        rules = []
        for kind in kinds:
            then: dict[str, Any] = {}
            then_props: dict[str, Any] = {"options": self.ref(kind.options)}
            then_props["fields"] = {"items": {"propertyNames": {"enum": sorted(kind.field_keys)}}}
            required = []
            if attrs.has(kind.options) and any(
                a.default is attrs.NOTHING for a in attrs.fields(kind.options)
            ):
                required.append("options")
            if kind.transport is Transport.NONE:
                then_props["via"] = False
            else:
                required.append("via")
            if kind.transport is not Transport.MODBUS:
                then_props["unit_id"] = False
            then["properties"] = then_props
            if required:
                then["required"] = required
            rules.append(
                {
                    "if": {"properties": {"kind": {"const": kind.name}}, "required": ["kind"]},
                    "then": then,
                }
            )
        if rules:
            device["allOf"] = rules


# --- helpers -----------------------------------------------------------------------------------


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _undescribed(tp: Any) -> dict[str, Any]:
    """Any value, for a type this walker does not know (a plugin's own): the schema stays
    usable and check-config still checks the value."""
    return {"$comment": f"type {tp!r} is not described here; floorctl check-config checks it"}


def _int_range(tp: type) -> dict[str, int]:
    """minimum/maximum of a constrained int, read from the converter hook's closure."""
    if tp is int:
        return {}
    hook = config.CONVERTER.get_structure_hook(tp)
    try:
        found = inspect.getclosurevars(hook).nonlocals
    except TypeError:
        return {}
    lo, hi = found.get("lo"), found.get("hi")
    out = {}
    if isinstance(lo, int):
        out["minimum"] = lo
    if isinstance(hi, int):
        out["maximum"] = hi
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


def _json_default(value: Any) -> Any:
    """The default as written in devices.toml, or None when TOML cannot write it."""
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        if value.takes_self:
            return None
        value = value.factory()
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if isinstance(value, config.Duration):
        return config.format_duration(value)
    if isinstance(value, bool | int | str):
        return _json_value(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list | set | frozenset):
        items = [_json_default(v) for v in value]
        return None if any(v is None for v in items) else items
    if isinstance(value, dict):
        out = {str(k): _json_default(v) for k, v in value.items()}
        return None if any(v is None for v in out.values()) else out
    return None


def _doc(cls: type) -> dict[str, str]:
    found = _class_source(cls)
    doc = ast.get_docstring(found[0]) if found else None
    return {"description": _clean(doc)} if doc else {}


def _clean(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def _attribute_comments(cls: type) -> dict[str, str]:
    """attribute -> the comment that documents it: ``x: int = 0  # this``, or ``#: this``
    on the lines just above it, or a string literal on the line after it. Inherited
    attributes keep the comment of the class that declares them."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            out.update(_own_attribute_comments(klass))
    return out


def _own_attribute_comments(cls: type) -> dict[str, str]:
    found = _class_source(cls)
    if found is None:
        return {}
    node, leading, trailing = found
    out: dict[str, str] = {}
    for n, stmt in enumerate(node.body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        parts: list[str] = []
        row = stmt.lineno - 1
        while row in leading:
            parts.insert(0, leading[row])
            row -= 1
        end = stmt.end_lineno or stmt.lineno
        if end in trailing:
            parts.append(_NOQA.sub("", trailing[end]))
        following = node.body[n + 1] if n + 1 < len(node.body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            parts.append(following.value.value)
        text = _clean(" ".join(p for p in parts if p))
        if text:
            out[stmt.target.id] = text
    return out


def _class_source(cls: type) -> tuple[ast.ClassDef, dict[int, str], dict[int, str]] | None:
    """The ClassDef of ``cls`` and its module's ``#:`` and trailing comments by line."""
    parsed = _parse_module(cls.__module__)
    if parsed is None:
        return None
    classes, leading, trailing = parsed
    node = classes.get(cls.__qualname__)
    return (node, leading, trailing) if node is not None else None


@functools.cache
def _parse_module(
    name: str,
) -> tuple[dict[str, ast.ClassDef], dict[int, str], dict[int, str]] | None:
    """Every class of a module by qualified name, and its comments: ``#:`` lines (leading)
    and comments after code (trailing). Parsed once: inspect.getsource(cls) re-parses the
    whole module for every class."""
    module = sys.modules.get(name)
    try:
        source = inspect.getsource(module)  # type: ignore[arg-type]
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    classes: dict[str, ast.ClassDef] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                classes.setdefault(prefix + child.name, child)
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{prefix}{child.name}.<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    leading: dict[int, str] = {}
    trailing: dict[int, str] = {}
    lines = source.splitlines()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            row = tok.start[0]
            if lines[row - 1].lstrip().startswith("#"):
                if tok.string.startswith("#:"):
                    leading[row] = tok.string[2:].strip()
            else:
                trailing[row] = tok.string[1:].strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return classes, leading, trailing

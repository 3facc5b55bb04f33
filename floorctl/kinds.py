"""Device kinds: what a plugin registers through ``floorctl_register_kinds``.

A kind is an attrs options class (the shape of ``[device.options]``) plus a factory that
builds a driver for one configured device. Built-in kinds and third-party kinds register
through exactly the same hook.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

if TYPE_CHECKING:
    from floorctl.config import DeviceConfig, FieldConfig
    from floorctl.driver import DeviceContext, Driver


class Transport(enum.StrEnum):
    """What kind of ``via`` connection a device kind needs."""

    MQTT = "mqtt"
    MODBUS = "modbus"
    NONE = "none"  # the driver opens its own transport (e.g. a TCP socket), or needs none


@frozen
class EmptyOptions:
    """Options class of kinds that take no ``[device.options]``."""


#: (path below the device, message) pairs, e.g. (("fields", "dp", "address"), "required")
Problems = Iterable[tuple[tuple[str | int, ...], str]]


@frozen
class Kind:
    """A device kind.

    :param name: the ``kind = "..."`` value in devices.toml.
    :param driver: ``driver(ctx) -> Driver`` builds the driver of one device.
    :param transport: the type of connection ``via`` must name.
    :param options: attrs class that ``[device.options]`` is structured into.
    :param validate: optional ``validate(device, options)`` yielding (path, message) problems
        about the device's fields or options that types alone cannot express.
    :param field_keys: the per-field keys this kind understands (others are reported).
    """

    name: str
    driver: Callable[[DeviceContext], Driver]
    transport: Transport
    options: type = EmptyOptions
    description: str = ""
    validate: Callable[[DeviceConfig, Any], Problems] | None = None
    field_keys: frozenset[str] = frozenset(
        {"name", "unit", "deadband", "precision", "quantity", "limits"}
    )
    #: ``points(device, options)`` -> the kind's own point map (name, unit, quantity, and
    #: anything else its driver needs). A device that lists no fields gets all of them; listed
    #: fields must name points of the map and override what they set (unit, limits, ...).
    points: Callable[[DeviceConfig, Any], Sequence[FieldConfig]] | None = None
    #: further connection types ``via`` may name (cold storage: Modbus or MQTT)
    alt_transports: frozenset[Transport] = frozenset()

    @property
    def transports(self) -> frozenset[Transport]:
        return frozenset({self.transport}) | self.alt_transports


class KindError(ValueError):
    pass


@define
class KindRegistry:
    """Collects the kinds that plugins register; passed to ``floorctl_register_kinds``."""

    _kinds: dict[str, Kind] = field(factory=dict)
    _owners: dict[str, str] = field(factory=dict)
    current_plugin: str = "?"

    def add(self, kind: Kind) -> None:
        if not isinstance(kind, Kind):
            raise KindError(f"plugin {self.current_plugin!r} registered {kind!r}, not a Kind")
        if kind.name in self._kinds:
            raise KindError(
                f"kind {kind.name!r} registered twice: by {self._owners[kind.name]!r} "
                f"and by {self.current_plugin!r}"
            )
        self._kinds[kind.name] = kind
        self._owners[kind.name] = self.current_plugin

    def get(self, name: str) -> Kind | None:
        return self._kinds.get(name)

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._kinds[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._kinds)

"""Alert and action limits: defaults from a room's ISO class and pressure regime, overridden
per room (``[room.limits.<quantity>]``) and per point (``limits = {...}`` on a field).

Every resolved limit carries where it came from, so ``floorctl config show`` can say why a
point alarms where it does. The defaults are the engineering suggestions of domain.md §7
(USP <797>/<800>, ISO 14644-1, EU GMP Annex 1); QA approves the site's values.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from floorctl.config import Config, DeviceConfig, FieldConfig, RoomConfig
    from floorctl.kinds import KindRegistry


class Quantity(enum.StrEnum):
    """What a point measures; decides which default limits apply to it."""

    DIFFERENTIAL_PRESSURE = "differential_pressure"  # Pa, against the room's reference
    TEMPERATURE = "temperature"  # °C, room air
    HUMIDITY = "humidity"  # %RH, room air
    PARTICLES_0_5 = "particles_0_5um"  # counts/m³ >= 0.5 µm
    PARTICLES_5_0 = "particles_5_0um"  # counts/m³ >= 5.0 µm
    REFRIGERATOR_TEMPERATURE = "refrigerator_temperature"  # °C, USP <659> 2..8
    FREEZER_TEMPERATURE = "freezer_temperature"  # °C, USP <659> -25..-10
    DOWNFLOW_VELOCITY = "downflow_velocity"  # m/s, BSC / LAF work zone
    INFLOW_VELOCITY = "inflow_velocity"  # m/s, BSC front opening


class PressureRegime(enum.StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"  # hazardous-drug rooms: a two-sided band
    NEUTRAL = "neutral"


LIMIT_KEYS = ("action_low", "alert_low", "alert_high", "action_high")


@frozen
class LimitConfig:
    """A limits table as written in devices.toml; a key left out is inherited."""

    alert_low: float | None = None
    alert_high: float | None = None
    action_low: float | None = None
    action_high: float | None = None

    def items(self) -> Iterator[tuple[str, float]]:
        for key in LIMIT_KEYS:
            value = getattr(self, key)
            if value is not None:
                yield key, value


@frozen
class Limit:
    value: float | None
    source: str


@frozen
class PointLimits:
    device: str
    point: str
    quantity: Quantity
    unit: str | None
    room: str | None
    action_low: Limit
    alert_low: Limit
    alert_high: Limit
    action_high: Limit

    def get(self, key: str) -> Limit:
        return getattr(self, key)

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "point": self.point,
            "quantity": self.quantity.value,
            "unit": self.unit,
            "room": self.room,
            **{k: {"value": self.get(k).value, "source": self.get(k).source} for k in LIMIT_KEYS},
        }


# --- defaults (domain.md §7) ----------------------------------------------------------------

#: ISO 14644-1 class limits, counts/m³ (>= 0.5 µm, >= 5.0 µm); ISO 5 at 5 µm from Annex 1 grade A.
ISO_PARTICLES = {5: (3_520.0, 29.0), 7: (352_000.0, 2_930.0), 8: (3_520_000.0, 29_300.0)}
#: alert level as a share of the class limit (site practice; QA sets the real value)
PARTICLE_ALERT_SHARE = 0.5

_FIXED: dict[Quantity, tuple[LimitConfig, str]] = {
    Quantity.REFRIGERATOR_TEMPERATURE: (
        LimitConfig(action_low=2.0, alert_low=3.0, alert_high=7.0, action_high=8.0),
        "default: refrigerator 2-8 °C (USP <659>), alert 1 °C inside",
    ),
    Quantity.FREEZER_TEMPERATURE: (
        LimitConfig(action_low=-25.0, alert_low=-24.0, alert_high=-11.0, action_high=-10.0),
        "default: freezer -25..-10 °C (USP <659>), alert 1 °C inside",
    ),
    Quantity.DOWNFLOW_VELOCITY: (
        LimitConfig(action_low=0.25, alert_low=0.28, alert_high=0.45, action_high=0.50),
        "default: unidirectional downflow 0.25-0.50 m/s (certifier's range)",
    ),
    Quantity.INFLOW_VELOCITY: (
        LimitConfig(action_low=0.40, alert_low=0.45),
        "default: BSC inflow >= 0.40 m/s (80 fpm), alert 0.45 m/s",
    ),
}


def default_limits(quantity: Quantity, room: RoomConfig | None) -> tuple[LimitConfig, str]:
    """The default limits of a quantity in a room, and a one-line reason."""
    from floorctl.config import IsoClass

    if quantity in _FIXED:
        return _FIXED[quantity]
    iso = room.iso_class if room is not None else IsoClass.UNCLASSIFIED
    classified = iso is not IsoClass.UNCLASSIFIED
    regime = room.pressure if room is not None else None
    if quantity is Quantity.DIFFERENTIAL_PRESSURE:
        if regime is PressureRegime.POSITIVE:
            return (
                LimitConfig(action_low=5.0, alert_low=10.0),
                "default: positive room, action below +5 Pa (USP <797> 0.020 in. w.c.), "
                "alert below 10 Pa (503B design margin)",
            )
        if regime is PressureRegime.NEGATIVE:
            return (
                LimitConfig(action_low=-7.5, alert_low=-7.0, alert_high=-3.0, action_high=-2.5),
                "default: negative HD room, action outside -7.5..-2.5 Pa "
                "(USP <800> -0.030..-0.010 in. w.c.), alert 0.5 Pa inside",
            )
        return LimitConfig(), "no default: room has no pressure regime"
    if not classified:
        return LimitConfig(), "no default: unclassified room"
    if quantity is Quantity.TEMPERATURE:
        return (
            LimitConfig(alert_high=19.5, action_high=20.0),
            "default: classified room, action above 20 °C (USP <797>), alert 19.5 °C",
        )
    if quantity is Quantity.HUMIDITY:
        return (
            LimitConfig(alert_high=55.0, action_high=60.0),
            "default: classified room, action at 60 %RH (USP <797>), alert 55 %RH",
        )
    if quantity in (Quantity.PARTICLES_0_5, Quantity.PARTICLES_5_0):
        limits = ISO_PARTICLES[int(iso.value)]
        action = limits[0] if quantity is Quantity.PARTICLES_0_5 else limits[1]
        size = "0.5" if quantity is Quantity.PARTICLES_0_5 else "5.0"
        return (
            LimitConfig(alert_high=action * PARTICLE_ALERT_SHARE, action_high=action),
            f"default: {iso} class limit {action:,.0f}/m³ >= {size} µm (ISO 14644-1"
            f"{', Annex 1 grade A' if int(iso.value) == 5 and size == '5.0' else ''}), "
            f"alert at {PARTICLE_ALERT_SHARE:.0%}",
        )
    return LimitConfig(), "no default"


# --- resolution -------------------------------------------------------------------------------


def point_quantity(field: FieldConfig) -> Quantity | None:
    """A field's quantity: written on the field, or filled in from its kind's point map."""
    return field.quantity


def resolve_point(
    config: Config, device: DeviceConfig, field: FieldConfig, quantity: Quantity
) -> PointLimits:
    room = config.room(device.room)
    base, reason = default_limits(quantity, room)
    layers: list[tuple[LimitConfig, str]] = [(base, reason)]
    if room is not None and quantity in room.limits:
        layers.append((room.limits[quantity], f"room[{room.id}].limits.{quantity.value}"))
    if field.limits is not None:
        layers.append((field.limits, f"device[{device.id}].fields[{field.name}].limits"))
    resolved: dict[str, Limit] = {}
    for key in LIMIT_KEYS:
        value, source = None, "none"
        for layer, where in layers:
            v = getattr(layer, key)
            if v is not None:
                value, source = v, where
        resolved[key] = Limit(value, source)
    return PointLimits(
        device=device.id,
        point=field.name,
        quantity=quantity,
        unit=field.unit,
        room=device.room,
        **resolved,
    )


def resolve_limits(
    config: Config, kinds: KindRegistry | None = None
) -> dict[tuple[str, str], PointLimits]:
    """Limits of every point whose quantity is known, keyed by (device, point)."""
    out: dict[tuple[str, str], PointLimits] = {}
    for d in config.devices:
        for f in d.fields:
            q = point_quantity(f)
            if q is not None:
                out[(d.id, f.name)] = resolve_point(config, d, f, q)
    return out


def check_order(limits: Mapping[str, float | None]) -> str | None:
    """action_low <= alert_low < alert_high <= action_high for the limits that are set."""
    present = [(k, limits[k]) for k in LIMIT_KEYS if limits.get(k) is not None]
    for (k1, v1), (k2, v2) in itertools.pairwise(present):
        assert v1 is not None and v2 is not None
        if not (math.isfinite(v1) and math.isfinite(v2)):
            return "limits must be finite numbers"
        strict = k1 == "alert_low" and k2 == "alert_high"
        if v1 > v2 or (strict and v1 == v2):
            return f"{k1} ({v1:g}) must be {'below' if strict else 'at most'} {k2} ({v2:g})"
    return None

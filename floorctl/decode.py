"""Turning Modbus register words into values, and back; planning block reads.

Pure functions, no I/O. Registers are 16-bit unsigned words as pymodbus returns
them. Byte orders follow the Telegraf/industry naming, with A the most
significant byte of the value:

======  ========  ==========  ===============================
order   16-bit    32-bit      64-bit
======  ========  ==========  ===============================
ABCD    AB        ABCD        ABCDEFGH (big-endian)
CDAB    AB        CDAB        GHEFCDAB (word order reversed)
BADC    BA        BADC        BADCFEHG (bytes swapped in words)
DCBA    BA        DCBA        HGFEDCBA (little-endian)
======  ========  ==========  ===============================

Decoding never raises on bad input: it returns ``Decoded(None, Quality.BAD, detail)``.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Collection, Sequence
from typing import Any

from attrs import frozen

from floorctl.model import Quality

__all__ = [
    "ByteOrder",
    "DataType",
    "Decoded",
    "ReadBlock",
    "RegisterTable",
    "decode_bits",
    "decode_registers",
    "encode_registers",
    "find_overlaps",
    "plan_reads",
    "register_count",
    "to_raw",
]

WORD_MAX = 0xFFFF
ADDRESS_SPACE = 0x10000  # Modbus addresses are 0..65535


class DataType(enum.StrEnum):
    """How the words of a register point are interpreted."""

    INT16 = "INT16"
    UINT16 = "UINT16"
    INT32 = "INT32"
    UINT32 = "UINT32"
    FLOAT32 = "FLOAT32"
    FLOAT64 = "FLOAT64"
    BOOL = "BOOL"


class ByteOrder(enum.StrEnum):
    """Byte order of a multi-byte value on the wire (see the module docstring)."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class RegisterTable(enum.StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        """True for the single-bit tables (coils, discrete inputs)."""
        return self in (RegisterTable.COIL, RegisterTable.DISCRETE)


# dtype -> (struct format char, word count)
_FORMATS: dict[DataType, tuple[str, int]] = {
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.FLOAT32: ("f", 2),
    DataType.FLOAT64: ("d", 4),
    DataType.BOOL: ("H", 1),
}

_INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}

_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

# order -> (reverse word order, swap bytes inside each word)
_SWAPS: dict[ByteOrder, tuple[bool, bool]] = {
    ByteOrder.ABCD: (False, False),
    ByteOrder.CDAB: (True, False),
    ByteOrder.BADC: (False, True),
    ByteOrder.DCBA: (True, True),
}


def register_count(dtype: DataType) -> int:
    """Number of 16-bit registers (or, for BOOL, bits) a value of ``dtype`` occupies."""
    return _FORMATS[DataType(dtype)][1]


@frozen
class Decoded:
    """A decoded value and its quality; ``detail`` says why it is not good."""

    value: float | int | bool | None
    quality: Quality
    detail: str | None = None


def _bad(detail: str) -> Decoded:
    return Decoded(None, Quality.BAD, detail)


def _fmt(number: float) -> str:
    """A number for a detail string: integral floats without the trailing ``.0``."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return str(number)


def _reorder(words: Sequence[int], byte_order: ByteOrder) -> bytes:
    """Wire words <-> big-endian bytes (the mapping is its own inverse)."""
    reverse_words, swap_bytes = _SWAPS[ByteOrder(byte_order)]
    if reverse_words:
        words = list(reversed(words))
    out = bytearray()
    for word in words:
        hi, lo = word >> 8, word & 0xFF
        out += bytes((lo, hi) if swap_bytes else (hi, lo))
    return bytes(out)


def decode_registers(
    registers: Sequence[int],
    dtype: DataType,
    byte_order: ByteOrder = ByteOrder.ABCD,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    sentinels: Collection[float] = (),
    precision: int | None = None,
) -> Decoded:
    """Decode register words into ``raw * scale + offset``; bad input gives a BAD ``Decoded``.

    Sentinels are compared with the raw value, before scale and offset. A BOOL
    register is true when non-zero; scale, offset and precision do not apply to it.
    """
    dtype = DataType(dtype)
    fmt, expected = _FORMATS[dtype]
    if len(registers) != expected:
        noun = "register" if expected == 1 else "registers"
        return _bad(f"expected {expected} {noun}, got {len(registers)}")
    for word in registers:
        if not isinstance(word, int):
            return _bad(f"register value {word!r} is not an integer")
        if not 0 <= word <= WORD_MAX:
            return _bad(f"register value {word} out of 0..{WORD_MAX}")

    raw: float | int = struct.unpack(">" + fmt, _reorder(registers, byte_order))[0]
    if isinstance(raw, float):
        if math.isnan(raw):
            return _bad("NaN")
        if math.isinf(raw):
            return _bad("infinite")
    for sentinel in sentinels:
        if raw == sentinel:
            return _bad(f"sentinel value {_fmt(sentinel)}")

    if dtype is DataType.BOOL:
        return Decoded(raw != 0, Quality.GOOD)
    value: float | int = raw
    if scale != 1 or offset != 0:
        value = float(raw) * scale + offset
        if not math.isfinite(value):
            return _bad("infinite after scale/offset")
    if precision is not None:
        value = round(value, precision)
    return Decoded(value, Quality.GOOD)


def decode_bits(bits: Sequence[bool]) -> Decoded:
    """Decode one coil or discrete input (a one-element sequence) into a bool."""
    if len(bits) != 1:
        return _bad(f"expected 1 bit, got {len(bits)}")
    bit = bits[0]
    if not isinstance(bit, int) or bit not in (0, 1):
        return _bad(f"bit value {bit!r} is not a boolean")
    return Decoded(bool(bit), Quality.GOOD)


def encode_registers(
    raw: float | int, dtype: DataType, byte_order: ByteOrder = ByteOrder.ABCD
) -> list[int]:
    """Encode a raw (unscaled) value into register words; the inverse of decoding.

    Integer types need an integral value in range, else ValueError. NaN and
    infinities are allowed for float types. BOOL encodes as the word 0 or 1.
    """
    dtype = DataType(dtype)
    fmt, _ = _FORMATS[dtype]
    if dtype is DataType.BOOL:
        value: float | int = 1 if raw else 0
    elif dtype in _INT_RANGES:
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(f"{dtype} needs an integral value, got {raw!r}")
            raw = int(raw)
        lo, hi = _INT_RANGES[dtype]
        if not lo <= raw <= hi:
            raise ValueError(f"{raw} out of {dtype} range {lo}..{hi}")
        value = int(raw)
    else:
        value = float(raw)
    try:
        packed = struct.pack(">" + fmt, value)
    except (OverflowError, struct.error) as exc:
        raise ValueError(f"cannot encode {raw!r} as {dtype}: {exc}") from None
    be = _reorder([(packed[i] << 8) | packed[i + 1] for i in range(0, len(packed), 2)], byte_order)
    return [(be[i] << 8) | be[i + 1] for i in range(0, len(be), 2)]


def to_raw(
    value: float,
    scale: float = 1.0,
    offset: float = 0.0,
    dtype: DataType | None = None,
) -> float | int:
    """Engineering value -> raw value: ``(value - offset) / scale``.

    Integer types are rounded (half to even) and clamped to the type's range;
    FLOAT32 is rounded to float32 precision and finite values clamped to its range.
    BOOL gives 0 or 1 (scale and offset do not apply). ``dtype`` is required.
    """
    if dtype is None:
        raise TypeError("to_raw() needs a dtype")
    dtype = DataType(dtype)
    if dtype is DataType.BOOL:
        return 1 if value else 0
    if scale == 0:
        raise ValueError("scale must not be 0")
    raw = (value - offset) / scale
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]
        if math.isnan(raw):
            raise ValueError(f"cannot convert NaN to {dtype}")
        if math.isinf(raw):
            return lo if raw < 0 else hi
        return min(max(round(raw), lo), hi)
    if dtype is DataType.FLOAT32:
        if math.isfinite(raw):
            raw = min(max(raw, -_FLOAT32_MAX), _FLOAT32_MAX)
        return struct.unpack(">f", struct.pack(">f", raw))[0]
    return raw


@frozen
class ReadBlock:
    """One Modbus read request; ``members`` index the items it serves."""

    table: RegisterTable
    address: int
    count: int
    members: tuple[int, ...]

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.address + self.count


def _check_item(index: int, table: RegisterTable, address: int, count: int) -> None:
    if count < 1:
        raise ValueError(f"item {index}: count must be at least 1, got {count}")
    if address < 0 or address + count > ADDRESS_SPACE:
        raise ValueError(
            f"item {index}: addresses {address}..{address + count - 1} outside 0..65535"
        )


def plan_reads(
    items: Sequence[tuple[RegisterTable, int, int]],
    *,
    max_words: int = 125,
    max_bits: int = 2000,
) -> list[ReadBlock]:
    """Group ``(table, address, count)`` items into as few contiguous reads as the limits allow.

    Items of one table that touch or overlap share a block while the block stays within
    ``max_words`` (register tables) or ``max_bits`` (coils, discrete inputs); an item is
    never split, gaps always split. Blocks come sorted by (table, address); ``members``
    ascend. Raises ValueError for an item larger than its limit or outside 0..65535.
    """
    if max_words < 1 or max_bits < 1:
        raise ValueError("max_words and max_bits must be at least 1")
    by_table: dict[RegisterTable, list[tuple[int, int, int]]] = {}
    for index, (table, address, count) in enumerate(items):
        table = RegisterTable(table)
        _check_item(index, table, address, count)
        limit = max_bits if table.is_bits else max_words
        if count > limit:
            unit = "bits" if table.is_bits else "registers"
            raise ValueError(f"item {index}: {count} {unit} exceed the {limit}-{unit} read limit")
        by_table.setdefault(table, []).append((address, address + count, index))

    blocks: list[ReadBlock] = []
    for table, spans in by_table.items():
        limit = max_bits if table.is_bits else max_words
        spans.sort()
        start, end, members = spans[0][0], spans[0][1], [spans[0][2]]
        for address, stop, index in spans[1:]:
            if address <= end and max(end, stop) - start <= limit:
                end = max(end, stop)
                members.append(index)
                continue
            blocks.append(ReadBlock(table, start, end - start, tuple(sorted(members))))
            start, end, members = address, stop, [index]
        blocks.append(ReadBlock(table, start, end - start, tuple(sorted(members))))
    blocks.sort(key=lambda block: (block.table, block.address))
    return blocks


def find_overlaps(items: Sequence[tuple[RegisterTable, int, int]]) -> list[tuple[int, int]]:
    """Pairs of item indices ``(i, j)``, ``i < j``, whose ranges overlap in the same table."""
    spans = sorted(
        (RegisterTable(table), address, address + count, index)
        for index, (table, address, count) in enumerate(items)
        if count > 0
    )
    pairs: list[tuple[int, int]] = []
    for n, (table, _, end, index) in enumerate(spans):
        for other_table, other_start, _, other_index in spans[n + 1 :]:
            if other_table != table or other_start >= end:
                break
            pairs.append((min(index, other_index), max(index, other_index)))
    pairs.sort()
    return pairs


class FieldDecoder:
    """``decode_registers`` for one field, prepared once: the hot path of every Modbus poll.

    Word order and byte order become a word reversal plus a big- or little-endian pack of the
    16-bit words; the value is then unpacked big-endian with one prepared ``struct.Struct``.
    Gives exactly what ``decode_registers`` gives for the same arguments (tested).
    """

    __slots__ = (
        "_bits",
        "_bool",
        "_count",
        "_offset",
        "_pack",
        "_precision",
        "_reverse",
        "_scale",
        "_scaled",
        "_sentinels",
        "_unpack",
    )

    def __init__(
        self,
        dtype: DataType | None,
        byte_order: ByteOrder = ByteOrder.ABCD,
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        sentinels: Collection[float] = (),
        precision: int | None = None,
        bits: bool = False,
    ) -> None:
        dtype = DataType(dtype or DataType.UINT16)
        fmt, count = _FORMATS[dtype]
        order = ByteOrder(byte_order)
        self._bits = bits
        self._bool = dtype is DataType.BOOL
        self._count = count
        # ABCD: words as they are; CDAB: words reversed; BADC: bytes swapped in each word;
        # DCBA: both (16-bit types: only the byte swap applies)
        self._reverse = count > 1 and order in (ByteOrder.CDAB, ByteOrder.DCBA)
        swap = order in (ByteOrder.BADC, ByteOrder.DCBA)
        self._pack = struct.Struct(("<" if swap else ">") + "H" * count)
        self._unpack = struct.Struct(">" + fmt)
        self._scale = scale
        self._offset = offset
        self._scaled = scale != 1 or offset != 0
        self._sentinels = tuple(sentinels)
        self._precision = precision

    def __call__(self, words: Sequence[int] | Sequence[bool]) -> tuple[Any, Quality, str | None]:
        """(value, quality, detail) of one field's words (or bit)."""
        if self._bits:
            d = decode_bits(words)  # type: ignore[arg-type]
            return d.value, d.quality, d.detail
        if len(words) != self._count:
            noun = "register" if self._count == 1 else "registers"
            return None, Quality.BAD, f"expected {self._count} {noun}, got {len(words)}"
        try:
            packed = self._pack.pack(*(reversed(words) if self._reverse else words))
        except struct.error:
            for word in words:
                if not isinstance(word, int):
                    return None, Quality.BAD, f"register value {word!r} is not an integer"
                if not 0 <= word <= WORD_MAX:
                    return None, Quality.BAD, f"register value {word} out of 0..{WORD_MAX}"
            raise
        raw = self._unpack.unpack(packed)[0]
        if isinstance(raw, float) and not math.isfinite(raw):
            return None, Quality.BAD, "NaN" if math.isnan(raw) else "infinite"
        if self._sentinels:
            for sentinel in self._sentinels:
                if raw == sentinel:
                    return None, Quality.BAD, f"sentinel value {_fmt(sentinel)}"
        if self._bool:
            return raw != 0, Quality.GOOD, None
        value = raw
        if self._scaled:
            value = float(raw) * self._scale + self._offset
            if not math.isfinite(value):
                return None, Quality.BAD, "infinite after scale/offset"
        if self._precision is not None:
            value = round(value, self._precision)
        return value, Quality.GOOD, None

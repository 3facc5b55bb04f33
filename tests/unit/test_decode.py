"""Tests for floorctl.decode: register decoding/encoding and read planning."""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floorctl.decode import (
    ByteOrder,
    DataType,
    Decoded,
    ReadBlock,
    RegisterTable,
    decode_bits,
    decode_registers,
    encode_registers,
    find_overlaps,
    plan_reads,
    register_count,
    to_raw,
)
from floorctl.model import Quality

# --- independent reference encoder -------------------------------------------------------------

# Wire byte i is big-endian byte PERM[i] (A=0, B=1, ...), written out from the naming definition.
PERMUTATIONS: dict[int, dict[ByteOrder, tuple[int, ...]]] = {
    2: {  # AB
        ByteOrder.ABCD: (0, 1),  # AB
        ByteOrder.CDAB: (0, 1),  # AB
        ByteOrder.BADC: (1, 0),  # BA
        ByteOrder.DCBA: (1, 0),  # BA
    },
    4: {  # ABCD
        ByteOrder.ABCD: (0, 1, 2, 3),  # ABCD
        ByteOrder.CDAB: (2, 3, 0, 1),  # CDAB
        ByteOrder.BADC: (1, 0, 3, 2),  # BADC
        ByteOrder.DCBA: (3, 2, 1, 0),  # DCBA
    },
    8: {  # ABCDEFGH
        ByteOrder.ABCD: (0, 1, 2, 3, 4, 5, 6, 7),  # ABCDEFGH
        ByteOrder.CDAB: (6, 7, 4, 5, 2, 3, 0, 1),  # GHEFCDAB
        ByteOrder.BADC: (1, 0, 3, 2, 5, 4, 7, 6),  # BADCFEHG
        ByteOrder.DCBA: (7, 6, 5, 4, 3, 2, 1, 0),  # HGFEDCBA
    },
}

STRUCT_FORMATS = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}
NUMERIC = list(STRUCT_FORMATS)
INTEGER_TYPES = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]
ORDERS = list(ByteOrder)


def reference_words(value: float, dtype: DataType, order: ByteOrder) -> list[int]:
    """Encode with struct, permute the big-endian bytes, split into 16-bit words."""
    be = struct.pack(STRUCT_FORMATS[dtype], value)
    wire = bytes(be[i] for i in PERMUTATIONS[len(be)][order])
    return [(wire[i] << 8) | wire[i + 1] for i in range(0, len(wire), 2)]


def f32(value: float) -> float:
    """``value`` rounded to the nearest float32."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


F32_MAX = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]
F32_MIN_SUBNORMAL = struct.unpack(">f", bytes.fromhex("00000001"))[0]

MATRIX_VALUES: dict[DataType, list[float]] = {
    DataType.INT16: [-(2**15), -12345, -1, 0, 1, 0x1234, 2**15 - 1],
    DataType.UINT16: [0, 1, 0x00FF, 0x0100, 0x1234, 0xABCD, 2**16 - 1],
    DataType.INT32: [-(2**31), -0x01020304, -1, 0, 1, 0x12345678, 2**31 - 1],
    DataType.UINT32: [0, 1, 0xFFFF, 0x10000, 0x12345678, 0xDEADBEEF, 2**32 - 1],
    DataType.FLOAT32: [
        0.0,
        1.0,
        -1.5,
        f32(3.14159),
        f32(-273.15),
        f32(1.0e-30),
        F32_MAX,
        -F32_MAX,
        F32_MIN_SUBNORMAL,
    ],
    DataType.FLOAT64: [0.0, 1.0, -2.5, math.pi, -math.e * 1e100, 1.7976931348623157e308, 5e-324],
}
MATRIX = [
    pytest.param(dtype, order, value, id=f"{dtype}-{order}-{value!r}")
    for dtype, values in MATRIX_VALUES.items()
    for order in ORDERS
    for value in values
]


# --- type x byte-order matrix ------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "order", "value"), MATRIX)
def test_matrix_decode_and_encode(dtype: DataType, order: ByteOrder, value: float) -> None:
    words = reference_words(value, dtype, order)
    assert len(words) == register_count(dtype)

    decoded = decode_registers(words, dtype, order)
    assert decoded == Decoded(value, Quality.GOOD)
    assert type(decoded.value) is type(value)
    assert encode_registers(value, dtype, order) == words


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (ByteOrder.ABCD, [0x3F80, 0x0000]),
        (ByteOrder.CDAB, [0x0000, 0x3F80]),
        (ByteOrder.BADC, [0x803F, 0x0000]),
        (ByteOrder.DCBA, [0x0000, 0x803F]),
    ],
)
def test_known_float32_vectors(order: ByteOrder, words: list[int]) -> None:
    """1.0f is 3F 80 00 00; a hand-written anchor independent of the permutation table."""
    assert decode_registers(words, DataType.FLOAT32, order).value == 1.0


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (ByteOrder.ABCD, [0x0102, 0x0304, 0x0506, 0x0708]),
        (ByteOrder.CDAB, [0x0708, 0x0506, 0x0304, 0x0102]),
        (ByteOrder.BADC, [0x0201, 0x0403, 0x0605, 0x0807]),
        (ByteOrder.DCBA, [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_known_float64_vectors(order: ByteOrder, words: list[int]) -> None:
    expected = struct.unpack(">d", bytes(range(1, 9)))[0]
    assert decode_registers(words, DataType.FLOAT64, order).value == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (ByteOrder.ABCD, 0x1234),
        (ByteOrder.CDAB, 0x1234),
        (ByteOrder.BADC, 0x3412),
        (ByteOrder.DCBA, 0x3412),
    ],
)
def test_16_bit_orders(order: ByteOrder, expected: int) -> None:
    assert decode_registers([0x1234], DataType.UINT16, order).value == expected


def _raw_values(dtype: DataType) -> st.SearchStrategy[float]:
    if dtype is DataType.FLOAT32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if dtype is DataType.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    fmt = STRUCT_FORMATS[dtype]
    bits = struct.calcsize(fmt) * 8
    if fmt[-1].islower():
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2**bits - 1)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", NUMERIC)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip(dtype: DataType, order: ByteOrder, data: st.DataObject) -> None:
    value = data.draw(_raw_values(dtype))
    words = encode_registers(value, dtype, order)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert words == reference_words(value, dtype, order)
    decoded = decode_registers(words, dtype, order)
    assert decoded.quality is Quality.GOOD
    assert decoded.value == value


# --- enums and register_count ------------------------------------------------------------------


def test_register_count() -> None:
    assert [register_count(t) for t in DataType] == [1, 1, 2, 2, 2, 4, 1]


def test_enum_values() -> None:
    assert DataType("FLOAT32") is DataType.FLOAT32
    assert ByteOrder("CDAB") is ByteOrder.CDAB
    assert RegisterTable("discrete") is RegisterTable.DISCRETE
    assert [t.is_bits for t in RegisterTable] == [False, False, True, True]


# --- scale, offset, precision ------------------------------------------------------------------


def test_integer_without_scale_stays_int() -> None:
    decoded = decode_registers([0xFFFE], DataType.INT16)
    assert decoded.value == -2
    assert type(decoded.value) is int


def test_scale_and_offset() -> None:
    decoded = decode_registers([215], DataType.INT16, scale=0.1, offset=-5.0)
    assert decoded.quality is Quality.GOOD
    assert type(decoded.value) is float
    assert decoded.value == pytest.approx(16.5)


def test_integer_scale_gives_float() -> None:
    decoded = decode_registers([7], DataType.UINT16, scale=2)
    assert decoded.value == 14.0
    assert type(decoded.value) is float


def test_offset_only_gives_float() -> None:
    assert decode_registers([7], DataType.UINT16, offset=1).value == 8.0


def test_scale_applies_to_floats() -> None:
    words = encode_registers(2.5, DataType.FLOAT32, ByteOrder.CDAB)
    assert decode_registers(words, DataType.FLOAT32, ByteOrder.CDAB, scale=4, offset=1).value == 11


def test_precision_rounds_final_value() -> None:
    decoded = decode_registers([1234], DataType.INT16, scale=0.001, precision=2)
    assert decoded.value == 1.23
    words = encode_registers(21.3, DataType.FLOAT32)
    assert decode_registers(words, DataType.FLOAT32).value != 21.3  # float32 noise
    assert decode_registers(words, DataType.FLOAT32, precision=1).value == 21.3


def test_precision_keeps_int() -> None:
    decoded = decode_registers([1234], DataType.UINT16, precision=1)
    assert decoded.value == 1234
    assert type(decoded.value) is int


def test_scale_overflow_is_bad() -> None:
    words = encode_registers(1.7e308, DataType.FLOAT64)
    decoded = decode_registers(words, DataType.FLOAT64, scale=10)
    assert decoded.quality is Quality.BAD
    assert decoded.value is None


# --- bad values ----------------------------------------------------------------------------------


def test_sentinel_int16() -> None:
    assert decode_registers([0x7FFF], DataType.INT16, sentinels=(0x7FFF,)) == Decoded(
        None, Quality.BAD, "sentinel value 32767"
    )


def test_sentinel_uint16() -> None:
    decoded = decode_registers([0xFFFF], DataType.UINT16, sentinels=[65535])
    assert decoded.quality is Quality.BAD
    assert decoded.detail == "sentinel value 65535"


def test_sentinel_float32_negative() -> None:
    words = encode_registers(-9999.0, DataType.FLOAT32, ByteOrder.CDAB)
    decoded = decode_registers(words, DataType.FLOAT32, ByteOrder.CDAB, sentinels={-9999})
    assert decoded == Decoded(None, Quality.BAD, "sentinel value -9999")


def test_sentinel_compared_before_scale() -> None:
    bad = decode_registers([0x7FFF], DataType.INT16, scale=0.1, sentinels=(0x7FFF,))
    assert bad.quality is Quality.BAD
    good = decode_registers([100], DataType.INT16, scale=0.1, sentinels=(10.0,))
    assert good.quality is Quality.GOOD
    assert good.value == pytest.approx(10.0)


def test_non_sentinel_is_good() -> None:
    decoded = decode_registers([0x7FFE], DataType.INT16, sentinels=(0x7FFF, -1))
    assert decoded == Decoded(0x7FFE, Quality.GOOD)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [DataType.FLOAT32, DataType.FLOAT64])
def test_nan_is_bad(dtype: DataType, order: ByteOrder) -> None:
    words = reference_words(math.nan, dtype, order)
    assert decode_registers(words, dtype, order) == Decoded(None, Quality.BAD, "NaN")


@pytest.mark.parametrize("value", [math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [DataType.FLOAT32, DataType.FLOAT64])
def test_infinity_is_bad(dtype: DataType, value: float) -> None:
    words = reference_words(value, dtype, ByteOrder.DCBA)
    assert decode_registers(words, dtype, ByteOrder.DCBA) == Decoded(None, Quality.BAD, "infinite")


@pytest.mark.parametrize(
    ("words", "dtype", "detail"),
    [
        ([1], DataType.FLOAT32, "expected 2 registers, got 1"),
        ([], DataType.INT16, "expected 1 register, got 0"),
        ([1, 2], DataType.UINT16, "expected 1 register, got 2"),
        ([1, 2, 3], DataType.FLOAT64, "expected 4 registers, got 3"),
        ([1, 2, 3], DataType.INT32, "expected 2 registers, got 3"),
        ([0, 1], DataType.BOOL, "expected 1 register, got 2"),
    ],
)
def test_wrong_word_count(words: list[int], dtype: DataType, detail: str) -> None:
    assert decode_registers(words, dtype) == Decoded(None, Quality.BAD, detail)


@pytest.mark.parametrize(
    ("words", "detail"),
    [
        ([0, 70000], "register value 70000 out of 0..65535"),
        ([-1, 0], "register value -1 out of 0..65535"),
        ([0x10000, 0], "register value 65536 out of 0..65535"),
    ],
)
def test_out_of_range_words(words: list[int], detail: str) -> None:
    assert decode_registers(words, DataType.UINT32) == Decoded(None, Quality.BAD, detail)


def test_non_integer_word_is_bad() -> None:
    decoded = decode_registers([1.5], DataType.UINT16)  # type: ignore[list-item]
    assert decoded.quality is Quality.BAD
    assert decoded.value is None


def test_bool_register() -> None:
    assert decode_registers([0], DataType.BOOL) == Decoded(False, Quality.GOOD)
    assert decode_registers([1], DataType.BOOL) == Decoded(True, Quality.GOOD)
    assert decode_registers([0x0100], DataType.BOOL, scale=10).value is True


# --- decode_bits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "value"), [([True], True), ([False], False), ([1], True)])
def test_decode_bits(bits: list[bool], value: bool) -> None:
    decoded = decode_bits(bits)
    assert decoded == Decoded(value, Quality.GOOD)
    assert type(decoded.value) is bool


@pytest.mark.parametrize(
    ("bits", "detail"),
    [([], "expected 1 bit, got 0"), ([True, False], "expected 1 bit, got 2")],
)
def test_decode_bits_wrong_count(bits: list[bool], detail: str) -> None:
    assert decode_bits(bits) == Decoded(None, Quality.BAD, detail)


def test_decode_bits_non_boolean() -> None:
    assert decode_bits([2]).quality is Quality.BAD  # type: ignore[list-item]


# --- encode_registers and to_raw ---------------------------------------------------------------


def test_encode_rejects_out_of_range_and_fractions() -> None:
    with pytest.raises(ValueError):
        encode_registers(32768, DataType.INT16)
    with pytest.raises(ValueError):
        encode_registers(-1, DataType.UINT32)
    with pytest.raises(ValueError):
        encode_registers(1.5, DataType.INT32)
    with pytest.raises(ValueError):
        encode_registers(1e39, DataType.FLOAT32)


def test_encode_integral_float_and_bool() -> None:
    assert encode_registers(5.0, DataType.INT16) == [5]
    assert encode_registers(True, DataType.BOOL) == [1]
    assert encode_registers(0, DataType.BOOL) == [0]


def test_encode_nan_and_inf_for_simulators() -> None:
    words = encode_registers(math.nan, DataType.FLOAT32, ByteOrder.CDAB)
    assert decode_registers(words, DataType.FLOAT32, ByteOrder.CDAB).detail == "NaN"
    words = encode_registers(-math.inf, DataType.FLOAT64)
    assert decode_registers(words, DataType.FLOAT64).detail == "infinite"


def test_to_raw_inverts_scale_and_offset() -> None:
    assert to_raw(16.5, 0.1, -5.0, DataType.INT16) == 215
    assert to_raw(16.5, 0.1, -5.0, dtype=DataType.FLOAT64) == pytest.approx(215.0)
    assert type(to_raw(16.5, 0.1, dtype=DataType.UINT32)) is int


def test_to_raw_rounds_and_clamps() -> None:
    assert to_raw(12.34, 0.1, dtype=DataType.INT16) == 123
    assert to_raw(1e9, dtype=DataType.INT16) == 32767
    assert to_raw(-1e9, dtype=DataType.INT16) == -32768
    assert to_raw(-5, dtype=DataType.UINT16) == 0
    assert to_raw(1e12, dtype=DataType.UINT32) == 2**32 - 1
    assert to_raw(math.inf, dtype=DataType.INT32) == 2**31 - 1
    assert to_raw(1e39, dtype=DataType.FLOAT32) == F32_MAX
    assert to_raw(0.1, dtype=DataType.FLOAT32) == f32(0.1)
    assert to_raw(1e300, dtype=DataType.FLOAT64) == 1e300


def test_to_raw_bool_and_errors() -> None:
    assert to_raw(1.0, dtype=DataType.BOOL) == 1
    assert to_raw(0.0, dtype=DataType.BOOL) == 0
    with pytest.raises(ValueError):
        to_raw(1.0, 0.0, dtype=DataType.INT16)
    with pytest.raises(ValueError):
        to_raw(math.nan, dtype=DataType.INT16)
    with pytest.raises(TypeError):
        to_raw(1.0)


@pytest.mark.parametrize("dtype", NUMERIC)
@settings(max_examples=25, deadline=None)
@given(value=st.floats(-1e6, 1e6))
def test_to_raw_then_encode_decode(dtype: DataType, value: float) -> None:
    scale, offset = 0.1, 20.0
    raw = to_raw(value, scale, offset, dtype)
    words = encode_registers(raw, dtype, ByteOrder.CDAB)
    decoded = decode_registers(words, dtype, ByteOrder.CDAB, scale=scale, offset=offset)
    assert decoded.quality is Quality.GOOD
    assert decoded.value == pytest.approx(raw * scale + offset)


# --- plan_reads ----------------------------------------------------------------------------------

HR, IR, CO, DI = (
    RegisterTable.HOLDING,
    RegisterTable.INPUT,
    RegisterTable.COIL,
    RegisterTable.DISCRETE,
)


def test_plan_contiguous_items_share_a_block() -> None:
    items = [(HR, 4, 2), (HR, 0, 2), (HR, 2, 2)]
    assert plan_reads(items) == [ReadBlock(HR, 0, 6, (0, 1, 2))]


def test_plan_gap_splits_blocks() -> None:
    items = [(HR, 0, 2), (HR, 3, 1), (HR, 4, 2)]
    assert plan_reads(items) == [ReadBlock(HR, 0, 2, (0,)), ReadBlock(HR, 3, 3, (1, 2))]


def test_plan_overlapping_items_share_a_block() -> None:
    items = [(IR, 10, 4), (IR, 12, 2), (IR, 11, 1), (IR, 13, 4)]
    assert plan_reads(items) == [ReadBlock(IR, 10, 7, (0, 1, 2, 3))]


def test_plan_duplicate_items() -> None:
    assert plan_reads([(HR, 5, 2), (HR, 5, 2)]) == [ReadBlock(HR, 5, 2, (0, 1))]


def test_plan_word_limit() -> None:
    items = [(HR, 2 * n, 2) for n in range(100)]  # 200 contiguous registers
    blocks = plan_reads(items)
    assert [(b.address, b.count) for b in blocks] == [(0, 124), (124, 76)]
    assert blocks[0].members == tuple(range(62))
    assert blocks[1].members == tuple(range(62, 100))


def test_plan_exactly_at_limit() -> None:
    assert plan_reads([(HR, 0, 100), (HR, 100, 25)]) == [ReadBlock(HR, 0, 125, (0, 1))]
    assert plan_reads([(HR, 0, 100), (HR, 100, 26)]) == [
        ReadBlock(HR, 0, 100, (0,)),
        ReadBlock(HR, 100, 26, (1,)),
    ]


def test_plan_bit_limit() -> None:
    items = [(CO, n, 1) for n in range(2500)]
    blocks = plan_reads(items)
    assert [(b.address, b.count) for b in blocks] == [(0, 2000), (2000, 500)]
    # registers use the word limit; bits use the bit limit
    assert len(plan_reads([(DI, 0, 1500), (DI, 1500, 500)])) == 1
    assert len(plan_reads([(HR, 0, 100), (HR, 100, 100)])) == 2


def test_plan_custom_limits() -> None:
    items = [(HR, n, 1) for n in range(10)] + [(DI, n, 1) for n in range(10)]
    blocks = plan_reads(items, max_words=4, max_bits=5)
    assert [(b.table, b.address, b.count) for b in blocks] == [
        (DI, 0, 5),
        (DI, 5, 5),
        (HR, 0, 4),
        (HR, 4, 4),
        (HR, 8, 2),
    ]


def test_plan_tables_never_mixed_and_sorted() -> None:
    items = [(IR, 0, 2), (HR, 0, 2), (CO, 0, 1), (DI, 0, 1), (HR, 2, 2), (IR, 2, 1)]
    blocks = plan_reads(items)
    assert blocks == [
        ReadBlock(CO, 0, 1, (2,)),
        ReadBlock(DI, 0, 1, (3,)),
        ReadBlock(HR, 0, 4, (1, 4)),
        ReadBlock(IR, 0, 3, (0, 5)),
    ]


def test_plan_accepts_table_strings() -> None:
    assert plan_reads([("holding", 1, 1)]) == [ReadBlock(HR, 1, 1, (0,))]  # type: ignore[list-item]


def test_plan_empty() -> None:
    assert plan_reads([]) == []


def test_plan_rejects_oversized_and_invalid_items() -> None:
    with pytest.raises(ValueError, match="item 1"):
        plan_reads([(HR, 0, 1), (HR, 10, 126)])
    with pytest.raises(ValueError):
        plan_reads([(CO, 0, 2001)])
    plan_reads([(CO, 0, 2000)])  # at the limit is fine
    with pytest.raises(ValueError):
        plan_reads([(HR, 0, 0)])
    with pytest.raises(ValueError):
        plan_reads([(HR, -1, 1)])
    with pytest.raises(ValueError):
        plan_reads([(HR, 65535, 2)])
    with pytest.raises(ValueError):
        plan_reads([(HR, 0, 1)], max_words=0)


_items = st.lists(
    st.tuples(st.sampled_from(list(RegisterTable)), st.integers(0, 60), st.integers(1, 8)),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(items=_items, max_words=st.integers(8, 20), max_bits=st.integers(8, 20))
def test_plan_properties(
    items: list[tuple[RegisterTable, int, int]], max_words: int, max_bits: int
) -> None:
    blocks = plan_reads(items, max_words=max_words, max_bits=max_bits)

    served = sorted(m for b in blocks for m in b.members)
    assert served == list(range(len(items)))  # every item in exactly one block
    assert blocks == sorted(blocks, key=lambda b: (b.table, b.address))
    for block in blocks:
        assert block.count <= (max_bits if block.table.is_bits else max_words)
        assert list(block.members) == sorted(block.members)
        covered: set[int] = set()
        for m in block.members:
            table, address, count = items[m]
            assert table is block.table
            assert block.address <= address and address + count <= block.end
            covered.update(range(address, address + count))
        assert covered == set(range(block.address, block.end))  # no gaps, nothing extra
    for a, b in itertools.pairwise(blocks):
        if a.table is b.table:  # neighbours could not have been merged
            limit = max_bits if a.table.is_bits else max_words
            assert b.address > a.end or max(a.end, b.end) - a.address > limit


# --- find_overlaps -------------------------------------------------------------------------------


def test_find_overlaps() -> None:
    items = [
        (HR, 0, 2),  # 0
        (HR, 2, 2),  # 1: adjacent to 0, no overlap
        (IR, 0, 4),  # 2: other table
        (HR, 3, 4),  # 3: overlaps 1
        (HR, 4, 1),  # 4: inside 3
        (HR, 0, 10),  # 5: covers 0, 1, 3, 4
        (CO, 0, 1),  # 6
        (DI, 0, 1),  # 7: same address, other table
    ]
    assert find_overlaps(items) == [(0, 5), (1, 3), (1, 5), (3, 4), (3, 5), (4, 5)]


def test_find_overlaps_none() -> None:
    assert find_overlaps([]) == []
    assert find_overlaps([(HR, 0, 1), (HR, 1, 1), (IR, 0, 1), (CO, 0, 1)]) == []


def _brute_overlaps(items: Sequence[tuple[RegisterTable, int, int]]) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i, (t1, a1, n1) in enumerate(items)
        for j, (t2, a2, n2) in enumerate(items)
        if i < j and t1 is t2 and a1 < a2 + n2 and a2 < a1 + n1
    ]


@settings(max_examples=60, deadline=None)
@given(items=_items)
def test_find_overlaps_matches_brute_force(items: list[tuple[RegisterTable, int, int]]) -> None:
    assert find_overlaps(items) == _brute_overlaps(items)


# --- FieldDecoder: the prepared fast path must equal decode_registers ------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from floorctl.decode import FieldDecoder  # noqa: E402

_WORDS = st.integers(min_value=0, max_value=0xFFFF)
_NUMERIC = [t for t in DataType if t is not DataType.BOOL]


@pytest.mark.parametrize("dtype", [*_NUMERIC, DataType.BOOL])
@pytest.mark.parametrize("order", list(ByteOrder))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_field_decoder_equals_decode_registers(dtype, order, data) -> None:
    n = register_count(dtype)
    words = data.draw(st.lists(_WORDS, min_size=n, max_size=n))
    scale = data.draw(st.sampled_from([1.0, 0.1, -2.5]))
    offset = data.draw(st.sampled_from([0.0, 273.15]))
    precision = data.draw(st.sampled_from([None, 0, 2]))
    sentinels = data.draw(st.sampled_from([(), (words[0],), (32767, -9999)]))
    expected = decode_registers(
        words, dtype, order, scale=scale, offset=offset, sentinels=sentinels, precision=precision
    )
    got = FieldDecoder(
        dtype, order, scale=scale, offset=offset, sentinels=sentinels, precision=precision
    )(words)
    assert got[1] == expected.quality and got[2] == expected.detail
    if isinstance(expected.value, float) and math.isnan(expected.value):
        raise AssertionError("decode_registers never returns NaN as a value")
    assert got[0] == expected.value and type(got[0]) is type(expected.value)


@pytest.mark.parametrize(
    "words",
    [[], [1, 2, 3], [70000, 1], [-1, 0], [1.5, 2]],
    ids=["empty", "three", "big", "neg", "float"],
)
def test_field_decoder_bad_words_like_decode_registers(words) -> None:
    expected = decode_registers(words, DataType.FLOAT32, ByteOrder.CDAB)
    got = FieldDecoder(DataType.FLOAT32, ByteOrder.CDAB)(words)
    assert (got[0], got[1], got[2]) == (expected.value, expected.quality, expected.detail)


def test_field_decoder_bits() -> None:
    assert FieldDecoder(None, bits=True)([True]) == (True, Quality.GOOD, None)
    assert FieldDecoder(None, bits=True)([1, 0])[1] is Quality.BAD

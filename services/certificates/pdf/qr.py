"""QR code for the verification URL, fast enough to sit on the render path.

reportlab's ``qrencoder`` is correct but slow here: it rebuilds the Reed-Solomon generator polynomial
for every block and scores the 8 masks on lists of booleans (~15 ms per code). We keep its tables
(RS block sizes, alignment positions, BCH format/version words) and do the rest on rows held as ints:
cached layouts per version, table-driven RS, and mask scoring with string/bit operations (~1 ms).
Tests compare our matrices with reportlab's own for every mask.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from reportlab.graphics.barcode.qrencoder import (
    EXP_TABLE,
    LOG_TABLE,
    QRErrorCorrectLevel,
    QRRSBlock,
    QRUtil,
)

LEVEL_M = QRErrorCorrectLevel.M
_MODE_BYTE = 0b0100
_PAD_BYTES = (0xEC, 0x11)
_MASKS = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i * j) % 3 + (i + j) % 2) % 2 == 0,
)
_DARK_RUN = re.compile(r"1+")
# The finder-like patterns of penalty rule 3 as (bit offset from the window's low end, dark?).
_FINDER_LIKE = tuple(
    tuple((10 - i, ch == "1") for i, ch in enumerate(pattern)) for pattern in ("10111010000", "00001011101")
)


@dataclass(frozen=True)
class QrMatrix:
    """A square module matrix; bit ``size - 1 - col`` of ``rows[row]`` is set for a dark module."""

    size: int
    rows: tuple[int, ...]
    mask: int

    def is_dark(self, row: int, col: int) -> bool:
        return bool(self.rows[row] >> (self.size - 1 - col) & 1)

    def dark_runs(self) -> list[tuple[int, int, int]]:
        """Horizontal runs of dark modules as ``(row, first_col, length)``."""
        runs = []
        width = self.size
        for row, bits in enumerate(self.rows):
            for match in _DARK_RUN.finditer(format(bits, f"0{width}b")):
                runs.append((row, match.start(), match.end() - match.start()))
        return runs


def encode_qr(data: bytes, level: int = LEVEL_M, mask: int | None = None) -> QrMatrix:
    """Encode ``data`` in byte mode at the smallest version that fits.

    ``mask`` forces a mask pattern (for tests); by default the lowest-penalty one is chosen, as the
    standard asks, so that scanners never meet a pathological pattern.
    """
    version = _smallest_version(len(data), level)
    layout = _layout(version)
    codewords = _codewords(data, version, level)
    # Every data module's bit, gathered row by row in one C-level call per row.
    total_bits = len(layout.data_positions)
    bits = format(int.from_bytes(bytes(codewords), "big"), f"0{len(codewords) * 8}b")
    bits = bits.ljust(total_bits, "0") + "0"  # remainder bits, then the "0" function cells read
    base = [
        function | int("".join(gather(bits)), 2)
        for function, gather in zip(layout.function_rows, layout.row_gathers, strict=True)
    ]
    size = layout.size
    candidates = range(8) if mask is None else (mask,)
    best: tuple[int, ...] | None = None
    best_mask = best_penalty = -1
    for candidate in candidates:
        rows = _apply_mask(base, layout, level, candidate)
        if mask is not None:
            return QrMatrix(size, rows, candidate)
        penalty = _penalty(rows, size)
        if best is None or penalty < best_penalty:
            best, best_penalty, best_mask = rows, penalty, candidate
    assert best is not None
    return QrMatrix(size, best, best_mask)


def _smallest_version(length: int, level: int) -> int:
    for version in range(1, 41):
        count_bits = 8 if version < 10 else 16
        capacity = sum(block.dataCount for block in QRRSBlock.getRSBlocks(version, level)) * 8
        if 4 + count_bits + 8 * length <= capacity:
            return version
    raise ValueError(f"{length} bytes do not fit in a QR code")


def _codewords(data: bytes, version: int, level: int) -> list[int]:
    blocks = QRRSBlock.getRSBlocks(version, level)
    capacity = sum(block.dataCount for block in blocks)
    count_bits = 8 if version < 10 else 16
    bits = _MODE_BYTE
    bits = bits << count_bits | len(data)
    bits = bits << 8 * len(data) | int.from_bytes(data, "big")
    length = 4 + count_bits + 8 * len(data)
    terminator = min(4, capacity * 8 - length)
    bits <<= terminator
    length += terminator
    bits <<= -length % 8
    length += -length % 8
    stream = list(bits.to_bytes(length // 8, "big"))
    stream += [_PAD_BYTES[i % 2] for i in range(capacity - len(stream))]

    data_blocks, ec_blocks = [], []
    offset = 0
    for block in blocks:
        chunk = stream[offset : offset + block.dataCount]
        offset += block.dataCount
        data_blocks.append(chunk)
        ec_blocks.append(_rs_remainder(chunk, block.totalCount - block.dataCount))
    return _interleave(data_blocks) + _interleave(ec_blocks)


def _interleave(blocks: list[list[int]]) -> list[int]:
    longest = max(len(block) for block in blocks)
    return [block[i] for i in range(longest) for block in blocks if i < len(block)]


@lru_cache(maxsize=64)
def _generator_logs(degree: int) -> tuple[int, ...]:
    """Coefficients (as logs, leading 1 dropped) of prod(x - a^i) for i < degree over GF(256)."""
    poly = [1]
    for i in range(degree):
        factor = EXP_TABLE[i]
        nxt = [0] * (len(poly) + 1)
        for j, coef in enumerate(poly):
            nxt[j] ^= coef
            if coef:
                nxt[j + 1] ^= EXP_TABLE[(LOG_TABLE[coef] + LOG_TABLE[factor]) % 255]
        poly = nxt
    return tuple(LOG_TABLE[coef] for coef in poly[1:])


@lru_cache(maxsize=64)
def _generator_products(degree: int) -> tuple[int, ...]:
    """For every byte value f, f times the generator's coefficients, packed big-endian into an
    int: the long division's step becomes one lookup and one XOR."""
    logs = _generator_logs(degree)
    products = [0]
    for factor in range(1, 256):
        log_factor = LOG_TABLE[factor]
        coefficients = bytes(EXP_TABLE[(log_factor + log_coef) % 255] for log_coef in logs)
        products.append(int.from_bytes(coefficients, "big"))
    return tuple(products)


def _rs_remainder(data: list[int], degree: int) -> list[int]:
    products = _generator_products(degree)
    top = 8 * (degree - 1)
    keep = (1 << 8 * degree) - 1
    remainder = 0  # the degree error-correction bytes, first byte most significant
    for byte in data:
        remainder = (remainder << 8 & keep) ^ products[byte ^ remainder >> top]
    return list(remainder.to_bytes(degree, "big"))


@dataclass(frozen=True)
class _Layout:
    size: int
    function_rows: tuple[int, ...]  # finder, timing, alignment, version info, dark module
    data_positions: tuple[tuple[int, int], ...]  # (row, col) in placement order
    row_gathers: tuple[Callable[[str], tuple[str, ...]], ...]  # row's cells from the bit string
    mask_rows: tuple[tuple[int, ...], ...]  # per mask: bits to flip, data area only
    format_cells: tuple[tuple[tuple[int, int], tuple[int, int]], ...]  # both copies of bit i


@lru_cache(maxsize=40)
def _layout(version: int) -> _Layout:
    size = version * 4 + 17
    dark = [[False] * size for _ in range(size)]
    reserved = [[False] * size for _ in range(size)]

    def put(row: int, col: int, is_dark: bool) -> None:
        dark[row][col] = is_dark
        reserved[row][col] = True

    for top, left in ((0, 0), (0, size - 7), (size - 7, 0)):
        for r in range(-1, 8):
            for c in range(-1, 8):
                row, col = top + r, left + c
                if 0 <= row < size and 0 <= col < size:
                    ring = max(abs(r - 3), abs(c - 3))
                    put(row, col, ring != 2 and ring != 4)
    centres = QRUtil.getPatternPosition(version)
    for row in centres:
        for col in centres:
            if reserved[row][col]:
                continue  # would overlap a finder pattern
            for r in range(-2, 3):
                for c in range(-2, 3):
                    put(row + r, col + c, max(abs(r), abs(c)) != 1)
    for i in range(8, size - 8):
        put(6, i, i % 2 == 0)
        put(i, 6, i % 2 == 0)
    format_cells = []
    for i in range(15):
        vertical = (i, 8) if i < 6 else (i + 1, 8) if i < 8 else (size - 15 + i, 8)
        horizontal = (8, size - i - 1) if i < 8 else (8, 15 - i) if i < 9 else (8, 14 - i)
        format_cells.append((vertical, horizontal))
        put(*vertical, False)
        put(*horizontal, False)
    put(size - 8, 8, True)
    if version >= 7:
        bits = QRUtil.getBCHTypeNumber(version)
        for i in range(18):
            bit = bool(bits >> i & 1)
            put(i // 3, i % 3 + size - 11, bit)
            put(i % 3 + size - 11, i // 3, bit)

    positions = []
    upward = True
    col = size - 1
    while col > 0:
        if col == 6:
            col -= 1  # the vertical timing pattern takes a whole column
        rows = range(size - 1, -1, -1) if upward else range(size)
        for row in rows:
            for c in (col, col - 1):
                if not reserved[row][c]:
                    positions.append((row, c))
        upward = not upward
        col -= 2

    def to_int(cells: list[bool]) -> int:
        return int("".join("1" if cell else "0" for cell in cells), 2)

    mask_rows = tuple(
        tuple(to_int([not reserved[row][c] and mask(row, c) for c in range(size)]) for row in range(size))
        for mask in _MASKS
    )
    # For each row, which character of the data bit string each cell takes; function cells take
    # the trailing "0" (index total) so that OR-ing with the function pattern rows is exact.
    cell_bit = [[len(positions)] * size for _ in range(size)]
    for index, (row, col) in enumerate(positions):
        cell_bit[row][col] = index
    return _Layout(
        size=size,
        function_rows=tuple(to_int(row) for row in dark),
        data_positions=tuple(positions),
        row_gathers=tuple(itemgetter(*cells) for cells in cell_bit),
        mask_rows=mask_rows,
        format_cells=tuple(format_cells),
    )


@lru_cache(maxsize=32)
def _format_bits(level: int, mask: int) -> int:
    return QRUtil.getBCHTypeInfo(level << 3 | mask)


def _apply_mask(base: list[int], layout: _Layout, level: int, mask: int) -> tuple[int, ...]:
    size = layout.size
    rows = [bits ^ flip for bits, flip in zip(base, layout.mask_rows[mask], strict=True)]
    info = _format_bits(level, mask)
    for i, cells in enumerate(layout.format_cells):
        if info >> i & 1:
            for row, col in cells:
                rows[row] |= 1 << (size - 1 - col)
    return tuple(rows)


@lru_cache(maxsize=40)
def _penalty_masks(size: int) -> tuple[int, int]:
    """Masks over all lines packed into one int (each line followed by one light separator bit):
    pairs of horizontal neighbours inside a line, and the same minus the first line."""
    stride = size + 1
    line = (1 << (size - 1)) - 1
    within = sum(line << (stride * i) for i in range(size))
    return within, within & ~(line << (stride * (size - 1)))


def _penalty(rows: tuple[int, ...], size: int) -> int:
    """The standard's four penalty rules (ISO/IEC 18004, 7.8.3), on all lines at once: rows and
    columns are each packed into one big int, so every rule is a few whole-symbol bit operations."""
    width = f"0{size}b"
    lines = [format(bits, width) for bits in rows]
    columns = list(map("".join, zip(*lines, strict=True)))
    by_row = int("0".join(lines), 2)
    by_column = int("0".join(columns), 2)
    within, below_first = _penalty_masks(size)
    stride = size + 1
    score = 0
    for packed in (by_row, by_column):
        # Rule 1: a run of n >= 5 same-colour modules costs n - 2. ``same`` marks neighbours of
        # equal colour (a run of n modules is n - 1 set bits); ``long`` marks 4 of them in a row,
        # so a run has n - 4 bits in ``long`` plus 2.
        same = ~(packed ^ packed >> 1) & within
        long = same & same >> 1 & same >> 2 & same >> 3
        score += long.bit_count() + 2 * (long & ~(long >> 1)).bit_count()
    # Rule 2: each 2x2 block of one colour costs 3 (a line against the line above it).
    above = by_row >> stride
    same = ~(by_row ^ by_row >> 1) & ~(above ^ above >> 1) & ~(by_row ^ above) & below_first
    score += 3 * same.bit_count()
    # Rule 3: finder-like 1:1:3:1:1 with four light modules (the quiet zone counts) on a side.
    # Lines are packed with four light modules between them; no match can span two lines, as
    # neither pattern has four light modules anywhere but at one end.
    for packed_lines in (lines, columns):
        text = "0000" + "0000".join(packed_lines) + "0000"
        packed = int(text, 2)
        shifted = [packed >> j for j in range(11)]
        for pattern in _FINDER_LIKE:
            found = (1 << (len(text) - 10)) - 1  # windows that start inside the text
            for j, dark in pattern:
                found &= shifted[j] if dark else ~shifted[j]
            score += 40 * found.bit_count()
    # Rule 4: 10 per 5% that dark modules stray from half.
    score += 10 * (abs(by_row.bit_count() * 100 // (size * size) - 50) // 5)
    return score

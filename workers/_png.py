"""A tiny PNG writer for the example report's bar chart (no imaging library needed for bars)."""

from __future__ import annotations

import struct
import zlib

BACKGROUND = b"\xff\xff\xff"
BAR = b"\x2b\x6c\xb0"
AXIS = b"\x40\x40\x40"


def bar_chart(values: list[int], bar_width: int = 32, gap: int = 12, height: int = 120) -> bytes:
    """A PNG of one vertical bar per value, scaled to the largest, on a white background."""
    top = max(values, default=0) or 1
    width = gap + len(values) * (bar_width + gap)
    heights = [round(value / top * (height - 10)) for value in values]
    rows = []
    for y in range(height):
        from_bottom = height - 1 - y
        row = bytearray(BACKGROUND * width)
        for index, bar in enumerate(heights):
            if from_bottom < bar:
                start = (gap + index * (bar_width + gap)) * 3
                row[start : start + bar_width * 3] = BAR * bar_width
        if from_bottom == 0:
            row[:] = AXIS * width
        rows.append(bytes(row))
    return encode(width, height, rows)


def encode(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG from `height` rows of `width * 3` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")

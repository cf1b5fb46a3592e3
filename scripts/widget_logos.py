"""The widget's logos, drawn at the exact sizes Kommo's upload requires (no binary in git).

Kommo refuses an archive whose images are not exactly these sizes
(docs/widget.md, ../shared/reference/kommo-widget.md §1.9). The picture is an envelope on a
rounded tile in Mailer's blue, drawn with 3x3 supersampling and written as an RGBA PNG by
the standard library alone (zlib + struct), so the build needs no imaging package.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# name -> (width, height); every file at most 300 KB (they come to a few KB).
LOGO_SIZES: dict[str, tuple[int, int]] = {
    "logo_main.png": (400, 272),
    "logo.png": (130, 100),
    "logo_small.png": (108, 108),
    "logo_medium.png": (240, 84),
    "logo_min.png": (84, 84),
    "logo_dp.png": (174, 109),
}

BLUE = (33, 110, 214)
WHITE = (255, 255, 255)
SAMPLES = 3  # per axis: 9 samples a pixel for smooth edges


def _inside_rounded(
    x: float, y: float, left: float, top: float, right: float, bottom: float, r: float
) -> bool:
    if not (left <= x <= right and top <= y <= bottom):
        return False
    cx = min(max(x, left + r), right - r)
    cy = min(max(y, top + r), bottom - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _near_segment(x: float, y: float, ax: float, ay: float, bx: float, by: float, half: float) -> bool:
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length2))
    px, py = ax + t * dx, ay + t * dy
    return (x - px) ** 2 + (y - py) ** 2 <= half * half


def _sample(x: float, y: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The colour at one point: transparent outside the tile, blue tile, white envelope."""
    side = min(width, height)
    if not _inside_rounded(x, y, 0, 0, width, height, side * 0.18):
        return (0, 0, 0, 0)
    ew, eh = side * 0.62, side * 0.42  # the envelope, centred
    left, top = (width - ew) / 2, (height - eh) / 2
    right, bottom = left + ew, top + eh
    stroke = max(1.0, side * 0.035)
    if _inside_rounded(x, y, left, top, right, bottom, side * 0.04):
        flap = _near_segment(x, y, left, top, (left + right) / 2, top + eh * 0.55, stroke) or _near_segment(
            x, y, right, top, (left + right) / 2, top + eh * 0.55, stroke
        )
        return (*BLUE, 255) if flap else (*WHITE, 255)
    return (*BLUE, 255)


def draw(width: int, height: int) -> bytes:
    """The logo as RGBA rows (no filter bytes yet)."""
    rows = bytearray()
    step = 1.0 / SAMPLES
    for py in range(height):
        for px in range(width):
            acc = [0, 0, 0, 0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    r, g, b, a = _sample(px + (sx + 0.5) * step, py + (sy + 0.5) * step, width, height)
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    acc[3] += a
            alpha = acc[3]
            if alpha:
                rows += bytes(
                    (acc[0] // alpha, acc[1] // alpha, acc[2] // alpha, alpha // (SAMPLES * SAMPLES))
                )
            else:
                rows += b"\0\0\0\0"
    return bytes(rows)


def png(width: int, height: int, rgba: bytes) -> bytes:
    """A PNG file of RGBA pixels, 8 bits a channel, filter 0 on every row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    stride = width * 4
    raw = b"".join(b"\0" + rgba[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (for the archive test)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def write_logos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (width, height) in LOGO_SIZES.items():
        path = folder / name
        path.write_bytes(png(width, height, draw(width, height)))
        written.append(path)
    return written

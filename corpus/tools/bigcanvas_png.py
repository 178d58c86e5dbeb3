#!/usr/bin/env python3
"""bigcanvas_png.py IN.png WIDTH HEIGHT OUT.png

Writes a 1-bit greyscale PNG of WIDTH x HEIGHT: the 1-bit IN.png at the
top-left corner, everything else white (bit = 1).

Used to build derived_bomb_1bit_50000x50000.png, a *valid* 2.5-gigapixel
PNG in ~427 KB: a decoder that trusts IHDR and allocates width*height
up front is the bug this file exists to catch.

Byte-exact reproduction of the committed file depends on these choices,
so do not "tidy" them:
  * every scanline uses filter type 0 (None);
  * one zlib.compressobj(level 9, default window/memLevel/strategy) is fed
    one scanline per compress() call;
  * compressed output is gathered and written as an IDAT once at least
    4096 bytes are pending (the remainder, after flush(), as the last IDAT);
  * only IHDR, IDAT and IEND chunks are written.
The zlib library version also matters (made with zlib 1.2.13).
"""
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pngread  # noqa: E402

IDAT_MIN = 4096


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    src, width, height, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    w, h, depth, rows = pngread.read_gray(src)
    if depth != 1 or w > width or h > height:
        sys.exit(f"{src}: need 1-bit grey no larger than {width}x{height}")
    stride = (width + 7) // 8
    full, rem = divmod(w, 8)  # whole source bytes, then bits in a shared byte

    def canvas_row(src_row):
        row = bytearray(b"\xff" * stride)
        row[:full] = src_row[:full]
        if rem:
            # Keep the source's leading bits; the rest of that byte is canvas (white).
            row[full] = src_row[full] | (0xFF >> rem)
        return b"\x00" + bytes(row)

    white = b"\x00" + b"\xff" * stride
    comp = zlib.compressobj(9)
    with open(dst, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        pending = b""
        for y in range(height):
            pending += comp.compress(canvas_row(rows[y]) if y < h else white)
            if len(pending) >= IDAT_MIN:
                out.write(chunk(b"IDAT", pending))
                pending = b""
        pending += comp.flush()
        if pending:
            out.write(chunk(b"IDAT", pending))
        out.write(chunk(b"IEND", b""))


if __name__ == "__main__":
    main()

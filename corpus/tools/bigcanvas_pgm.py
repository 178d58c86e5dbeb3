#!/usr/bin/env python3
"""bigcanvas_pgm.py IN.png WIDTH HEIGHT  > out.pgm

Writes a binary PGM (P5) of WIDTH x HEIGHT to stdout: the 8-bit greyscale
IN.png at the top-left corner, everything else white (255).

Used to build derived_bomb_gray_20000x20000.jpg: piped into
`cjpeg -grayscale -optimize -quality 75`, a flat white canvas costs almost
nothing per 8x8 block, so a *valid* 400-megapixel JPEG fits in ~1.6 MB.
The canvas is streamed row by row so that making a decompression bomb does
not itself need 400 MB of memory.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pngread  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w, h, depth, rows = pngread.read_gray(src)
    if depth != 8 or w > width or h > height:
        sys.exit(f"{src}: need 8-bit grey no larger than {width}x{height}")
    out = sys.stdout.buffer
    out.write(b"P5\n%d %d\n255\n" % (width, height))
    pad = b"\xff" * (width - w)
    for row in rows:
        out.write(row + pad)
    white = b"\xff" * width
    for _ in range(height - h):
        out.write(white)
    out.flush()


if __name__ == "__main__":
    main()

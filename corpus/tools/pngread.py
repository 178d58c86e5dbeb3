"""Minimal PNG reader for the two derived-file generators.

Only what their inputs need: non-interlaced greyscale at 1 or 8 bits.
Kept dependency-free (stdlib zlib) so that regenerating the derived
files does not hinge on which Pillow wheel happens to be installable.
"""
import struct
import zlib


def read_gray(path):
    """Return (width, height, bit_depth, rows) with rows = list of unfiltered
    scanline bytes (no filter byte), packed as in the file."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    width, height, depth, colour, _, _, interlace = ihdr
    if colour != 0 or interlace != 0 or depth not in (1, 8):
        raise ValueError(f"{path}: only non-interlaced 1/8-bit greyscale supported")
    raw = zlib.decompress(b"".join(idat))
    stride = (width * depth + 7) // 8
    bpp = 1  # filter "bytes per pixel" is 1 for every greyscale depth <= 8
    rows, prev = [], bytearray(stride)
    for y in range(height):
        off = y * (stride + 1)
        ftype, cur = raw[off], bytearray(raw[off + 1:off + 1 + stride])
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                cur[x] = (cur[x] + a) & 0xFF
            elif ftype == 2:
                cur[x] = (cur[x] + b) & 0xFF
            elif ftype == 3:
                cur[x] = (cur[x] + ((a + b) >> 1)) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[x] = (cur[x] + pred) & 0xFF
            elif ftype != 0:
                raise ValueError(f"{path}: bad filter type {ftype} in row {y}")
        rows.append(bytes(cur))
        prev = cur
    return width, height, depth, rows

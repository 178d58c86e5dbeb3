#!/usr/bin/env python3
"""sof_patch.py IN.jpg OUT.jpg WIDTH HEIGHT

Copies IN.jpg to OUT.jpg with only the frame header's (SOFn) height and
width fields rewritten. The entropy-coded data still describes the original
image, so the result is a JPEG whose header lies about its size
(derived_sof_lie_65500x65500_hopper.jpg: claims 4.3 gigapixels, carries
128x128). A decoder that sizes its buffers from the header alone is the
bug this file exists to catch.
"""
import struct
import sys

# SOF markers; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    src, dst, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if not (0 < width <= 65535 and 0 < height <= 65535):
        sys.exit("width and height must fit in 16 bits")
    data = bytearray(open(src, "rb").read())
    if data[:2] != b"\xff\xd8":
        sys.exit(f"{src}: not a JPEG")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            sys.exit(f"{src}: lost marker sync at offset {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in SOF:
            # Segment body: precision(1) height(2) width(2) ...
            struct.pack_into(">HH", data, pos + 5, height, width)
            open(dst, "wb").write(data)
            return
        if marker == 0xDA:
            break
        pos += 2 + length
    sys.exit(f"{src}: no SOF marker before the first scan")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Pillow / Pillow-SIMD peer for `thumbd-perf report --peers` (one process, many files).

usage: pil_thumb.py OUT_DIR @LIST
The job every peer does: fit into a 256x256 box (Lanczos; Pillow's thumbnail() first
DCT-scales JPEGs with draft()), honour EXIF orientation, JPEG q80 without metadata.
Prints 'ok=N failed=M'.
"""
import os
import sys

from PIL import Image, ImageOps


def main():
    out_dir, listing = sys.argv[1], sys.argv[2].lstrip("@")
    ok = failed = 0
    with open(listing) as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    for path in paths:
        try:
            with Image.open(path) as im:
                if im.mode.startswith("I;16"):  # Pillow cannot resample I;16
                    im = im.convert("I")
                im.thumbnail((256, 256), Image.Resampling.LANCZOS)
                im = ImageOps.exif_transpose(im)
                if im.mode == "I":
                    im = im.point(lambda v: v * (1 / 257)).convert("L")
                if im.mode != "RGB":
                    im = im.convert("RGB")
                stem = os.path.splitext(os.path.basename(path))[0]
                im.save(os.path.join(out_dir, stem + ".jpg"), "JPEG", quality=80)
            ok += 1
        except Exception as e:  # noqa: BLE001 - count and go on, like the other peers
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"ok={ok} failed={failed}")


if __name__ == "__main__":
    main()

#!/usr/bin/env node
// sharp peer for `thumbd-perf report --peers` (one process, files one after another).
// usage: SHARP_DIR=<dir holding node_modules/sharp> node sharp_thumb.mjs OUT_DIR @LIST
// The job every peer does: rotate() (EXIF orientation), fit inside 256x256 (Lanczos3 with
// libvips shrink-on-load), JPEG q80, metadata stripped. Prints 'ok=N failed=M'.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.SHARP_DIR || process.cwd(), 'package.json'));
const sharp = require('sharp');
if (process.env.SHARP_CONCURRENCY) sharp.concurrency(parseInt(process.env.SHARP_CONCURRENCY, 10));

const [outDir, listing] = process.argv.slice(2);
const inputs = fs.readFileSync(listing.replace(/^@/, ''), 'utf8').split('\n').filter(Boolean);
let ok = 0, failed = 0;
for (const p of inputs) {
  try {
    await sharp(p).rotate().resize(256, 256, { fit: 'inside' }).jpeg({ quality: 80 })
      .toFile(path.join(outDir, path.basename(p, path.extname(p)) + '.jpg'));
    ok++;
  } catch (e) {
    failed++;
    console.error(`FAIL ${p}: ${String(e.message).split('\n')[0]}`);
  }
}
console.log(`ok=${ok} failed=${failed}`);

// Browser test of the gallery page of `thumbd serve` (issue 12), in Debian's headless Chromium
// driven by playwright-core. It uses the page as a person would: reaches the file picker with
// Tab, opens it from the keyboard, chooses 3 photos from corpus/ and 1 text file, then waits for
// 3 thumbnails to arrive live (no reload) and for 1 clear message naming the rejected file.
//
// Environment:
//   THUMBD_SERVE_URL    base URL of a running `thumbd serve` (required), e.g. http://127.0.0.1:8080
//   THUMBD_AUTH_TOKEN   the server's --auth-token, if it has one: entered in the page's prompt
//   THUMBD_SCREENSHOT   where to save the screenshot (default target/browser/gallery.png); the
//                       phone-width one goes beside it as <name>-phone.png
//   CHROMIUM            the browser (default /usr/bin/chromium)
//   THUMBD_BROWSER_TIMEOUT_MS  how long thumbnails may take (default 120000)
// Run it through tests/browser/run, which installs Chromium and playwright-core first.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const baseUrl = process.env.THUMBD_SERVE_URL;
const authToken = process.env.THUMBD_AUTH_TOKEN || '';
const screenshot = path.resolve(
  repo,
  process.env.THUMBD_SCREENSHOT || 'target/browser/gallery.png',
);
const timeout = Number(process.env.THUMBD_BROWSER_TIMEOUT_MS || 120_000);

// Real photos from the committed corpus (corpus/MANIFEST.tsv: all "ok", 0.3-0.5 MB, 2-10 MP).
const photos = [
  'xplanet_earth.jpg',
  'plasma_PastelHills_3200x2000.jpg',
  'lomiri16_Wine_by_Jakkub_Mede.jpg',
].map((name) => path.join(repo, 'corpus', name));

// The flags of the machine's notes on Chromium: no sandbox as root, and no background traffic
// (this machine's network is closed). playwright-core's launch() gives every run a fresh,
// empty profile of its own (it refuses --user-data-dir in args; that is launchPersistentContext).
const chromiumFlags = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const imageIdPattern = /^[0-9a-f]{19}$/;

let browser;
let page;
let workDir;
/** The page's problems: uncaught errors and Content-Security-Policy violations. */
const pageErrors = [];
/** POST /api/images answers, in arrival order: {name, status}. */
const uploads = [];
let navigations = 0;

before(async () => {
  assert.ok(baseUrl, 'set THUMBD_SERVE_URL to the base URL of a running `thumbd serve`');
  for (const photo of photos) assert.ok(fs.existsSync(photo), `missing corpus photo ${photo}`);
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'thumbd-browser-'));
  await waitUntilReady();

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: chromiumFlags,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (error) => pageErrors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) pageErrors.push(`CSP: ${message.text()}`);
  });
  // Subscribe to file choosers now, not only at the Space press: Playwright switches Chromium's
  // chooser interception on asynchronously when the first listener arrives, so a press sent right
  // after waitForEvent('filechooser') can open a native dialog that never reports (CI flake).
  page.on('filechooser', () => {});
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (response.request().method() !== 'POST' || url.pathname !== '/api/images') return;
    // Only the status: Chromium does not keep these bodies for the inspector reliably
    // ("evicted from inspector cache"), so what the page shows is checked on the page.
    uploads.push({ name: url.searchParams.get('name'), status: response.status() });
  });

  await page.goto(new URL('/', baseUrl).href);
  if (authToken) {
    // With a token set, the event stream answers 401 and the page asks for the token.
    const field = page.getByLabel('Access token', { exact: true });
    await field.waitFor({ state: 'visible', timeout: 15_000 });
    await field.fill(authToken);
    await page.getByRole('button', { name: 'Use token' }).click();
    await field.waitFor({ state: 'hidden' });
  }
});

after(async () => {
  await browser?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

/** Presses Tab until the file input has the focus; returns how many presses it took. */
async function tabToFilePicker() {
  await page.evaluate(() => document.activeElement?.blur());
  for (let presses = 1; presses <= 20; presses += 1) {
    await page.keyboard.press('Tab');
    const onPicker = await page.evaluate(() => {
      const active = document.activeElement;
      return active instanceof HTMLInputElement && active.type === 'file';
    });
    if (onPicker) return presses;
  }
  return null;
}

test('the page and its assets carry the CSP and weigh at most 100 KB', async () => {
  let total = 0;
  for (const asset of ['/', '/assets/app.js', '/assets/app.css']) {
    const response = await fetch(new URL(asset, baseUrl));
    assert.equal(response.status, 200, asset);
    total += (await response.arrayBuffer()).byteLength;
    if (asset === '/') {
      const csp = response.headers.get('content-security-policy') || '';
      for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'"]) {
        assert.ok(csp.includes(directive), `/ has a Content-Security-Policy with ${directive}: "${csp}"`);
      }
    }
  }
  assert.ok(total <= 100 * 1024, `the page weighs ${total} bytes`);
  console.log(`page: ${total} bytes`);
});

test('the file picker is a labelled input, reached with Tab, with a visible focus', async () => {
  const presses = await tabToFilePicker();
  assert.ok(presses, 'Tab never reached the file input');
  const picker = await page.evaluate(() => {
    const input = document.activeElement;
    const label = input.labels[0];
    return {
      multiple: input.multiple,
      label: label ? label.textContent.trim() : '',
      // The input is drawn as its label, so the label must show the focus ring.
      ring: label ? getComputedStyle(label).outlineStyle : 'none',
    };
  });
  assert.equal(picker.multiple, true, 'the picker takes several files');
  assert.ok(picker.label, 'the focused file input has a label with text');
  assert.notEqual(picker.ring, 'none', 'the focused picker shows a focus outline');
});

test('3 photos and 1 non-image: 3 thumbnails appear without a reload, 1 clear error', { timeout: timeout + 60_000 }, async () => {
  try {
    await uploadAndWatch();
  } catch (error) {
    // What the page looked like when it failed, beside the screenshot of a passing run.
    const failed = screenshot.replace(/(\.png)?$/, '-failed.png');
    fs.mkdirSync(path.dirname(failed), { recursive: true });
    await page.screenshot({ path: failed }).catch(() => {});
    console.log(`screenshot of the failure: ${failed}`);
    throw error;
  }
});

async function uploadAndWatch() {
  // Names of this run only, so that cards left by earlier runs on the same server don't count.
  const run = crypto.randomBytes(4).toString('hex');
  const photoFiles = photos.map((photo) => {
    const copy = path.join(workDir, path.basename(photo).replace(/(\.\w+)$/, `-${run}$1`));
    fs.copyFileSync(photo, copy);
    return copy;
  });
  const textFile = path.join(workDir, `not-a-photo-just-some-notes-with-a-long-name-${run}.txt`);
  fs.writeFileSync(textFile, 'This is a text file, not a photo.\n');
  const textName = path.basename(textFile);
  const files = [...photoFiles, textFile];

  await page.evaluate(() => {
    window.thumbdTestMarker = 'still the same document';
    // Everything said in the live region (the page keeps only its last few lines).
    window.thumbdSpoken = [];
    const live = document.getElementById('live');
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) window.thumbdSpoken.push(node.textContent);
      }
    }).observe(live, { childList: true, subtree: true });
  });
  const navigationsBefore = navigations;

  // Open the picker from the keyboard, as a keyboard user would, and choose the files.
  assert.ok(await tabToFilePicker(), 'Tab never reached the file input');
  const [chooser] = await Promise.all([
    page.waitForEvent('filechooser', { timeout: 10_000 }),
    page.keyboard.press('Space'),
  ]);
  assert.ok(chooser.isMultiple(), 'the file chooser allows several files');
  await chooser.setFiles(files);

  // Each file is its own POST /api/images?name=...: 202 for the photos, a 4xx for the text.
  // The page tries again after 429 and 503, so the last answer for each name is what counts.
  const finalAnswers = () => {
    const last = new Map(uploads.map((u) => [u.name, u.status]));
    return files.every((f) => last.has(path.basename(f)) && ![429, 503].includes(last.get(path.basename(f))))
      ? last
      : null;
  };
  await waitUntil(finalAnswers, timeout, () => `answers: ${JSON.stringify(uploads)}`);
  const status = finalAnswers();
  for (const file of photoFiles) {
    assert.equal(status.get(path.basename(file)), 202, `${file} (401: is THUMBD_AUTH_TOKEN the server's token?)`);
  }
  assert.ok(status.get(textName) >= 400 && status.get(textName) < 500, `${textName}: ${status.get(textName)}`);

  // The thumbnails arrive through the event stream: each photo's card gets an <img> loaded from
  // its image's thumbnail URL.
  const thumbnails = [];
  for (const file of photoFiles) {
    const name = path.basename(file);
    const card = page.locator('.card', { hasText: name });
    const img = card.locator('.thumb img');
    await img.waitFor({ state: 'attached', timeout });
    await img.evaluate(
      (node) => node.complete && node.naturalWidth > 0
        ? true
        : new Promise((resolve, reject) => {
          node.addEventListener('load', () => resolve(true));
          node.addEventListener('error', () => reject(new Error(`${node.src} did not load`)));
        }),
    );
    assert.equal(await card.count(), 1, `one card for ${name}`);
    const shown = await card.evaluate((node) => {
      const img = node.querySelector('.thumb img');
      return {
        id: node.dataset.id,
        state: node.dataset.state,
        src: new URL(img.currentSrc || img.src).pathname,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
        alt: img.alt,
      };
    });
    assert.match(shown.id ?? '', imageIdPattern, `${name}: the card carries its image id`);
    assert.equal(shown.state, 'ready');
    assert.ok(shown.naturalWidth > 0 && shown.naturalHeight > 0, `${name}: the thumbnail decoded`);
    assert.match(shown.src, new RegExp(`^/api/images/${shown.id}/thumbnails/[^/]+$`), `${name}: URL`);
    assert.equal(shown.alt, `Thumbnail of ${name}`, 'the thumbnail is described by its file name');
    thumbnails.push(shown);
  }

  // One clear message for the rejected file: it names the file and gives the server's reason
  // (asked for here by the same request the page made).
  const expected = await rejectionOf(textFile);
  const errorCards = page.locator('.card[data-state="rejected"]', { hasText: textName });
  await errorCards.first().waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await errorCards.count(), 1, 'one message for the rejected file');
  const message = (await errorCards.first().locator('.status').textContent()).trim();
  assert.ok(message.includes(textName), `the message names the file: "${message}"`);
  assert.ok(message.includes(expected.message), `the message gives the server's reason "${expected.message}": "${message}"`);
  assert.ok(message.includes(expected.kind), `the message gives the error kind "${expected.kind}": "${message}"`);

  // Live, not reloaded: the same document as before the upload.
  assert.equal(await page.evaluate(() => window.thumbdTestMarker), 'still the same document');
  assert.equal(navigations, navigationsBefore, 'the page did not navigate');
  assert.deepEqual(pageErrors, [], 'no script errors and no CSP violations');

  // Screen-reader users heard about the rejection and the thumbnails.
  assert.equal(await page.locator('#live').getAttribute('aria-live'), 'polite');
  const spoken = (await page.evaluate(() => window.thumbdSpoken)).join(' | ');
  assert.ok(spoken.includes(textName), `the live region announced the rejection: "${spoken}"`);
  assert.match(spoken, /thumbnail of .* is ready/, `the live region announced a thumbnail: "${spoken}"`);

  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);
  for (const t of thumbnails) console.log(`thumbnail ${t.src} ${t.naturalWidth}x${t.naturalHeight} (${t.alt})`);
  console.log(`rejected ${textName}: ${message}`);
}

test('at 360 px wide the page has no horizontal scroll', async () => {
  await page.setViewportSize({ width: 360, height: 780 });
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  const widths = await page.evaluate(() => {
    const root = document.documentElement;
    const widest = [...document.querySelectorAll('body *')]
      .map((node) => ({ node: node.id || node.className || node.tagName, right: node.getBoundingClientRect().right }))
      .sort((a, b) => b.right - a.right)[0];
    return { scroll: root.scrollWidth, client: root.clientWidth, widest };
  });
  assert.ok(
    widths.scroll <= widths.client,
    `page is ${widths.scroll} px wide in a ${widths.client} px viewport (widest: ${JSON.stringify(widths.widest)})`,
  );
  const phone = screenshot.replace(/(\.png)?$/, '-phone.png');
  await page.screenshot({ path: phone });
  console.log(`screenshot: ${phone}`);
});

/** What the server answers to the same upload as the page's: {kind, message}. */
async function rejectionOf(file) {
  const name = path.basename(file);
  let response;
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    response = await fetch(new URL(`/api/images?name=${encodeURIComponent(name)}`, baseUrl), {
      method: 'POST',
      headers: {
        'Content-Type': 'application/octet-stream', // as the page sends a non-image file
        ...(authToken ? { Authorization: `Bearer ${authToken}` } : {}),
      },
      body: fs.readFileSync(file),
    });
    if (response.status !== 429 && response.status !== 503) break;
    await new Promise((resolve) => setTimeout(resolve, 1000 * attempt)); // busy: as the page does
  }
  const body = await response.json();
  assert.ok(response.status >= 400 && response.status < 500, `${name}: ${response.status}`);
  assert.ok(body?.error?.kind && body?.error?.message, `a JSON error: ${JSON.stringify(body)}`);
  return body.error;
}

/** Waits for the server's /readyz (a server just started is still starting its worker). */
async function waitUntilReady() {
  const url = new URL('/readyz', baseUrl);
  const deadline = Date.now() + 30_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = error.cause?.code || error.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`${url} not ready in 30 s (${last})`);
}

async function waitUntil(condition, ms, describe) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms; ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

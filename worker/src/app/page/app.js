// The gallery page of `thumbd serve`: uploads with per-file progress, the list of recent images,
// and live updates over Server-Sent Events. Plain JS with no build step and no dependencies, so it
// can be embedded in the binary as it is. The page's Content-Security-Policy forbids inline code
// and styles: everything here sets classes, attributes and text, never HTML strings or styles.
//
// API used (see README, "thumbd serve"):
//   POST /api/images?name=N      raw file as the body -> 202 Image, or {"error":{kind,message}}
//   GET  /api/images?limit&page_token -> {images:[Image], next_page_token}
//   GET  /api/images/{id}        -> Image (its status_url)
//   GET  /api/events             SSE: `ready` and `failed` carry an Image, `reset` asks for a refetch

const TOKEN_KEY = 'thumbd.token';
const PAGE_SIZE = 24;
const PARALLEL_UPLOADS = 3; // the server limits concurrent requests per client (429)
const UPLOAD_TRIES = 4; // tries of one file while the server answers 429 or 503
const PREFERRED_THUMBNAIL = 200; // show the smallest thumbnail at least this big
const EVENTS_RETRY_MAX_MS = 60_000;

const $ = (id) => document.getElementById(id);
const ui = {
  auth: $('auth'),
  authReason: $('auth-reason'),
  authForm: $('auth-form'),
  authToken: $('auth-token'),
  drop: $('drop'),
  files: $('files'),
  gallery: $('gallery'),
  galleryStatus: $('gallery-status'),
  more: $('more'),
  live: $('live'),
};

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Creates an element with attributes and children (strings become text, never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tells screen-reader users what happened (the region is aria-live="polite"). */
function announce(message) {
  ui.live.append(el('p', {}, message));
  while (ui.live.childElementCount > 5) ui.live.firstElementChild.remove();
}

/** An error as the API reports it: a stable `kind` and a human `message`. */
class ApiError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

function apiError(status, body) {
  const error = body && typeof body === 'object' ? body.error : null;
  if (error && error.message) return new ApiError(error.kind || `http_${status}`, error.message);
  return new ApiError(`http_${status}`, `The server answered with status ${status}.`);
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The access token. Asked for only after the server answers 401; kept for this tab only.

function savedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return ''; // storage disabled: the token is asked for again after each reload
  }
}

let token = savedToken();

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Shows the token field. A token we sent and was refused is forgotten. */
function askForToken() {
  const refused = Boolean(token);
  if (refused) {
    token = '';
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing stored
    }
  }
  if (refused) {
    ui.authReason.textContent =
      'The server refused that access token. Enter the right one to upload and see live updates.';
  } else if (ui.auth.hidden) {
    ui.authReason.textContent =
      'This server asks for an access token before it accepts uploads and sends live updates.';
  }
  if (ui.auth.hidden) {
    ui.auth.hidden = false;
    announce('An access token is needed.');
    ui.authToken.focus();
  }
}

ui.authForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = ui.authToken.value.trim();
  if (!value) return;
  token = value;
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    // kept in memory only
  }
  ui.authToken.value = '';
  ui.auth.hidden = true;
  ui.files.focus(); // the focused field just disappeared; go on where the user goes next
  announce('Access token saved for this tab.');
  connectEvents();
  if (!listLoaded) loadFirstPage();
  for (const card of waitingForToken.splice(0)) enqueue(card);
});

/** GET a JSON document from the API; throws ApiError. */
async function getJson(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json', ...authHeaders() } });
  } catch {
    throw new ApiError('network', 'The server could not be reached.');
  }
  const body = parseJson(await response.text());
  if (response.status === 401) askForToken();
  if (!response.ok) throw apiError(response.status, body);
  return body;
}

// ---------------------------------------------------------------------------------------------
// Cards. One per image: a file being uploaded (no id yet), or an image the server knows.
// `data-state` drives the look: queued, uploading, pending, ready, failed, rejected.

/** Cards of the images the server knows, by image id. */
const cards = new Map();

class Card {
  constructor(name) {
    this.id = null;
    this.name = name;
    this.file = null; // set for files uploaded from this tab
    this.thumb = el('div', { class: 'thumb' });
    this.nameEl = el('p', { class: 'name' }, name);
    this.progress = el('progress', { max: '100', value: '0', 'aria-label': `Upload of ${name}` });
    this.progress.hidden = true;
    this.status = el('p', { class: 'status' });
    this.actions = el('div', { class: 'actions' });
    this.el = el(
      'li',
      { class: 'card' },
      this.thumb,
      el('div', { class: 'meta' }, this.nameEl, this.progress, this.status, this.actions),
    );
  }

  setState(state, statusText) {
    this.el.dataset.state = state;
    this.status.textContent = statusText;
    this.progress.hidden = state !== 'uploading';
    this.actions.replaceChildren();
    if (state !== 'ready') this.thumb.replaceChildren();
  }

  setProgress(fraction) {
    const percent = Math.round(fraction * 100);
    this.progress.value = percent;
    this.status.textContent = percent < 100 ? `Uploading… ${percent}%` : 'Checking the file…';
  }

  /** Shows what the server says about this image. */
  update(image) {
    if (image.id && this.id !== image.id) {
      this.id = image.id;
      this.el.dataset.id = image.id;
      cards.set(image.id, this);
    }
    if (image.name && image.name !== this.name) {
      this.name = image.name;
      this.nameEl.textContent = image.name;
    }
    if (image.state === 'ready') this.showThumbnail(image);
    else if (image.state === 'failed') {
      const error = image.error || { kind: 'unknown', message: 'The thumbnail could not be made.' };
      this.setState('failed', `No thumbnail: ${error.message} (${error.kind})`);
    } else {
      this.setState('pending', 'Making the thumbnail…');
    }
  }

  showThumbnail(image) {
    const thumbnail = pickThumbnail(image.thumbnails || []);
    if (!thumbnail) {
      this.setState('failed', 'The server lists no thumbnail for this image.');
      return;
    }
    const shown = this.thumb.querySelector('img');
    if (this.el.dataset.state === 'ready' && shown?.getAttribute('src') === thumbnail.url) return;
    this.setState('ready', '');
    const img = el('img', {
      src: thumbnail.url,
      alt: `Thumbnail of ${image.name || this.name}`,
      width: thumbnail.width,
      height: thumbnail.height,
      loading: 'lazy',
      decoding: 'async',
    });
    img.addEventListener('error', () => {
      this.status.textContent = 'The thumbnail could not be loaded.';
    });
    this.thumb.replaceChildren(img);
  }

  /** A file the server did not store: says why, and offers what can be done. */
  reject(error, retryable) {
    this.setState('rejected', `${this.name} was not uploaded: ${error.message} (${error.kind})`);
    if (retryable) {
      const retry = el('button', { type: 'button' }, 'Retry');
      retry.addEventListener('click', () => {
        enqueue(this);
        this.el.tabIndex = -1; // the button is gone: keep the keyboard user on this card
        this.el.focus();
      });
      this.actions.append(retry);
    }
    const dismiss = el('button', { type: 'button', 'aria-label': `Dismiss ${this.name}` }, 'Dismiss');
    dismiss.addEventListener('click', () => {
      const next = this.el.nextElementSibling?.querySelector('button') || ui.files;
      this.remove();
      next.focus();
    });
    this.actions.append(dismiss);
  }

  remove() {
    if (this.id && cards.get(this.id) === this) cards.delete(this.id);
    this.el.remove();
    updateEmptyMessage();
  }
}

/** The smallest thumbnail of at least PREFERRED_THUMBNAIL px, or else the first one. */
function pickThumbnail(thumbnails) {
  const bigEnough = thumbnails
    .filter((t) => t.size >= PREFERRED_THUMBNAIL)
    .sort((a, b) => a.size - b.size);
  return bigEnough[0] || thumbnails[0];
}

/** A card for an image from the list or an event, or the updated card it already has. */
function cardFor(image) {
  let card = cards.get(image.id);
  if (!card) card = new Card(image.name || image.id);
  card.update(image);
  return card;
}

function updateEmptyMessage() {
  if (ui.gallery.childElementCount === 0 && listLoaded) {
    ui.galleryStatus.textContent = 'No images yet. Upload one above.';
  } else if (ui.gallery.childElementCount > 0 && listLoaded) {
    ui.galleryStatus.textContent = '';
  }
}

// ---------------------------------------------------------------------------------------------
// The list of recent images

let listLoaded = false;
let nextPageToken = null;

async function loadPage(pageToken) {
  let url = `/api/images?limit=${PAGE_SIZE}`;
  if (pageToken) url += `&page_token=${encodeURIComponent(pageToken)}`;
  const page = await getJson(url);
  for (const image of page.images || []) {
    const card = cardFor(image);
    if (!card.el.isConnected) ui.gallery.append(card.el);
  }
  nextPageToken = page.next_page_token || null;
  ui.more.hidden = !nextPageToken;
}

/** (Re)loads the newest page. Cards of this tab's files not yet stored stay at the top. */
async function loadFirstPage() {
  ui.galleryStatus.textContent = 'Loading…';
  try {
    await loadPage(null);
    listLoaded = true;
    updateEmptyMessage();
  } catch (error) {
    const retry = el('button', { type: 'button' }, 'Try again');
    retry.addEventListener('click', loadFirstPage);
    ui.galleryStatus.replaceChildren(`The gallery could not be loaded: ${error.message} `, retry);
  }
}

/** After a reset (too many events missed): rebuilds the list from the server's. */
async function reloadList() {
  for (const card of [...cards.values()]) card.remove();
  nextPageToken = null;
  await loadFirstPage();
}

ui.more.addEventListener('click', async () => {
  ui.more.disabled = true;
  try {
    await loadPage(nextPageToken);
  } catch (error) {
    announce(`More images could not be loaded: ${error.message}`);
    ui.galleryStatus.textContent = `More images could not be loaded: ${error.message}`;
  } finally {
    ui.more.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// Uploads: one XHR per file (fetch has no upload progress), a few at a time.

const queue = [];
const waitingForToken = [];
let uploadsRunning = 0;

function addFiles(fileList) {
  const files = [...fileList];
  if (files.length === 0) return;
  // New uploads go on top, in the order they were chosen, above the images already there.
  const firstOld = ui.gallery.firstElementChild;
  for (const file of files) {
    const card = new Card(file.name);
    card.file = file;
    ui.gallery.insertBefore(card.el, firstOld);
    enqueue(card);
  }
  updateEmptyMessage();
  announce(files.length === 1 ? `Uploading ${files[0].name}.` : `Uploading ${files.length} files.`);
}

function enqueue(card) {
  card.setState('queued', 'Waiting to upload…');
  queue.push(card);
  pumpUploads();
}

function pumpUploads() {
  while (uploadsRunning < PARALLEL_UPLOADS && queue.length > 0) {
    const card = queue.shift();
    uploadsRunning += 1;
    upload(card).finally(() => {
      uploadsRunning -= 1;
      pumpUploads();
    });
  }
}

/** Sends one file once; resolves with the HTTP status (0: no answer), body and Retry-After. */
function send(card) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/images?name=${encodeURIComponent(card.file.name)}`);
    // The server sniffs the bytes and takes image/* or application/octet-stream: anything else
    // (a .txt is text/plain) goes as octet-stream, so a wrong file gets "not an image" back.
    const type = card.file.type.startsWith('image/') ? card.file.type : 'application/octet-stream';
    xhr.setRequestHeader('Content-Type', type);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) card.setProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () =>
      resolve({
        status: xhr.status,
        body: parseJson(xhr.responseText),
        retryAfter: Number.parseInt(xhr.getResponseHeader('Retry-After') || '', 10),
      }),
    );
    xhr.addEventListener('error', () => resolve({ status: 0 }));
    xhr.addEventListener('abort', () => resolve({ status: 0 }));
    card.setState('uploading', 'Uploading…');
    card.setProgress(0);
    xhr.send(card.file);
  });
}

async function upload(card) {
  for (let attempt = 1; ; attempt += 1) {
    const { status, body, retryAfter } = await send(card);
    if (status === 202 && body && body.id) return accepted(card, body);
    if (status === 401) {
      card.setState('queued', 'Waiting for the access token…');
      waitingForToken.push(card);
      askForToken();
      return;
    }
    const busy = status === 429 || status === 503;
    if (busy && attempt < UPLOAD_TRIES) {
      const seconds = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 30) : 2 ** attempt;
      card.setState('queued', `The server is busy; trying again in ${seconds} s…`);
      await sleep(seconds * 1000);
      continue;
    }
    const error =
      status === 0
        ? new ApiError('network', 'the connection was lost before the server answered.')
        : apiError(status, body);
    card.reject(error, status === 0 || busy || status === 408);
    announce(`${card.name} was not uploaded: ${error.message}`);
    return;
  }
}

/** The server stored the file (202). Its ready or failed event may even have come first. */
function accepted(card, image) {
  const existing = cards.get(image.id);
  if (existing && existing !== card) {
    // The event (or a list refresh) already made this image's card: keep that one.
    card.el.replaceWith(existing.el);
    return;
  }
  card.update(image);
  if (image.state === 'pending') announce(`${card.name} uploaded; making its thumbnail.`);
  else announceState(card, image);
}

function announceState(card, image) {
  if (image.state === 'ready') announce(`The thumbnail of ${card.name} is ready.`);
  if (image.state === 'failed') announce(`No thumbnail for ${card.name}: ${image.error?.message || 'failed'}.`);
}

ui.files.addEventListener('change', () => {
  addFiles(ui.files.files);
  ui.files.value = ''; // so choosing the same file again uploads it again
});

// Files can be dropped anywhere on the page; the drop area lights up while they are dragged.
let dragDepth = 0;
const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes('Files');
document.addEventListener('dragenter', (event) => {
  if (!carriesFiles(event)) return;
  dragDepth += 1;
  ui.drop.classList.add('dragging');
});
document.addEventListener('dragleave', (event) => {
  if (!carriesFiles(event)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) ui.drop.classList.remove('dragging');
});
document.addEventListener('dragover', (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault(); // allows the drop
  event.dataTransfer.dropEffect = 'copy';
});
document.addEventListener('drop', (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault(); // else the browser would leave the page to show the file
  dragDepth = 0;
  ui.drop.classList.remove('dragging');
  addFiles(event.dataTransfer.files);
});

// ---------------------------------------------------------------------------------------------
// Live updates. EventSource reconnects by itself after a network error and sends Last-Event-ID,
// so the server replays what was missed; it gives up on an HTTP error (such as 401), and then
// we find out which error it was and start a new one.

let events = null;
let eventsRetryMs = 2000;
let eventsWereOpen = false;

function connectEvents() {
  if (events) events.close();
  const url = token ? `/api/events?access_token=${encodeURIComponent(token)}` : '/api/events';
  const source = new EventSource(url);
  events = source;
  source.addEventListener('open', () => {
    eventsRetryMs = 2000;
    // A new connection without Last-Event-ID (after an error) may have missed events.
    if (eventsWereOpen) refreshPending();
    eventsWereOpen = true;
  });
  source.addEventListener('ready', onImageEvent);
  source.addEventListener('failed', onImageEvent);
  source.addEventListener('reset', () => reloadList());
  source.addEventListener('error', () => {
    if (source !== events || source.readyState !== EventSource.CLOSED) return;
    diagnoseEvents(url);
  });
}

function onImageEvent(event) {
  const image = parseJson(event.data);
  if (!image || !image.id) return;
  const known = cards.get(image.id);
  const card = cardFor(image);
  if (!card.el.isConnected) {
    // Another client's upload, or ours before its 202 arrived: newest, so on top.
    ui.gallery.prepend(card.el);
    updateEmptyMessage();
  }
  if (known?.file || !known) announceState(card, image);
}

/** The stream was refused: ask for a token on 401, else try again later. */
async function diagnoseEvents(url) {
  const abort = new AbortController();
  let status = 0;
  try {
    const response = await fetch(url, { headers: authHeaders(), signal: abort.signal });
    status = response.status;
  } catch {
    // unreachable: retry below
  } finally {
    abort.abort(); // only the status was wanted, not the stream
  }
  if (status === 401) {
    askForToken(); // connectEvents runs again once a token is entered
    return;
  }
  setTimeout(connectEvents, eventsRetryMs);
  eventsRetryMs = Math.min(eventsRetryMs * 2, EVENTS_RETRY_MAX_MS);
}

/** Asks for the state of every image still pending, after events may have been missed. */
async function refreshPending() {
  for (const card of [...cards.values()]) {
    if (card.el.dataset.state !== 'pending') continue;
    try {
      const image = await getJson(`/api/images/${encodeURIComponent(card.id)}`);
      card.update(image);
      announceState(card, image);
    } catch {
      // still unknown; the next event or reconnection tells
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * With several servers behind one address, each gets only some of the worker's events, so a
 * pending image's event may go to another server: ask again every few seconds while any is
 * pending (the stream still makes it immediate when the event comes here).
 */
const PENDING_POLL_MS = 4000;
setInterval(() => {
  if (!document.hidden) refreshPending();
}, PENDING_POLL_MS);

loadFirstPage();
connectEvents();

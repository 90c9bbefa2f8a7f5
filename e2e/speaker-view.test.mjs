// Three headless Chromium participants, each its own browser process with its own fake
// microphone: one plays loud speech-like sound, two play the same quiet noise. The active
// speaker must follow the loud one and not jump between the quiet ones; the speaker view must
// put the loud one large; the client must report the size of every remote video it shows
// (and nothing it does not show); every tile shows a connection-quality indicator.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { waitForMedia } from './lib/media.mjs';
import { REPO_ROOT, startServer } from './lib/server.mjs';
import { writeLoudSpeech, writeQuietNoise } from './lib/wav.mjs';

const UI_TIMEOUT_MS = 10000;
const RESULTS = path.join(REPO_ROOT, 'e2e', 'test-results');
const MEDIA_TIMEOUT_MS = 30000;
/** The quiet participants' noise level (RMS, dBFS): the same for both. */
const QUIET_DBFS = -45;
/** The loud one pauses this long every two seconds: the quiet ones are the loudest then. */
const PAUSE_MS = 500;

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {string} */
let wavDir;
/** @type {import('playwright-core').Browser[]} */
const browsers = [];

/**
 * @typedef {object} Person
 * @property {string} name
 * @property {import('playwright-core').Page} page
 * @property {number} id
 */

/** @type {Person} */
let loud;
/** @type {Person} */
let quiet1;
/** @type {Person} */
let quiet2;

/**
 * Runs in the page before the client: records every `video_sizes` the client sends, every
 * `active_speaker` and `error` the server sends (with the page's clock), and every toast.
 */
function recordSignalling() {
  const w = /** @type {any} */ (window);
  w.__videoSizes = [];
  w.__speakerReports = [];
  w.__errors = [];
  w.__toasts = [];
  new MutationObserver(records => {
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (node instanceof HTMLElement && node.classList.contains('toast')) w.__toasts.push(node.textContent);
      }
    }
  }).observe(document, { childList: true, subtree: true });
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.includes('"video_sizes"')) {
      w.__videoSizes.push({ at: performance.now(), sizes: JSON.parse(data).sizes });
    }
    return send.call(this, data);
  };
  const Base = WebSocket;
  w.WebSocket = class extends Base {
    /**
     * @param {string | URL} url
     * @param {string | string[]} [protocols]
     */
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('message', event => {
        if (typeof event.data !== 'string') return;
        if (event.data.includes('"active_speaker"')) {
          w.__speakerReports.push({ at: performance.now(), id: JSON.parse(event.data).participant_id });
        } else if (event.data.includes('"error"')) {
          w.__errors.push(JSON.parse(event.data).code);
        }
      });
    }
  };
}

/**
 * @param {string} room
 * @param {string} name
 * @param {string} wav the fake microphone's sound
 * @returns {Promise<Person>}
 */
async function join(room, name, wav) {
  const browser = await launch({ fakeAudioFile: wav });
  browsers.push(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await context.grantPermissions(['camera', 'microphone']);
  await context.addInitScript(recordSignalling);
  const page = await context.newPage();
  page.on('pageerror', err => console.error(`[${name}] page error:`, err));
  page.on('console', msg => {
    if (msg.type() === 'error') console.error(`[${name}] ${msg.type()}: ${msg.text()}`);
  });
  await page.goto(`${server.url}/m/${room}?name=${name}&autojoin=1`);
  // @ts-ignore the client's test hook
  const id = await page.waitForFunction(() => window.veche?.selfId ?? null, null, { timeout: UI_TIMEOUT_MS })
    .then(h => /** @type {Promise<number>} */ (h.jsonValue()));
  return { name, page, id };
}

/**
 * Waits until the page decodes `count` remote videos.
 * @param {Person} p
 * @param {number} count
 */
async function waitForVideos(p, count) {
  await waitForMedia(p.page, p.name, { videos: count, audios: 0, timeoutMs: MEDIA_TIMEOUT_MS });
}

/** @param {Person} p @returns {Promise<string | null>} the participant id of the highlighted tile */
function highlighted(p) {
  return p.page.evaluate(() => document.querySelector('.tile.speaking')?.getAttribute('data-participant-id') ?? null);
}

/**
 * Samples every page's highlighted tile every 200 ms for `ms`.
 * @param {Person[]} people
 * @param {number} ms
 * @returns {Promise<(string | null)[][]>}
 */
function sampleHighlights(people, ms) {
  return Promise.all(people.map(p => p.page.evaluate(async duration => {
    /** @type {(string | null)[]} */
    const seen = [];
    const end = performance.now() + duration;
    while (performance.now() < end) {
      seen.push(document.querySelector('.tile.speaking')?.getAttribute('data-participant-id') ?? null);
      await new Promise(r => setTimeout(r, 200));
    }
    return seen;
  }, ms)));
}

/**
 * Waits until the page highlights `id`'s tile; on timeout says what it highlights instead
 * and what the server reported.
 * @param {Person} p
 * @param {string} id
 * @param {number} timeout
 */
async function waitForHighlight(p, id, timeout) {
  try {
    await p.page.waitForFunction(
      want => document.querySelector('.tile.speaking')?.getAttribute('data-participant-id') === want,
      id, { timeout, polling: 100 });
  } catch (err) {
    // @ts-ignore recorded by recordSignalling
    const reports = await p.page.evaluate(() => window.__speakerReports.map(r => r.id));
    throw new Error(`${p.name}: participant ${id} not highlighted within ${timeout} ms; highlighted: ` +
      `${await highlighted(p)}; the server's active_speaker reports: ${JSON.stringify(reports)}`, { cause: err });
  }
}

/**
 * The runs of a sequence: [a, a, b, b, a] → [a, b, a].
 * @template T
 * @param {T[]} xs
 */
function runs(xs) {
  return xs.filter((x, i) => i === 0 || x !== xs[i - 1]);
}

/**
 * How many active-speaker messages the page got since `since` (page clock), by participant.
 * @param {Person} p
 * @param {number} since
 * @returns {Promise<number>}
 */
function speakerReportsSince(p, since) {
  // @ts-ignore recorded by recordSignalling
  return p.page.evaluate(t => window.__speakerReports.filter(r => r.at >= t).length, since);
}

before(async () => {
  server = await startServer();
  wavDir = mkdtempSync(path.join(tmpdir(), 'veche-wav-'));
  const loudWav = path.join(wavDir, 'loud.wav');
  writeLoudSpeech(loudWav, 6, PAUSE_MS);
  const quietWavs = [1, 2].map(n => path.join(wavDir, `quiet${n}.wav`));
  quietWavs.forEach((file, i) => writeQuietNoise(file, 6, QUIET_DBFS, 1234 + i));
  const room = `e2e-${randomBytes(6).toString('hex')}`;
  // The loud one joins first and so has the lowest id: a server that broke ties by id, or
  // misread the levels, would pick someone else.
  loud = await join(room, 'Loud', loudWav);
  quiet1 = await join(room, 'Quiet1', quietWavs[0]);
  quiet2 = await join(room, 'Quiet2', quietWavs[1]);
  await Promise.all([loud, quiet1, quiet2].map(p => waitForVideos(p, 2)));
});

after(async () => {
  await Promise.all(browsers.map(b => b.close()));
  await server?.stop();
  if (wavDir) rmSync(wavDir, { recursive: true, force: true });
});

test('the active speaker follows the loud participant and does not flicker between quiet ones', { timeout: 60000 }, async () => {
  const started = Date.now();
  const everyone = [loud, quiet1, quiet2];
  const loudId = String(loud.id);
  // Everyone, the loud one included (its own tile), highlights the loud one.
  await Promise.all(everyone.map(p => waitForHighlight(p, loudId, 20000)));

  console.log(`loud one highlighted everywhere after ${Date.now() - started} ms`);
  // …and keeps doing so, through the pauses between the loud one's phrases.
  const steadySince = await quiet1.page.evaluate(() => performance.now());
  const steady = await sampleHighlights(everyone, 6000);
  console.log(`one loud speaker pausing every 2 s: ${await speakerReportsSince(quiet1, steadySince)} server reports in 6 s, ` +
    `highlight changes shown: ${runs(steady[1]).length - 1}`);
  steady.forEach((seen, i) => {
    assert.ok(seen.length >= 15, `${everyone[i].name}: sampled ${seen.length} times`);
    assert.deepEqual(runs(seen), [loudId], `${everyone[i].name} highlighted ${JSON.stringify(runs(seen))}`);
  });

  // The loud one mutes: only the two equally quiet ones are left. The highlight may move to
  // one of them once, but must not go back and forth between them.
  const since = await quiet1.page.evaluate(() => performance.now());
  await loud.page.click('#mic-btn');
      // @ts-ignore
      // @ts-ignore
  const quiet = await sampleHighlights([quiet1, quiet2], 10000);
  const reports = await speakerReportsSince(quiet1, since);
  console.log(`active speaker with two equally quiet participants: ${reports} server reports in 10 s; ` +
    `highlights shown: ${quiet.map(seen => JSON.stringify(runs(seen))).join(', ')}`);
  quiet.forEach((seen, i) => {
    const shown = runs(seen);
    assert.equal(shown[0], loudId, `${[quiet1, quiet2][i].name} first still highlights the last speaker`);
    assert.ok(shown.length <= 2, `${[quiet1, quiet2][i].name} highlight changed ${shown.length - 1} times: ${JSON.stringify(shown)}`);
  });

  // Unmuted, the loud one gets the highlight back.
  const unmuted = Date.now();
  await loud.page.click('#mic-btn');
  await Promise.all([quiet1, quiet2].map(p => waitForHighlight(p, loudId, 15000)));
  console.log(`the loud one, unmuted, highlighted again after ${Date.now() - unmuted} ms`);
});

/**
 * The last `video_sizes` the page sent.
 * @param {Person} p
 * @returns {Promise<{participant_id: number, kind: string, width: number, height: number}[] | null>}
 */
function lastSizes(p) {
  // @ts-ignore recorded by recordSignalling
  return p.page.evaluate(() => window.__videoSizes.at(-1)?.sizes ?? null);
}

/**
 * The size an element is drawn at, in device pixels.
 * @param {Person} p
 * @param {string} selector
 */
function drawnSize(p, selector) {
  return p.page.evaluate(sel => {
    const el = document.querySelector(sel);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { width: Math.round(r.width * devicePixelRatio), height: Math.round(r.height * devicePixelRatio) };
  }, selector);
}

/**
 * Waits until the last `video_sizes` sent lists exactly `want` (participant, kind), each at the
 * size its element is drawn at (±2 px); returns that list.
 * @param {Person} p
 * @param {{id: number, kind: 'video' | 'screen', selector: string}[]} want
 * @param {string} what
 */
async function expectSizes(p, want, what) {
  const deadline = Date.now() + 5000;
  let last = null;
  let problem = '';
  while (Date.now() < deadline) {
    last = await lastSizes(p);
    problem = '';
    if (!last) problem = 'nothing sent';
    else if (last.length !== want.length) problem = `${last.length} listed, want ${want.length}`;
    else {
      for (const w of want) {
        const got = last.find(s => s.participant_id === w.id && s.kind === w.kind);
        const drawn = await drawnSize(p, w.selector);
        if (!got || !drawn) problem = `${w.id}/${w.kind} missing (drawn ${JSON.stringify(drawn)})`;
        else if (Math.abs(got.width - drawn.width) > 2 || Math.abs(got.height - drawn.height) > 2) {
          problem = `${w.id}/${w.kind} listed at ${got.width}×${got.height}, drawn at ${drawn.width}×${drawn.height}`;
        }
      }
    }
    if (!problem) return /** @type {NonNullable<typeof last>} */ (last);
    await p.page.waitForTimeout(100);
  }
  throw new Error(`${what}: ${problem}; last sent ${JSON.stringify(last)}`);
}

test('speaker view puts the loud one large, remembers the choice, and the tile sizes reported follow the layout', { timeout: 90000 }, async () => {
  const me = quiet1;
  const { page } = me;
  const tileOf = (/** @type {Person} */ p) => `.tile[data-participant-id="${p.id}"]`;
  const loudVideo = { id: loud.id, kind: /** @type {const} */ ('video'), selector: tileOf(loud) };
  const quietVideo = { id: quiet2.id, kind: /** @type {const} */ ('video'), selector: tileOf(quiet2) };

  // Gallery view (the default): both remote videos listed at their tile size.
  assert.equal(await page.getAttribute('#view-gallery', 'aria-pressed'), 'true');
  const gallery = await expectSizes(me, [loudVideo, quietVideo], 'gallery view');
  const galleryLoud = /** @type {{width: number}} */ (gallery.find(s => s.participant_id === loud.id));

  // Speaker view: the loud one on the stage, larger; the other quiet one in the strip.
  await page.click('#view-speaker');
  await page.waitForSelector(`#stage ${tileOf(loud)}`, { timeout: UI_TIMEOUT_MS });
  await page.waitForSelector(`#gallery ${tileOf(quiet2)}`, { state: 'attached' });
  assert.equal(await page.getAttribute('#view-speaker', 'aria-pressed'), 'true');
  const speaker = await expectSizes(me, [loudVideo, quietVideo], 'speaker view');
  const speakerLoud = /** @type {{width: number}} */ (speaker.find(s => s.participant_id === loud.id));
  const speakerQuiet = /** @type {{width: number}} */ (speaker.find(s => s.participant_id === quiet2.id));
  mkdirSync(RESULTS, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS, 'speaker-view.png') });
  assert.ok(speakerLoud.width > galleryLoud.width * 1.3,
    `the large tile (${speakerLoud.width} px) is much wider than in the gallery (${galleryLoud.width} px)`);
  assert.ok(speakerQuiet.width < speakerLoud.width / 2, 'strip tiles are small');
  // The active speaker stays on the stage for a while (no flicker into the strip).
  await page.waitForTimeout(2000);
  assert.ok(await page.$(`#stage ${tileOf(loud)}`), 'the loud one is still on the stage');

  // A smaller window: the reported sizes follow.
  await page.setViewportSize({ width: 960, height: 540 });
  const smaller = await expectSizes(me, [loudVideo, quietVideo], 'after resizing the window');
  const smallerLoud = /** @type {{width: number}} */ (smaller.find(s => s.participant_id === loud.id));
  assert.ok(smallerLoud.width < speakerLoud.width, `resized: ${smallerLoud.width} px < ${speakerLoud.width} px`);

  // A window so short that the strip shows one tile: scrolled to its end, the other quiet
  // one is off-screen and not listed; scrolled back, it is again.
  await page.setViewportSize({ width: 1280, height: 260 });
  await expectSizes(me, [loudVideo, quietVideo], 'short window');
  const offscreen = await page.evaluate(sel => {
    const strip = /** @type {HTMLElement} */ (document.getElementById('gallery'));
    strip.scrollTop = strip.scrollHeight;
    const tile = /** @type {HTMLElement} */ (document.querySelector(sel)).getBoundingClientRect();
    const box = strip.getBoundingClientRect();
    return tile.bottom <= box.top || tile.top >= box.bottom;
  }, tileOf(quiet2));
  assert.ok(offscreen, 'scrolling the strip takes the tile out of view');
  await expectSizes(me, [loudVideo], 'tile scrolled off-screen');
  await page.evaluate(() => { /** @type {HTMLElement} */ (document.getElementById('gallery')).scrollTop = 0; });
  await expectSizes(me, [loudVideo, quietVideo], 'tile scrolled back');

  // A phone: the strip runs along the bottom; the view switch and the controls still fit.
  await page.setViewportSize({ width: 390, height: 760 });
  await expectSizes(me, [loudVideo, quietVideo], 'phone-sized window');
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
  assert.ok(fits, 'nothing sticks out sideways at 390 px');
  await page.screenshot({ path: path.join(RESULTS, 'speaker-view-narrow.png') });

  // Hiding the strip: its tiles are not listed; showing it again lists them.
  await page.setViewportSize({ width: 1280, height: 720 });
  await page.click('#strip-btn');
  assert.equal(await page.getAttribute('#strip-btn', 'aria-expanded'), 'false');
  await expectSizes(me, [loudVideo], 'strip hidden');
  await page.click('#strip-btn');
  await expectSizes(me, [loudVideo, quietVideo], 'strip shown again');

  // A screen share takes the stage; the speaker moves to the strip.
  await loud.page.click('#screen-btn');
  await page.waitForSelector(`#stage [data-screen-of="${loud.id}"]`, { timeout: MEDIA_TIMEOUT_MS });
  await page.waitForSelector(`#gallery ${tileOf(loud)}`, { state: 'attached', timeout: UI_TIMEOUT_MS });
  await expectSizes(me, [loudVideo, quietVideo, { id: loud.id, kind: 'screen', selector: `[data-screen-of="${loud.id}"]` }],
    'screen share in the speaker view');
  await loud.page.click('#screen-btn');
  await page.waitForSelector(`#stage ${tileOf(loud)}`, { timeout: UI_TIMEOUT_MS });

  // Pinning the quiet one keeps them large while the loud one speaks; unpinning gives the
  // stage back to the speaker.
  await page.click(`${tileOf(quiet2)} .pin-btn`);
  await page.waitForSelector(`#stage ${tileOf(quiet2)}.pinned`, { timeout: UI_TIMEOUT_MS });
  assert.equal(await page.getAttribute(`${tileOf(quiet2)} .pin-btn`, 'aria-pressed'), 'true');
  await page.waitForTimeout(2500);
  assert.ok(await page.$(`#stage ${tileOf(quiet2)}`), 'the pinned one stays on the stage while another speaks');
  await expectSizes(me, [loudVideo, quietVideo], 'pinned');
  await page.click(`${tileOf(quiet2)} .pin-btn`);
  await page.waitForSelector(`#stage ${tileOf(loud)}`, { timeout: UI_TIMEOUT_MS });

  // At most one report per 250 ms, and none that repeats the one before.
  // @ts-ignore recorded by recordSignalling
  const sent = /** @type {{at: number, sizes: unknown}[]} */ (await page.evaluate(() => window.__videoSizes));
  for (let i = 1; i < sent.length; i++) {
    assert.ok(sent[i].at - sent[i - 1].at >= 240, `reports ${i - 1} and ${i} only ${Math.round(sent[i].at - sent[i - 1].at)} ms apart`);
    assert.notDeepEqual(sent[i].sizes, sent[i - 1].sizes, `report ${i} repeats the one before`);
  }
  console.log(`video_sizes: ${sent.length} reports; gallery ${galleryLoud.width} px wide, speaker view ${speakerLoud.width} px`);
  // A server that does not know `video_sizes` answers `unknown_type`: harmless, and not shown.
  // @ts-ignore recorded by recordSignalling
  const { errors, toasts } = await page.evaluate(() => ({ errors: window.__errors, toasts: window.__toasts }));
  console.log(`server errors: ${errors.length} (${[...new Set(errors)].join(', ') || 'none'}); toasts: ${JSON.stringify(toasts)}`);
  assert.ok(errors.every((/** @type {string} */ code) => code === 'unknown_type'), `unexpected errors ${JSON.stringify(errors)}`);
  assert.ok(!toasts.some((/** @type {string} */ t) => /video_sizes|unknown/i.test(t)), `shown: ${JSON.stringify(toasts)}`);

  // Moving tiles between the stage and the strip does not stop their videos.
  const playing = await page.evaluate(() => [...document.querySelectorAll('.tile:not(.self) video[data-kind="video"]')]
    .map(v => /** @type {HTMLVideoElement} */ (v)).map(v => ({ paused: v.paused, width: v.videoWidth })));
  assert.ok(playing.length === 2 && playing.every(v => !v.paused && v.width > 0), `remote videos: ${JSON.stringify(playing)}`);

  // Held (a test that sends its own sizes), nothing is reported; released, the real set is.
  // @ts-ignore the client's test hook
  await page.evaluate(() => window.veche.holdVideoSizes(true));
  // @ts-ignore recorded by recordSignalling
  const heldAt = await page.evaluate(() => window.__videoSizes.length);
  await page.setViewportSize({ width: 1000, height: 700 });
  await page.waitForTimeout(700);
  // @ts-ignore recorded by recordSignalling
  assert.equal(await page.evaluate(() => window.__videoSizes.length), heldAt, 'nothing reported while held');
  // @ts-ignore the client's test hook
  await page.evaluate(() => window.veche.holdVideoSizes(false));
  await expectSizes(me, [loudVideo, quietVideo], 'reports released');
  await page.setViewportSize({ width: 1280, height: 720 });

  // The choice is remembered: after a reload the speaker view is back.
  await page.reload();
  // @ts-ignore the client's test hook
  me.id = await page.waitForFunction(() => window.veche?.selfId ?? null, null, { timeout: UI_TIMEOUT_MS }).then(h => h.jsonValue());
  await page.waitForSelector('#view-speaker[aria-pressed="true"]', { timeout: UI_TIMEOUT_MS });
  await page.waitForSelector('.main.speaker-view #stage .tile', { timeout: UI_TIMEOUT_MS });
  await page.click('#view-gallery');
  assert.equal(await page.evaluate(() => localStorage.getItem('veche.view')), 'gallery');
  await waitForVideos(me, 2);
});

test('every remote tile shows its connection quality, with the figures and the server\'s view', { timeout: 60000 }, async () => {
  const me = quiet2;
  const tile = `.tile[data-participant-id="${loud.id}"]`;
  // Wait for our own figures: the server's grade alone may show first.
  const bars = await me.page.waitForSelector(`${tile} .quality[data-quality]:not([hidden])[title*="packet loss"]`, { timeout: UI_TIMEOUT_MS });
  const title = (await bars.getAttribute('title')) ?? '';
  assert.match(title, /^Connection: (good|fair|poor), packet loss \d+\.\d %, jitter \d+ ms, round trip \d+ ms/, title);
  assert.equal(await bars.getAttribute('aria-label'), title);
  // On loopback nothing is lost.
  assert.match(title, /packet loss 0\.0 %/, title);
  // …and the camera video we get from them is named with its size and rate.
  assert.match(title, /video \d+×\d+ at \d+ fps/, title);
  await me.page.waitForSelector(`.tile.self .quality[data-quality]:not([hidden])`, { timeout: UI_TIMEOUT_MS });

  // The server's view of a link counts too: the worse of the two is shown. (Fed to the
  // client's message handler as the server would send it.)
  // The real server's report arrives first (it lists the whole room when a grade changes).
  await me.page.waitForSelector(`${tile} .quality[title*="server sees their link as"]`, { timeout: UI_TIMEOUT_MS });
  await me.page.evaluate(id => {
    // @ts-ignore the client's test hook
    const session = window.veche.session;
    // From here on only our report counts: a real one would replace it when a grade changes.
    const handle = session.handle.bind(session);
    session.handle = (/** @type {any} */ msg) => msg?.type === 'connection_quality' ? undefined : handle(msg);
    handle({ type: 'connection_quality', participants: [{ participant_id: id, quality: 'poor' }] });
  }, loud.id);
  await me.page.waitForSelector(`${tile} .quality[data-quality="poor"][title*="server sees their link as poor"]`, { timeout: UI_TIMEOUT_MS });
});

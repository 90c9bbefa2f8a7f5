// Simulcast through the real server: three Chromium participants. P1's camera goes out in
// three layers; P2 reports a small tile for it and gets a low layer, P3 a large one and gets
// the top layer. When P2 stops listing P1's camera the server stops forwarding it, and it
// comes back within a second of being listed again.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { until as untilOr } from './lib/media.mjs';
import { startServer } from './lib/server.mjs';

const MEDIA_TIMEOUT_MS = 30000;
/** How long the layers may take to settle (the publisher's own estimate must ramp up). */
const LAYER_TIMEOUT_MS = 20000;

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * @param {string} room
 * @param {string} name
 */
async function join(room, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.on('pageerror', err => console.error(`[${name}] page error:`, err));
  await page.goto(`${server.url}/m/${room}?name=${name}&autojoin=1`);
  // @ts-ignore the client's test hook
  const id = await page.waitForFunction(() => window.veche?.selfId ?? null, null, { timeout: MEDIA_TIMEOUT_MS });
  return { page, name, id: /** @type {number} */ (await id.jsonValue()) };
}

/**
 * The inbound video from `from`'s camera on `page`: bytes, frames decoded, frame height.
 * @param {import('playwright-core').Page} page
 * @param {number} from
 * @returns {Promise<{bytes: number, frames: number, height: number} | null>}
 */
function cameraFrom(page, from) {
  return page.evaluate(async from => {
    // @ts-ignore the client's test hook
    const veche = window.veche;
    const mid = veche.remoteMids().find((/** @type {any} */ m) => m.participantId === from && m.kind === 'video')?.mid;
    if (!veche.pc || mid === undefined) return null;
    /** @type {{bytes: number, frames: number, height: number, packets: number, resent: number, nacks: number} | null} */
    let found = null;
    (await veche.pc.getStats()).forEach((/** @type {any} */ s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.mid === mid) {
        found = {
          bytes: s.bytesReceived ?? 0, frames: s.framesDecoded ?? 0, height: s.frameHeight ?? 0,
          packets: s.packetsReceived ?? 0, resent: s.retransmittedBytesReceived ?? 0, nacks: s.nackCount ?? 0,
        };
      }
    });
    return found;
  }, from);
}

/**
 * What `page` sends of its camera: frame height per RID.
 * @param {import('playwright-core').Page} page
 * @returns {Promise<Record<string, number>>}
 */
function cameraLayers(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const pc = /** @type {RTCPeerConnection} */ (window.veche.pc);
    /** @type {Record<string, number>} */
    const layers = {};
    (await pc.getStats()).forEach((/** @type {any} */ s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) layers[s.rid] = s.frameHeight ?? 0;
    });
    return layers;
  });
}

/**
 * `until` with the tail of the server log on failure.
 * @template T
 * @param {string} what
 * @param {() => Promise<T>} probe
 * @param {(v: T) => boolean} ok
 * @param {number} timeoutMs
 * @returns {Promise<T>}
 */
function until(what, probe, ok, timeoutMs) {
  return untilOr(what, probe, ok, timeoutMs, () => `--- server log ---\n${server.log().slice(-3000)}`);
}

/**
 * @param {import('playwright-core').Page} page
 * @param {{participant_id: number, kind: 'video' | 'screen', width: number, height: number}[]} sizes
 */
function sendSizes(page, sizes) {
  // @ts-ignore the client's test hook
  return page.evaluate(sizes => {
    // The client's own reporter would replace these sizes at the next layout change.
    // @ts-ignore the client's test hook
    window.veche.holdVideoSizes(true);
    // @ts-ignore the client's test hook
    return window.veche.session.sendVideoSizes(sizes);
  }, sizes);
}

test('each subscriber gets the layer its tile needs; an unlisted tile pauses and resumes', { timeout: 120000 }, async () => {
  const room = `e2e-sim-${randomBytes(6).toString('hex')}`;
  const p1 = await join(room, 'P1');
  const p2 = await join(room, 'P2');
  const p3 = await join(room, 'P3');
  for (const p of [p2, p3]) {
    await until(`${p.name} decodes P1's camera`, () => cameraFrom(p.page, p1.id), v => (v?.frames ?? 0) > 0, MEDIA_TIMEOUT_MS);
  }

  const small = { participant_id: p1.id, kind: /** @type {const} */ ('video'), width: 320, height: 180 };
  const large = { participant_id: p1.id, kind: /** @type {const} */ ('video'), width: 1280, height: 720 };
  // The sizes go first: until a tile needs P1's top layer, the server may tell P1's browser to
  // stop encoding it (dynacast), since the gallery's own tiles are smaller than 720 lines.
  await sendSizes(p2.page, [small]);
  await sendSizes(p3.page, [large]);

  // P1's browser answered the simulcast offer: three encodings.
  const layers = await until('P1 sends three layers', () => cameraLayers(p1.page),
    l => ['q', 'h', 'f'].every(rid => (l[rid] ?? 0) > 0) && l.f > l.q, LAYER_TIMEOUT_MS);
  console.log(`P1 sends its camera as ${JSON.stringify(layers)} (frame height per rid)`);
  const lowAt = await until('P2 receives P1 at 240 lines or less', () => cameraFrom(p2.page, p1.id),
    v => v !== null && v.height > 0 && v.height <= 240, LAYER_TIMEOUT_MS);
  const topAt = await until('P3 receives P1\'s top layer', async () => ({ got: await cameraFrom(p3.page, p1.id), sent: await cameraLayers(p1.page) }),
    v => v.got !== null && v.got.height > 240 && v.got.height === Math.max(...Object.values(v.sent)), LAYER_TIMEOUT_MS);
  console.log(`P2 (small tile) receives ${lowAt.height} lines, P3 (large tile) ${topAt.got?.height}`);

  // Not listed: the server stops forwarding P1's camera to P2; P3 is unaffected.
  await sendSizes(p2.page, []);
  await p2.page.waitForTimeout(500);
  const paused = await cameraFrom(p2.page, p1.id);
  const p3Before = await cameraFrom(p3.page, p1.id);
  await p2.page.waitForTimeout(1500);
  const stillPaused = await cameraFrom(p2.page, p1.id);
  const p3After = await cameraFrom(p3.page, p1.id);
  assert.ok(paused && stillPaused && p3Before && p3After);
  // The server's bandwidth probing may resend old packets on the paused stream's RTX (str0m
  // pads that way); those count as retransmitted bytes. No new media may arrive.
  assert.equal(stillPaused.bytes - stillPaused.resent, paused.bytes - paused.resent,
    `no media bytes of a paused camera arrive: ${JSON.stringify({ paused, stillPaused })}`);
  assert.equal(stillPaused.frames, paused.frames, 'no frames of a paused camera are decoded');
  assert.ok(p3After.frames > p3Before.frames + 10, 'P3 keeps decoding P1');

  // Listed again: back within a second.
  // Timed from when the page has sent the sizes: on a loaded machine the round trip into the
  // page alone can take hundreds of milliseconds, and that is not the server's doing.
  await sendSizes(p2.page, [small]);
  const listed = Date.now();
  await until('P2 decodes P1 again', () => cameraFrom(p2.page, p1.id), v => v !== null && v.frames > stillPaused.frames, 1000);
  console.log(`resumed after ${Date.now() - listed} ms`);
});

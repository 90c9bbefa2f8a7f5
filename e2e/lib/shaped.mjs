// What the bad-link tests and benchmarks share: three Chromium participants, two outside and
// one (C) in a network namespace whose link a test degrades (lib/netns.mjs), and the figures
// read from each page's getStats — per remote participant what it decodes, at what height,
// how often the picture froze and how much audio was concealed, and per RID what the page
// sends.
//
// Every page holds its own tile reports and asks for 1280×720 of each remote camera, so that
// only the bandwidth estimate can keep a subscriber from the top layer.

import { openMeeting } from './call.mjs';
import { until, waitForMedia } from './media.mjs';
import { randomBytes } from 'node:crypto';

/** Height of the lower layers a capped subscriber may receive (180p, or 240 for rounding). */
export const LOW_HEIGHT = 240;

/**
 * The median of `v` (the upper one of an even count): the shaped-link tests judge A and B
 * over alternating rounds by it, so one stalled phase does not decide.
 * @param {number[]} v
 */
export const median = v => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];

/**
 * @typedef {{frames: number, height: number, freezes: number, freezeMs: number}} VideoFigures
 * @typedef {{concealed: number, samples: number}} AudioFigures
 * @typedef {{
 *   video: Record<number, VideoFigures>,
 *   audio: Record<number, AudioFigures>,
 *   sent: Record<string, {height: number, keyframes: number}>,
 * }} Figures per remote participant id, and what the page sends per rid
 */

/**
 * What a page receives from each remote participant and what it sends of its camera.
 * @param {import('playwright-core').Page} page
 * @returns {Promise<Figures>}
 */
export function figures(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const veche = window.veche;
    /** @type {Map<string, {participantId: number, kind: string}>} */
    const byMid = new Map(veche.remoteMids().map((/** @type {any} */ m) => [m.mid, m]));
    /** @type {any} */
    const out = { video: {}, audio: {}, sent: {} };
    const report = await veche.pc.getStats();
    // One entry per receiver, as in lib/media.mjs: the busier of its entries (str0m's probes
    // travel on their own SSRC under a media m-line's mid).
    /** @type {Map<string, any>} */
    const busiest = new Map();
    report.forEach((/** @type {any} */ s) => {
      if (s.type !== 'inbound-rtp') return;
      if ((busiest.get(s.mid)?.packetsReceived ?? -1) < (s.packetsReceived ?? 0)) busiest.set(s.mid, s);
    });
    report.forEach((/** @type {any} */ s) => {
      if (s.type === 'inbound-rtp') {
        if (busiest.get(s.mid)?.id !== s.id) return;
        const m = byMid.get(s.mid);
        if (!m) return;
        if (m.kind === 'video') {
          out.video[m.participantId] = {
            frames: s.framesDecoded ?? 0, height: s.frameHeight ?? 0,
            freezes: s.freezeCount ?? 0, freezeMs: Math.round((s.totalFreezesDuration ?? 0) * 1000),
          };
        } else if (m.kind === 'audio') {
          out.audio[m.participantId] = { concealed: s.concealedSamples ?? 0, samples: s.totalSamplesReceived ?? 0 };
        }
      } else if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
        out.sent[s.rid] = { height: s.frameHeight ?? 0, keyframes: s.keyFramesEncoded ?? 0 };
      }
    });
    return out;
  });
}

/**
 * The tallest layer a page sends now (what "the top layer" means while the encoder runs).
 * @param {Figures} f
 */
export function topHeight(f) {
  return Math.max(0, ...Object.values(f.sent).map(s => s.height));
}

/** @param {Figures} f */
export function keyframesSent(f) {
  return Object.values(f.sent).reduce((n, s) => n + s.keyframes, 0);
}

/** The tile a gallery of three gives each camera on a large screen. */
export const LARGE_TILE = { width: 1280, height: 720 };

/**
 * Joins three participants (A and B outside, C in the namespace), each asking for every
 * remote camera at `tile` (width and height, pixels), and waits until everyone decodes
 * everyone.
 * @param {import('./call.mjs').NamespaceCall} call
 * @param {{width: number, height: number}} [tile]
 */
export async function threeParty(call, tile = LARGE_TILE) {
  const room = `shaped-${randomBytes(4).toString('hex')}`;
  const url = call.server.url;
  const a = await openMeeting(call.outside, url, room, 'A');
  const b = await openMeeting(call.outside, url, room, 'B');
  const c = await openMeeting(call.inside, url, room, 'C');
  const pages = [a.page, b.page, c.page];
  for (const [i, page] of pages.entries()) {
    await waitForMedia(page, 'ABC'[i], { videos: 2, audios: 2, context: call.log });
  }
  /** @type {number[]} */
  const ids = await Promise.all(pages.map(p => p.evaluate(() => /** @type {any} */ (window).veche.selfId)));
  for (const [i, page] of pages.entries()) {
    const sizes = ids.filter((_, j) => j !== i)
      .map(id => ({ participant_id: id, kind: 'video', ...tile }));
    await page.evaluate(sizes => {
      // @ts-ignore the client's test hook
      window.veche.holdVideoSizes(true);
      // @ts-ignore the client's test hook
      window.veche.session.sendVideoSizes(sizes);
    }, sizes);
  }
  const [ia, ib, ic] = ids;
  return { a: a.page, b: b.page, c: c.page, ia, ib, ic, close: () => Promise.all(pages.map(p => p.context().close())) };
}

/**
 * Waits until `page` receives `from` at the top layer `publisher` sends.
 * @param {import('./call.mjs').NamespaceCall} call
 * @param {string} what
 * @param {import('playwright-core').Page} page
 * @param {number} from
 * @param {import('playwright-core').Page} publisher
 * @param {number} timeoutMs
 */
export function untilTopLayer(call, what, page, from, publisher, timeoutMs) {
  return until(what, async () => ({ got: await figures(page), sent: await figures(publisher) }),
    v => {
      const got = v.got.video[from]?.height ?? 0;
      return got > LOW_HEIGHT && got === topHeight(v.sent);
    }, timeoutMs, call.log);
}

/**
 * Waits until `page` receives `from` at least `height` lines high.
 * @param {import('./call.mjs').NamespaceCall} call
 * @param {string} what
 * @param {import('playwright-core').Page} page
 * @param {number} from
 * @param {number} height
 * @param {number} timeoutMs
 */
export function untilHeight(call, what, page, from, height, timeoutMs) {
  return until(what, () => figures(page), f => (f.video[from]?.height ?? 0) >= height, timeoutMs, call.log);
}

/**
 * The change of a figure between two readings.
 * @param {VideoFigures | undefined} was
 * @param {VideoFigures | undefined} now
 */
export function videoDelta(was, now) {
  return {
    frames: (now?.frames ?? 0) - (was?.frames ?? 0),
    freezes: (now?.freezes ?? 0) - (was?.freezes ?? 0),
    freezeMs: (now?.freezeMs ?? 0) - (was?.freezeMs ?? 0),
    height: now?.height ?? 0,
  };
}

/**
 * Concealed share of the audio received between two readings, in percent.
 * @param {AudioFigures | undefined} was
 * @param {AudioFigures | undefined} now
 */
export function concealedPercent(was, now) {
  const samples = (now?.samples ?? 0) - (was?.samples ?? 0);
  const concealed = (now?.concealed ?? 0) - (was?.concealed ?? 0);
  return samples > 0 ? Math.round(concealed / samples * 1000) / 10 : 100;
}

/** How often {@link phase} reads the figures between its first and last reading. */
const SAMPLE_MS = 500;

/**
 * Reads every page's figures, then again every half second for `ms`; returns the first and
 * the last reading and every one in between (`samples[k][i]`: page `i` at the `k`-th).
 * @param {import('playwright-core').Page[]} pages
 * @param {number} ms
 */
export async function phase(pages, ms) {
  const end = Date.now() + ms;
  const samples = [await Promise.all(pages.map(figures))];
  while (Date.now() < end) {
    await new Promise(r => setTimeout(r, Math.min(SAMPLE_MS, Math.max(0, end - Date.now()))));
    samples.push(await Promise.all(pages.map(figures)));
  }
  return { was: samples[0], now: samples[samples.length - 1], samples };
}

/**
 * The share of a phase's readings in which page `i` received `from` at least `height`
 * lines high: one reading is a moment, this is how much of the phase it held.
 * @param {Figures[][]} samples from {@link phase}
 * @param {number} i
 * @param {number} from
 * @param {number} height
 */
export function heldShare(samples, i, from, height) {
  const held = samples.filter(s => (s[i].video[from]?.height ?? 0) >= height).length;
  return Math.round(held / samples.length * 100) / 100;
}

// Issue 9's 300 kbit/s test (SHAPED_TRACE=1 prints when each phase starts;
// RUST_LOG=info,veche_sfu=debug with VECHE_E2E_KEEP_LOGS=1 keeps the server's layer, keyframe
// and proof decisions). docs/quality.md ("300 kbit/s") has its figures and history.
//
// One participant behind a 300 kbit/s downlink (tbf with 200 ms of queue, lib/netns.mjs):
// it keeps decoding both others' cameras on a low layer and hears them clean, the two others
// pay nothing for it (the top layer of each other, no more freezes, no more keyframes than
// while the link is open), and when the cap goes it climbs back to the top layer within 15 s.
//
// Open and capped phases alternate, and A and B are judged by the median over the rounds: a
// stall of this shared two-core machine spoils one phase, not the verdict. Every page asks
// for the others' cameras in 640×360 tiles, so the top layer the publishers encode is 360p
// (dynacast turns the 720p one off): two 720p top layers sit at the edge of what three
// browsers on two cores let an estimator find (e2e/link-loss.test.mjs says more). Figures
// at 1280×720 and other caps come from bench/shaped-link.mjs (docs/quality.md).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { namespaceCall } from './lib/call.mjs';
import { concealedPercent, figures, LOW_HEIGHT, median, phase, threeParty, topHeight, videoDelta } from './lib/shaped.mjs';

/** The tile each participant renders the others' cameras in. */
const TILE = { width: 640, height: 360 };

/** How long each measured phase lasts, and how many open and capped phases alternate. */
const PHASE_MS = 8000;
const ROUNDS = 3;

/** The bar: back at the top layer this soon after the cap is lifted. */
const CLIMB_MS = 15000;

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;

before(async () => {
  call = await namespaceCall();
});

after(async () => {
  await call?.close();
});

/**
 * Keyframes a page has encoded of its top layer (the one the others receive).
 * @param {import('./lib/shaped.mjs').Figures} f
 */
function topKeyframes(f) {
  const top = topHeight(f);
  return Object.values(f.sent).filter(s => s.height === top).reduce((n, s) => n + s.keyframes, 0);
}

/**
 * The longest run of readings (every half second) in which page `i` decoded no new frame
 * of `from`, in milliseconds.
 * @param {import('./lib/shaped.mjs').Figures[][]} samples
 * @param {number} i
 * @param {number} from
 */
function longestStill(samples, i, from) {
  let longest = 0;
  let run = 0;
  for (let k = 1; k < samples.length; k++) {
    const moved = (samples[k][i].video[from]?.frames ?? 0) > (samples[k - 1][i].video[from]?.frames ?? 0);
    run = moved ? 0 : run + 1;
    longest = Math.max(longest, run);
  }
  return longest * 500;
}

test('a participant behind 300 kbit/s keeps decoding low layers and clean audio; the others pay nothing; the top layer returns within 15 s', { timeout: 240000 }, async () => {
  const { a, b, c, ia, ib, close } = await threeParty(call, TILE);
  const pages = [a, b, c];
  try {
    /** Whether page `i` receives `from` at the top layer its publisher sends. */
    const atTop = async (/** @type {number} */ i, /** @type {number} */ from) => {
      const [got, sent] = await Promise.all([figures(pages[i]), figures(pages[[ia, ib].indexOf(from)])]);
      const height = got.video[from]?.height ?? 0;
      return height > LOW_HEIGHT && height === topHeight(sent);
    };
    const waitTop = async (/** @type {number} */ i, /** @type {number} */ from, /** @type {number} */ ms) => {
      const start = Date.now();
      while (!(await atTop(i, from))) {
        if (Date.now() - start > ms) return null;
        await new Promise(r => setTimeout(r, 250));
      }
      return Date.now() - start;
    };
    for (const [what, i, from] of /** @type {const} */ ([['A from B', 0, ib], ['B from A', 1, ia], ['C from A', 2, ia], ['C from B', 2, ib]])) {
      assert.ok(await waitTop(i, from, 30000) !== null, `${what} at the top layer before the first round\n${call.log()}`);
    }

    /** @type {{open: Awaited<ReturnType<typeof phase>>, capped: Awaited<ReturnType<typeof phase>>, down: number, up: number[]}[]} */
    const rounds = [];
    for (let r = 0; r < ROUNDS; r++) {
      if (process.env.SHAPED_TRACE) console.log(`round ${r}: open phase from ${new Date().toISOString()}`);
      const open = await phase(pages, PHASE_MS);
      await call.host.limitRate({ down: '300kbit', queueMs: 200 });
      const capAt = Date.now();
      await untilLow(c, [ia, ib], 10000);
      const down = Date.now() - capAt;
      if (process.env.SHAPED_TRACE) console.log(`round ${r}: capped phase from ${new Date().toISOString()}`);
      const capped = await phase(pages, PHASE_MS);
      if (process.env.SHAPED_TRACE) console.log(`round ${r}: capped phase to ${new Date().toISOString()}`);
      await call.host.limitRate({});
      /** @type {number[]} */
      const up = [];
      const liftedAt = Date.now();
      for (const from of [ia, ib]) {
        const took = await waitTop(2, from, CLIMB_MS - (Date.now() - liftedAt));
        assert.ok(took !== null, `round ${r}: C back at the top layer of ${from} within ${CLIMB_MS} ms of the cap lifted\n${call.log()}`);
        up.push(Date.now() - liftedAt);
      }
      rounds.push({ open, capped, down, up });
    }

    /** @type {Record<string, unknown>} */
    const report = { 'C stepped down after (ms)': rounds.map(r => r.down), 'C back at the top after (ms)': rounds.map(r => r.up) };
    for (const from of [ia, ib]) {
      const per = rounds.map(r => ({
        ...videoDelta(r.capped.was[2].video[from], r.capped.now[2].video[from]),
        still: longestStill(r.capped.samples, 2, from),
        tallest: Math.max(...r.capped.samples.map(s => s[2].video[from]?.height ?? 0)),
        concealed: concealedPercent(r.capped.was[2].audio[from], r.capped.now[2].audio[from]),
      }));
      report[`C from ${from} behind 300 kbit/s, per round`] = per;
      for (const [k, d] of per.entries()) {
        assert.ok(d.frames > 0 && d.still <= PHASE_MS / 2, `round ${k}: C keeps decoding ${from} behind 300 kbit/s: ${JSON.stringify(d)}\n${call.log()}`);
        assert.ok(d.tallest <= LOW_HEIGHT, `round ${k}: C receives ${from} at no more than ${LOW_HEIGHT} lines: ${JSON.stringify(d)}`);
        assert.ok(d.concealed < 2, `round ${k}: C's audio from ${from} stays clean: ${JSON.stringify(d)}\n${call.log()}`);
      }
    }
    for (const [i, from] of /** @type {const} */ ([[0, ib], [1, ia]])) {
      const p = [ia, ib].indexOf(from);
      const open = rounds.map(r => ({
        ...videoDelta(r.open.was[i].video[from], r.open.now[i].video[from]),
        keyframes: topKeyframes(r.open.now[p]) - topKeyframes(r.open.was[p]),
        top: r.open.samples.filter(s => (s[i].video[from]?.height ?? 0) === topHeight(s[p])).length / r.open.samples.length,
      }));
      const capped = rounds.map(r => ({
        ...videoDelta(r.capped.was[i].video[from], r.capped.now[i].video[from]),
        keyframes: topKeyframes(r.capped.now[p]) - topKeyframes(r.capped.was[p]),
        top: r.capped.samples.filter(s => (s[i].video[from]?.height ?? 0) === topHeight(s[p])).length / r.capped.samples.length,
      }));
      const seen = { open, capped };
      report[`${'AB'[i]} from ${from}: open and while C is capped, per round`] = seen;
      assert.ok(median(capped.map(d => d.top)) >= 0.8, `${'AB'[i]} keeps the top layer of ${from} while C is capped: ${JSON.stringify(seen)}`);
      assert.ok(median(capped.map(d => d.freezes)) <= median(open.map(d => d.freezes)),
        `${'AB'[i]} freezes no more often while C is capped: ${JSON.stringify(seen)}`);
      assert.ok(median(capped.map(d => d.keyframes)) <= median(open.map(d => d.keyframes)),
        `${from} encodes no more keyframes of its top layer while C is capped: ${JSON.stringify(seen)}\n${call.log()}`);
      const concealed = concealedPercent(rounds[0].capped.was[i].audio[from], rounds[ROUNDS - 1].capped.now[i].audio[from]);
      assert.ok(concealed < 2, `${'AB'[i]}'s audio from ${from} stays clean: ${concealed} %`);
    }
    console.log(JSON.stringify(report, null, 1));
  } finally {
    await call.host.limitRate({});
    await close();
  }
});

/**
 * Waits until `page` receives every one of `from` at no more than {@link LOW_HEIGHT} lines.
 * @param {import('playwright-core').Page} page
 * @param {number[]} from
 * @param {number} ms
 */
async function untilLow(page, from, ms) {
  const start = Date.now();
  for (;;) {
    const f = await figures(page);
    if (from.every(id => (f.video[id]?.height ?? 0) > 0 && (f.video[id]?.height ?? 0) <= LOW_HEIGHT)) return;
    if (Date.now() - start > ms) throw new Error(`C did not step down within ${ms} ms: ${JSON.stringify(f.video)}\n${call.log()}`);
    await new Promise(r => setTimeout(r, 250));
  }
}

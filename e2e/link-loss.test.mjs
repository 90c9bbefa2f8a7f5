// Loss on one participant's link (nftables drops 10 % of its packets both ways, lib/netns.mjs):
// its picture keeps moving, and the two others lose nothing — they keep the layer of their
// tiles, decode as many frames, freeze no longer and hear clean audio; C's own audio is
// rebuilt from the redundancy the server adds towards it. Each asks for the
// others' cameras in 640×360 tiles: the layer that covers them leaves the estimate room to
// spare on a busy machine (at 1280×720 the top layers of two cameras sit at the edge of what
// three browsers on two cores let an estimator find, and the picture steps down and up
// whatever C's link does). The figures at other loss rates and bandwidth caps come from
// bench/shaped-link.mjs (docs/quality.md).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { namespaceCall } from './lib/call.mjs';
import { concealedPercent, heldShare, median, phase, threeParty, untilHeight, videoDelta } from './lib/shaped.mjs';

/** The tile each participant renders the others' cameras in. */
const TILE = { width: 640, height: 360 };

/** How long each measured phase lasts, and how many clean and lossy phases alternate. */
const PHASE_MS = 5000;
const ROUNDS = 3;

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;

before(async () => {
  call = await namespaceCall();
});

after(async () => {
  await call?.close();
});

test('10 % random loss on one participant\'s link: its video keeps decoding, the others are unaffected', { timeout: 120000 }, async () => {
  const { a, b, c, ia, ib, close } = await threeParty(call, TILE);
  try {
    await untilHeight(call, 'A receives B at the layer of its tile', a, ib, TILE.height, 30000);
    await untilHeight(call, 'B receives A at the layer of its tile', b, ia, TILE.height, 30000);
    // Clean and lossy phases alternate, and A and B are judged by the median over the
    // rounds: one stall of this shared machine spoils a phase, not the verdict.
    /** @type {{clean: Awaited<ReturnType<typeof phase>>, lossy: Awaited<ReturnType<typeof phase>>}[]} */
    const rounds = [];
    for (let r = 0; r < ROUNDS; r++) {
      const clean = await phase([a, b, c], PHASE_MS);
      await call.host.loss(10);
      const lossy = await phase([a, b, c], PHASE_MS);
      await call.host.clearRules();
      rounds.push({ clean, lossy });
    }
    const first = rounds[0].lossy;
    const last = rounds[ROUNDS - 1].lossy;

    /** @type {Record<string, unknown>} */
    const report = {};
    for (const id of [ia, ib]) {
      const frames = rounds.map(r => videoDelta(r.lossy.was[2].video[id], r.lossy.now[2].video[id]).frames);
      // Over the lossy phases together (the clean ones between them hear nothing lost).
      const samples = rounds.reduce((n, r) => n + (r.lossy.now[2].audio[id]?.samples ?? 0) - (r.lossy.was[2].audio[id]?.samples ?? 0), 0);
      const lost = rounds.reduce((n, r) => n + (r.lossy.now[2].audio[id]?.concealed ?? 0) - (r.lossy.was[2].audio[id]?.concealed ?? 0), 0);
      const concealed = samples > 0 ? Math.round(lost / samples * 1000) / 10 : 100;
      report[`C from ${id} at 10 % loss`] = { frames, concealedPercent: concealed };
      assert.ok(Math.min(...frames) >= PHASE_MS / 1000 * 5, `C keeps decoding ${id} at 10 % loss: ${JSON.stringify(frames)}\n${call.log()}`);
      // Without redundant audio C's concealment follows the loss (9–10 %); with it, what is
      // left is the second after each phase's start before the server sees C's loss, and jitter.
      assert.ok(concealed < 5, `C's audio from ${id} is rebuilt from redundancy: ${concealed} % concealed\n${call.log()}`);
    }
    for (const [i, from] of /** @type {const} */ ([[0, ib], [1, ia]])) {
      const was = rounds.map(r => videoDelta(r.clean.was[i].video[from], r.clean.now[i].video[from]));
      const now = rounds.map(r => videoDelta(r.lossy.was[i].video[from], r.lossy.now[i].video[from]));
      const held = rounds.map(r => heldShare(r.lossy.samples, i, from, TILE.height));
      const figures = { was, now, held };
      report[`${'AB'[i]} from ${from}: clean and during C's loss, per round`] = figures;
      // C's uplink loses too, but A and B receive each other: nothing of C's link is theirs.
      // What the phases are judged by allows for this machine, not for C: a stall of the
      // shared CPU reads as congestion to A's or B's own estimator and costs it a layer for
      // a second or three, a layer switch may count as a freeze. C's loss reaching them would
      // cost more than that in every round: a lower layer most of the time, frames or
      // seconds of freezes.
      assert.ok(median(held) >= 0.5, `${'AB'[i]} keeps the layer of its tile from ${from} most of the time: ${JSON.stringify(figures)}`);
      assert.ok(median(now.map(d => d.frames)) >= median(was.map(d => d.frames)) * 0.8,
        `${'AB'[i]} decodes as many frames of ${from} as in the clean phases: ${JSON.stringify(figures)}`);
      assert.ok(median(now.map(d => d.freezeMs)) <= median(was.map(d => d.freezeMs)) + 1000,
        `${'AB'[i]} freezes no longer than in the clean phases: ${JSON.stringify(figures)}`);
      const concealed = concealedPercent(first.was[i].audio[from], last.now[i].audio[from]);
      assert.ok(concealed < 2, `${'AB'[i]}'s audio from ${from} stays clean: ${concealed} %`);
    }
    console.log(JSON.stringify(report, null, 1));
  } finally {
    await call.host.clearRules();
    await close();
  }
});

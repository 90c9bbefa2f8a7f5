// Loss on one participant's link (nftables drops 10 % of its packets both ways, lib/netns.mjs):
// its picture keeps moving, and the two others lose nothing — they keep the top layer with no
// more freezes and clean audio. The figures at other loss rates and bandwidth caps come from
// bench/shaped-link.mjs (docs/quality.md).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { namespaceCall } from './lib/call.mjs';
import { LOW_HEIGHT, concealedPercent, phase, threeParty, topHeight, untilTopLayer, videoDelta } from './lib/shaped.mjs';

/** How long each measured phase lasts. */
const PHASE_MS = 10000;

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;

before(async () => {
  call = await namespaceCall();
});

after(async () => {
  await call?.close();
});

test('10 % random loss on one participant\'s link: its video keeps decoding, the others are unaffected', { timeout: 120000 }, async () => {
  const { a, b, c, ia, ib, close } = await threeParty(call);
  try {
    await untilTopLayer(call, 'A receives B at the top layer', a, ib, b, 30000);
    await untilTopLayer(call, 'B receives A at the top layer', b, ia, a, 30000);
    const base = await phase([a, b, c], PHASE_MS);
    await call.host.loss(10);
    const lossy = await phase([a, b, c], PHASE_MS);
    await call.host.clearRules();

    /** @type {Record<string, unknown>} */
    const report = {};
    for (const id of [ia, ib]) {
      const d = videoDelta(lossy.was[2].video[id], lossy.now[2].video[id]);
      report[`C from ${id} at 10 % loss`] = { ...d, concealedPercent: concealedPercent(lossy.was[2].audio[id], lossy.now[2].audio[id]) };
      assert.ok(d.frames >= PHASE_MS / 1000 * 5, `C keeps decoding ${id} at 10 % loss: ${JSON.stringify(d)}\n${call.log()}`);
    }
    for (const [i, from, j] of /** @type {const} */ ([[0, ib, 1], [1, ia, 0]])) {
      const was = videoDelta(base.was[i].video[from], base.now[i].video[from]);
      const now = videoDelta(lossy.was[i].video[from], lossy.now[i].video[from]);
      report[`${'AB'[i]} from ${from}: before → during C's loss`] = [was, now];
      // C's uplink loses too, but A and B receive each other: nothing of C's link is theirs.
      assert.ok(now.height === topHeight(lossy.now[j]) && now.height > LOW_HEIGHT,
        `${'AB'[i]} keeps the top layer of ${from}: ${JSON.stringify(now)}`);
      assert.ok(now.freezes <= was.freezes, `${'AB'[i]} freezes no more than before: ${was.freezes} → ${now.freezes}`);
      const concealed = concealedPercent(lossy.was[i].audio[from], lossy.now[i].audio[from]);
      assert.ok(concealed < 2, `${'AB'[i]}'s audio from ${from} stays clean: ${concealed} %`);
    }
    console.log(JSON.stringify(report, null, 1));
  } finally {
    await call.host.clearRules();
    await close();
  }
});

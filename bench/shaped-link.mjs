// What one participant on a bad link gets, and what the others pay for it: three Chromium
// participants (e2e/lib/shaped.mjs), C behind a link that is capped (tbf, 200 ms of queue) or
// loses packets at random (nftables), one condition after another in one call. For each, after
// a few seconds to settle, it measures over PHASE_S seconds C's received height, frame rate,
// freezes and concealed audio of both others, and whether A and B still receive each other at
// the top layer. Also the time for C to step down when a cap comes, and to climb back when it
// goes. Prints a Markdown table (docs/quality.md holds the latest).
//
//   cargo build --bin veche && sudo node bench/shaped-link.mjs   (needs root for ip netns;
//   e2e/ npm packages installed: npm --prefix e2e ci)
//
// Environment: VECHE_BIN (default target/debug/veche), PHASE_S (default 10), SETTLE_S (3),
// ONLY (run only the conditions whose name contains it, e.g. ONLY=300).

import { namespaceCall } from '../e2e/lib/call.mjs';
import { LOW_HEIGHT, concealedPercent, figures, phase, threeParty, topHeight, untilTopLayer, videoDelta } from '../e2e/lib/shaped.mjs';

const PHASE_MS = Number(process.env.PHASE_S ?? 10) * 1000;
const SETTLE_MS = Number(process.env.SETTLE_S ?? 3) * 1000;

/** @typedef {{name: string, apply: (host: import('../e2e/lib/netns.mjs').Host) => Promise<void>}} Condition */

/** @type {Condition[]} */
const CONDITIONS = [
  { name: 'uncapped, no loss', apply: async () => {} },
  { name: '5 % loss', apply: h => h.loss(5) },
  { name: '10 % loss', apply: h => h.loss(10) },
  { name: '20 % loss', apply: h => h.loss(20) },
  { name: '1 Mbit/s down', apply: h => h.limitRate({ down: '1mbit', queueMs: 200 }) },
  { name: '300 kbit/s down', apply: h => h.limitRate({ down: '300kbit', queueMs: 200 }) },
];

/**
 * Polls until `ok` or `timeoutMs`; resolves to the milliseconds it took, or null.
 * @param {() => Promise<boolean>} ok
 * @param {number} timeoutMs
 */
async function timeUntil(ok, timeoutMs) {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await ok()) return Date.now() - start;
    await new Promise(r => setTimeout(r, 200));
  }
  return null;
}

const call = await namespaceCall();
/** @type {string[]} */
const rows = [];
try {
  const { a, b, c, ia, ib, close } = await threeParty(call);
  await untilTopLayer(call, 'A receives B at the top layer', a, ib, b, 30000);
  await untilTopLayer(call, 'B receives A at the top layer', b, ia, a, 30000);
  await untilTopLayer(call, 'C receives A at the top layer', c, ia, a, 30000);
  for (const condition of CONDITIONS.filter(c => c.name.includes(process.env.ONLY ?? ''))) {
    await condition.apply(call.host);
    const applied = Date.now();
    // For a cap: how long until C receives both others on a low layer.
    const down = condition.name.includes('down')
      ? await timeUntil(async () => {
        const f = await figures(c);
        return [ia, ib].every(id => { const h = f.video[id]?.height ?? 0; return h > 0 && h <= LOW_HEIGHT; });
      }, 15000)
      : null;
    await new Promise(r => setTimeout(r, Math.max(0, SETTLE_MS - (Date.now() - applied))));
    const m = await phase([a, b, c], PHASE_MS);
    const seconds = PHASE_MS / 1000;
    const cells = [ia, ib].map(id => {
      const d = videoDelta(m.was[2].video[id], m.now[2].video[id]);
      return `${d.height} / ${(d.frames / seconds).toFixed(1)} / ${d.freezes} (${d.freezeMs} ms) / ${concealedPercent(m.was[2].audio[id], m.now[2].audio[id])} %`;
    });
    const others = [[0, ib, 1], [1, ia, 0]].map(([i, from, j]) => {
      const d = videoDelta(m.was[i].video[from], m.now[i].video[from]);
      return `${d.height === topHeight(m.now[j]) ? 'top' : d.height} / ${d.freezes}`;
    });
    await call.host.clearRules();
    await call.host.limitRate({});
    // After a cap: how long until C is back at the top layer of both.
    const up = condition.name.includes('down')
      ? await timeUntil(async () => {
        const [fc, fa, fb] = await Promise.all([figures(c), figures(a), figures(b)]);
        return (fc.video[ia]?.height ?? 0) === topHeight(fa) && (fc.video[ib]?.height ?? 0) === topHeight(fb);
      }, 30000)
      : null;
    const row = `| ${condition.name} | ${cells.join(' | ')} | ${others.join(' | ')} | ${down ?? '–'} | ${up ?? '–'} |`;
    console.log(row);
    rows.push(row);
    if (!up && condition.name.includes('down')) {
      // Not back at the top layer: let it settle before the next condition.
      await new Promise(r => setTimeout(r, 5000));
    }
  }
  await close();
} finally {
  await call.close();
}
console.log(`
C's view of A and of B: received height / frames per second / freezes (their total) / audio concealed.
A's view of B and B's of A: "top" when at the top layer the publisher sends, else the height / freezes.
Step down: ms from the cap until C receives both at ≤ ${LOW_HEIGHT} lines; back up: ms from lifting it until C receives both at the top layer.

| C's link | C from A | C from B | A from B | B from A | step down (ms) | back up (ms) |
|---|---|---|---|---|---|---|
${rows.join('\n')}`);

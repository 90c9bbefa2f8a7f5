// What end-to-end encryption costs in the browser: three Chromium participants in one call,
// once in a plain room and once in an E2EE room (`?e2ee=1`), alternating for ROUNDS rounds
// (this VM is noisy). Each round measures, over WINDOW_S seconds once media flows, the CPU
// time of all Chromium processes (the browser, its renderers and utility processes:
// encoding, decoding, SFrame in the worker), and the page-open → first-remote-frame time.
// Prints medians per mode and their ratio.
//
//   cargo build --bin veche && node bench/e2ee-cost.mjs   (e2e/ npm packages installed)
//
// Environment: VECHE_BIN (default target/debug/veche), ROUNDS (default 3), WINDOW_S (10).

import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { launch } from '../e2e/lib/browser.mjs';
import { openMeeting } from '../e2e/lib/call.mjs';
import { firstFrameAt, waitForMedia } from '../e2e/lib/media.mjs';
import { startServer } from '../e2e/lib/server.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WINDOW_MS = Number(process.env.WINDOW_S ?? 10) * 1000;
const TICKS = 100; // USER_HZ on Linux

/**
 * CPU seconds (user + system) of every Chromium process (the bench runs one browser at a time:
 * the browser process, its renderers and utility processes).
 */
function chromiumCpu() {
  let total = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!/^chrom/.test(readFileSync(`/proc/${name}/comm`, 'utf8'))) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / TICKS;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** @param {number[]} xs */
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
/** @type {{plain: {cpu: number[], first: number[]}, e2ee: {cpu: number[], first: number[]}}} */
const results = { plain: { cpu: [], first: [] }, e2ee: { cpu: [], first: [] } };
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of /** @type {const} */ (round % 2 ? ['e2ee', 'plain'] : ['plain', 'e2ee'])) {
      const browser = await launch();
      const room = `cost-${randomBytes(4).toString('hex')}`;
      const pages = [];
      const opened = Date.now();
      for (const name of ['A', 'B', 'C']) {
        pages.push((await openMeeting(browser, server.url, room, name, mode === 'e2ee' ? { e2ee: '1' } : {})).page);
      }
      const first = await firstFrameAt(pages[0], 'A', { deadline: opened + 60000 });
      for (const page of pages) await waitForMedia(page, mode, { videos: 2, audios: 2, timeoutMs: 60000 });
      await new Promise(r => setTimeout(r, 3000));
      const before = chromiumCpu();
      await new Promise(r => setTimeout(r, WINDOW_MS));
      const used = chromiumCpu() - before;
      results[mode].cpu.push(used / (WINDOW_MS / 1000));
      results[mode].first.push(first - opened);
      console.error(`round ${round + 1} ${mode}: ${(100 * used / (WINDOW_MS / 1000)).toFixed(0)} % of a core, first frame ${first - opened} ms`);
      await browser.close();
    }
  }
} finally {
  await server.stop();
}
const plain = median(results.plain.cpu);
const e2ee = median(results.e2ee.cpu);
console.log('| mode | Chromium CPU, 3 participants (median) | page open → first remote frame (median) |');
console.log('|---|---|---|');
console.log(`| plain | ${(100 * plain).toFixed(0)} % of a core | ${median(results.plain.first)} ms |`);
console.log(`| E2EE | ${(100 * e2ee).toFixed(0)} % of a core | ${median(results.e2ee.first)} ms |`);
console.log(`\nE2EE / plain CPU: ${(e2ee / plain).toFixed(2)} (${ROUNDS} rounds, ${WINDOW_MS / 1000} s windows)`);

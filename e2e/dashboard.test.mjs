// The operator's dashboard in a real browser: two people meet in an organisation's meeting,
// the live figures count them, the meeting ends, and the usage plot shows it — checked in
// the SVG (a bar of height > 0 for the one meeting) and in a screenshot of the plot, whose
// pixels are decoded here and must include the bars' colour, not just the background.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { openMeeting } from './lib/call.mjs';
import { REPO_ROOT, apiCall, startServer } from './lib/server.mjs';

const BIN = path.resolve(REPO_ROOT, process.env.VECHE_BIN ?? 'target/debug/veche');
const TIMEOUT_MS = 15000;
/** The bars' fill: `--accent` in web/style.css. */
const BAR_RGB = [0x2f, 0x6f, 0xed];

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  const made = spawnSync(BIN, ['admin', 'create-user', '--email', 'root@example.org', '--password-stdin', '--role', 'admin', '--data-dir', server.dataDir],
    { input: 'root password 123\n', encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * A JSON API call with a bearer token.
 * @param {string} method
 * @param {string} route
 * @param {string | null} token
 * @param {unknown} [body]
 */
const call = (method, route, token, body) => apiCall(server.url, method, route, token, body);

/**
 * The RGB(A) pixels of a PNG (8 bits per channel, no interlacing: what Chromium writes),
 * decoded with zlib and the five scanline filters of RFC 2083.
 * @param {Buffer} png
 * @returns {{width: number, height: number, channels: number, data: Uint8Array}}
 */
function decodePng(png) {
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG', 'a PNG');
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  /** @type {Buffer[]} */
  const idat = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.subarray(offset + 4, offset + 8).toString('latin1');
    const chunk = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = chunk.readUInt32BE(0);
      height = chunk.readUInt32BE(4);
      assert.equal(chunk[8], 8, '8 bits per channel');
      assert.equal(chunk[12], 0, 'not interlaced');
      channels = { 2: 3, 6: 4 }[chunk[9]] ?? 0;
      assert.ok(channels, `colour type ${chunk[9]} is RGB or RGBA`);
    } else if (type === 'IDAT') {
      idat.push(chunk);
    }
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? data[y * stride + x - channels] : 0;
      const b = y > 0 ? data[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? data[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a);
      const pb = Math.abs(p - b);
      const pc = Math.abs(p - c);
      const predictor = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      data[y * stride + x] = (line[x] + predictor) & 0xff;
    }
  }
  return { width, height, channels, data };
}

test('the dashboard shows the usage of a meeting that just ended', async () => {
  // An organisation's admin schedules a meeting anyone with the link may start.
  const dana = await call('POST', '/auth/signup', null, { email: 'dana@example.org', password: 'dana password', name: 'Dana', org_name: 'Acme' });
  const meeting = await call('POST', '/meetings', dana.token, { title: 'Standup', join_before_host: true });

  // The operator opens the dashboard.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const root = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  root.on('pageerror', err => errors.push(String(err)));
  await root.goto(`${server.url}/login?next=/admin`);
  await root.fill('#login-email', 'root@example.org');
  await root.fill('#login-password', 'root password 123');
  await root.click('#login-form button[type=submit]');
  await root.waitForSelector('#dashboard #usage-plots svg[data-metric="meetings"]');
  assert.equal(await root.locator('#usage-plots rect.bar[data-value="1"]').count(), 0, 'no meeting yet');

  // Two people meet; the live figures count them.
  const a = await openMeeting(browser, server.url, meeting.id, 'Ann');
  const b = await openMeeting(browser, server.url, meeting.id, 'Ben');
  for (const p of [a, b]) await p.page.waitForFunction(() => document.querySelectorAll('[data-participant-id]').length >= 2, null, { timeout: TIMEOUT_MS });
  await root.waitForSelector('#live-participants strong:text-is("2")', { timeout: TIMEOUT_MS });
  assert.match(await root.textContent('#live-orgs-table') ?? '', /Acme\s*1\s*2/);
  assert.match(await root.textContent('#shards-table') ?? '', /\d/);

  // The host's organisation ends it; the next refresh plots it.
  await call('POST', `/meetings/${meeting.id}/live`, dana.token, { type: 'end_meeting' });
  await a.page.waitForSelector('#ended-screen', { timeout: TIMEOUT_MS });
  const bar = root.locator('#usage-plots svg[data-metric="meetings"] rect.bar[data-value="1"]');
  await bar.waitFor({ state: 'attached', timeout: TIMEOUT_MS });
  assert.ok(Number(await bar.getAttribute('height')) > 0, 'the bar has a height');
  const peak = root.locator('#usage-plots svg[data-metric="peak_participants"] rect.bar[data-value="2"]');
  assert.equal(await peak.count(), 1, 'a peak of two');
  assert.equal(await root.locator('#usage-plots svg[data-metric="participant_minutes"] rect.bar[data-value="1"]').count(), 1);

  // The screenshot of the plot is not blank: it has the bar's colour among its pixels.
  const shot = await root.locator('#usage-plots svg[data-metric="meetings"]').screenshot();
  const { width, height, channels, data } = decodePng(shot);
  let barPixels = 0;
  const colours = new Set();
  for (let i = 0; i < width * height * channels; i += channels) {
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (BAR_RGB.every((v, k) => Math.abs(data[i + k] - v) <= 8)) barPixels++;
  }
  console.log(`plot screenshot: ${width}x${height}, ${colours.size} colours, ${barPixels} bar pixels`);
  assert.ok(colours.size > 2, 'more than a background colour');
  assert.ok(barPixels > 20, `the bar is drawn (${barPixels} pixels of its colour)`);

  // The CSV download link names the same series.
  const href = await root.getAttribute('#usage-csv', 'href');
  assert.match(href ?? '', /^\/api\/v1\/admin\/usage\/series\?bucket=day&format=csv$/);
  const csv = await root.evaluate(async u => (await fetch(u)).text(), href ?? '');
  assert.match(csv, /^start_unix,start_utc,meetings,participant_minutes,peak_participants\r\n/);
  assert.match(csv, /,1,1,2\r\n/);

  // The audit filters: only the meeting's end.
  await root.fill('#audit-action', 'meeting.end');
  await root.click('#audit-filter button[type=submit]');
  await root.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#audit-table tbody tr')];
    return rows.length === 1 && rows[0].textContent?.includes('meeting.end');
  }, null, { timeout: TIMEOUT_MS });

  assert.deepEqual(errors, [], 'no page errors');
  await Promise.all(browser.contexts().map(c => c.close()));
});

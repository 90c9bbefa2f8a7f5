// Three headless Chromium participants meet through the real server: each must decode the
// others' video and audio, see a screen share, get chat, and see a leaver's tile go.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { firstFrameAt as firstFrameOf, inbound, waitForMedia as waitForMediaOf } from './lib/media.mjs';
import { REPO_ROOT, startServer } from './lib/server.mjs';

const MEDIA_TIMEOUT_MS = 30000;
const RESULTS = path.join(REPO_ROOT, 'e2e', 'test-results');

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

const serverLog = () => `--- server log ---\n${server.log().slice(-4000)}`;

/**
 * Polls until the page decodes `videos` remote videos and receives `audios` remote audio tracks.
 * @param {import('playwright-core').Page} page
 * @param {string} who
 * @param {{videos: number, audios: number}} want
 */
const waitForMedia = (page, who, want) =>
  waitForMediaOf(page, who, { ...want, timeoutMs: MEDIA_TIMEOUT_MS, context: serverLog });

/**
 * Opens the join URL and measures page open → first remote video frame decoded.
 * @param {string} room
 * @param {string} name
 */
async function join(room, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await context.grantPermissions(['camera', 'microphone', 'clipboard-read', 'clipboard-write']);
  const page = await context.newPage();
  page.on('pageerror', err => console.error(`[${name}] page error:`, err));
  page.on('console', msg => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.error(`[${name}] ${msg.type()}: ${msg.text()}`);
  });
  const opened = Date.now();
  await page.goto(`${server.url}/m/${room}?name=${name}&autojoin=1`);
  return { page, name, opened };
}

/**
 * When the page decoded its first remote video frame (polled every 50 ms).
 * @param {{page: import('playwright-core').Page, name: string, opened: number}} p
 */
const firstFrameAt = p =>
  firstFrameOf(p.page, p.name, { deadline: p.opened + MEDIA_TIMEOUT_MS, context: serverLog });

/** @param {import('playwright-core').Page} page */
function selfId(page) {
  // @ts-ignore the client's test hook
  return page.waitForFunction(() => window.veche?.selfId ?? null).then(h => h.jsonValue());
}

test('three participants see and hear each other, share a screen, chat and leave', { timeout: 180000 }, async () => {
  const room = `e2e-${randomBytes(6).toString('hex')}`;

  // Two people start the meeting; the third joins a call already in progress.
  const p1 = await join(room, 'P1');
  const p2 = await join(room, 'P2');
  const [t1, t2] = await Promise.all([firstFrameAt(p1), firstFrameAt(p2)]);
  const p3 = await join(room, 'P3');
  const t3 = await firstFrameAt(p3);
  const joinTimes = { P1: t1 - p1.opened, P2: t2 - p2.opened, P3: t3 - p3.opened };
  console.log(`join time (page open → first remote frame decoded): P3 joining a running call ${joinTimes.P3} ms; ` +
    `P1 ${joinTimes.P1} ms, P2 ${joinTimes.P2} ms (waiting for each other)`);

  const everyone = [p1, p2, p3];
  for (const p of everyone) await waitForMedia(p.page, p.name, { videos: 2, audios: 2 });

  // Every page shows a tile for each participant.
  const ids = await Promise.all(everyone.map(p => selfId(p.page)));
  for (const p of everyone) {
    for (const id of ids) await p.page.waitForSelector(`[data-participant-id="${id}"]`, { timeout: 10000 });
  }

  // Mute, camera off and a raised hand show on the others' tiles.
  const tileOf = (/** @type {number} */ id) => `[data-participant-id="${id}"]`;
  await p2.page.click('#mic-btn');
  await p2.page.click('#cam-btn');
  await p2.page.click('#hand-btn');
  for (const p of [p1, p3]) {
    await p.page.waitForSelector(`${tileOf(ids[1])} .mic-off:not([hidden])`, { timeout: 10000 });
    await p.page.waitForSelector(`${tileOf(ids[1])}.no-video.hand-raised`, { timeout: 10000 });
  }
  await p2.page.click('#mic-btn');
  await p2.page.click('#cam-btn');
  await p2.page.click('#hand-btn');
  for (const p of [p1, p3]) {
    await p.page.waitForSelector(`${tileOf(ids[1])} .mic-off[hidden]`, { state: 'attached', timeout: 10000 });
    await p.page.waitForSelector(`${tileOf(ids[1])}:not(.no-video):not(.hand-raised)`, { timeout: 10000 });
  }

  // P1 shares its screen (Chromium's fake capture): the others decode a third video.
  await p1.page.click('#screen-btn');
  await p1.page.waitForSelector('#screen-btn.active', { timeout: 10000 });
  for (const p of [p2, p3]) {
    await waitForMedia(p.page, `${p.name} (screen)`, { videos: 3, audios: 2 });
    await p.page.waitForSelector(`[data-screen-of="${ids[0]}"] video[data-kind="screen"]`, { timeout: 10000 });
  }

  // P2 chats; P1 and P3 see it.
  const text = `hello from P2 ${randomBytes(3).toString('hex')}`;
  await p2.page.click('#chat-btn');
  await p2.page.fill('#chat-input', text);
  await p2.page.click('#chat-send');
  for (const p of everyone) {
    await p.page.waitForFunction(t => document.querySelector('#chat-messages')?.textContent?.includes(t), text, { timeout: 10000 });
  }
  await p1.page.waitForSelector('#chat-btn .unread:not([hidden])', { timeout: 5000 });

  mkdirSync(RESULTS, { recursive: true });
  await p2.page.screenshot({ path: path.join(RESULTS, 'meeting-p2.png') });
  await p1.page.screenshot({ path: path.join(RESULTS, 'meeting-p1.png') });

  // P1 stops sharing: the screen tile goes away for the others.
  await p1.page.click('#screen-btn');
  for (const p of [p2, p3]) {
    await p.page.waitForSelector(`[data-screen-of="${ids[0]}"]`, { state: 'detached', timeout: 10000 });
  }

  // The invite link is copied to the clipboard.
  await p1.page.click('#invite-btn');
  await p1.page.waitForFunction(async want => (await navigator.clipboard.readText()) === want,
    `${server.url}/m/${room}`, { timeout: 5000, polling: 200 });

  // P3 leaves: the others drop its tile, and P3 sees the "you left" screen.
  await p3.page.click('#leave-btn');
  await p3.page.waitForSelector('#left-screen', { timeout: 5000 });
  for (const p of [p1, p2]) {
    await p.page.waitForFunction(id => !document.querySelector(`[data-participant-id="${id}"]`), ids[2], { timeout: 10000 });
  }
  // The two who stayed keep receiving each other.
  const before = await inbound(p1.page);
  await p1.page.waitForTimeout(1500);
  const later = await inbound(p1.page);
  assert.ok(before && later);
  const decoded = (/** @type {typeof before} */ s) => s.video.reduce((n, v) => n + v.framesDecoded, 0);
  assert.ok(decoded(later) > decoded(before), 'P1 still decodes video after P3 left');
});

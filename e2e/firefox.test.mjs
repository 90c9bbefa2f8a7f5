// One Firefox ESR and two Chromium participants in one meeting: each decodes everyone's audio
// and video; the Firefox participant hosts the meeting, shares its screen, chats and mutes a
// Chromium participant. Firefox ignores loopback for ICE, so the server listens on a test
// host's veth address (lib/netns.mjs); the browsers run in the root namespace.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { openMeeting } from './lib/call.mjs';
import { launchFirefox } from './lib/firefox.mjs';
import { firstFrameAt, waitForMedia } from './lib/media.mjs';
import { createHost } from './lib/netns.mjs';
import { startServer } from './lib/server.mjs';

const UI_TIMEOUT_MS = 10000;

/** @type {import('./lib/netns.mjs').Host} */
let host;
/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
/** @type {Awaited<ReturnType<typeof launchFirefox>>} */
let firefox;

before(async () => {
  host = await createHost();
  server = await startServer({ host: host.serverAddr });
  chromium = await launch();
  firefox = await launchFirefox();
});

after(async () => {
  await firefox?.close();
  await chromium?.close();
  await server?.stop();
  await host?.destroy();
});

const serverLog = () => `--- server log ---\n${server.log().slice(-4000)}`;

/**
 * @param {string} room
 * @param {string} name
 */
const joinChromium = async (room, name) => (await openMeeting(chromium, server.url, room, name)).page;

/** @param {{evaluate: Function}} page */
function selfId(page) {
  // @ts-ignore the client's test hook
  return page.evaluate(() => window.veche?.selfId ?? null);
}

test('one Firefox and two Chromium participants: media both ways, Firefox screen share, chat, host mute', { timeout: 180000 }, async () => {
  const room = `ff-${randomBytes(4).toString('hex')}`;
  // The first to join hosts the meeting: Firefox.
  const ff = await firefox.browser.newPage();
  ff.on('pageerror', err => console.error('[Firefox] page error:', err));
  const opened = Date.now();
  await ff.goto(`${server.url}/m/${room}?name=Firefox&autojoin=1`);
  await ff.waitForFunction(() => /** @type {any} */ (window).veche?.selfId != null);
  const c1 = await joinChromium(room, 'Chrome1');
  const c2 = await joinChromium(room, 'Chrome2');
  const ffFirstFrame = await firstFrameAt(ff, 'Firefox', { deadline: opened + 30000, context: serverLog });
  console.log(`Firefox: page open → first remote frame ${ffFirstFrame - opened} ms`);

  const pages = [['Chrome1', c1], ['Chrome2', c2], ['Firefox', ff]];
  for (const [name, page] of pages) {
    await waitForMedia(/** @type {any} */ (page), /** @type {string} */ (name), { videos: 2, audios: 2, context: serverLog });
  }

  // Firefox shares its screen (its Xvfb display): both Chromium participants decode a third
  // video and show it as a screen tile.
  const ffId = await selfId(ff);
  assert.ok(ffId, 'Firefox joined');
  await ff.click('#screen-btn');
  await ff.waitForSelector('#screen-btn.active', { timeout: UI_TIMEOUT_MS });
  for (const [name, page] of [['Chrome1', c1], ['Chrome2', c2]]) {
    const p = /** @type {import('playwright-core').Page} */ (page);
    await waitForMedia(p, `${name} (Firefox's screen)`, { videos: 3, audios: 2, context: serverLog });
    await p.waitForSelector(`[data-screen-of="${ffId}"] video[data-kind="screen"]`, { timeout: UI_TIMEOUT_MS });
  }
  await ff.click('#screen-btn');
  await c1.waitForSelector(`[data-screen-of="${ffId}"]`, { state: 'detached', timeout: UI_TIMEOUT_MS });

  // Chat from Firefox reaches the others.
  const text = `hello from Firefox ${randomBytes(3).toString('hex')}`;
  await ff.click('#chat-btn');
  await ff.type('#chat-input', text);
  await ff.click('#chat-send');
  for (const page of [c1, c2]) {
    await page.waitForFunction(t => document.querySelector('#chat-messages')?.textContent?.includes(t), text,
      { timeout: UI_TIMEOUT_MS });
  }

  // Firefox, the host, mutes Chrome2's microphone from its participant list.
  const c2Id = await selfId(c2);
  await ff.click('#participants-btn');
  await ff.waitForSelector(`#participant-list [data-member-id="${c2Id}"] [data-action="mute-audio"]`, { timeout: UI_TIMEOUT_MS });
  await ff.click(`#participant-list [data-member-id="${c2Id}"] [data-action="mute-audio"]`);
  await c2.waitForSelector('#mic-btn.off', { timeout: UI_TIMEOUT_MS });

  // Firefox still receives both others.
  await waitForMedia(ff, 'Firefox (after the mute)', { videos: 2, audios: 2, context: serverLog });
  await ff.close();
  for (const page of [c1, c2]) await page.context().close();
});

// A running meeting survives `kill -9` of the server. A host, a co-host appointed in the
// meeting and a guest are in a meeting; the co-host locks it and the host mutes the guest.
// The server is killed with SIGKILL and started again on the same ports and data directory.
// All three browsers come back by themselves (accounts by their session cookie, the guest by
// the resume token its tab kept) into the same meeting: the same roles, the lock, the guest
// still muted and unable to unmute — and decoding each other's video again. The gap from the
// kill to the first remote frame decoded again is printed. A raised hand and the chat of
// before the crash are still there afterwards. Nothing waits for a write-behind: the server
// announces a change only once it is stored, so the kill comes the moment the last
// announcement is seen.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';

const UI_TIMEOUT_MS = 10000;
const MEDIA_TIMEOUT_MS = 30000;

/** @type {Awaited<ReturnType<typeof startServer>> | null} */
let server = null;
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

/** @typedef {import('playwright-core').Page} Page */

/** @param {string} who */
async function newContext(who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['camera', 'microphone']);
  context.on('page', page => page.on('pageerror', err => console.error(`[${who}] ${err}`)));
  return context;
}

/**
 * A JSON API call from a browser context (its cookies are the account's session).
 * @param {import('playwright-core').BrowserContext} context
 * @param {string} path
 * @param {object} data
 * @param {string} [token]
 */
async function post(context, path, data, token) {
  if (!server) throw new Error('no server');
  const res = await context.request.post(`${server.url}/api/v1${path}`, {
    data, headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  assert.ok(res.ok(), `POST ${path}: ${res.status()} ${await res.text()}`);
  return res.json();
}

/**
 * Waits until the page decodes video from `from` on a peer connection other than `old`.
 * @param {Page} page
 * @param {number} from
 * @param {unknown} [old]
 */
function waitForVideoFrom(page, from, old = null) {
  return page.waitForFunction(async ([from, useOld]) => {
    // @ts-ignore the client's test hook
    const veche = window.veche;
    const pc = veche?.pc;
    // @ts-ignore set by the test before the kill
    if (!pc || (useOld && pc === window.oldPc)) return false;
    const mids = new Map(veche.remoteMids().map((/** @type {any} */ m) => [m.mid, m.participantId]));
    let decoded = false;
    (await pc.getStats()).forEach((/** @type {any} */ s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0 && mids.get(s.mid) === from) decoded = true;
    });
    return decoded;
  }, [from, old !== null], { timeout: MEDIA_TIMEOUT_MS, polling: 100 });
}

/** @param {Page} page */
async function selfId(page) {
  // @ts-ignore the client's test hook
  const handle = await page.waitForFunction(() => window.veche?.selfId ?? null, null, { timeout: UI_TIMEOUT_MS });
  return /** @type {number} */ (await handle.jsonValue());
}

/**
 * The page's role, the meeting's lock and its own host mutes, as its session has them.
 * @param {Page} page
 */
function state(page) {
  return page.evaluate(() => {
    // @ts-ignore the client's test hook
    const v = window.veche;
    return { role: v.role, locked: v.meeting.locked, hostMuted: [...v.session.hostMuted] };
  });
}

/**
 * Opens a participant's "More" menu in the host's panel and picks an item.
 * @param {Page} host
 * @param {number} id
 * @param {string} action
 */
async function menuAction(host, id, action) {
  const row = host.locator(`#participant-list [data-member-id="${id}"]`);
  await row.locator('summary[data-action="more"]').click();
  await row.locator(`[data-action="${action}"]`).click();
}

test('host, co-host and a host-muted guest come back to the locked meeting after kill -9', { timeout: 150000 }, async () => {
  if (!server) throw new Error('no server');
  // ---- accounts and the meeting, over the API from the browsers' own contexts ----
  const hostContext = await newContext('host');
  const signup = await post(hostContext, '/auth/signup', { email: 'hana@live.example', password: 'hana password', name: 'Hana' });
  await post(hostContext, `/orgs/${signup.org.id}/members`,
    { email: 'cora@live.example', name: 'Cora', password: 'cora password' }, signup.token);
  const meeting = await post(hostContext, '/meetings', { title: 'Standup' }, signup.token);
  const coraContext = await newContext('co-host');
  await post(coraContext, '/auth/login', { email: 'cora@live.example', password: 'cora password' });
  const guestContext = await newContext('guest');

  const host = await hostContext.newPage();
  await host.goto(`${server.url}/m/${meeting.id}?name=Hana&autojoin=1`);
  const hostId = await selfId(host);
  const cora = await coraContext.newPage();
  await cora.goto(`${server.url}/m/${meeting.id}?name=Cora&autojoin=1`);
  const coraId = await selfId(cora);
  const guest = await guestContext.newPage();
  await guest.goto(`${server.url}/m/${meeting.id}?name=Gus&autojoin=1`);
  const guestId = await selfId(guest);
  const pages = /** @type {const} */ ([[host, hostId], [cora, coraId], [guest, guestId]]);
  for (const [page, id] of pages) {
    for (const [, other] of pages) if (other !== id) await waitForVideoFrom(page, other);
  }

  // ---- the host makes Cora co-host and mutes the guest; Cora locks the meeting ----
  await host.click('#participants-btn');
  await menuAction(host, coraId, 'make-cohost');
  await cora.waitForFunction(() => /** @type {any} */ (window).veche.role === 'co_host', null, { timeout: UI_TIMEOUT_MS });
  await host.locator(`#participant-list [data-member-id="${guestId}"] [data-action="mute-audio"]`).click();
  await guest.waitForFunction(() => /** @type {any} */ (window).veche.session.hostMuted.has('audio'), null, { timeout: UI_TIMEOUT_MS });
  await cora.click('#participants-btn');
  await cora.click('#allow-unmute-toggle');
  await cora.click('#lock-btn');
  for (const [page] of pages) {
    await page.waitForFunction(() => {
      // @ts-ignore the client's test hook
      const m = window.veche.meeting;
      return m.locked && !m.allow_self_unmute;
    }, null, { timeout: UI_TIMEOUT_MS });
  }
  // Cora says something (the chat stays in each page) and the guest raises a hand (the
  // server keeps it: the host is told only once it is stored).
  const line = 'before the crash';
  await cora.click('#chat-btn');
  await cora.fill('#chat-input', line);
  await cora.click('#chat-send');
  await host.waitForFunction(t => document.querySelector('#chat-messages')?.textContent?.includes(t), line, { timeout: UI_TIMEOUT_MS });
  await guest.click('#hand-btn');
  await host.waitForSelector('.tile.hand-raised', { timeout: UI_TIMEOUT_MS });

  // ---- kill -9, and the server again on the same ports and data directory ----
  // @ts-ignore test-only global
  for (const [page] of pages) await page.evaluate(() => { window.oldPc = window.veche.pc; });
  const { httpPort, mediaPort, dataDir } = server;
  const killedAt = Date.now();
  await server.kill9();
  server = await startServer({ httpPort, mediaPort, dataDir });
  const healthyMs = Date.now() - killedAt;

  // Everyone is back by themselves: new participant ids, the same people.
  /** @type {number[]} */
  const gaps = [];
  const ids = await Promise.all(pages.map(async ([page]) => {
    // @ts-ignore the client's test hook
    await page.waitForFunction(() => window.veche?.pc && window.veche.pc !== window.oldPc && window.veche.selfId !== null,
      null, { timeout: MEDIA_TIMEOUT_MS });
    return selfId(page);
  }));
  await Promise.all(pages.map(async ([page], i) => {
    for (const other of ids) if (other !== ids[i]) await waitForVideoFrom(page, other, true);
    gaps.push(Date.now() - killedAt);
  }));
  const hostState = await state(host);
  const coraState = await state(cora);
  const guestState = await state(guest);
  assert.deepEqual(hostState, { role: 'host', locked: true, hostMuted: [] });
  assert.deepEqual(coraState, { role: 'co_host', locked: true, hostMuted: [] });
  assert.deepEqual(guestState, { role: 'guest', locked: true, hostMuted: ['audio'] });
  // The guest's mic stays off, and the meeting still forbids unmuting.
  // @ts-ignore the client's test hook
  assert.equal(await guest.evaluate(() => window.veche.session.mayUnmute('audio')), false);
  await host.waitForSelector('#locked-indicator:not([hidden])', { timeout: UI_TIMEOUT_MS });
  // The guest's hand is still up, as everyone sees it (under its new participant id), and
  // the chat of before is still there.
  for (const page of [host, cora]) {
    await page.waitForFunction(id => {
      // @ts-ignore the client's test hook
      const p = window.veche.session.participants.get(id);
      return p?.hand_raised === true;
    }, ids[2], { timeout: UI_TIMEOUT_MS });
  }
  assert.ok(await host.evaluate(t => document.querySelector('#chat-messages')?.textContent?.includes(t), line),
    'the chat of before the crash is still on the host\'s page');
  console.log(`  kill -9 → server healthy: ${healthyMs} ms`);
  console.log(`  kill -9 → each browser decodes every other's video again: ${gaps.sort((a, b) => a - b).join(', ')} ms`);

  // A newcomer meets the lock.
  const strangerContext = await newContext('stranger');
  const stranger = await strangerContext.newPage();
  await stranger.goto(`${server.url}/m/${meeting.id}?name=Zed&autojoin=1`);
  await stranger.waitForFunction(() => document.body.textContent?.includes('locked'), null, { timeout: UI_TIMEOUT_MS });
  // @ts-ignore the client's test hook
  assert.equal(await stranger.evaluate(() => window.veche?.selfId ?? null), null);
});

// Host controls in real browsers against the real server.
//
// 1. A host signs up and schedules a meeting with a passcode and the waiting room; a guest
//    follows the shared link (which carries the passcode), waits, is admitted, and the two
//    decode each other's video. The host mutes the guest (the guest's UI shows it, the host
//    sees the mic off, and the server drops the guest's audio although the guest's browser
//    keeps sending), asks them to unmute, mutes everyone without self-unmute (the guest's mic
//    button is locked), allows it again, then removes them. A second guest without the
//    passcode is asked for it in the meeting page and then denied; the first guest comes back
//    and the host ends the meeting for everyone. The audit log and usage show it all.
// 2. Join-before-host off: an early guest waits for the host. A co-host's powers, the lock,
//    the host leaving (the co-host takes over) and a barred guest who cannot come back.
// 3. A plan's time limit (with a 400 ms "minute"): the warning banner, then the ended screen.
//
// Timings are printed as they are measured.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { REPO_ROOT, startServer } from './lib/server.mjs';

const MEDIA_TIMEOUT_MS = 30000;
const UI_TIMEOUT_MS = 10000;
const RESULTS = path.join(REPO_ROOT, 'e2e', 'test-results');
const PASSCODE = '4321';

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

/** @typedef {import('playwright-core').Page} Page */

/** Page errors of every page, checked at the end. @type {string[]} */
const pageErrors = [];

/**
 * A fresh browser context (own cookies: the host's session is not the guest's).
 * @param {string} who
 */
async function newPage(who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.on('pageerror', err => pageErrors.push(`[${who}] ${err}`));
  page.on('console', msg => {
    if (msg.type() === 'error') console.error(`[${who}] console error: ${msg.text()}`);
  });
  return page;
}

/** Timings, printed as they come and together at the end. @type {Record<string, number>} */
const timings = {};
/**
 * @param {string} what
 * @param {number} since
 */
function took(what, since) {
  timings[what] = Date.now() - since;
  console.log(`  ${what}: ${timings[what]} ms`);
}

/**
 * The server log's tail, for failure messages.
 */
function serverLog() {
  return `\n--- server log ---\n${server.log().slice(-4000)}`;
}

/**
 * Inbound RTP counters of a page's peer connection, with the owner of each mid.
 * @param {Page} page
 * @returns {Promise<{mid: string, ssrc: number, kind: string, owner: number | null, framesDecoded: number, packetsReceived: number}[]>}
 */
function inbound(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const veche = window.veche;
    /** @type {RTCPeerConnection | null} */
    const pc = veche?.pc ?? null;
    if (!pc) return [];
    /** @type {Map<string, number>} */
    const owners = new Map(veche.remoteMids().map((/** @type {{mid: string, participantId: number}} */ m) => [m.mid, m.participantId]));
    const report = await pc.getStats();
    /** @type {{mid: string, ssrc: number, kind: string, owner: number | null, framesDecoded: number, packetsReceived: number}[]} */
    const rows = [];
    // One row per receiver, as in lib/media.mjs: the busier of its entries (str0m's probes
    // travel on their own SSRC under a media m-line's mid).
    /** @type {Map<string, any>} */
    const byMid = new Map();
    report.forEach(s => {
      if (s.type !== 'inbound-rtp') return;
      if ((byMid.get(s.mid)?.packetsReceived ?? -1) < (s.packetsReceived ?? 0)) byMid.set(s.mid, s);
    });
    byMid.forEach(s => {
      rows.push({
        mid: s.mid, ssrc: s.ssrc, kind: s.kind, owner: owners.get(s.mid) ?? null,
        framesDecoded: s.framesDecoded ?? 0, packetsReceived: s.packetsReceived ?? 0,
      });
    });
    return rows;
  });
}

/**
 * Polls until `page` decodes video from `from` (and receives its audio).
 * @param {Page} page
 * @param {string} who
 * @param {number} from participant id
 */
async function waitForMediaFrom(page, who, from) {
  const deadline = Date.now() + MEDIA_TIMEOUT_MS;
  let last = null;
  while (Date.now() < deadline) {
    last = await inbound(page);
    const video = last.some(s => s.owner === from && s.kind === 'video' && s.framesDecoded > 0);
    const audio = last.some(s => s.owner === from && s.kind === 'audio' && s.packetsReceived > 0);
    if (video && audio) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`${who}: no decoded video and audio from participant ${from} within ${MEDIA_TIMEOUT_MS / 1000} s, ` +
    `last stats: ${JSON.stringify(last)}${serverLog()}`);
}

/**
 * Packets received so far on the audio track that `from` publishes to `page`.
 * @param {Page} page
 * @param {number} from
 */
async function audioPackets(page, from) {
  const rows = await inbound(page);
  const row = rows.find(s => s.owner === from && s.kind === 'audio');
  if (!row) throw new Error(`no audio track from ${from}: ${JSON.stringify(rows)}`);
  return row.packetsReceived;
}

/**
 * Polls until the audio from `from` has not grown for `quietMs`; returns when it last grew
 * (so the caller can tell how long forwarding went on).
 * @param {Page} page
 * @param {number} from
 * @param {number} quietMs
 */
async function waitForAudioToStop(page, from, quietMs) {
  const deadline = Date.now() + 15000;
  let count = await audioPackets(page, from);
  let changedAt = Date.now();
  while (Date.now() < deadline) {
    await page.waitForTimeout(100);
    const now = await audioPackets(page, from);
    if (now !== count) {
      count = now;
      changedAt = Date.now();
    } else if (Date.now() - changedAt >= quietMs) {
      return { lastGrewAt: changedAt, packets: count };
    }
  }
  throw new Error(`audio from ${from} kept arriving (${count} packets) 15 s after the mute${serverLog()}`);
}

/**
 * Audio packets the page has sent on its microphone slot so far.
 * @param {Page} page
 * @returns {Promise<number>}
 */
function sentAudioPackets(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const pc = /** @type {RTCPeerConnection | null} */ (window.veche?.pc ?? null);
    if (!pc) return 0;
    let sent = 0;
    (await pc.getStats()).forEach(s => {
      if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent ?? 0;
    });
    return sent;
  });
}

/**
 * Polls until the audio from `from` grows again.
 * @param {Page} page
 * @param {number} from
 */
async function waitForAudioToFlow(page, from) {
  const start = await audioPackets(page, from);
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    await page.waitForTimeout(100);
    const now = await audioPackets(page, from);
    if (now > start + 5) return now;
  }
  throw new Error(`audio from ${from} did not flow (stuck at ${start} packets), ` +
    `inbound: ${JSON.stringify(await inbound(page))}${serverLog()}`);
}

/**
 * @param {Page} page
 * @returns {Promise<number>}
 */
async function selfId(page) {
  // @ts-ignore the client's test hook
  const handle = await page.waitForFunction(() => window.veche?.selfId ?? null, null, { timeout: UI_TIMEOUT_MS });
  return /** @type {number} */ (await handle.jsonValue());
}

/**
 * Waits until a toast containing `text` shows.
 * @param {Page} page
 * @param {string} text
 */
function waitForToast(page, text) {
  return page.waitForFunction(t => [...document.querySelectorAll('#toasts .toast')].some(e => e.textContent?.includes(t)),
    text, { timeout: UI_TIMEOUT_MS, polling: 50 });
}

/**
 * Follows a join link to the pre-join screen, then clicks Join now.
 * @param {Page} page
 * @param {string} link
 * @param {string} name
 * @returns {Promise<number>} when Join was clicked
 */
async function joinThroughLink(page, link, name) {
  await page.goto(link);
  await page.fill('#join-name', name);
  await page.click('#meeting-join-form button[type=submit]');
  await page.waitForURL(/\/m\/[a-z2-9]+\?/);
  await page.waitForSelector('#join-btn:not([disabled])', { timeout: UI_TIMEOUT_MS });
  const clicked = Date.now();
  await page.click('#join-btn');
  return clicked;
}

/**
 * The host admits (or denies) the one waiting as `name` from the participants panel.
 * @param {Page} host
 * @param {string} name
 * @param {'admit' | 'deny'} action
 */
async function decide(host, name, action) {
  const row = host.locator('#waiting-list li[data-waiting-id]', { hasText: name });
  await row.waitFor({ timeout: UI_TIMEOUT_MS });
  await row.locator(`button[data-action="${action}"]`).click();
  const clicked = Date.now();
  await row.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS });
  return clicked;
}

/**
 * Opens the "More" menu of a participant in the host's panel and picks an item.
 * @param {Page} host
 * @param {number} id
 * @param {string} action
 */
async function menuAction(host, id, action) {
  const row = host.locator(`#participant-list [data-member-id="${id}"]`);
  await row.locator('summary[data-action="more"]').click();
  await row.locator(`[data-action="${action}"]`).click();
}

test('waiting room, admit, mute, ask to unmute, mute all, remove, passcode, deny, end for all', { timeout: 240000 }, async () => {
  // ---- the host signs up and schedules a meeting with a passcode and a waiting room ----
  const host = await newPage('host');
  await host.goto(`${server.url}/signup`);
  await host.fill('#signup-name', 'Hana');
  await host.fill('#signup-email', 'hana@example.org');
  await host.fill('#signup-password', 'hana password');
  await host.click('#signup-form button[type=submit]');
  await host.waitForURL(/\/meetings$/);
  await host.fill('#meeting-title', 'Design review');
  await host.fill('#meeting-passcode', PASSCODE);
  await host.check('#meeting-waiting');
  await host.click('#schedule-btn');
  const meetingRow = host.locator('#meeting-list .meeting-row', { hasText: 'Design review' });
  await meetingRow.waitFor();
  const id = await meetingRow.getAttribute('data-id');
  assert.match(id ?? '', /^[a-z2-9]{20}$/);
  assert.match(await meetingRow.textContent() ?? '', /passcode · waiting room/);
  const link = `${server.url}/j/${id}?pwd=${PASSCODE}`; // what "Copy link" shares

  // The host opens the meeting from the list: no passcode asked, no waiting room.
  await meetingRow.locator(`a[href="/j/${id}"]`).click();
  await host.fill('#join-name', 'Hana');
  await host.click('#meeting-join-form button[type=submit]');
  await host.waitForSelector('#join-btn:not([disabled])', { timeout: UI_TIMEOUT_MS });
  await host.click('#join-btn');
  const hostId = await selfId(host);
  // @ts-ignore the client's test hook
  assert.equal(await host.evaluate(() => window.veche.role), 'host');
  await host.waitForSelector('.tile.self[data-role="host"] .role-badge:has-text("Host")');
  await host.waitForSelector('#room-name:has-text("Design review")');

  // ---- a guest follows the link and waits ----
  const guest = await newPage('guest');
  const guestClicked = await joinThroughLink(guest, link, 'Gus');
  await guest.waitForSelector('#waiting-screen:has-text("Waiting for the host to let you in")', { timeout: UI_TIMEOUT_MS });
  took('guest: Join clicked → waiting screen', guestClicked);
  assert.equal(await guest.textContent('#waiting-meeting-title'), 'Design review');
  assert.equal(await guest.locator('#leave-btn').count(), 0, 'the meeting is not shown while waiting');

  // The host is told, and admits from the participants panel.
  await host.waitForSelector('#waiting-badge:not([hidden]):has-text("1")', { timeout: UI_TIMEOUT_MS });
  await waitForToast(host, 'Gus is waiting to join');
  await host.click('#participants-btn');
  await host.waitForSelector('#participants-panel:not([hidden])');
  const admitted = await decide(host, 'Gus', 'admit');
  const guestId = await selfId(guest);
  took('host: Admit clicked → guest joined', admitted);
  await guest.waitForSelector('#leave-btn');
  assert.equal(await guest.locator('#waiting-screen').count(), 0);
  await host.waitForSelector('#waiting-badge', { state: 'hidden' });

  // Both decode each other's video.
  await Promise.all([waitForMediaFrom(host, 'host', guestId), waitForMediaFrom(guest, 'guest', hostId)]);
  took('host: Admit clicked → both decode each other\'s video', admitted);

  // Roles show on tiles and in the panel.
  await guest.waitForSelector(`[data-participant-id="${hostId}"][data-role="host"] .role-badge:has-text("Host")`);
  await host.waitForSelector(`#participant-list [data-member-id="${guestId}"][data-role="guest"]:has-text("Gus")`);
  await host.waitForSelector(`#participant-list [data-member-id="${hostId}"][data-role="host"]:has-text("Hana (you)")`);
  await guest.click('#participants-btn');
  await guest.waitForSelector(`#participant-list [data-member-id="${hostId}"] .role-badge:has-text("Host")`);
  assert.equal(await guest.locator('#host-tools').isVisible(), false, 'a guest has no host controls');
  assert.equal(await guest.locator('#participant-list [data-action]').count(), 0, 'nor per-person actions');
  await guest.click('#participants-btn');

  // ---- the host mutes the guest's microphone ----
  await host.waitForSelector(`#participant-list [data-member-id="${guestId}"][data-audio="on"]`, { timeout: UI_TIMEOUT_MS });
  await waitForAudioToFlow(host, guestId);
  await host.click(`#participant-list [data-member-id="${guestId}"] [data-action="mute-audio"]`);
  const muted = Date.now();
  await Promise.all([
    guest.waitForSelector('#mic-btn.off', { timeout: UI_TIMEOUT_MS }).then(() => took('mute → guest\'s mic button off', muted)),
    waitForToast(guest, 'The host muted you').then(() => took('mute → guest told "The host muted you"', muted)),
    host.waitForSelector(`[data-participant-id="${guestId}"] .mic-off:not([hidden])`, { timeout: UI_TIMEOUT_MS })
      .then(() => took('mute → host sees the guest\'s mic off (tile)', muted)),
    host.waitForSelector(`#participant-list [data-member-id="${guestId}"][data-audio="off"]`, { timeout: UI_TIMEOUT_MS }),
  ]);
  // @ts-ignore the client's test hook
  assert.equal(await guest.evaluate(() => window.veche.session.media.micMuted), true, 'the guest\'s own track is off');
  const sentBefore = await sentAudioPackets(guest);
  const stopped = await waitForAudioToStop(host, guestId, 2000);
  // The guest's browser still sends (silence from the disabled track): the server drops it.
  const sentAfter = await sentAudioPackets(guest);
  console.log(`  while host-muted, the guest sent ${sentAfter - sentBefore} audio packets and the host received none for 2 s`);
  timings['mute → last guest audio packet at the host'] = Math.max(0, stopped.lastGrewAt - muted);
  console.log(`  mute → last guest audio packet at the host: ≤ ${timings['mute → last guest audio packet at the host']} ms ` +
    `(then none for 2 s; ${stopped.packets} packets in all)`);

  // ---- the host asks the guest to unmute; the guest accepts ----
  await host.click(`#participant-list [data-member-id="${guestId}"] [data-action="ask-unmute"]`);
  const asked = Date.now();
  await guest.waitForSelector('#unmute-prompt:not([hidden]):has-text("The host asks you to unmute")', { timeout: UI_TIMEOUT_MS });
  took('ask to unmute → guest prompted', asked);
  await guest.click('#unmute-accept');
  await guest.waitForSelector('#mic-btn:not(.off)');
  await host.waitForSelector(`#participant-list [data-member-id="${guestId}"][data-audio="on"]`, { timeout: UI_TIMEOUT_MS });
  await waitForAudioToFlow(host, guestId);
  took('ask to unmute → guest\'s audio reaches the host again', asked);

  // ---- mute all, without self-unmute: the guest's mic button is locked ----
  await host.click('#mute-all-btn');
  await host.waitForSelector('#mute-all-dialog[open]');
  await host.uncheck('#mute-all-allow');
  await host.click('#mute-all-confirm');
  const mutedAll = Date.now();
  await guest.waitForSelector('#mic-btn.off[data-locked="true"]', { timeout: UI_TIMEOUT_MS });
  took('mute all → guest\'s mic button off and locked', mutedAll);
  await host.waitForSelector('#allow-unmute-toggle:not(:checked)', { timeout: UI_TIMEOUT_MS });
  assert.equal(await host.locator('#mic-btn.off').count(), 0, 'the host\'s own microphone stays on');
  await guest.click('#mic-btn');
  await waitForToast(guest, 'You can unmute when the host asks you to');
  assert.equal(await guest.locator('#mic-btn.off').count(), 1, 'still muted');
  await waitForAudioToStop(host, guestId, 1000);
  // Self-unmute allowed again: the lock goes, and the guest unmutes by themselves.
  await host.check('#allow-unmute-toggle');
  await guest.waitForSelector('#mic-btn:not([data-locked])', { timeout: UI_TIMEOUT_MS });
  await guest.click('#mic-btn');
  await host.waitForSelector(`#participant-list [data-member-id="${guestId}"][data-audio="on"]`, { timeout: UI_TIMEOUT_MS });

  mkdirSync(RESULTS, { recursive: true });
  await host.screenshot({ path: path.join(RESULTS, 'host-controls-host.png') });

  // ---- the host removes the guest ----
  await menuAction(host, guestId, 'remove');
  await host.waitForSelector('#remove-dialog[open]');
  assert.equal(await host.isChecked('#remove-bar'), false);
  await host.click('#remove-confirm');
  const removed = Date.now();
  await Promise.all([
    guest.waitForSelector('#ended-screen[data-reason="removed"]:has-text("You were removed from the meeting")', { timeout: UI_TIMEOUT_MS })
      .then(() => took('remove → guest sees the removed screen', removed)),
    host.waitForSelector(`[data-participant-id="${guestId}"]`, { state: 'detached', timeout: UI_TIMEOUT_MS })
      .then(() => took('remove → guest\'s tile gone at the host', removed)),
    host.waitForSelector(`#participant-list [data-member-id="${guestId}"]`, { state: 'detached', timeout: UI_TIMEOUT_MS }),
  ]);
  // No reconnect: the removed guest's session is finished and has no socket.
  // @ts-ignore the client's test hook
  assert.deepEqual(await guest.evaluate(() => [window.veche.session.finished, window.veche.session.ws]), [true, null]);

  // ---- a second guest without the passcode: asked for it, then denied ----
  const dee = await newPage('dee');
  await dee.goto(`${server.url}/m/${id}?name=Dee`);
  await dee.waitForSelector('#join-btn:not([disabled])', { timeout: UI_TIMEOUT_MS });
  await dee.click('#join-btn');
  await dee.waitForSelector('#passcode-screen', { timeout: UI_TIMEOUT_MS });
  await dee.fill('#passcode-input', '0000');
  await dee.click('#passcode-submit');
  await dee.waitForSelector('#passcode-screen #passcode-error:not(:empty)', { timeout: UI_TIMEOUT_MS });
  await dee.fill('#passcode-input', PASSCODE);
  await dee.click('#passcode-submit');
  await dee.waitForSelector('#waiting-screen', { timeout: UI_TIMEOUT_MS });
  const denied = await decide(host, 'Dee', 'deny');
  await dee.waitForSelector('#ended-screen[data-reason="denied"]:has-text("The host did not let you in")', { timeout: UI_TIMEOUT_MS });
  took('deny → guest sees "The host did not let you in"', denied);
  // @ts-ignore the client's test hook
  assert.deepEqual(await dee.evaluate(() => [window.veche.session.finished, window.veche.session.ws]), [true, null]);

  // ---- the first guest comes back (not barred), is admitted, and the host ends the meeting ----
  const back = await newPage('guest again');
  await joinThroughLink(back, link, 'Gus');
  await back.waitForSelector('#waiting-screen', { timeout: UI_TIMEOUT_MS });
  await decide(host, 'Gus', 'admit');
  const backId = await selfId(back);
  await waitForMediaFrom(host, 'host', backId);
  await host.click('#leave-btn');
  await host.waitForSelector('#leave-dialog[open]');
  await host.click('#end-all-confirm');
  const ended = Date.now();
  await Promise.all([
    back.waitForSelector('#ended-screen[data-reason="ended_host"]:has-text("The host ended the meeting")', { timeout: UI_TIMEOUT_MS })
      .then(() => took('end for all → guest sees "The host ended the meeting"', ended)),
    host.waitForSelector('#ended-screen[data-reason="ended_host"]:has-text("You ended the meeting for everyone")', { timeout: UI_TIMEOUT_MS })
      .then(() => took('end for all → host sees the ended screen', ended)),
  ]);

  // The host's actions are in the organisation's audit log, and the meeting's usage is recorded.
  const wanted = ['meeting.admit', 'meeting.mute', 'meeting.mute_all', 'meeting.remove', 'meeting.deny', 'meeting.end'];
  const deadline = Date.now() + UI_TIMEOUT_MS;
  let audit = '';
  let usage = '';
  for (;;) {
    await host.goto(`${server.url}/admin`);
    await host.waitForSelector('#audit-table');
    audit = await host.textContent('#audit-table') ?? '';
    const rows = await host.$$eval('#usage-table tr', trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent)));
    usage = JSON.stringify(rows);
    // organisation, meetings, participant-minutes: this meeting is the organisation's one.
    if (wanted.every(a => audit.includes(a)) && rows.some(r => r[0] === 'this organisation' && r[1] === '1')) break;
    if (Date.now() > deadline) assert.fail(`audit log or usage incomplete:\n${audit}\n${usage}`);
    await host.waitForTimeout(250);
  }

  console.log(`host controls timings (ms): ${JSON.stringify(timings)}`);
  assert.deepEqual(pageErrors, [], 'no page errors');
  await Promise.all(browser.contexts().map(c => c.close()));
});

test('join before host off, a co-host, lock, the host leaves and hands over, a barred guest, the owner ends it from my meetings', { timeout: 180000 }, async () => {
  const host = await newPage('owner');
  await host.goto(`${server.url}/signup`);
  await host.fill('#signup-name', 'Olga');
  await host.fill('#signup-email', 'olga@example.org');
  await host.fill('#signup-password', 'olga password');
  await host.click('#signup-form button[type=submit]');
  await host.waitForURL(/\/meetings$/);
  await host.fill('#meeting-title', 'Planning');
  await host.uncheck('#meeting-before-host');
  await host.click('#schedule-btn');
  const meetingRow = host.locator('#meeting-list .meeting-row', { hasText: 'Planning' });
  await meetingRow.waitFor();
  assert.match(await meetingRow.textContent() ?? '', /waits for host/);
  const link = `${server.url}/j/${await meetingRow.getAttribute('data-id')}`;

  // A guest comes early and waits for the host; the host's arrival lets them in.
  const gil = await newPage('gil');
  await joinThroughLink(gil, link, 'Gil');
  await gil.waitForSelector('#waiting-screen[data-reason="host_absent"]:has-text("Waiting for the host to start the meeting")',
    { timeout: UI_TIMEOUT_MS });
  const hostClicked = await joinThroughLink(host, link, 'Olga');
  const hostId = await selfId(host);
  const gilId = await selfId(gil);
  took('host joins → the early guest is let in', hostClicked);
  const pia = await newPage('pia');
  await joinThroughLink(pia, link, 'Pia');
  const piaId = await selfId(pia);
  assert.equal(await pia.locator('#waiting-screen').count(), 0, 'no waiting once the host is in');
  await waitForMediaFrom(pia, 'pia', hostId);

  // The host makes Gil co-host: everyone sees the badge, Gil gets the host tools but not "End".
  await host.click('#participants-btn');
  await menuAction(host, gilId, 'make-cohost');
  const promoted = Date.now();
  await gil.waitForSelector('.tile.self[data-role="co_host"] .role-badge:has-text("Co-host")', { timeout: UI_TIMEOUT_MS });
  took('make co-host → the new co-host sees their badge', promoted);
  await pia.waitForSelector(`[data-participant-id="${gilId}"] .role-badge:has-text("Co-host")`, { timeout: UI_TIMEOUT_MS });
  await gil.click('#participants-btn');
  await gil.waitForSelector('#host-tools:not([hidden])');
  assert.equal(await gil.locator('#end-all-btn').isVisible(), false, 'only the host ends the meeting');
  assert.equal(await gil.locator(`#participant-list [data-member-id="${hostId}"] [data-action]`).count(), 0,
    'a co-host has no controls over the host');

  // The co-host locks the meeting: a newcomer is turned away; unlocked, the lock shows no more.
  await gil.click('#lock-btn');
  await host.waitForSelector('#locked-indicator:not([hidden])', { timeout: UI_TIMEOUT_MS });
  await pia.waitForSelector('#locked-indicator:not([hidden])', { timeout: UI_TIMEOUT_MS });
  const late = await newPage('late');
  await joinThroughLink(late, link, 'Lou');
  await late.waitForSelector('#ended-screen[data-reason="meeting_locked"]:has-text("The meeting is locked")', { timeout: UI_TIMEOUT_MS });
  await gil.click('#lock-btn');
  await host.waitForSelector('#locked-indicator', { state: 'hidden', timeout: UI_TIMEOUT_MS });

  // The host leaves (not ending it): the co-host becomes the host.
  await host.click('#leave-btn');
  await host.waitForSelector('#leave-dialog[open]');
  await host.click('#leave-confirm');
  const left = Date.now();
  await host.waitForSelector('#left-screen');
  // @ts-ignore the client's test hook
  await gil.waitForFunction(() => window.veche.role === 'host', null, { timeout: UI_TIMEOUT_MS });
  took('host leaves → the co-host is the host', left);
  await waitForToast(gil, 'You are now the host');
  await gil.waitForSelector('#end-all-btn:not([hidden])');
  await pia.waitForSelector(`[data-participant-id="${gilId}"][data-role="host"]`, { timeout: UI_TIMEOUT_MS });

  // The new host removes Pia and bars her: she cannot come back.
  await menuAction(gil, piaId, 'remove');
  await gil.waitForSelector('#remove-dialog[open]');
  await gil.check('#remove-bar');
  await gil.click('#remove-confirm');
  await pia.waitForSelector('#ended-screen[data-reason="barred"]:has-text("You were removed from the meeting")', { timeout: UI_TIMEOUT_MS });
  const again = await newPage('pia again');
  await joinThroughLink(again, link, 'Pia');
  await again.waitForSelector('#ended-screen[data-reason="barred"]', { timeout: UI_TIMEOUT_MS });

  // The owner, no longer in it, sees on "my meetings" that it runs and ends it from there
  // (the REST live-meeting API).
  await host.goto(`${server.url}/meetings`);
  const liveRow = host.locator('#meeting-list .meeting-row', { hasText: 'Planning' });
  await liveRow.locator('.live-badge:has-text("Live · 1 in meeting")').waitFor({ timeout: UI_TIMEOUT_MS });
  host.once('dialog', dialog => void dialog.accept());
  await liveRow.locator('.end-live').click();
  const ended = Date.now();
  await gil.waitForSelector('#ended-screen[data-reason="ended_host"]', { timeout: UI_TIMEOUT_MS });
  took('"End for all" on my meetings → the meeting ends', ended);
  await host.reload();
  await host.locator('#meeting-list .meeting-row', { hasText: 'Planning' }).waitFor();
  assert.equal(await host.locator('.live-badge').count(), 0, 'no longer live');
  assert.deepEqual(pageErrors, [], 'no page errors');
  await Promise.all(browser.contexts().map(c => c.close()));
});

test('a plan\'s time limit warns, then ends the meeting for everyone', { timeout: 120000 }, async () => {
  // A "minute" of 400 ms: the free plan's 40 minutes last 16 s, warnings at 14 s and 15.6 s.
  const minuteMs = 400;
  const saved = process.env.VECHE_MEETING_MINUTE_MS;
  process.env.VECHE_MEETING_MINUTE_MS = String(minuteMs);
  let limited;
  try {
    limited = await startServer();
  } finally {
    if (saved === undefined) delete process.env.VECHE_MEETING_MINUTE_MS;
    else process.env.VECHE_MEETING_MINUTE_MS = saved;
  }
  try {
    const host = await newPage('timed host');
    await host.goto(`${limited.url}/signup`);
    await host.fill('#signup-name', 'Tess');
    await host.fill('#signup-email', 'tess@example.org');
    await host.fill('#signup-password', 'tess password');
    await host.click('#signup-form button[type=submit]');
    await host.waitForURL(/\/meetings$/);
    await host.waitForSelector('#plan-card:has-text("40 minutes")');
    await host.fill('#meeting-title', 'Stand-up');
    await host.click('#schedule-btn');
    const row = host.locator('#meeting-list .meeting-row', { hasText: 'Stand-up' });
    await row.waitFor();
    const id = await row.getAttribute('data-id');

    const hostJoined = await joinThroughLink(host, `${limited.url}/j/${id}`, 'Tess');
    const hostId = await selfId(host);
    const guest = await newPage('timed guest');
    await joinThroughLink(guest, `${limited.url}/j/${id}`, 'Gil');
    await waitForMediaFrom(guest, 'timed guest', hostId);
    // @ts-ignore the client's test hook
    const endsAt = await host.evaluate(() => window.veche.meeting.ends_at_ms);
    assert.ok(typeof endsAt === 'number' && endsAt > Date.now(), `ends_at_ms announced: ${endsAt}`);

    for (const page of [host, guest]) {
      await page.waitForSelector('#ending-banner:not([hidden]):has-text("Meeting ends in 5 minutes")', { timeout: 40 * minuteMs + 10000 });
    }
    took('time limit: host joined → "Meeting ends in 5 minutes"', hostJoined);
    await Promise.all([host, guest].map(page =>
      page.waitForSelector('#ended-screen[data-reason="ended_time_limit"]:has-text("The meeting reached its time limit")',
        { timeout: 10 * minuteMs + 10000 })));
    took('time limit: host joined → both see "The meeting reached its time limit"', hostJoined);
    // @ts-ignore the client's test hook
    assert.deepEqual(await guest.evaluate(() => [window.veche.session.finished, window.veche.session.ws]), [true, null]);
    assert.deepEqual(pageErrors, [], 'no page errors');
  } finally {
    await Promise.all(browser.contexts().map(c => c.close()));
    await limited.stop();
  }
});

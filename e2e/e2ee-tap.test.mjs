// What the SFU forwards in an end-to-end encrypted meeting is ciphertext: a synthetic str0m
// participant (veche-tap, crates/veche-load) that claims to encrypt joins a room of two
// Chromium participants and records the RTP payloads it is sent. Every audio payload and every
// single-packet video frame is SFrame: its header parses and names a member's key; it opens
// with that sender's key of the epoch (which the test reads from the sender's page), and not
// with a wrong one, nor with what a member the host removed knew; the VP8 frame inside keeps
// only the codec bytes the SFU reads in the clear.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { decodeHeader, decryptFrame, deriveKey, EPOCH_BITS } from '../web/js/sframe.js';
import { launch } from './lib/browser.mjs';
import { openMeeting } from './lib/call.mjs';
import { until, waitForMedia } from './lib/media.mjs';
import { REPO_ROOT, startServer } from './lib/server.mjs';

const TAP = path.resolve(REPO_ROOT, process.env.VECHE_TAP_BIN ?? 'target/debug/veche-tap');

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

/**
 * Opens the room as NAME with `?e2ee=1`, which makes a new instant room end-to-end encrypted.
 * @param {string} room
 * @param {string} name
 */
const joinEncrypted = async (room, name) => (await openMeeting(browser, server.url, room, name, { e2ee: '1' })).page;

const serverLog = () => `--- server log ---\n${server.log().slice(-4000)}`;

/**
 * The VP8 payload descriptor's length (RFC 7741 section 4.2) and whether it starts a frame.
 * @param {Buffer} p
 */
function vp8Descriptor(p) {
  const x = p[0] & 0x80;
  const start = (p[0] & 0x10) !== 0 && (p[0] & 0x0f) === 0;
  let len = 1;
  if (x) {
    const ext = p[1];
    len = 2;
    if (ext & 0x80) len += p[len] & 0x80 ? 2 : 1;
    if (ext & 0x40) len += 1;
    if (ext & 0x30) len += 1;
  }
  return { len, start };
}

/** @param {import('playwright-core').Page} page */
const status = page => page.evaluate(() => /** @type {any} */ (window).veche?.e2ee?.() ?? null);

/**
 * A member's view of its group: its participant id and leaf, the epoch and its SFrame secret.
 * @param {import('playwright-core').Page} page
 */
const groupSecret = page => page.evaluate(async () => {
  const e = /** @type {any} */ (window).veche.session.e2ee;
  return { id: e.selfId, leaf: e.member.leafOf(String(e.selfId)), epoch: Number(e.member.epoch), secret: [...await e.member.sframeSecret()] };
});

test('the SFU forwards only SFrame ciphertext in an E2EE meeting, which a removed member cannot open', { timeout: 120000 }, async () => {
  const room = `tap-${randomBytes(4).toString('hex')}`;
  const a = await joinEncrypted(room, 'Alice');
  // Alice removes Carol below, which only the host may: she must be in before Bob, or
  // whichever of the two joined first hosts (a removal refused, the epoch never moves).
  await a.waitForFunction(() => /** @type {any} */ (window).veche?.role === 'host', null, { timeout: 30000 });
  const b = await joinEncrypted(room, 'Bob');
  const c = await joinEncrypted(room, 'Carol');
  for (const [name, page] of [['Alice', a], ['Bob', b], ['Carol', c]]) {
    await waitForMedia(/** @type {any} */ (page), name, { videos: 2, audios: 2, timeoutMs: 60000, context: serverLog });
  }
  const three = await until('all three encrypt with one epoch', () => Promise.all([a, b, c].map(status)),
    s => s.every(x => x?.encrypted && x.members === 3) && s.every(x => x.epoch === s[0].epoch), 30000, serverLog);
  // Carol's knowledge when she is removed: the group's secret of that epoch.
  const carol = await groupSecret(c);
  await a.evaluate(id => /** @type {any} */ (window).veche.session.remove(id, false), carol.id);
  await until('Alice and Bob move to a new epoch without Carol', () => Promise.all([a, b].map(status)),
    s => s.every(x => x?.encrypted && x.members === 2 && x.epoch > three[0].epoch) && s[0].epoch === s[1].epoch, 30000, serverLog);

  const wsUrl = server.url.replace(/^http/, 'ws') + '/ws';
  const { stdout } = await promisify(execFile)(TAP, ['--url', wsUrl, '--room', room, '--e2ee', '--seconds', '4', '--packets', '300'],
    { maxBuffer: 64 * 1024 * 1024, timeout: 60000 });
  /** @type {{participant_id: number, tracks: {participant_id: number, kind: string, packets: {marker: boolean, payload: string}[]}[]}} */
  const tapped = JSON.parse(stdout);

  // Each sender's key of the current epoch, from its own page: the test holds the secrets.
  /** @type {Map<number, {leaf: number, epoch: bigint, secret: Uint8Array}>} */
  const senders = new Map();
  for (const page of [a, b]) {
    const k = await groupSecret(page);
    senders.set(k.id, { leaf: k.leaf, epoch: BigInt(k.epoch), secret: Uint8Array.from(k.secret) });
  }
  const wrongSecret = Uint8Array.from(randomBytes(32));
  const carolSecret = Uint8Array.from(carol.secret);

  let audio = 0;
  let video = 0;
  for (const track of tapped.tracks) {
    const sender = senders.get(track.participant_id);
    assert.ok(sender, `a track from a participant of the room: ${track.participant_id}`);
    const key = await deriveKey(/** @type {any} */ (sender.secret), sender.leaf, sender.epoch);
    const wrong = await deriveKey(/** @type {any} */ (wrongSecret), sender.leaf, sender.epoch);
    // What Carol could derive for this sender from the last epoch she had.
    const carols = await deriveKey(/** @type {any} */ (carolSecret), sender.leaf, BigInt(carol.epoch));
    for (const pkt of track.packets) {
      const payload = Buffer.from(pkt.payload, 'hex');
      /** @type {Uint8Array} */
      let frame;
      let clear;
      if (track.kind === 'audio') {
        frame = payload;
        clear = 0;
      } else {
        const d = vp8Descriptor(payload);
        // Only frames that fit one packet can be opened on their own.
        if (!d.start || !pkt.marker) continue;
        frame = payload.subarray(d.len);
        const keyframe = (frame[0] & 1) === 0;
        clear = keyframe ? 10 : 3;
      }
      const header = decodeHeader(/** @type {any} */ (frame.subarray(clear)));
      assert.ok(header, `${track.kind}: an SFrame header after ${clear} clear bytes`);
      assert.equal(Number(header.kid >> BigInt(EPOCH_BITS)), sender.leaf, 'the KID names the sender');
      const opened = await decryptFrame(async () => key, /** @type {any} */ (Uint8Array.from(frame)), clear);
      // A frame of the previous epoch (in flight at the tap's join) would not open; there is none.
      assert.ok(opened, `${track.kind} payload of ${frame.length} bytes opens with its sender's key`);
      assert.equal(await decryptFrame(async () => wrong, /** @type {any} */ (Uint8Array.from(frame)), clear), null,
        'and not with another key');
      assert.equal(await decryptFrame(async () => carols, /** @type {any} */ (Uint8Array.from(frame)), clear), null,
        'nor with the removed member\'s last key');
      if (track.kind === 'audio') audio++;
      else video++;
    }
  }
  console.log(`tap: ${audio} audio payloads and ${video} single-packet video frames, all SFrame ciphertext under the senders' keys`);
  assert.ok(audio >= 50 && video >= 5, `enough media was tapped (audio ${audio}, video ${video})`);
  for (const page of [a, b, c]) await page.context().close();
});

test('trust on first use: a known account that comes back with another key is flagged, the same key is not', { timeout: 120000 }, async () => {
  const room = `tofu-${randomBytes(4).toString('hex')}`;
  const email = `alice-${randomBytes(3).toString('hex')}@example.org`;
  // Alice signs up in her browser context; Bob is a guest.
  const aliceContext = await browser.newContext();
  await aliceContext.grantPermissions(['camera', 'microphone']);
  const alice = await aliceContext.newPage();
  await alice.goto(`${server.url}/`);
  const status = await alice.evaluate(async body => (await fetch('/api/v1/auth/signup', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  })).status, { email, password: 'alice password 1', name: 'Alice' });
  assert.ok(status === 200 || status === 201, `signed up (${status})`);
  const url = `${server.url}/m/${room}?name=Alice&autojoin=1&e2ee=1`;
  await alice.goto(url);
  const bob = await joinEncrypted(room, 'Bob');

  /** @param {import('playwright-core').Page} page */
  const roster = page => page.evaluate(() => /** @type {any} */ (window).veche?.e2ee?.()?.roster ?? []);
  /** @param {any[]} r */
  const aliceIn = r => r.find(m => m.account === email);
  const first = await until('Bob sees Alice\'s account in the group', () => roster(bob), r => Boolean(aliceIn(r)), 30000, serverLog);
  const fp = aliceIn(first).fingerprint;
  assert.equal(aliceIn(first).keyChanged, false);

  // Alice comes back with the same browser: the same key, no warning.
  await alice.reload();
  await until('Alice back with the same key', () => roster(bob),
    r => r.length === 2 && aliceIn(r)?.fingerprint === fp && aliceIn(r)?.keyChanged === false, 30000, serverLog);

  // Alice's key is replaced (another device, or someone else claiming her account): Bob's
  // browser flags it.
  await alice.evaluate(() => localStorage.removeItem('veche.e2ee.signing'));
  await alice.reload();
  const changed = await until('Bob flags Alice\'s new key', () => roster(bob),
    r => r.length === 2 && aliceIn(r)?.fingerprint !== fp && aliceIn(r)?.keyChanged === true, 30000, serverLog);
  assert.notEqual(aliceIn(changed).fingerprint, fp);
  await bob.waitForFunction(() => /not the one this browser saw before/.test(document.querySelector('#toasts')?.textContent ?? ''),
    null, { timeout: 10000 });
  await bob.click('#e2ee-badge');
  await bob.waitForSelector('#e2ee-roster li.key-changed', { timeout: 5000 });
  await aliceContext.close();
  await bob.context().close();
});

test('two members race to renew their keys on one epoch: one wins, the other retries, all converge', { timeout: 120000 }, async () => {
  const room = `race-${randomBytes(4).toString('hex')}`;
  const pages = [await joinEncrypted(room, 'A'), await joinEncrypted(room, 'B'), await joinEncrypted(room, 'C')];
  const settled = () => until('three members on one epoch', () => Promise.all(pages.map(status)),
    s => s.every(x => x?.members === 3 && x.epoch === s[0].epoch && x.code), 60000, serverLog);
  // Each joiner renews its leaf once in (web/js/e2ee.js): the race starts once the epoch
  // has stood still for a while, after those renewals.
  let start = await settled();
  for (let tries = 0; tries < 20; tries++) {
    await new Promise(r => setTimeout(r, 1500));
    const again = await settled();
    if (again[0].epoch === start[0].epoch) break;
    start = again;
  }
  const epoch = start[0].epoch;
  // B and C commit a key update on the same epoch at the same moment.
  await Promise.all([pages[1], pages[2]].map(p => p.evaluate(() => /** @type {any} */ (window).veche.session.e2ee.rotateKeys())));
  const end = await until('both updates applied, one after the other, on every page', () => Promise.all(pages.map(status)),
    s => s.every(x => x?.epoch === epoch + 2 && x.code === s[0].code && x.encrypted), 30000, serverLog);
  assert.notEqual(end[0].code, start[0].code);
  for (const page of pages) await waitForMedia(/** @type {any} */ (page), 'after the race', { videos: 2, audios: 2, context: serverLog });
  for (const page of pages) await page.context().close();
});

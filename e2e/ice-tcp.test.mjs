// ICE-TCP: a Chromium participant on a network that drops all UDP (a namespace with an
// nftables rule) joins a call with two others over the server's TCP passive candidates;
// everyone decodes everyone, and its selected candidate pair is TCP. The same host's join over
// UDP, before the block, is the baseline for the time to connect.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { namespaceCall, openMeeting } from './lib/call.mjs';
import { firstFrameAt, selectedPair, waitForMedia } from './lib/media.mjs';

const MEDIA_TIMEOUT_MS = 30000;

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;
/** @type {import('./lib/netns.mjs').Host} */
let host;
/** @type {import('./lib/call.mjs').NamespaceCall['server']} */
let server;
/** @type {import('playwright-core').Browser} */
let outside;
/** @type {import('playwright-core').Browser} */
let inside;

before(async () => {
  call = await namespaceCall();
  ({ host, server, outside, inside } = call);
});

after(async () => {
  await call?.close();
});

const serverLog = () => call.log();

/**
 * @param {import('playwright-core').Browser} browser
 * @param {string} room
 * @param {string} name
 */
const join = (browser, room, name) => openMeeting(browser, server.url, room, name);

/**
 * Page open → first remote frame decoded, in ms.
 * @param {{page: import('playwright-core').Page, name: string, opened: number}} p
 */
async function timeToFirstFrame(p) {
  const at = await firstFrameAt(p.page, p.name, { deadline: p.opened + MEDIA_TIMEOUT_MS, context: serverLog });
  return at - p.opened;
}

test('a participant whose UDP is blocked joins over ICE-TCP and decodes both others', { timeout: 150000 }, async () => {
  const room = `tcp-${randomBytes(4).toString('hex')}`;
  const p1 = await join(outside, room, 'P1');
  const p2 = await join(outside, room, 'P2');
  await waitForMedia(p1.page, 'P1', { videos: 1, audios: 1, context: serverLog });

  // Baseline: the namespace host joins over UDP.
  const viaUdp = await join(inside, room, 'OverUdp');
  const udpMs = await timeToFirstFrame(viaUdp);
  const udpPair = await selectedPair(viaUdp.page);
  assert.equal(udpPair?.local.protocol, 'udp', JSON.stringify(udpPair));
  await viaUdp.page.context().close();

  await host.blockUdp();
  const p3 = await join(inside, room, 'P3');
  const tcpMs = await timeToFirstFrame(p3);
  await waitForMedia(p3.page, 'P3', { videos: 2, audios: 2, context: serverLog });
  for (const p of [p1, p2]) {
    // Each outside participant decodes the other one and P3 (whose media comes over TCP).
    await waitForMedia(p.page, p.name, { videos: 2, audios: 2, context: serverLog });
  }
  const pair = await selectedPair(p3.page);
  assert.equal(pair?.local.protocol, 'tcp', JSON.stringify(pair));
  assert.equal(pair?.remote.protocol, 'tcp', JSON.stringify(pair));
  assert.equal(pair?.remote.address, host.serverAddr, JSON.stringify(pair));
  assert.equal(pair?.remote.candidateType, 'host', JSON.stringify(pair));
  console.log(`time to first remote frame from the namespace host: UDP ${udpMs} ms, ICE-TCP (UDP blocked) ${tcpMs} ms`);

  // Media keeps flowing over TCP.
  const decoded = async () => (await waitForMedia(p3.page, 'P3', { videos: 2, audios: 2 })).video
    .reduce((n, v) => n + v.framesDecoded, 0);
  const before = await decoded();
  await p3.page.waitForTimeout(2000);
  assert.ok(await decoded() > before + 10, 'P3 keeps decoding over TCP');
  for (const p of [p1, p2, p3]) await p.page.context().close();
});

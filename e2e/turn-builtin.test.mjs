// The built-in TURN server (`--turn-builtin true`), with the credentials Veche mints per
// participant: a relay-only client (`relay=1`, iceTransportPolicy 'relay') and a normal one
// decode each other through its UDP relay; and a Chromium whose network lets through only TCP
// to port 443 (the TURN TLS listener) and the web port of the server's address joins a call
// with two others through TURN over TLS and decodes both.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { builtinTurnArgs, namespaceCall, openMeeting, trustServerKey } from './lib/call.mjs';
import { firstFrameAt, selectedPair, until, waitForMedia } from './lib/media.mjs';

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;

before(async () => {
  call = await namespaceCall(builtinTurnArgs, server => [trustServerKey(server)]);
});

after(async () => {
  await call?.close();
});

const context = () => call.log();

/** @param {import('playwright-core').Page} page */
const iceServers = page => page.evaluate(() => /** @type {any} */ (window).veche?.pc?.getConfiguration().iceServers);

test('a relay-only participant and another decode each other through the built-in TURN', { timeout: 90000 }, async () => {
  const { server, outside } = call;
  const room = `relay-${randomBytes(4).toString('hex')}`;
  const p1 = await openMeeting(outside, server.url, room, 'P1');
  const p2 = await openMeeting(outside, server.url, room, 'P2', { relay: '1' });
  const at = await firstFrameAt(p2.page, 'P2', { deadline: p2.opened + 30000, context });
  console.log(`time to first remote frame, relay only (TURN over UDP): ${at - p2.opened} ms`);
  await waitForMedia(p2.page, 'P2', { videos: 1, audios: 1, context });
  await waitForMedia(p1.page, 'P1', { videos: 1, audios: 1, context });
  // P2 gathers a relay candidate over each of the server's URLs (UDP and TLS): Chromium may
  // first nominate whichever pair answered first and moves to the better-ranked UDP relay once
  // that one is valid (under load, seconds later).
  const pair = await until('P2 settles on the UDP relay', () => selectedPair(p2.page),
    p => p?.local.candidateType === 'relay' && p?.local.relayProtocol === 'udp', 15000, context);
  assert.equal(pair?.local.candidateType, 'relay', JSON.stringify(pair));
  assert.equal(pair?.local.relayProtocol, 'udp', JSON.stringify(pair));
  const config = await p2.page.evaluate(() => /** @type {any} */ (window).veche?.pc?.getConfiguration().iceTransportPolicy);
  assert.equal(config, 'relay');
  // The built-in server's URLs, with credentials minted for this participant.
  const servers = await iceServers(p2.page);
  assert.deepEqual(servers?.[0]?.urls?.map((/** @type {string} */ u) => u.split(':')[0]), ['turn', 'turns'], JSON.stringify(servers));
  assert.match(servers?.[0]?.username ?? '', /^\d+:\d+$/, JSON.stringify(servers));
  for (const p of [p1, p2]) await p.page.context().close();
});

test('a participant allowed only TCP to port 443 joins through the built-in TURN over TLS and decodes both others', { timeout: 120000 }, async () => {
  const { host, server, outside, inside } = call;
  const room = `turns-${randomBytes(4).toString('hex')}`;
  const p1 = await openMeeting(outside, server.url, room, 'P1');
  const p2 = await openMeeting(outside, server.url, room, 'P2');
  await host.allowOnlyTcp(host.serverAddr, [443, server.httpPort]);
  try {
    const p3 = await openMeeting(inside, server.url, room, 'P3');
    const at = await firstFrameAt(p3.page, 'P3', { deadline: p3.opened + 30000, context });
    console.log(`time to first remote frame through the built-in TURN (TLS on TCP 443): ${at - p3.opened} ms`);
    for (const p of [p3, p1, p2]) await waitForMedia(p.page, p.name, { videos: 2, audios: 2, context });
    const pair = await selectedPair(p3.page);
    assert.equal(pair?.local.candidateType, 'relay', JSON.stringify(pair));
    assert.equal(pair?.local.relayProtocol, 'tls', JSON.stringify(pair));
    for (const p of [p1, p2, p3]) await p.page.context().close();
  } finally {
    await host.clearRules();
  }
});

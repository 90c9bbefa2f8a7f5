// TURN through an external coturn (Debian's `turnserver`) with the credentials Veche mints
// per participant (`--turn-url`, `--turn-secret`, TURN REST): a Chromium participant whose
// network lets through only TCP to port 443 (TURN) and the web port of the server's address
// joins a call with two others through coturn's TCP relay and decodes both. coturn relays
// only to Veche's address.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { namespaceCall, openMeeting } from './lib/call.mjs';
import { firstFrameAt, selectedPair, waitForMedia } from './lib/media.mjs';

const TURNSERVER = '/usr/bin/turnserver';
const SECRET = randomBytes(16).toString('hex');

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;
/** @type {import('node:child_process').ChildProcess} */
let coturn;
let coturnLog = '';

/**
 * Resolves once something accepts TCP connections on `addr:port`.
 * @param {string} addr
 * @param {number} port
 */
async function listening(addr, port) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const ok = await new Promise(resolve => {
      const c = net.connect(port, addr, () => { c.end(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error(`coturn is not listening on ${addr}:${port}:\n${coturnLog}`);
}

before(async () => {
  call = await namespaceCall(host => ['--turn-url', `turn:${host.serverAddr}:443?transport=tcp`, '--turn-secret', SECRET]);
  const addr = call.host.serverAddr;
  // Only TURN over TCP on 443, TURN REST credentials, and relaying to Veche's address only.
  coturn = spawn(TURNSERVER, [
    '-n', '--listening-ip', addr, '--listening-port', '443', '--relay-ip', addr,
    '--use-auth-secret', '--static-auth-secret', SECRET, '--realm', 'veche.test',
    '--no-tls', '--no-dtls', '--no-cli', '--fingerprint', '--no-stun',
    '--allowed-peer-ip', addr, '--denied-peer-ip', '0.0.0.0-255.255.255.255',
    '--log-file', 'stdout',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  coturn.stdout?.on('data', d => { coturnLog = (coturnLog + d).slice(-20000); });
  coturn.stderr?.on('data', d => { coturnLog = (coturnLog + d).slice(-20000); });
  await listening(addr, 443);
});

after(async () => {
  coturn?.kill();
  await call?.close();
});

const context = () => `${call.log()}\n--- coturn ---\n${coturnLog.slice(-3000)}`;

test('a participant allowed only TCP to port 443 joins through coturn and decodes both others', { timeout: 120000 }, async () => {
  const { host, server, outside, inside } = call;
  const room = `turn-${randomBytes(4).toString('hex')}`;
  const p1 = await openMeeting(outside, server.url, room, 'P1');
  const p2 = await openMeeting(outside, server.url, room, 'P2');
  await host.allowOnlyTcp(host.serverAddr, [443, server.httpPort]);
  const p3 = await openMeeting(inside, server.url, room, 'P3');
  const at = await firstFrameAt(p3.page, 'P3', { deadline: p3.opened + 30000, context });
  console.log(`time to first remote frame through coturn (TURN over TCP 443): ${at - p3.opened} ms`);
  for (const p of [p3, p1, p2]) await waitForMedia(p.page, p.name, { videos: 2, audios: 2, context });
  const pair = await selectedPair(p3.page);
  assert.equal(pair?.local.candidateType, 'relay', JSON.stringify(pair));
  assert.equal(pair?.local.relayProtocol, 'tcp', JSON.stringify(pair));
  // coturn took the credentials Veche minted for P3 (it refuses an allocation otherwise).
  const servers = await p3.page.evaluate(() => /** @type {any} */ (window).veche?.pc?.getConfiguration().iceServers);
  assert.match(servers?.[0]?.username ?? '', /^\d+:\d+$/, JSON.stringify(servers));
  for (const p of [p1, p2, p3]) await p.page.context().close();
});

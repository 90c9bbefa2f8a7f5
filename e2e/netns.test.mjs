// The network-namespace test host (lib/netns.mjs) does what the connectivity tests rely on:
// a browser inside it meets a browser outside through the server, tbf caps its rates, nft
// drops the share of packets asked for, the firewall rules block what they say, and the host
// can move to another address.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { namespaceCall, openMeeting } from './lib/call.mjs';
import { selectedPair, waitForMedia } from './lib/media.mjs';

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

/**
 * Runs a Node script inside the test host; resolves to its stdout.
 * @param {string} script
 * @param {...string} args
 */
function nodeInHost(script, ...args) {
  return host.exec(process.execPath, ['-e', script, ...args]);
}

test('a browser in the namespace meets a browser outside it', { timeout: 90000 }, async () => {
  const room = `netns-${randomBytes(4).toString('hex')}`;
  const { page: a } = await openMeeting(inside, server.url, room, 'Inside');
  const { page: b } = await openMeeting(outside, server.url, room, 'Outside');
  const context = call.log;
  await waitForMedia(a, 'Inside', { videos: 1, audios: 1, context });
  await waitForMedia(b, 'Outside', { videos: 1, audios: 1, context });
  // The inside browser really sends from the namespace's address.
  const pair = await selectedPair(a);
  assert.equal(pair?.local.address, host.address(), JSON.stringify(pair));
  assert.equal(pair?.remote.address, host.serverAddr, JSON.stringify(pair));
  await a.context().close();
  await b.context().close();
});

const DOWNLOAD_SCRIPT = `
const started = Date.now();
fetch(process.argv[1]).then(r => r.arrayBuffer()).then(body => {
  console.log(JSON.stringify({ bytes: body.byteLength, ms: Date.now() - started }));
});`;

const UPLOAD_SCRIPT = `
const body = new Uint8Array(Number(process.argv[2]));
const started = Date.now();
fetch(process.argv[1], { method: 'POST', body }).then(r => r.text()).then(() => {
  console.log(JSON.stringify({ bytes: body.byteLength, ms: Date.now() - started }));
});`;

test('tbf caps the download and the upload rate', { timeout: 60000 }, async () => {
  const size = 1_000_000;
  const payload = Buffer.alloc(size, 7);
  const web = http.createServer((req, res) => {
    if (req.method === 'POST') {
      req.resume();
      req.on('end', () => res.end('ok'));
    } else {
      res.end(payload);
    }
  });
  await new Promise(r => web.listen(0, host.serverAddr, () => r(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (web.address());
  const url = `http://${host.serverAddr}:${port}/`;
  const rate = (/** @type {string} */ out) => {
    const { bytes, ms } = JSON.parse(out);
    return bytes * 8 / (ms / 1000);
  };
  try {
    const open = rate(await nodeInHost(DOWNLOAD_SCRIPT, url));
    await host.limitRate({ down: '4mbit' });
    const down = rate(await nodeInHost(DOWNLOAD_SCRIPT, url));
    const upWhileDownShaped = rate(await nodeInHost(UPLOAD_SCRIPT, url, String(size)));
    await host.limitRate({ up: '4mbit' });
    const up = rate(await nodeInHost(UPLOAD_SCRIPT, url, String(size)));
    const downWhileUpShaped = rate(await nodeInHost(DOWNLOAD_SCRIPT, url));
    await host.limitRate({});
    console.log(`measured: open ${(open / 1e6).toFixed(1)} Mbit/s; 4mbit caps: down ${(down / 1e6).toFixed(2)}, ` +
      `up ${(up / 1e6).toFixed(2)} Mbit/s; the other direction meanwhile: ${(upWhileDownShaped / 1e6).toFixed(1)}, ` +
      `${(downWhileUpShaped / 1e6).toFixed(1)} Mbit/s`);
    for (const [what, r] of [['down', down], ['up', up]]) {
      assert.ok(r > 4e6 * 0.6 && r < 4e6 * 1.1, `${what}: ${r} bit/s under a 4 Mbit/s cap`);
    }
    // Each cap applies to its own direction only, and lifting it lifts it.
    for (const [what, r] of [['open', open], ['up while down is shaped', upWhileDownShaped],
      ['down while up is shaped', downWhileUpShaped]]) {
      assert.ok(r > 4e6 * 3, `${what}: ${r} bit/s, not well above the cap`);
    }
  } finally {
    web.close();
  }
});

/**
 * Sends `count` numbered datagrams from inside the host to `port` of the server address and
 * resolves to how many arrived, and from which address.
 * @param {dgram.Socket} socket bound on the server address
 * @param {number} count
 */
async function udpThrough(socket, count) {
  /** @type {Set<number>} */
  const seen = new Set();
  /** @type {Set<string>} */
  const from = new Set();
  const onMessage = (/** @type {Buffer} */ msg, /** @type {dgram.RemoteInfo} */ rinfo) => {
    seen.add(msg.readUInt32BE(0));
    from.add(rinfo.address);
  };
  socket.on('message', onMessage);
  const { port } = socket.address();
  await nodeInHost(`
    const s = require('node:dgram').createSocket('udp4');
    const [addr, port, count] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
    let i = 0;
    (function burst() {
      for (let k = 0; k < 50 && i < count; k++, i++) { const b = Buffer.alloc(100); b.writeUInt32BE(i, 0); s.send(b, port, addr); }
      if (i < count) setTimeout(burst, 2); else setTimeout(() => s.close(), 50);
    })();`, host.serverAddr, String(port), String(count));
  await new Promise(r => setTimeout(r, 300));
  socket.off('message', onMessage);
  return { received: seen.size, from: [...from] };
}

/**
 * Whether a TCP connection from inside the host to `port` of the server address opens
 * within a second.
 * @param {number} port
 */
async function tcpConnects(port) {
  const out = await nodeInHost(`
    const c = require('node:net').connect(Number(process.argv[2]), process.argv[1]);
    const t = setTimeout(() => { console.log('timeout'); c.destroy(); }, 1000);
    c.on('connect', () => { console.log('connected'); clearTimeout(t); c.end(); });
    c.on('error', e => { console.log(e.code); clearTimeout(t); });`, host.serverAddr, String(port));
  return out.trim() === 'connected';
}

test('nft drops the share asked for, blocks UDP, allows only one TCP port', { timeout: 60000 }, async () => {
  const socket = dgram.createSocket('udp4');
  await new Promise(r => socket.bind(0, host.serverAddr, () => r(undefined)));
  const servers = [net.createServer(c => c.end()), net.createServer(c => c.end())];
  for (const s of servers) await new Promise(r => s.listen(0, host.serverAddr, () => r(undefined)));
  const [allowed, other] = servers.map(s => /** @type {net.AddressInfo} */ (s.address()).port);
  try {
    const count = 2000;
    const clean = await udpThrough(socket, count);
    assert.ok(clean.received >= count * 0.995, `no rules: ${clean.received} of ${count} arrived`);

    await host.loss(20, 'out');
    const lossy = await udpThrough(socket, count);
    const lost = 1 - lossy.received / count;
    console.log(`20 % nft loss: ${(lost * 100).toFixed(1)} % of ${count} datagrams lost`);
    // Binomial: one standard deviation is 0.9 %; ±5 % is far outside chance.
    assert.ok(lost > 0.15 && lost < 0.25, `20 % loss asked, ${(lost * 100).toFixed(1)} % lost`);

    await host.blockUdp();
    assert.equal((await udpThrough(socket, 50)).received, 0, 'UDP blocked');
    assert.ok(await tcpConnects(allowed), 'TCP passes while UDP is blocked');

    await host.allowOnlyTcp(host.serverAddr, allowed);
    assert.ok(await tcpConnects(allowed), 'the allowed TCP port connects');
    assert.ok(!(await tcpConnects(other)), 'another TCP port is blocked');
    assert.equal((await udpThrough(socket, 50)).received, 0, 'UDP blocked when only TCP is allowed');

    await host.clearRules();
    assert.ok(await tcpConnects(other), 'rules cleared');

    const before = host.address();
    const moved = await host.changeAddress();
    assert.notEqual(moved, before);
    const after = await udpThrough(socket, 10);
    assert.deepEqual(after.from, [moved], 'datagrams come from the new address');
    assert.equal(after.received, 10);
  } finally {
    socket.close();
    for (const s of servers) s.close();
  }
});

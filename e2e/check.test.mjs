// The connectivity check page `/check` from a Chromium in a network namespace, against a
// server with ICE-TCP and the built-in TURN (UDP, and TLS on port 443): on an open network
// every path works and the verdict is UDP; with UDP dropped, ICE-TCP and TURN over TLS work
// and the verdict says calls will use TCP; with only TCP to port 443 (and the web port)
// allowed, only TURN over TLS works; with only the web port allowed, nothing does. Each run's
// per-probe results and verdict are asserted, from the page's rows and from its help-desk
// report. A meeting on that network shows the firewall banner with a link to `/check`. Past
// the per-address budget the page says the check could not run.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { builtinTurnArgs, namespaceCall, openMeeting, trustServerKey } from './lib/call.mjs';

/** The page's own bound: four probes at 12 s at most, run at once, then the download. */
const CHECK_DONE_MS = 40000;

/** @type {import('./lib/call.mjs').NamespaceCall} */
let call;

before(async () => {
  call = await namespaceCall(builtinTurnArgs, server => [trustServerKey(server)]);
});

after(async () => {
  await call?.close();
});

/**
 * Opens `/check` in a fresh context of `browser` (by default the namespace's Chromium) and
 * waits for its verdict.
 * @param {import('playwright-core').Browser} [browser]
 * @returns {Promise<{verdict: string, text: string, rows: Record<string, string>, report: string, results: any, ms: number}>}
 */
async function runCheck(browser = call.inside) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    await context.grantPermissions(['camera', 'microphone']);
    const page = await context.newPage();
    page.on('pageerror', err => console.error('[check] page error:', err));
    const opened = Date.now();
    await page.goto(`${call.server.url}/check`);
    await page.waitForSelector('#check-page[data-done="true"]', { timeout: CHECK_DONE_MS })
      .catch(async e => {
        const rows = await page.locator('.check-row').allTextContents().catch(() => []);
        throw new Error(`${e.message}\nrows: ${rows.join(' | ')}\n${call.log()}`);
      });
    const ms = Date.now() - opened;
    const verdict = await page.getAttribute('#check-verdict', 'data-verdict') ?? '';
    const text = await page.textContent('#check-verdict') ?? '';
    /** @type {Record<string, string>} */
    const rows = {};
    for (const row of await page.locator('.check-row').all()) {
      rows[await row.getAttribute('data-check') ?? ''] = await row.getAttribute('data-status') ?? '';
    }
    const report = await page.inputValue('#check-report');
    const results = await page.evaluate(() => /** @type {any} */ (window).vecheCheck);
    return { verdict, text, rows, report, results, ms };
  } finally {
    await context.close();
  }
}

/**
 * The per-probe figures, for the log.
 * @param {string} network
 * @param {Awaited<ReturnType<typeof runCheck>>} r
 */
function logFigures(network, r) {
  const probes = Object.values(r.results.probes).map((/** @type {any} */ p) =>
    `${p.kind} ${p.status}${p.ms !== undefined ? ` ${p.ms} ms` : ''}${p.rttMs !== undefined ? ` rtt ${p.rttMs} ms` : ''}${p.pair ? ` (${p.pair})` : ''}`);
  console.log(`/check on ${network}: ${probes.join('; ')}; download ${r.results.download.mbps} Mbit/s; page ${r.ms} ms`);
}

/**
 * @param {Awaited<ReturnType<typeof runCheck>>} r
 * @param {Record<string, string>} want each probe's status
 */
function assertProbes(r, want) {
  const got = Object.fromEntries(Object.entries(r.rows).filter(([k]) => k in want));
  assert.deepEqual(got, want, r.report);
  for (const [kind, status] of Object.entries(want)) {
    assert.match(r.report, new RegExp(`^probe\\.${kind}=${status}\\b`, 'm'), r.report);
  }
  assert.equal(r.rows.camera, 'ok', r.report);
  assert.equal(r.rows.microphone, 'ok', r.report);
  assert.equal(r.rows.download, 'ok', r.report);
  assert.match(r.report, /^download=ok mbps=[\d.]+ bytes=2097152 /m, r.report);
  assert.match(r.report, new RegExp(`^verdict=${r.verdict}$`, 'm'), r.report);
}

test('on an open network every path works and the verdict is UDP', { timeout: 60000 }, async () => {
  const r = await runCheck();
  logFigures('an open network', r);
  assert.equal(r.verdict, 'udp', r.report);
  assert.match(r.text, /fine for calls: media goes over UDP/);
  assertProbes(r, { udp: 'ok', tcp: 'ok', turn_udp: 'ok', turn_tls: 'ok' });
  const { udp, tcp, turn_udp: turnUdp, turn_tls: turnTls } = r.results.probes;
  assert.match(udp.pair, /\/udp > host\/udp$/, udp.pair);
  assert.match(tcp.pair, /\/tcp > host\/tcp$/, tcp.pair);
  assert.match(turnUdp.pair, /^relay\/udp > /, turnUdp.pair);
  assert.match(turnTls.pair, /^relay\/tls > /, turnTls.pair);
  for (const p of [udp, tcp, turnUdp, turnTls]) assert.ok(Number.isFinite(p.rttMs) && p.rttMs >= 0, JSON.stringify(p));
});

test('with UDP blocked ICE-TCP works and the verdict says calls will use TCP', { timeout: 60000 }, async () => {
  await call.host.blockUdp();
  try {
    const r = await runCheck();
    logFigures('a network that drops UDP', r);
    assert.equal(r.verdict, 'tcp', r.report);
    assert.match(r.text, /blocks UDP; calls will use TCP, which works but may lag/);
    assertProbes(r, { udp: 'failed', tcp: 'ok', turn_udp: 'failed', turn_tls: 'ok' });
    assert.match(r.results.probes.tcp.pair, /\/tcp > host\/tcp$/);
  } finally {
    await call.host.clearRules();
  }
});

test('with only TCP to port 443 allowed only TURN over TLS works', { timeout: 60000 }, async () => {
  const { host, server } = call;
  await host.allowOnlyTcp(host.serverAddr, [443, server.httpPort]);
  try {
    const r = await runCheck();
    logFigures('a network that allows only TCP 443', r);
    assert.equal(r.verdict, 'turn_tls', r.report);
    assert.match(r.text, /only secure web traffic \(TCP port 443\); calls will go through the relay over TLS/);
    assertProbes(r, { udp: 'failed', tcp: 'failed', turn_udp: 'failed', turn_tls: 'ok' });
    assert.match(r.results.probes.turn_tls.pair, /^relay\/tls > /);
  } finally {
    await host.clearRules();
  }
});

test('with only the web port allowed every probe fails, and a meeting links to the check page', { timeout: 90000 }, async () => {
  const { host, server } = call;
  // Only the web port: no media path at all, not even the relay.
  await host.allowOnlyTcp(host.serverAddr, [server.httpPort]);
  try {
    const r = await runCheck();
    logFigures('a network that allows only the web port', r);
    assert.equal(r.verdict, 'blocked', r.report);
    assert.match(r.text, /cannot connect from this network/);
    assertProbes(r, { udp: 'failed', tcp: 'failed', turn_udp: 'failed', turn_tls: 'failed' });

    const p = await openMeeting(call.inside, server.url, `blocked-${randomBytes(4).toString('hex')}`, 'Blocked');
    const link = p.page.locator('#media-blocked a#media-check-link');
    await link.waitFor({ state: 'visible', timeout: 25000 });
    assert.equal(await link.getAttribute('href'), '/check');
    assert.match(await p.page.textContent('#media-blocked') ?? '', /firewall/);
    await p.page.context().close();
  } finally {
    await host.clearRules();
  }
});

test('over the per-address budget the check says it could not run, not that the network is blocked', { timeout: 60000 }, async () => {
  // From the root namespace's address, which the other tests did not use: spend its 30 units.
  const context = await call.outside.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`${call.server.url}/healthz`);
  const statuses = await page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 31; i++) {
      const res = await fetch('/check/download', { cache: 'no-store' });
      await res.arrayBuffer(); // an unread body holds its connection
      out.push(res.status);
    }
    return out;
  });
  await context.close();
  assert.deepEqual(statuses, [...Array(30).fill(200), 429]);
  const r = await runCheck(call.outside);
  assert.equal(r.verdict, 'no_signalling', r.report);
  assert.match(r.text, /could not reach this server/);
  for (const kind of ['udp', 'tcp', 'turn_udp', 'turn_tls']) {
    assert.match(r.report, new RegExp(`^probe\\.${kind}=failed error=signalling$`, 'm'), r.report);
  }
  assert.match(r.report, /^download=failed error=HTTP 429$/m, r.report);
});

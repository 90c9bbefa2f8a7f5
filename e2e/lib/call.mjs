// What the connectivity tests share: a test host in a namespace, the server on its veth
// address, a Chromium outside and one inside the namespace, and joining a meeting.

import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { launch } from './browser.mjs';
import { createHost } from './netns.mjs';
import { startServer } from './server.mjs';

/**
 * @typedef {object} NamespaceCall
 * @property {import('./netns.mjs').Host} host
 * @property {Awaited<ReturnType<typeof startServer>>} server on `host.serverAddr` (HTTPS)
 * @property {import('playwright-core').Browser} outside Chromium in the root namespace
 * @property {import('playwright-core').Browser} inside Chromium in the host's namespace
 * @property {() => string} log the tail of the server log, for failure messages
 * @property {() => Promise<void>} close stops and removes all of it (also after a failed start)
 */

/**
 * Sets up a namespace call; `serverArgs(host)` adds flags to the server's command line,
 * `browserArgs(server)` to both Chromiums' (once the server runs, e.g. to trust its key).
 * @param {(host: import('./netns.mjs').Host) => string[]} [serverArgs]
 * @param {(server: Awaited<ReturnType<typeof startServer>>) => string[]} [browserArgs]
 * @returns {Promise<NamespaceCall>}
 */
export async function namespaceCall(serverArgs = () => [], browserArgs = () => []) {
  /** @type {Partial<NamespaceCall>} */
  const call = {};
  const close = async () => {
    await call.inside?.close();
    await call.outside?.close();
    await call.server?.stop();
    await call.host?.destroy();
  };
  try {
    call.host = await createHost();
    call.server = await startServer({ host: call.host.serverAddr, args: serverArgs(call.host) });
    const args = browserArgs(call.server);
    call.outside = await launch({ args });
    call.inside = await launch({ executablePath: call.host.chromiumWrapper(), args });
  } catch (e) {
    await close();
    throw e;
  }
  const server = call.server;
  return { ...(/** @type {NamespaceCall} */ (call)), log: () => `--- server log ---\n${server.log().slice(-4000)}`, close };
}

/**
 * Opens `/m/ROOM` as NAME (joining at once) in a fresh Chromium context with camera and
 * microphone granted and the server's self-signed certificate accepted.
 * @param {import('playwright-core').Browser} browser
 * @param {string} url the server's URL
 * @param {string} room
 * @param {string} name
 * @param {Record<string, string>} [query] more link parameters (e.g. `{relay: '1'}`)
 * @returns {Promise<{page: import('playwright-core').Page, name: string, opened: number}>} `opened`:
 *   when the page was opened
 */
export async function openMeeting(browser, url, room, name, query = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.on('pageerror', err => console.error(`[${name}] page error:`, err));
  const opened = Date.now();
  const params = new URLSearchParams({ name, autojoin: '1', ...query });
  await page.goto(`${url}/m/${room}?${params}`);
  return { page, name, opened };
}

/**
 * The server flags of the built-in TURN server on the host's address: UDP on an ephemeral
 * port, TLS on 443 (what a network that allows only TCP 443 lets through).
 * @param {import('./netns.mjs').Host} host
 */
export function builtinTurnArgs(host) {
  return ['--turn-builtin', 'true', '--turn-udp', `${host.serverAddr}:0`, '--turn-tls', `${host.serverAddr}:443`];
}

/**
 * The Chromium flag that makes it trust the server's self-signed certificate (by the SHA-256
 * of its public key) where `ignoreHTTPSErrors` does not reach: TURN over TLS is checked by
 * the browser's network stack, not the page's context.
 * @param {{dataDir: string}} server
 */
export function trustServerKey(server) {
  const pem = readFileSync(path.join(server.dataDir, 'tls', 'self-signed-cert.pem'), 'utf8');
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`;
}

// Starts the real `veche` binary for a test and stops it afterwards.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import https from 'node:https';
import os from 'node:os';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * @param {string} [host]
 * @returns {Promise<number>} a TCP port that was free a moment ago
 */
export function freeTcpPort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Binds a UDP socket (`port` 0: any free one).
 * @param {string} host
 * @param {number} port
 * @returns {Promise<import('node:dgram').Socket | null>} null when the port is taken
 */
function bindUdp(host, port) {
  return new Promise(resolve => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(null));
    socket.bind(port, host, () => resolve(socket));
  });
}

/**
 * A free UDP port followed by enough free ones for every media shard (one per CPU by
 * default, each on the next port).
 * @param {string} host
 * @returns {Promise<number>}
 */
async function freeUdpPort(host) {
  const shards = os.availableParallelism();
  for (let attempt = 0; attempt < 100; attempt++) {
    const first = await bindUdp(host, 0);
    if (!first) continue;
    const port = first.address().port;
    const rest = [];
    for (let i = 1; i < shards; i++) rest.push(await bindUdp(host, port + i));
    const sockets = [first, ...rest];
    await Promise.all(sockets.map(s => s && new Promise(r => s.close(() => r(undefined)))));
    if (rest.every(Boolean) && port + shards <= 65535) return port;
  }
  throw new Error(`no run of ${shards} free UDP ports found`);
}

/**
 * GET over HTTPS without checking the certificate (the server's self-signed one).
 * @param {string} url
 * @returns {Promise<number>} the status code
 */
function insecureGet(url) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false }, res => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
  });
}

/**
 * Runs `veche serve` with a fresh data directory and waits for /healthz. Ports are free ones
 * unless given (to restart a server where the clients expect it); `dataDir` reuses the data
 * directory of a server that was killed (`kill9`).
 *
 * By default everything listens on 127.0.0.1 over plain HTTP. With `host` (e.g. a test host's
 * `serverAddr` from netns.mjs) HTTP, media and the advertised candidate use that address
 * instead, and the server serves HTTPS with its self-signed certificate (browsers allow the
 * camera only in a secure context): open pages in a context with `ignoreHTTPSErrors: true`.
 * `args` are appended to the command line.
 * @param {{httpPort?: number, mediaPort?: number, dataDir?: string, host?: string, args?: string[]}} [options]
 * @returns {Promise<{url: string, host: string, httpPort: number, mediaPort: number, dataDir: string,
 *   stop: () => Promise<void>, kill9: () => Promise<void>, log: () => string}>}
 */
export async function startServer(options = {}) {
  const bin = path.resolve(REPO_ROOT, process.env.VECHE_BIN ?? 'target/debug/veche');
  if (!existsSync(bin)) {
    throw new Error(`veche binary not found at ${bin}: build it with \`cargo build -p veche-server\` or set VECHE_BIN`);
  }
  const host = options.host ?? '127.0.0.1';
  const loopback = host === '127.0.0.1';
  const httpPort = options.httpPort ?? await freeTcpPort(host);
  const mediaPort = options.mediaPort ?? await freeUdpPort(host);
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'veche-e2e-'));
  const logFile = path.join(dataDir, 'server.log');
  const logFd = openSync(logFile, 'a');
  const child = spawn(bin, [
    'serve',
    '--http', `${host}:${httpPort}`,
    '--media-port', String(mediaPort),
    // Only this address (loopback, or a test host's veth): tests must not send media to
    // any other address of this machine.
    '--media-bind', host,
    '--public-ip', host,
    // Free ICE-TCP ports: the TCP ports of the media port's numbers may be taken.
    '--ice-tcp-port', '0',
    '--data-dir', dataDir,
    ...(options.args ?? []),
  ], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' },
    stdio: ['ignore', logFd, logFd],
  });
  const exited = new Promise(resolve => child.once('exit', resolve));
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const url = `${loopback ? 'http' : 'https'}://${host}:${httpPort}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (process.env.VECHE_E2E_KEEP_LOGS) console.log(`server log kept in ${logFile}`);
    else rmSync(dataDir, { recursive: true, force: true });
  };
  // SIGKILL: no shutdown, no goodbye; the data directory stays for a restart.
  const kill9 = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  const deadline = Date.now() + 20000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`veche exited with ${child.exitCode} before becoming healthy:\n${log()}`);
    }
    try {
      const status = loopback ? (await fetch(`${url}/healthz`)).status : await insecureGet(`${url}/healthz`);
      if (status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`veche did not answer /healthz within 20 s:\n${log()}`);
    }
    await new Promise(r => setTimeout(r, 100));
  }
  return { url, host, httpPort, mediaPort, dataDir, stop, kill9, log };
}

/**
 * A JSON call to a server's REST API with a bearer token; an error status throws, with the
 * answer in the message.
 * @param {string} url the server's URL
 * @param {string} method
 * @param {string} route under `/api/v1`
 * @param {string | null} token
 * @param {unknown} [body]
 */
export async function apiCall(url, method, route, token, body) {
  const res = await fetch(`${url}/api/v1${route}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

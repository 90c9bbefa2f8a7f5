// Starts the real `veche` binary for a test and stops it afterwards.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import os from 'node:os';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** @returns {Promise<number>} a TCP port that was free a moment ago */
export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/** @returns {Promise<number>} a UDP port that was free a moment ago */
/**
 * Binds a UDP socket on 127.0.0.1 (`port` 0: any free one).
 * @param {number} port
 * @returns {Promise<import('node:dgram').Socket | null>} null when the port is taken
 */
function bindUdp(port) {
  return new Promise(resolve => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => resolve(null));
    socket.bind(port, '127.0.0.1', () => resolve(socket));
  });
}

/**
 * A free UDP port followed by enough free ones for every media shard (one per CPU by
 * default, each on the next port).
 * @returns {Promise<number>}
 */
async function freeUdpPort() {
  const shards = os.availableParallelism();
  for (let attempt = 0; attempt < 100; attempt++) {
    const first = await bindUdp(0);
    if (!first) continue;
    const port = first.address().port;
    const rest = [];
    for (let i = 1; i < shards; i++) rest.push(await bindUdp(port + i));
    const sockets = [first, ...rest];
    await Promise.all(sockets.map(s => s && new Promise(r => s.close(() => r(undefined)))));
    if (rest.every(Boolean) && port + shards <= 65535) return port;
  }
  throw new Error(`no run of ${shards} free UDP ports found`);
}

/**
 * Runs `veche serve` with a fresh data directory and waits for /healthz. Ports are free ones
 * unless given (to restart a server where the clients expect it); `args` are more flags.
 * @param {{httpPort?: number, mediaPort?: number, args?: string[]}} [ports]
 * @returns {Promise<{url: string, httpPort: number, mediaPort: number, stop: () => Promise<void>, log: () => string}>}
 */
export async function startServer(ports = {}) {
  const bin = path.resolve(REPO_ROOT, process.env.VECHE_BIN ?? 'target/debug/veche');
  if (!existsSync(bin)) {
    throw new Error(`veche binary not found at ${bin}: build it with \`cargo build -p veche-server\` or set VECHE_BIN`);
  }
  const httpPort = ports.httpPort ?? await freeTcpPort();
  const mediaPort = ports.mediaPort ?? await freeUdpPort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'veche-e2e-'));
  const logFile = path.join(dataDir, 'server.log');
  const logFd = openSync(logFile, 'a');
  const child = spawn(bin, [
    'serve',
    '--http', `127.0.0.1:${httpPort}`,
    '--media-port', String(mediaPort),
    // Only loopback: tests must not send media to any other address of this machine.
    '--media-bind', '127.0.0.1',
    '--public-ip', '127.0.0.1',
    '--data-dir', dataDir,
    ...(ports.args ?? []),
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
  const url = `http://127.0.0.1:${httpPort}`;
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

  const deadline = Date.now() + 20000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`veche exited with ${child.exitCode} before becoming healthy:\n${log()}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`veche did not answer /healthz within 20 s:\n${log()}`);
    }
    await new Promise(r => setTimeout(r, 100));
  }
  return { url, httpPort, mediaPort, stop, log };
}

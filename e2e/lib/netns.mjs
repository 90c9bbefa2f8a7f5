// Test hosts in Linux network namespaces: a browser (or any command) runs behind its own
// link to the machine, whose bandwidth, loss and firewall a test controls. Needs root, `ip`,
// `tc` and `nft` (Debian: iproute2, nftables).
//
// Each host is a namespace `vch<pid>-<n>` joined to the root namespace by a veth pair
// `v<pid>r<n>` (root side) / `v<pid>n<n>` (namespace side) on a private /29: the root side has
// `.1` (the server listens there), the host `.2` (or another address of the /29 after
// `changeAddress`). The namespace's default route goes through `.1`, so a host also reaches
// every other address of the root namespace (the `.1` of other hosts included), but nothing
// beyond this machine: the root namespace does not forward.
//
// Shaping: `limitRate` puts a token bucket filter (tbf) on the namespace side of the veth
// (uplink) and on the root side (downlink: what the root side sends is what the host
// receives), so no ifb is needed. Loss and firewalls are nftables rules inside the namespace
// (this kernel has no netem): loss is `numgen random mod 100 < N drop`.
//
// Names carry the creating process's id; `cleanLeftovers` (run by `createHost`) removes
// namespaces and links of processes that no longer exist, so a crashed run does not leak them
// and concurrent runs by other processes are left alone.

import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const NETNS_RE = /^vch(\d+)-(\d+)$/;
const LINK_RE = /^v(\d+)[rn](\d+)$/;
/** First octet pair of the address pool: 10.200.0.0 – 10.255.255.255, in /29s. */
const POOL_FIRST = 200;
const POOL_SLOTS = 56 * 256 * 32;
/** nftables table that holds every rule this helper puts in a namespace. */
const TABLE = 'vechetest';

/**
 * Runs a command, failing with its stderr.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{input?: string}} [options]
 * @returns {Promise<string>} stdout
 */
async function sh(cmd, args, options = {}) {
  if (options.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', d => { out += d; });
      child.stderr.on('data', d => { err += d; });
      child.once('error', reject);
      child.once('exit', code => {
        if (code === 0) resolve(out);
        else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${err.trim()}\n${options.input}`));
      });
      child.stdin.end(options.input);
    });
  }
  try {
    const { stdout } = await run(cmd, args);
    return stdout;
  } catch (e) {
    const err = /** @type {{stderr?: string, message: string}} */ (e);
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

/** @param {number} pid */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return /** @type {NodeJS.ErrnoException} */ (e).code === 'EPERM';
  }
}

/**
 * Removes the namespaces and veth links left by test processes that have exited (a crash,
 * a killed run). Those of live processes, this one included, stay.
 */
export async function cleanLeftovers() {
  const namespaces = (await sh('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0]);
  for (const ns of namespaces) {
    const m = NETNS_RE.exec(ns);
    if (m && !alive(Number(m[1]))) await sh('ip', ['netns', 'delete', ns]).catch(() => {});
  }
  /** @type {{ifname: string}[]} */
  const links = JSON.parse(await sh('ip', ['-j', 'link', 'show']));
  for (const { ifname } of links) {
    const m = LINK_RE.exec(ifname);
    if (m && !alive(Number(m[1]))) await sh('ip', ['link', 'delete', ifname]).catch(() => {});
  }
}

/** @returns {Promise<Set<string>>} every IPv4 address assigned in the root namespace */
async function rootAddresses() {
  /** @type {{addr_info?: {family: string, local: string}[]}[]} */
  const links = JSON.parse(await sh('ip', ['-j', 'addr', 'show']));
  return new Set(links.flatMap(l => (l.addr_info ?? []).filter(a => a.family === 'inet').map(a => a.local)));
}

/**
 * The base address (as four octets) of a /29 of the pool that no root-namespace address is
 * in; the first slot tried depends on the process id so concurrent runs rarely meet.
 * @param {number} serial
 */
async function freeSubnet(serial) {
  const taken = await rootAddresses();
  const start = (process.pid * 64 + serial * 7) % POOL_SLOTS;
  for (let i = 0; i < POOL_SLOTS; i++) {
    const slot = (start + i) % POOL_SLOTS;
    const octets = [10, POOL_FIRST + (slot >> 13), (slot >> 5) & 255, (slot & 31) * 8];
    const used = [1, 2, 3, 4, 5, 6].some(h => taken.has(`${octets[0]}.${octets[1]}.${octets[2]}.${octets[3] + h}`));
    if (!used) return octets;
  }
  throw new Error('no free /29 in 10.200.0.0/13');
}

let serial = 0;

/**
 * @typedef {object} Host
 * @property {string} name the namespace
 * @property {string} serverAddr the root side's address, reachable from the host
 * @property {() => string} address the host's current address
 * @property {(cmd: string, args: string[], options?: import('node:child_process').SpawnOptions) => import('node:child_process').ChildProcess} spawn
 *   runs a command in the namespace
 * @property {(cmd: string, args: string[]) => Promise<string>} exec runs a command in the
 *   namespace to its end, resolving to its stdout
 * @property {() => string} chromiumWrapper an executable that starts Chromium in the namespace
 *   (for Playwright's `launch({executablePath})`)
 * @property {(rates: {up?: string, down?: string, queueMs?: number}) => Promise<void>} limitRate
 *   caps the host's uplink and/or downlink (tc rate units: `2mbit`, `500kbit`) with a queue
 *   of `queueMs` (50 by default) before packets are dropped; an omitted direction is not
 *   shaped; calling again replaces the caps
 * @property {(percent: number, direction?: 'in' | 'out' | 'both') => Promise<void>} loss
 *   drops this percentage of the host's packets at random (both directions by default)
 * @property {() => Promise<void>} blockUdp drops every UDP packet to or from the host
 * @property {(addr: string, ports: number | number[]) => Promise<void>} allowOnlyTcp lets the
 *   host send only TCP to these ports of `addr` (and the answers come back); everything else
 *   it sends is dropped
 * @property {() => Promise<void>} clearRules removes loss and firewall rules
 * @property {() => Promise<string>} changeAddress moves the host to another address of its
 *   subnet (existing connections from the old address break); resolves to the new address
 * @property {() => Promise<void>} destroy removes the namespace, its links and files
 */

/**
 * Waits (up to 3 s) until the root-namespace interface `dev` has its carrier.
 * @param {string} dev
 */
async function linkUp(dev) {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    const state = await sh('cat', [`/sys/class/net/${dev}/operstate`]).catch(() => '');
    if (state.trim() === 'up') return;
    await new Promise(r => setTimeout(r, 50));
  }
  throw new Error(`${dev} did not come up within 3 s`);
}

/**
 * Creates a test host: a namespace with a veth link to the root namespace. Removes the
 * leftovers of exited processes first.
 * @returns {Promise<Host>}
 */
export async function createHost() {
  await cleanLeftovers();
  const n = serial++;
  const name = `vch${process.pid}-${n}`;
  const rootIf = `v${process.pid}r${n}`;
  const nsIf = `v${process.pid}n${n}`;
  const base = await freeSubnet(n);
  const at = (/** @type {number} */ h) => `${base[0]}.${base[1]}.${base[2]}.${base[3] + h}`;
  const serverAddr = at(1);
  let hostNumber = 2;
  /** @type {string | null} */
  let wrapperDir = null;

  const inNs = (/** @type {string[]} */ args) => sh('ip', ['netns', 'exec', name, ...args]);

  try {
    await sh('ip', ['netns', 'add', name]);
    await sh('ip', ['link', 'add', rootIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name]);
    // No IPv6 on the link: its link-local address would appear a second or so after the
    // link comes up, and every Chromium on the machine takes a new address for a network
    // change and aborts what it is loading (ERR_NETWORK_CHANGED) — a browser that started
    // meanwhile would never join.
    await sh('sysctl', ['-qw', `net.ipv6.conf.${rootIf}.disable_ipv6=1`]);
    await inNs(['sysctl', '-qw', `net.ipv6.conf.${nsIf}.disable_ipv6=1`]);
    await sh('ip', ['addr', 'add', `${serverAddr}/29`, 'dev', rootIf]);
    await sh('ip', ['link', 'set', rootIf, 'up']);
    await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', name, 'addr', 'add', `${at(hostNumber)}/29`, 'dev', nsIf]);
    await sh('ip', ['-n', name, 'link', 'set', nsIf, 'up']);
    await sh('ip', ['-n', name, 'route', 'add', 'default', 'via', serverAddr]);
    // The carrier comes up a moment after `link set up`; that is a network change too.
    await linkUp(rootIf);
  } catch (e) {
    await sh('ip', ['netns', 'delete', name]).catch(() => {});
    await sh('ip', ['link', 'delete', rootIf]).catch(() => {});
    throw e;
  }

  /**
   * Replaces the namespace's nft table with these chains' rules.
   * @param {{input?: string[], output?: string[], policy?: 'accept' | 'drop'}} chains
   */
  async function setRules(chains) {
    const chain = (/** @type {string} */ hook, /** @type {string[]} */ body) => {
      if (body.length === 0 && (chains.policy ?? 'accept') === 'accept') return '';
      return `  chain ${hook} {\n    type filter hook ${hook} priority 0; policy ${chains.policy ?? 'accept'};\n` +
        body.map(r => `    ${r}\n`).join('') + '  }\n';
    };
    const table = `table inet ${TABLE} {\n${chain('input', chains.input ?? [])}${chain('output', chains.output ?? [])}}\n`;
    await inNs(['nft', `delete table inet ${TABLE}`]).catch(() => {});
    await sh('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: table });
  }

  /** @type {Host} */
  const host = {
    name,
    serverAddr,
    address: () => at(hostNumber),
    spawn: (cmd, args, options = {}) => spawn('ip', ['netns', 'exec', name, cmd, ...args], options),
    exec: (cmd, args) => inNs([cmd, ...args]),
    chromiumWrapper() {
      if (!wrapperDir) {
        wrapperDir = mkdtempSync(path.join(tmpdir(), `${name}-`));
        const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
        // `ip netns exec` keeps the file descriptors, so Playwright's pipe (fds 3 and 4)
        // reaches Chromium.
        writeFileSync(path.join(wrapperDir, 'chromium'), `#!/bin/sh\nexec ip netns exec ${name} ${chromium} "$@"\n`);
        chmodSync(path.join(wrapperDir, 'chromium'), 0o755);
      }
      return path.join(wrapperDir, 'chromium');
    },
    async limitRate({ up, down, queueMs = 50 }) {
      for (const [dev, rate, ns] of /** @type {const} */ ([[nsIf, up, true], [rootIf, down, false]])) {
        const tc = (/** @type {string[]} */ args) => ns ? inNs(['tc', ...args]) : sh('tc', args);
        await tc(['qdisc', 'del', 'dev', dev, 'root']).catch(() => {});
        if (rate) {
          // A burst of 10 ms at the rate (at least two full-size packets), `queueMs` of queue.
          const bits = parseRate(rate);
          const burst = Math.max(3200, Math.ceil(bits / 8 / 100));
          await tc(['qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', String(burst), 'latency', `${queueMs}ms`]);
        }
      }
    },
    async loss(percent, direction = 'both') {
      if (!(percent >= 0 && percent <= 100)) throw new Error(`loss percentage out of range: ${percent}`);
      const drop = `numgen random mod 100 < ${Math.round(percent)} drop`;
      await setRules({
        input: direction === 'out' ? [] : ['iif lo accept', drop],
        output: direction === 'in' ? [] : ['oif lo accept', drop],
      });
    },
    async blockUdp() {
      await setRules({
        input: ['iif lo accept', 'meta l4proto udp drop'],
        output: ['oif lo accept', 'meta l4proto udp drop'],
      });
    },
    async allowOnlyTcp(addr, ports) {
      const set = `{ ${[ports].flat().join(', ')} }`;
      await setRules({
        policy: 'drop',
        input: ['iif lo accept', `ip saddr ${addr} tcp sport ${set} accept`],
        output: ['oif lo accept', `ip daddr ${addr} tcp dport ${set} accept`],
      });
    },
    async clearRules() {
      await inNs(['nft', `delete table inet ${TABLE}`]).catch(() => {});
    },
    async changeAddress() {
      const old = at(hostNumber);
      hostNumber = hostNumber === 6 ? 2 : hostNumber + 1;
      await sh('ip', ['-n', name, 'addr', 'del', `${old}/29`, 'dev', nsIf]);
      await sh('ip', ['-n', name, 'addr', 'add', `${at(hostNumber)}/29`, 'dev', nsIf]);
      await sh('ip', ['-n', name, 'route', 'replace', 'default', 'via', serverAddr]);
      return at(hostNumber);
    },
    async destroy() {
      // Deleting the namespace deletes its end of the veth pair, and with it the root end;
      // delete the root end explicitly too in case a process still holds the namespace.
      await sh('ip', ['netns', 'delete', name]).catch(() => {});
      await sh('ip', ['link', 'delete', rootIf]).catch(() => {});
      if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
    },
  };
  return host;
}

/**
 * A tc rate (`2mbit`, `500kbit`, `1000000bit`, `1mbps`) in bits per second.
 * @param {string} rate
 */
export function parseRate(rate) {
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$/i.exec(rate);
  if (!m) throw new Error(`not a tc rate: ${rate}`);
  const unit = m[2].toLowerCase();
  const scale = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 }[unit] ?? 1;
  return Number(m[1]) * scale;
}

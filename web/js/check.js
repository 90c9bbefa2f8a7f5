// The connectivity check page `/check`: camera and microphone (preview and level meter), then
// one real peer connection to this server per network path, a download-speed measurement, a
// plain-language verdict and a report for the help desk.
//
// Each probe opens `/check/ws`, which the server joins at once to a private room of its own
// and answers with an offer. The offer's server candidates are filtered to the path under
// test before it is applied — UDP only, or ICE-TCP (`tcptype passive`) only — or the peer
// connection is made relay-only with one TURN URL (UDP, or TLS over TCP). The server is
// ICE-lite and never starts a check of its own, so the path the browser may try is the path
// measured. A probe passes when the connection reaches `connected` (ICE and DTLS done);
// its round-trip time is the selected pair's `currentRoundTripTime` (STUN consent checks).

import { copyText, h, show } from './dom.js';
import { t } from './i18n.js';
import { watchLevel } from './media.js';

/** @typedef {'udp' | 'tcp' | 'turn_udp' | 'turn_tls'} ProbeKind */
/**
 * @typedef {object} ProbeResult
 * @property {ProbeKind} kind
 * @property {'ok' | 'failed' | 'unavailable'} status unavailable: the server has no such path
 *   (no TURN, or no TURN URL of that transport)
 * @property {number} [ms] probe start to `connected`
 * @property {number} [rttMs] the selected pair's round-trip time
 * @property {string} [pair] local → remote candidate (type/protocol)
 * @property {string} [error]
 */
/**
 * @typedef {object} CheckResults
 * @property {Record<ProbeKind, ProbeResult>} probes
 * @property {{status: 'ok' | 'failed', error?: string}} camera
 * @property {{status: 'ok' | 'failed', error?: string, peak?: number}} microphone `peak`: the
 *   loudest level (0–1) heard in the first 1.5 s
 * @property {{status: 'ok' | 'failed', mbps?: number, bytes?: number, ms?: number, error?: string}} download
 * @property {string} verdict
 * @property {string} report
 */

/** @type {ProbeKind[]} */
const PROBES = ['udp', 'tcp', 'turn_udp', 'turn_tls'];
/** A probe that has not connected by then has failed (ICE over TCP or TLS takes a few round trips). */
const PROBE_TIMEOUT_MS = 12000;
/** How long to wait for the first round-trip time once connected. */
const RTT_WAIT_MS = 3000;

/**
 * Keeps only the offer's candidates the probe may use.
 * @param {string} sdp
 * @param {ProbeKind} kind
 */
export function filterCandidates(sdp, kind) {
  return sdp.split('\r\n').filter(line => {
    if (!line.startsWith('a=candidate:')) return true;
    const parts = line.split(' ');
    const protocol = (parts[2] ?? '').toLowerCase();
    if (kind === 'tcp') return protocol === 'tcp' && / tcptype passive\b/.test(line);
    // Direct UDP; a relay also reaches the server's media port over UDP.
    return protocol === 'udp';
  }).join('\r\n');
}

/**
 * The TURN server entry for a relay probe, with only the URLs of that transport.
 * @param {RTCIceServer[]} servers
 * @param {'turn_udp' | 'turn_tls'} kind
 * @returns {RTCIceServer | null}
 */
function relayServer(servers, kind) {
  for (const server of servers) {
    const urls = (Array.isArray(server.urls) ? server.urls : [server.urls]).filter(url => kind === 'turn_tls'
      ? url.startsWith('turns:')
      : url.startsWith('turn:') && !/transport=tcp/i.test(url));
    if (urls.length > 0) return { ...server, urls };
  }
  return null;
}

/**
 * The selected candidate pair's description and round-trip time.
 * @param {RTCPeerConnection} pc
 */
async function selectedPair(pc) {
  const stats = await pc.getStats();
  /** @type {any} */
  let pair = null;
  stats.forEach(s => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) stats.forEach(s => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const describe = (/** @type {any} */ c) => c ? `${c.candidateType}/${c.relayProtocol ?? c.protocol}` : '?';
  return {
    pair: `${describe(local)} > ${describe(remote)}`,
    rttMs: typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : undefined,
  };
}

/**
 * One probe: a real peer connection to this server over one path.
 * @param {ProbeKind} kind
 * @returns {Promise<ProbeResult>}
 */
export function probe(kind) {
  const started = performance.now();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/check/ws`);
  /** @type {RTCPeerConnection | null} */
  let pc = null;
  return new Promise(resolve => {
    let done = false;
    /** @param {Omit<ProbeResult, 'kind'>} result */
    const finish = result => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      pc?.close();
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'leave' }));
      ws.close();
      resolve({ kind, ...result });
    };
    const timer = setTimeout(() => finish({ status: 'failed', error: 'timeout' }), PROBE_TIMEOUT_MS);
    ws.addEventListener('error', () => finish({ status: 'failed', error: 'signalling' }));
    ws.addEventListener('close', event => finish({ status: 'failed', error: `signalling closed (${event.code})` }));
    ws.addEventListener('message', event => {
      /** @type {any} */
      let msg;
      try {
        msg = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (msg.type === 'joined') {
        /** @type {RTCIceServer[]} */
        let iceServers = [];
        if (kind === 'turn_udp' || kind === 'turn_tls') {
          const server = relayServer(msg.ice_servers ?? [], kind);
          if (!server) {
            finish({ status: 'unavailable' });
            return;
          }
          iceServers = [server];
        }
        pc = new RTCPeerConnection({
          iceServers,
          iceTransportPolicy: iceServers.length > 0 ? 'relay' : 'all',
          bundlePolicy: 'max-bundle',
          rtcpMuxPolicy: 'require',
        });
        const conn = pc;
        conn.addEventListener('icecandidate', e => {
          const c = e.candidate;
          if (!c || !c.candidate || c.address?.endsWith('.local') || ws.readyState !== WebSocket.OPEN) return;
          ws.send(JSON.stringify({ type: 'candidate', candidate: c.candidate }));
        });
        conn.addEventListener('connectionstatechange', async () => {
          if (conn.connectionState === 'failed') finish({ status: 'failed', error: 'ice' });
          if (conn.connectionState !== 'connected') return;
          const ms = Math.round(performance.now() - started);
          let found = await selectedPair(conn);
          const until = performance.now() + RTT_WAIT_MS;
          while (!done && found?.rttMs === undefined && performance.now() < until) {
            await new Promise(r => setTimeout(r, 250));
            found = await selectedPair(conn);
          }
          finish({ status: 'ok', ms, ...(found ?? {}) });
        });
      } else if (msg.type === 'offer' && pc) {
        const conn = pc;
        (async () => {
          await conn.setRemoteDescription({ type: 'offer', sdp: filterCandidates(msg.sdp, kind) });
          for (const transceiver of conn.getTransceivers()) {
            if (transceiver.currentDirection !== 'stopped') transceiver.direction = 'inactive';
          }
          const answer = await conn.createAnswer();
          await conn.setLocalDescription(answer);
          ws.send(JSON.stringify({ type: 'answer', sdp: conn.localDescription?.sdp ?? answer.sdp }));
        })().catch(err => finish({ status: 'failed', error: `negotiation: ${err}` }));
      } else if (msg.type === 'error' && msg.code !== 'invalid_candidate') {
        finish({ status: 'failed', error: String(msg.code) });
      }
    });
  });
}

/**
 * Downloads `/check/download` and times it: the speed of HTTPS from this server to the
 * browser (the path this page and the signalling take), not of the media path.
 * @returns {Promise<CheckResults['download']>}
 */
async function measureDownload() {
  const started = performance.now();
  try {
    const res = await fetch(`/check/download?t=${Date.now()}`, { cache: 'no-store' });
    if (!res.ok) return { status: 'failed', error: `HTTP ${res.status}` };
    const bytes = (await res.arrayBuffer()).byteLength;
    const ms = Math.max(1, Math.round(performance.now() - started));
    return { status: 'ok', bytes, ms, mbps: Math.round(bytes * 8 / ms / 100) / 10 };
  } catch (err) {
    return { status: 'failed', error: String(err) };
  }
}

/**
 * The verdict's code: which is the best path a call will use.
 * @param {Record<ProbeKind, ProbeResult>} probes
 */
export function verdictCode(probes) {
  // Not one signalling connection opened (refused, e.g. over the per-address budget): the
  // check says nothing about the media paths.
  if (PROBES.every(kind => probes[kind].error === 'signalling')) return 'no_signalling';
  if (probes.udp.status === 'ok') return 'udp';
  if (probes.tcp.status === 'ok') return 'tcp';
  if (probes.turn_udp.status === 'ok') return 'turn_udp';
  if (probes.turn_tls.status === 'ok') return 'turn_tls';
  return 'blocked';
}

/**
 * The report for the help desk: `key=value` lines, the same in every language.
 * @param {Omit<CheckResults, 'report'>} r
 */
function report(r) {
  const lines = [
    'veche-check 1',
    `time=${new Date().toISOString()}`,
    `server=${location.origin}`,
    `browser=${navigator.userAgent}`,
    `verdict=${r.verdict}`,
    `camera=${r.camera.status}${r.camera.error ? ` error=${r.camera.error}` : ''}`,
    `microphone=${r.microphone.status}${r.microphone.peak !== undefined ? ` peak=${r.microphone.peak}` : ''}${r.microphone.error ? ` error=${r.microphone.error}` : ''}`,
  ];
  for (const kind of PROBES) {
    const p = r.probes[kind];
    const fields = [`probe.${kind}=${p.status}`];
    if (p.ms !== undefined) fields.push(`ms=${p.ms}`);
    if (p.rttMs !== undefined) fields.push(`rtt_ms=${p.rttMs}`);
    if (p.pair) fields.push(`pair=${p.pair}`);
    if (p.error) fields.push(`error=${p.error}`);
    lines.push(fields.join(' '));
  }
  const d = r.download;
  lines.push(d.status === 'ok' ? `download=ok mbps=${d.mbps} bytes=${d.bytes} ms=${d.ms}` : `download=failed error=${d.error}`);
  return lines.join('\n');
}

/**
 * Camera preview and microphone level meter; resolves once both were tried (the meter keeps
 * running while the page is open).
 * @param {HTMLVideoElement} preview
 * @param {HTMLElement} meter the bar whose width follows the level
 * @returns {Promise<{camera: CheckResults['camera'], microphone: CheckResults['microphone']}>}
 */
async function checkDevices(preview, meter) {
  /** @type {CheckResults['camera']} */
  let camera = { status: 'failed' };
  /** @type {CheckResults['microphone']} */
  let microphone = { status: 'failed' };
  try {
    preview.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    camera = { status: 'ok' };
  } catch (err) {
    camera = { status: 'failed', error: err instanceof DOMException ? err.name : String(err) };
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    let peak = 0;
    const stop = watchLevel(stream.getAudioTracks()[0], level => {
      peak = Math.max(peak, level);
      meter.style.width = `${Math.round(level * 100)}%`;
    });
    window.addEventListener('pagehide', stop);
    // Listen a moment so the report can say whether any sound came in.
    await new Promise(r => setTimeout(r, 1500));
    microphone = { status: 'ok', peak: Math.round(peak * 1000) / 1000 };
  } catch (err) {
    microphone = { status: 'failed', error: err instanceof DOMException ? err.name : String(err) };
  }
  return { camera, microphone };
}

/**
 * One row of the results.
 * @param {string} id
 * @param {string} label
 */
function row(id, label) {
  const value = h('span', { class: 'check-value', text: t('check.running') });
  const el = h('li', { class: 'check-row', 'data-check': id, 'data-status': 'running' },
    h('span', { class: 'check-label', text: label }), value);
  return {
    el,
    /** @param {'ok' | 'failed' | 'unavailable'} status @param {string} text */
    set(status, text) {
      el.dataset.status = status;
      value.textContent = text;
    },
  };
}

/** @param {ProbeResult} p */
function probeText(p) {
  if (p.status === 'unavailable') return t('check.unavailable');
  if (p.status === 'failed') return t('check.blocked');
  const rtt = p.rttMs !== undefined ? t('check.rtt', { ms: p.rttMs }) : '';
  return [t('check.connected_in', { ms: p.ms ?? 0 }), rtt].filter(Boolean).join(' · ');
}

/** Shows the check page and runs the check. */
export async function showCheck() {
  document.title = `${t('check.title')} — Veche`;
  const preview = h('video', { id: 'check-preview', autoplay: true, muted: true, playsinline: true });
  const meter = h('div', { class: 'meter-fill', id: 'check-meter' });
  const rows = {
    camera: row('camera', t('check.camera')),
    microphone: row('microphone', t('check.microphone')),
    udp: row('udp', t('check.probe_udp')),
    tcp: row('tcp', t('check.probe_tcp')),
    turn_udp: row('turn_udp', t('check.probe_turn_udp')),
    turn_tls: row('turn_tls', t('check.probe_turn_tls')),
    download: row('download', t('check.download')),
  };
  const verdict = h('p', { class: 'check-verdict', id: 'check-verdict', text: t('check.running') });
  const reportBox = h('textarea', { id: 'check-report', readonly: true, rows: 12, 'aria-label': t('check.report') });
  const copy = h('button', { id: 'check-copy', type: 'button', disabled: true, text: t('check.copy') });
  copy.addEventListener('click', async () => {
    copy.textContent = (await copyText(reportBox.value)) ? t('check.copied') : t('check.copy');
  });
  show(h('div', { class: 'card check-page', id: 'check-page' },
    h('h1', { text: t('check.title') }),
    h('p', { class: 'muted', text: t('check.intro') }),
    h('div', { class: 'check-devices' }, preview, h('div', { class: 'meter check-meter', title: t('check.microphone') }, meter)),
    h('ul', { class: 'check-rows' }, ...Object.values(rows).map(r => r.el)),
    verdict,
    h('h2', { text: t('check.report') }),
    reportBox,
    h('div', { class: 'row' }, copy, h('a', { class: 'button', href: '/', text: t('ended.home') }))));

  // Probes first, all at once (each is its own connection); devices meanwhile.
  const probing = Promise.all(PROBES.map(kind => probe(kind).then(p => {
    rows[kind].set(p.status, probeText(p));
    return p;
  })));
  const { camera, microphone } = await checkDevices(preview, meter);
  rows.camera.set(camera.status, camera.status === 'ok' ? t('check.works') : t('check.device_failed', { error: camera.error ?? '' }));
  rows.microphone.set(microphone.status, microphone.status === 'ok' ? t('check.works') : t('check.device_failed', { error: microphone.error ?? '' }));
  const list = await probing;
  const probes = /** @type {Record<ProbeKind, ProbeResult>} */ (Object.fromEntries(list.map(p => [p.kind, p])));
  // The download last, so it does not compete with the probes.
  const download = await measureDownload();
  rows.download.set(download.status, download.status === 'ok'
    ? t('check.mbps', { mbps: download.mbps ?? 0 }) : t('check.blocked'));
  const code = verdictCode(probes);
  const devicesOk = camera.status === 'ok' && microphone.status === 'ok';
  verdict.dataset.verdict = code;
  verdict.textContent = [t(`check.verdict_${code}`), devicesOk ? '' : t('check.verdict_devices')].filter(Boolean).join(' ');
  const results = { probes, camera, microphone, download, verdict: code };
  reportBox.value = report(results);
  copy.disabled = false;
  /** @type {any} */ (window).vecheCheck = { ...results, report: reportBox.value };
  document.getElementById('check-page')?.setAttribute('data-done', 'true');
}

// What a page's peer connection receives, read from getStats through the client's test hook
// (`window.veche.pc`). Works with Playwright and Puppeteer pages alike (both have
// `evaluate`).

/**
 * @typedef {{mid: string, framesDecoded: number}} VideoIn
 * @typedef {{mid: string, packetsReceived: number}} AudioIn
 * @typedef {{evaluate: Function}} AnyPage a Playwright or Puppeteer page
 */

/**
 * Inbound RTP counters of a page's peer connection, or null before it has one.
 * @param {AnyPage} page
 * @returns {Promise<{video: VideoIn[], audio: AudioIn[]} | null>}
 */
export function inbound(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const pc = /** @type {RTCPeerConnection | null} */ (window.veche?.pc ?? null);
    if (!pc) return null;
    const report = await pc.getStats();
    /** @type {{mid: string, framesDecoded: number}[]} */
    const video = [];
    /** @type {{mid: string, packetsReceived: number}[]} */
    const audio = [];
    // One entry per receiver: Chromium reports an entry per SSRC seen, and str0m's bandwidth
    // probes travel on their own SSRC under a media m-line's mid; the media is the busier one.
    /** @type {Map<string, any>} */
    const byMid = new Map();
    report.forEach(s => {
      if (s.type !== 'inbound-rtp') return;
      if ((byMid.get(s.mid)?.packetsReceived ?? -1) < (s.packetsReceived ?? 0)) byMid.set(s.mid, s);
    });
    byMid.forEach(s => {
      if (s.kind === 'video') video.push({ mid: s.mid, framesDecoded: s.framesDecoded ?? 0 });
      else if (s.kind === 'audio') audio.push({ mid: s.mid, packetsReceived: s.packetsReceived ?? 0 });
    });
    return { video, audio };
  });
}

/**
 * Polls until the page decodes `videos` remote videos and receives `audios` remote audio
 * tracks; throws after `timeoutMs` with the last stats and `context()` (e.g. the server log).
 * @param {AnyPage} page
 * @param {string} who
 * @param {{videos: number, audios: number, timeoutMs?: number, context?: () => string}} want
 */
export async function waitForMedia(page, who, want) {
  const timeoutMs = want.timeoutMs ?? 30000;
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await inbound(page);
    if (last) {
      const videos = last.video.filter(v => v.framesDecoded > 0).length;
      const audios = last.audio.filter(a => a.packetsReceived > 0).length;
      if (videos >= want.videos && audios >= want.audios) return last;
    }
    await new Promise(r => setTimeout(r, 200));
  }
  throw new Error(`${who}: wanted ${want.videos} decoded videos and ${want.audios} audio tracks within ` +
    `${timeoutMs / 1000} s, last stats: ${JSON.stringify(last)}${want.context ? `\n${want.context()}` : ''}`);
}

/**
 * Polls (every 50 ms) until the page decodes its first remote video frame; resolves to that
 * moment (`Date.now()`).
 * @param {AnyPage} page
 * @param {string} who
 * @param {{deadline: number, context?: () => string}} options
 */
export async function firstFrameAt(page, who, options) {
  let stats = null;
  while (Date.now() < options.deadline) {
    stats = await inbound(page);
    if (stats && stats.video.some(v => v.framesDecoded > 0)) return Date.now();
    await new Promise(r => setTimeout(r, 50));
  }
  throw new Error(`${who}: no remote video frame decoded in time, last stats: ${JSON.stringify(stats)}` +
    `${options.context ? `\n${options.context()}` : ''}`);
}

/**
 * The candidate pair the page's transport uses: each side's protocol, address and type, or
 * null while none is selected.
 * @param {AnyPage} page
 * @returns {Promise<{local: {protocol: string, address: string, candidateType: string, relayProtocol?: string},
 *   remote: {protocol: string, address: string, port: number, candidateType: string}} | null>}
 */
export function selectedPair(page) {
  return page.evaluate(async () => {
    // @ts-ignore the client's test hook
    const pc = /** @type {RTCPeerConnection | null} */ (window.veche?.pc ?? null);
    if (!pc) return null;
    const report = await pc.getStats();
    /** @type {Map<string, any>} */
    const byId = new Map();
    report.forEach(s => byId.set(s.id, s));
    /** @type {any} */
    let pair = null;
    // Chromium names the pair on the transport; Firefox marks it `selected` (and both
    // `nominated`).
    report.forEach(s => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    if (!pair) {
      report.forEach(s => {
        if (s.type === 'candidate-pair' && s.selected && s.state === 'succeeded') pair = s;
      });
    }
    if (!pair) return null;
    const local = byId.get(pair.localCandidateId);
    const remote = byId.get(pair.remoteCandidateId);
    if (!local || !remote) return null;
    return {
      local: { protocol: local.protocol, address: local.address ?? local.ip, candidateType: local.candidateType, relayProtocol: local.relayProtocol },
      remote: { protocol: remote.protocol, address: remote.address ?? remote.ip, port: remote.port, candidateType: remote.candidateType },
    };
  });
}

/**
 * Polls `probe` every 100 ms until `ok` holds for its result; returns it, or throws after
 * `timeoutMs` with the last result and `context()` (e.g. the tail of the server log).
 * @template T
 * @param {string} what
 * @param {() => Promise<T>} probe
 * @param {(v: T) => boolean} ok
 * @param {number} timeoutMs
 * @param {() => string} [context]
 * @returns {Promise<T>}
 */
export async function until(what, probe, ok, timeoutMs, context = () => '') {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (ok(last)) return last;
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${context()}`);
}

/**
 * The longest time, over the page's decoding videos (but those on `skipMids`), in which one
 * did not decode a frame, sampled every 100 ms for `ms`.
 * @param {AnyPage} page
 * @param {number} ms
 * @param {Set<string>} skipMids
 */
export async function longestStall(page, ms, skipMids) {
  /** @type {Map<string, {frames: number, at: number, worst: number}>} */
  const seen = new Map();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const stats = await inbound(page);
    const now = Date.now();
    for (const v of stats?.video ?? []) {
      if (skipMids.has(v.mid)) continue;
      const s = seen.get(v.mid);
      if (!s) seen.set(v.mid, { frames: v.framesDecoded, at: now, worst: 0 });
      else if (v.framesDecoded > s.frames) Object.assign(s, { frames: v.framesDecoded, at: now });
      else s.worst = Math.max(s.worst, now - s.at);
    }
    await new Promise(r => setTimeout(r, 100));
  }
  let worst = { ms: 0, mid: '' };
  for (const [mid, s] of seen) if (s.frames > 0 && s.worst > worst.ms) worst = { ms: s.worst, mid };
  return worst;
}

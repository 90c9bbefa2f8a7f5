// Connection quality per participant, from our own receive statistics (loss, jitter, freezes
// and concealed audio of what we get from them, and our round trip to the server) and, when
// the server sends `connection_quality`, its view of that participant's own link. The worse
// of the two is shown.

import { t } from './i18n.js';

/**
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./protocol.js').Quality} Quality
 */

/** How often statistics are read. */
export const POLL_MS = 2000;

/** A level must hold for this many polls in a row before the indicator gets better. */
const POLLS_TO_IMPROVE = 2;

/**
 * What we measured for one participant over the last poll interval.
 * @typedef {object} Figures
 * @property {number | null} loss fraction of packets lost (0–1), null without packets
 * @property {number | null} jitterMs the jitter of their audio
 * @property {number | null} rttMs our round trip to the server
 * @property {number} freezes video freezes in the interval
 * @property {number | null} concealed fraction of audio samples concealed (0–1)
 * @property {{width: number, height: number, fps: number} | null} video the camera video we
 *   receive from them: frame size and rate (not judged; the server picks it for our tile)
 */

/**
 * One participant's indicator.
 * @typedef {object} QualityReport
 * @property {Quality | null} quality null: nothing to judge yet
 * @property {Figures | null} figures
 * @property {Quality | null} server
 * @property {string} text a human-readable summary, for the tooltip
 */

/** @type {Record<Quality, number>} */
const RANK = { good: 0, fair: 1, poor: 2 };

/**
 * @param {Quality} a
 * @param {Quality} b
 * @returns {Quality}
 */
function worse(a, b) {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * Judges one interval's figures. Thresholds follow what users notice: a few percent loss or
 * concealment and 40 ms of jitter are audible; 10 % loss or 100 ms jitter break speech up.
 * @param {Figures} f
 * @returns {Quality | null}
 */
export function assess(f) {
  if (f.loss === null && f.concealed === null) return null;
  const loss = f.loss ?? 0;
  const concealed = f.concealed ?? 0;
  const jitter = f.jitterMs ?? 0;
  const rtt = f.rttMs ?? 0;
  if (loss >= 0.1 || concealed >= 0.1 || jitter >= 100 || rtt >= 700 || f.freezes >= 2) return 'poor';
  if (loss >= 0.03 || concealed >= 0.03 || jitter >= 40 || rtt >= 350 || f.freezes >= 1) return 'fair';
  return 'good';
}

/**
 * @param {Figures | null} f
 * @param {Quality | null} server
 * @param {Quality | null} quality
 */
function describe(f, server, quality) {
  const parts = [t('quality.connection', { quality: t(`quality.${quality ?? 'unknown'}`) })];
  if (f) {
    const pct = (/** @type {number} */ x) => (x * 100).toFixed(1);
    if (f.loss !== null) parts.push(t('quality.loss', { pct: pct(f.loss) }));
    if (f.jitterMs !== null) parts.push(t('quality.jitter', { ms: Math.round(f.jitterMs) }));
    if (f.rttMs !== null) parts.push(t('quality.rtt', { ms: Math.round(f.rttMs) }));
    parts.push(t('quality.freezes', { count: f.freezes }));
    if (f.video) parts.push(t('quality.video', { width: String(f.video.width), height: String(f.video.height), fps: Math.round(f.video.fps) }));
    if (f.concealed !== null) parts.push(t('quality.concealed', { pct: pct(f.concealed) }));
  }
  if (server) parts.push(t('quality.server', { quality: t(`quality.${server}`) }));
  return parts.join(', ');
}


/**
 * Counters of one inbound (or, for ourselves, outbound) stream at the last poll.
 * @typedef {{received: number, lost: number, freezes: number, samples: number, concealed: number}} Counters
 */

export class QualityMonitor {
  constructor() {
    /** @type {Map<string, Counters>} by stats id */
    this.previous = new Map();
    /** The server's view, by participant, and when it came. @type {Map<ParticipantId, {quality: Quality, at: number}>} */
    this.server = new Map();
    /** The level shown and how many polls in a row measured better. @type {Map<ParticipantId | 'self', {shown: Quality, better: number}>} */
    this.shown = new Map();
  }

  /**
   * The server lists the whole room each time, and only when something changed: a report
   * stands until the next one replaces it (someone missing from it has no server view).
   * @param {{participant_id: ParticipantId, quality: Quality}[]} list
   */
  serverReport(list) {
    this.server.clear();
    for (const { participant_id, quality } of list) {
      if (quality in RANK) this.server.set(participant_id, { quality, at: performance.now() });
    }
  }

  /** After a reconnect the streams and ids are new. */
  reset() {
    this.previous.clear();
    this.server.clear();
    this.shown.clear();
  }

  /**
   * Reads the statistics once and judges every participant we receive from, and ourselves.
   * @param {RTCPeerConnection} pc
   * @param {Map<string, {participantId: ParticipantId, kind: TrackKind}>} owners remote tracks by mid
   * @param {ParticipantId | null} selfId
   * @returns {Promise<Map<ParticipantId | 'self', QualityReport>>}
   */
  async poll(pc, owners, selfId) {
    const stats = await pc.getStats();
    /** @type {Map<ParticipantId | 'self', {received: number, lost: number, freezes: number, samples: number, concealed: number, jitter: number | null, any: boolean, audio: boolean, video: Figures['video']}>} */
    const sums = new Map();
    /** @param {ParticipantId | 'self'} key */
    const sumOf = key => {
      let s = sums.get(key);
      if (!s) {
        s = { received: 0, lost: 0, freezes: 0, samples: 0, concealed: 0, jitter: null, any: false, audio: false, video: null };
        sums.set(key, s);
      }
      return s;
    };
    /** @type {number | null} */
    let rttMs = null;
    /** @type {Map<string, Counters>} */
    const seen = new Map();
    stats.forEach(/** @param {any} s */ s => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') {
        rttMs = s.currentRoundTripTime * 1000;
      }
      /** @type {ParticipantId | 'self' | undefined} */
      let key;
      /** @type {Counters} */
      let now;
      if (s.type === 'inbound-rtp') {
        key = owners.get(s.mid)?.participantId;
        now = {
          received: s.packetsReceived ?? 0, lost: Math.max(0, s.packetsLost ?? 0), freezes: s.freezeCount ?? 0,
          samples: s.totalSamplesReceived ?? 0, concealed: s.concealedSamples ?? 0,
        };
      } else if (s.type === 'remote-inbound-rtp' && selfId !== null) {
        // The server's receiver reports about what we send.
        key = 'self';
        const sent = stats.get(s.localId)?.packetsSent ?? 0;
        now = { received: sent, lost: Math.max(0, s.packetsLost ?? 0), freezes: 0, samples: 0, concealed: 0 };
      } else {
        return;
      }
      if (key === undefined) return;
      seen.set(s.id, now);
      const before = this.previous.get(s.id);
      if (!before) return;
      const sum = sumOf(key);
      const lost = Math.max(0, now.lost - before.lost);
      const got = Math.max(0, now.received - before.received);
      // For our own streams `received` counts what we sent, which already includes the lost.
      sum.received += key === 'self' ? Math.max(0, got - lost) : got;
      sum.lost += lost;
      sum.freezes += Math.max(0, now.freezes - before.freezes);
      if (s.type === 'inbound-rtp' && owners.get(s.mid)?.kind === 'video' && s.frameHeight) {
        sum.video = { width: s.frameWidth ?? 0, height: s.frameHeight, fps: s.framesPerSecond ?? 0 };
      }
      if (s.kind === 'audio' && s.type === 'inbound-rtp') {
        sum.audio = true;
        sum.samples += Math.max(0, now.samples - before.samples);
        sum.concealed += Math.max(0, now.concealed - before.concealed);
      }
      // Audio jitter only: video's is mostly its frames' packets arriving in bursts (a
      // keyframe, a screen share), which its jitter buffer absorbs and users do not notice.
      if (s.kind === 'audio' && typeof s.jitter === 'number') sum.jitter = Math.max(sum.jitter ?? 0, s.jitter * 1000);
      sum.any = true;
    });
    this.previous = seen;

    /** @type {Map<ParticipantId | 'self', QualityReport>} */
    const reports = new Map();
    const keys = new Set([...sums.keys(), ...[...this.server.keys()].map(id => (id === selfId ? 'self' : id))]);
    for (const key of keys) {
      const sum = sums.get(key);
      /** @type {Figures | null} */
      const figures = sum && sum.any ? {
        loss: sum.received + sum.lost > 0 ? sum.lost / (sum.received + sum.lost) : null,
        jitterMs: sum.jitter,
        rttMs,
        freezes: sum.freezes,
        concealed: sum.audio && sum.samples > 0 ? sum.concealed / sum.samples : null,
        video: sum.video,
      } : null;
      const server = this.server.get(key === 'self' ? selfId ?? -1 : key)?.quality ?? null;
      const measured = figures ? assess(figures) : null;
      const raw = measured && server ? worse(measured, server) : measured ?? server;
      const quality = raw ? this.#settle(key, raw) : null;
      reports.set(key, { quality, figures, server, text: describe(figures, server, quality) });
    }
    return reports;
  }

  /**
   * Worse shows at once; better only after it held for a few polls, so the bars do not blink.
   * @param {ParticipantId | 'self'} key
   * @param {Quality} measured
   * @returns {Quality}
   */
  #settle(key, measured) {
    const state = this.shown.get(key);
    if (!state || RANK[measured] >= RANK[state.shown]) {
      this.shown.set(key, { shown: measured, better: 0 });
      return measured;
    }
    state.better += 1;
    if (state.better >= POLLS_TO_IMPROVE) {
      state.shown = measured;
      state.better = 0;
    }
    return state.shown;
  }
}

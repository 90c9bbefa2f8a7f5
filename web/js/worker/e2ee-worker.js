// The media worker of an end-to-end encrypted meeting (RTCRtpScriptTransform). Every outgoing
// audio and video frame is encrypted with SFrame (../sframe.js) under this participant's key
// of the current MLS epoch; every incoming frame is decrypted with its sender's key, which the
// KID in its SFrame header names (sender's leaf index and the epoch's low bits). A frame that
// does not decrypt is dropped, never passed on: the decoder sees only authentic media.
//
// The page posts `{type: 'epoch', epoch, secret, leaf}` for every new epoch (the MLS exporter's
// SFrame base secret and our leaf index). Keys of the previous epochs keep decrypting for
// GRACE_MS, so a frame sent just before a sender moved on still plays. Once a second the worker
// posts `{type: 'stats', transforms}`: per transform, the epoch it last used and how many
// frames went through or failed since the last report (the badge is built from it).
//
// In an `optional` meeting the page posts `{type: 'plain', plain}` as someone who cannot
// encrypt comes in (`true`) and when the last of them has left (`false`). While plain, frames
// we send go out as they are, and a received frame that does not decrypt is passed on as it
// is; one that decrypts is still decrypted. The switch to plain takes effect at once for
// receiving and SEND_SWITCH_DELAY_MS later for sending (the others may still drop clear
// frames until they hear of it); back to encrypted, sending encrypts at once and receiving
// keeps taking clear frames for PLAIN_GRACE_MS from those not yet switched.

import { EPOCH_BITS, decodeHeader, decryptFrame, deriveKey, encryptFrame } from '../sframe.js';

/** How long the keys of an epoch still decrypt after the next epoch arrives. */
const GRACE_MS = 5000;
/**
 * VP8 bytes left in the clear: the frame tag (3 bytes: keyframe flag, partition size) and, on
 * a keyframe, the start code and the dimensions — what the SFU's keyframe detection and the
 * receiver's depacketiser read. Opus frames are encrypted whole.
 */
const VP8_CLEAR_KEY = 10;
const VP8_CLEAR_DELTA = 3;
const STATS_MS = 1000;
/**
 * After a change of epoch, we keep sending with the previous epoch's key this long, while the
 * others process the same commit: a frame under a key its receivers do not have yet would be
 * dropped, and a dropped video frame stalls the decoder until the next keyframe. Receiving
 * uses the new keys at once. (A member the change removes is no longer forwarded media.)
 */
const SEND_SWITCH_DELAY_MS = 300;
const EPOCH_MASK = (1n << BigInt(EPOCH_BITS)) - 1n;
/** After leaving plain mode, clear frames are still taken this long. */
const PLAIN_GRACE_MS = 1000;
/** We send in the clear (an `optional` meeting with someone in it who cannot decrypt). */
let sendPlain = false;
/** Until when a received frame that does not decrypt is passed on as it is (ms). */
let takePlainUntil = 0;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let plainTimer;

/** @param {boolean} plain */
function setPlain(plain) {
  clearTimeout(plainTimer);
  if (plain) {
    takePlainUntil = Infinity;
    plainTimer = setTimeout(() => { sendPlain = true; }, SEND_SWITCH_DELAY_MS);
  } else {
    sendPlain = false;
    takePlainUntil = Date.now() + PLAIN_GRACE_MS;
  }
}

/** @typedef {{kid: bigint, key: CryptoKey, salt: Uint8Array<ArrayBuffer>}} FrameKey */
/**
 * @typedef {object} Epoch
 * @property {bigint} epoch
 * @property {Uint8Array<ArrayBuffer>} secret
 * @property {number} retireAt when its keys stop decrypting (Infinity for the current one)
 * @property {Map<number, Promise<FrameKey>>} keys by sender leaf
 */
/**
 * @typedef {object} TransformStats
 * @property {number} id
 * @property {'send' | 'recv'} side
 * @property {string} kind
 * @property {number} epoch the epoch of the last frame it encrypted or decrypted (-1: none)
 * @property {number} ok frames through since the last report
 * @property {number} failed frames dropped since the last report (no key yet, or not authentic)
 * @property {number} plain frames passed in the clear since the last report (plain mode)
 * @property {number} busyMs time spent encrypting or decrypting since the last report
 */

/** Epochs whose keys decrypt, by the epoch's low bits as KIDs carry them. @type {Map<number, Epoch>} */
const epochs = new Map();
/** @type {{epoch: Epoch, leaf: number, key: Promise<FrameKey>, ctr: bigint} | null} */
let sending = null;
/**
 * How long a received frame under the next epoch's key waits for that key (a sender that
 * processed the commit before us), instead of being dropped: a dropped video frame would
 * stall the decoder until the next keyframe.
 */
const KEY_WAIT_MS = 2000;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let switchTimer;
/** The newest epoch installed. @type {bigint | null} */
let latest = null;
/** Frames waiting for the next epoch's key. @type {(() => void)[]} */
let waiters = [];

/** Resolves when the next epoch is installed, or after `ms`. @param {number} ms */
function nextEpoch(ms) {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    waiters.push(() => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/**
 * Whether a frame that did not decrypt names the epoch after our newest one.
 * @param {Uint8Array<ArrayBuffer>} data @param {number} clear
 */
function underNextEpoch(data, clear) {
  const h = decodeHeader(data.subarray(clear));
  return latest !== null && h !== null && (h.kid & EPOCH_MASK) === ((latest + 1n) & EPOCH_MASK);
}
/** @type {Map<number, TransformStats>} */
const stats = new Map();
/** Send transformers of video, asked for a keyframe when the first key arrives. @type {Set<any>} */
const videoSenders = new Set();

/** @param {Epoch} e @param {number} leaf */
function keyOf(e, leaf) {
  let k = e.keys.get(leaf);
  if (!k) {
    k = deriveKey(e.secret, leaf, e.epoch);
    e.keys.set(leaf, k);
  }
  return k;
}

/** @param {bigint} kid */
async function keyForKid(kid) {
  const e = epochs.get(Number(kid & EPOCH_MASK));
  if (!e) return undefined;
  if (e.retireAt < Date.now()) {
    epochs.delete(Number(e.epoch & EPOCH_MASK));
    return undefined;
  }
  return keyOf(e, Number(kid >> BigInt(EPOCH_BITS)));
}

/**
 * @param {{epoch: number, secret: Uint8Array<ArrayBuffer>, leaf: number}} m
 */
function installEpoch(m) {
  const epoch = BigInt(m.epoch);
  const now = Date.now();
  for (const e of epochs.values()) {
    if (e.retireAt === Infinity) e.retireAt = now + GRACE_MS;
  }
  /** @type {Epoch} */
  const e = { epoch, secret: m.secret, retireAt: Infinity, keys: new Map() };
  epochs.set(Number(epoch & EPOCH_MASK), e);
  latest = epoch;
  const woken = waiters;
  waiters = [];
  for (const wake of woken) wake();
  const first = sending === null;
  const next = { epoch: e, leaf: m.leaf, key: keyOf(e, m.leaf), ctr: 0n };
  clearTimeout(switchTimer);
  if (first) sending = next;
  else switchTimer = setTimeout(() => { sending = next; }, SEND_SWITCH_DELAY_MS);
  if (first) {
    // Frames before the first key were dropped: start the receivers' decoders cleanly.
    for (const t of videoSenders) {
      try {
        t.generateKeyFrame?.()?.catch(() => {});
      } catch {
        // No track on this sender yet: its first frame is a keyframe anyway.
      }
    }
  }
}

/**
 * @param {any} frame RTCEncodedVideoFrame or RTCEncodedAudioFrame
 * @param {string} kind
 */
function clearBytes(frame, kind) {
  if (kind === 'audio') return 0;
  return frame.type === 'key' ? VP8_CLEAR_KEY : VP8_CLEAR_DELTA;
}

let nextId = 0;

/** @param {any} transformer RTCRtpScriptTransformer */
function setUp(transformer) {
  /** @type {{side: 'send' | 'recv', kind: string}} */
  const { side, kind } = transformer.options;
  /** @type {TransformStats} */
  const s = { id: nextId++, side, kind, epoch: -1, ok: 0, failed: 0, plain: 0, busyMs: 0 };
  stats.set(s.id, s);
  if (side === 'send' && kind !== 'audio') videoSenders.add(transformer);
  const transform = new TransformStream({
    /** @param {any} frame @param {TransformStreamDefaultController<any>} out */
    async transform(frame, out) {
      const data = new Uint8Array(frame.data);
      if (data.length === 0) {
        out.enqueue(frame);
        return;
      }
      const clear = Math.min(clearBytes(frame, kind), data.length);
      const started = performance.now();
      if (side === 'send') {
        if (sendPlain) {
          s.plain++;
          out.enqueue(frame);
          return;
        }
        const k = sending;
        if (!k) {
          s.failed++;
          return;
        }
        const ctr = k.ctr++;
        const sealed = await encryptFrame(await k.key, ctr, data, clear);
        frame.data = sealed.buffer;
        s.epoch = Number(k.epoch.epoch);
        s.ok++;
        s.busyMs += performance.now() - started;
        out.enqueue(frame);
      } else {
        let opened = await decryptFrame(keyForKid, data, clear);
        if (!opened && Date.now() < takePlainUntil) {
          s.busyMs += performance.now() - started;
          s.plain++;
          out.enqueue(frame);
          return;
        }
        if (!opened && underNextEpoch(data, clear)) {
          // The sender is a step ahead: hold this frame (and so the ones behind it) until
          // our copy of the commit gives us the key.
          await nextEpoch(KEY_WAIT_MS);
          opened = await decryptFrame(keyForKid, data, clear);
        }
        s.busyMs += performance.now() - started;
        if (!opened) {
          s.failed++;
          return;
        }
        frame.data = opened.frame.buffer;
        const e = epochs.get(Number(opened.kid & EPOCH_MASK));
        if (e) s.epoch = Number(e.epoch);
        s.ok++;
        out.enqueue(frame);
      }
    },
  });
  transformer.readable.pipeThrough(transform).pipeTo(transformer.writable).catch(() => {
    // The transceiver stopped.
  }).finally(() => {
    stats.delete(s.id);
    videoSenders.delete(transformer);
  });
}

const scope = /** @type {any} */ (self);

scope.onrtctransform = (/** @type {any} */ event) => setUp(event.transformer);

scope.onmessage = (/** @type {MessageEvent} */ event) => {
  const m = event.data;
  if (m && m.type === 'epoch') installEpoch(m);
  if (m && m.type === 'plain') setPlain(Boolean(m.plain));
};

setInterval(() => {
  const transforms = [...stats.values()].map(s => ({ ...s }));
  for (const s of stats.values()) {
    s.ok = 0;
    s.failed = 0;
    s.plain = 0;
    s.busyMs = 0;
  }
  scope.postMessage({ type: 'stats', transforms });
}, STATS_MS);

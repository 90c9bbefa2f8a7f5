// End-to-end encryption of one connection to a meeting whose `e2ee` is `required` or
// `optional` (and a browser that can encrypt): the MLS
// member (mls.js, loaded on demand) that follows the server's delivery-service messages, and
// the media worker (worker/e2ee-worker.js) whose transforms encrypt every frame we send and
// decrypt every frame we receive with the current epoch's SFrame keys.
//
// The server never sees a key: it relays our key package, asks us (when we are the designated
// committer) to commit who joins and leaves, and relays commits and Welcomes. Each accepted
// commit starts a new epoch with new keys and a new security code.
//
// In an `optional` meeting someone whose browser cannot encrypt may be in: while they are,
// `setPlain` has the worker send our media in the clear and accept clear media (it still
// decrypts what is encrypted, so the switch either way loses no frame), chat goes unsealed,
// and the status says who keeps the meeting from being end-to-end encrypted.

import { currentUser } from './api.js';

/** Where this browser keeps its signature key (one per browser profile and site). */
const SIGNING_KEY = 'veche.e2ee.signing';
/** Where it keeps the fingerprints it has seen, by account: trust on first use. */
const KNOWN_KEYS = 'veche.e2ee.known';
/**
 * Each member renews its own leaf's keys (an MLS update commit) this often, with jitter, so a
 * key taken from a browser during a long meeting stops opening its media (post-compromise
 * security).
 */
const KEY_ROTATION_MS = 15 * 60 * 1000;

/**
 * @typedef {import('./protocol.js').ClientMessage} ClientMessage
 * @typedef {import('./protocol.js').ServerMessage} ServerMessage
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./mls.js').MlsMember} MlsMember
 */

/**
 * What the meeting shows about encryption.
 * @typedef {object} E2eeStatus
 * @property {boolean} encrypted every track we send and receive went through the current
 *   epoch's keys in the last report, and none failed
 * @property {string} code the security code of the current epoch ('' before the group exists)
 * @property {number} epoch -1 before the group exists
 * @property {string} fingerprint of our own signature key
 * @property {RosterEntry[]} roster everyone in the group, ourselves included
 * @property {string[]} plain in an `optional` meeting, the names of those in it whose browser
 *   cannot encrypt (while there are any, nothing is end-to-end encrypted); empty otherwise
 * @property {boolean} [self] this browser is the one that cannot encrypt (no group, no keys)
 */

/**
 * A member of the group as its credential names it, and whether this browser knew its
 * account with another key (trust on first use: the first key seen for an account is kept).
 * @typedef {import('./mls.js').MemberInfo & {keyChanged: boolean}} RosterEntry
 */

/**
 * This browser's signature key: the same in every meeting, so that others recognise it.
 * @returns {Promise<import('./mls.js').SigningKey>}
 */
async function signingKey() {
  const { MlsMember, fromBase64, toBase64 } = await import('./mls.js');
  try {
    const kept = JSON.parse(localStorage.getItem(SIGNING_KEY) ?? 'null');
    if (kept && typeof kept.signKey === 'string' && typeof kept.publicKey === 'string') {
      return { signKey: fromBase64(kept.signKey), publicKey: fromBase64(kept.publicKey) };
    }
  } catch {
    // unreadable: make a new one
  }
  const key = await MlsMember.signingKey();
  try {
    localStorage.setItem(SIGNING_KEY, JSON.stringify({ signKey: toBase64(key.signKey), publicKey: toBase64(key.publicKey) }));
  } catch {
    // storage off: a new key (and fingerprint) in every meeting
  }
  return key;
}

/** @returns {Record<string, string>} */
function knownKeys() {
  try {
    const v = JSON.parse(localStorage.getItem(KNOWN_KEYS) ?? '{}');
    return v && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

/** Chat keys of this many epochs before the current one still open messages. */
const CHAT_EPOCHS_KEPT = 4;
/** How long a message sealed under an epoch we do not have yet waits for it (or our own
 * message for the first epoch), ms. */
const CHAT_KEY_WAIT_MS = 10000;
/** The version byte of a sealed chat message. */
const SEALED_V1 = 1;
/** Version, epoch (8 bytes), nonce (12): what precedes the AES-GCM ciphertext. */
const SEALED_HEADER = 21;

/**
 * What a sealed message's AES-GCM authenticates beside its text: its header and the
 * participant the server says sent it, so the server cannot pass one member's message off as
 * another's.
 * @param {Uint8Array} header @param {ParticipantId} from
 */
function chatAad(header, from) {
  const id = new TextEncoder().encode(String(from));
  const aad = new Uint8Array(header.length + id.length);
  aad.set(header);
  aad.set(id, header.length);
  return aad;
}

/** Whether this browser can encrypt media end to end (the transform API and WebCrypto). */
export function canEncrypt() {
  return typeof RTCRtpScriptTransform === 'function' && Boolean(globalThis.crypto?.subtle)
    && typeof Worker === 'function';
}

export class E2ee {
  /**
   * @param {ParticipantId} selfId our participant id, the identity of our MLS credential
   * @param {(msg: ClientMessage) => boolean} send
   * @param {(status: E2eeStatus) => void} changed
   * @param {(account: string) => void} keyChanged a known account's key differs from the one
   *   this browser saw before
   * @param {() => void} desynced our group state fell behind for good (a missed commit, or one
   *   that did not apply): the connection must start over
   */
  constructor(selfId, send, changed, keyChanged, desynced) {
    this.keyChanged = keyChanged;
    this.desynced = desynced;
    this.selfId = selfId;
    this.send = send;
    this.changed = changed;
    this.worker = new Worker(new URL('./worker/e2ee-worker.js', import.meta.url), { type: 'module' });
    this.worker.addEventListener('message', event => this.onWorker(event.data));
    /** @type {MlsMember | null} */
    this.member = null;
    /** MLS work happens one step at a time, in the order the server sent it. @type {Promise<void>} */
    this.queue = Promise.resolve();
    /**
     * Our commit waiting for the server's verdict; `rotate`: a key update, made again on the
     * next epoch if another commit wins.
     * @type {{epoch: number, newState: import('./mls.js').ClientState, rotate?: boolean} | null}
     */
    this.pending = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.rotationTimer = undefined;
    /** @type {E2eeStatus} */
    this.status = { encrypted: false, code: '', epoch: -1, fingerprint: '', roster: [], plain: [] };
    /** Accounts whose key changed that we already warned about. @type {Set<string>} */
    this.warned = new Set();
    this.stopped = false;
    /** When each epoch began here (ms since the page loaded), for tests and the rekey time. */
    this.epochStartedAt = new Map();
    /** Transforms by id, from the worker's last report. @type {any[]} */
    this.transforms = [];
    /** Frames through the worker (`plain`: passed in the clear) and the time they took, since the start, by side. */
    this.totals = { send: { frames: 0, failed: 0, plain: 0, ms: 0 }, recv: { frames: 0, failed: 0, plain: 0, ms: 0 } };
    /** The chat keys of the latest epochs, by epoch. @type {Map<number, CryptoKey>} */
    this.chatKeys = new Map();
    /** Called when an epoch's chat key arrives. @type {(() => void)[]} */
    this.chatWaiters = [];
    /** Sealed messages open one after another, in the order they came. @type {Promise<unknown>} */
    this.chatQueue = Promise.resolve();
  }

  /**
   * Waits until the chat key of `epoch` (or, without one, of any epoch) is here, at most
   * `CHAT_KEY_WAIT_MS`.
   * @param {number} [epoch]
   * @returns {Promise<boolean>} whether it is
   */
  async chatKeyFor(epoch) {
    const here = () => (epoch === undefined ? this.chatKeys.size > 0 : this.chatKeys.has(epoch));
    const deadline = Date.now() + CHAT_KEY_WAIT_MS;
    while (!here() && !this.stopped && Date.now() < deadline
      && (epoch === undefined || epoch > this.status.epoch)) {
      await new Promise(resolve => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.chatWaiters.push(() => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
    }
    return here();
  }

  /**
   * Seals a chat message under the current epoch's chat key: version, epoch, nonce, then the
   * AES-GCM ciphertext of the text (the server relays it as `sealed_chat` and cannot read it).
   * @param {string} text
   * @returns {Promise<string>} base64
   */
  async sealChat(text) {
    if (!await this.chatKeyFor()) throw new Error('no group key for chat yet');
    const epoch = this.status.epoch;
    const key = this.chatKeys.get(epoch);
    if (!key) throw new Error('no chat key for the current epoch');
    const header = new Uint8Array(SEALED_HEADER);
    header[0] = SEALED_V1;
    new DataView(header.buffer).setBigUint64(1, BigInt(epoch));
    crypto.getRandomValues(header.subarray(9));
    const sealed = new Uint8Array(await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: header.subarray(9), additionalData: chatAad(header, this.selfId) },
      key, new TextEncoder().encode(text)));
    const { toBase64 } = await import('./mls.js');
    const out = new Uint8Array(header.length + sealed.length);
    out.set(header);
    out.set(sealed, header.length);
    return toBase64(out);
  }

  /**
   * Opens a sealed chat message from `from`; null if it does not open (not sealed under a key
   * of ours, or altered). Messages open in the order they came, each waiting a little for an
   * epoch its sender reached before us.
   * @param {ParticipantId} from
   * @param {string} sealed base64
   * @returns {Promise<string | null>}
   */
  openChat(from, sealed) {
    const opened = this.chatQueue.then(async () => {
      const { fromBase64 } = await import('./mls.js');
      let bytes;
      try {
        bytes = fromBase64(sealed);
      } catch {
        return null;
      }
      if (bytes.length < SEALED_HEADER + 16 || bytes[0] !== SEALED_V1) return null;
      const header = bytes.subarray(0, SEALED_HEADER);
      const epoch = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(1));
      if (!await this.chatKeyFor(epoch)) return null;
      const key = this.chatKeys.get(epoch);
      if (!key) return null;
      try {
        const text = await crypto.subtle.decrypt(
          { name: 'AES-GCM', iv: header.subarray(9), additionalData: chatAad(header, from) },
          key, bytes.subarray(SEALED_HEADER));
        return new TextDecoder().decode(text);
      } catch {
        return null;
      }
    });
    this.chatQueue = opened.catch(() => null);
    return opened;
  }

  /**
   * In an `optional` meeting: who is in it whose browser cannot encrypt. While anyone is,
   * media and chat go in the clear.
   * @param {string[]} names
   */
  setPlain(names) {
    const was = this.status.plain.length > 0;
    const plain = names.length > 0;
    if (plain !== was) this.worker.postMessage({ type: 'plain', plain });
    if (plain !== was || names.join('\n') !== this.status.plain.join('\n')) {
      this.status = { ...this.status, plain: [...names], encrypted: plain ? false : this.status.encrypted };
      this.changed(this.status);
    }
  }

  /** Whether what we say and send must be sealed now. */
  get sealing() {
    return this.status.plain.length === 0;
  }

  /** Makes our MLS member and hands the server its key package. */
  start() {
    this.run(async () => {
      const { MlsMember, fingerprint } = await import('./mls.js');
      const [signing, me] = await Promise.all([signingKey(), currentUser().catch(() => null)]);
      this.member = await MlsMember.create(String(this.selfId), { account: me?.user.email ?? '', signing });
      this.status = { ...this.status, fingerprint: await fingerprint(signing.publicKey) };
      this.send({ type: 'mls_key_package', key_package: this.member.keyPackage() });
      this.scheduleRotation();
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.rotationTimer);
    this.worker.terminate();
  }

  /**
   * Renews our leaf's keys with an update commit (new epoch, new keys for everyone). If
   * another commit wins the epoch, it is made again on the next one.
   */
  rotateKeys() {
    this.run(async () => {
      const member = this.need();
      if (this.pending || !member.state) return; // a commit of ours is out, or no group yet
      const epoch = Number(member.epoch);
      const r = await member.commit([], []);
      this.pending = { epoch, newState: r.newState, rotate: true };
      this.send({ type: 'mls_commit', epoch, commit: r.commit, added: [], removed: [] });
    });
  }

  scheduleRotation() {
    clearTimeout(this.rotationTimer);
    this.rotationTimer = setTimeout(() => {
      this.rotateKeys();
      this.scheduleRotation();
    }, KEY_ROTATION_MS * (0.75 + Math.random() / 2));
  }

  /**
   * Encrypts what this sender sends.
   * @param {RTCRtpSender} sender
   * @param {'audio' | 'video'} kind
   */
  attachSender(sender, kind) {
    if (!sender.transform) sender.transform = new RTCRtpScriptTransform(this.worker, { side: 'send', kind });
  }

  /**
   * Decrypts what this receiver receives.
   * @param {RTCRtpReceiver} receiver
   */
  attachReceiver(receiver) {
    const kind = receiver.track.kind === 'audio' ? 'audio' : 'video';
    if (!receiver.transform) receiver.transform = new RTCRtpScriptTransform(this.worker, { side: 'recv', kind });
  }

  /**
   * Handles a delivery-service message; false if it is not one.
   * @param {ServerMessage} msg
   */
  handle(msg) {
    switch (msg.type) {
      case 'mls_create':
        this.run(async () => {
          await this.need().createGroup(msg.group_id);
          await this.newEpoch();
        });
        return true;
      case 'mls_propose':
        this.run(async () => {
          const member = this.need();
          if (Number(member.epoch) !== msg.epoch) return; // a newer propose follows
          // A commit of ours (a key update) is out on this epoch: whichever way it goes, the
          // server proposes again once it has decided, and a second commit of ours on the
          // same epoch would leave us not knowing which one it accepted.
          if (this.pending) return;
          const r = await member.commit(msg.add.map(a => a.key_package), msg.remove.map(String));
          this.pending = { epoch: msg.epoch, newState: r.newState };
          /** @type {ClientMessage} */
          const commit = {
            type: 'mls_commit', epoch: msg.epoch, commit: r.commit,
            added: msg.add.map(a => a.participant_id), removed: msg.remove,
          };
          if (r.welcome) commit.welcome = r.welcome;
          this.send(commit);
        });
        return true;
      case 'mls_commit_accepted':
        this.run(async () => {
          if (!this.pending || this.pending.epoch !== msg.epoch) return;
          this.need().merge(this.pending.newState);
          this.pending = null;
          await this.newEpoch();
        });
        return true;
      case 'mls_commit':
        this.run(async () => {
          const member = this.need();
          // Someone else's commit won this epoch: ours (if any) is void; a key update is
          // made again on the new epoch.
          const retry = this.pending?.epoch === msg.epoch && this.pending.rotate;
          if (this.pending?.epoch === msg.epoch) this.pending = null;
          if (Number(member.epoch) > msg.epoch) return; // one we already have
          if (Number(member.epoch) < msg.epoch) {
            // We missed a commit: this member can never catch up. Join again as a new one.
            this.desynced();
            return;
          }
          await member.process(msg.commit);
          await this.newEpoch();
          if (retry) this.rotateKeys();
        });
        return true;
      case 'mls_welcome':
        this.run(async () => {
          await this.need().join(msg.welcome);
          await this.newEpoch();
        });
        // A joiner's leaf arrives with no keys on the path above it: until it commits its
        // own, every commit must encrypt to each leaf under those blank nodes separately, and
        // grows with the group. Renewing at once fills the path, so commits stay ~log N
        // (e2e/mls-churn.test.mjs), and replaces the key its key package published.
        this.rotateKeys();
        return true;
      default:
        return false;
    }
  }

  /**
   * The server refused our commit (`stale_epoch`): another won, and its `mls_commit` came or
   * is on the way. Only a commit for an epoch we have left is void; a retry made since, on
   * the current epoch, stands.
   */
  commitRefused() {
    this.run(async () => {
      if (this.pending && this.member && this.pending.epoch < Number(this.member.epoch)) this.pending = null;
    });
  }

  /** The server refused our commit as invalid (`invalid_mls`): it will never apply. */
  commitInvalid() {
    this.run(async () => {
      this.pending = null;
    });
  }

  /** @param {() => Promise<void>} step */
  run(step) {
    this.queue = this.queue.then(() => (this.stopped ? undefined : step())).catch(err => {
      // A commit or Welcome that does not apply leaves us outside the group everyone else
      // is in: no keys for their media, none of ours for them.
      console.error('end-to-end encryption step failed', err);
      if (!this.stopped) this.desynced();
    });
  }

  need() {
    if (!this.member) throw new Error('no MLS member yet');
    return this.member;
  }

  /** The group moved to a new epoch: new keys for the worker, a new code for the screen. */
  async newEpoch() {
    const member = this.need();
    const leaf = member.leafOf(String(this.selfId));
    if (leaf === undefined) throw new Error('we are not in the group');
    const [secret, chatKey] = await Promise.all([member.sframeSecret(), member.chatKey()]);
    const epoch = Number(member.epoch);
    this.worker.postMessage({ type: 'epoch', epoch, secret, leaf });
    this.chatKeys.set(epoch, chatKey);
    for (const e of this.chatKeys.keys()) {
      if (e < epoch - CHAT_EPOCHS_KEPT) this.chatKeys.delete(e);
    }
    this.epochStartedAt.set(epoch, performance.now());
    const roster = this.checkKeys(await member.members());
    this.status = { ...this.status, code: member.securityCode(), epoch, roster, encrypted: false };
    this.changed(this.status);
    const woken = this.chatWaiters;
    this.chatWaiters = [];
    for (const wake of woken) wake();
  }

  /**
   * Trust on first use: remembers the first key seen for each account and flags members whose
   * account this browser knew with another key.
   * @param {import('./mls.js').MemberInfo[]} members
   * @returns {RosterEntry[]}
   */
  checkKeys(members) {
    const known = knownKeys();
    let learned = false;
    const roster = members.map(m => {
      const was = m.account ? known[m.account] : undefined;
      if (m.account && was === undefined) {
        known[m.account] = m.fingerprint;
        learned = true;
      }
      return { ...m, keyChanged: was !== undefined && was !== m.fingerprint };
    });
    if (learned) {
      try {
        localStorage.setItem(KNOWN_KEYS, JSON.stringify(known));
      } catch {
        // storage off: nothing is remembered
      }
    }
    for (const m of roster) {
      if (m.keyChanged && !this.warned.has(m.account)) {
        this.warned.add(m.account);
        this.keyChanged(m.account);
      }
    }
    return roster;
  }

  /** @param {any} m */
  onWorker(m) {
    if (!m || m.type !== 'stats' || this.stopped) return;
    this.transforms = m.transforms;
    for (const t of m.transforms) {
      const total = t.side === 'send' ? this.totals.send : this.totals.recv;
      total.frames += t.ok;
      total.failed += t.failed;
      total.plain += t.plain;
      total.ms += t.busyMs;
    }
    const epoch = this.status.epoch;
    const live = m.transforms.filter((/** @type {any} */ s) => s.ok > 0 || s.failed > 0 || s.plain > 0);
    const encrypted = this.sealing && epoch >= 0 && live.length > 0
      && live.every((/** @type {any} */ s) => s.failed === 0 && s.plain === 0 && s.epoch === epoch);
    if (encrypted !== this.status.encrypted) {
      this.status = { ...this.status, encrypted };
      this.changed(this.status);
    }
  }
}

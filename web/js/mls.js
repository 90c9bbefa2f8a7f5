// One participant's MLS member (RFC 9420) for an end-to-end encrypted meeting, on the
// vendored ts-mls. The server is only the delivery service: it relays the key package,
// commits and Welcomes this module produces and never sees a private key. Loaded on demand
// (import()) so meetings without E2EE do not fetch the library.

import {
  acceptAll,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  mlsExporter,
  processMessage,
} from "../vendor/ts-mls.js";

/** @typedef {import("../vendor/ts-mls.js").ClientState} ClientState */
/** @typedef {import("../vendor/ts-mls.js").CiphersuiteImpl} CiphersuiteImpl */
/** @typedef {import("../vendor/ts-mls.js").Proposal} Proposal */

export const CIPHERSUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
/** RFC 9605 section 5.2: the exporter label of the SFrame base key. */
const SFRAME_LABEL = "SFrame 1.0 Base Key";
/** Nh of SHA-256, the hash of SFrame's AES_128_GCM_SHA256_128. */
const SFRAME_SECRET_BYTES = 32;
/** The exporter label of the epoch's chat key (AES-128-GCM, e2ee.js seals chat with it). */
const CHAT_LABEL = "Veche chat 1";
const CHAT_KEY_BYTES = 16;

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** @param {string} text */
export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** @param {string} b64 */
function decode(b64) {
  const decoded = decodeMlsMessage(fromBase64(b64), 0);
  if (!decoded) throw new Error("not an MLS message");
  return decoded[0];
}

/**
 * A signature key pair (Ed25519: PKCS#8 private key, raw public key), kept by the browser so
 * that the same person has the same key, and so the same fingerprint, in every meeting.
 * @typedef {{signKey: Uint8Array, publicKey: Uint8Array}} SigningKey
 */

/**
 * What a member's credential says about it, with the fingerprint of its signature key.
 * @typedef {object} MemberInfo
 * @property {number} leaf
 * @property {string} participant its participant id in the room
 * @property {string} account the account it says it signs in with ('' for a guest)
 * @property {string} fingerprint of its signature key: 20 hex digits in groups of four
 */

/** The participant and account a credential names (a basic credential's identity, JSON). */
function parseIdentity(/** @type {Uint8Array | undefined} */ bytes) {
  if (!bytes) return null;
  const text = new TextDecoder().decode(bytes);
  try {
    const v = JSON.parse(text);
    if (v && typeof v.p === "string") return { participant: v.p, account: typeof v.a === "string" ? v.a : "" };
  } catch {
    // not ours: the whole identity is the participant
  }
  return { participant: text, account: "" };
}

/**
 * The fingerprint people compare for a signature key: the first 80 bits of its SHA-256.
 * @param {Uint8Array} publicKey
 */
export async function fingerprint(publicKey) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(publicKey)));
  const hex = [...digest.subarray(0, 10)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g)?.join(" ") ?? hex;
}

export class MlsMember {
  /**
   * @param {CiphersuiteImpl} cs
   * @param {string} participant
   * @param {{publicPackage: object, privatePackage: object}} keys
   */
  constructor(cs, participant, keys) {
    this.cs = cs;
    this.participant = participant;
    this.keys = keys;
    /** @type {ClientState | null} */
    this.state = null;
  }

  /** A new signature key pair. */
  static async signingKey() {
    const cs = await getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
    return cs.signature.keygen();
  }

  /**
   * A member whose credential names its participant id in the room and the account it signs
   * in with, signing with `signing` (a fresh key if none).
   * @param {string} participant
   * @param {{account?: string, signing?: SigningKey}} [options]
   */
  static async create(participant, options = {}) {
    const cs = await getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
    const credential = {
      credentialType: /** @type {const} */ ("basic"),
      identity: new TextEncoder().encode(JSON.stringify({ p: participant, a: options.account ?? "" })),
    };
    const keys = options.signing
      ? await generateKeyPackageWithKey(credential, defaultCapabilities(), defaultLifetime, [], options.signing, cs)
      : await generateKeyPackage(credential, defaultCapabilities(), defaultLifetime, [], cs);
    return new MlsMember(cs, participant, keys);
  }

  /** The key package to hand the delivery service, base64. */
  keyPackage() {
    return toBase64(
      encodeMlsMessage({ wireformat: "mls_key_package", keyPackage: this.keys.publicPackage, version: "mls10" }),
    );
  }

  /** Starts the group as its only member (epoch 0). */
  async createGroup(/** @type {string} */ groupId) {
    this.state = await createGroup(
      new TextEncoder().encode(groupId),
      this.keys.publicPackage,
      this.keys.privatePackage,
      [],
      this.cs,
    );
  }

  /** @returns {bigint} */
  get epoch() {
    return this.state ? this.state.groupContext.epoch : -1n;
  }

  /** The leaf index of the member whose credential names `participant`, if any. */
  leafOf(/** @type {string} */ participant) {
    const tree = this.state?.ratchetTree ?? [];
    for (let i = 0; i < tree.length; i += 2) {
      const node = tree[i];
      if (node?.nodeType !== "leaf") continue;
      if (parseIdentity(node.leaf.credential.identity)?.participant === participant) return i / 2;
    }
    return undefined;
  }

  /** Everyone in the group, as their credentials name them. @returns {Promise<MemberInfo[]>} */
  async members() {
    const tree = this.state?.ratchetTree ?? [];
    /** @type {MemberInfo[]} */
    const out = [];
    for (let i = 0; i < tree.length; i += 2) {
      const node = tree[i];
      if (node?.nodeType !== "leaf") continue;
      const who = parseIdentity(node.leaf.credential.identity);
      if (!who) continue;
      out.push({ leaf: i / 2, ...who, fingerprint: await fingerprint(node.leaf.signaturePublicKey) });
    }
    return out;
  }

  /**
   * A commit adding the given key packages and removing the given members. Nothing changes
   * until `merge` is called with the result, once the delivery service accepted it.
   * @param {string[]} add base64 key packages
   * @param {string[]} remove identities
   */
  async commit(add, remove) {
    if (!this.state) throw new Error("not in a group");
    /** @type {Proposal[]} */
    const proposals = [];
    for (const kp of add) {
      const m = decode(kp);
      if (m.wireformat !== "mls_key_package") throw new Error("not a key package");
      proposals.push({ proposalType: "add", add: { keyPackage: m.keyPackage } });
    }
    for (const who of remove) {
      const leaf = this.leafOf(who);
      if (leaf !== undefined) proposals.push({ proposalType: "remove", remove: { removed: leaf } });
    }
    const r = await createCommit(
      { state: this.state, cipherSuite: this.cs },
      { extraProposals: proposals, ratchetTreeExtension: true },
    );
    return {
      epoch: this.state.groupContext.epoch,
      commit: toBase64(encodeMlsMessage(r.commit)),
      welcome: r.welcome
        ? toBase64(encodeMlsMessage({ wireformat: "mls_welcome", welcome: r.welcome, version: "mls10" }))
        : undefined,
      newState: r.newState,
    };
  }

  /** Moves to the epoch of a commit of ours the delivery service accepted. */
  merge(/** @type {ClientState} */ newState) {
    this.state = newState;
  }

  /** Applies another member's commit. */
  async process(/** @type {string} */ commit) {
    if (!this.state) throw new Error("not in a group");
    const r = await processMessage(decode(commit), this.state, emptyPskIndex, acceptAll, this.cs);
    this.state = r.newState;
  }

  /** Joins from a Welcome (the ratchet tree travels in its extension). */
  async join(/** @type {string} */ welcome) {
    const m = decode(welcome);
    if (m.wireformat !== "mls_welcome") throw new Error("not a welcome");
    this.state = await joinGroup(m.welcome, this.keys.publicPackage, this.keys.privatePackage, emptyPskIndex, this.cs);
  }

  /** The epoch's SFrame base secret (RFC 9605 section 5.2), for the media worker. */
  async sframeSecret() {
    if (!this.state) throw new Error("not in a group");
    return mlsExporter(
      this.state.keySchedule.exporterSecret,
      SFRAME_LABEL,
      new Uint8Array(0),
      SFRAME_SECRET_BYTES,
      this.cs,
    );
  }

  /** The epoch's chat key, for sealing chat messages (a non-extractable WebCrypto key). */
  async chatKey() {
    if (!this.state) throw new Error("not in a group");
    const raw = await mlsExporter(
      this.state.keySchedule.exporterSecret,
      CHAT_LABEL,
      new Uint8Array(0),
      CHAT_KEY_BYTES,
      this.cs,
    );
    return crypto.subtle.importKey("raw", new Uint8Array(raw), "AES-GCM", false, ["encrypt", "decrypt"]);
  }

  /**
   * The security code people compare: 40 bits of the epoch authenticator (RFC 9420 section
   * 8.7), shown as twelve digits in groups of three. The same on every screen
   * when everyone holds the same group; a new epoch gives a new code.
   */
  securityCode() {
    if (!this.state) return "";
    const a = this.state.keySchedule.epochAuthenticator;
    let n = 0n;
    for (let i = 0; i < 5; i++) n = (n << 8n) | BigInt(a[i]);
    const digits = (n % 10n ** 12n).toString().padStart(12, "0");
    return digits.match(/.{3}/g)?.join(" ") ?? digits;
  }
}

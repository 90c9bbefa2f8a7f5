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

export class MlsMember {
  /**
   * @param {CiphersuiteImpl} cs
   * @param {string} identity
   * @param {{publicPackage: object, privatePackage: object}} keys
   */
  constructor(cs, identity, keys) {
    this.cs = cs;
    this.identity = identity;
    this.keys = keys;
    /** @type {ClientState | null} */
    this.state = null;
  }

  /** A member whose credential names it by `identity` (the participant id in the room). */
  static async create(/** @type {string} */ identity) {
    const cs = await getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
    const credential = {
      credentialType: /** @type {const} */ ("basic"),
      identity: new TextEncoder().encode(identity),
    };
    const keys = await generateKeyPackage(credential, defaultCapabilities(), defaultLifetime, [], cs);
    return new MlsMember(cs, identity, keys);
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

  /** The leaf index of the member whose credential is `identity`, if any. */
  leafOf(/** @type {string} */ identity) {
    const tree = this.state?.ratchetTree ?? [];
    const want = new TextEncoder().encode(identity);
    for (let i = 0; i < tree.length; i += 2) {
      const node = tree[i];
      const id = node?.nodeType === "leaf" ? node.leaf.credential.identity : undefined;
      if (id && id.length === want.length && id.every((b, j) => b === want[j])) return i / 2;
    }
    return undefined;
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

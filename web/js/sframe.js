// SFrame (RFC 9605) frame encryption with AES_128_GCM_SHA256_128 and MLS-derived keys
// (section 5.2), for the media worker. A frame is
//   clear prefix (codec bytes the SFU and depacketiser read) || SFrame header || ciphertext+tag
// and the prefix and header are authenticated as associated data.

/** AES_128_GCM_SHA256_128 (RFC 9605 section 4.5). */
const CIPHER_SUITE = 0x0004;
const NK = 16;
const NN = 12;
/** Low bits of the MLS epoch in a KID; the rest of the KID is the sender's leaf index. */
export const EPOCH_BITS = 4;

const enc = new TextEncoder();

/** @param {Uint8Array<ArrayBuffer>} key @param {Uint8Array<ArrayBuffer>} salt @param {Uint8Array<ArrayBuffer>} info @param {number} length */
async function hkdf(key, salt, info, length) {
  const k = await crypto.subtle.importKey("raw", key, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, k, length * 8);
  return new Uint8Array(bits);
}

/** @param {Uint8Array<ArrayBuffer>[]} parts */
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** @param {bigint} v @param {number} n */
function beBytes(v, n) {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** The minimal big-endian bytes of `v` (at least one). @param {bigint} v */
function minimal(v) {
  let n = 1;
  while (v >> BigInt(8 * n) > 0n) n++;
  return beBytes(v, n);
}

/** The KID of `leaf`'s key in `epoch`. @param {number} leaf @param {bigint} epoch */
export function kidOf(leaf, epoch) {
  return (BigInt(leaf) << BigInt(EPOCH_BITS)) | (epoch & ((1n << BigInt(EPOCH_BITS)) - 1n));
}

/**
 * The AES key and salt of one sender in one epoch (RFC 9605 sections 4.4.2 and 5.2).
 * @param {Uint8Array<ArrayBuffer>} epochSecret the MLS exporter's "SFrame 1.0 Base Key"
 * @param {number} leaf @param {bigint} epoch
 */
export async function deriveKey(epochSecret, leaf, epoch) {
  const kid = kidOf(leaf, epoch);
  const base = await hkdf(epochSecret, new Uint8Array(0), beBytes(BigInt(leaf), 4), 32);
  const suite = beBytes(BigInt(CIPHER_SUITE), 2);
  const keyBytes = await hkdf(base, new Uint8Array(0), concat(enc.encode("SFrame 1.0 Secret key "), beBytes(kid, 8), suite), NK);
  const salt = await hkdf(base, new Uint8Array(0), concat(enc.encode("SFrame 1.0 Secret salt "), beBytes(kid, 8), suite), NN);
  const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { kid, key, salt };
}

/** The SFrame header (RFC 9605 section 4.3). @param {bigint} kid @param {bigint} ctr */
export function encodeHeader(kid, ctr) {
  const kidBytes = kid < 8n ? new Uint8Array(0) : minimal(kid);
  const ctrBytes = ctr < 8n ? new Uint8Array(0) : minimal(ctr);
  const x = kid < 8n ? Number(kid) : 0x80 | ((kidBytes.length - 1) << 4);
  const y = ctr < 8n ? Number(ctr) : 0x08 | (ctrBytes.length - 1);
  return concat(new Uint8Array([(kid < 8n ? x << 4 : x) | y]), kidBytes, ctrBytes);
}

/** @param {Uint8Array<ArrayBuffer>} b @returns {{kid: bigint, ctr: bigint, length: number} | null} */
export function decodeHeader(b) {
  if (b.length < 1) return null;
  const c = b[0];
  let at = 1;
  /** @param {number} n */
  const read = (n) => {
    if (at + n > b.length) return null;
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(b[at + i]);
    at += n;
    return v;
  };
  const kid = c & 0x80 ? read(((c >> 4) & 7) + 1) : BigInt((c >> 4) & 7);
  const ctr = c & 0x08 ? read((c & 7) + 1) : BigInt(c & 7);
  if (kid === null || ctr === null) return null;
  return { kid, ctr, length: at };
}

/** @param {Uint8Array<ArrayBuffer>} salt @param {bigint} ctr */
function nonce(salt, ctr) {
  const c = beBytes(ctr, NN);
  return salt.map((s, i) => s ^ c[i]);
}

/**
 * @param {{kid: bigint, key: CryptoKey, salt: Uint8Array<ArrayBuffer>}} k
 * @param {bigint} ctr a counter never reused with this key
 * @param {Uint8Array<ArrayBuffer>} frame @param {number} clear bytes left readable at the start
 */
export async function encryptFrame(k, ctr, frame, clear) {
  const prefix = frame.subarray(0, clear);
  const header = encodeHeader(k.kid, ctr);
  const aad = concat(prefix, header);
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce(k.salt, ctr), additionalData: aad },
    k.key,
    frame.subarray(clear),
  );
  return concat(aad, new Uint8Array(ct));
}

/**
 * @param {(kid: bigint) => Promise<{kid: bigint, key: CryptoKey, salt: Uint8Array<ArrayBuffer>} | undefined>} keyFor
 * @param {Uint8Array<ArrayBuffer>} data @param {number} clear
 * @returns {Promise<{frame: Uint8Array, kid: bigint} | null>} null when it does not decrypt
 */
export async function decryptFrame(keyFor, data, clear) {
  const h = decodeHeader(data.subarray(clear));
  if (!h) return null;
  const k = await keyFor(h.kid);
  if (!k) return null;
  const aad = data.subarray(0, clear + h.length);
  try {
    const pt = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce(k.salt, h.ctr), additionalData: aad },
      k.key,
      data.subarray(clear + h.length),
    );
    return { frame: concat(data.subarray(0, clear), new Uint8Array(pt)), kid: h.kid };
  } catch {
    return null;
  }
}

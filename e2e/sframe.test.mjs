// SFrame frame encryption of the client (web/js/sframe.js), in node's WebCrypto.
import test from "node:test";
import assert from "node:assert/strict";
import { decodeHeader, decryptFrame, deriveKey, encodeHeader, encryptFrame } from "../web/js/sframe.js";

test("headers encode small values inline and larger ones in bytes (RFC 9605 4.3)", () => {
  assert.deepEqual([...encodeHeader(0n, 0n)], [0x00]);
  assert.deepEqual([...encodeHeader(7n, 7n)], [0x77]);
  assert.deepEqual([...encodeHeader(8n, 0n)], [0x80, 0x08]);
  assert.deepEqual([...encodeHeader(0x1234n, 0x10000n)], [0x9a, 0x12, 0x34, 0x01, 0x00, 0x00]);
  for (const [kid, ctr] of [[0n, 0n], [5n, 300n], [0x1234n, 0x10000n], [2n ** 60n, 2n ** 40n]]) {
    const h = encodeHeader(kid, ctr);
    assert.deepEqual(decodeHeader(h), { kid, ctr, length: h.length });
  }
  assert.equal(decodeHeader(new Uint8Array([0x9a, 0x12])), null, "truncated");
});

test("a VP8 keyframe keeps its 10 first bytes clear; only the right key decrypts it", async () => {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const alice = await deriveKey(secret, 1, 3n);
  const bob = await deriveKey(secret, 2, 3n);
  const frame = crypto.getRandomValues(new Uint8Array(500));
  const sealed = await encryptFrame(alice, 42n, frame, 10);
  assert.deepEqual(sealed.subarray(0, 10), frame.subarray(0, 10));
  assert.notDeepEqual(sealed.subarray(11, 500), frame.subarray(10, 499));
  const keys = new Map([[alice.kid, alice], [bob.kid, bob]]);
  const opened = await decryptFrame(async (kid) => keys.get(kid), sealed, 10);
  assert.deepEqual(opened?.frame, frame);
  assert.equal(opened?.kid, alice.kid);
  // Another epoch's key, or a changed clear byte, and it does not decrypt.
  const other = await deriveKey(crypto.getRandomValues(new Uint8Array(32)), 1, 3n);
  assert.equal(await decryptFrame(async () => other, sealed, 10), null);
  const tampered = sealed.slice();
  tampered[0] ^= 1;
  assert.equal(await decryptFrame(async (kid) => keys.get(kid), tampered, 10), null);
  // Opus: nothing clear.
  const audio = crypto.getRandomValues(new Uint8Array(80));
  const sealedAudio = await encryptFrame(bob, 1n, audio, 0);
  assert.deepEqual((await decryptFrame(async (kid) => keys.get(kid), sealedAudio, 0))?.frame, audio);
});

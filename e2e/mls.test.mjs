// The client's MLS member (web/js/mls.js) over the vendored ts-mls bundle, in node: three
// members form a group the way the meeting does (key package, commit, Welcome), agree on the
// security code and the SFrame secret, and a removal moves everyone left to a new code.
import test from "node:test";
import assert from "node:assert/strict";
import { MlsMember, fromBase64 } from "../web/js/mls.js";

test("members agree on the security code, which changes on every membership change", async () => {
  const a = await MlsMember.create("1");
  const b = await MlsMember.create("2");
  const c = await MlsMember.create("3");
  await a.createGroup("room-test");
  assert.equal(a.epoch, 0n);

  const addB = await a.commit([b.keyPackage()], []);
  assert.equal(addB.epoch, 0n);
  assert.ok(addB.welcome, "an add gives a welcome");
  a.merge(addB.newState);
  await b.join(addB.welcome);
  assert.equal(b.epoch, 1n);
  const code1 = a.securityCode();
  assert.match(code1, /^\d{3} \d{3} \d{3} \d{3}$/);
  assert.equal(b.securityCode(), code1);

  const addC = await b.commit([c.keyPackage()], []);
  // The header the delivery service reads (crates/veche-sfu/src/core/e2ee.rs, MlsHeader):
  // version mls10, private message, group id with a one-byte length, then the epoch.
  const raw = fromBase64(addC.commit);
  const groupId = new TextEncoder().encode("room-test");
  assert.deepEqual([...raw.subarray(0, 5)], [0, 1, 0, 2, groupId.length]);
  const at = 5 + groupId.length;
  assert.equal(new DataView(raw.buffer, raw.byteOffset).getBigUint64(at), 1n);
  b.merge(addC.newState);
  await a.process(addC.commit);
  await c.join(/** @type {string} */ (addC.welcome));
  const code2 = a.securityCode();
  assert.notEqual(code2, code1);
  assert.deepEqual([b.securityCode(), c.securityCode()], [code2, code2]);
  assert.deepEqual(await a.sframeSecret(), await c.sframeSecret());

  const removeB = await a.commit([], ["2"]);
  a.merge(removeB.newState);
  await c.process(removeB.commit);
  assert.equal(c.epoch, 3n);
  assert.equal(c.securityCode(), a.securityCode());
  assert.notEqual(a.securityCode(), code2);
  assert.equal(a.leafOf("2"), undefined);
  // The removed member learns it is out, and has no key of the new epoch.
  await b.process(removeB.commit).catch(() => {});
  const bSecret = await b.sframeSecret().catch(() => null);
  assert.notDeepEqual(bSecret, await a.sframeSecret());
});

test("a kept signing key gives the same fingerprint in every group; members() names participant and account", async () => {
  const { fingerprint } = await import("../web/js/mls.js");
  const signing = await MlsMember.signingKey();
  const a = await MlsMember.create("7", { account: "alice@example.org", signing });
  const b = await MlsMember.create("8");
  await a.createGroup("room-fp");
  const add = await a.commit([b.keyPackage()], []);
  a.merge(add.newState);
  await b.join(/** @type {string} */ (add.welcome));
  const seen = await b.members();
  const alice = seen.find((m) => m.participant === "7");
  assert.equal(alice?.account, "alice@example.org");
  assert.equal(seen.find((m) => m.participant === "8")?.account, "");
  assert.match(alice?.fingerprint ?? "", /^[0-9a-f]{4}( [0-9a-f]{4}){4}$/);
  assert.equal(alice?.fingerprint, await fingerprint(signing.publicKey));
  // The same key in another meeting (another participant id): the same fingerprint.
  const again = await MlsMember.create("42", { account: "alice@example.org", signing });
  await again.createGroup("room-other");
  assert.equal((await again.members())[0].fingerprint, alice?.fingerprint);
  // A fresh key is another fingerprint.
  const other = await MlsMember.create("43", { account: "alice@example.org" });
  await other.createGroup("room-third");
  assert.notEqual((await other.members())[0].fingerprint, alice?.fingerprint);
});

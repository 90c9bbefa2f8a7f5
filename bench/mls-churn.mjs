// Bytes the delivery service relays per membership change as an MLS group grows to N members
// one by one and shrinks again (web/js/mls.js over the vendored ts-mls). Usage:
//   node bench/mls-churn.mjs [N]
import { MlsMember } from "../web/js/mls.js";

const n = Number(process.argv[2] ?? 30);
const members = [await MlsMember.create("1")];
await members[0].createGroup("churn");
const b64 = (/** @type {string|undefined} */ s) => (s ? Math.floor((s.length * 3) / 4) : 0);
console.log("change\tmembers\tcommit_B\twelcome_B\trelayed_B(commit to each other member)");
for (let i = 2; i <= n; i++) {
  const joiner = await MlsMember.create(String(i));
  const c = await members[0].commit([joiner.keyPackage()], []);
  members[0].merge(c.newState);
  for (const m of members.slice(1)) await m.process(c.commit);
  await joiner.join(/** @type {string} */ (c.welcome));
  const relayed = b64(c.commit) * (members.length - 1) + b64(c.welcome);
  console.log(`add\t${i}\t${b64(c.commit)}\t${b64(c.welcome)}\t${relayed}`);
  members.push(joiner);
}
while (members.length > 1) {
  const leaving = /** @type {MlsMember} */ (members.pop());
  const c = await members[0].commit([], [leaving.identity]);
  members[0].merge(c.newState);
  for (const m of members.slice(1)) await m.process(c.commit);
  console.log(`remove\t${members.length}\t${b64(c.commit)}\t0\t${b64(c.commit) * (members.length - 1)}`);
}

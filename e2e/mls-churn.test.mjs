// MLS churn in node (web/js/mls.js over the vendored ts-mls): 30 members join one by one and
// leave one by one the way a meeting makes them (the first member commits each add and each
// removal, as the delivery service's designated committer does; each joiner renews its leaf
// once it has joined, as web/js/e2ee.js does on a Welcome). What every member is sent per
// change, the commit, must grow like log N: one encrypted path secret per level of the tree.
// Without the joiners' renewals the path nodes above them stay blank and a removal's commit
// grows by one encryption per member (735 B at 4 members, 3132 B at 32 on this code).
//
// The Welcome, sent to the joiner alone, carries the whole ratchet tree and so grows with N;
// docs/e2ee.md has the figures this prints.
import test from "node:test";
import assert from "node:assert/strict";
import { MlsMember } from "../web/js/mls.js";

const N = 30;

/** Bytes of a base64 text. */
const bytes = (/** @type {string | undefined} */ s) => (s ? Math.floor((s.length * 3) / 4) : 0);

/**
 * Commits `c` of `author` and has every other member apply it.
 * @param {MlsMember[]} members
 * @param {MlsMember} author
 * @param {{commit: string, newState: any}} c
 */
async function apply(members, author, c) {
  author.merge(c.newState);
  for (const m of members) if (m !== author) await m.process(c.commit);
}

test(`${N} members join and leave one by one: each commit grows like log N, not N`, { timeout: 300000 }, async () => {
  const first = await MlsMember.create("1");
  await first.createGroup("churn");
  const members = [first];
  /** @type {{change: string, members: number, commit: number, renewal: number, welcome: number}[]} */
  const rows = [];
  /** What removing a member costs at some sizes: a commit made and not sent. @type {Map<number, number>} */
  const removal = new Map();
  for (let i = 2; i <= N; i++) {
    const joiner = await MlsMember.create(String(i));
    const add = await first.commit([joiner.keyPackage()], []);
    await apply(members, first, add);
    await joiner.join(/** @type {string} */ (add.welcome));
    members.push(joiner);
    const renewal = await joiner.commit([], []);
    await apply(members, joiner, renewal);
    rows.push({ change: "add", members: i, commit: bytes(add.commit), renewal: bytes(renewal.commit), welcome: bytes(add.welcome) });
    if ([4, 8, 16, N].includes(i)) {
      const probe = await first.commit([], [members[Math.floor(i / 2)].identity]);
      removal.set(i, bytes(probe.commit));
    }
  }
  const code = first.securityCode();
  for (const m of members) assert.equal(m.securityCode(), code);
  // Leave in an order that is neither the joining order nor its reverse (a fixed shuffle).
  let seed = 7;
  while (members.length > 1) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const leaving = members.splice(1 + (seed % (members.length - 1)), 1)[0];
    const remove = await first.commit([], [leaving.identity]);
    await apply(members, first, remove);
    rows.push({ change: "remove", members: members.length, commit: bytes(remove.commit), renewal: 0, welcome: 0 });
  }
  console.table(rows);
  console.log(`removal commit by group size: ${JSON.stringify(Object.fromEntries(removal))}`);

  // A path commit carries one encrypted secret per level of the tree: base + step·log2(N).
  // Measured with the step from 4 to 8 members, each doubling may add at most one and a half
  // steps (linear growth adds far more: 735, 1092, 1797 B at 4, 8, 16 members without the
  // renewals), and 30 members cost less than twice 4.
  const [r4, r8, r16, rN] = [4, 8, 16, N].map(n => /** @type {number} */ (removal.get(n)));
  const step = r8 - r4;
  assert.ok(r16 <= r8 + 1.5 * step && rN <= r16 + 1.5 * step && rN < 2 * r4,
    `removal commits at 4, 8, 16, ${N} members: ${r4}, ${r8}, ${r16}, ${rN} B: not log N`);
  // The joiner's renewal is a path commit too.
  const renewals = rows.filter(r => r.change === "add" && r.members >= 4).map(r => r.renewal);
  assert.ok(Math.max(...renewals) < 2 * (rows.find(r => r.members === 4)?.renewal ?? 0), `renewals: ${renewals}`);
  // After the renewals, the shrinking group's removals stay at the size of the widest tree.
  for (const r of rows.filter(r => r.change === "remove")) assert.ok(r.commit <= rN + step, `removal at ${r.members}: ${r.commit} B`);
  // Adds carry no path: constant.
  const adds = rows.filter(r => r.change === "add").map(r => r.commit);
  assert.ok(Math.max(...adds) - Math.min(...adds) < 64, `add commits: ${adds}`);
});

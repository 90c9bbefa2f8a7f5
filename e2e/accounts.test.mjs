// The account pages in a real browser against the real server: the first admin made from
// the shell, sign-up, scheduling a meeting with a passcode, an upgrade request approved on
// the admin page, and a guest's join page asking for the passcode.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { REPO_ROOT } from './lib/server.mjs';

const BIN = path.resolve(REPO_ROOT, process.env.VECHE_BIN ?? 'target/debug/veche');

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** @type {import('node:child_process').ChildProcess} */
let child;
/** @type {string} */
let dataDir;
/** @type {string} */
let url;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'veche-e2e-accounts-'));
  const httpPort = await freePort();
  const mediaPort = await freePort();
  const log = openSync(path.join(dataDir, 'server.log'), 'a');
  child = spawn(BIN, ['serve', '--http', `127.0.0.1:${httpPort}`, '--media-port', String(mediaPort), '--media-bind', '127.0.0.1', '--public-ip', '127.0.0.1', '--data-dir', dataDir],
    { stdio: ['ignore', log, log] });
  url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(readFileSync(path.join(dataDir, 'server.log'), 'utf8'));
    await new Promise(r => setTimeout(r, 100));
  }
  // The first operator admin, from the shell, while the server runs.
  const made = spawnSync(BIN, ['admin', 'create-user', '--email', 'root@example.org', '--password-stdin', '--role', 'admin', '--data-dir', dataDir],
    { input: 'root password 123\n', encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  child?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', err => errors.push(String(err)));
  return { page, errors };
}

test('sign up, schedule, request an upgrade, the operator approves, a guest needs the passcode', async () => {
  // Dana signs up and lands on her meetings.
  const { page: dana, errors } = await newPage();
  await dana.goto(`${url}/signup`);
  await dana.fill('#signup-name', 'Dana');
  await dana.fill('#signup-email', 'dana@example.org');
  await dana.fill('#signup-password', 'dana password');
  await dana.fill('#signup-org', 'Dana & Co');
  await dana.click('#signup-form button[type=submit]');
  await dana.waitForURL(/\/meetings$/);
  await dana.waitForSelector('text=Hello, Dana');
  assert.match(await dana.textContent('#plan-card') ?? '', /Free plan.*100 participants, 40 minutes/s);

  // She schedules a meeting with a passcode and a waiting room.
  await dana.fill('#meeting-title', 'Board meeting');
  await dana.fill('#meeting-passcode', '2468');
  await dana.check('#meeting-waiting');
  await dana.click('#schedule-btn');
  const row = dana.locator('#meeting-list .meeting-row');
  await row.first().waitFor();
  assert.match(await row.first().textContent() ?? '', /Board meeting.*passcode · waiting room/s);
  const id = await row.first().getAttribute('data-id');
  assert.match(id ?? '', /^[a-z2-9]{20}$/);

  // And asks for the Pro plan.
  await dana.selectOption('#upgrade-plan', 'pro');
  await dana.fill('#upgrade-note', 'we grew');
  await dana.click('#upgrade-form button');
  await dana.waitForSelector('text=Upgrade to pro requested');

  // The operator signs in and approves it on the admin page.
  const { page: root, errors: rootErrors } = await newPage();
  await root.goto(`${url}/login?next=/admin`);
  await root.fill('#login-email', 'root@example.org');
  await root.fill('#login-password', 'wrong');
  await root.click('#login-form button[type=submit]');
  await root.waitForSelector('#login-error:has-text("wrong email or password")');
  await root.fill('#login-password', 'root password 123');
  await root.click('#login-form button[type=submit]');
  await root.waitForURL(/\/admin$/);
  await root.waitForSelector('#requests-table');
  assert.match(await root.textContent('#requests-table') ?? '', /pro.*we grew/s);
  await root.click('#requests-table button:has-text("Approve")');
  await root.waitForSelector('text=No pending requests.');
  await root.waitForSelector('#audit-table:has-text("upgrade.approve")');
  assert.match(await root.textContent('#users-table') ?? '', /dana@example.org/);

  await dana.reload();
  await dana.waitForSelector('#plan-card:has-text("Pro plan")');

  // The home page links to her meetings; the account page changes her password.
  await dana.goto(`${url}/`);
  await dana.click('#home-account a:has-text("My meetings")');
  await dana.waitForURL(/\/meetings$/);
  await dana.goto(`${url}/account`);
  await dana.fill('#current-password', 'dana password');
  await dana.fill('#new-password', 'dana new password');
  await dana.click('#password-form button[type=submit]');
  await dana.waitForSelector('text=Password changed');
  await dana.goto(`${url}/meetings`);
  await dana.waitForSelector('text=Hello, Dana');

  // A guest opens the link: the passcode is asked for, then the meeting opens.
  const { page: guest, errors: guestErrors } = await newPage();
  await guest.goto(`${url}/`);
  await guest.waitForSelector('#home-account a:has-text("Sign in")');
  await guest.goto(`${url}/j/${id}`);
  await guest.fill('#join-name', 'Gus');
  await guest.click('#meeting-join-form button[type=submit]');
  await guest.waitForSelector('#join-error:has-text("needs a passcode")');
  await guest.fill('#join-passcode', '1111');
  await guest.click('#meeting-join-form button[type=submit]');
  await guest.waitForSelector('#join-error:has-text("wrong passcode")');
  await guest.fill('#join-passcode', '2468');
  await guest.click('#meeting-join-form button[type=submit]');
  await guest.waitForURL(new RegExp(`/m/${id}\\?name=Gus`));

  assert.deepEqual([...errors, ...rootErrors, ...guestErrors], [], 'no page errors');
  await Promise.all(browser.contexts().map(c => c.close()));
});

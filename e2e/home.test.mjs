// The home page and the pre-join screen.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.on('pageerror', err => console.error('page error:', err));
  return page;
}

test('start instant meeting opens an unguessable room', async () => {
  const page = await newPage();
  await page.goto(`${server.url}/`);
  await page.fill('#home-name', 'Ann');
  await page.click('#instant-btn');
  await page.waitForURL(/\/m\/[^/?]+$/);
  const room = decodeURIComponent(new URL(page.url()).pathname.slice(3));
  // 5 groups of 4 letters: 26^20 ≈ 2^94.
  assert.match(room, /^[a-z]{4}(-[a-z]{4}){4}$/);
  await page.waitForSelector('#join-btn:not([disabled])');
  assert.equal(await page.inputValue('#name-input'), 'Ann', 'the name is remembered');

  await page.goto(`${server.url}/`);
  await page.click('#instant-btn');
  await page.waitForURL(/\/m\/[^/?]+$/);
  assert.notEqual(decodeURIComponent(new URL(page.url()).pathname.slice(3)), room, 'each instant meeting is new');
  await page.context().close();
});

test('a typed meeting name becomes a clean link, and the pre-join screen joins', async () => {
  const page = await newPage();
  await page.goto(`${server.url}/`);
  await page.fill('#home-name', 'Bob');
  await page.fill('#home-room', 'Weekly Sync!');
  await page.click('#join-room-btn');
  await page.waitForURL(/\/m\/weekly-sync$/);
  await page.waitForSelector('#join-btn:not([disabled])');
  // The fake camera shows in the preview and both devices are listed.
  await page.waitForFunction(() => {
    const v = document.querySelector('.preview video');
    return v instanceof HTMLVideoElement && v.videoWidth > 0;
  });
  assert.ok(await page.locator('#camera-select option').count() >= 1);
  assert.ok(await page.locator('#mic-select option').count() >= 1);
  await page.click('#join-btn');
  await page.waitForSelector('#leave-btn');
  // @ts-ignore the client's test hook
  await page.waitForFunction(() => window.veche?.selfId != null, null, { timeout: 10000 });
  // In the meeting, the devices dialog lists the camera and microphone in use.
  await page.click('#settings-btn');
  await page.waitForSelector('#settings-dialog[open] #camera-select option', { state: 'attached' });
  assert.ok(await page.locator('#settings-dialog #mic-select option').count() >= 1);
  await page.selectOption('#settings-dialog #camera-select', { index: 0 });
  await page.click('#settings-dialog button.primary');
  await page.waitForSelector('#settings-dialog', { state: 'hidden' });
  await page.waitForSelector('#cam-btn:not(.off)');
  await page.click('#leave-btn');
  await page.waitForSelector('#left-screen');
  await page.context().close();
});

test('the end-to-end encryption option starts an encrypted instant meeting', { timeout: 60000 }, async () => {
  const page = await newPage();
  await page.goto(`${server.url}/`);
  await page.fill('#home-name', 'Eve');
  await page.check('#home-e2ee');
  await page.click('#instant-btn');
  await page.waitForURL(/\/m\/[^/?]+\?e2ee=1$/);
  await page.waitForSelector('#join-btn:not([disabled])');
  await page.click('#join-btn');
  // The meeting the link opened is encrypted: the badge, with a security code once the group exists.
  await page.waitForFunction(() => {
    const code = document.querySelector('#e2ee-badge:not([hidden]) #security-code')?.textContent ?? '';
    return /^\d{3} \d{3} \d{3} \d{3}$/.test(code);
  }, null, { timeout: 20000 });
  const mode = await page.evaluate(() => /** @type {any} */ (window).veche.meeting.e2ee);
  assert.equal(mode, 'required');
  await page.context().close();
});

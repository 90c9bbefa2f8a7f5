// When the server goes away, the client says so and rejoins by itself once it is back.

import { after, before, test } from 'node:test';
import { launch } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';

/** @type {Awaited<ReturnType<typeof startServer>> | null} */
let server = null;
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

/**
 * Waits until the page decodes at least one remote video on its current peer connection.
 * @param {import('playwright-core').Page} page
 */
function waitForRemoteVideo(page) {
  return page.waitForFunction(async () => {
    // @ts-ignore the client's test hook
    const pc = window.veche?.pc;
    // @ts-ignore set by the test before the restart
    if (!pc || pc === window.oldPc) return false;
    const report = await pc.getStats();
    let decoded = false;
    report.forEach((/** @type {any} */ s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoded = true;
    });
    return decoded;
  }, null, { timeout: 30000, polling: 200 });
}

test('a participant reconnects after the server restarts', { timeout: 120000 }, async () => {
  if (!server) throw new Error('no server');
  const room = 'reconnect-test';
  const pages = [];
  for (const name of ['R1', 'R2']) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/m/${room}?name=${name}&autojoin=1`);
    pages.push(page);
  }
  for (const page of pages) await waitForRemoteVideo(page);

  const { httpPort, mediaPort } = server;
  // @ts-ignore test-only global
  for (const page of pages) await page.evaluate(() => { window.oldPc = window.veche.pc; });
  await server.stop();
  server = null;
  for (const page of pages) {
    await page.waitForFunction(() => document.querySelector('#status-banner:not([hidden])')?.textContent?.includes('reconnecting'),
      null, { timeout: 10000 });
  }

  server = await startServer({ httpPort, mediaPort });
  for (const page of pages) {
    await waitForRemoteVideo(page);
    await page.waitForSelector('#status-banner', { state: 'hidden', timeout: 10000 });
  }
});

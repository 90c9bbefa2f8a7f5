// Launches Debian's Firefox ESR through puppeteer-core over WebDriver BiDi, with a fake camera
// and microphone and no permission prompts. puppeteer-core brings no browser of its own.
//
// Firefox's fake devices stand in for the camera and microphone only; screen sharing captures
// a real display. So Firefox runs headful on a private Xvfb display started here (and stopped
// with the browser), where getDisplayMedia shares that display without a picker.

import puppeteer from 'puppeteer-core';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const FIREFOX = process.env.FIREFOX ?? '/usr/bin/firefox-esr';
const XVFB = '/usr/bin/Xvfb';

export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // The machine's network is closed: no update, telemetry, captive-portal or safe-browsing
  // calls.
  'app.update.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'toolkit.telemetry.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
};

/**
 * Starts Xvfb on a display it picks; resolves to that display and a function that stops it.
 * @returns {Promise<{display: string, stop: () => void}>}
 */
function startXvfb() {
  if (!existsSync(XVFB)) throw new Error(`Xvfb not found at ${XVFB} (apt-get install xvfb)`);
  return new Promise((resolve, reject) => {
    const xvfb = spawn(XVFB, ['-displayfd', '1', '-screen', '0', '1280x720x24', '-nolisten', 'tcp'],
      { stdio: ['ignore', 'pipe', 'ignore'] });
    const timer = setTimeout(() => { xvfb.kill(); reject(new Error('Xvfb did not start within 10 s')); }, 10000);
    xvfb.once('error', reject);
    xvfb.once('exit', code => reject(new Error(`Xvfb exited with ${code}`)));
    let out = '';
    xvfb.stdout.on('data', d => {
      out += d;
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      resolve({ display: `:${out.trim()}`, stop: () => xvfb.kill() });
    });
  });
}

/**
 * Firefox on its own Xvfb display. Pages opened on a test host's veth address (self-signed
 * HTTPS) are accepted. Firefox leaves loopback out of ICE, so a Firefox participant needs a
 * server on such an address (`startServer({host})`), not on 127.0.0.1.
 * @returns {Promise<{browser: import('puppeteer-core').Browser, close: () => Promise<void>}>}
 */
export async function launchFirefox() {
  if (!existsSync(FIREFOX)) throw new Error(`Firefox not found at ${FIREFOX} (apt-get install firefox-esr, or set FIREFOX)`);
  const xvfb = await startXvfb();
  try {
    const browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: false,
      acceptInsecureCerts: true,
      env: { ...process.env, DISPLAY: xvfb.display },
      extraPrefsFirefox: FIREFOX_PREFS,
    });
    return {
      browser,
      close: async () => {
        await browser.close().catch(() => {});
        xvfb.stop();
      },
    };
  } catch (e) {
    xvfb.stop();
    throw e;
  }
}

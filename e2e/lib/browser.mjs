// Launches the system Chromium with fake camera, microphone and screen.

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--auto-select-desktop-capture-source=Entire screen',
  '--enable-usermedia-screen-capturing',
  '--autoplay-policy=no-user-gesture-required',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
  '--disable-component-update',
  '--disable-sync',
  '--mute-audio',
];

/**
 * @param {{acceptMediaPrompts?: boolean, executablePath?: string, fakeAudioFile?: string, args?: string[]}} [options]
 *   `acceptMediaPrompts: false` leaves out the flag that auto-accepts camera/microphone
 *   prompts, so they are denied; `executablePath` starts Chromium through another executable
 *   (a test host's `chromiumWrapper()` from netns.mjs runs it in a network namespace);
 *   `fakeAudioFile` is a WAV file the fake microphone plays (in a loop) instead of its beep —
 *   one per browser process; `args`: more command-line flags
 * @returns {Promise<import('playwright-core').Browser>}
 */
export function launch(options = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  const args = options.acceptMediaPrompts === false
    ? CHROMIUM_ARGS.filter(a => a !== '--use-fake-ui-for-media-stream')
    : [...CHROMIUM_ARGS];
  if (options.fakeAudioFile) args.push(`--use-file-for-fake-audio-capture=${options.fakeAudioFile}`);
  args.push(...(options.args ?? []));
  return chromium.launch({ executablePath: options.executablePath ?? CHROMIUM, headless: true, args });
}

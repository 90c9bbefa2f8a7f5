// Writes the WAV files that Chromium plays as a fake microphone
// (`--use-file-for-fake-audio-capture`): 16-bit mono PCM at 48 kHz.

import { writeFileSync } from 'node:fs';

const RATE = 48000;

/**
 * @param {string} file
 * @param {Float32Array} samples in -1…1
 */
function writeWav(file, samples) {
  const data = Buffer.alloc(samples.length * 2);
  samples.forEach((x, i) => data.writeInt16LE(Math.round(Math.max(-1, Math.min(1, x)) * 32767), i * 2));
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(RATE, 24);
  header.writeUInt32LE(RATE * 2, 28); // bytes per second
  header.writeUInt16LE(2, 32); // bytes per frame
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([header, data]));
}

/**
 * Loud, speech-like sound: phrases of harmonic "syllables" (180–320 ms, changing pitch, short
 * gaps, so the browser's noise suppression does not take it for a steady noise), with a
 * silent pause of `pauseMs` every two seconds, as between sentences.
 * @param {string} file
 * @param {number} seconds
 * @param {number} [pauseMs]
 */
export function writeLoudSpeech(file, seconds, pauseMs = 0) {
  const samples = new Float32Array(RATE * seconds);
  const phrase = RATE * 2;
  const pause = Math.round(RATE * pauseMs / 1000);
  let t = 0;
  let syllable = 0;
  while (t < samples.length) {
    if (pause > 0 && t % phrase >= phrase - pause) {
      t += phrase - (t % phrase); // the rest of the phrase is the pause
      continue;
    }
    // A syllable ends where the pause begins.
    const room = pause > 0 ? phrase - pause - (t % phrase) : Infinity;
    const length = Math.min(room, Math.round(RATE * (0.18 + 0.14 * ((syllable * 7) % 5) / 4)));
    const gap = Math.round(RATE * 0.04);
    const pitch = 120 + 60 * Math.sin(syllable * 1.7);
    for (let i = 0; i < length && t + i < samples.length; i++) {
      const envelope = Math.sin(Math.PI * i / length);
      let x = 0;
      for (let k = 1; k <= 6; k++) x += Math.sin(2 * Math.PI * pitch * k * (t + i) / RATE) / k;
      samples[t + i] = 0.35 * envelope * x;
    }
    t += length + gap;
    syllable += 1;
  }
  writeWav(file, samples);
}

/**
 * Quiet background noise at about `dbfs` (RMS) on average, the same for everyone who gets it,
 * wandering ±`swing` dB every 200 ms as real room noise does, so that which of two such
 * participants is louder changes from one moment to the next.
 * @param {string} file
 * @param {number} seconds
 * @param {number} dbfs e.g. -50
 * @param {number} seed makes each file's noise different
 * @param {number} [swing] dB
 */
export function writeQuietNoise(file, seconds, dbfs, seed, swing = 3) {
  const samples = new Float32Array(RATE * seconds);
  let state = seed >>> 0 || 1;
  // xorshift32, uniform in -1…1 (RMS 1/√3)
  const random = () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 0xffffffff * 2 - 1;
  };
  const segment = Math.round(RATE * 0.2);
  let rms = 0;
  for (let i = 0; i < samples.length; i++) {
    if (i % segment === 0) rms = 10 ** ((dbfs + swing * random()) / 20);
    samples[i] = random() * rms * Math.sqrt(3);
  }
  writeWav(file, samples);
}

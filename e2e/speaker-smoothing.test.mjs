// The client's active-speaker smoothing (web/js/speaker.js) under simulated time: the server's
// raw reports go in, the speaker shown comes out.

import assert from 'node:assert/strict';
import { beforeEach, mock, test } from 'node:test';
import { CONFIRM_MS, MIN_HOLD_MS, SpeakerSmoother } from '../web/js/speaker.js';

/** @type {(number | null)[]} */
let shown;
/** @type {SpeakerSmoother} */
let smoother;
let now = 0;

/** Advances the simulated clock (and the timers) by `ms`. */
function advance(/** @type {number} */ ms) {
  now += ms;
  mock.timers.tick(ms);
}

beforeEach(() => {
  mock.timers.reset();
  mock.timers.enable({ apis: ['setTimeout'] });
  now = 0;
  shown = [];
  smoother = new SpeakerSmoother(id => shown.push(id), () => now);
});

test('the first speaker shows at once', () => {
  smoother.report(1);
  assert.deepEqual(shown, [1]);
});

test('a new speaker shows once they stayed the loudest for the confirmation time', () => {
  smoother.report(1);
  advance(MIN_HOLD_MS);
  smoother.report(2);
  advance(CONFIRM_MS - 1);
  assert.deepEqual(shown, [1]);
  advance(1);
  assert.deepEqual(shown, [1, 2]);
});

test('reports flipping between two people every 400 ms never move the highlight', () => {
  smoother.report(1);
  advance(MIN_HOLD_MS);
  for (let i = 0; i < 25; i++) {
    smoother.report(i % 2 === 0 ? 2 : 3);
    advance(400);
  }
  assert.deepEqual(shown, [1]);
});

test('a short interjection does not take the highlight from the speaker', () => {
  smoother.report(1);
  advance(5000);
  smoother.report(2);
  advance(600);
  smoother.report(1);
  advance(5000);
  assert.deepEqual(shown, [1]);
});

test('whoever is shown stays for the minimum hold time', () => {
  smoother.report(1);
  advance(100);
  smoother.report(2);
  advance(CONFIRM_MS);
  assert.deepEqual(shown, [1], 'not yet: 1 was shown only 1.1 s ago');
  advance(MIN_HOLD_MS - CONFIRM_MS - 100);
  assert.deepEqual(shown, [1, 2]);
});

test('when the speaker leaves, the pending one takes over at once; a null report changes nothing', () => {
  smoother.report(1);
  advance(MIN_HOLD_MS);
  smoother.report(null);
  smoother.report(2);
  advance(100);
  smoother.forget(1);
  assert.deepEqual(shown, [1, 2]);
  smoother.forget(2);
  assert.deepEqual(shown, [1, 2, null]);
});

// Smooths the server's active-speaker reports into the speaker the user interface shows.
//
// The server re-evaluates the loudest participant every few hundred milliseconds and reports
// each change at once, so a cough, a short "mm-hm" or two people at the same background level
// would make the highlight and the speaker view jump. Like the big meeting tools, we move only
// to someone who stays the loudest for a while, and keep whoever is shown for a minimum time.

/** @typedef {import('./protocol.js').ParticipantId} ParticipantId */

/** A new speaker must stay the server's loudest this long before we show them. */
export const CONFIRM_MS = 1000;
/** Whoever is shown stays at least this long (unless they leave). */
export const MIN_HOLD_MS = 2000;

export class SpeakerSmoother {
  /**
   * @param {(id: ParticipantId | null) => void} onChange called when the shown speaker changes
   * @param {() => number} [now] the clock, in milliseconds
   */
  constructor(onChange, now = () => performance.now()) {
    this.onChange = onChange;
    this.now = now;
    /** The speaker shown. @type {ParticipantId | null} */
    this.shown = null;
    this.shownSince = 0;
    /** The server's latest report, while it differs from the one shown. @type {ParticipantId | null} */
    this.candidate = null;
    this.candidateSince = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** Reports received and changes shown, for tests and diagnostics. */
    this.counts = { reports: 0, changes: 0 };
  }

  /**
   * The server says `id` is the loudest now (null: nobody; we keep the last speaker, as a
   * pause in speech should not empty the speaker view).
   * @param {ParticipantId | null} id
   */
  report(id) {
    this.counts.reports += 1;
    if (id === null) return;
    const now = this.now();
    if (this.shown === null) {
      this.#show(id, now);
      return;
    }
    if (id === this.shown) {
      this.#cancel();
      return;
    }
    if (id !== this.candidate) {
      this.candidate = id;
      this.candidateSince = now;
    }
    this.#schedule(now);
  }

  /**
   * A participant left: if they were shown, the pending candidate (or nobody) takes over.
   * @param {ParticipantId} id
   */
  forget(id) {
    if (this.candidate === id) this.#cancel();
    if (this.shown !== id) return;
    const next = this.candidate;
    this.#cancel();
    this.shown = null;
    if (next !== null) this.#show(next, this.now());
    else {
      this.counts.changes += 1;
      this.onChange(null);
    }
  }

  /** Forgets everything (after a reconnect the ids are new). */
  reset() {
    this.#cancel();
    if (this.shown !== null) {
      this.shown = null;
      this.onChange(null);
    }
  }

  /** @param {number} now */
  #schedule(now) {
    clearTimeout(this.timer);
    const due = Math.max(this.candidateSince + CONFIRM_MS, this.shownSince + MIN_HOLD_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.candidate !== null) this.#show(this.candidate, this.now());
    }, Math.max(0, due - now));
  }

  #cancel() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.candidate = null;
  }

  /**
   * @param {ParticipantId} id
   * @param {number} now
   */
  #show(id, now) {
    this.#cancel();
    this.shown = id;
    this.shownSince = now;
    this.counts.changes += 1;
    this.onChange(id);
  }
}

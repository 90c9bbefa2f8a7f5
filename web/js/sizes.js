// Tells the server how large each remote video is drawn, so it sends no more than that and
// pauses what nobody sees. A video is listed only while its tile is in the page, shown
// (not `display: none`, not a collapsed strip), at least partly inside the viewport and its
// scroll container, showing video (not an avatar), and the page itself is visible.

/**
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').VideoSize} VideoSize
 */

/** At most one report per this many milliseconds. */
export const REPORT_INTERVAL_MS = 250;

/**
 * @typedef {object} Watched
 * @property {ParticipantId} participantId
 * @property {'video' | 'screen'} kind
 * @property {() => boolean} showsVideo false while the tile shows an avatar instead
 * @property {boolean} intersecting
 */

export class VideoSizeReporter {
  /**
   * @param {(sizes: VideoSize[]) => boolean} send called with the whole set when it changed;
   *   false if it could not be sent (not connected), so it is sent again on reconnecting
   */
  constructor(send) {
    this.send = send;
    /** @type {Map<Element, Watched>} */
    this.watched = new Map();
    /** The last set sent, as JSON; null after a reconnect, so the next one always goes. @type {string | null} */
    this.last = null;
    this.lastAt = -Infinity;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** Reports held back (a test sends its own); they resume, from scratch, when unset. */
    this.held = false;
    this.intersections = new IntersectionObserver(entries => {
      for (const entry of entries) {
        const w = this.watched.get(entry.target);
        if (w) w.intersecting = entry.isIntersecting;
      }
      this.changed();
    });
    this.resizes = new ResizeObserver(() => this.changed());
    this.onVisibility = () => this.changed();
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  /**
   * Starts following a remote tile (again, with new details, if it already is).
   * @param {HTMLElement} el
   * @param {ParticipantId} participantId
   * @param {'video' | 'screen'} kind
   * @param {() => boolean} showsVideo
   */
  watch(el, participantId, kind, showsVideo) {
    const known = this.watched.get(el);
    this.watched.set(el, { participantId, kind, showsVideo, intersecting: known?.intersecting ?? false });
    if (!known) {
      this.intersections.observe(el);
      this.resizes.observe(el);
    }
    this.changed();
  }

  /** @param {HTMLElement} el */
  unwatch(el) {
    if (!this.watched.delete(el)) return;
    this.intersections.unobserve(el);
    this.resizes.unobserve(el);
    this.changed();
  }

  /** Something that may change the set happened: report it soon (at most every 250 ms). */
  changed() {
    if (this.timer !== undefined) return;
    const wait = Math.max(0, this.lastAt + REPORT_INTERVAL_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  /** The connection is new: the server knows nothing yet. */
  reconnected() {
    this.last = null;
    this.changed();
  }

  /** The sizes the server should send now. @returns {VideoSize[]} */
  current() {
    if (document.visibilityState !== 'visible') return [];
    const ratio = window.devicePixelRatio || 1;
    /** @type {VideoSize[]} */
    const sizes = [];
    for (const [el, w] of this.watched) {
      if (!w.intersecting || !el.isConnected || !w.showsVideo() || !el.checkVisibility()) continue;
      const rect = el.getBoundingClientRect();
      const width = Math.round(rect.width * ratio);
      const height = Math.round(rect.height * ratio);
      if (width === 0 || height === 0) continue;
      sizes.push({ participant_id: w.participantId, kind: w.kind, width, height });
    }
    sizes.sort((a, b) => a.participant_id - b.participant_id || a.kind.localeCompare(b.kind));
    return sizes;
  }

  /** @param {boolean} held */
  hold(held) {
    this.held = held;
    if (!held) this.reconnected();
  }

  flush() {
    if (this.held) return;
    const sizes = this.current();
    const json = JSON.stringify(sizes);
    if (json === this.last) return;
    if (!this.send(sizes)) return;
    this.last = json;
    this.lastAt = performance.now();
  }

  stop() {
    clearTimeout(this.timer);
    this.intersections.disconnect();
    this.resizes.disconnect();
    document.removeEventListener('visibilitychange', this.onVisibility);
  }
}

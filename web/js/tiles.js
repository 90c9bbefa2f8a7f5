// Video tiles: one per participant in the gallery, one per screen share on the stage.

import { h, initial } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { roleLabel } from './protocol.js';

/** @typedef {import('./protocol.js').Role} Role */
/** @typedef {import('./quality.js').QualityReport} QualityReport */

/** Tiles are laid out at this aspect ratio (width / height). */
const ASPECT = 16 / 9;
/** Gap between tiles in pixels; matches `gap` in style.css. */
const GAP = 8;

/** Colours for avatars, picked by name so everyone sees the same one. */
const AVATAR_COLOURS = ['#2f6fed', '#8e44ad', '#16a085', '#d35400', '#c0392b', '#2c3e50', '#7f8c00', '#b03a7a'];

/** @param {string} name */
function avatarColour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + (ch.codePointAt(0) ?? 0)) >>> 0;
  return AVATAR_COLOURS[hash % AVATAR_COLOURS.length];
}

/**
 * Attaches a track to a media element (or detaches with null), starting playback.
 * @param {HTMLMediaElement} el
 * @param {MediaStreamTrack | null} track
 * @param {(err: unknown) => void} [onBlocked] called if the browser refuses to autoplay
 */
export function attach(el, track, onBlocked) {
  const current = el.srcObject instanceof MediaStream ? el.srcObject.getTracks()[0] : null;
  if (current === track) return;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) {
    el.play().catch(err => {
      if (err instanceof DOMException && err.name === 'NotAllowedError') onBlocked?.(err);
    });
  }
}

/** One participant's tile: video or avatar, name, mic and hand indicators. */
export class Tile {
  /**
   * @param {string} name
   * @param {{self?: boolean, onPin?: () => void}} [options] `onPin`: the tile gets a pin button
   */
  constructor(name, options = {}) {
    this.video = h('video', { 'data-kind': 'video', autoplay: true, playsinline: true });
    this.video.muted = true; // sound comes through the separate audio element
    this.audio = h('audio', { 'data-kind': 'audio', autoplay: true });
    this.avatar = h('div', { class: 'avatar' });
    this.nameLabel = h('span', { class: 'name' });
    this.micIcon = h('span', { class: 'badge mic-off', title: t('people.mic_off') }, icon('micOff'));
    this.handIcon = h('span', { class: 'badge hand', title: t('people.hand_raised') }, icon('hand'));
    this.roleBadge = h('span', { class: 'role-badge', hidden: true });
    this.quality = qualityBars();
    const onPin = options.onPin;
    this.pinButton = onPin
      ? h('button', { type: 'button', class: 'pin-btn', 'aria-pressed': 'false', onclick: () => onPin() }, icon('pin'))
      : null;
    this.el = h('div', { class: options.self ? 'tile self' : 'tile' },
      this.video, this.audio, this.avatar,
      h('div', { class: 'label' }, this.quality, this.micIcon, this.nameLabel, this.roleBadge),
      this.handIcon, this.pinButton);
    this.pinned = false;
    this.hasVideo = false;
    this.videoOn = false;
    this.setName(name);
  }

  /** @param {string} name */
  setName(name) {
    this.nameLabel.textContent = name;
    this.name = name;
    this.setPinned(this.pinned ?? false);
    this.avatar.textContent = initial(name);
    this.avatar.style.background = avatarColour(name);
  }

  /**
   * Shows a host or co-host badge (nothing for other roles).
   * @param {Role} role
   */
  setRole(role) {
    this.el.dataset.role = role;
    const label = role === 'host' || role === 'co_host' ? roleLabel(role) : '';
    this.roleBadge.textContent = label;
    this.roleBadge.hidden = label === '';
  }

  /** @param {number | null} id */
  setId(id) {
    if (id === null) delete this.el.dataset.participantId;
    else this.el.dataset.participantId = String(id);
  }

  /**
   * @param {MediaStreamTrack | null} track
   */
  setVideo(track) {
    attach(this.video, track);
    this.hasVideo = track !== null;
    this.#updateVideo();
  }

  /**
   * @param {MediaStreamTrack | null} track
   * @param {(err: unknown) => void} onBlocked
   */
  setAudio(track, onBlocked) {
    attach(this.audio, track, onBlocked);
  }

  /**
   * @param {{audio: boolean, video: boolean, hand: boolean}} flags
   */
  setFlags(flags) {
    this.micIcon.hidden = flags.audio;
    this.handIcon.hidden = !flags.hand;
    this.el.classList.toggle('hand-raised', flags.hand);
    this.videoOn = flags.video;
    this.#updateVideo();
  }

  /**
   * Marks the tile as pinned to the large area of the speaker view.
   * @param {boolean} pinned
   */
  setPinned(pinned) {
    this.pinned = pinned;
    this.el.classList.toggle('pinned', pinned);
    if (!this.pinButton) return;
    const label = t(pinned ? 'tile.unpin' : 'tile.pin', { name: this.name ?? '' });

    this.pinButton.setAttribute('aria-pressed', String(pinned));
    this.pinButton.setAttribute('aria-label', label);
    this.pinButton.title = label;
  }

  /** @param {boolean} speaking */
  setSpeaking(speaking) {
    this.el.classList.toggle('speaking', speaking);
  }

  /**
   * Shows the connection-quality bars (hidden while there is nothing to judge).
   * @param {QualityReport | null} report
   */
  setQuality(report) {
    const quality = report?.quality ?? null;
    this.quality.hidden = quality === null;
    if (quality === null || !report) return;
    this.quality.dataset.quality = quality;
    this.quality.title = report.text;
    this.quality.setAttribute('aria-label', report.text);
  }

  /** Whether the tile shows video now (not the avatar). */
  showsVideo() {
    return this.hasVideo && this.videoOn;
  }

  #updateVideo() {
    this.el.classList.toggle('no-video', !this.showsVideo());
  }
}

/**
 * A three-bar signal icon; `data-quality` (good, fair, poor) decides how many bars are lit.
 * @returns {HTMLElement}
 */
function qualityBars() {
  const el = h('span', { class: 'quality', role: 'img', hidden: true });
  el.innerHTML = '<svg viewBox="0 0 12 12" width="14" height="14" aria-hidden="true">' +
    '<rect class="bar1" x="1" y="8" width="2.5" height="3" rx=".5"/>' +
    '<rect class="bar2" x="4.75" y="5" width="2.5" height="6" rx=".5"/>' +
    '<rect class="bar3" x="8.5" y="2" width="2.5" height="9" rx=".5"/></svg>';
  return el;
}

/** A screen share on the stage. */
export class ScreenTile {
  /**
   * @param {number | 'self'} owner
   * @param {string} label
   * @param {MediaStreamTrack} track
   */
  constructor(owner, label, track) {
    this.video = h('video', { 'data-kind': 'screen', autoplay: true, playsinline: true });
    this.video.muted = true;
    this.el = h('div', { class: 'tile screen', 'data-screen-of': String(owner) },
      this.video, h('div', { class: 'label' }, h('span', { class: 'name', text: label })));
    attach(this.video, track);
  }
}

/**
 * Sizes the tiles inside `container` so that `count` of them, at 16:9, fill it as well as
 * possible: tries every column count and keeps the one giving the largest tiles.
 * @param {HTMLElement} container
 */
export function layoutTiles(container) {
  const tiles = /** @type {HTMLElement[]} */ ([...container.children]);
  const count = tiles.length;
  if (count === 0) return;
  const width = container.clientWidth;
  const height = container.clientHeight;
  if (width === 0 || height === 0) return;
  let best = { w: 0, h: 0 };
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    const maxW = (width - GAP * (cols - 1)) / cols;
    const maxH = (height - GAP * (rows - 1)) / rows;
    const w = Math.min(maxW, maxH * ASPECT);
    if (w > best.w) best = { w, h: w / ASPECT };
  }
  container.style.setProperty('--tile-w', `${Math.floor(best.w)}px`);
  container.style.setProperty('--tile-h', `${Math.floor(best.h)}px`);
}

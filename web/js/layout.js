// Where the tiles go: the gallery (everyone the same size; screen shares on the stage beside
// it) or the speaker view (one large tile on the stage, everyone else in a scrolling strip).
// In the speaker view a screen share takes the large area and the speaker joins the strip;
// a pinned participant stays large whoever speaks. Whenever the stage is in use the strip
// can be collapsed.

import { h } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { layoutTiles } from './tiles.js';

/** @typedef {import('./protocol.js').ParticipantId} ParticipantId */
/** @typedef {'gallery' | 'speaker'} ViewMode */

/** Where the chosen view is remembered. */
const STORAGE_KEY = 'veche.view';

/** @returns {ViewMode} */
function storedMode() {
  try {
    return localStorage.getItem(STORAGE_KEY) === 'speaker' ? 'speaker' : 'gallery';
  } catch {
    return 'gallery'; // storage may be blocked
  }
}

/** @param {ViewMode} mode */
function storeMode(mode) {
  try {
    localStorage.setItem(STORAGE_KEY, mode);
  } catch {
    // not remembered, then
  }
}

export class Layout {
  /**
   * @param {HTMLElement} main holds the stage, the gallery and the strip toggle
   * @param {HTMLElement} stage
   * @param {HTMLElement} gallery
   * @param {() => {self: HTMLElement, remote: Map<ParticipantId, HTMLElement>}} tiles the
   *   participants' tiles, ours first and the others in the order they joined
   * @param {() => void} changed called after every relayout
   */
  constructor(main, stage, gallery, tiles, changed) {
    this.main = main;
    this.stage = stage;
    this.gallery = gallery;
    this.tiles = tiles;
    this.changed = changed;
    /** @type {ViewMode} */
    this.mode = storedMode();
    this.collapsed = false;
    /** The remote participant the speaker view shows (the last remote speaker). @type {ParticipantId | null} */
    this.featuredId = null;
    /** The participant pinned to the large area, if any. @type {ParticipantId | null} */
    this.pinnedId = null;

    this.galleryButton = h('button', { type: 'button', id: 'view-gallery', class: 'view-option', title: t('view.gallery_title'),
      onclick: () => this.setMode('gallery') }, icon('grid'), h('span', { class: 'view-label', text: t('view.gallery') }));
    this.speakerButton = h('button', { type: 'button', id: 'view-speaker', class: 'view-option', title: t('view.speaker_title'),
      onclick: () => this.setMode('speaker') }, icon('speaker'), h('span', { class: 'view-label', text: t('view.speaker') }));
    /** The view switch, for the top bar. */
    this.switch = h('div', { class: 'view-switch', role: 'group', 'aria-label': t('view.layout') }
, this.galleryButton, this.speakerButton);
    this.stripButton = h('button', { type: 'button', id: 'strip-btn', class: 'strip-toggle', 'aria-controls': 'gallery',
      onclick: () => this.setCollapsed(!this.collapsed) });
    main.append(this.stripButton);
    this.#updateControls();
  }

  /** @param {ViewMode} mode */
  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    storeMode(mode);
    this.update();
  }

  /**
   * Pins a participant to the large area (switching to the speaker view), or unpins them.
   * @param {ParticipantId} id
   */
  togglePin(id) {
    this.pinnedId = this.pinnedId === id ? null : id;
    if (this.pinnedId !== null && this.mode !== 'speaker') this.setMode('speaker');
    else this.update();
  }

  /**
   * A participant left.
   * @param {ParticipantId} id
   */
  forget(id) {
    if (this.pinnedId === id) this.pinnedId = null;
    if (this.featuredId === id) this.featuredId = null;
  }

  /** @param {boolean} collapsed */
  setCollapsed(collapsed) {
    this.collapsed = collapsed;
    this.update();
  }

  /**
   * The (smoothed) active speaker changed. Only a remote one takes the large tile: our own
   * voice leaves the last other speaker there, as in every meeting tool.
   * @param {ParticipantId | null} id
   * @param {ParticipantId | null} selfId
   */
  setSpeaker(id, selfId) {
    if (id === null || id === selfId || id === this.featuredId) return;
    this.featuredId = id;
    if (this.mode === 'speaker') this.update();
  }

  /** The tile the speaker view puts on the stage, or null while a screen share has it. */
  featured() {
    if (this.mode !== 'speaker' || this.#hasScreens()) return null;
    const { self, remote } = this.tiles();
    for (const id of [this.pinnedId, this.featuredId]) {
      const tile = id === null ? undefined : remote.get(id);
      if (tile) return tile;
    }
    return remote.values().next().value ?? self;
  }

  /** Puts every tile where the current view wants it and sizes them. */
  update() {
    const featured = this.featured();
    const { self, remote } = this.tiles();
    for (const el of [...this.stage.children]) {
      if (el !== featured && !el.classList.contains('screen')) el.remove();
    }
    if (featured && featured.parentElement !== this.stage) this.stage.append(featured);
    const order = [self, ...remote.values()].filter(el => el !== featured);
    order.forEach((el, i) => {
      if (this.gallery.children[i] !== el) this.gallery.insertBefore(el, this.gallery.children[i] ?? null);
    });
    for (const el of [...this.gallery.children].slice(order.length)) el.remove();

    const hasStage = this.stage.childElementCount > 0;
    this.main.classList.toggle('has-stage', hasStage);
    this.main.classList.toggle('speaker-view', this.mode === 'speaker');
    this.main.classList.toggle('strip-collapsed', hasStage && this.collapsed);
    this.#updateControls();
    layoutTiles(this.stage);
    if (this.mode === 'speaker') {
      this.gallery.style.removeProperty('--tile-w');
      this.gallery.style.removeProperty('--tile-h');
    } else {
      layoutTiles(this.gallery);
    }
    this.changed();
  }

  #hasScreens() {
    return [...this.stage.children].some(el => el.classList.contains('screen'));
  }

  #updateControls() {
    const speaker = this.mode === 'speaker';
    this.galleryButton.setAttribute('aria-pressed', String(!speaker));
    this.speakerButton.setAttribute('aria-pressed', String(speaker));
    const hasStage = this.stage.childElementCount > 0;
    this.stripButton.hidden = !hasStage || this.gallery.childElementCount === 0;
    this.stripButton.setAttribute('aria-expanded', String(!this.collapsed));
    this.stripButton.replaceChildren(icon(this.collapsed ? 'chevronOpen' : 'chevronClose'),
      h('span', { text: this.collapsed ? t('view.show_others', { count: this.gallery.childElementCount }) : t('view.hide_others') }));
    this.stripButton.title = t(this.collapsed ? 'view.show_others_title' : 'view.hide_others_title');

  }
}

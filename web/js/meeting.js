// The meeting screen: gallery, stage for screen shares, controls, chat. Implements the
// session's CallView.

import { ChatPanel } from './chat.js';
import { DevicePickers } from './devices.js';
import { copyText, h, show, toast } from './dom.js';
import { showEnded, showLeft } from './ended.js';
import { icon } from './icons.js';
import { Session } from './session.js';
import { ScreenTile, Tile, attach, layoutTiles } from './tiles.js';

/**
 * @typedef {import('./protocol.js').ParticipantInfo} ParticipantInfo
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./session.js').CallStatus} CallStatus
 * @typedef {import('./session.js').CallView} CallView
 * @typedef {import('./media.js').LocalMedia} LocalMedia
 */

/** A toggle in the controls bar. */
class ControlButton {
  /**
   * @param {string} id
   * @param {string} iconName
   * @param {string} label
   * @param {() => void} onClick
   */
  constructor(id, iconName, label, onClick) {
    this.label = h('span', { class: 'control-label', text: label });
    this.el = h('button', { id, type: 'button', class: 'control', onclick: () => onClick() }, icon(iconName), this.label);
  }

  /**
   * @param {{icon?: string, label?: string, active?: boolean, off?: boolean}} state
   *   `active` highlights a feature in use (sharing, hand up); `off` marks a muted device.
   */
  set(state) {
    if (state.icon) this.el.querySelector('svg')?.replaceWith(icon(state.icon));
    if (state.label) {
      this.label.textContent = state.label;
      this.el.title = state.label;
    }
    if (state.active !== undefined) {
      this.el.classList.toggle('active', state.active);
      this.el.setAttribute('aria-pressed', String(state.active));
    }
    if (state.off !== undefined) this.el.classList.toggle('off', state.off);
  }
}

/**
 * @typedef {object} RemoteParticipant
 * @property {ParticipantInfo} info
 * @property {Tile} tile
 * @property {ScreenTile | null} screen
 */

/** @implements {CallView} */
class Meeting {
  /**
   * @param {string} room
   * @param {string} name
   * @param {LocalMedia} media
   */
  constructor(room, name, media) {
    this.room = room;
    this.name = name;
    this.media = media;
    this.session = new Session(room, name, media, this);
    /** @type {Map<ParticipantId, RemoteParticipant>} */
    this.remote = new Map();
    this.selfTile = new Tile(`${name} (you)`, { self: true });
    /** @type {ScreenTile | null} */
    this.selfScreen = null;
    this.unread = 0;
    this.everJoined = false;

    this.gallery = h('div', { class: 'gallery', id: 'gallery' }, this.selfTile.el);
    this.stage = h('div', { class: 'stage', id: 'stage' });
    this.main = h('section', { class: 'main' }, this.stage, this.gallery);
    this.chat = new ChatPanel(text => this.session.sendChat(text), () => this.toggleChat(false));
    this.statusBanner = h('div', { class: 'banner', id: 'status-banner', hidden: true });
    this.audioBanner = h('button', { class: 'banner action', id: 'audio-banner', type: 'button', hidden: true,
      text: 'Your browser blocked sound. Click here to hear the others.', onclick: () => this.unblockAudio() });
    this.countLabel = h('span', { class: 'count' });
    this.unreadBadge = h('span', { class: 'unread', hidden: true });

    this.micButton = new ControlButton('mic-btn', 'mic', 'Mute', () => void this.toggleMic());
    this.camButton = new ControlButton('cam-btn', 'cam', 'Stop video', () => void this.toggleCamera());
    this.screenButton = new ControlButton('screen-btn', 'screen', 'Share screen', () => void this.toggleScreen());
    this.chatButton = new ControlButton('chat-btn', 'chat', 'Chat', () => this.toggleChat(!this.chat.open));
    this.chatButton.el.append(this.unreadBadge);
    this.handButton = new ControlButton('hand-btn', 'hand', 'Raise hand', () => this.toggleHand());
    const inviteButton = new ControlButton('invite-btn', 'link', 'Invite', () => void this.copyInvite());
    const settingsButton = new ControlButton('settings-btn', 'settings', 'Devices', () => void this.openSettings());
    this.pickers = new DevicePickers(media, {
      camera: id => this.session.setCamera(true, id),
      mic: id => this.session.switchMic(id),
      changed: () => {
        this.selfTile.setVideo(this.media.camera);
        this.updateSelf();
      },
    });
    this.settings = h('dialog', { id: 'settings-dialog', class: 'card', 'aria-label': 'Devices' },
      h('div', { class: 'stack' },
        h('h2', { text: 'Devices' }),
        h('label', {}, h('span', { text: 'Camera' }), this.pickers.camera),
        h('label', {}, h('span', { text: 'Microphone' }), this.pickers.mic),
        h('button', { type: 'button', class: 'button primary', text: 'Done', onclick: () => this.settings.close() })));
    const leaveButton = new ControlButton('leave-btn', 'leave', 'Leave', () => this.session.leave());
    leaveButton.el.classList.add('leave');
    if (!navigator.mediaDevices?.getDisplayMedia) this.screenButton.el.hidden = true;

    this.el = h('div', { class: 'meeting' },
      h('header', { class: 'topbar' },
        h('span', { class: 'brand', text: 'Veche' }),
        h('span', { class: 'room-name', text: room }),
        this.countLabel),
      this.statusBanner,
      this.audioBanner,
      h('div', { class: 'body' }, this.main, this.chat.el),
      h('footer', { class: 'controls' },
        this.micButton.el, this.camButton.el, this.screenButton.el, this.chatButton.el,
        this.handButton.el, inviteButton.el, settingsButton.el, leaveButton.el),
      this.settings);

    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.gallery);
    this.resizeObserver.observe(this.stage);
  }

  start() {
    show(this.el);
    document.title = `${this.room} — Veche`;
    this.selfTile.setVideo(this.media.camera);
    this.updateSelf();
    this.updateCount();
    for (const problem of this.media.problems) toast(problem, 'error', 8000);
    addEventListener('pagehide', () => this.session.leave());
    // Hooks for tests and debugging: `veche.pc.getStats()`, `veche.participants()`.
    const session = this.session;
    Object.assign(window, {
      veche: {
        session,
        get pc() { return session.pc; },
        get selfId() { return session.selfId; },
        participants: () => [...session.participants.values()],
      },
    });
    this.session.start();
  }

  // ---- CallView ----

  /** @type {CallView['joined']} */
  joined(selfId, participants) {
    for (const id of [...this.remote.keys()]) this.removeParticipant(id);
    this.selfTile.setId(selfId);
    for (const p of participants) this.addParticipant(p);
    if (!this.everJoined) this.chat.system(`You joined ${this.room}`);
    this.everJoined = true;
    this.status('connected');
    this.updateCount();
    this.layout();
  }

  /** @type {CallView['participantJoined']} */
  participantJoined(p) {
    this.addParticipant(p);
    this.chat.system(`${p.name} joined`);
    this.updateCount();
    this.layout();
  }

  /** @type {CallView['participantLeft']} */
  participantLeft(id) {
    const p = this.remote.get(id);
    if (p) this.chat.system(`${p.info.name} left`);
    this.removeParticipant(id);
    this.updateCount();
    this.layout();
  }

  /** @type {CallView['participantChanged']} */
  participantChanged(info) {
    const p = this.remote.get(info.id);
    if (!p) return;
    const handWasUp = p.tile.el.classList.contains('hand-raised');
    p.info = info;
    p.tile.setFlags({ audio: info.audio, video: info.video, hand: info.hand_raised });
    if (info.hand_raised && !handWasUp) toast(`${info.name} raised their hand`);
    if (!info.screen && p.screen) this.removeScreen(p);
  }

  /** @type {CallView['remoteTrack']} */
  remoteTrack(id, kind, track) {
    const p = this.remote.get(id);
    if (!p) {
      console.warn('track for unknown participant', id, kind);
      return;
    }
    if (kind === 'audio') {
      p.tile.setAudio(track, () => { this.audioBanner.hidden = false; });
    } else if (kind === 'video') {
      p.tile.setVideo(track);
    } else {
      if (p.screen) p.screen.el.remove();
      p.screen = new ScreenTile(id, `${p.info.name}'s screen`, track);
      this.stage.append(p.screen.el);
      this.layout();
    }
  }

  /** @type {CallView['remoteTrackEnded']} */
  remoteTrackEnded(id, kind) {
    const p = this.remote.get(id);
    if (!p) return;
    if (kind === 'audio') p.tile.setAudio(null, () => {});
    else if (kind === 'video') p.tile.setVideo(null);
    else this.removeScreen(p);
  }

  /** @type {CallView['chatMessage']} */
  chatMessage(from, name, text, sentAtMs) {
    const own = from === this.session.selfId;
    this.chat.add(name, text, sentAtMs, own);
    if (!this.chat.open && !own) {
      this.unread += 1;
      this.unreadBadge.textContent = String(this.unread);
      this.unreadBadge.hidden = false;
      toast(`${name}: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`);
    }
  }

  /** @type {CallView['activeSpeaker']} */
  activeSpeaker(id) {
    for (const tile of this.gallery.querySelectorAll('.tile')) {
      tile.classList.toggle('speaking', id !== null && tile.getAttribute('data-participant-id') === String(id));
    }
  }

  /** @type {CallView['ownHand']} */
  ownHand(raised) {
    this.updateSelf(raised);
  }

  /** @type {CallView['status']} */
  status(status, detail) {
    if (status === 'ended') {
      this.resizeObserver.disconnect();
      this.media.close();
      if (detail) showEnded(this.room, this.name, detail);
      else showLeft(this.room, this.name);
      return;
    }
    const text = status === 'connecting' ? 'Connecting…'
      : status === 'reconnecting' ? 'Connection lost — reconnecting…' : '';
    this.statusBanner.textContent = text;
    this.statusBanner.hidden = text === '';
  }

  /** @type {CallView['notice']} */
  notice(message) {
    toast(message, 'error');
  }

  // ---- participants and layout ----

  /** @param {ParticipantInfo} info */
  addParticipant(info) {
    const existing = this.remote.get(info.id);
    if (existing) {
      existing.info = info;
      existing.tile.setName(info.name);
      this.participantChanged(info);
      return;
    }
    const tile = new Tile(info.name);
    tile.setId(info.id);
    tile.setFlags({ audio: info.audio, video: info.video, hand: info.hand_raised });
    this.remote.set(info.id, { info, tile, screen: null });
    this.gallery.append(tile.el);
  }

  /** @param {ParticipantId} id */
  removeParticipant(id) {
    const p = this.remote.get(id);
    if (!p) return;
    p.tile.setVideo(null);
    p.tile.setAudio(null, () => {});
    p.tile.el.remove();
    this.removeScreen(p);
    this.remote.delete(id);
  }

  /** @param {RemoteParticipant} p */
  removeScreen(p) {
    if (!p.screen) return;
    attach(p.screen.video, null);
    p.screen.el.remove();
    p.screen = null;
    this.layout();
  }

  layout() {
    this.main.classList.toggle('has-stage', this.stage.childElementCount > 0);
    layoutTiles(this.stage);
    layoutTiles(this.gallery);
  }

  updateCount() {
    const n = this.remote.size + 1;
    this.countLabel.textContent = n === 1 ? 'Only you' : `${n} people`;
  }

  /** Refreshes the own tile and the control buttons from the local state. */
  updateSelf(hand = this.session.handRaised) {
    const micOn = this.media.mic !== null && !this.media.micMuted;
    const camOn = this.media.camera !== null;
    const sharing = this.media.screen !== null;
    this.selfTile.setFlags({ audio: micOn, video: camOn, hand });
    this.micButton.set({ icon: micOn ? 'mic' : 'micOff', label: micOn ? 'Mute' : 'Unmute', off: !micOn });
    this.camButton.set({ icon: camOn ? 'cam' : 'camOff', label: camOn ? 'Stop video' : 'Start video', off: !camOn });
    this.screenButton.set({ label: sharing ? 'Stop sharing' : 'Share screen', active: sharing });
    this.handButton.set({ label: hand ? 'Lower hand' : 'Raise hand', active: hand });
  }

  // ---- controls ----

  async toggleMic() {
    const on = this.media.mic === null || this.media.micMuted;
    try {
      await this.session.setMic(on);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err), 'error');
    }
    this.updateSelf();
  }

  async toggleCamera() {
    const on = this.media.camera === null;
    this.camButton.el.disabled = true;
    try {
      await this.session.setCamera(on);
    } catch (err) {
      toast(`Could not start the camera: ${err instanceof Error ? err.message : String(err)}`, 'error');
    }
    this.camButton.el.disabled = false;
    this.selfTile.setVideo(this.media.camera);
    this.updateSelf();
  }

  async toggleScreen() {
    const on = this.media.screen === null;
    try {
      await this.session.setScreen(on, () => this.showOwnScreen());
    } catch (err) {
      if (!(err instanceof DOMException && err.name === 'NotAllowedError')) {
        toast(`Could not share the screen: ${err instanceof Error ? err.message : String(err)}`, 'error');
      }
    }
    this.showOwnScreen();
  }

  /** Shows (or removes) our own screen share on the stage, and updates the button. */
  showOwnScreen() {
    if (this.selfScreen) {
      attach(this.selfScreen.video, null);
      this.selfScreen.el.remove();
      this.selfScreen = null;
    }
    if (this.media.screen) {
      this.selfScreen = new ScreenTile('self', 'You are presenting', this.media.screen);
      this.stage.prepend(this.selfScreen.el);
    }
    this.updateSelf();
    this.layout();
  }

  /** @param {boolean} open */
  toggleChat(open) {
    this.chat.setOpen(open);
    this.chatButton.set({ active: open });
    if (open) {
      this.unread = 0;
      this.unreadBadge.hidden = true;
    }
    requestAnimationFrame(() => this.layout());
  }

  toggleHand() {
    const raised = !this.session.handRaised;
    this.session.setHand(raised);
    this.updateSelf(raised);
  }

  async openSettings() {
    await this.pickers.refresh();
    this.settings.showModal();
  }

  async copyInvite() {
    const link = `${location.origin}/m/${encodeURIComponent(this.room)}`;
    if (await copyText(link)) toast('Invite link copied');
    else toast(`Invite link: ${link}`, 'info', 15000);
  }

  unblockAudio() {
    const players = [...this.gallery.querySelectorAll('audio')];
    Promise.all(players.map(a => (a.srcObject ? a.play() : Promise.resolve())))
      .then(() => { this.audioBanner.hidden = true; })
      .catch(() => toast('Sound is still blocked by the browser', 'error'));
  }
}

/**
 * Enters the meeting with the given (already opened) media.
 * @param {string} room
 * @param {string} name
 * @param {LocalMedia} media
 */
export function startMeeting(room, name, media) {
  const meeting = new Meeting(room, name, media);
  meeting.start();
  return meeting;
}

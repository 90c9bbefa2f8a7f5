// The meeting screen: gallery or speaker view, stage for screen shares, controls, chat,
// participants and host controls; the waiting room and passcode prompt before it.
// Implements the session's CallView.

import { ChatPanel } from './chat.js';
import { DevicePickers } from './devices.js';
import { choose, copyText, h, show, toast } from './dom.js';
import { showLeft, showOver } from './ended.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { Layout } from './layout.js';
import { ParticipantsPanel } from './participants.js';
import { moderates } from './protocol.js';
import { POLL_MS, QualityMonitor } from './quality.js';
import { Session } from './session.js';
import { VideoSizeReporter } from './sizes.js';
import { SpeakerSmoother } from './speaker.js';
import { describeMediaError } from './media.js';
import { ScreenTile, Tile, attach } from './tiles.js';
import { WaitingScreen, askPasscode } from './waiting.js';

/**
 * @typedef {import('./protocol.js').ParticipantInfo} ParticipantInfo
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./protocol.js').Role} Role
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

  /**
   * Marks the button as locked by a host (it still explains itself when clicked).
   * @param {boolean} locked
   * @param {string} why
   */
  setLocked(locked, why) {
    this.el.classList.toggle('locked', locked);
    if (locked) {
      this.el.dataset.locked = 'true';
      this.el.title = t('meeting.locked_title', { why });
      this.el.setAttribute('aria-description', why);
    } else {
      delete this.el.dataset.locked;
      this.el.removeAttribute('aria-description');
    }
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
   * @param {{passcode?: string, requireE2ee?: boolean, relayOnly?: boolean}} [options]
   */
  constructor(room, name, media, options = {}) {
    this.room = room;
    this.name = name;
    this.media = media;
    this.session = new Session(room, name, media, this, options);
    /** @type {Map<ParticipantId, RemoteParticipant>} */
    this.remote = new Map();
    this.selfTile = new Tile(t('common.you', { name }), { self: true });
    /** @type {ScreenTile | null} */
    this.selfScreen = null;
    this.unread = 0;
    this.everJoined = false;

    this.gallery = h('div', { class: 'gallery', id: 'gallery' }, this.selfTile.el);
    this.stage = h('div', { class: 'stage', id: 'stage' });
    this.main = h('section', { class: 'main' }, this.stage, this.gallery);
    this.sizes = new VideoSizeReporter(sizes => this.session.sendVideoSizes(sizes));
    this.view = new Layout(this.main, this.stage, this.gallery,
      () => ({ self: this.selfTile.el, remote: new Map([...this.remote].map(([id, p]) => [id, p.tile.el])) }),
      () => this.sizes.changed());
    this.speaker = new SpeakerSmoother(id => this.showSpeaker(id));
    this.quality = new QualityMonitor();
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.qualityTimer = undefined;
    this.chat = new ChatPanel(text => this.session.sendChat(text), () => this.toggleChat(false));
    this.people = new ParticipantsPanel({
      admit: id => this.session.admit(id),
      deny: id => this.session.deny(id),
      mute: (id, kind) => this.session.mute(id, kind),
      askUnmute: (id, kind) => {
        if (this.session.askUnmute(id, kind)) {
          const who = this.session.participants.get(id)?.name ?? '';
          toast(t(kind === 'audio' ? 'meeting.asked_unmute' : 'meeting.asked_video', { name: who }));
        }
      },
      remove: p => void this.confirmRemove(p),
      setRole: (id, role) => this.session.setRole(id, role),
      makeHost: p => void this.confirmMakeHost(p),
      muteAll: () => void this.confirmMuteAll(),
      setLocked: locked => this.session.setMeeting({ locked }),
      setAllowSelfUnmute: allow => this.session.setMeeting({ allow_self_unmute: allow }),
      endForAll: () => void this.confirmEnd(),
    }, () => this.togglePeople(false));
    this.waitingScreen = new WaitingScreen(() => this.session.leave());
    this.statusBanner = h('div', { class: 'banner', id: 'status-banner', hidden: true });
    // Media not getting through: say so and link to the connection check, not a spinner.
    this.blockedBanner = h('div', { class: 'banner', id: 'media-blocked', hidden: true },
      h('span', { text: t('meeting.media_blocked_firewall') }), ' ',
      h('a', { href: '/check', target: '_blank', rel: 'noopener', id: 'media-check-link', text: t('meeting.check_link') }));
    this.endingBanner = h('div', { class: 'banner', id: 'ending-banner', role: 'status', hidden: true });
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.endingTimer = undefined;
    this.waitingBanner = h('button', { class: 'banner action', id: 'waiting-banner', type: 'button', hidden: true,
      onclick: () => this.togglePeople(true) });
    this.unmuteText = h('span', { id: 'unmute-prompt-text' });
    this.unmuteAccept = h('button', { type: 'button', class: 'button primary small', id: 'unmute-accept', text: t('meeting.unmute') });
    this.unmuteDecline = h('button', { type: 'button', class: 'button small', id: 'unmute-decline', text: t('meeting.stay_muted'),
      onclick: () => { this.unmutePrompt.hidden = true; } });
    this.unmutePrompt = h('div', { class: 'banner prompt', id: 'unmute-prompt', role: 'alertdialog', 'aria-labelledby': 'unmute-prompt-text', hidden: true },
      this.unmuteText, this.unmuteAccept, this.unmuteDecline);
    this.roomLabel = h('span', { class: 'room-name', id: 'room-name', text: room });
    this.lockIndicator = h('span', { class: 'lock-indicator', id: 'locked-indicator', title: t('meeting.locked_indicator_title'), hidden: true },
      icon('lock'), h('span', { text: t('meeting.locked_indicator') }));
    this.audioBanner = h('button', { class: 'banner action', id: 'audio-banner', type: 'button', hidden: true,
      text: t('meeting.audio_blocked'), onclick: () => this.unblockAudio() });
    this.securityCode = h('span', { class: 'security-code', id: 'security-code' });
    this.e2eeLabel = h('span', { id: 'e2ee-label' });
    this.e2eeLock = icon('lock');
    this.e2eeUnlock = icon('unlock');
    this.e2eeUnlock.style.display = 'none';
    this.e2eeBadge = h('button', { type: 'button', class: 'e2ee-badge', id: 'e2ee-badge', hidden: true,
      onclick: () => this.showE2eeDetails() },
      this.e2eeLock, this.e2eeUnlock, this.e2eeLabel, this.securityCode);
    /** @type {import('./e2ee.js').E2eeStatus | null} */
    this.e2eeStatus = null;
    this.e2eeList = h('ul', { class: 'e2ee-roster', id: 'e2ee-roster' });
    this.e2eeCode = h('p', { class: 'security-code big', id: 'e2ee-details-code' });
    this.e2eePlainNote = h('p', { class: 'error', id: 'e2ee-plain-note', hidden: true });
    this.e2eeDialog = h('dialog', { id: 'e2ee-dialog', class: 'card', 'aria-label': t('e2ee.details_title') },
      h('div', { class: 'stack' },
        h('h2', { text: t('e2ee.details_title') }),
        this.e2eePlainNote,
        h('p', { class: 'muted', text: t('e2ee.compare_hint') }),
        this.e2eeCode,
        this.e2eeList,
        h('button', { type: 'button', class: 'button primary', text: t('meeting.done'), onclick: () => this.e2eeDialog.close() })));
    this.countLabel = h('span', { class: 'count' });
    this.unreadBadge = h('span', { class: 'unread', hidden: true });

    this.micButton = new ControlButton('mic-btn', 'mic', t('meeting.mute'), () => void this.toggleMic());
    this.camButton = new ControlButton('cam-btn', 'cam', t('meeting.stop_video'), () => void this.toggleCamera());
    this.screenButton = new ControlButton('screen-btn', 'screen', t('meeting.share_screen'), () => void this.toggleScreen());
    this.chatButton = new ControlButton('chat-btn', 'chat', t('chat.title'), () => this.toggleChat(!this.chat.open));
    this.chatButton.el.append(this.unreadBadge);
    this.waitingBadge = h('span', { class: 'unread', id: 'waiting-badge', hidden: true });
    this.peopleButton = new ControlButton('participants-btn', 'users', t('people.title'), () => this.togglePeople(!this.people.open));
    this.peopleButton.el.append(this.waitingBadge);
    this.handButton = new ControlButton('hand-btn', 'hand', t('meeting.raise_hand'), () => this.toggleHand());
    const inviteButton = new ControlButton('invite-btn', 'link', t('meeting.invite'), () => void this.copyInvite());
    const settingsButton = new ControlButton('settings-btn', 'settings', t('meeting.devices'), () => void this.openSettings());
    this.pickers = new DevicePickers(media, {
      camera: id => this.session.setCamera(true, id),
      mic: id => this.session.switchMic(id),
      changed: () => {
        this.selfTile.setVideo(this.media.camera);
        this.updateSelf();
      },
    });
    this.settings = h('dialog', { id: 'settings-dialog', class: 'card', 'aria-label': t('meeting.devices') },
      h('div', { class: 'stack' },
        h('h2', { text: t('meeting.devices') }),
        h('label', {}, h('span', { text: t('device.camera') }), this.pickers.camera),
        h('label', {}, h('span', { text: t('device.mic') }), this.pickers.mic),
        h('button', { type: 'button', class: 'button primary', text: t('meeting.done'), onclick: () => this.settings.close() })));
    const leaveButton = new ControlButton('leave-btn', 'leave', t('meeting.leave'), () => void this.leaveClicked());
    leaveButton.el.classList.add('leave');
    if (!navigator.mediaDevices?.getDisplayMedia) this.screenButton.el.hidden = true;

    this.el = h('div', { class: 'meeting' },
      h('header', { class: 'topbar' },
        h('span', { class: 'brand', text: 'Veche' }),
        this.roomLabel,
        this.lockIndicator,
        this.e2eeBadge,
        this.countLabel,
        this.view.switch),
      this.statusBanner,
      this.blockedBanner,
      this.endingBanner,
      this.audioBanner,
      this.waitingBanner,
      this.unmutePrompt,
      h('div', { class: 'body' }, this.main, this.chat.el, this.people.el),
      h('footer', { class: 'controls' },
        this.micButton.el, this.camButton.el, this.screenButton.el, this.peopleButton.el, this.chatButton.el,
        this.handButton.el, inviteButton.el, settingsButton.el, leaveButton.el),
      this.settings,
      this.e2eeDialog);

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
    this.qualityTimer = setInterval(() => void this.pollQuality(), POLL_MS);
    addEventListener('pagehide', () => this.session.leave());
    // Hooks for tests and debugging: `veche.pc.getStats()`, `veche.participants()`.
    const session = this.session;
    Object.assign(window, {
      veche: {
        session,
        get pc() { return session.pc; },
        get selfId() { return session.selfId; },
        get role() { return session.role; },
        get meeting() { return session.meeting; },
        /** End-to-end encryption: status, epochs' start times, the worker's transform report. */
        e2ee: () => session.e2ee && {
          ...session.e2ee.status,
          members: session.e2ee.status.roster.length,
          epochStartedAt: Object.fromEntries(session.e2ee.epochStartedAt),
          transforms: session.e2ee.transforms,
          totals: session.e2ee.totals,
        },
        participants: () => [...session.participants.values()],
        waiting: () => [...session.waitingRoom.values()],
        /** Remote tracks by mid: which participant and kind each carries. */
        remoteMids: () => [...session.remoteMids].map(([mid, o]) => ({ mid, participantId: o.participantId, kind: o.kind })),
        /** The remote video sizes we would report now. */
        videoSizes: () => this.sizes.current(),
        /** Stops (true) or restarts (false) the automatic `video_sizes` reports, for tests that send their own. */
        holdVideoSizes: (/** @type {boolean} */ held) => this.sizes.hold(held),
        /** The speaker shown, and how many server reports and shown changes there were. */
        speaker: () => ({ shown: this.speaker.shown, ...this.speaker.counts }),
      },
    });
    this.session.start();
  }

  // ---- CallView ----

  /** @type {CallView['joined']} */
  joined(selfId, participants, info) {
    if (!this.el.isConnected) show(this.el);
    for (const id of [...this.remote.keys()]) this.removeParticipant(id);
    this.speaker.reset();
    this.quality.reset();
    this.sizes.reconnected();
    this.selfTile.setId(selfId);
    this.selfTile.setRole(info.role);
    for (const p of participants) this.addParticipant(p);
    const title = info.meeting.title;
    this.roomLabel.textContent = title || this.room;
    document.title = `${title || this.room} — Veche`;
    if (!this.everJoined) this.chat.system(t('chat.you_joined', { title: title || this.room }));
    if (!this.everJoined && info.role === 'host' && title) toast(t('meeting.you_host'));
    this.everJoined = true;
    this.meetingUpdated(info.meeting);
    this.status('connected');
    this.updateCount();
    this.updateWaiting();
    this.updateSelf();
    this.layout();
  }

  /** @type {CallView['waiting']} */
  waiting(title, reason) {
    this.waitingScreen.show(title, reason, this.media.camera);
  }

  /** @type {CallView['askPasscode']} */
  async askPasscode(wrong, message) {
    const passcode = await askPasscode(this.meetingTitle(), wrong, message);
    if (passcode !== null) show(this.el);
    return passcode;
  }

  /** @type {CallView['ended']} */
  ended(cause) {
    this.stop();
    showOver(this.room, this.name, cause, { passcode: this.session.passcode, host: this.session.role === 'host' });
  }

  /** @type {CallView['waitingAdded']} */
  waitingAdded(info) {
    if (moderates(this.session.role)) toast(t('meeting.is_waiting', { name: info.name }), 'info', 6000);
    this.updateWaiting();
  }

  /** @type {CallView['waitingRemoved']} */
  waitingRemoved() {
    this.updateWaiting();
  }

  /** @type {CallView['roleChanged']} */
  roleChanged(id, role) {
    if (id === this.session.selfId) {
      this.selfTile.setRole(role);
      toast(t(role === 'host' ? 'meeting.now_host' : role === 'co_host' ? 'meeting.now_cohost' : 'meeting.no_longer_cohost'));
      this.updateWaiting();
      this.updateSelf();
    } else {
      const p = this.remote.get(id);
      if (p) {
        p.tile.setRole(role);
        if (role === 'host') toast(t('meeting.other_now_host', { name: p.info.name }));
      }
    }
    this.renderPeople();
  }

  /** @type {CallView['mutedByHost']} */
  mutedByHost(kind) {
    this.unmutePrompt.hidden = true;
    this.selfTile.setVideo(this.media.camera);
    if (kind === 'screen') this.showOwnScreen();
    this.updateSelf();
    const locked = !this.session.mayUnmute(kind) && kind !== 'screen';
    toast(t(`meeting.muted_by_host.${kind}${locked ? '_locked' : ''}`), 'info', 6000);
  }

  /** @type {CallView['unmuteRequested']} */
  unmuteRequested(kind) {
    if (kind === 'screen') return;
    const audio = kind === 'audio';
    if (audio ? this.media.mic !== null && !this.media.micMuted : this.media.camera !== null) return;
    this.unmuteText.textContent = t(audio ? 'meeting.asks_unmute' : 'meeting.asks_video');
    this.unmuteAccept.textContent = t(audio ? 'meeting.unmute' : 'meeting.start_video');
    this.unmuteDecline.textContent = t(audio ? 'meeting.stay_muted' : 'meeting.keep_video_off');
    this.unmuteAccept.onclick = () => {
      this.unmutePrompt.hidden = true;
      void (audio ? this.toggleMic() : this.toggleCamera());
    };
    this.unmutePrompt.hidden = false;
    this.unmuteAccept.focus();
    this.updateSelf();
  }

  /** @type {CallView['unmuteRefused']} */
  unmuteRefused(kind) {
    this.selfTile.setVideo(this.media.camera);
    this.updateSelf();
    toast(t(kind === 'audio' ? 'meeting.mic_locked' : 'meeting.cam_locked'), 'error');
  }

  /** @type {CallView['meetingUpdated']} */
  meetingUpdated(meeting) {
    const wasLocked = !this.lockIndicator.hidden;
    this.lockIndicator.hidden = !meeting.locked;
    if (this.everJoined && wasLocked !== meeting.locked && moderates(this.session.role)) {
      toast(t(meeting.locked ? 'meeting.now_locked' : 'meeting.now_unlocked'));
    }
    if (this.everJoined && meeting.ends_at_ms !== null && this.endingTimer === undefined) this.watchEnd(meeting.ends_at_ms, false);
    this.updateSelf();
  }

  /** @type {CallView['meetingEnding']} */
  meetingEnding(minutesLeft, endsAtMs) {
    this.watchEnd(endsAtMs, true, minutesLeft);
  }

  /** @type {CallView['participantJoined']} */
  participantJoined(p) {
    this.addParticipant(p);
    this.chat.system(t('chat.joined', { name: p.name }));
    this.updateCount();
    this.layout();
  }

  /** @type {CallView['participantLeft']} */
  participantLeft(id) {
    const p = this.remote.get(id);
    if (p) this.chat.system(t('chat.left', { name: p.info.name }));
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
    p.tile.setRole(info.role);
    if (info.hand_raised && !handWasUp) toast(t('meeting.hand_raised', { name: info.name }));
    if (!info.screen && p.screen) this.removeScreen(p);
    this.sizes.changed();
    this.renderPeople();
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
      this.sizes.changed();
    } else {
      if (p.screen) this.removeScreen(p);
      const screen = new ScreenTile(id, t('meeting.screen_of', { name: p.info.name }), track);
      p.screen = screen;
      this.stage.append(screen.el);
      this.sizes.watch(screen.el, id, 'screen', () => true);
      this.layout();
    }
  }

  /** @type {CallView['remoteTrackEnded']} */
  remoteTrackEnded(id, kind) {
    const p = this.remote.get(id);
    if (!p) return;
    if (kind === 'audio') p.tile.setAudio(null, () => {});
    else if (kind === 'video') {
      p.tile.setVideo(null);
      this.sizes.changed();
    } else this.removeScreen(p);
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
    this.speaker.report(id);
  }

  /** @type {CallView['connectionQuality']} */
  connectionQuality(participants) {
    this.quality.serverReport(participants);
  }

  /**
   * The smoothed active speaker: highlighted, and on the stage of the speaker view.
   * @param {ParticipantId | null} id
   */
  showSpeaker(id) {
    const selfId = this.session.selfId;
    this.selfTile.setSpeaking(id !== null && id === selfId);
    for (const [pid, p] of this.remote) p.tile.setSpeaking(pid === id);
    this.view.setSpeaker(id, selfId);
  }

  /**
   * Pins (or unpins) a participant to the large area of the speaker view.
   * @param {ParticipantId} id
   */
  togglePin(id) {
    this.view.togglePin(id);
    for (const [pid, p] of this.remote) p.tile.setPinned(pid === this.view.pinnedId);
  }

  /** Reads the statistics and updates every tile's connection-quality bars. */
  async pollQuality() {
    const pc = this.session.pc;
    if (!pc || pc.connectionState !== 'connected') return;
    try {
      const reports = await this.quality.poll(pc, this.session.remoteMids, this.session.selfId);
      if (pc !== this.session.pc) return;
      this.selfTile.setQuality(reports.get('self') ?? null);
      for (const [id, p] of this.remote) p.tile.setQuality(reports.get(id) ?? null);
    } catch (err) {
      console.warn('could not read connection statistics', err);
    }
  }

  /** @type {CallView['ownHand']} */
  ownHand(raised) {
    this.updateSelf(raised);
  }

  /** @type {CallView['status']} */
  status(status, detail) {
    if (status === 'ended') {
      this.stop();
      if (detail) showOver(this.room, this.name, { kind: 'error', code: 'refused', message: detail }, { passcode: this.session.passcode });
      else showLeft(this.room, this.name, this.session.passcode);
      return;
    }
    const text = status === 'connecting' ? t('meeting.connecting')
      : status === 'reconnecting' ? t('meeting.reconnecting') : '';
    this.statusBanner.textContent = text;
    this.statusBanner.hidden = text === '';
  }

  /** @type {CallView['mediaBlocked']} */
  mediaBlocked(blocked) {
    this.blockedBanner.hidden = !blocked;
  }

  /** @type {CallView['e2ee']} */
  e2ee(status) {
    this.e2eeStatus = status;
    this.e2eeBadge.hidden = status === null;
    if (this.e2eeDialog.open) this.fillE2eeDetails();
    if (!status) return;
    // An `optional` meeting with someone in it whose browser cannot encrypt (maybe ours).
    const plain = status.self ? t('e2ee.plain_self')
      : status.plain.length > 0 ? t('e2ee.plain_because', { names: status.plain.join(', ') }) : '';
    this.e2eeBadge.classList.toggle('plain', plain !== '');
    this.e2eeLock.style.display = plain ? 'none' : '';
    this.e2eeUnlock.style.display = plain ? '' : 'none';
    this.e2eeBadge.classList.toggle('warning', status.roster.some(m => m.keyChanged));
    // The badge claims encryption only when every track in and out used the current keys.
    this.e2eeBadge.classList.toggle('pending', !status.encrypted && plain === '');
    this.e2eeLabel.textContent = plain ? t('e2ee.not_encrypted')
      : status.encrypted ? t('e2ee.encrypted') : t('e2ee.starting');
    this.securityCode.textContent = plain ? '' : status.code;
    this.e2eeBadge.title = plain || (status.code
      ? t('e2ee.code_title', { code: status.code, count: status.roster.length })
      : t('e2ee.starting'));
  }

  showE2eeDetails() {
    this.fillE2eeDetails();
    this.e2eeDialog.showModal();
  }

  /** The security code and everyone's key fingerprint, for comparing out of band. */
  fillE2eeDetails() {
    const status = this.e2eeStatus;
    this.e2eePlainNote.textContent = this.e2eeBadge.title;
    this.e2eePlainNote.hidden = !this.e2eeBadge.classList.contains('plain');
    this.e2eeCode.textContent = status?.code ?? '';
    const self = String(this.session.selfId);
    this.e2eeList.replaceChildren(...(status?.roster ?? []).map(m => {
      const name = m.participant === self ? t('common.you', { name: this.name })
        : this.session.participants.get(Number(m.participant))?.name ?? m.participant;
      return h('li', { 'data-participant': m.participant, class: m.keyChanged ? 'key-changed' : '' },
        h('span', { class: 'name', text: m.account ? `${name} · ${m.account}` : name }),
        h('code', { class: 'fingerprint', text: m.fingerprint }),
        m.keyChanged ? h('span', { class: 'error', text: t('e2ee.member_key_changed') }) : '');
    }));
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
    const tile = new Tile(info.name, { onPin: () => this.togglePin(info.id) });
    tile.setId(info.id);
    tile.setRole(info.role);
    tile.setFlags({ audio: info.audio, video: info.video, hand: info.hand_raised });
    this.remote.set(info.id, { info, tile, screen: null });
    this.gallery.append(tile.el);
    this.sizes.watch(tile.el, info.id, 'video', () => tile.showsVideo());
  }

  /** @param {ParticipantId} id */
  removeParticipant(id) {
    const p = this.remote.get(id);
    if (!p) return;
    p.tile.setVideo(null);
    p.tile.setAudio(null, () => {});
    p.tile.el.remove();
    this.sizes.unwatch(p.tile.el);
    this.removeScreen(p);
    this.remote.delete(id);
    this.speaker.forget(id);
    this.view.forget(id);
  }

  /** @param {RemoteParticipant} p */
  removeScreen(p) {
    if (!p.screen) return;
    attach(p.screen.video, null);
    p.screen.el.remove();
    this.sizes.unwatch(p.screen.el);
    p.screen = null;
    this.layout();
  }

  layout() {
    this.view.update();
  }

  updateCount() {
    const n = this.remote.size + 1;
    this.countLabel.textContent = n === 1 ? t('meeting.only_you') : t('meeting.people', { count: n });
    this.renderPeople();
  }

  /** The meeting's title, or the room name for an instant room. */
  meetingTitle() {
    return this.session.meeting.title || this.room;
  }

  /** Releases what the meeting screen holds once it is over. */
  stop() {
    this.resizeObserver.disconnect();
    this.sizes.stop();
    clearInterval(this.qualityTimer);
    clearInterval(this.endingTimer);
    this.media.close();
    for (const id of ['leave-dialog', 'remove-dialog', 'mute-all-dialog', 'make-host-dialog', 'end-dialog']) {
      const dialog = document.getElementById(id);
      if (dialog instanceof HTMLDialogElement) dialog.close();
    }
  }

  /** Redraws the participants panel from the session's state. */
  renderPeople() {
    const s = this.session;
    const micOn = this.media.mic !== null && !this.media.micMuted;
    this.people.render({
      self: {
        id: s.selfId ?? -1, name: this.name, role: s.role, audio: micOn, video: this.media.camera !== null,
        screen: this.media.screen !== null, hand_raised: s.handRaised,
      },
      role: s.role,
      meeting: s.meeting,
      others: [...this.remote.values()].map(p => p.info),
      waiting: [...s.waitingRoom.values()],
    });
  }

  /** The waiting-room badge, banner and list, for hosts and co-hosts. */
  updateWaiting() {
    const n = moderates(this.session.role) ? this.session.waitingRoom.size : 0;
    this.waitingBadge.textContent = String(n);
    this.waitingBadge.hidden = n === 0;
    this.waitingBanner.hidden = n === 0 || this.people.open;
    if (n > 0) {
      const first = [...this.session.waitingRoom.values()][0];
      this.waitingBanner.textContent = n === 1
        ? t('meeting.waiting_one', { name: first.name })
        : t('meeting.waiting_many', { count: n });
    }
    this.renderPeople();
  }

  /**
   * Shows "Meeting ends in N minutes" while the end is near, counting down.
   * @param {number} endsAtMs
   * @param {boolean} announced the server warned just now
   * @param {number} [minutesLeft] as the server said
   */
  watchEnd(endsAtMs, announced, minutesLeft) {
    clearInterval(this.endingTimer);
    const update = () => {
      const left = Math.max(0, endsAtMs - Date.now());
      const minutes = Math.max(1, Math.ceil(left / 60000));
      // Until the server's first warning, say nothing while more than five minutes are left.
      if (!announced && minutes > 5) {
        this.endingBanner.hidden = true;
        return;
      }
      this.endingBanner.textContent = t('meeting.ends_in', { count: minutes });
      this.endingBanner.hidden = false;
    };
    if (announced && minutesLeft !== undefined) {
      this.endingBanner.textContent = t('meeting.ends_in', { count: minutesLeft });
      this.endingBanner.hidden = false;
      toast(this.endingBanner.textContent, 'info', 8000);
    } else {
      update();
    }
    this.endingTimer = setInterval(update, 10000);
  }

  /** Refreshes the own tile and the control buttons from the local state. */
  updateSelf(hand = this.session.handRaised) {
    const micOn = this.media.mic !== null && !this.media.micMuted;
    const camOn = this.media.camera !== null;
    const sharing = this.media.screen !== null;
    this.selfTile.setFlags({ audio: micOn, video: camOn, hand });
    this.micButton.set({ icon: micOn ? 'mic' : 'micOff', label: t(micOn ? 'meeting.mute' : 'meeting.unmute'), off: !micOn });
    this.camButton.set({ icon: camOn ? 'cam' : 'camOff', label: t(camOn ? 'meeting.stop_video' : 'meeting.start_video'), off: !camOn });
    this.micButton.setLocked(!micOn && !this.session.mayUnmute('audio'), t('meeting.muted_by_host.audio'));
    this.camButton.setLocked(!camOn && !this.session.mayUnmute('video'), t('meeting.muted_by_host.video'));
    this.screenButton.set({ label: t(sharing ? 'meeting.stop_sharing' : 'meeting.share_screen'), active: sharing });
    this.handButton.set({ label: t(hand ? 'meeting.lower_hand' : 'meeting.raise_hand'), active: hand });
    this.renderPeople();
  }

  // ---- controls ----

  async toggleMic() {
    const on = this.media.mic === null || this.media.micMuted;
    if (on && !this.session.mayUnmute('audio')) {
      toast(t('meeting.mic_locked'), 'error');
      return;
    }
    this.unmutePrompt.hidden = true;
    try {
      await this.session.setMic(on);
    } catch (err) {
      toast(describeMediaError(err, 'microphone'), 'error');
    }
    this.updateSelf();
  }

  async toggleCamera() {
    const on = this.media.camera === null;
    if (on && !this.session.mayUnmute('video')) {
      toast(t('meeting.cam_locked'), 'error');
      return;
    }
    this.unmutePrompt.hidden = true;
    this.camButton.el.disabled = true;
    try {
      await this.session.setCamera(on);
    } catch (err) {
      toast(describeMediaError(err, 'camera'), 'error');
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
        toast(describeMediaError(err, 'screen'), 'error');
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
      this.selfScreen = new ScreenTile('self', t('meeting.you_present'), this.media.screen);
      this.stage.prepend(this.selfScreen.el);
    }
    this.updateSelf();
    this.layout();
  }

  /** @param {boolean} open */
  toggleChat(open) {
    if (open && this.people.open) this.togglePeople(false);
    this.chat.setOpen(open);
    this.chatButton.set({ active: open });
    if (open) {
      this.unread = 0;
      this.unreadBadge.hidden = true;
    }
    requestAnimationFrame(() => this.layout());
  }

  /** @param {boolean} open */
  togglePeople(open) {
    if (open && this.chat.open) this.toggleChat(false);
    this.people.setOpen(open);
    this.peopleButton.set({ active: open });
    this.updateWaiting();
    requestAnimationFrame(() => this.layout());
  }

  /** Leave: a host may end the meeting for everyone instead. */
  async leaveClicked() {
    if (this.session.role !== 'host' || this.remote.size === 0) {
      this.session.leave();
      return;
    }
    const choice = await choose({
      id: 'leave-dialog',
      title: t('dialog.leave.title'),
      text: t('dialog.leave.text'),
      buttons: [
        { id: 'end-all-confirm', label: t('people.end_all'), value: 'end', style: 'danger' },
        { id: 'leave-confirm', label: t('dialog.leave.confirm'), value: 'leave', style: 'primary' },
      ],
    });
    if (choice?.value === 'end') this.session.endMeeting();
    else if (choice?.value === 'leave') this.session.leave();
  }

  async confirmEnd() {
    const choice = await choose({
      id: 'end-dialog',
      title: t('dialog.end.title'),
      text: t('dialog.end.text'),
      buttons: [{ id: 'end-confirm', label: t('people.end_all'), value: 'end', style: 'danger' }],
    });
    if (choice && !this.session.endMeeting()) toast(t('meeting.not_connected'), 'error');
  }

  /** @param {ParticipantInfo} p */
  async confirmRemove(p) {
    const choice = await choose({
      id: 'remove-dialog',
      title: t('dialog.remove.title', { name: p.name }),
      text: t('dialog.remove.text'),
      checkbox: { id: 'remove-bar', label: t('dialog.remove.bar') },
      buttons: [{ id: 'remove-confirm', label: t('people.remove'), value: 'remove', style: 'danger' }],
    });
    if (choice) this.session.remove(p.id, choice.checked);
  }

  /** @param {ParticipantInfo} p */
  async confirmMakeHost(p) {
    const choice = await choose({
      id: 'make-host-dialog',
      title: t('dialog.make_host.title', { name: p.name }),
      text: t('dialog.make_host.text'),
      buttons: [{ id: 'make-host-confirm', label: t('people.make_host'), value: 'host', style: 'primary' }],
    });
    if (choice) this.session.transferHost(p.id);
  }

  async confirmMuteAll() {
    const choice = await choose({
      id: 'mute-all-dialog',
      title: t('dialog.mute_all.title'),
      text: t('dialog.mute_all.text'),
      checkbox: { id: 'mute-all-allow', label: t('dialog.mute_all.allow'), checked: this.session.meeting.allow_self_unmute },
      buttons: [{ id: 'mute-all-confirm', label: t('people.mute_all'), value: 'mute', style: 'primary' }],
    });
    if (choice) {
      this.session.muteAll(choice.checked);
      toast(t('meeting.all_muted'));
    }
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
    // A created meeting has a join page (which asks for the passcode); an instant room has none.
    const meeting = this.session.meeting.title !== '';
    const pwd = meeting && this.session.passcode ? `?pwd=${encodeURIComponent(this.session.passcode)}` : '';
    const link = `${location.origin}/${meeting ? 'j' : 'm'}/${encodeURIComponent(this.room)}${pwd}`;
    if (await copyText(link)) toast(t('meeting.invite_copied'));
    else toast(t('meeting.invite_link', { link }), 'info', 15000);
  }

  unblockAudio() {
    const players = [...this.main.querySelectorAll('audio')];
    Promise.all(players.map(a => (a.srcObject ? a.play() : Promise.resolve())))
      .then(() => { this.audioBanner.hidden = true; })
      .catch(() => toast(t('meeting.audio_still_blocked'), 'error'));

  }
}

/**
 * Enters the meeting with the given (already opened) media.
 * @param {string} room
 * @param {string} name
 * @param {LocalMedia} media
 * @param {{passcode?: string, requireE2ee?: boolean, relayOnly?: boolean}} [options] the meeting's passcode, from the link's `pwd`
 */
export function startMeeting(room, name, media, options = {}) {
  const meeting = new Meeting(room, name, media, options);
  meeting.start();
  return meeting;
}

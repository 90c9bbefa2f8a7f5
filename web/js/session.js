// One stay in a meeting: the signalling WebSocket, the peer connection and reconnects.
//
// The server is always the SDP offerer. Its first three m-lines are our publish slots
// (microphone, camera, screen); we answer them `sendonly`. Every later m-line carries one
// remote track, announced by `track_published` (participant, kind, mid) before the offer that
// adds it. After an unexpected close or an ICE/DTLS failure we join again as a new participant,
// unless the meeting is over for us (ended, removed, refused for good).
//
// In a meeting the join may first be refused for a passcode (we ask the user and send `join`
// again on the same socket) or held in the waiting room (`waiting`, then `joined` once a host
// admits us). Hosts and co-hosts get the host controls below; a host's mute turns our own
// track off through the same path as our own mute button.

import {
  FATAL_ERRORS, FINAL_ERRORS, PASSCODE_ERRORS, PROTOCOL_VERSION, moderates, parseServerMessage, signallingUrl,
} from './protocol.js';
import { E2ee, canEncrypt } from './e2ee.js';
import { errorText, t } from './i18n.js';

/**
 * @typedef {import('./protocol.js').ClientMessage} ClientMessage
 * @typedef {import('./protocol.js').ServerMessage} ServerMessage
 * @typedef {import('./protocol.js').ParticipantInfo} ParticipantInfo
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./protocol.js').VideoSize} VideoSize
 * @typedef {import('./protocol.js').Role} Role
 * @typedef {import('./protocol.js').WaitReason} WaitReason
 * @typedef {import('./protocol.js').EndReason} EndReason
 * @typedef {import('./protocol.js').MeetingState} MeetingState
 * @typedef {import('./protocol.js').WaitingInfo} WaitingInfo
 * @typedef {import('./protocol.js').ParticipantQuality} ParticipantQuality
 * @typedef {import('./media.js').LocalMedia} LocalMedia
 * @typedef {import('./e2ee.js').E2eeStatus} E2eeStatus
 */

/**
 * Why the meeting is over for us: the server refused or removed us for good (`error`), or
 * the meeting ended for everyone (`meeting_ended`).
 * @typedef {{kind: 'error', code: string, message: string}
 *   | {kind: 'meeting_ended', reason: EndReason}} EndCause
 */

/**
 * What we learn about the meeting on joining.
 * @typedef {object} JoinInfo
 * @property {Role} role our own role
 * @property {MeetingState} meeting
 * @property {WaitingInfo[]} waiting the waiting room, when we moderate
 */

/**
 * @typedef {'connecting' | 'connected' | 'reconnecting' | 'ended'} CallStatus
 */

/**
 * What the session tells the user interface.
 * @typedef {object} CallView
 * @property {(selfId: ParticipantId, participants: ParticipantInfo[], info: JoinInfo) => void} joined
 *   (Re)joined: replace every remote participant with this list.
 * @property {(title: string, reason: WaitReason) => void} waiting held in the waiting room
 * @property {(wrong: boolean, message: string) => Promise<string | null>} askPasscode
 *   the meeting wants a passcode (another one, if `wrong`); null gives up
 * @property {(cause: EndCause) => void} ended the meeting is over for us; no more reconnects
 * @property {(info: WaitingInfo) => void} waitingAdded someone waits to be admitted (moderators)
 * @property {(id: ParticipantId) => void} waitingRemoved
 * @property {(id: ParticipantId, role: Role) => void} roleChanged ours or someone else's
 * @property {(kind: TrackKind, by: ParticipantId) => void} mutedByHost
 *   a host muted our track; it is already off locally
 * @property {(kind: TrackKind, by: ParticipantId) => void} unmuteRequested
 * @property {(kind: TrackKind) => void} unmuteRefused the server kept our track muted
 * @property {(meeting: MeetingState) => void} meetingUpdated
 * @property {(minutesLeft: number, endsAtMs: number) => void} meetingEnding
 * @property {(participant: ParticipantInfo) => void} participantJoined
 * @property {(id: ParticipantId) => void} participantLeft
 * @property {(participant: ParticipantInfo) => void} participantChanged flags or name changed
 * @property {(id: ParticipantId, kind: TrackKind, track: MediaStreamTrack) => void} remoteTrack
 * @property {(id: ParticipantId, kind: TrackKind) => void} remoteTrackEnded
 * @property {(from: ParticipantId, name: string, text: string, sentAtMs: number) => void} chatMessage
 * @property {(id: ParticipantId | null) => void} activeSpeaker
 * @property {(participants: ParticipantQuality[]) => void} connectionQuality the server's view
 *   of participants' links (a server that does not judge them never sends it)
 * @property {(raised: boolean) => void} ownHand the server confirmed our hand state
 * @property {(status: CallStatus, detail?: string) => void} status `ended` only after leaving on purpose
 * @property {(message: string) => void} notice a non-fatal problem to show briefly
 * @property {(blocked: boolean) => void} mediaBlocked media has not connected (or failed):
 *   show, until it connects, that a firewall may be in the way, with a link to `/check`
 * @property {(status: E2eeStatus | null) => void} e2ee the meeting's end-to-end encryption
 *   (null: the meeting is not end-to-end encrypted)
 */

/** Publish slot order, as the server offers them. */
const SLOTS = /** @type {const} */ (['audio', 'video', 'screen']);

/**
 * The camera's simulcast layers by the RID the server offers them under: a quarter, half and
 * full resolution (180p, 360p and 720p of a 720p camera), each with a bitrate cap. The lowest
 * is what a subscriber on a poor link gets of everyone, so it is kept cheap: at 15 frames a
 * second and 90 kbit/s, two of them and two voices fit in 300 kbit/s.
 * @type {Record<string, {scaleResolutionDownBy: number, maxBitrate: number, maxFramerate?: number}>}
 */
const CAMERA_LAYERS = {
  q: { scaleResolutionDownBy: 4, maxBitrate: 90_000, maxFramerate: 15 },
  h: { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  f: { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
};


/**
 * Refusals that the user can do nothing about; they only go to the console. `unknown_type`
 * is an older server that does not know a newer message of ours (such as `video_sizes`).
 */
const QUIET_ERRORS = new Set(['invalid_candidate', 'rate_limited', 'unknown_type', 'stale_epoch', 'invalid_mls']);

/**
 * Whether we tell the server the size of each remote video we draw (`video_sizes`). A server
 * that does not know the message answers `unknown_type`, which is harmless.
 */
const SEND_VIDEO_SIZES = true;

/** Tell the user if media has not connected this long after joining. */
const MEDIA_WARNING_MS = 10000;

/** Reconnect delays grow to this many milliseconds. */
const MAX_RETRY_MS = 15000;

/** ICE restarts are asked for at most this often, and again while media stays down. */
const ICE_RESTART_MS = 4000;

/**
 * Media that was arriving and stops for this long means the path is gone (most often our
 * address changed): restart ICE at once rather than wait the ~5 s the browser takes to call
 * the connection `disconnected`. Checked every `STALL_CHECK_MS`.
 */
const STALL_MS = 1200;
const STALL_CHECK_MS = 300;

/** Our messages kept for sending again after a reattach (the server keeps more of its own). */
const KEPT_MESSAGES = 512;

/**
 * One stay in the meeting as one participant, across the signalling connections that carry
 * it: both sides count the text messages since the `join`, and each keeps its latest, so
 * that a new connection that takes the place back (`reattach`) sends again what the other
 * side missed.
 * @typedef {object} Link
 * @property {string | null} token the `reconnect` of our `joined`: null until then, and
 *   when the server keeps no places
 * @property {number} sent our messages since the join
 * @property {string[]} kept the latest of them, oldest first
 * @property {number} received the server's messages since the join
 */

/** @returns {Link} */
function newLink() {
  return { token: null, sent: 0, kept: [], received: 0 };
}

/** @returns {MeetingState} the settings of a room that did not say (an older server) */
function defaultMeeting() {
  return { title: '', locked: false, allow_self_unmute: true, ends_at_ms: null };
}

/**
 * Where this tab keeps a room's resume token: sessionStorage, so it lives as long as the tab
 * and is not shared with other tabs or sites.
 * @param {string} room
 */
function resumeStorageKey(room) {
  return `veche.resume.${room}`;
}

/**
 * @param {string} room
 * @returns {string | null}
 */
function loadResumeToken(room) {
  try {
    return sessionStorage.getItem(resumeStorageKey(room));
  } catch {
    return null; // storage disabled: we come back as a new guest
  }
}

/**
 * @param {string} room
 * @param {string} token
 */
function saveResumeToken(room, token) {
  try {
    sessionStorage.setItem(resumeStorageKey(room), token);
  } catch {
    // storage disabled or full: we come back as a new guest
  }
}

export class Session {
  /**
   * @param {string} room
   * @param {string} name
   * @param {LocalMedia} media
   * @param {CallView} view
   * @param {{passcode?: string, requireE2ee?: boolean, relayOnly?: boolean}} [options]
   *   `requireE2ee`: the link asked for an end-to-end encrypted room (`?e2ee=1`), which a new
   *   instant room becomes; `relayOnly`: media only through TURN relays (`relay=1`)
   */
  constructor(room, name, media, view, options = {}) {
    this.room = room;
    this.name = name;
    this.media = media;
    this.view = view;
    /** The meeting's passcode, sent with `join` when we have one. @type {string | undefined} */
    this.passcode = options.passcode || undefined;
    this.requireE2ee = Boolean(options.requireE2ee);
    /** The end-to-end encryption of this connection, in a meeting that requires it. @type {E2ee | null} */
    this.e2ee = null;
    /** Media only through TURN relays (the `relay=1` link option). */
    this.relayOnly = options.relayOnly === true;
    /** Our role in the meeting. @type {Role} */
    this.role = 'participant';
    /** @type {MeetingState} */
    this.meeting = defaultMeeting();
    /** The waiting room, when we moderate. @type {Map<ParticipantId, WaitingInfo>} */
    this.waitingRoom = new Map();
    /** Why we are held in the waiting room, while we are. @type {WaitReason | null} */
    this.waitingFor = null;
    /** Our tracks a host muted that we have not been allowed to turn back on since. @type {Set<TrackKind>} */
    this.hostMuted = new Set();
    /** Tracks a host asked us to turn back on (allowed even when self-unmute is off). @type {Set<TrackKind>} */
    this.unmuteAllowed = new Set();
    /** The host-muted track we last tried to turn on, for `unmute_not_allowed`. @type {TrackKind} */
    this.lastUnmute = 'audio';
    /** We asked the server to end the meeting for everyone. */
    this.endRequested = false;
    /** A passcode prompt is showing. */
    this.askingPasscode = false;
    /** Our participant id in the current connection. @type {ParticipantId | null} */
    this.selfId = null;
    /** Everyone else in the room. @type {Map<ParticipantId, ParticipantInfo>} */
    this.participants = new Map();
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** TURN servers from the last `joined`, with our credentials. @type {RTCIceServer[]} */
    this.iceServers = [];
    this.handRaised = false;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** Publish transceivers: microphone, camera, screen. @type {RTCRtpTransceiver[]} */
    this.slots = [];
    /** Remote track owners by mid. @type {Map<string, {participantId: ParticipantId, kind: TrackKind}>} */
    this.remoteMids = new Map();
    /** Tracks that arrived before their `track_published`. @type {Map<string, MediaStreamTrack>} */
    this.unclaimedTracks = new Map();
    /** Offers are answered one at a time, in order. @type {Promise<void>} */
    this.negotiation = Promise.resolve();
    this.announced = false;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** Set once we left or were refused for good: no more reconnects. */
    this.finished = false;
    /** The camera layers (RIDs) the server says someone needs; null: all. @type {string[] | null} */
    this.cameraRids = null;
    /** This stay's message counts, for a reattach. @type {Link | null} */
    this.link = null;
    /** The current socket sent `reattach` and waits for the answer: our messages wait too. */
    this.reattaching = false;
    /** Ask for an ICE restart once the place is ours again. */
    this.iceRestartWanted = false;
    /** When we last asked for an ICE restart (ms). */
    this.iceRestartAt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.iceTimer = undefined;
  }

  start() {
    this.connect();
  }

  /** Leaves the meeting for good. */
  leave() {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.retryTimer);
    this.send({ type: 'leave' });
    this.teardown();
    this.view.status('ended');
  }

  /**
   * Sends a chat message; in an end-to-end encrypted meeting sealed under the group's key
   * (the server relays what it cannot read).
   * @param {string} text
   */
  sendChat(text) {
    const e2ee = this.e2ee;
    if (!e2ee?.sealing) return this.send({ type: 'chat', text });
    e2ee.sealChat(text).then(sealed => {
      if (this.e2ee === e2ee) this.send({ type: 'sealed_chat', sealed });
    }, () => this.view.notice(t('chat.not_sealed')));
    return true;
  }

  /** @param {boolean} raised */
  setHand(raised) {
    this.handRaised = raised;
    this.send({ type: 'raise_hand', raised });
  }

  /**
   * Mutes or unmutes the microphone, opening it first if we had none.
   * @param {boolean} on
   */
  async setMic(on) {
    if (on) this.unmuting('audio');
    if (on && !this.media.mic) {
      await this.media.open({ audio: true, video: false });
      if (!this.media.mic) throw new Error(this.media.problems[0] ?? t('meeting.no_mic'));
      await this.publish(0, this.media.mic);
    }
    this.media.setMicMuted(!on);
    this.send({ type: 'set_media', kind: 'audio', enabled: on });
  }

  /**
   * Switches to another microphone, keeping the mute state.
   * @param {string} deviceId
   */
  async switchMic(deviceId) {
    await this.media.useMic(deviceId);
    await this.publish(0, this.media.mic);
    this.send({ type: 'set_media', kind: 'audio', enabled: !this.media.micMuted });
  }

  /**
   * Turns the camera on (optionally another one) or off. Off releases the device.
   * @param {boolean} on
   * @param {string} [deviceId]
   */
  async setCamera(on, deviceId) {
    if (on) {
      this.unmuting('video');
      await this.media.useCamera(deviceId);
      await this.publish(1, this.media.camera);
    } else {
      this.media.stopCamera();
      await this.publish(1, null);
    }
    this.send({ type: 'set_media', kind: 'video', enabled: on });
  }

  /**
   * Starts or stops sharing the screen.
   * @param {boolean} on
   * @param {() => void} [onEnded] called if the browser's own "stop sharing" ends the share
   */
  async setScreen(on, onEnded) {
    if (on) {
      this.unmuting('screen');
      const track = await this.media.startScreen();
      track.addEventListener('ended', () => {
        if (this.media.screen !== track) return;
        void this.setScreen(false).then(() => onEnded?.());
      });
      await this.publish(2, track);
    } else {
      this.media.stopScreen();
      await this.publish(2, null);
    }
    this.send({ type: 'set_media', kind: 'screen', enabled: on });
  }

  /**
   * Whether we may turn this track on ourselves: not muted by a host, or allowed again (the
   * meeting lets people unmute, a host asked us to, or we moderate).
   * @param {TrackKind} kind
   */
  mayUnmute(kind) {
    return !this.hostMuted.has(kind) || this.meeting.allow_self_unmute || this.unmuteAllowed.has(kind)
      || moderates(this.role);
  }

  /**
   * We are turning a track on: a host's mute of it no longer holds (if the server disagrees it
   * answers `unmute_not_allowed`).
   * @param {TrackKind} kind
   */
  unmuting(kind) {
    if (this.hostMuted.has(kind)) this.lastUnmute = kind;
    this.hostMuted.delete(kind);
    this.unmuteAllowed.delete(kind);
  }

  /**
   * Turns a track off because a host muted it: the same path as our own mute.
   * @param {TrackKind} kind
   */
  async applyHostMute(kind) {
    if (kind === 'audio') {
      if (this.media.mic && !this.media.micMuted) await this.setMic(false);
    } else if (kind === 'video') {
      if (this.media.camera) await this.setCamera(false);
    } else if (this.media.screen) {
      await this.setScreen(false);
    }
  }

  // ---- host controls (hosts and co-hosts; the server refuses others with `forbidden`) ----

  /** @param {ParticipantId} id */
  admit(id) {
    return this.send({ type: 'admit', participant_id: id });
  }

  /** @param {ParticipantId} id */
  deny(id) {
    return this.send({ type: 'deny', participant_id: id });
  }

  /**
   * @param {ParticipantId} id
   * @param {TrackKind} kind
   */
  mute(id, kind) {
    return this.send({ type: 'mute', participant_id: id, kind });
  }

  /** @param {boolean} allowSelfUnmute */
  muteAll(allowSelfUnmute) {
    return this.send({ type: 'mute_all', allow_self_unmute: allowSelfUnmute });
  }

  /**
   * @param {ParticipantId} id
   * @param {TrackKind} kind
   */
  askUnmute(id, kind) {
    return this.send({ type: 'ask_unmute', participant_id: id, kind });
  }

  /** @param {{locked?: boolean, allow_self_unmute?: boolean}} changes */
  setMeeting(changes) {
    return this.send({ type: 'set_meeting', ...changes });
  }

  /**
   * @param {ParticipantId} id
   * @param {boolean} bar whether they may not rejoin while the meeting runs
   */
  remove(id, bar) {
    return this.send({ type: 'remove', participant_id: id, bar });
  }

  /**
   * Host only.
   * @param {ParticipantId} id
   * @param {'co_host' | 'participant'} role
   */
  setRole(id, role) {
    return this.send({ type: 'set_role', participant_id: id, role });
  }

  /**
   * Host only: we become co-host.
   * @param {ParticipantId} id
   */
  transferHost(id) {
    return this.send({ type: 'transfer_host', participant_id: id });
  }

  /** Host only: ends the meeting for everyone (the server answers with `meeting_ended`). */
  endMeeting() {
    this.endRequested = this.send({ type: 'end_meeting' });
    return this.endRequested;
  }

  /**
   * Tells the server which remote videos we render and how large: each gets the smallest
   * layer that covers its tile, and every remote video not listed is paused. Each message
   * replaces the previous set.
   * @param {VideoSize[]} sizes
   * @returns {boolean} whether it was sent (false before we are in a meeting)
   */
  sendVideoSizes(sizes) {
    if (!SEND_VIDEO_SIZES || this.selfId === null) return false;
    return this.send({ type: 'video_sizes', sizes });
  }

  /**
   * Puts a track (or nothing) on a publish slot, without renegotiating.
   * @param {number} slot
   * @param {MediaStreamTrack | null} track
   */
  async publish(slot, track) {
    const transceiver = this.slots[slot];
    if (transceiver && transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
  }

  /**
   * Sends a message if the socket is open.
   * @param {ClientMessage} msg
   * @returns {boolean} whether it was sent
   */
  send(msg) {
    const open = this.ws !== null && this.ws.readyState === WebSocket.OPEN && !this.reattaching;
    const link = this.link;
    // Once joined, a message is kept (and counted) even while the socket is down: the
    // reattach sends it.
    if (!link || (!open && link.token === null)) {
      if (!open || !this.ws) return false;
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    const text = JSON.stringify(msg);
    link.sent += 1;
    link.kept.push(text);
    if (link.kept.length > KEPT_MESSAGES) link.kept.shift();
    if (open && this.ws) this.ws.send(text);
    return true;
  }

  /**
   * Opens a signalling connection: it takes our place back (`reattach`) while we have one
   * and our media session, or joins.
   */
  connect() {
    const place = this.link?.token && this.pc ? this.link : null;
    this.view.status(this.attempt === 0 && !place ? 'connecting' : 'reconnecting');
    const ws = new WebSocket(signallingUrl());
    this.ws = ws;
    this.reattaching = place !== null;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      if (place && place === this.link && place.token) {
        ws.send(JSON.stringify({ type: 'reattach', token: place.token, received: place.received }));
      } else {
        this.link = newLink();
        this.sendJoin();
      }
    });
    ws.addEventListener('message', event => {
      if (ws !== this.ws || typeof event.data !== 'string') return;
      const msg = parseServerMessage(event.data);
      // The answers to a reattach are not counted, on either side.
      const uncounted = msg?.type === 'reattached' || (msg?.type === 'error' && msg.code === 'reattach_failed');
      if (this.link && !uncounted) this.link.received += 1;
      if (msg) this.handle(msg);
    });
    ws.addEventListener('close', () => {
      if (ws === this.ws) this.dropped();
    });
  }

  /**
   * The signalling connection closed. With a place kept for us and our media session, a new
   * connection takes it back at once (the media may not even have noticed); otherwise we
   * join again.
   */
  dropped() {
    if (this.finished) return;
    if (this.endRequested || !this.link?.token || !this.pc) {
      this.lost();
      return;
    }
    this.ws = null;
    this.reattaching = false;
    this.view.status('reconnecting');
    const delay = this.attempt === 0 ? 0 : Math.min(MAX_RETRY_MS, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * The server gave our place back: send what it missed of ours, then ask for the ICE
   * restart if that is why we came.
   * @param {number} received how many of our messages the server has
   */
  reattached(received) {
    const link = this.link;
    const ws = this.ws;
    if (!link || !ws) return;
    this.reattaching = false;
    this.attempt = 0;
    const first = link.sent - link.kept.length + 1;
    if (received > link.sent || received + 1 < first) {
      // We no longer have what it missed: start over as a new participant.
      this.rejoin();
      return;
    }
    for (let n = received + 1; n <= link.sent; n++) ws.send(link.kept[n - first]);
    this.view.status(this.pc?.connectionState === 'connected' ? 'connected' : 'reconnecting');
    if (this.iceRestartWanted) {
      this.iceRestartWanted = false;
      this.send({ type: 'ice_restart' });
    }
  }

  /** Gives the place up and joins again at once, as a new participant. */
  rejoin() {
    this.teardown();
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /**
   * Media stopped flowing (our network changed, most likely): restart ICE on the same
   * session. The signalling socket may have died with the network without knowing it yet,
   * so a new connection takes our place first and asks from there; this is tried again
   * while media stays down.
   */
  recoverMedia() {
    if (this.finished || !this.link?.token || !this.pc) return;
    const now = Date.now();
    if (now - this.iceRestartAt < ICE_RESTART_MS) return;
    this.iceRestartAt = now;
    this.iceRestartWanted = true;
    const pc = this.pc;
    clearTimeout(this.iceTimer);
    this.iceTimer = setTimeout(() => {
      if (pc === this.pc && pc.connectionState !== 'connected') this.recoverMedia();
    }, ICE_RESTART_MS);
    const old = this.ws;
    this.ws = null;
    old?.close();
    clearTimeout(this.retryTimer);
    this.connect();
  }

  sendJoin() {
    /** @type {ClientMessage} */
    const join = { type: 'join', version: PROTOCOL_VERSION, room: this.room, name: this.name };
    if (this.passcode) join.passcode = this.passcode;
    const resume = loadResumeToken(this.room);
    if (resume) join.resume = resume;
    if (canEncrypt()) join.e2ee = true;
    if (this.requireE2ee) join.require_e2ee = true;
    this.send(join);
  }

  /**
   * The meeting is over for us: no more reconnects.
   * @param {EndCause} cause
   */
  end(cause) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.retryTimer);
    this.teardown();
    this.view.ended(cause);
  }

  /** The connection dropped: start over after a growing delay. */
  lost() {
    if (this.finished) return;
    if (this.endRequested) {
      // We ended the meeting and the server closed before saying so.
      this.end({ kind: 'meeting_ended', reason: 'host' });
      return;
    }
    this.teardown();
    const delay = Math.min(MAX_RETRY_MS, 1000 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.view.status('reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Closes the socket and the peer connection (local devices stay open). */
  teardown() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    this.pc?.close();
    this.pc = null;
    this.slots = [];
    this.remoteMids.clear();
    this.unclaimedTracks.clear();
    this.negotiation = Promise.resolve();
    this.announced = false;
    this.selfId = null;
    this.waitingFor = null;
    this.cameraRids = null;
    this.e2ee?.stop();
    this.e2ee = null;
    this.link = null;
    this.reattaching = false;
    this.iceRestartWanted = false;
    clearTimeout(this.iceTimer);
  }

  /** @param {ServerMessage} msg */
  handle(msg) {
    switch (msg.type) {
      case 'joined': {
        this.selfId = msg.participant_id;
        this.waitingFor = null;
        for (const p of msg.participants) p.role ??= 'participant';
        this.participants = new Map(msg.participants.map(p => [p.id, p]));
        this.role = msg.role ?? 'participant';
        this.meeting = msg.meeting ?? defaultMeeting();
        this.waitingRoom = new Map((msg.waiting ?? []).map(w => [w.id, w]));
        // A guest is recognised by this token when the connection comes back (after a
        // dropped network or a server restart); the server says which host mutes still hold.
        if (msg.resume) saveResumeToken(this.room, msg.resume);
        this.hostMuted = new Set(msg.host_muted ?? []);
        this.unmuteAllowed.clear();
        this.iceServers = msg.ice_servers ?? [];
        if (this.link) this.link.token = msg.reconnect ?? null;
        this.startE2ee(msg.participant_id);
        for (const kind of this.hostMuted) {
          this.applyHostMute(kind).catch(err => console.error('could not keep the host\'s mute', err));
        }
        this.watchMediaStart(this.ensurePeerConnection());
        this.view.joined(msg.participant_id, msg.participants,
          { role: this.role, meeting: this.meeting, waiting: [...this.waitingRoom.values()] });
        if (this.handRaised) this.send({ type: 'raise_hand', raised: true });
        break;
      }
      case 'reattached':
        this.reattached(msg.received);
        break;
      case 'waiting':
        this.waitingFor = msg.reason;
        if (msg.title) this.meeting = { ...this.meeting, title: msg.title };
        this.view.waiting(msg.title, msg.reason);
        break;
      case 'offer': {
        const sdp = msg.sdp;
        const link = this.link;
        this.negotiation = this.negotiation.then(() => this.answer(sdp)).catch(err => {
          if (link !== this.link) return; // that stay is already over
          console.error('negotiation failed', err);
          this.view.notice(t('meeting.media_negotiation_failed'));
          this.lost();
        });
        break;
      }
      case 'participant_joined':
        msg.participant.role ??= 'participant';
        this.participants.set(msg.participant.id, msg.participant);
        this.view.participantJoined(msg.participant);
        this.followPlain();
        break;
      case 'participant_left':
        this.participants.delete(msg.participant_id);
        for (const [mid, owner] of this.remoteMids) {
          if (owner.participantId === msg.participant_id) this.remoteMids.delete(mid);
        }
        this.view.participantLeft(msg.participant_id);
        this.followPlain();
        break;
      case 'track_published': {
        this.remoteMids.set(msg.mid, { participantId: msg.participant_id, kind: msg.kind });
        const track = this.unclaimedTracks.get(msg.mid);
        if (track) {
          this.unclaimedTracks.delete(msg.mid);
          this.view.remoteTrack(msg.participant_id, msg.kind, track);
        }
        break;
      }
      case 'track_unpublished':
        this.remoteMids.delete(msg.mid);
        this.view.remoteTrackEnded(msg.participant_id, msg.kind);
        break;
      case 'media_state': {
        const p = this.participants.get(msg.participant_id);
        if (!p) break;
        p[msg.kind === 'audio' ? 'audio' : msg.kind === 'video' ? 'video' : 'screen'] = msg.enabled;
        this.view.participantChanged(p);
        break;
      }
      case 'hand': {
        if (msg.participant_id === this.selfId) {
          this.handRaised = msg.raised;
          this.view.ownHand(msg.raised);
          break;
        }
        const p = this.participants.get(msg.participant_id);
        if (!p) break;
        p.hand_raised = msg.raised;
        this.view.participantChanged(p);
        break;
      }
      case 'chat':
        this.view.chatMessage(msg.from, msg.name, msg.text, msg.sent_at_ms);
        break;
      case 'sealed_chat': {
        const e2ee = this.e2ee;
        e2ee?.openChat(msg.from, msg.sealed).then(text => {
          if (this.e2ee !== e2ee) return;
          this.view.chatMessage(msg.from, msg.name, text ?? t('chat.unreadable'), msg.sent_at_ms);
        });
        break;
      }
      case 'active_speaker':
        this.view.activeSpeaker(msg.participant_id);
        break;
      case 'layers_wanted':
        if (msg.kind === 'video' && this.slots[1]) {
          this.cameraRids = msg.rids;
          void configureCameraLayers(this.slots[1].sender, msg.rids)
            .catch(err => console.warn('could not change the camera\'s layers', err));
        }
        break;
      case 'connection_quality':
        if (Array.isArray(msg.participants)) this.view.connectionQuality(msg.participants);
        break;
      case 'waiting_added':
        this.waitingRoom.set(msg.participant.id, msg.participant);
        this.view.waitingAdded(msg.participant);
        break;
      case 'waiting_removed':
        if (this.waitingRoom.delete(msg.participant_id)) this.view.waitingRemoved(msg.participant_id);
        break;
      case 'role_changed': {
        if (msg.participant_id === this.selfId) {
          this.role = msg.role;
          if (!moderates(msg.role)) this.waitingRoom.clear();
        } else {
          const p = this.participants.get(msg.participant_id);
          if (!p) break;
          p.role = msg.role;
        }
        this.view.roleChanged(msg.participant_id, msg.role);
        break;
      }
      case 'muted_by_host': {
        const { kind, by } = msg;
        this.hostMuted.add(kind);
        this.unmuteAllowed.delete(kind);
        this.applyHostMute(kind)
          .catch(err => console.error('could not apply the host\'s mute', err))
          .finally(() => this.view.mutedByHost(kind, by));
        break;
      }
      case 'unmute_requested':
        this.unmuteAllowed.add(msg.kind);
        this.view.unmuteRequested(msg.kind, msg.by);
        break;
      case 'meeting_updated':
        this.meeting = msg.meeting;
        this.view.meetingUpdated(msg.meeting);
        break;
      case 'meeting_ending':
        this.meeting = { ...this.meeting, ends_at_ms: msg.ends_at_ms };
        this.view.meetingEnding(msg.minutes_left, msg.ends_at_ms);
        break;
      case 'meeting_ended':
        this.end({ kind: 'meeting_ended', reason: msg.reason });
        break;
      case 'error':
        this.onError(msg.code, msg.message);
        break;
      case 'mls_create':
      case 'mls_propose':
      case 'mls_commit_accepted':
      case 'mls_commit':
      case 'mls_welcome':
        this.e2ee?.handle(msg);
        break;
      default:
        // A newer server may send more; ignore what we do not know.
        break;
    }
  }

  /**
   * @param {string} code
   * @param {string} serverMessage the server's own (English) text
   */
  onError(code, serverMessage) {
    console.warn('server error', code, serverMessage);
    // From here on the message is the user's language (the server's text for unknown codes).
    const message = errorText(code, serverMessage);
    if (code === 'reattach_failed') {
      // Our place is gone (expired, or the server restarted): join as a new participant.
      this.rejoin();
      return;
    }
    if (code === 'stale_epoch') this.e2ee?.commitRefused();
    if (code === 'invalid_mls') this.e2ee?.commitInvalid();
    if (PASSCODE_ERRORS.has(code) && this.selfId === null) {
      void this.askPasscode(code === 'wrong_passcode', message);
    } else if (code === 'unmute_not_allowed') {
      this.unmuteRefused();
    } else if (FINAL_ERRORS.has(code) && (this.selfId === null || FATAL_ERRORS.has(code))) {
      this.end({ kind: 'error', code, message });
    } else if (!QUIET_ERRORS.has(code)) {
      // After a fatal one the server closes the socket and the close handler reconnects.
      this.view.notice(message);
    }
  }

  /**
   * Asks the user for the passcode and joins again with it on the current socket.
   * @param {boolean} wrong
   * @param {string} message
   */
  async askPasscode(wrong, message) {
    if (this.askingPasscode) return;
    this.askingPasscode = true;
    let passcode;
    try {
      passcode = await this.view.askPasscode(wrong, message);
    } finally {
      this.askingPasscode = false;
    }
    if (this.finished) return;
    if (passcode === null) {
      this.leave();
      return;
    }
    this.passcode = passcode;
    // If the socket dropped meanwhile, the reconnect sends the new passcode.
    if (this.selfId === null && this.waitingFor === null) this.sendJoin();
  }

  /** The server kept a host-muted track muted: turn it back off here too. */
  unmuteRefused() {
    const kind = this.lastUnmute;
    this.hostMuted.add(kind);
    this.applyHostMute(kind)
      .catch(err => console.error('could not re-mute', err))
      .finally(() => this.view.unmuteRefused(kind));
  }

  /**
   * Starts end-to-end encryption for this connection if the meeting requires it, or offers
   * it and this browser can. Each connection is a new participant, so it gets a new MLS
   * member.
   * @param {ParticipantId} selfId
   */
  startE2ee(selfId) {
    this.e2ee?.stop();
    this.e2ee = null;
    const mode = this.meeting.e2ee ?? 'off';
    if (mode === 'off' || (mode === 'optional' && !canEncrypt())) {
      // In an `optional` meeting this browser is the one that keeps it in the clear.
      this.view.e2ee(mode === 'off' ? null
        : { encrypted: false, code: '', epoch: -1, fingerprint: '', roster: [], plain: [], self: true });
      return;
    }
    const e2ee = new E2ee(selfId, msg => this.send(msg), status => {
      if (this.e2ee === e2ee) this.view.e2ee(status);
    }, account => this.view.notice(t('e2ee.key_changed', { account })), () => {
      if (this.e2ee !== e2ee) return;
      this.view.notice(t('e2ee.rejoining'));
      this.lost();
    });
    this.e2ee = e2ee;
    this.followPlain();
    this.view.e2ee(e2ee.status);
    e2ee.start();
  }

  /**
   * In an `optional` meeting, tells our encryption who is in whose browser cannot encrypt
   * (while anyone is, media and chat go in the clear), and says so when that changes.
   */
  followPlain() {
    const e2ee = this.e2ee;
    if (!e2ee || this.meeting.e2ee !== 'optional') return;
    const names = [...this.participants.values()].filter(p => !p.e2ee).map(p => p.name);
    const was = e2ee.status.plain.length > 0;
    e2ee.setPlain(names);
    if (names.length > 0 && !was) this.view.notice(t('e2ee.now_plain', { names: names.join(', ') }));
    if (names.length === 0 && was) this.view.notice(t('e2ee.now_encrypted'));
  }

  /**
   * Warns if media has not connected a while after joining (ICE itself takes ~30 s to fail).
   * @param {RTCPeerConnection} pc
   */
  watchMediaStart(pc) {
    setTimeout(() => {
      if (pc === this.pc && pc.connectionState !== 'connected') this.view.mediaBlocked(true);
    }, MEDIA_WARNING_MS);
    this.watchStall(pc);
  }

  /**
   * Watches the bytes `pc` receives (every candidate pair's, which both Chromium and Firefox
   * report): once they were flowing, a stop of `STALL_MS` restarts ICE. A peer connection
   * that receives nothing at all (alone, nobody publishing) never counts as stalled.
   * @param {RTCPeerConnection} pc
   */
  watchStall(pc) {
    let last = -1;
    let lastChange = Date.now();
    /** Bytes arrived in the previous interval: media was flowing. */
    let flowing = false;
    const timer = setInterval(async () => {
      if (pc !== this.pc || pc.connectionState === 'closed') {
        clearInterval(timer);
        return;
      }
      let bytes = 0;
      try {
        (await pc.getStats()).forEach(s => {
          if (s.type === 'candidate-pair') bytes += s.bytesReceived ?? 0;
        });
      } catch {
        return;
      }
      const now = Date.now();
      if (bytes !== last) {
        flowing = last >= 0 && bytes > last;
        last = bytes;
        lastChange = now;
      } else if (flowing && now - lastChange >= STALL_MS) {
        flowing = false;
        console.info(`no media for ${now - lastChange} ms: restarting ICE`);
        this.recoverMedia();
      }
    }, STALL_CHECK_MS);
  }

  ensurePeerConnection() {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.pc = pc;
    pc.addEventListener('icecandidate', event => {
      const candidate = event.candidate;
      if (pc !== this.pc || !candidate || !candidate.candidate) return;
      // mDNS-hidden host addresses (x.local, used until camera/mic access is granted) mean
      // nothing to the server; it learns our address from our connectivity checks anyway.
      if (candidate.address?.endsWith('.local')) return;
      this.send({ type: 'candidate', candidate: candidate.candidate });
    });
    pc.addEventListener('track', event => {
      if (pc !== this.pc) return;
      this.e2ee?.attachReceiver(event.receiver);
      const mid = event.transceiver.mid;
      if (mid === null) return;
      const owner = this.remoteMids.get(mid);
      if (owner) this.view.remoteTrack(owner.participantId, owner.kind, event.track);
      else this.unclaimedTracks.set(mid, event.track);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === 'connected') {
        this.attempt = 0;
        this.view.mediaBlocked(false);
        this.view.status('connected');
      } else if (pc.connectionState === 'disconnected') {
        // Our network changed, or packets are being lost: restart ICE rather than wait.
        this.view.status('reconnecting');
        this.recoverMedia();
      } else if (pc.connectionState === 'failed') {
        this.view.notice(t('meeting.media_failed'));
        this.view.mediaBlocked(true);
        if (this.link?.token) this.recoverMedia();
        else this.lost();
      }
    });
    return pc;
  }

  /**
   * Answers one offer from the server.
   * @param {string} sdp
   */
  async answer(sdp) {
    const pc = this.ensurePeerConnection();
    await pc.setRemoteDescription({ type: 'offer', sdp });
    if (pc !== this.pc) return;
    if (this.slots.length === 0) this.slots = findSlots(pc, sdp);
    if (this.e2ee) {
      for (const [i, transceiver] of this.slots.entries()) this.e2ee.attachSender(transceiver.sender, i === 0 ? 'audio' : 'video');
    }
    const tracks = [this.media.mic, this.media.camera, this.media.screen];
    for (const [i, transceiver] of this.slots.entries()) {
      if (transceiver.currentDirection === 'stopped') continue;
      transceiver.direction = 'sendonly';
      const track = tracks[i] ?? null;
      if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (pc !== this.pc || !pc.localDescription) return;
    if (this.slots[1]) await configureCameraLayers(this.slots[1].sender, this.cameraRids);
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    if (!this.announced) {
      this.announced = true;
      this.send({ type: 'set_media', kind: 'audio', enabled: Boolean(this.media.mic) && !this.media.micMuted });
      this.send({ type: 'set_media', kind: 'video', enabled: Boolean(this.media.camera) });
      if (this.media.screen) this.send({ type: 'set_media', kind: 'screen', enabled: true });
    }
  }
}

/**
 * Gives the camera's simulcast encodings (made from the RIDs the server's offer lists) their
 * sizes and bitrates, and turns off those nobody needs (`layers_wanted`). A browser that
 * answered without simulcast has one encoding, left as it is.
 * @param {RTCRtpSender} sender
 * @param {string[] | null} wanted the RIDs to encode; null: all
 */
async function configureCameraLayers(sender, wanted) {
  const params = sender.getParameters();
  const encodings = params.encodings ?? [];
  let changed = false;
  for (const encoding of encodings) {
    const layer = encoding.rid === undefined ? undefined : CAMERA_LAYERS[encoding.rid];
    if (!layer || encoding.rid === undefined) continue;
    const active = wanted === null || wanted.includes(encoding.rid);
    if (encoding.scaleResolutionDownBy !== layer.scaleResolutionDownBy || encoding.maxBitrate !== layer.maxBitrate
      || encoding.maxFramerate !== layer.maxFramerate || encoding.active !== active) {
      encoding.scaleResolutionDownBy = layer.scaleResolutionDownBy;
      encoding.maxBitrate = layer.maxBitrate;
      if (layer.maxFramerate !== undefined) encoding.maxFramerate = layer.maxFramerate;
      encoding.active = active;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
}

/**
 * The publish transceivers: those of the offer's first three m-lines, in order.
 * @param {RTCPeerConnection} pc
 * @param {string} sdp the first offer
 * @returns {RTCRtpTransceiver[]}
 */
function findSlots(pc, sdp) {
  const transceivers = pc.getTransceivers();
  const mids = [...sdp.matchAll(/^a=mid:(\S+)/gm)].map(m => m[1]).slice(0, SLOTS.length);
  const byMid = mids.map(mid => transceivers.find(t => t.mid === mid));
  if (byMid.length === SLOTS.length && byMid.every(t => t !== undefined)) {
    return /** @type {RTCRtpTransceiver[]} */ (byMid);
  }
  return transceivers.slice(0, SLOTS.length);
}

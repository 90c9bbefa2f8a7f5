// One stay in a meeting: the signalling WebSocket, the peer connection and reconnects.
//
// The server is always the SDP offerer. Its first three m-lines are our publish slots
// (microphone, camera, screen); we answer them `sendonly`. Every later m-line carries one
// remote track, announced by `track_published` (participant, kind, mid) before the offer that
// adds it. After an unexpected close or an ICE/DTLS failure we join again as a new participant.

import { FATAL_ERRORS, FINAL_ERRORS, PROTOCOL_VERSION, parseServerMessage, signallingUrl } from './protocol.js';

/**
 * @typedef {import('./protocol.js').ClientMessage} ClientMessage
 * @typedef {import('./protocol.js').ServerMessage} ServerMessage
 * @typedef {import('./protocol.js').ParticipantInfo} ParticipantInfo
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./media.js').LocalMedia} LocalMedia
 */

/**
 * @typedef {'connecting' | 'connected' | 'reconnecting' | 'ended'} CallStatus
 */

/**
 * What the session tells the user interface.
 * @typedef {object} CallView
 * @property {(selfId: ParticipantId, participants: ParticipantInfo[]) => void} joined
 *   (Re)joined: replace every remote participant with this list.
 * @property {(participant: ParticipantInfo) => void} participantJoined
 * @property {(id: ParticipantId) => void} participantLeft
 * @property {(participant: ParticipantInfo) => void} participantChanged flags or name changed
 * @property {(id: ParticipantId, kind: TrackKind, track: MediaStreamTrack) => void} remoteTrack
 * @property {(id: ParticipantId, kind: TrackKind) => void} remoteTrackEnded
 * @property {(from: ParticipantId, name: string, text: string, sentAtMs: number) => void} chatMessage
 * @property {(id: ParticipantId | null) => void} activeSpeaker
 * @property {(raised: boolean) => void} ownHand the server confirmed our hand state
 * @property {(status: CallStatus, detail?: string) => void} status
 * @property {(message: string) => void} notice a non-fatal problem to show briefly
 */

/** Publish slot order, as the server offers them. */
const SLOTS = /** @type {const} */ (['audio', 'video', 'screen']);

/** Refusals that the user can do nothing about; they only go to the console. */
const QUIET_ERRORS = new Set(['invalid_candidate', 'rate_limited']);

/** Tell the user if media has not connected this long after joining. */
const MEDIA_WARNING_MS = 10000;

/** Reconnect delays grow to this many milliseconds. */
const MAX_RETRY_MS = 15000;

export class Session {
  /**
   * @param {string} room
   * @param {string} name
   * @param {LocalMedia} media
   * @param {CallView} view
   */
  constructor(room, name, media, view) {
    this.room = room;
    this.name = name;
    this.media = media;
    this.view = view;
    /** Our participant id in the current connection. @type {ParticipantId | null} */
    this.selfId = null;
    /** Everyone else in the room. @type {Map<ParticipantId, ParticipantInfo>} */
    this.participants = new Map();
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
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

  /** @param {string} text */
  sendChat(text) {
    return this.send({ type: 'chat', text });
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
    if (on && !this.media.mic) {
      await this.media.open({ audio: true, video: false });
      if (!this.media.mic) throw new Error(this.media.problems[0] ?? 'No microphone');
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
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  connect() {
    this.view.status(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const ws = new WebSocket(signallingUrl());
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.send({ type: 'join', version: PROTOCOL_VERSION, room: this.room, name: this.name });
    });
    ws.addEventListener('message', event => {
      if (ws !== this.ws || typeof event.data !== 'string') return;
      const msg = parseServerMessage(event.data);
      if (msg) this.handle(msg);
    });
    ws.addEventListener('close', () => {
      if (ws === this.ws) this.lost();
    });
  }

  /** The connection dropped: start over after a growing delay. */
  lost() {
    if (this.finished) return;
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
  }

  /** @param {ServerMessage} msg */
  handle(msg) {
    switch (msg.type) {
      case 'joined':
        this.selfId = msg.participant_id;
        this.participants = new Map(msg.participants.map(p => [p.id, p]));
        this.watchMediaStart(this.ensurePeerConnection());
        this.view.joined(msg.participant_id, msg.participants);
        if (this.handRaised) this.send({ type: 'raise_hand', raised: true });
        break;
      case 'offer': {
        const sdp = msg.sdp;
        const ws = this.ws;
        this.negotiation = this.negotiation.then(() => this.answer(sdp)).catch(err => {
          if (ws !== this.ws) return; // that connection is already gone
          console.error('negotiation failed', err);
          this.view.notice('Media negotiation failed — reconnecting');
          this.lost();
        });
        break;
      }
      case 'participant_joined':
        this.participants.set(msg.participant.id, msg.participant);
        this.view.participantJoined(msg.participant);
        break;
      case 'participant_left':
        this.participants.delete(msg.participant_id);
        for (const [mid, owner] of this.remoteMids) {
          if (owner.participantId === msg.participant_id) this.remoteMids.delete(mid);
        }
        this.view.participantLeft(msg.participant_id);
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
      case 'active_speaker':
        this.view.activeSpeaker(msg.participant_id);
        break;
      case 'error':
        this.onError(msg.code, msg.message);
        break;
      default:
        // A newer server may send more; ignore what we do not know.
        break;
    }
  }

  /**
   * @param {string} code
   * @param {string} message
   */
  onError(code, message) {
    console.warn('server error', code, message);
    if (FINAL_ERRORS.has(code) && (this.selfId === null || FATAL_ERRORS.has(code))) {
      this.finished = true;
      this.teardown();
      this.view.status('ended', message);
    } else if (!QUIET_ERRORS.has(code)) {
      // After a fatal one the server closes the socket and the close handler reconnects.
      this.view.notice(message);
    }
  }

  /**
   * Warns if media has not connected a while after joining (ICE itself takes ~30 s to fail).
   * @param {RTCPeerConnection} pc
   */
  watchMediaStart(pc) {
    setTimeout(() => {
      if (pc === this.pc && pc.connectionState !== 'connected') {
        this.view.notice('Media is not getting through yet — a firewall may be blocking the server\'s UDP media port.');
      }
    }, MEDIA_WARNING_MS);
  }

  ensurePeerConnection() {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
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
        this.view.status('connected');
      } else if (pc.connectionState === 'disconnected') {
        // Often recovers by itself within seconds; if not, ICE moves on to 'failed'.
        this.view.status('reconnecting');
      } else if (pc.connectionState === 'failed') {
        this.view.notice('Media connection failed');
        this.lost();
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

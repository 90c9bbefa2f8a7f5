// The signalling protocol, mirrored from crates/veche-proto/src/lib.rs. Keep the two in step.

import { t } from './i18n.js';

/** Bumped on any incompatible change; must match the server's PROTOCOL_VERSION. */
export const PROTOCOL_VERSION = 1;

/** @typedef {number} ParticipantId */
/** @typedef {'audio' | 'video' | 'screen'} TrackKind */

/**
 * A participant's standing in a meeting. Hosts and co-hosts use the host controls; only the
 * host appoints co-hosts, hands the host role on or ends the meeting for everyone.
 * @typedef {'host' | 'co_host' | 'participant' | 'guest'} Role
 */

/** Why a joiner is held in the waiting room. @typedef {'waiting_room' | 'host_absent'} WaitReason */

/** Why a meeting ended for everyone. @typedef {'host' | 'time_limit'} EndReason */

/**
 * Meeting-wide settings and limits, sent on join and whenever a host changes them.
 * @typedef {object} MeetingState
 * @property {string} title empty for an instant guest room
 * @property {boolean} locked no one new may join (hosts and co-hosts still may)
 * @property {boolean} allow_self_unmute participants muted by a host may unmute themselves
 * @property {number | null} ends_at_ms when the plan's time limit ends the meeting
 * @property {E2eeMode} [e2ee] whether media is end-to-end encrypted (absent: `off`)
 */

/**
 * A meeting's end-to-end encryption: `required` meetings admit only browsers that encrypt.
 * @typedef {'off' | 'optional' | 'required'} E2eeMode
 */

/**
 * A TURN server with credentials minted for this participant.
 * @typedef {object} IceServer
 * @property {string[]} urls
 * @property {string} username
 * @property {string} credential
 */

/**
 * Someone in the waiting room, as hosts and co-hosts see them.
 * @typedef {object} WaitingInfo
 * @property {ParticipantId} id
 * @property {string} name
 * @property {Role} role
 */

/**
 * @typedef {object} ParticipantInfo
 * @property {ParticipantId} id
 * @property {string} name
 * @property {Role} role
 * @property {boolean} audio microphone on
 * @property {boolean} video camera on
 * @property {boolean} screen sharing the screen
 * @property {boolean} hand_raised
 * @property {boolean} [e2ee] their browser can encrypt media end to end
 */

/**
 * The size at which the client renders one remote video, in device pixels (CSS pixels ×
 * devicePixelRatio, rounded). The server sends no more resolution than that.
 * @typedef {object} VideoSize
 * @property {ParticipantId} participant_id
 * @property {'video' | 'screen'} kind
 * @property {number} width
 * @property {number} height
 */

/** Most entries one `video_sizes` may list (MAX_VIDEO_SIZES). */
export const MAX_VIDEO_SIZES = 256;

/** How well a participant's link carries media. @typedef {'good' | 'fair' | 'poor'} Quality */

/**
 * The server's view of one participant's link.
 * @typedef {object} ParticipantQuality
 * @property {ParticipantId} participant_id
 * @property {Quality} quality
 */

/**
 * Messages the client sends.
 * @typedef {{type: 'join', version: number, room: string, name: string, passcode?: string,
 *             resume?: string, e2ee?: boolean, require_e2ee?: boolean}
 *   | {type: 'reattach', token: string, received: number}
 *   | {type: 'ice_restart'}
 *   | {type: 'mls_key_package', key_package: string}
 *   | {type: 'mls_commit', epoch: number, commit: string, welcome?: string,
 *       added: ParticipantId[], removed: ParticipantId[]}
 *   | {type: 'answer', sdp: string}
 *   | {type: 'candidate', candidate: string}
 *   | {type: 'set_media', kind: TrackKind, enabled: boolean}
 *   | {type: 'chat', text: string}
 *   | {type: 'sealed_chat', sealed: string}
 *   | {type: 'raise_hand', raised: boolean}
 *   | {type: 'leave'}
 *   | {type: 'video_sizes', sizes: VideoSize[]}
 *   | {type: 'admit', participant_id: ParticipantId}
 *   | {type: 'deny', participant_id: ParticipantId}
 *   | {type: 'mute', participant_id: ParticipantId, kind: TrackKind}
 *   | {type: 'mute_all', allow_self_unmute: boolean}
 *   | {type: 'ask_unmute', participant_id: ParticipantId, kind: TrackKind}
 *   | {type: 'set_meeting', locked?: boolean, allow_self_unmute?: boolean}
 *   | {type: 'remove', participant_id: ParticipantId, bar?: boolean}
 *   | {type: 'set_role', participant_id: ParticipantId, role: 'co_host' | 'participant'}
 *   | {type: 'transfer_host', participant_id: ParticipantId}
 *   | {type: 'end_meeting'}} ClientMessage
 */

/**
 * Messages the server sends.
 * @typedef {{type: 'joined', version: number, participant_id: ParticipantId, room: string,
 *             participants: ParticipantInfo[], role: Role, meeting: MeetingState,
 *             waiting: WaitingInfo[], resume?: string, host_muted?: TrackKind[],
 *             ice_servers?: IceServer[], reconnect?: string}
 *   | {type: 'reattached', participant_id: ParticipantId, received: number}
 *   | {type: 'waiting', room: string, title: string, reason: WaitReason}
 *   | {type: 'offer', sdp: string}
 *   | {type: 'participant_joined', participant: ParticipantInfo}
 *   | {type: 'participant_left', participant_id: ParticipantId}
 *   | {type: 'track_published', participant_id: ParticipantId, kind: TrackKind, mid: string}
 *   | {type: 'track_unpublished', participant_id: ParticipantId, kind: TrackKind, mid: string}
 *   | {type: 'media_state', participant_id: ParticipantId, kind: TrackKind, enabled: boolean}
 *   | {type: 'chat', from: ParticipantId, name: string, text: string, sent_at_ms: number}
 *   | {type: 'sealed_chat', from: ParticipantId, name: string, sealed: string, sent_at_ms: number}
 *   | {type: 'hand', participant_id: ParticipantId, raised: boolean}
 *   | {type: 'layers_wanted', kind: TrackKind, rids: string[]}
 *   | {type: 'active_speaker', participant_id: ParticipantId | null}
 *   | {type: 'waiting_added', participant: WaitingInfo}
 *   | {type: 'waiting_removed', participant_id: ParticipantId}
 *   | {type: 'role_changed', participant_id: ParticipantId, role: Role}
 *   | {type: 'muted_by_host', kind: TrackKind, by: ParticipantId}
 *   | {type: 'unmute_requested', kind: TrackKind, by: ParticipantId}
 *   | {type: 'meeting_updated', meeting: MeetingState}
 *   | {type: 'meeting_ending', minutes_left: number, ends_at_ms: number}
 *   | {type: 'meeting_ended', reason: EndReason}
 *   | {type: 'connection_quality', participants: ParticipantQuality[]}
 *   | {type: 'mls_create', group_id: string}
 *   | {type: 'mls_propose', epoch: number, add: {participant_id: ParticipantId, key_package: string}[],
 *       remove: ParticipantId[]}
 *   | {type: 'mls_commit_accepted', epoch: number}
 *   | {type: 'mls_commit', epoch: number, commit: string}
 *   | {type: 'mls_welcome', epoch: number, welcome: string}
 *   | {type: 'error', code: ErrorCode, message: string}} ServerMessage
 */

/**
 * Stable machine-readable error codes (a newer server may send others).
 * @typedef {'malformed_message' | 'unknown_type' | 'invalid_message' | 'message_too_large'
 *   | 'rate_limited' | 'binary_not_supported' | 'unsupported_version' | 'not_joined'
 *   | 'already_joined' | 'invalid_room' | 'invalid_name' | 'room_full' | 'invalid_sdp'
 *   | 'unexpected_answer' | 'invalid_candidate' | 'chat_too_long' | 'media_failed'
 *   | 'shutting_down' | 'internal' | 'passcode_required' | 'wrong_passcode' | 'locked_out'
 *   | 'meeting_not_found' | 'meeting_locked' | 'removed' | 'barred' | 'denied' | 'forbidden'
 *   | 'unknown_participant' | 'unmute_not_allowed' | 'meeting_full' | 'session_ended'
 *   | 'stale_epoch' | 'invalid_mls' | 'e2ee_unsupported' | 'reattach_failed'
 *   | (string & {})} ErrorCode
 */

/** Error codes after which the server closes the connection (ErrorCode::is_fatal). */
export const FATAL_ERRORS = new Set([
  'unsupported_version', 'room_full', 'media_failed', 'shutting_down', 'internal',
  'locked_out', 'meeting_not_found', 'meeting_locked', 'removed', 'barred', 'denied',
  'session_ended', 'e2ee_unsupported',
]);

/**
 * Refusals that a new connection cannot fix: the client stops instead of reconnecting.
 * (`invalid_room` and `invalid_name` are not fatal, but final before we are in.)
 */
export const FINAL_ERRORS = new Set([
  'unsupported_version', 'room_full', 'invalid_room', 'invalid_name',
  'locked_out', 'meeting_not_found', 'meeting_locked', 'removed', 'barred', 'denied',
  'session_ended', 'e2ee_unsupported',
]);

/** Refusals of a join that another passcode can fix, on the same connection. */
export const PASSCODE_ERRORS = new Set(['passcode_required', 'wrong_passcode']);

/**
 * Whether a role may use the host controls.
 * @param {Role} role
 */
export function moderates(role) {
  return role === 'host' || role === 'co_host';
}

/**
 * The role as a short label for badges ('' for ordinary participants).
 * @param {Role} role
 */
export function roleLabel(role) {
  return role === 'host' ? t('role.host') : role === 'co_host' ? t('role.co_host') : role === 'guest' ? t('role.guest') : '';

}

/**
 * The WebSocket URL of the signalling endpoint on this host.
 * @returns {string}
 */
export function signallingUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/**
 * Parses one text frame from the server, or returns null if it is not a message object.
 * @param {string} text
 * @returns {ServerMessage | null}
 */
export function parseServerMessage(text) {
  try {
    const msg = JSON.parse(text);
    if (msg && typeof msg === 'object' && typeof msg.type === 'string') return msg;
  } catch {
    // fall through
  }
  return null;
}

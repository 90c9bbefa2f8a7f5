// The signalling protocol, mirrored from crates/veche-proto/src/lib.rs. Keep the two in step.

/** Bumped on any incompatible change; must match the server's PROTOCOL_VERSION. */
export const PROTOCOL_VERSION = 1;

/** @typedef {number} ParticipantId */
/** @typedef {'audio' | 'video' | 'screen'} TrackKind */

/**
 * @typedef {object} ParticipantInfo
 * @property {ParticipantId} id
 * @property {string} name
 * @property {boolean} audio microphone on
 * @property {boolean} video camera on
 * @property {boolean} screen sharing the screen
 * @property {boolean} hand_raised
 */

/**
 * Messages the client sends.
 * @typedef {{type: 'join', version: number, room: string, name: string}
 *   | {type: 'answer', sdp: string}
 *   | {type: 'candidate', candidate: string}
 *   | {type: 'set_media', kind: TrackKind, enabled: boolean}
 *   | {type: 'chat', text: string}
 *   | {type: 'raise_hand', raised: boolean}
 *   | {type: 'leave'}} ClientMessage
 */

/**
 * Messages the server sends.
 * @typedef {{type: 'joined', version: number, participant_id: ParticipantId, room: string,
 *             participants: ParticipantInfo[]}
 *   | {type: 'offer', sdp: string}
 *   | {type: 'participant_joined', participant: ParticipantInfo}
 *   | {type: 'participant_left', participant_id: ParticipantId}
 *   | {type: 'track_published', participant_id: ParticipantId, kind: TrackKind, mid: string}
 *   | {type: 'track_unpublished', participant_id: ParticipantId, kind: TrackKind, mid: string}
 *   | {type: 'media_state', participant_id: ParticipantId, kind: TrackKind, enabled: boolean}
 *   | {type: 'chat', from: ParticipantId, name: string, text: string, sent_at_ms: number}
 *   | {type: 'hand', participant_id: ParticipantId, raised: boolean}
 *   | {type: 'active_speaker', participant_id: ParticipantId | null}
 *   | {type: 'error', code: string, message: string}} ServerMessage
 */

/** Error codes after which the server closes the connection (ErrorCode::is_fatal). */
export const FATAL_ERRORS = new Set([
  'unsupported_version', 'room_full', 'media_failed', 'shutting_down', 'internal',
]);

/** Fatal errors that a new connection cannot fix: the client stops instead of reconnecting. */
export const FINAL_ERRORS = new Set(['unsupported_version', 'room_full', 'invalid_room', 'invalid_name']);

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

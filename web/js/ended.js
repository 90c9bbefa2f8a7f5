// The screens after a meeting: left on purpose, refused or removed by the server, or the
// meeting ended for everyone.

import { clearToasts, h, show } from './dom.js';

/**
 * @typedef {import('./session.js').EndCause} EndCause
 */

/**
 * The meeting page again, with the name (and passcode) filled in.
 * @param {string} room
 * @param {string} name
 * @param {string} [passcode]
 * @param {boolean} [autojoin]
 */
function meetingUrl(room, name, passcode, autojoin = false) {
  const query = new URLSearchParams({ name });
  if (passcode) query.set('pwd', passcode);
  if (autojoin) query.set('autojoin', '1');
  return `/m/${encodeURIComponent(room)}?${query}`;
}

/**
 * The screen shown after leaving.
 * @param {string} room
 * @param {string} name
 * @param {string} [passcode]
 */
export function showLeft(room, name, passcode) {
  clearToasts();
  document.title = 'You left — Veche';
  show(h('div', { class: 'card centered', id: 'left-screen' },
    h('h1', { text: 'You left the meeting' }),
    h('p', { class: 'muted', text: room }),
    h('div', { class: 'row' },
      h('a', { class: 'button primary', href: meetingUrl(room, name, passcode, true), id: 'rejoin-btn', text: 'Rejoin' }),
      h('a', { class: 'button', href: '/', text: 'Home' }))));
}

/**
 * The screen shown when the server refused us for good.
 * @param {string} room
 * @param {string} name
 * @param {string} message
 */
export function showEnded(room, name, message) {
  showOver(room, name, { kind: 'error', code: 'refused', message });
}

/**
 * What to tell the user when the meeting is over for them, and whether trying again makes
 * sense.
 * @param {EndCause} cause
 * @returns {{title: string, detail: string, retry: boolean}}
 */
export function describeEnd(cause) {
  if (cause.kind === 'meeting_ended') {
    return cause.reason === 'time_limit'
      ? { title: 'The meeting reached its time limit', detail: 'Your organisation\'s plan limits how long meetings last.', retry: false }
      : { title: 'The host ended the meeting', detail: 'The meeting is over for everyone.', retry: false };
  }
  switch (cause.code) {
    case 'removed':
      return { title: 'You were removed from the meeting', detail: 'A host removed you.', retry: false };
    case 'barred':
      return { title: 'You were removed from the meeting', detail: 'A host removed you; you cannot rejoin while the meeting runs.', retry: false };
    case 'denied':
      return { title: 'The host did not let you in', detail: 'A host turned down your request to join.', retry: false };
    case 'meeting_locked':
      return { title: 'The meeting is locked', detail: 'A host locked the meeting; no one new can join.', retry: true };
    case 'meeting_not_found':
      return { title: 'Meeting not found', detail: 'Check the link: no meeting has this id.', retry: false };
    case 'session_ended':
      // Signed out, password changed (sign in again), or roles changed (join again).
      return { title: 'Your session ended', detail: cause.message || 'Sign in again to join.', retry: true };
    case 'locked_out':
      return { title: 'Too many wrong passcodes', detail: cause.message || 'Try again later.', retry: true };
    case 'room_full':
      return { title: 'The meeting is full', detail: cause.message, retry: true };
    default:
      return { title: 'Could not join the meeting', detail: cause.message, retry: true };
  }
}

/**
 * The screen shown when the meeting is over for us: removed, refused, or ended for everyone.
 * `#ended-screen` carries the cause in `data-reason` (the error code, or `ended_host` /
 * `ended_time_limit`).
 * @param {string} room
 * @param {string} name
 * @param {EndCause} cause
 * @param {{passcode?: string, host?: boolean}} [options] `host`: we ended it ourselves
 */
export function showOver(room, name, cause, options = {}) {
  clearToasts();
  const { title, detail, retry } = describeEnd(cause);
  const own = options.host && cause.kind === 'meeting_ended' && cause.reason === 'host';
  const reason = cause.kind === 'meeting_ended' ? `ended_${cause.reason}` : cause.code;
  document.title = 'Meeting over — Veche';
  show(h('div', { class: 'card centered', id: 'ended-screen', 'data-reason': reason, role: 'alert' },
    h('h1', { id: 'ended-title', text: own ? 'You ended the meeting for everyone' : title }),
    h('p', { class: cause.kind === 'error' && retry ? 'error' : 'muted', id: 'ended-detail', text: own ? '' : detail }),
    h('div', { class: 'row' },
      retry ? h('a', { class: 'button primary', href: meetingUrl(room, name, options.passcode), text: 'Try again' }) : null,
      h('a', { class: retry ? 'button' : 'button primary', href: '/', text: 'Home' }))));
}

// The screens after a meeting: left on purpose, refused or removed by the server, or the
// meeting ended for everyone.

import { clearToasts, h, show } from './dom.js';
import { t } from './i18n.js';

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
  document.title = `${t('ended.left_short')} — Veche`;
  show(h('div', { class: 'card centered', id: 'left-screen' },
    h('h1', { text: t('ended.left') }),
    h('p', { class: 'muted', text: room }),
    h('div', { class: 'row' },
      h('a', { class: 'button primary', href: meetingUrl(room, name, passcode, true), id: 'rejoin-btn', text: t('ended.rejoin') }),
      h('a', { class: 'button', href: '/', text: t('ended.home') }))));
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
      ? { title: t('ended.time_limit'), detail: t('ended.time_limit_detail'), retry: false }
      : { title: t('ended.by_host'), detail: t('ended.by_host_detail'), retry: false };
  }
  switch (cause.code) {
    case 'removed':
      return { title: t('ended.removed'), detail: t('ended.removed_detail'), retry: false };
    case 'barred':
      return { title: t('ended.removed'), detail: t('ended.barred_detail'), retry: false };
    case 'denied':
      return { title: t('ended.denied'), detail: t('ended.denied_detail'), retry: false };
    case 'meeting_locked':
      return { title: t('ended.locked'), detail: t('ended.locked_detail'), retry: true };
    case 'meeting_not_found':
      return { title: t('ended.not_found'), detail: t('ended.not_found_detail'), retry: false };
    case 'session_ended':
      // Signed out, password changed (sign in again), or roles changed (join again).
      return { title: t('ended.session'), detail: cause.message || t('ended.session_detail'), retry: true };
    case 'locked_out':
      return { title: t('ended.locked_out'), detail: cause.message || t('ended.locked_out_detail'), retry: true };
    case 'room_full':
      return { title: t('ended.full'), detail: cause.message, retry: true };
    default:
      return { title: t('ended.failed'), detail: cause.message, retry: true };
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
  document.title = `${t('ended.over')} — Veche`;
  show(h('div', { class: 'card centered', id: 'ended-screen', 'data-reason': reason, role: 'alert' },
    h('h1', { id: 'ended-title', text: own ? t('ended.own') : title }),
    h('p', { class: cause.kind === 'error' && retry ? 'error' : 'muted', id: 'ended-detail', text: own ? '' : detail }),
    h('div', { class: 'row' },
      retry ? h('a', { class: 'button primary', href: meetingUrl(room, name, options.passcode), text: t('ended.retry') }) : null,
      h('a', { class: retry ? 'button' : 'button primary', href: '/', text: t('ended.home') }))));

}

// The screens after a meeting: left on purpose, or refused by the server.

import { clearToasts, h, show } from './dom.js';

/**
 * The screen shown after leaving.
 * @param {string} room
 * @param {string} name
 */
export function showLeft(room, name) {
  clearToasts();
  const rejoin = `/m/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}&autojoin=1`;
  show(h('div', { class: 'card centered', id: 'left-screen' },
    h('h1', { text: 'You left the meeting' }),
    h('p', { class: 'muted', text: room }),
    h('div', { class: 'row' },
      h('a', { class: 'button primary', href: rejoin, id: 'rejoin-btn', text: 'Rejoin' }),
      h('a', { class: 'button', href: '/', text: 'Home' }))));
}

/**
 * The screen shown when the server refused us for good.
 * @param {string} room
 * @param {string} name
 * @param {string} message
 */
export function showEnded(room, name, message) {
  clearToasts();
  const retry = `/m/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
  show(h('div', { class: 'card centered', id: 'ended-screen' },
    h('h1', { text: 'Could not join the meeting' }),
    h('p', { class: 'error', text: message }),
    h('div', { class: 'row' },
      h('a', { class: 'button primary', href: retry, text: 'Try again' }),
      h('a', { class: 'button', href: '/', text: 'Home' }))));
}

// The screens before the meeting proper: the waiting room and the passcode prompt.

import { h, show } from './dom.js';
import { t } from './i18n.js';
import { attach } from './tiles.js';

/**
 * @typedef {import('./protocol.js').WaitReason} WaitReason
 */

/** The waiting room: what we wait for, the meeting's title, our own preview and Leave. */
export class WaitingScreen {
  /**
   * @param {() => void} leave
   */
  constructor(leave) {
    this.title = h('h1', { id: 'waiting-screen-title' });
    this.meetingTitle = h('p', { class: 'meeting-title', id: 'waiting-meeting-title' });
    this.video = h('video', { class: 'mirror', autoplay: true, playsinline: true });
    this.video.muted = true;
    this.preview = h('div', { class: 'tile preview waiting-preview' }, this.video);
    this.el = h('div', { class: 'card centered waiting-screen', id: 'waiting-screen', role: 'status' },
      this.preview,
      this.title,
      this.meetingTitle,
      h('p', { class: 'muted', text: t('waiting.keep_open') }),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'button', id: 'waiting-leave-btn', text: t('meeting.leave'), onclick: () => leave() })));
  }

  /**
   * Shows the screen (or updates it).
   * @param {string} title the meeting's title
   * @param {WaitReason} reason
   * @param {MediaStreamTrack | null} camera our camera, for the preview
   */
  show(title, reason, camera) {
    this.el.dataset.reason = reason;
    this.title.textContent = t(reason === 'host_absent' ? 'waiting.host_absent' : 'waiting.waiting_room');
    this.meetingTitle.textContent = title;
    this.meetingTitle.hidden = title === '';
    attach(this.video, camera);
    this.preview.hidden = camera === null;
    document.title = `${t('waiting.short')} — ${title || 'Veche'}`;
    if (!this.el.isConnected) show(this.el);
  }

  get visible() {
    return this.el.isConnected;
  }
}

/**
 * Asks for the meeting's passcode. Resolves with it, or null if the user leaves.
 * @param {string} room
 * @param {boolean} wrong the last one was wrong
 * @param {string} message the server's explanation
 * @returns {Promise<string | null>}
 */
export function askPasscode(room, wrong, message) {
  const input = h('input', {
    id: 'passcode-input', autocomplete: 'off', required: true, maxlength: 64, 'aria-label': t('account.passcode'),
    'aria-describedby': 'passcode-error',
  });
  const error = h('p', { class: 'error', id: 'passcode-error', role: 'alert', text: wrong ? (message || t('error.wrong_passcode')) : '' });
  return new Promise(resolve => {
    const form = h('form', { class: 'card stack centered', id: 'passcode-screen' },
      h('h1', { text: t('error.passcode_required') }),
      h('p', { class: 'muted', text: room }),
      h('label', {}, h('span', { text: t('account.passcode') }), input),
      error,
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'button primary', id: 'passcode-submit', text: t('join.submit') }),
        h('button', { type: 'button', class: 'button', id: 'passcode-cancel', text: t('meeting.leave'), onclick: () => resolve(null) })));

    form.addEventListener('submit', event => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) resolve(value);
    });
    show(form);
    input.focus();
  });
}

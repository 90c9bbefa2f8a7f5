// The chat side panel.

import { h } from './dom.js';
import { formatDate, t } from './i18n.js';
import { icon } from './icons.js';

/** Longest message the input accepts. */
const MAX_CHAT_LENGTH = 1000;

export class ChatPanel {
  /**
   * @param {(text: string) => boolean} send returns false if the message could not be sent
   * @param {() => void} close
   */
  constructor(send, close) {
    this.messages = h('ol', { id: 'chat-messages', class: 'chat-messages', 'aria-live': 'polite' });
    this.input = h('textarea', {
      id: 'chat-input', rows: 1, maxlength: MAX_CHAT_LENGTH, placeholder: t('chat.placeholder'), 'aria-label': t('chat.message'),
    });
    const sendButton = h('button', { id: 'chat-send', type: 'submit', class: 'icon-button', title: t('chat.send'), 'aria-label': t('chat.send') }, icon('send'));
    const form = h('form', { class: 'chat-form' }, this.input, sendButton);
    form.addEventListener('submit', event => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (text && send(text)) this.input.value = '';
    });
    this.input.addEventListener('keydown', event => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.el = h('aside', { class: 'chat-panel', hidden: true, 'aria-label': t('chat.title') },
      h('header', {},
        h('h2', { text: t('chat.title') }),
        h('button', { class: 'icon-button', title: t('chat.close'), 'aria-label': t('chat.close'), onclick: () => close() }, icon('close'))),
      this.messages,
      form);
  }

  get open() {
    return !this.el.hidden;
  }

  /** @param {boolean} open */
  setOpen(open) {
    this.el.hidden = !open;
    if (open) {
      this.input.focus();
      this.messages.scrollTop = this.messages.scrollHeight;
    }
  }

  /**
   * @param {string} name
   * @param {string} text
   * @param {number} sentAtMs
   * @param {boolean} own
   */
  add(name, text, sentAtMs, own) {
    const time = formatDate(sentAtMs, { hour: '2-digit', minute: '2-digit' });
    const atBottom = this.messages.scrollHeight - this.messages.scrollTop - this.messages.clientHeight < 40;
    this.messages.append(h('li', { class: own ? 'own' : '' },
      h('div', { class: 'meta' }, h('span', { class: 'from', text: own ? t('common.you', { name }) : name }),
 h('time', { text: time })),
      h('div', { class: 'text', text })));
    if (atBottom || own) this.messages.scrollTop = this.messages.scrollHeight;
  }

  /** @param {string} text */
  system(text) {
    this.messages.append(h('li', { class: 'system', text }));
  }
}

// The home page: join a meeting by name, or start an instant one.

import { h, show } from './dom.js';
import { canEncrypt } from './e2ee.js';
import { languageSwitch, t } from './i18n.js';
import { cleanName, randomRoomName, saveName, savedName, toRoomName } from './names.js';

/**
 * Goes to a meeting's pre-join screen.
 * @param {string} room
 * @param {boolean} e2ee a room this opens is end-to-end encrypted (`?e2ee=1`; a room that
 *   already runs keeps its own setting)
 */
function goTo(room, e2ee) {
  location.assign(`/m/${encodeURIComponent(room)}${e2ee ? '?e2ee=1' : ''}`);
}

export function showHome() {
  const nameInput = h('input', {
    id: 'home-name', name: 'name', autocomplete: 'name', maxlength: 64, placeholder: t('home.name_placeholder'), value: savedName(),
  });
  const roomInput = h('input', {
    id: 'home-room', name: 'room', autocomplete: 'off', maxlength: 64, placeholder: t('home.room_placeholder'),
  });
  const hint = h('p', { class: 'hint', id: 'home-hint' });
  const updateHint = () => {
    const room = toRoomName(roomInput.value);
    hint.textContent = room ? `${location.host}/m/${room}` : '';
  };
  roomInput.addEventListener('input', updateHint);

  const e2ee = h('input', { id: 'home-e2ee', type: 'checkbox' });
  const e2eeOption = h('label', { class: 'check', title: t('home.e2ee_hint') }, e2ee, h('span', { text: t('home.e2ee') }));
  // A browser that cannot encrypt could not join the room it would open.
  e2eeOption.hidden = !canEncrypt();

  const joinForm = h('form', { class: 'stack', id: 'join-form' },
    h('label', {}, h('span', { text: t('home.name') }), nameInput),
    h('label', {}, h('span', { text: t('home.room') }), roomInput),
    hint,
    h('button', { type: 'submit', class: 'button primary', id: 'join-room-btn', text: t('home.join') }));
  joinForm.addEventListener('submit', event => {
    event.preventDefault();
    const room = toRoomName(roomInput.value);
    if (!room) {
      roomInput.setCustomValidity(t('home.room_invalid'));
      roomInput.reportValidity();
      return;
    }
    const name = cleanName(nameInput.value);
    if (name) saveName(name);
    goTo(room, e2ee.checked);
  });
  roomInput.addEventListener('input', () => roomInput.setCustomValidity(''));

  const instant = h('button', {
    type: 'button', class: 'button', id: 'instant-btn', text: t('home.instant'),
    onclick: () => {
      const name = cleanName(nameInput.value);
      if (name) saveName(name);
      goTo(randomRoomName(), e2ee.checked);
    },
  });

  show(h('div', { class: 'home' },
    h('div', { class: 'hero' },
      h('h1', { class: 'logo', text: 'Veche' }),
      h('p', { class: 'tagline', text: t('home.tagline') })),
    h('div', { class: 'card' },
      joinForm,
      h('div', { class: 'divider', text: t('home.or') }),
      instant,
      e2eeOption),
    languageSwitch()));
  document.title = 'Veche';

  (nameInput.value ? roomInput : nameInput).focus();
}

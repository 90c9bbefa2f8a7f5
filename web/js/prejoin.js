// The pre-join screen: camera preview, microphone level, device pickers, name, Join.

import { h, initial, show, toast } from './dom.js';
import { languageSwitch, t } from './i18n.js';
import { icon } from './icons.js';
import { DevicePickers } from './devices.js';
import { LocalMedia, describeMediaError, watchLevel } from './media.js';
import { startMeeting } from './meeting.js';
import { cleanName, saveName, savedName } from './names.js';
import { attach } from './tiles.js';

/**
 * @param {string} room
 * @param {string} [suggestedName]
 * @param {{passcode?: string, requireE2ee?: boolean, relayOnly?: boolean}} [options] the meeting's passcode, from the link
 */
export async function showPrejoin(room, suggestedName, options = {}) {
  const media = new LocalMedia();
  const video = h('video', { class: 'mirror', autoplay: true, playsinline: true });
  video.muted = true;
  const avatar = h('div', { class: 'avatar' });
  const meterFill = h('div', { class: 'meter-fill' });
  const micToggle = h('button', { type: 'button', class: 'round', id: 'prejoin-mic' });
  const camToggle = h('button', { type: 'button', class: 'round', id: 'prejoin-cam' });
  const preview = h('div', { class: 'tile preview no-video' }, video, avatar,
    h('div', { class: 'preview-controls' }, micToggle, camToggle));
  const problems = h('div', { class: 'problems', id: 'prejoin-problems', role: 'alert' });
  const nameInput = h('input', {
    id: 'name-input', autocomplete: 'name', maxlength: 64, placeholder: t('home.name_placeholder'), required: true,
    value: suggestedName ?? savedName(),
  });
  const pickers = new DevicePickers(media, {
    camera: id => media.useCamera(id),
    mic: id => media.useMic(id),
    changed: () => refresh(),
  });
  const joinButton = h('button', { type: 'submit', class: 'button primary', id: 'join-btn', text: t('prejoin.join') });
  const form = h('form', { class: 'card stack join-card' },
    h('h1', { text: t('prejoin.ready') }),
    h('p', { class: 'muted room-label', text: room }),
    h('label', {}, h('span', { text: t('home.name') }), nameInput),
    h('label', {}, h('span', { text: t('device.camera') }), pickers.camera),
    h('label', {}, h('span', { text: t('device.mic') }), pickers.mic),
    problems,
    joinButton,
    languageSwitch());

  document.title = `${room} — Veche`;
  show(h('div', { class: 'prejoin' },
    h('div', { class: 'preview-column' }, preview, h('div', { class: 'meter', title: t('prejoin.mic_level') }, meterFill)),
    form));
  (nameInput.value ? joinButton : nameInput).focus();

  /** @type {(() => void) | null} */
  let stopMeter = null;

  /** Redraws the preview and the toggles from the media state. */
  function refresh() {
    attach(video, media.camera);
    preview.classList.toggle('no-video', media.camera === null);
    avatar.textContent = initial(nameInput.value || '?');
    const micOn = media.mic !== null && !media.micMuted;
    micToggle.replaceChildren(icon(micOn ? 'mic' : 'micOff'));
    micToggle.classList.toggle('off', !micOn);
    micToggle.title = t(micOn ? 'meeting.mute' : 'meeting.unmute');
    micToggle.setAttribute('aria-label', micToggle.title);
    micToggle.disabled = media.mic === null;
    const camOn = media.camera !== null;
    camToggle.replaceChildren(icon(camOn ? 'cam' : 'camOff'));
    camToggle.classList.toggle('off', !camOn);
    camToggle.title = t(camOn ? 'meeting.stop_video' : 'meeting.start_video');
    camToggle.setAttribute('aria-label', camToggle.title);
    stopMeter?.();
    stopMeter = null;
    meterFill.style.width = '0';
    if (media.mic && !media.micMuted) {
      try {
        stopMeter = watchLevel(media.mic, level => { meterFill.style.width = `${Math.round(level * 100)}%`; });
      } catch {
        // No Web Audio: no meter.
      }
    }
  }

  const showProblems = () => {
    problems.replaceChildren(...media.problems.map(p => h('p', { text: p })));
  };

  nameInput.addEventListener('input', () => { avatar.textContent = initial(nameInput.value || '?'); });
  micToggle.addEventListener('click', () => {
    media.setMicMuted(!media.micMuted);
    refresh();
  });
  camToggle.addEventListener('click', async () => {
    if (media.camera) {
      media.stopCamera();
    } else {
      try {
        await media.useCamera();
      } catch (err) {
        toast(describeMediaError(err, 'camera'), 'error');
      }
    }
    refresh();
  });
  form.addEventListener('submit', event => {
    event.preventDefault();
    const name = cleanName(nameInput.value);
    if (!name) {
      nameInput.reportValidity();
      return;
    }
    saveName(name);
    stopMeter?.();
    media.problems = []; // already shown here
    startMeeting(room, name, media, options);
  });

  joinButton.disabled = true;
  joinButton.textContent = t('prejoin.starting');
  await media.open();
  joinButton.disabled = false;
  joinButton.textContent = t('prejoin.join');

  showProblems();
  refresh();
  await pickers.refresh();
}

/**
 * Joins straight away with the default devices (the `autojoin=1` URL contract).
 * @param {string} room
 * @param {string} name
 * @param {{passcode?: string, requireE2ee?: boolean, relayOnly?: boolean}} [options]
 */
export async function autojoin(room, name, options = {}) {
  const media = new LocalMedia();
  await media.open();
  startMeeting(room, name, media, options);
}

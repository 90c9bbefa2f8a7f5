// The pre-join screen: camera preview, microphone level, device pickers, name, Join.

import { h, initial, show, toast } from './dom.js';
import { icon } from './icons.js';
import { DevicePickers } from './devices.js';
import { LocalMedia, describeMediaError, watchLevel } from './media.js';
import { startMeeting } from './meeting.js';
import { cleanName, saveName, savedName } from './names.js';
import { attach } from './tiles.js';

/**
 * @param {string} room
 * @param {string} [suggestedName]
 * @param {{passcode?: string}} [options] the meeting's passcode, from the link
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
    id: 'name-input', autocomplete: 'name', maxlength: 64, placeholder: 'Your name', required: true,
    value: suggestedName ?? savedName(),
  });
  const pickers = new DevicePickers(media, {
    camera: id => media.useCamera(id),
    mic: id => media.useMic(id),
    changed: () => refresh(),
  });
  const joinButton = h('button', { type: 'submit', class: 'button primary', id: 'join-btn', text: 'Join now' });
  const form = h('form', { class: 'card stack join-card' },
    h('h1', { text: 'Ready to join?' }),
    h('p', { class: 'muted room-label', text: room }),
    h('label', {}, h('span', { text: 'Your name' }), nameInput),
    h('label', {}, h('span', { text: 'Camera' }), pickers.camera),
    h('label', {}, h('span', { text: 'Microphone' }), pickers.mic),
    problems,
    joinButton);

  show(h('div', { class: 'prejoin' },
    h('div', { class: 'preview-column' }, preview, h('div', { class: 'meter', title: 'Microphone level' }, meterFill)),
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
    micToggle.title = micOn ? 'Mute microphone' : 'Unmute microphone';
    micToggle.disabled = media.mic === null;
    const camOn = media.camera !== null;
    camToggle.replaceChildren(icon(camOn ? 'cam' : 'camOff'));
    camToggle.classList.toggle('off', !camOn);
    camToggle.title = camOn ? 'Turn camera off' : 'Turn camera on';
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
  joinButton.textContent = 'Starting camera…';
  await media.open();
  joinButton.disabled = false;
  joinButton.textContent = 'Join now';
  showProblems();
  refresh();
  await pickers.refresh();
}

/**
 * Joins straight away with the default devices (the `autojoin=1` URL contract).
 * @param {string} room
 * @param {string} name
 * @param {{passcode?: string}} [options]
 */
export async function autojoin(room, name, options = {}) {
  const media = new LocalMedia();
  await media.open();
  startMeeting(room, name, media, options);
}

// Camera and microphone pickers, shared by the pre-join screen and the in-meeting settings.

import { h, toast } from './dom.js';
import { t } from './i18n.js';
import { describeMediaError, listDevices } from './media.js';

/** @typedef {import('./media.js').LocalMedia} LocalMedia */

export class DevicePickers {
  /**
   * @param {LocalMedia} media
   * @param {{camera: (deviceId: string) => Promise<void>, mic: (deviceId: string) => Promise<void>,
   *          changed?: () => void}} use switch to a device; `changed` runs after each switch
   */
  constructor(media, use) {
    this.media = media;
    this.camera = h('select', { id: 'camera-select', 'aria-label': t('device.camera') });
    this.mic = h('select', { id: 'mic-select', 'aria-label': t('device.mic') });
    this.camera.addEventListener('change', async () => {
      try {
        await use.camera(this.camera.value);
      } catch (err) {
        toast(describeMediaError(err, 'camera'), 'error');
      }
      use.changed?.();
    });
    this.mic.addEventListener('change', async () => {
      try {
        await use.mic(this.mic.value);
      } catch (err) {
        toast(describeMediaError(err, 'microphone'), 'error');
      }
      use.changed?.();
    });
    navigator.mediaDevices?.addEventListener?.('devicechange', () => void this.refresh());
  }

  /** Lists the devices again, selecting the ones in use. */
  async refresh() {
    const { mics, cameras } = await listDevices();
    fill(this.camera, cameras, this.media.cameraDeviceId, t('device.none_camera'));
    fill(this.mic, mics, this.media.micDeviceId, t('device.none_mic'));
  }
}

/**
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices
 * @param {string | undefined} selected
 * @param {string} none label when the list is empty
 */
function fill(select, devices, selected, none) {
  select.replaceChildren(...devices.map((d, i) =>
    h('option', { value: d.deviceId, text: d.label || t('device.unnamed', { n: i + 1 }),
 selected: d.deviceId === selected })));
  if (devices.length === 0) select.append(h('option', { value: '', text: none }));
  select.disabled = devices.length === 0;
}

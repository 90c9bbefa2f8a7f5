// The local camera, microphone and screen: acquiring, switching and releasing them.

import { t } from './i18n.js';

const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const MIC_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/**
 * Turns a getUserMedia (or getDisplayMedia) failure into a sentence for the user.
 * @param {unknown} err
 * @param {'camera' | 'microphone' | 'screen'} what
 */
export function describeMediaError(err, what) {
  const name = err instanceof DOMException ? err.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return t(`media.blocked.${what}`);
    case 'NotFoundError':
    case 'OverconstrainedError':
      return t(`media.not_found.${what}`);
    case 'NotReadableError':
    case 'AbortError':
      return t(`media.busy.${what}`);
    default:
      return t(`media.failed.${what}`, { detail: err instanceof Error ? err.message : '' });
  }
}

/** Whether this page may ask for camera and microphone at all (needs https or localhost). */
export function mediaAvailable() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

/**
 * The user's own media. Tracks are null when the device is off, missing or denied.
 */
export class LocalMedia {
  constructor() {
    /** @type {MediaStreamTrack | null} */
    this.mic = null;
    /** @type {MediaStreamTrack | null} */
    this.camera = null;
    /** @type {MediaStreamTrack | null} */
    this.screen = null;
    /** Whether the microphone is muted (the track stays open). */
    this.micMuted = false;
    /** @type {string | undefined} */
    this.micDeviceId = undefined;
    /** @type {string | undefined} */
    this.cameraDeviceId = undefined;
    /** Problems met while opening devices, for the user. @type {string[]} */
    this.problems = [];
  }

  /** A stream with whatever camera and microphone tracks are open (for previews). */
  stream() {
    return new MediaStream([this.mic, this.camera].filter(t => t !== null));
  }

  /**
   * Opens the camera and microphone (the chosen devices, else the defaults). Never throws:
   * what failed is listed in `problems`.
   * @param {{audio?: boolean, video?: boolean}} [want]
   */
  async open(want = { audio: true, video: true }) {
    this.problems = [];
    if (!mediaAvailable()) {
      this.problems.push(t('media.insecure'));

      return;
    }
    const audio = want.audio !== false;
    const video = want.video !== false;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: audio && this.#micConstraints(),
        video: video && this.#cameraConstraints(),
      });
      this.#adopt(stream);
      return;
    } catch (err) {
      if (!(audio && video)) {
        this.problems.push(describeMediaError(err, audio ? 'microphone' : 'camera'));
        return;
      }
    }
    // Both at once failed: try each alone so one missing device does not cost the other.
    for (const kind of /** @type {const} */ (['audio', 'video'])) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(
          kind === 'audio' ? { audio: this.#micConstraints() } : { video: this.#cameraConstraints() });
        this.#adopt(stream);
      } catch (err) {
        this.problems.push(describeMediaError(err, kind === 'audio' ? 'microphone' : 'camera'));
      }
    }
  }

  /**
   * Switches to another microphone.
   * @param {string} deviceId
   */
  async useMic(deviceId) {
    this.micDeviceId = deviceId;
    const stream = await navigator.mediaDevices.getUserMedia({ audio: this.#micConstraints() });
    this.mic?.stop();
    this.mic = null;
    this.#adopt(stream);
  }

  /**
   * Switches to another camera, or turns the camera back on.
   * @param {string} [deviceId]
   */
  async useCamera(deviceId) {
    if (deviceId !== undefined) this.cameraDeviceId = deviceId;
    const stream = await navigator.mediaDevices.getUserMedia({ video: this.#cameraConstraints() });
    this.camera?.stop();
    this.camera = null;
    this.#adopt(stream);
  }

  /** Turns the camera off (releasing the device, so its light goes off). */
  stopCamera() {
    this.camera?.stop();
    this.camera = null;
  }

  /**
   * Mutes or unmutes the microphone.
   * @param {boolean} muted
   */
  setMicMuted(muted) {
    this.micMuted = muted;
    if (this.mic) this.mic.enabled = !muted;
  }

  /**
   * Asks the user for a screen, window or tab to share.
   * @returns {Promise<MediaStreamTrack>}
   */
  async startScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
    const track = stream.getVideoTracks()[0];
    if (!track) throw new Error('no screen was chosen');
    track.contentHint = 'detail';
    this.screen = track;
    return track;
  }

  stopScreen() {
    this.screen?.stop();
    this.screen = null;
  }

  /** Releases every device. */
  close() {
    for (const track of [this.mic, this.camera, this.screen]) track?.stop();
    this.mic = this.camera = this.screen = null;
  }

  /** @param {MediaStream} stream */
  #adopt(stream) {
    for (const track of stream.getTracks()) {
      if (track.kind === 'audio') {
        this.mic?.stop();
        this.mic = track;
        track.enabled = !this.micMuted;
        this.micDeviceId = track.getSettings().deviceId ?? this.micDeviceId;
      } else {
        this.camera?.stop();
        this.camera = track;
        this.cameraDeviceId = track.getSettings().deviceId ?? this.cameraDeviceId;
      }
    }
  }

  /** @returns {MediaTrackConstraints} */
  #micConstraints() {
    return this.micDeviceId ? { ...MIC_CONSTRAINTS, deviceId: { exact: this.micDeviceId } } : MIC_CONSTRAINTS;
  }

  /** @returns {MediaTrackConstraints} */
  #cameraConstraints() {
    return this.cameraDeviceId ? { ...CAMERA_CONSTRAINTS, deviceId: { exact: this.cameraDeviceId } } : CAMERA_CONSTRAINTS;
  }
}

/**
 * Lists cameras and microphones. Labels are empty until the user has granted access once.
 * @returns {Promise<{mics: MediaDeviceInfo[], cameras: MediaDeviceInfo[]}>}
 */
export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { mics: [], cameras: [] };
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    mics: devices.filter(d => d.kind === 'audioinput' && d.deviceId),
    cameras: devices.filter(d => d.kind === 'videoinput' && d.deviceId),
  };
}

/**
 * Drives a level meter from a microphone track: calls `onLevel(0..1)` each animation frame
 * until the returned stop function is called.
 * @param {MediaStreamTrack} track
 * @param {(level: number) => void} onLevel
 * @returns {() => void}
 */
export function watchLevel(track, onLevel) {
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame = 0;
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    onLevel(Math.min(1, rms * 4));
    frame = requestAnimationFrame(tick);
  };
  tick();
  return () => {
    cancelAnimationFrame(frame);
    source.disconnect();
    void context.close();
  };
}

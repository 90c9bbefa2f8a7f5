//! What a synthetic participant sends, and when: a sans-IO media source. Time comes in as a
//! value; RTP packets (without SSRC, which str0m owns) come out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use veche_proto::{ParticipantId, TrackKind};

use crate::clip::{Clip, SIMULCAST_LAYERS};
use crate::payload::{Tag, Vp8Position, opus_packet, vp8_packet};

/// Cadence and sizes of the synthetic media.
#[derive(Debug, Clone)]
pub(crate) struct SourceConfig {
    pub(crate) audio: bool,
    pub(crate) camera: bool,
    pub(crate) audio_interval: Duration,
    pub(crate) audio_payload_size: usize,
    pub(crate) camera_fps: u32,
    pub(crate) screen_fps: u32,
    pub(crate) video_packets_per_frame: u32,
    pub(crate) video_payload_size: usize,
    pub(crate) keyframe_interval: Duration,
    /// Real VP8 for the camera instead of synthetic frames; the clip's own key frames then
    /// replace `keyframe_interval`, and its frame rate `camera_fps`.
    pub(crate) clip: Option<Clip>,
    /// The camera in simulcast layers, lowest first, each its own RTP stream; replaces
    /// `clip`.
    pub(crate) simulcast: Option<[Clip; SIMULCAST_LAYERS]>,
}

/// One RTP packet to send on the slot of `kind`.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub(crate) kind: TrackKind,
    /// The simulcast layer of a camera packet, when the camera is sent in layers.
    pub(crate) layer: Option<u8>,
    /// Extended sequence number.
    pub(crate) seq: u64,
    /// RTP timestamp (48 kHz audio, 90 kHz video).
    pub(crate) time: u32,
    pub(crate) marker: bool,
    /// First packet of a key frame.
    pub(crate) keyframe: bool,
    pub(crate) payload: Vec<u8>,
}

/// The synthetic microphone, camera and screen of one participant.
pub(crate) struct MediaSource {
    origin: ParticipantId,
    config: SourceConfig,
    start: Instant,
    audio: Track,
    camera: VideoTrack,
    /// The camera's simulcast layers, lowest first, instead of `camera` (empty without).
    layers: Vec<VideoTrack>,
    screen: VideoTrack,
}

/// Sequence number, sender counter and next send time of one track.
struct Track {
    enabled: bool,
    seq: u64,
    counter: u32,
    next: Instant,
}

struct VideoTrack {
    track: Track,
    fps: u32,
    picture_id: u16,
    last_keyframe: Option<Instant>,
    keyframe_wanted: bool,
    /// Real VP8 to send instead of synthetic frames.
    clip: Option<Clip>,
    /// Next frame of the clip to send.
    clip_pos: usize,
    /// The simulcast layer this track is, if it is one.
    layer: Option<u8>,
    /// Added to the RTP timestamps: separate encoders start from their own origins.
    time_offset: u32,
}

impl MediaSource {
    pub(crate) fn new(origin: ParticipantId, config: SourceConfig, now: Instant) -> MediaSource {
        // Distinct starting sequence numbers per participant and track make mix-ups visible;
        // all below 2^16 so the first sequence number has no rollover (str0m warns otherwise).
        let seq = (origin.wrapping_mul(7919) % 30_000) + 1;
        let track = |enabled, seq| Track {
            enabled,
            seq,
            counter: 0,
            next: now,
        };
        let video = |enabled, seq, fps, clip: Option<&Clip>, layer: Option<u8>| VideoTrack {
            track: track(enabled, seq),
            fps: clip.map_or(fps, Clip::fps),
            picture_id: (seq as u16) & 0x7fff,
            last_keyframe: None,
            keyframe_wanted: false,
            clip: clip.cloned(),
            clip_pos: 0,
            layer,
            time_offset: layer.map_or(0, |l| u32::from(l) * 777_000),
        };
        let layers = config.simulcast.as_ref().map_or(Vec::new(), |clips| {
            clips
                .iter()
                .enumerate()
                .map(|(l, clip)| {
                    let seq = seq + 10_000 + 100 * l as u64;
                    video(config.camera, seq, 30, Some(clip), Some(l as u8))
                })
                .collect()
        });
        let camera = config.camera && layers.is_empty();
        MediaSource {
            origin,
            start: now,
            audio: track(config.audio, seq),
            camera: video(
                camera,
                seq + 10_000,
                config.camera_fps,
                config.clip.as_ref(),
                None,
            ),
            layers,
            screen: video(false, seq + 20_000, config.screen_fps, None, None),
            config,
        }
    }

    /// Turns simulcast layers on and off (`active[l]` for layer `l`), as a browser does
    /// when the server says which layers it needs; a layer turned on starts with a key
    /// frame. Without simulcast there is nothing to do.
    pub(crate) fn set_layers(&mut self, active: [bool; SIMULCAST_LAYERS], now: Instant) {
        for (l, on) in self.layers.iter_mut().zip(active) {
            if on && !l.track.enabled {
                l.track.next = now;
                l.keyframe_wanted = true;
            }
            l.track.enabled = on && self.config.camera;
        }
    }

    /// Turns the screen share on or off; a share starts with a key frame.
    pub(crate) fn set_screen(&mut self, on: bool, now: Instant) {
        let screen = &mut self.screen;
        if on && !screen.track.enabled {
            screen.track.next = now;
            screen.last_keyframe = None;
        }
        screen.track.enabled = on;
    }

    /// A PLI or FIR arrived for the video of `kind` (for simulcast `layer` of the camera;
    /// `None`: every layer): the next [`MediaSource::poll`] sends a key frame at once.
    pub(crate) fn request_keyframe(&mut self, kind: TrackKind, layer: Option<u8>) {
        let tracks: &mut [VideoTrack] = match kind {
            TrackKind::Video if !self.layers.is_empty() => match layer {
                Some(l) => self
                    .layers
                    .get_mut(usize::from(l))
                    .map_or(&mut [], std::slice::from_mut),
                None => &mut self.layers,
            },
            TrackKind::Video => std::slice::from_mut(&mut self.camera),
            TrackKind::Screen => std::slice::from_mut(&mut self.screen),
            TrackKind::Audio => &mut [],
        };
        for v in tracks {
            v.keyframe_wanted = v.track.enabled;
        }
    }

    /// When [`MediaSource::poll`] next has something to send; `None` when nothing is enabled.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let mut due: Option<Instant> = None;
        let mut consider = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        if self.audio.enabled {
            consider(self.audio.next);
        }
        for v in [&self.camera, &self.screen].into_iter().chain(&self.layers) {
            if v.track.enabled {
                consider(if v.keyframe_wanted {
                    self.start
                } else {
                    v.track.next
                });
            }
        }
        due
    }

    /// Appends to `out` every packet due at `now`.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<Packet>) {
        if self.audio.enabled && now >= self.audio.next {
            self.audio.next = next_tick(self.audio.next, self.config.audio_interval, now);
            let tag = self.tag(TrackKind::Audio, self.audio.counter);
            out.push(Packet {
                kind: TrackKind::Audio,
                layer: None,
                seq: self.audio.seq,
                time: rtp_time(self.start, now, 48_000),
                marker: false,
                keyframe: false,
                payload: opus_packet(self.config.audio_payload_size, &tag),
            });
            self.audio.seq += 1;
            self.audio.counter += 1;
        }
        let (origin, start) = (self.origin, self.start);
        let config = &self.config;
        let video = std::iter::once((TrackKind::Video, &mut self.camera))
            .chain(self.layers.iter_mut().map(|l| (TrackKind::Video, l)))
            .chain(std::iter::once((TrackKind::Screen, &mut self.screen)));
        for (kind, v) in video {
            v.poll(kind, config, origin, start, now, out);
        }
    }

    fn tag(&self, kind: TrackKind, counter: u32) -> Tag {
        Tag {
            origin: self.origin,
            kind,
            layer: 0,
            counter,
            sent_at_us: unix_micros(),
        }
    }
}

impl VideoTrack {
    /// Appends the frame due at `now` (or the key frame asked for), if any.
    fn poll(
        &mut self,
        kind: TrackKind,
        config: &SourceConfig,
        origin: ParticipantId,
        start: Instant,
        now: Instant,
        out: &mut Vec<Packet>,
    ) {
        let frame_due = now >= self.track.next;
        if !self.track.enabled || !(frame_due || self.keyframe_wanted) {
            return;
        }
        if frame_due {
            let period = Duration::from_secs(1) / self.fps.max(1);
            self.track.next = next_tick(self.track.next, period, now);
        }
        let time = rtp_time(start, now, 90_000).wrapping_add(self.time_offset);
        let layer = self.layer;
        let tag = |counter| Tag {
            origin,
            kind,
            layer: layer.unwrap_or(0),
            counter,
            sent_at_us: unix_micros(),
        };
        if let Some(clip) = &self.clip {
            // A keyframe request jumps ahead to the clip's next key frame, as an encoder
            // would produce one at once.
            let index = if self.keyframe_wanted {
                clip.keyframe_at_or_after(self.clip_pos)
            } else {
                self.clip_pos
            };
            let keyframe = clip.is_keyframe(index);
            let mut payloads = Vec::new();
            let counter = self.track.counter;
            let n = clip.packetize(index, self.picture_id, |i| tag(counter + i), &mut payloads);
            for (i, payload) in payloads.into_iter().enumerate() {
                out.push(Packet {
                    kind,
                    layer,
                    seq: self.track.seq,
                    time,
                    marker: i + 1 == n,
                    keyframe: keyframe && i == 0,
                    payload,
                });
                self.track.seq += 1;
                self.track.counter += 1;
            }
            self.clip_pos = clip.next(index);
            self.picture_id = (self.picture_id + 1) & 0x7fff;
            if keyframe {
                self.last_keyframe = Some(now);
            }
            self.keyframe_wanted = false;
            return;
        }
        let keyframe = self.keyframe_wanted
            || self
                .last_keyframe
                .is_none_or(|t| now >= t + config.keyframe_interval);
        let packets = config.video_packets_per_frame.max(1);
        for i in 0..packets {
            let pos = Vp8Position {
                first: i == 0,
                keyframe,
                picture_id: self.picture_id,
            };
            out.push(Packet {
                kind,
                layer,
                seq: self.track.seq,
                time,
                marker: i + 1 == packets,
                keyframe: keyframe && i == 0,
                payload: vp8_packet(config.video_payload_size, pos, &tag(self.track.counter)),
            });
            self.track.seq += 1;
            self.track.counter += 1;
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        if keyframe {
            self.last_keyframe = Some(now);
            self.keyframe_wanted = false;
        }
    }
}

/// The next tick after `prev`, skipping ticks missed by more than one period (a busy machine
/// should not make us burst).
fn next_tick(prev: Instant, period: Duration, now: Instant) -> Instant {
    let next = prev + period;
    if next + period < now {
        now + period
    } else {
        next
    }
}

/// RTP timestamp for `now` at `clock_rate`, counted from `start`.
fn rtp_time(start: Instant, now: Instant, clock_rate: u64) -> u32 {
    let elapsed = now.saturating_duration_since(start);
    (elapsed.as_micros() as u64 * clock_rate / 1_000_000) as u32
}

/// Wall-clock microseconds since the Unix epoch: comparable across participants in one
/// process (or on one machine), for latency.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::vp8_starts_keyframe;

    fn config() -> SourceConfig {
        SourceConfig {
            audio: true,
            camera: true,
            audio_interval: Duration::from_millis(20),
            audio_payload_size: 80,
            camera_fps: 30,
            screen_fps: 5,
            video_packets_per_frame: 3,
            video_payload_size: 500,
            keyframe_interval: Duration::from_secs(2),
            clip: None,
            simulcast: None,
        }
    }

    /// Runs the source for `ms` of simulated time, polling whenever it is due.
    fn run(source: &mut MediaSource, from: Instant, ms: u64) -> Vec<Packet> {
        let end = from + Duration::from_millis(ms);
        let mut out = Vec::new();
        while let Some(due) = source.next_due() {
            if due >= end {
                break;
            }
            source.poll(due.max(from), &mut out);
        }
        out
    }

    fn of(packets: &[Packet], kind: TrackKind) -> Vec<&Packet> {
        packets.iter().filter(|p| p.kind == kind).collect()
    }

    #[test]
    fn sends_at_the_configured_rates() {
        let t0 = Instant::now();
        let mut source = MediaSource::new(7, config(), t0);
        // Just under 2 s: 60 frame periods of 33.333333 ms end at 1999.99998 ms, which would
        // squeeze a 61st frame in.
        let out = run(&mut source, t0, 1990);
        assert_eq!(of(&out, TrackKind::Audio).len(), 100);
        let video = of(&out, TrackKind::Video);
        assert_eq!(video.len(), 60 * 3);
        assert!(of(&out, TrackKind::Screen).is_empty());
        // Consecutive sequence numbers and counters per track; marker on each frame's last.
        for w in video.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(
                Tag::from_payload(&w[1].payload).unwrap().counter,
                Tag::from_payload(&w[0].payload).unwrap().counter + 1
            );
        }
        assert!(
            video
                .chunks(3)
                .all(|f| !f[0].marker && !f[1].marker && f[2].marker)
        );
        assert!(
            video
                .chunks(3)
                .all(|f| f.iter().all(|p| p.time == f[0].time))
        );
        // The first frame is a key frame, then one every keyframe_interval (2 s): just one.
        assert!(video[0].keyframe && vp8_starts_keyframe(&video[0].payload));
        assert_eq!(video.iter().filter(|p| p.keyframe).count(), 1);
        let audio = of(&out, TrackKind::Audio);
        assert_eq!(audio[1].time - audio[0].time, 960);
    }

    #[test]
    fn keyframe_request_is_answered_at_once() {
        let t0 = Instant::now();
        let mut source = MediaSource::new(7, config(), t0);
        let mut out = Vec::new();
        source.poll(t0, &mut out);
        let t1 = t0 + Duration::from_millis(5);
        out.clear();
        source.request_keyframe(TrackKind::Video, None);
        assert_eq!(source.next_due(), Some(t0));
        source.poll(t1, &mut out);
        let video = of(&out, TrackKind::Video);
        assert_eq!(video.len(), 3);
        assert!(video[0].keyframe);
        assert!(source.next_due().unwrap() > t1);
        // Requests for a track that is off are ignored.
        source.request_keyframe(TrackKind::Screen, None);
        assert!(source.next_due().unwrap() > t1);
    }

    #[test]
    fn screen_share_starts_with_a_keyframe_and_stops() {
        let t0 = Instant::now();
        let mut source = MediaSource::new(7, config(), t0);
        source.set_screen(true, t0);
        let out = run(&mut source, t0, 1000);
        let screen = of(&out, TrackKind::Screen);
        assert_eq!(screen.len(), 5 * 3);
        assert!(screen[0].keyframe);
        assert_eq!(
            Tag::from_payload(&screen[0].payload).unwrap().kind,
            TrackKind::Screen
        );
        source.set_screen(false, t0 + Duration::from_secs(1));
        let out = run(&mut source, t0 + Duration::from_secs(1), 1000);
        assert!(of(&out, TrackKind::Screen).is_empty());
    }

    #[test]
    fn clip_frames_loop_and_keyframe_requests_jump_ahead() {
        let t0 = Instant::now();
        let cfg = SourceConfig {
            clip: Some(Clip::builtin(300)),
            ..config()
        };
        let mut source = MediaSource::new(7, cfg, t0);
        // Just under 1 s: 30 frames, the first one a key frame, markers closing each frame.
        let out = run(&mut source, t0, 990);
        let video = of(&out, TrackKind::Video);
        assert_eq!(video.iter().filter(|p| p.marker).count(), 30);
        assert!(video[0].keyframe && vp8_starts_keyframe(&video[0].payload));
        assert_eq!(video.iter().filter(|p| p.keyframe).count(), 1);
        for w in video.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(
                Tag::from_payload(&w[1].payload).unwrap().counter,
                Tag::from_payload(&w[0].payload).unwrap().counter + 1
            );
        }
        let mut out = Vec::new();
        source.request_keyframe(TrackKind::Video, None);
        source.poll(t0 + Duration::from_millis(1000), &mut out);
        let video = of(&out, TrackKind::Video);
        assert!(
            video[0].keyframe,
            "a keyframe request is answered with the next key frame"
        );
        assert_eq!(source.camera.clip_pos, 91);
    }

    fn simulcast_source(t0: Instant) -> MediaSource {
        let cfg = SourceConfig {
            audio: false,
            simulcast: Some(Clip::builtin_simulcast()),
            ..config()
        };
        MediaSource::new(7, cfg, t0)
    }

    fn of_layer(packets: &[Packet], layer: u8) -> Vec<&Packet> {
        packets.iter().filter(|p| p.layer == Some(layer)).collect()
    }

    #[test]
    fn simulcast_layers_are_streams_of_their_own() {
        let t0 = Instant::now();
        let mut source = simulcast_source(t0);
        let out = run(&mut source, t0, 990);
        assert!(
            out.iter()
                .all(|p| p.kind == TrackKind::Video && p.layer.is_some())
        );
        // Each layer at its clip's frame rate, starting with a key frame, with its own
        // consecutive sequence numbers and counters, tagged with its layer.
        for (layer, frames) in [(0, 15), (1, 30), (2, 30)] {
            let packets = of_layer(&out, layer);
            assert_eq!(packets.iter().filter(|p| p.marker).count(), frames);
            assert!(packets[0].keyframe);
            for w in packets.windows(2) {
                assert_eq!(w[1].seq, w[0].seq + 1);
                let (a, b) = (
                    Tag::from_payload(&w[0].payload).unwrap(),
                    Tag::from_payload(&w[1].payload).unwrap(),
                );
                assert_eq!((a.layer, b.layer), (layer, layer));
                assert_eq!(b.counter, a.counter + 1);
            }
        }
        // A larger layer sends more.
        let bytes = |l| {
            of_layer(&out, l)
                .iter()
                .map(|p| p.payload.len())
                .sum::<usize>()
        };
        assert!(bytes(0) < bytes(1) && bytes(1) < bytes(2));
    }

    #[test]
    fn simulcast_layers_turn_off_and_on_with_a_key_frame() {
        let t0 = Instant::now();
        let mut source = simulcast_source(t0);
        run(&mut source, t0, 500);
        let t1 = t0 + Duration::from_millis(500);
        source.set_layers([true, false, true], t1);
        let out = run(&mut source, t1, 500);
        assert!(of_layer(&out, 1).is_empty());
        assert!(!of_layer(&out, 2).is_empty());
        let t2 = t1 + Duration::from_millis(500);
        source.set_layers([true, true, true], t2);
        let out = run(&mut source, t2, 100);
        assert!(
            of_layer(&out, 1)[0].keyframe,
            "a layer turned on starts with a key frame"
        );
        // A keyframe request for one layer is answered on that layer only.
        let t3 = t2 + Duration::from_millis(100);
        source.request_keyframe(TrackKind::Video, Some(2));
        let mut out = Vec::new();
        source.poll(t3, &mut out);
        assert!(of_layer(&out, 2)[0].keyframe);
        assert!(of_layer(&out, 1).iter().all(|p| !p.keyframe));
    }

    #[test]
    fn nothing_enabled_means_nothing_due() {
        let t0 = Instant::now();
        let cfg = SourceConfig {
            audio: false,
            camera: false,
            ..config()
        };
        let source = MediaSource::new(7, cfg, t0);
        assert_eq!(source.next_due(), None);
    }

    #[test]
    fn ticks_skip_when_far_behind() {
        let t0 = Instant::now();
        let p = Duration::from_millis(20);
        assert_eq!(next_tick(t0, p, t0), t0 + p);
        let late = t0 + Duration::from_secs(1);
        assert_eq!(next_tick(t0, p, late), late + p);
    }

    #[test]
    fn rtp_time_counts_clock_rate() {
        let t0 = Instant::now();
        assert_eq!(rtp_time(t0, t0 + Duration::from_millis(20), 48_000), 960);
        assert_eq!(rtp_time(t0, t0 + Duration::from_secs(1), 90_000), 90_000);
    }
}

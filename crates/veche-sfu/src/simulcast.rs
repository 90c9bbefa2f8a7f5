//! Simulcast: the layers a publisher sends of its camera, what the SFU measures of each, and
//! which layer one subscription forwards.
//!
//! A publisher's camera arrives in up to [`LAYERS`] RTP streams (RFC 8853), told apart by
//! their RID (RFC 8852): `q`, `h` and `f`, a quarter, half and full resolution. Each
//! subscription forwards one of them. It switches to another only at a keyframe of the new
//! layer, so the subscriber's decoder never gets a frame that refers to a picture of
//! another layer; the subscription's `Munger` makes the two layers one continuous stream.

use std::time::{Duration, Instant};

use str0m::rtp::Vp8Descriptor;

/// Simulcast layers a camera is offered in, lowest first.
pub(crate) const LAYERS: usize = 3;

/// The RID of each layer, lowest first, as offered in `a=rid` / `a=simulcast`.
pub(crate) const RIDS: [&str; LAYERS] = ["q", "h", "f"];

/// Picture height each layer is meant to have, for layers whose keyframes have not shown
/// their real size yet (the browser client scales 720p by 4, 2 and 1).
const NOMINAL_HEIGHT: [u16; LAYERS] = [180, 360, 720];

/// A layer that sent nothing for this long is taken to be off (the publisher's own
/// bandwidth estimate or CPU dropped it, or it was told nobody needs it).
const LAYER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Bitrates are measured over windows this long.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// A layer nobody needs is turned off at its publisher only after this long, so a tile that
/// shrinks and grows again does not cost the publisher a restart of its encoder.
const DYNACAST_HOLD: Duration = Duration::from_secs(3);

/// Index of a simulcast layer, 0 the lowest. A track without simulcast has layer 0 only.
pub(crate) type Layer = u8;

/// The layer named by `rid`; a stream without a RID is layer 0.
pub(crate) fn layer_of_rid(rid: Option<&str>) -> Option<Layer> {
    match rid {
        None => Some(0),
        Some(rid) => RIDS.iter().position(|r| *r == rid).map(|i| i as Layer),
    }
}

/// What the SFU has seen of one layer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LayerStats {
    window_bytes: u64,
    window_base_bytes: u64,
    /// Bits per second over the latest complete window, smoothed with the one before.
    pub(crate) bitrate: u64,
    /// The same for its temporal base layer alone (VP8 TID 0); 0 when it has no temporal
    /// layers.
    pub(crate) base_bitrate: u64,
    pub(crate) last_packet: Option<Instant>,
    /// Frame size of its latest keyframe (VP8 keyframes carry it), 0 before one.
    pub(crate) width: u16,
    pub(crate) height: u16,
}

/// The layers of one published video track (a publisher's camera or screen).
#[derive(Debug, Default)]
pub(crate) struct PublishedLayers {
    pub(crate) layers: [LayerStats; LAYERS],
    /// Whether the track arrives in RID-tagged layers.
    pub(crate) simulcast: bool,
    window_start: Option<Instant>,
}

impl PublishedLayers {
    /// Counts one incoming packet of `layer` (of temporal layer `tid`, when the stream has
    /// them). O(1), no allocation: runs per packet.
    pub(crate) fn on_packet(
        &mut self,
        now: Instant,
        layer: Layer,
        bytes: usize,
        tid: Option<u8>,
        size: Option<(u16, u16)>,
    ) {
        let Some(l) = self.layers.get_mut(layer as usize) else {
            return;
        };
        l.window_bytes += bytes as u64;
        if tid == Some(0) {
            l.window_base_bytes += bytes as u64;
        }
        l.last_packet = Some(now);
        if let Some((w, h)) = size {
            l.width = w;
            l.height = h;
        }
        self.window_start.get_or_insert(now);
    }

    /// Closes the measuring window when it is over (called on the core's tick).
    pub(crate) fn roll(&mut self, now: Instant) {
        let Some(start) = self.window_start else {
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < RATE_WINDOW {
            return;
        }
        let micros = elapsed.as_micros().max(1) as u64;
        for l in &mut self.layers {
            let smooth = |was: u64, bytes: u64| {
                let rate = bytes * 8 * 1_000_000 / micros;
                if was == 0 { rate } else { (was + rate) / 2 }
            };
            l.bitrate = smooth(l.bitrate, l.window_bytes);
            l.base_bitrate = smooth(l.base_bitrate, l.window_base_bytes);
            l.window_bytes = 0;
            l.window_base_bytes = 0;
            if l.last_packet.is_none_or(|t| now >= t + LAYER_TIMEOUT) {
                l.bitrate = 0;
                l.base_bitrate = 0;
            }
        }
        self.window_start = Some(now);
    }

    /// Whether `layer` is arriving.
    pub(crate) fn is_active(&self, now: Instant, layer: Layer) -> bool {
        self.layers
            .get(layer as usize)
            .and_then(|l| l.last_packet)
            .is_some_and(|t| now < t + LAYER_TIMEOUT)
    }

    /// The picture height of `layer`: seen in its keyframes, else what it is meant to be.
    pub(crate) fn height(&self, layer: Layer) -> u16 {
        let i = (layer as usize).min(LAYERS - 1);
        match self.layers[i].height {
            0 if self.simulcast => NOMINAL_HEIGHT[i],
            // A single-layer track of unknown size: as tall as the top layer.
            0 => NOMINAL_HEIGHT[LAYERS - 1],
            h => h,
        }
    }

    pub(crate) fn width(&self, layer: Layer) -> u16 {
        let i = (layer as usize).min(LAYERS - 1);
        match self.layers[i].width {
            0 => self.height(layer).saturating_mul(16) / 9,
            w => w,
        }
    }
}

/// What a publisher was last told of the layers its subscribers need (dynacast): a layer
/// nobody receives is not worth encoding.
#[derive(Debug, Default)]
pub(crate) struct Dynacast {
    told: Option<[bool; LAYERS]>,
    unneeded_since: [Option<Instant>; LAYERS],
}

impl Dynacast {
    /// Takes the layers needed now; returns the layers to tell the publisher to encode when
    /// that changed. A layer is turned on at once, and off once unneeded for
    /// [`DYNACAST_HOLD`]. Nothing is said while every layer stays on (the browser's default).
    pub(crate) fn update(
        &mut self,
        now: Instant,
        needed: [bool; LAYERS],
    ) -> Option<[bool; LAYERS]> {
        let mut active = self.told.unwrap_or([true; LAYERS]);
        for (l, on) in active.iter_mut().enumerate() {
            if needed[l] {
                self.unneeded_since[l] = None;
                *on = true;
            } else {
                let since = *self.unneeded_since[l].get_or_insert(now);
                if now.saturating_duration_since(since) >= DYNACAST_HOLD {
                    *on = false;
                }
            }
        }
        if self.told.unwrap_or([true; LAYERS]) == active {
            return None;
        }
        self.told = Some(active);
        Some(active)
    }
}

/// How a packet starts (or does not start) a picture the decoder can begin with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyframe {
    /// The first packet of a keyframe.
    Starts,
    /// Anything else.
    No,
    /// A codec whose keyframes we cannot see: every packet may be a start.
    Unknown,
}

impl Keyframe {
    pub(crate) fn may_start(self) -> bool {
        !matches!(self, Keyframe::No)
    }
}

/// Whether a VP8 packet starts a keyframe, and the frame size the keyframe header carries
/// (RFC 6386 §9.1: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and
/// height).
pub(crate) fn vp8_keyframe(d: &Vp8Descriptor, payload: &[u8]) -> (Keyframe, Option<(u16, u16)>) {
    if !d.starts_keyframe(payload) {
        return (Keyframe::No, None);
    }
    let size = vp8_descriptor_len(payload).and_then(|at| {
        let header = payload.get(at..at + 10)?;
        if header[3..6] != [0x9d, 0x01, 0x2a] {
            return None;
        }
        let w = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
        let h = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
        Some((w, h))
    });
    (Keyframe::Starts, size)
}

/// Length of the VP8 payload descriptor at the start of `payload` (RFC 7741 §4.2).
fn vp8_descriptor_len(payload: &[u8]) -> Option<usize> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        return Some(1);
    }
    let ext = *payload.get(1)?;
    let mut len = 2;
    if ext & 0x80 != 0 {
        len += if payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
    }
    if ext & 0x40 != 0 {
        len += 1;
    }
    if ext & 0x30 != 0 {
        len += 1;
    }
    Some(len)
}

/// The temporal layer index of a VP8 packet (RFC 7741 §4.2: the TID field, present when the
/// descriptor's T bit is set), `None` when the stream has no temporal layers.
pub(crate) fn vp8_temporal(payload: &[u8]) -> Option<u8> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let ext = *payload.get(1)?;
    if ext & 0x20 == 0 {
        return None;
    }
    let mut at = 2;
    if ext & 0x80 != 0 {
        // I: a 7- or 15-bit picture id.
        at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    if ext & 0x40 != 0 {
        // L: TL0PICIDX.
        at += 1;
    }
    Some(payload.get(at)? >> 6)
}

/// Whether an H.264 packet (RFC 6184) starts a keyframe: an IDR slice or a sequence parameter
/// set, alone, first in a STAP-A, or at the start of an FU-A.
pub(crate) fn h264_keyframe(payload: &[u8]) -> Keyframe {
    let is_key = |nal: u8| matches!(nal & 0x1f, 5 | 7);
    let Some(&first) = payload.first() else {
        return Keyframe::No;
    };
    let starts = match first & 0x1f {
        // STAP-A: 16-bit size, then the first NAL unit's header.
        24 => payload.get(3).is_some_and(|n| is_key(*n)),
        // FU-A: the FU header's start bit and type.
        28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && is_key(*h)),
        _ => is_key(first),
    };
    if starts {
        Keyframe::Starts
    } else {
        Keyframe::No
    }
}

/// Whether a VP8 packet is the first of a frame (S set, partition 0; RFC 7741 §4.2).
pub(crate) fn vp8_frame_start(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x17 == 0x10)
}

/// Which temporal layers of the forwarded layer a subscription sends (VP8 TIDs): all, or
/// up to a cap. The cap changes only at the first packet of a base-layer frame, which every
/// frame after it can be decoded from; a stream without temporal layers is sent whole.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TemporalChoice {
    /// The highest TID wanted; `None`: all.
    pub(crate) target: Option<u8>,
    current: Option<u8>,
}

impl TemporalChoice {
    /// Whether a packet of temporal layer `tid` goes out.
    pub(crate) fn admit(&mut self, tid: Option<u8>, frame_start: bool) -> bool {
        let Some(tid) = tid else {
            return true;
        };
        if tid == 0 && frame_start {
            self.current = self.target;
        }
        self.current.is_none_or(|cap| tid <= cap)
    }
}

/// Which layer a subscription forwards and which one it is moving to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LayerChoice {
    /// The layer being forwarded; `None` before the first packet and while paused.
    pub(crate) current: Option<Layer>,
    /// The layer wanted; `None` pauses the subscription (nothing is forwarded).
    pub(crate) target: Option<Layer>,
    /// When a keyframe of the target was last asked for, while waiting to switch.
    pub(crate) asked_at: Option<Instant>,
}

impl LayerChoice {
    /// Forwarding everything from the start (audio, and tracks nobody chooses layers for).
    pub(crate) fn open() -> LayerChoice {
        LayerChoice {
            current: None,
            target: Some(0),
            asked_at: None,
        }
    }

    /// Whether a packet of `layer` is forwarded, switching to the target at its keyframe.
    /// `first_start_any` lets a subscription that never forwarded begin without a keyframe
    /// (a single-layer track: the receiver asks for a keyframe itself).
    pub(crate) fn admit(
        &mut self,
        layer: Layer,
        keyframe: Keyframe,
        first_start_any: bool,
    ) -> bool {
        let Some(target) = self.target else {
            return false;
        };
        match self.current {
            Some(current) if current == target => layer == current,
            _ if layer == target && (keyframe.may_start() || first_start_any) => {
                self.current = Some(target);
                self.asked_at = None;
                true
            }
            Some(current) => layer == current,
            None => false,
        }
    }

    /// Sets the wanted layer. Returns true when a keyframe of it is now needed (a switch or a
    /// resume starts). Pausing stops forwarding at once.
    pub(crate) fn set_target(&mut self, target: Option<Layer>) -> bool {
        if self.target == target {
            return false;
        }
        self.target = target;
        if target.is_none() {
            self.current = None;
            self.asked_at = None;
            return false;
        }
        self.current != target
    }

    /// Whether the subscription waits for a keyframe of its target.
    pub(crate) fn switching(&self) -> bool {
        self.target.is_some() && self.current != self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut c = LayerChoice::default();
        assert!(c.set_target(Some(2)));
        // Nothing before the target's keyframe.
        assert!(!c.admit(2, Keyframe::No, false));
        assert!(!c.admit(0, Keyframe::Starts, false));
        assert!(c.admit(2, Keyframe::Starts, false));
        assert!(c.admit(2, Keyframe::No, false));
        assert!(!c.admit(1, Keyframe::No, false));

        // Down to 0: layer 2 keeps flowing until 0's keyframe.
        assert!(c.set_target(Some(0)));
        assert!(c.admit(2, Keyframe::No, false));
        assert!(!c.admit(0, Keyframe::No, false));
        assert!(c.admit(0, Keyframe::Starts, false));
        assert!(!c.admit(2, Keyframe::Starts, false));
        assert!(!c.switching());
    }

    #[test]
    fn paused_forwards_nothing_and_resumes_at_a_keyframe() {
        let mut c = LayerChoice::default();
        c.set_target(Some(1));
        assert!(c.admit(1, Keyframe::Starts, false));
        assert!(!c.set_target(None));
        assert!(!c.admit(1, Keyframe::Starts, false));
        assert!(c.set_target(Some(1)));
        assert!(!c.admit(1, Keyframe::No, false));
        assert!(c.admit(1, Keyframe::Starts, false));
    }

    #[test]
    fn reads_the_size_of_a_vp8_keyframe() {
        // Descriptor: X, S; I with a 15-bit picture id; then a keyframe header for 640x360.
        let payload = [
            0x90, 0x80, 0x81, 0x23, // descriptor
            0x50, 0x04, 0x00, // frame tag, P = 0 (keyframe)
            0x9d, 0x01, 0x2a, // start code
            0x80, 0x02, 0x68, 0x01, // 640, 360
            0, 0,
        ];
        let d = Vp8Descriptor::parse(&payload).unwrap();
        assert_eq!(
            vp8_keyframe(&d, &payload),
            (Keyframe::Starts, Some((640, 360)))
        );
        let mut inter = payload;
        inter[4] |= 1;
        let d = Vp8Descriptor::parse(&inter).unwrap();
        assert_eq!(vp8_keyframe(&d, &inter), (Keyframe::No, None));
    }

    #[test]
    fn dynacast_turns_layers_on_at_once_and_off_after_a_while() {
        let t = Instant::now();
        let mut d = Dynacast::default();
        assert_eq!(d.update(t, [true, true, true]), None);
        assert_eq!(d.update(t, [true, false, false]), None);
        assert_eq!(
            d.update(t + Duration::from_secs(2), [true, false, false]),
            None
        );
        assert_eq!(
            d.update(t + DYNACAST_HOLD, [true, false, false]),
            Some([true, false, false])
        );
        let later = t + DYNACAST_HOLD + Duration::from_secs(1);
        assert_eq!(
            d.update(later, [true, true, false]),
            Some([true, true, false])
        );
        assert_eq!(d.update(later, [true, true, false]), None);
    }

    #[test]
    fn tells_h264_keyframes() {
        assert_eq!(h264_keyframe(&[0x65, 0]), Keyframe::Starts);
        assert_eq!(h264_keyframe(&[0x41, 0]), Keyframe::No);
        assert_eq!(h264_keyframe(&[0x78, 0, 5, 0x67]), Keyframe::Starts);
        assert_eq!(h264_keyframe(&[0x7c, 0x85]), Keyframe::Starts);
        assert_eq!(h264_keyframe(&[0x7c, 0x05]), Keyframe::No);
        assert_eq!(h264_keyframe(&[]), Keyframe::No);
    }

    #[test]
    fn measures_layer_bitrates_and_notices_a_layer_stopping() {
        let t = Instant::now();
        let mut p = PublishedLayers::default();
        for i in 0..50 {
            p.on_packet(t + Duration::from_millis(i * 10), 1, 1000, None, None);
        }
        p.roll(t + Duration::from_millis(500));
        // 50 kB in 0.5 s.
        assert_eq!(p.layers[1].bitrate, 800_000);
        assert!(p.is_active(t + Duration::from_millis(600), 1));
        assert!(!p.is_active(t + Duration::from_millis(600), 2));
        p.roll(t + Duration::from_millis(2000));
        assert_eq!(p.layers[1].bitrate, 0);
        assert!(!p.is_active(t + Duration::from_millis(2000), 1));
    }
}

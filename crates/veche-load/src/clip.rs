//! Real encoded VP8 video for publishers: a short clip in an IVF file, looped, and its RFC 7741
//! packetization.
//!
//! Load figures only mean something when the SFU sees what browsers send: frame sizes that
//! vary, key frames several times larger than delta frames every few seconds, frames split over
//! many packets. The fixtures in `fixtures/` were made once with Debian's ffmpeg (libvpx):
//!
//! ```text
//! ffmpeg -f lavfi -i testsrc2=size=640x360:rate=30 -t 8 -c:v libvpx -b:v 1000k \
//!   -minrate 1000k -maxrate 1000k -bufsize 1000k -g 90 -keyint_min 90 -auto-alt-ref 0 \
//!   -lag-in-frames 0 -deadline realtime -cpu-used 8 -f ivf testsrc2-640x360-30fps-1000k.ivf
//! ```
//!
//! and the same at 300k: 8 s, 30 fps, a key frame every 3 s, about 1 Mbit/s and 300 kbit/s.
//!
//! The simulcast fixtures are the browser client's three camera layers (`CAMERA_LAYERS` in
//! `web/js/session.js`: a quarter, half and full 720p at up to 90 kbit/s and 15 fps, 500 and
//! 1500 kbit/s), 4 s each with a key frame every 2 s, made by
//! `crates/veche-load/fixtures/make-simulcast-clips.sh` (the same ffmpeg settings; it makes
//! longer or other clips for `veche-load --clip-dir` too).

use std::path::Path;
use std::sync::Arc;

use crate::Error;
use crate::payload::{TAG_LEN, Tag};

const CLIP_1000K: &[u8] = include_bytes!("../fixtures/testsrc2-640x360-30fps-1000k.ivf");
const CLIP_300K: &[u8] = include_bytes!("../fixtures/testsrc2-640x360-30fps-300k.ivf");
const SIMULCAST: [&[u8]; SIMULCAST_LAYERS] = [
    include_bytes!("../fixtures/testsrc2-320x180-15fps-90k.ivf"),
    include_bytes!("../fixtures/testsrc2-640x360-30fps-500k.ivf"),
    include_bytes!("../fixtures/testsrc2-1280x720-30fps-1500k.ivf"),
];

/// Simulcast layers a publisher sends its camera in, as browsers do.
pub const SIMULCAST_LAYERS: usize = 3;

/// Largest RTP payload we produce: with the 12-byte RTP header, SRTP's 10-byte auth tag and
/// header extensions this stays well under a 1280-byte path MTU, as browsers do.
pub const MAX_VP8_PAYLOAD: usize = 1200;

/// VP8 payload descriptor we write: X=1, I=1 with a 15-bit picture id (RFC 7741 §4.2).
const DESCRIPTOR_LEN: usize = 4;

/// A looped VP8 clip: the encoded frames in order, with their key frame flags.
#[derive(Clone)]
pub struct Clip {
    frames: Arc<[Frame]>,
    fps: u32,
    width: u16,
    height: u16,
}

impl std::fmt::Debug for Clip {
    // The frames themselves are a megabyte of bytes nobody wants in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("frames", &self.frames.len())
            .field("fps", &self.fps)
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .field("kbps", &self.kbps())
            .finish()
    }
}

struct Frame {
    data: Vec<u8>,
    keyframe: bool,
}

impl Clip {
    /// The built-in clip closest to `kbps`: 300 kbit/s up to 550, else 1 Mbit/s. Both are
    /// 640×360 at 30 fps with a key frame every 3 s.
    pub fn builtin(kbps: u32) -> Clip {
        let bytes = if kbps <= 550 { CLIP_300K } else { CLIP_1000K };
        // The fixtures are part of the crate and covered by a test, so they parse.
        Clip::from_ivf(bytes).expect("built-in fixture is valid IVF")
    }

    /// The built-in simulcast layers, lowest first: 320×180 at 15 fps and 90 kbit/s,
    /// 640×360 at 30 fps and 500 kbit/s, 1280×720 at 30 fps and 1.5 Mbit/s.
    pub fn builtin_simulcast() -> [Clip; SIMULCAST_LAYERS] {
        // As for `builtin`: part of the crate and covered by a test.
        SIMULCAST.map(|bytes| Clip::from_ivf(bytes).expect("built-in fixture is valid IVF"))
    }

    /// Simulcast layers from the `.ivf` files in `dir`: exactly [`SIMULCAST_LAYERS`] of
    /// them, ordered by picture height (lowest first), each taller than the one before.
    pub fn simulcast_from_dir(dir: &Path) -> Result<[Clip; SIMULCAST_LAYERS], Error> {
        let bad = |why: String| Error::Clip(format!("{}: {why}", dir.display()));
        let mut clips = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))? {
            let path = entry.map_err(|e| bad(e.to_string()))?.path();
            if path.extension().is_some_and(|e| e == "ivf") {
                let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
                let clip =
                    Clip::from_ivf(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
                clips.push(clip);
            }
        }
        clips.sort_by_key(Clip::height);
        if clips.windows(2).any(|w| w[0].height >= w[1].height) {
            return Err(bad("two clips have the same height".into()));
        }
        let n = clips.len();
        clips
            .try_into()
            .map_err(|_| bad(format!("{n} .ivf files, not {SIMULCAST_LAYERS}")))
    }

    /// Parses an IVF file (a 32-byte header, then 12-byte frame headers each followed by the
    /// frame). Only VP8 is accepted: that is what we packetize.
    pub fn from_ivf(bytes: &[u8]) -> Result<Clip, Error> {
        let bad = |why: &str| Error::Clip(why.to_owned());
        if bytes.len() < 32 || &bytes[..4] != b"DKIF" {
            return Err(bad("not an IVF file (no DKIF signature)"));
        }
        if &bytes[8..12] != b"VP80" {
            return Err(bad("IVF codec is not VP8"));
        }
        let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
        let rate = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let scale = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        let width = u16::from_le_bytes([bytes[12], bytes[13]]);
        let height = u16::from_le_bytes([bytes[14], bytes[15]]);
        // ffmpeg writes the time base (1/30) here, not the frame rate; either way rate/scale
        // is frames per second for a constant-rate clip.
        let fps = rate.checked_div(scale).filter(|f| (1..=120).contains(f));
        let mut frames = Vec::new();
        let mut at = header_len.max(32);
        while at + 12 <= bytes.len() {
            let size = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let start = at + 12;
            let data = bytes
                .get(start..start + size)
                .ok_or_else(|| bad("truncated IVF frame"))?;
            if data.is_empty() {
                return Err(bad("empty IVF frame"));
            }
            // VP8 frame tag (RFC 6386 §9.1): bit 0 of the first byte is 0 on key frames.
            frames.push(Frame {
                keyframe: data[0] & 0x01 == 0,
                data: data.to_vec(),
            });
            at = start + size;
        }
        if !frames.first().is_some_and(|f| f.keyframe) {
            return Err(bad("clip does not start with a key frame"));
        }
        Ok(Clip {
            frames: frames.into(),
            fps: fps.unwrap_or(30),
            width,
            height,
        })
    }

    /// Picture width and height as the IVF header gives them.
    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    pub fn fps(&self) -> u32 {
        self.fps
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Mean bitrate of the clip when played at its frame rate.
    pub fn kbps(&self) -> u64 {
        let bytes: usize = self.frames.iter().map(|f| f.data.len()).sum();
        (bytes as u64 * 8 * u64::from(self.fps)) / (self.frames.len() as u64 * 1000)
    }

    /// Mean RTP packets per second when played at its frame rate (as [`Clip::packetize`]
    /// splits frames).
    pub fn packets_per_second(&self) -> f64 {
        let room = MAX_VP8_PAYLOAD - DESCRIPTOR_LEN - TAG_LEN;
        let packets: usize = self
            .frames
            .iter()
            .map(|f| f.data.len().div_ceil(room))
            .sum();
        packets as f64 * f64::from(self.fps) / self.frames.len() as f64
    }

    pub(crate) fn is_keyframe(&self, index: usize) -> bool {
        self.frames[index % self.frames.len()].keyframe
    }

    /// The frame after `index`, looping.
    pub(crate) fn next(&self, index: usize) -> usize {
        (index + 1) % self.frames.len()
    }

    /// The first key frame at or after `index`, looping (the clip starts with one).
    pub(crate) fn keyframe_at_or_after(&self, index: usize) -> usize {
        let n = self.frames.len();
        (0..n)
            .map(|i| (index + i) % n)
            .find(|&i| self.frames[i].keyframe)
            .unwrap_or(0)
    }

    /// Splits frame `index` into RTP payloads of at most [`MAX_VP8_PAYLOAD`] bytes (RFC 7741
    /// §4: a payload descriptor with S set on the first packet, then a slice of the frame),
    /// each ending in the tag `tag_for(i)` of its packet. Returns the number of packets.
    ///
    /// The tag after the VP8 data makes the bitstream undecodable, which no SFU notices: they
    /// read the descriptor and the frame tag only, both left intact.
    pub(crate) fn packetize(
        &self,
        index: usize,
        picture_id: u16,
        mut tag_for: impl FnMut(u32) -> Tag,
        out: &mut Vec<Vec<u8>>,
    ) -> usize {
        let data = &self.frames[index % self.frames.len()].data;
        let room = MAX_VP8_PAYLOAD - DESCRIPTOR_LEN - TAG_LEN;
        let pid = picture_id & 0x7fff;
        let mut count = 0;
        for (i, chunk) in data.chunks(room).enumerate() {
            let mut p = Vec::with_capacity(DESCRIPTOR_LEN + chunk.len() + TAG_LEN);
            // X=1, S on the first packet of the frame, partition index 0.
            p.push(0x80 | if i == 0 { 0x10 } else { 0 });
            // I=1: picture id present, M=1: 15 bits.
            p.push(0x80);
            p.push(0x80 | (pid >> 8) as u8);
            p.push(pid as u8);
            p.extend_from_slice(chunk);
            tag_for(i as u32).write_to(&mut p);
            out.push(p);
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use veche_proto::TrackKind;

    use super::*;
    use crate::payload::vp8_starts_keyframe;

    fn tag(counter: u32) -> Tag {
        Tag {
            origin: 1,
            kind: TrackKind::Video,
            layer: 0,
            counter,
            sent_at_us: 5,
        }
    }

    #[test]
    fn builtin_clips_parse_with_keyframes_every_three_seconds() {
        for kbps in [300, 1000] {
            let clip = Clip::builtin(kbps);
            assert_eq!(clip.fps(), 30);
            assert_eq!(clip.len(), 240);
            let keys: Vec<usize> = (0..clip.len()).filter(|&i| clip.is_keyframe(i)).collect();
            assert_eq!(keys, vec![0, 90, 180]);
            let rate = clip.kbps();
            assert!(
                rate > u64::from(kbps) * 7 / 10 && rate < u64::from(kbps) * 13 / 10,
                "{kbps}k clip is {rate} kbit/s"
            );
        }
    }

    #[test]
    fn builtin_simulcast_layers_are_the_browser_clients() {
        let layers = Clip::builtin_simulcast();
        let shape: Vec<_> = layers
            .iter()
            .map(|c| (c.width(), c.height(), c.fps()))
            .collect();
        assert_eq!(shape, [(320, 180, 15), (640, 360, 30), (1280, 720, 30)]);
        for (clip, kbps) in layers.iter().zip([90, 500, 1500]) {
            let rate = clip.kbps();
            assert!(
                rate > kbps * 7 / 10 && rate < kbps * 13 / 10,
                "{kbps}k layer is {rate} kbit/s"
            );
            // Every frame's key frame header says the clip's size.
            let mut out = Vec::new();
            clip.packetize(0, 1, tag, &mut out);
            assert_eq!(
                crate::payload::vp8_keyframe_size(&out[0]),
                Some((clip.width(), clip.height()))
            );
        }
    }

    #[test]
    fn simulcast_from_a_directory_orders_by_height() {
        let dir = std::env::temp_dir().join(format!("veche-clips-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Written in an order that is not the layers'.
        for (name, bytes) in [("c.ivf", SIMULCAST[0]), ("a.ivf", SIMULCAST[2])] {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        assert!(Clip::simulcast_from_dir(&dir).is_err(), "two clips only");
        std::fs::write(dir.join("b.ivf"), SIMULCAST[1]).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a clip").unwrap();
        let heights = Clip::simulcast_from_dir(&dir).unwrap().map(|c| c.height());
        assert_eq!(heights, [180, 360, 720]);
        std::fs::write(dir.join("d.ivf"), SIMULCAST[1]).unwrap();
        assert!(Clip::simulcast_from_dir(&dir).is_err(), "four clips");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keyframe_search_loops() {
        let clip = Clip::builtin(300);
        assert_eq!(clip.keyframe_at_or_after(0), 0);
        assert_eq!(clip.keyframe_at_or_after(1), 90);
        assert_eq!(clip.keyframe_at_or_after(181), 0);
        assert_eq!(clip.next(239), 0);
    }

    #[test]
    fn packetizes_within_mtu_with_valid_descriptors() {
        let clip = Clip::builtin(1000);
        let mut out = Vec::new();
        let n = clip.packetize(0, 300, tag, &mut out);
        assert!(n > 3, "a 1 Mbit/s key frame spans several packets");
        assert!(out.iter().all(|p| p.len() <= MAX_VP8_PAYLOAD));
        assert!(vp8_starts_keyframe(&out[0]));
        assert!(out[1..].iter().all(|p| p[0] & 0x10 == 0));
        assert_eq!(Tag::from_payload(&out[2]).unwrap().counter, 2);
        // Reassembling the slices gives the frame back.
        let body: Vec<u8> = out
            .iter()
            .flat_map(|p| p[DESCRIPTOR_LEN..p.len() - TAG_LEN].iter().copied())
            .collect();
        assert_eq!(body, clip.frames[0].data);
        out.clear();
        clip.packetize(1, 301, tag, &mut out);
        assert!(!vp8_starts_keyframe(&out[0]));
    }

    #[test]
    fn rejects_non_ivf() {
        assert!(Clip::from_ivf(b"hello").is_err());
        let mut bad = CLIP_300K[..32].to_vec();
        bad[8..12].copy_from_slice(b"VP90");
        assert!(Clip::from_ivf(&bad).is_err());
    }
}

//! Synthetic RTP payloads: just valid enough for an SFU that peeks at codec headers, and
//! carrying a trailer that lets the receiver attribute every packet to its sender.
//!
//! The trailer sits at the *end* of the payload so that an SFU rewriting the VP8 payload
//! descriptor at the front (picture id, TL0PICIDX) cannot disturb it.

use veche_proto::{ParticipantId, TrackKind};

const MAGIC: [u8; 4] = *b"VCHL";

/// Length of the [`Tag`] trailer in bytes.
pub const TAG_LEN: usize = 4 + 8 + 1 + 4 + 8;

/// Origin and ordering information carried in the last [`TAG_LEN`] bytes of every payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The publishing participant.
    pub origin: ParticipantId,
    pub kind: TrackKind,
    /// Simulcast layer of a camera packet, 0 the lowest (and the only one without simulcast).
    /// Each layer has its own counter.
    pub layer: u8,
    /// Per-track packet counter, independent of the RTP sequence number an SFU may rewrite.
    pub counter: u32,
    /// Wall-clock send time, microseconds since the Unix epoch (latency on one machine).
    pub sent_at_us: u64,
}

impl Tag {
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.origin.to_be_bytes());
        // The kind in the low nibble, the simulcast layer in the high one.
        out.push(kind_byte(self.kind) | (self.layer & 0x0f) << 4);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.sent_at_us.to_be_bytes());
    }

    /// Reads the trailer of `payload`, `None` if it carries none.
    pub fn from_payload(payload: &[u8]) -> Option<Tag> {
        let start = payload.len().checked_sub(TAG_LEN)?;
        let t = &payload[start..];
        if t[..4] != MAGIC {
            return None;
        }
        // The slice lengths below are fixed by TAG_LEN, so the conversions cannot fail.
        let origin = u64::from_be_bytes(t[4..12].try_into().expect("8 bytes"));
        let kind = match t[12] & 0x0f {
            0 => TrackKind::Audio,
            1 => TrackKind::Video,
            2 => TrackKind::Screen,
            _ => return None,
        };
        let counter = u32::from_be_bytes(t[13..17].try_into().expect("4 bytes"));
        let sent_at_us = u64::from_be_bytes(t[17..25].try_into().expect("8 bytes"));
        Some(Tag {
            origin,
            kind,
            layer: t[12] >> 4,
            counter,
            sent_at_us,
        })
    }
}

fn kind_byte(kind: TrackKind) -> u8 {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
        TrackKind::Screen => 2,
    }
}

/// An Opus payload of `size` bytes (at least the TOC and the tag).
pub(crate) fn opus_packet(size: usize, tag: &Tag) -> Vec<u8> {
    let size = size.max(1 + TAG_LEN);
    let mut out = Vec::with_capacity(size);
    // TOC: config 31 (CELT fullband, 20 ms), mono, one frame per packet (RFC 6716 §3.1).
    out.push(0xf8);
    out.resize(size - TAG_LEN, 0);
    tag.write_to(&mut out);
    out
}

/// Where a packet sits in its VP8 frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vp8Position {
    /// First packet of the frame (sets the S bit and carries the VP8 payload header).
    pub(crate) first: bool,
    pub(crate) keyframe: bool,
    /// 15-bit picture id, incremented per frame.
    pub(crate) picture_id: u16,
}

/// Width and height advertised in synthetic keyframes.
const KEYFRAME_SIZE: (u16, u16) = (640, 360);

/// A VP8 RTP payload of `size` bytes: payload descriptor (RFC 7741 §4.2) with a 15-bit picture
/// id, the VP8 frame tag on the first packet (plus the keyframe start code and dimensions on
/// keyframes, RFC 6386 §9.1), filler, then the tag.
pub(crate) fn vp8_packet(size: usize, pos: Vp8Position, tag: &Tag) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.max(16 + TAG_LEN));
    // X=1 (extension byte follows), S on the first packet, partition index 0.
    out.push(0x80 | if pos.first { 0x10 } else { 0 });
    // I=1: picture id present.
    out.push(0x80);
    // M=1: 15-bit picture id.
    let pid = pos.picture_id & 0x7fff;
    out.push(0x80 | (pid >> 8) as u8);
    out.push(pid as u8);
    if pos.first {
        // Frame tag: P (0 = key frame), version 0, show_frame 1, first partition size.
        let first_part_size: u32 = 64;
        let p = if pos.keyframe { 0 } else { 1 };
        out.push(p | 0x10 | ((first_part_size & 0x7) << 5) as u8);
        out.push((first_part_size >> 3) as u8);
        out.push((first_part_size >> 11) as u8);
        if pos.keyframe {
            out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            out.extend_from_slice(&KEYFRAME_SIZE.0.to_le_bytes());
            out.extend_from_slice(&KEYFRAME_SIZE.1.to_le_bytes());
        }
    }
    let body = size.max(out.len() + TAG_LEN) - TAG_LEN;
    out.resize(body, 0);
    tag.write_to(&mut out);
    out
}

/// Whether a VP8 RTP payload starts a key frame. Parses the payload descriptor, so it works
/// on real VP8 too.
pub fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    vp8_frame_header(payload).is_some_and(|h| h.first().is_some_and(|b| b & 0x01 == 0))
}

/// Width and height of the VP8 key frame this payload starts (RFC 6386 §9.1: after the
/// 3-byte frame tag, the start code 9d 01 2a and two 14-bit sizes), `None` on any other
/// packet.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let header = vp8_frame_header(payload)?.get(..10)?;
    if header[0] & 0x01 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    Some((width, height))
}

/// The VP8 payload after its descriptor (RFC 7741 §4.2) when this packet starts a frame
/// (S set, partition 0): the frame header.
fn vp8_frame_header(payload: &[u8]) -> Option<&[u8]> {
    let b0 = *payload.first()?;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_index = b0 & 0x07;
    if !start_of_partition || partition_index != 0 {
        return None;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            // Picture id: one byte, or two when its M bit is set.
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(i..).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: TrackKind) -> Tag {
        Tag {
            origin: 0x0102_0304_0506_0708,
            kind,
            layer: 0,
            counter: 77,
            sent_at_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn opus_round_trips_tag() {
        let p = opus_packet(80, &tag(TrackKind::Audio));
        assert_eq!(p.len(), 80);
        assert_eq!(p[0], 0xf8);
        assert_eq!(Tag::from_payload(&p), Some(tag(TrackKind::Audio)));
    }

    #[test]
    fn tiny_size_still_fits_the_tag() {
        let p = opus_packet(3, &tag(TrackKind::Audio));
        assert_eq!(Tag::from_payload(&p), Some(tag(TrackKind::Audio)));
        let pos = Vp8Position {
            first: true,
            keyframe: true,
            picture_id: 1,
        };
        let p = vp8_packet(3, pos, &tag(TrackKind::Video));
        assert_eq!(Tag::from_payload(&p), Some(tag(TrackKind::Video)));
        assert!(vp8_starts_keyframe(&p));
    }

    #[test]
    fn vp8_keyframe_detection() {
        let t = tag(TrackKind::Video);
        let key = Vp8Position {
            first: true,
            keyframe: true,
            picture_id: 300,
        };
        let p = vp8_packet(900, key, &t);
        assert_eq!(p.len(), 900);
        assert!(vp8_starts_keyframe(&p));
        assert_eq!(&p[7..10], &[0x9d, 0x01, 0x2a]);
        assert_eq!(Tag::from_payload(&p), Some(t));

        let delta = Vp8Position {
            keyframe: false,
            ..key
        };
        assert!(!vp8_starts_keyframe(&vp8_packet(900, delta, &t)));
        let middle = Vp8Position {
            first: false,
            ..key
        };
        assert!(!vp8_starts_keyframe(&vp8_packet(900, middle, &t)));
    }

    #[test]
    fn vp8_keyframe_detection_with_short_picture_id_and_tl0() {
        // X, S; I and L; 7-bit picture id; TL0PICIDX; then a key frame tag.
        let p = [0x90, 0xc0, 0x05, 0x01, 0x10, 0x02, 0x00];
        assert!(vp8_starts_keyframe(&p));
        // Without the descriptor extension at all.
        assert!(vp8_starts_keyframe(&[0x10, 0x10]));
        assert!(!vp8_starts_keyframe(&[0x10, 0x11]));
        assert!(!vp8_starts_keyframe(&[]));
        assert!(!vp8_starts_keyframe(&[0x90, 0x80]));
    }

    #[test]
    fn tag_carries_the_simulcast_layer() {
        let t = Tag {
            layer: 2,
            ..tag(TrackKind::Video)
        };
        let p = opus_packet(40, &t);
        assert_eq!(Tag::from_payload(&p), Some(t));
    }

    #[test]
    fn reads_the_size_of_a_keyframe() {
        let key = Vp8Position {
            first: true,
            keyframe: true,
            picture_id: 300,
        };
        let p = vp8_packet(900, key, &tag(TrackKind::Video));
        assert_eq!(vp8_keyframe_size(&p), Some(KEYFRAME_SIZE));
        let delta = Vp8Position {
            keyframe: false,
            ..key
        };
        assert_eq!(
            vp8_keyframe_size(&vp8_packet(900, delta, &tag(TrackKind::Video))),
            None
        );
        assert_eq!(vp8_keyframe_size(&p[..8]), None);
    }

    #[test]
    fn rejects_payload_without_tag() {
        assert_eq!(Tag::from_payload(&[0; 40]), None);
        assert_eq!(Tag::from_payload(&[0; 3]), None);
    }
}

//! One subscriber's subscription to one published track: the rewriting that makes whatever
//! the SFU forwards on it look like one continuous stream to the subscriber's browser.
//!
//! A subscription's source changes under it — the publisher's SSRC changes when its
//! browser restarts a track, and (with simulcast) the SFU switches between layers, which
//! are separate RTP streams with their own sequence numbers, timestamps and VP8 picture
//! ids. The subscriber must see none of that: sequence numbers without jumps (or it NACKs
//! thousands of packets), timestamps that keep advancing with real time (or its jitter
//! buffer stalls), and VP8 picture ids / TL0PICIDX that continue (or its decoder thinks
//! frames were lost). [`Munger`] does that rewriting, and its state can be exported and
//! seeded ([`MungerState`]) so a subscription can move — to another layer, another shard or
//! another server — and continue where it left off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use str0m::Rtc;
use str0m::media::{Mid, Pt};
use str0m::rtp::{
    ExtensionValues, RedDecoder, RedEncoder, RedundantBlock, RtpPacket, RtpWrite, Ssrc,
    Vp8Descriptor, Vp8Patch, Vp8PatchError,
};
use veche_proto::TrackKind;

use crate::simulcast::{Keyframe, Layer, LayerChoice, TemporalChoice};

/// What the client renders a subscription's video in, from its `video_sizes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    /// The client never reported sizes: everything is wanted at full size.
    Unreported,
    /// Not rendered (not listed, or 0×0): the subscription is paused.
    Hidden,
    /// Rendered this many device pixels wide and high.
    Size { width: u32, height: u32 },
}

/// One incoming packet as every subscription sees it: parsed once, forwarded to many.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    pub(crate) rtp: &'a RtpPacket,
    /// The VP8 payload descriptor, when the packet is VP8.
    pub(crate) vp8: Option<&'a Vp8Descriptor>,
    /// The simulcast layer it belongs to (0 without simulcast).
    pub(crate) layer: Layer,
    pub(crate) keyframe: Keyframe,
    /// Its VP8 temporal layer, when the stream has them, and whether it starts a frame.
    pub(crate) tid: Option<u8>,
    pub(crate) frame_start: bool,
    /// The track has one layer only (no simulcast, or audio).
    pub(crate) single_layer: bool,
    pub(crate) ext_vals: &'a ExtensionValues,
}

/// One subscriber's subscription to one published track: what it forwards and how it
/// rewrites it. The subscriber's `Rtc` and the m-line it sends on are the caller's
/// ([`crate::participant::Participant`] negotiates those); a subscription only writes into
/// the send stream of that m-line.
#[derive(Debug)]
pub(crate) struct Subscription {
    kind: TrackKind,
    munger: Munger,
    /// The SSRC of the send stream str0m made for the m-line, once looked up: str0m finds a
    /// stream by mid with a scan of all the `Rtc`'s streams, by SSRC with a hash lookup.
    tx_ssrc: Option<Ssrc>,
    /// The layer forwarded and the one wanted (see [`LayerChoice`]).
    pub(crate) choice: LayerChoice,
    /// The temporal layers of it sent (see [`TemporalChoice`]).
    pub(crate) temporal: TemporalChoice,
    /// What the client renders it in.
    pub(crate) tile: Tile,
    /// Bits per second the allocator gave it (the measured rate of its target layer).
    pub(crate) allocated: u64,
    /// When the estimate last kept it from a higher layer (see `allocator.rs`).
    pub(crate) limited_at: Option<Instant>,
    /// Redundant audio towards a lossy subscriber (audio subscriptions only).
    red: Redundancy,
}

impl Subscription {
    pub(crate) fn new(kind: TrackKind) -> Subscription {
        let clock_rate = if kind.is_video() { 90_000 } else { 48_000 };
        Subscription {
            kind,
            munger: Munger::new(clock_rate),
            tx_ssrc: None,
            // Audio flows from the start; video waits for the allocator to choose a layer.
            choice: if kind.is_video() {
                LayerChoice::default()
            } else {
                LayerChoice::open()
            },
            temporal: TemporalChoice::default(),
            tile: Tile::Unreported,
            allocated: 0,
            limited_at: None,
            red: Redundancy::default(),
        }
    }

    /// Forgets the cached send stream (a negotiation may have replaced it), and with it what
    /// the subscriber's answer said of redundant audio.
    pub(crate) fn forget_stream(&mut self) {
        self.tx_ssrc = None;
        self.red.looked_up = false;
    }

    /// Writes the publisher's packet to this subscription's send stream on `mid` of `rtc`,
    /// rewritten for this subscriber, if it is of the layer forwarded (switching layers at a
    /// keyframe of the target). Audio carries the `red_levels` packets before it as well
    /// (RFC 2198) when the subscriber negotiated that. Returns false when it is not forwarded:
    /// another layer, paused, the stream is not there (yet) or the packet cannot be numbered.
    /// O(1) in the number of the `Rtc`'s streams: it runs once per forwarded packet and
    /// subscriber.
    pub(crate) fn forward(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        p: &Packet<'_>,
        red_levels: usize,
    ) -> bool {
        let first_start_any = p.single_layer && self.munger.state.last_seq.is_none();
        let was = self.choice.current;
        if !self.choice.admit(p.layer, p.keyframe, first_start_any) {
            return false;
        }
        if was != self.choice.current {
            tracing::debug!(?mid, from = ?was, to = ?self.choice.current, "layer switched");
        }
        let packet = p.rtp;
        if !self.temporal.admit(p.tid, p.frame_start) {
            self.munger.skip(Incoming::of(packet), p.vp8);
            return false;
        }
        let Some(out) = self.munger.map(Incoming::of(packet), p.vp8) else {
            return false;
        };
        if red_levels > 0 && self.kind == TrackKind::Audio && !self.red.looked_up {
            self.red.pt = negotiated_red(rtc, packet.header.payload_type);
            self.red.looked_up = true;
            tracing::debug!(?mid, red = ?self.red.pt, "redundant audio on");
        }
        let mut api = rtc.direct_api();
        if self.tx_ssrc.is_none() {
            self.tx_ssrc = api.stream_tx_by_mid(mid, None).map(|tx| {
                // Forwarded media is already paced by its publisher, and the allocator keeps
                // it under the estimate; a pacer queue here would only delay a step down by
                // the old layer's queued packets.
                tx.set_unpaced(true);
                let ssrc = tx.ssrc();
                tracing::debug!(?mid, ?ssrc, "send stream looked up");
                ssrc
            });
        }
        let Some(tx) = self.tx_ssrc.and_then(|ssrc| api.stream_tx(&ssrc)) else {
            self.tx_ssrc = None;
            return false;
        };
        // Every m-line is offered by us with one codec configuration, so the payload type
        // the publisher uses means the same codec to every subscriber.
        let (pt, payload) = if self.kind == TrackKind::Audio {
            self.red.wrap(
                red_levels,
                packet.header.payload_type,
                out.seq,
                out.time,
                &packet.payload,
            )
        } else {
            (packet.header.payload_type, packet.payload.clone())
        };
        let mut write = RtpWrite::new(pt, out.seq.into(), out.time, packet.timestamp, payload)
            .marker(packet.header.marker)
            .ext_vals(p.ext_vals.clone())
            .nackable(self.kind.is_video());
        if let Some(patch) = out.vp8 {
            write = write.vp8_patch(patch);
        }
        tx.write_rtp(write);
        true
    }
}

/// The most earlier packets one redundant audio packet carries.
pub(crate) const MAX_RED_LEVELS: usize = 2;

/// Redundant audio (RFC 2198 RED) on one audio subscription. Audio is not retransmitted (a
/// retransmission would come after the jitter buffer gave up on it), so a subscriber whose
/// link loses packets hears every loss as a gap the decoder fills in. With redundancy each
/// packet also carries the one or two before it: a lost packet is rebuilt from the next one,
/// 20 ms later. The publisher's Opus in-band FEC does not help here, because its encoder
/// turns it on from the loss it sees on its own link. Costs one or two more Opus payloads
/// per packet, towards this subscriber only.
#[derive(Debug, Default)]
struct Redundancy {
    /// The RED payload type the subscriber's answer accepted on this m-line (`None`: not
    /// negotiated; nothing is wrapped), looked up when redundancy turns on.
    pt: Option<Pt>,
    looked_up: bool,
    /// The packets last sent, oldest first: extended sequence number, RTP timestamp and
    /// payload. Kept only while redundancy is on; their buffers are reused.
    history: VecDeque<(u64, u32, Vec<u8>)>,
    /// Blocks handed to the encoder, reused between packets (their payloads are borrowed
    /// from `history` and given back).
    blocks: Vec<RedundantBlock>,
}

impl Redundancy {
    /// The payload type and payload to send for the Opus packet numbered `seq`, `time` on
    /// the subscriber's stream: wrapped with up to `levels` earlier packets, or as it is.
    /// Sent as it is, the payload is shared with the other subscriptions; wrapped, it is
    /// one allocation per packet, towards a lossy subscriber only.
    fn wrap(
        &mut self,
        levels: usize,
        primary: Pt,
        seq: u64,
        time: u32,
        payload: &Arc<[u8]>,
    ) -> (Pt, Arc<[u8]>) {
        let levels = levels.min(MAX_RED_LEVELS);
        if levels == 0 {
            self.looked_up = false;
        }
        let Some(red_pt) = self.pt.filter(|_| levels > 0) else {
            self.history.clear();
            return (primary, payload.clone());
        };
        // Only the packets just before this one: after a gap (a lost packet of the
        // publisher's, silence) an older packet would rebuild nothing the receiver misses.
        let recent = |s: u64| s < seq && seq - s <= levels as u64;
        self.blocks.clear();
        for (s, t, p) in self.history.iter_mut() {
            if recent(*s) {
                self.blocks.push(RedundantBlock {
                    pt: *primary,
                    timestamp_offset: time.wrapping_sub(*t),
                    payload: std::mem::take(p),
                });
            }
        }
        // Blocks too far back in time or too long for RED's fields are left out by it.
        let wrapped = RedEncoder::encode(*primary, payload, &self.blocks);
        let mut blocks = self.blocks.drain(..);
        for (s, _, p) in self.history.iter_mut() {
            if recent(*s)
                && let Some(b) = blocks.next()
            {
                *p = b.payload;
            }
        }
        drop(blocks);
        let mut buf = if self.history.len() >= MAX_RED_LEVELS {
            self.history
                .pop_front()
                .map(|(_, _, b)| b)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.clear();
        buf.extend_from_slice(payload);
        self.history.push_back((seq, time, buf));
        (red_pt, wrapped.into())
    }
}

/// Turns an audio packet a publisher sent wrapped in RED (RFC 2198; Chromium sends it
/// whenever it is negotiated, and it is, for the subscribers' sake) into its primary Opus
/// packet, which is what every subscription forwards (and wraps again towards lossy
/// subscribers, with what they lose). Packets on other payload types are left alone.
/// `Err` for a RED payload that does not parse, or whose primary is not a payload type of
/// ours: such a packet is dropped.
pub(crate) fn unwrap_red(rtc: &Rtc, packet: &mut RtpPacket) -> Result<(), &'static str> {
    let pt = packet.header.payload_type;
    let params = rtc.codec_config().params();
    if !params.iter().any(|p| p.red() == Some(pt)) {
        return Ok(());
    }
    let blocks = RedDecoder::decode(&packet.payload).map_err(|_| "malformed RED payload")?;
    let primary = blocks
        .last()
        .filter(|b| b.is_primary)
        .ok_or("RED payload without primary")?;
    let primary_pt = Pt::from(primary.pt);
    if !params
        .iter()
        .any(|p| p.pt() == primary_pt && p.red() == Some(pt))
    {
        return Err("RED primary of another payload type");
    }
    let payload: Arc<[u8]> = primary.payload.into();
    packet.header.payload_type = primary_pt;
    packet.payload = payload;
    Ok(())
}

/// The RED payload type wrapping `primary` that the subscriber accepted. Negotiation leaves
/// in the `Rtc`'s codec configuration what the answer kept (str0m checks each packet sent
/// against it): a browser that answered without RED has none there.
fn negotiated_red(rtc: &Rtc, primary: Pt) -> Option<Pt> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.pt() == primary)?
        .red()
}

/// Outgoing sequence numbers of a new subscription start here rather than 0, leaving room
/// for packets of the first frame that arrive slightly out of order.
const FIRST_SEQ: u64 = 1000;

/// The numbers of an incoming packet that rewriting looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming {
    pub(crate) ssrc: Ssrc,
    /// Extended sequence number (str0m's, rollover-free).
    pub(crate) seq: u64,
    pub(crate) time: u32,
    /// When the SFU received it.
    pub(crate) arrival: Instant,
}

impl Incoming {
    pub(crate) fn of(packet: &RtpPacket) -> Incoming {
        Incoming {
            ssrc: packet.header.ssrc,
            seq: *packet.seq_no,
            time: packet.header.timestamp,
            arrival: packet.timestamp,
        }
    }
}

/// What a forwarded packet becomes on one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Munged {
    /// Extended sequence number on the subscriber's stream.
    pub(crate) seq: u64,
    /// RTP timestamp on the subscriber's stream.
    pub(crate) time: u32,
    /// VP8 payload-descriptor rewrite, when the ids must change.
    pub(crate) vp8: Option<Vp8Patch>,
}

/// Where a subscription's outgoing stream stands: enough to continue it seamlessly from
/// another source, in another [`Munger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MungerState {
    /// Highest extended sequence number sent; `None` before the first packet.
    pub last_seq: Option<u64>,
    /// RTP timestamp of the latest packet sent.
    pub last_time: u32,
    /// VP8 picture id (15 bits) and TL0PICIDX of the latest packet sent, when it had them.
    pub last_picture_id: Option<u16>,
    pub last_tl0: Option<u8>,
    /// When the latest packet sent arrived (this process's clock: a move to another
    /// server translates it), to advance timestamps by the time that passed.
    pub last_arrival: Option<Instant>,
}

/// The source a subscription currently forwards, and how its numbers map onto ours.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: Ssrc,
    seq_in: u64,
    seq_out: u64,
    /// Added (wrapping) to the source's timestamps, picture ids and TL0PICIDX.
    time_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
    /// The newest packet of it left out ([`Munger::skip`]), and the picture id of the frame
    /// it belonged to.
    skipped: Option<(u64, Option<u16>)>,
}

/// Sequence number, timestamp and VP8 id rewriting for one subscription.
#[derive(Debug)]
pub(crate) struct Munger {
    /// RTP clock rate of the track (48 kHz Opus, 90 kHz video).
    clock_rate: u32,
    source: Option<Source>,
    state: MungerState,
}

impl Munger {
    pub(crate) fn new(clock_rate: u32) -> Munger {
        Munger::seeded(clock_rate, MungerState::default())
    }

    /// A munger that continues a stream another munger sent (see [`Munger::state`]).
    pub(crate) fn seeded(clock_rate: u32, state: MungerState) -> Munger {
        Munger {
            clock_rate,
            source: None,
            state,
        }
    }

    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the export half of moving a subscription; layer switches and hand-over between shards use it next"
        )
    )]
    pub(crate) fn state(&self) -> MungerState {
        self.state
    }

    /// Whether `ssrc` is the source being forwarded now.
    pub(crate) fn is_source(&self, ssrc: Ssrc) -> bool {
        self.source.is_some_and(|s| s.ssrc == ssrc)
    }

    /// Rewrites `packet` for this subscription, switching to its stream if it is a new one.
    /// The caller decides which stream it forwards (and so when a switch happens: for video,
    /// on a keyframe of the new stream); a packet of the previous stream after a switch would
    /// switch back. `None` for a
    /// packet older than the first one forwarded from its source (it cannot be numbered
    /// without going back).
    pub(crate) fn map(&mut self, packet: Incoming, vp8: Option<&Vp8Descriptor>) -> Option<Munged> {
        let Incoming {
            ssrc,
            seq,
            time,
            arrival,
        } = packet;
        if !self.is_source(ssrc) {
            self.switch_to(ssrc, seq, time, arrival, vp8);
        }
        // Just set if it was not already.
        let src = self.source?;
        if src.skipped.is_some_and(|(s, _)| seq < s) {
            // Older than a packet left out: its number would be taken by a later one.
            return None;
        }
        let out_seq = (seq.checked_sub(src.seq_in)? + src.seq_out).max(src.seq_out);
        let out_time = time.wrapping_add(src.time_offset);
        let patch = vp8.and_then(|d| self.vp8_patch(d, src));
        if self.state.last_seq.is_none_or(|last| out_seq > last) {
            self.state.last_seq = Some(out_seq);
            self.state.last_time = out_time;
            self.state.last_arrival = Some(arrival);
            if let Some(d) = vp8 {
                self.state.last_picture_id = d
                    .picture_id()
                    .map(|p| p.wrapping_add(src.picture_id_offset) & 0x7fff);
                self.state.last_tl0 = d.tl0_pic_idx().map(|t| t.wrapping_add(src.tl0_offset));
            }
        }
        Some(Munged {
            seq: out_seq,
            time: out_time,
            vp8: patch,
        })
    }

    /// Leaves `packet` of the current source out of the stream (a temporal layer the
    /// subscriber does not get): the packets after it are numbered as if it never was, and a
    /// frame left out no longer counts in the picture ids, so the receiver sees no hole to ask
    /// for. A packet older than one left out can no longer be numbered (`map` refuses it).
    pub(crate) fn skip(&mut self, packet: Incoming, vp8: Option<&Vp8Descriptor>) {
        let Some(src) = self.source.as_mut() else {
            return;
        };
        if src.ssrc != packet.ssrc
            || packet.seq < src.seq_in
            || src.skipped.is_some_and(|(s, _)| packet.seq <= s)
        {
            return;
        }
        src.seq_in += 1;
        let picture_id = vp8.and_then(|d| d.picture_id());
        let new_frame = src.skipped.is_none_or(|(_, p)| p != picture_id);
        if picture_id.is_some() && new_frame {
            src.picture_id_offset = src.picture_id_offset.wrapping_add(0x7fff) & 0x7fff;
        }
        src.skipped = Some((packet.seq, picture_id));
    }

    /// Starts forwarding a new source: its first packet follows the last one sent, in
    /// sequence, in time (by how long ago that was) and in VP8 picture ids.
    fn switch_to(
        &mut self,
        ssrc: Ssrc,
        seq: u64,
        time: u32,
        arrival: Instant,
        vp8: Option<&Vp8Descriptor>,
    ) {
        let Some(last_seq) = self.state.last_seq else {
            // The very first source is forwarded with its own timestamps and ids: nothing
            // to continue yet, and unpatched payloads cost nothing.
            self.source = Some(Source {
                ssrc,
                seq_in: seq,
                seq_out: FIRST_SEQ,
                time_offset: 0,
                picture_id_offset: 0,
                tl0_offset: 0,
                skipped: None,
            });
            return;
        };
        let elapsed = self.state.last_arrival.map_or(0, |t| {
            arrival.saturating_duration_since(t).as_micros() as u64
        });
        // At least one tick, so the new source's first frame is not taken for the old one's.
        let ticks = (elapsed * u64::from(self.clock_rate) / 1_000_000).max(1) as u32;
        let want_time = self.state.last_time.wrapping_add(ticks);
        let (picture_id_offset, tl0_offset) = match vp8 {
            Some(d) => (
                match (self.state.last_picture_id, d.picture_id()) {
                    (Some(last), Some(first)) => last.wrapping_add(1).wrapping_sub(first) & 0x7fff,
                    _ => 0,
                },
                match (self.state.last_tl0, d.tl0_pic_idx()) {
                    (Some(last), Some(first)) => last.wrapping_add(1).wrapping_sub(first),
                    _ => 0,
                },
            ),
            None => (0, 0),
        };
        self.source = Some(Source {
            ssrc,
            seq_in: seq,
            seq_out: last_seq + 1,
            time_offset: want_time.wrapping_sub(time),
            picture_id_offset,
            tl0_offset,
            skipped: None,
        });
    }

    fn vp8_patch(&self, d: &Vp8Descriptor, src: Source) -> Option<Vp8Patch> {
        if src.picture_id_offset == 0 && src.tl0_offset == 0 {
            return None;
        }
        let build = |mask: u16| {
            let mut b = d.patch();
            if let Some(p) = d.picture_id() {
                b = b.picture_id(p.wrapping_add(src.picture_id_offset) & mask);
            }
            if let Some(t) = d.tl0_pic_idx() {
                b = b.tl0_pic_idx(t.wrapping_add(src.tl0_offset));
            }
            b.build()
        };
        // A 7-bit picture id keeps its width (the patch never changes payload length).
        match build(0x7fff) {
            Err(Vp8PatchError::PictureIdTooLarge) => build(0x7f).ok(),
            other => other.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type RedSent = (Pt, Vec<(u32, Vec<u8>)>);

    /// Sends Opus packets `seqs` (20 ms apart) through `red` at `levels`; returns what each
    /// became, decoded: (payload type, [(timestamp offset, payload)] oldest first).
    fn send_red(red: &mut Redundancy, levels: usize, seqs: &[u64]) -> Vec<RedSent> {
        use str0m::rtp::RedDecoder;
        seqs.iter()
            .map(|&seq| {
                let payload: Arc<[u8]> = vec![seq as u8; 3 + seq as usize % 4].into();
                let (pt, out) = red.wrap(levels, Pt::from(111), seq, seq as u32 * 960, &payload);
                if *pt == 111 {
                    assert_eq!(out, payload, "unwrapped packets go out as they came");
                    return (pt, vec![(0, out.to_vec())]);
                }
                let blocks = RedDecoder::decode(&out).expect("a valid RED payload");
                assert!(blocks.iter().all(|b| b.pt == 111));
                (
                    pt,
                    blocks
                        .iter()
                        .map(|b| (b.timestamp_offset, b.payload.to_vec()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn redundancy_carries_the_packets_just_before() {
        let mut red = Redundancy {
            pt: Some(Pt::from(63)),
            ..Redundancy::default()
        };
        let sent = send_red(&mut red, 2, &[10, 11, 12, 13]);
        let p = |seq: u64| vec![seq as u8; 3 + seq as usize % 4];
        assert_eq!(sent[0], (Pt::from(63), vec![(0, p(10))]));
        assert_eq!(sent[1], (Pt::from(63), vec![(960, p(10)), (0, p(11))]));
        assert_eq!(
            sent[3],
            (Pt::from(63), vec![(1920, p(11)), (960, p(12)), (0, p(13))])
        );
        // One level: only the packet before. After a gap in the numbers, nothing older.
        let sent = send_red(&mut red, 1, &[14, 17, 18]);
        assert_eq!(sent[0], (Pt::from(63), vec![(960, p(13)), (0, p(14))]));
        assert_eq!(sent[1], (Pt::from(63), vec![(0, p(17))]));
        assert_eq!(sent[2], (Pt::from(63), vec![(960, p(17)), (0, p(18))]));
        // Off, or not negotiated: the packet as it came.
        assert_eq!(send_red(&mut red, 0, &[19])[0].0, Pt::from(111));
        let mut plain = Redundancy::default();
        assert_eq!(send_red(&mut plain, 2, &[20, 21])[1].0, Pt::from(111));
    }

    #[test]
    fn redundancy_follows_the_loss_with_hysteresis() {
        use crate::participant::red_levels;
        assert_eq!(red_levels(0.0, 0), 0);
        assert_eq!(
            red_levels(0.01, 0),
            0,
            "under the threshold it does not start"
        );
        assert_eq!(red_levels(0.03, 0), 1);
        assert_eq!(red_levels(0.12, 1), 2);
        assert_eq!(
            red_levels(0.01, 2),
            1,
            "between the thresholds it stays on, one level"
        );
        assert_eq!(red_levels(0.01, 1), 1);
        assert_eq!(red_levels(0.001, 1), 0);
    }

    fn packet(ssrc: u32, seq: u64, time: u32, arrival: Instant) -> Incoming {
        Incoming {
            ssrc: Ssrc::from(ssrc),
            seq,
            time,
            arrival,
        }
    }

    /// A VP8 payload with a 15-bit picture id and a TL0PICIDX (RFC 7741 §4.2).
    fn vp8_payload(picture_id: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90, // X, S
            0xe0, // I, L, T
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x00, // TID
            0x00,
        ]
    }

    #[test]
    fn frames_left_out_leave_no_hole_in_sequence_or_picture_ids() {
        let t = Instant::now();
        let mut m = Munger::new(90_000);
        // Frames of TIDs 0, 2, 1, 2, 0 with picture ids 100..=104, two packets each; TID 0
        // and 1 go out, TID 2 is left out.
        let mut out = Vec::new();
        for (i, tid) in [0u8, 2, 1, 2, 0].into_iter().enumerate() {
            let payload = vp8_payload(100 + i as u16, 9);
            let d = Vp8Descriptor::parse(&payload).unwrap();
            for k in 0..2 {
                let p = packet(1, 500 + 2 * i as u64 + k, 3000 * i as u32, t);
                if tid == 2 {
                    m.skip(p, Some(&d));
                } else {
                    let o = m.map(p, Some(&d)).unwrap();
                    // The picture id as rewritten (str0m applies the patch when it writes).
                    out.push((o.seq, m.state().last_picture_id.unwrap()));
                }
            }
        }
        assert_eq!(
            out,
            [
                (FIRST_SEQ, 100),
                (FIRST_SEQ + 1, 100),
                (FIRST_SEQ + 2, 101),
                (FIRST_SEQ + 3, 101),
                (FIRST_SEQ + 4, 102),
                (FIRST_SEQ + 5, 102),
            ]
        );
        // A late packet from before the last one left out cannot be numbered.
        assert_eq!(m.map(packet(1, 504, 6000, t), None), None);
    }

    #[test]
    fn the_temporal_cap_changes_at_a_base_layer_frame() {
        let mut c = TemporalChoice::default();
        assert!(c.admit(Some(2), true), "everything before a cap");
        c.target = Some(0);
        assert!(c.admit(Some(2), true), "not before the next base frame");
        assert!(c.admit(Some(0), true));
        assert!(!c.admit(Some(2), true));
        assert!(!c.admit(Some(1), false));
        c.target = None;
        assert!(!c.admit(Some(1), true), "up only at a base frame too");
        assert!(c.admit(Some(0), true));
        assert!(c.admit(Some(2), true));
        assert!(
            c.admit(None, true),
            "a stream without temporal layers goes whole"
        );
    }

    #[test]
    fn starts_low_and_keeps_gaps() {
        let t = Instant::now();
        let mut m = Munger::new(90_000);
        let seq = |m: &mut Munger, s| m.map(packet(1, s, 0, t), None).map(|o| o.seq);
        assert_eq!(seq(&mut m, 70_000), Some(FIRST_SEQ));
        assert_eq!(seq(&mut m, 70_001), Some(FIRST_SEQ + 1));
        assert_eq!(seq(&mut m, 70_005), Some(FIRST_SEQ + 5));
        // Reordered packet from before the first one forwarded.
        assert_eq!(seq(&mut m, 69_999), None);
        // Late but after the base: keeps its own number.
        assert_eq!(seq(&mut m, 70_003), Some(FIRST_SEQ + 3));
        assert_eq!(m.state().last_seq, Some(FIRST_SEQ + 5));
    }

    #[test]
    fn first_source_keeps_its_timestamps_and_ids() {
        let t = Instant::now();
        let mut m = Munger::new(90_000);
        let payload = vp8_payload(1234, 7);
        let d = Vp8Descriptor::parse(&payload).unwrap();
        let out = m.map(packet(1, 10, 555_000, t), Some(&d)).unwrap();
        assert_eq!(out.time, 555_000);
        assert_eq!(out.vp8, None);
    }

    #[test]
    fn a_new_source_continues_sequence_time_and_picture_ids() {
        let t0 = Instant::now();
        let mut m = Munger::new(90_000);
        let a = vp8_payload(30_000, 200);
        let da = Vp8Descriptor::parse(&a).unwrap();
        m.map(packet(1, 10, 1_000_000, t0), Some(&da)).unwrap();
        m.map(packet(1, 11, 1_000_000, t0), Some(&da)).unwrap();

        // 100 ms later, another stream (a simulcast layer, or a restarted track).
        let t1 = t0 + Duration::from_millis(100);
        let b = vp8_payload(5, 9);
        let db = Vp8Descriptor::parse(&b).unwrap();
        let out = m.map(packet(2, 40_000, 77, t1), Some(&db)).unwrap();
        assert_eq!(out.seq, FIRST_SEQ + 2);
        assert_eq!(out.time, 1_000_000 + 9_000);
        // str0m applies the patch when it writes the packet.
        assert!(out.vp8.is_some(), "ids must be rewritten");
        assert_eq!(m.state().last_picture_id, Some(30_001));
        assert_eq!(m.state().last_tl0, Some(201));

        // The new source's next frame moves on from there.
        let b2 = vp8_payload(6, 10);
        let db2 = Vp8Descriptor::parse(&b2).unwrap();
        let out = m.map(packet(2, 40_001, 77 + 3000, t1), Some(&db2)).unwrap();
        assert_eq!(out.seq, FIRST_SEQ + 3);
        assert_eq!(out.time, 1_000_000 + 9_000 + 3000);
        assert_eq!(m.state().last_picture_id, Some(30_002));
    }

    #[test]
    fn picture_ids_wrap_at_15_bits() {
        let t = Instant::now();
        let mut m = Munger::new(90_000);
        let a = vp8_payload(0x7fff, 0);
        m.map(packet(1, 1, 0, t), Some(&Vp8Descriptor::parse(&a).unwrap()));
        let b = vp8_payload(100, 0);
        m.map(packet(2, 1, 0, t), Some(&Vp8Descriptor::parse(&b).unwrap()));
        assert_eq!(m.state().last_picture_id, Some(0));
    }

    #[test]
    fn exported_state_continues_in_a_new_munger() {
        let t = Instant::now();
        let mut m = Munger::new(48_000);
        m.map(packet(1, 500, 48_000, t), None);
        m.map(packet(1, 501, 48_960, t), None);
        let mut moved = Munger::seeded(48_000, m.state());
        let out = moved
            .map(packet(1, 502, 49_920, t + Duration::from_millis(20)), None)
            .unwrap();
        assert_eq!(out.seq, FIRST_SEQ + 2);
        assert_eq!(out.time, 48_960 + 960);
    }
}

//! What one synthetic participant sent and received. Pure bookkeeping: time comes in as values.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use veche_proto::{ParticipantId, TrackKind};

use crate::clip::SIMULCAST_LAYERS;
use crate::histogram::Histogram;
use crate::payload::{Tag, vp8_keyframe_size, vp8_starts_keyframe};

/// Keyframe request times kept per participant; enough for tests, bounded for long load runs.
const MAX_KEYFRAME_REQUEST_TIMES: usize = 1024;

/// Missing sequence numbers remembered per track, so a late retransmission counts as a
/// recovery rather than a reorder. Older ones are forgotten (counted as lost for good).
const MAX_MISSING: usize = 1024;

/// A snapshot of everything one participant has counted so far.
#[derive(Debug, Clone)]
pub struct Stats {
    pub participant_id: ParticipantId,
    pub joined_at: Instant,
    /// When ICE and DTLS completed.
    pub connected_at: Option<Instant>,
    pub offers: u64,
    /// When each answer was sent, in order.
    pub answered_at: Vec<Instant>,
    pub sent: SentStats,
    /// Received media by its origin as named in the payload tag.
    pub received: HashMap<(ParticipantId, TrackKind), TrackStats>,
    /// RTP packets without a valid origin tag.
    pub untagged: u64,
    /// RTP packets on a mid no `track_published` had announced.
    pub unknown_mid: u64,
    /// Incoming RTP datagrams dropped to simulate loss.
    pub dropped_on_purpose: u64,
    /// Incoming datagrams the emulated downlink dropped (its queue was full).
    pub downlink_dropped: u64,
    /// The longest a datagram waited in the emulated downlink's queue.
    pub downlink_max_queue: Duration,
    /// One-way latency of every received tagged packet, send to receive, microseconds.
    pub latency_us: Histogram,
    /// NACKs this participant sent (for media it receives), from str0m's stats events (so
    /// up to a second behind).
    pub nacks_sent: u64,
    /// NACKs received for media this participant sends.
    pub nacks_received: u64,
    /// PLIs and FIRs this participant sent.
    pub keyframe_requests_sent: u64,
    /// Set when the participant's task has stopped, saying why.
    pub ended: Option<String>,
    /// The first RTP payloads of each remote track, when
    /// [`crate::ParticipantOptions::capture_payloads`] asks for them.
    pub captured: HashMap<(ParticipantId, TrackKind), Vec<CapturedPacket>>,
}

/// One RTP packet as it arrived, for looking at what the SFU forwards.
#[derive(Debug, Clone)]
pub struct CapturedPacket {
    /// The RTP marker bit: the last packet of a video frame.
    pub marker: bool,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct SentStats {
    pub audio_packets: u64,
    /// Camera packets.
    pub video_packets: u64,
    pub screen_packets: u64,
    /// Camera frames.
    pub video_frames: u64,
    /// Key frames, camera and screen.
    pub keyframes: u64,
    /// When PLI/FIR requests for our video arrived (the first 1024).
    pub keyframe_requests: Vec<Instant>,
    pub keyframe_request_count: u64,
}

/// Received packets of one remote track.
#[derive(Debug, Clone, Default)]
pub struct TrackStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets that start a VP8 key frame.
    pub keyframes: u64,
    pub first_at: Option<Instant>,
    /// When the first packet starting a key frame arrived: the picture could show from here.
    pub first_keyframe_at: Option<Instant>,
    pub last_at: Option<Instant>,
    /// Longest time between two consecutive packets: how long the track ever stalled.
    pub max_gap: Duration,
    /// RTP sequence number not above the previous one on the same SSRC, and not filling a
    /// gap: reordered or duplicated.
    pub seq_reorders: u64,
    /// Sequence numbers skipped when a later one arrived (lost, or not yet retransmitted).
    pub seq_gaps: u64,
    /// Late packets that filled one of those gaps (NACK and retransmission worked).
    pub recovered: u64,
    /// The sender's own counter went backwards or repeated.
    pub counter_reorders: u64,
    /// Sender counter values skipped.
    pub counter_gaps: u64,
    /// Packets that arrived on a mid `track_published` assigned to another track.
    pub mid_mismatches: u64,
    pub ssrc_changes: u64,
    pub latency_max_us: u64,
    pub latency_sum_us: u64,
    /// The simulcast layer of the latest packet, as its sender tagged it (0 the lowest; 0
    /// without simulcast).
    pub layer: u8,
    /// Packets and payload bytes received of each simulcast layer.
    pub layer_packets: [u64; SIMULCAST_LAYERS],
    pub layer_bytes: [u64; SIMULCAST_LAYERS],
    /// Times the layer changed from one packet to the next.
    pub layer_switches: u64,
    /// Width and height of the latest key frame received (VP8 key frames carry them).
    pub frame_size: Option<(u16, u16)>,
    last_ssrc: Option<u32>,
    last_seq: u64,
    last_counter: Option<u32>,
    /// Gaps not filled yet, oldest first.
    missing: VecDeque<u64>,
}

impl TrackStats {
    /// Any sign of reordering or misdelivery.
    pub fn disorder(&self) -> u64 {
        self.seq_reorders + self.counter_reorders + self.mid_mismatches
    }

    /// Packets skipped and never recovered (so far).
    pub fn lost(&self) -> u64 {
        self.seq_gaps - self.recovered
    }

    pub fn mean_latency_us(&self) -> u64 {
        self.latency_sum_us.checked_div(self.packets).unwrap_or(0)
    }
}

/// One received RTP packet as the bookkeeping needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received<'a> {
    pub(crate) ssrc: u32,
    /// Extended sequence number.
    pub(crate) seq: u64,
    /// Who `track_published` said owns the packet's mid.
    pub(crate) mid_owner: Option<(ParticipantId, TrackKind)>,
    pub(crate) payload: &'a [u8],
}

impl Stats {
    pub(crate) fn new(participant_id: ParticipantId, joined_at: Instant) -> Stats {
        Stats {
            participant_id,
            joined_at,
            connected_at: None,
            offers: 0,
            answered_at: Vec::new(),
            sent: SentStats::default(),
            received: HashMap::new(),
            untagged: 0,
            unknown_mid: 0,
            dropped_on_purpose: 0,
            downlink_dropped: 0,
            downlink_max_queue: Duration::ZERO,
            latency_us: Histogram::default(),
            nacks_sent: 0,
            nacks_received: 0,
            keyframe_requests_sent: 0,
            ended: None,
            captured: HashMap::new(),
        }
    }

    /// Received media from `origin` of `kind` (all zero if none arrived).
    pub fn from(&self, origin: ParticipantId, kind: TrackKind) -> TrackStats {
        self.received
            .get(&(origin, kind))
            .cloned()
            .unwrap_or_default()
    }

    /// Packets received from `origin` of `kind`.
    pub fn packets_from(&self, origin: ParticipantId, kind: TrackKind) -> u64 {
        self.received.get(&(origin, kind)).map_or(0, |t| t.packets)
    }

    /// Reorders and misdeliveries over all received tracks, plus untagged packets.
    pub fn disorder(&self) -> u64 {
        self.untagged
            + self
                .received
                .values()
                .map(TrackStats::disorder)
                .sum::<u64>()
    }

    pub(crate) fn record_keyframe_request(&mut self, now: Instant) {
        self.sent.keyframe_request_count += 1;
        if self.sent.keyframe_requests.len() < MAX_KEYFRAME_REQUEST_TIMES {
            self.sent.keyframe_requests.push(now);
        }
    }

    pub(crate) fn record_rtp(&mut self, now: Instant, now_us: u64, rtp: Received<'_>) {
        if rtp.mid_owner.is_none() {
            self.unknown_mid += 1;
        }
        let Some(tag) = Tag::from_payload(rtp.payload) else {
            self.untagged += 1;
            return;
        };
        let t = self.received.entry((tag.origin, tag.kind)).or_default();
        t.packets += 1;
        t.bytes += rtp.payload.len() as u64;
        t.first_at.get_or_insert(now);
        if let Some(last) = t.last_at {
            t.max_gap = t.max_gap.max(now.saturating_duration_since(last));
        }
        t.last_at = Some(now);
        if tag.kind.is_video() && vp8_starts_keyframe(rtp.payload) {
            t.keyframes += 1;
            t.first_keyframe_at.get_or_insert(now);
            t.frame_size = vp8_keyframe_size(rtp.payload).or(t.frame_size);
        }
        if t.packets > 1 && tag.layer != t.layer {
            t.layer_switches += 1;
            // Each layer counts its own packets: the new one's counter is not a gap.
            t.last_counter = None;
        }
        t.layer = tag.layer;
        if let Some(l) = Some(usize::from(tag.layer)).filter(|l| *l < SIMULCAST_LAYERS) {
            t.layer_packets[l] += 1;
            t.layer_bytes[l] += rtp.payload.len() as u64;
        }
        if rtp
            .mid_owner
            .is_some_and(|owner| owner != (tag.origin, tag.kind))
        {
            t.mid_mismatches += 1;
        }

        let mut recovery = false;
        if t.last_ssrc == Some(rtp.ssrc) {
            if rtp.seq > t.last_seq {
                let gap = rtp.seq - t.last_seq - 1;
                t.seq_gaps += gap;
                // A gap larger than what we remember is remembered only in part.
                let from = (t.last_seq + 1).max(rtp.seq.saturating_sub(MAX_MISSING as u64));
                for missing in from..rtp.seq {
                    if t.missing.len() == MAX_MISSING {
                        t.missing.pop_front();
                    }
                    t.missing.push_back(missing);
                }
                t.last_seq = rtp.seq;
            } else if let Some(i) = t.missing.iter().position(|m| *m == rtp.seq) {
                t.missing.remove(i);
                t.recovered += 1;
                recovery = true;
            } else {
                t.seq_reorders += 1;
            }
        } else {
            if t.last_ssrc.is_some() {
                t.ssrc_changes += 1;
            }
            t.last_ssrc = Some(rtp.ssrc);
            t.last_seq = rtp.seq;
            t.missing.clear();
        }

        // A recovered packet is legitimately behind the sender's counter.
        match t.last_counter {
            _ if recovery => {}
            Some(last) if tag.counter <= last => t.counter_reorders += 1,
            Some(last) => {
                t.counter_gaps += u64::from(tag.counter - last - 1);
                t.last_counter = Some(tag.counter);
            }
            None => t.last_counter = Some(tag.counter),
        }

        let latency = now_us.saturating_sub(tag.sent_at_us);
        t.latency_sum_us += latency;
        self.latency_us.record(latency);
        t.latency_max_us = t.latency_max_us.max(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::opus_packet;

    fn packet(origin: ParticipantId, counter: u32) -> Vec<u8> {
        layer_packet(origin, 0, counter)
    }

    fn layer_packet(origin: ParticipantId, layer: u8, counter: u32) -> Vec<u8> {
        let tag = Tag {
            origin,
            kind: TrackKind::Audio,
            layer,
            counter,
            sent_at_us: 1_000,
        };
        opus_packet(60, &tag)
    }

    fn record(stats: &mut Stats, ssrc: u32, seq: u64, owner: ParticipantId, payload: &[u8]) {
        let rtp = Received {
            ssrc,
            seq,
            mid_owner: Some((owner, TrackKind::Audio)),
            payload,
        };
        stats.record_rtp(Instant::now(), 1_500, rtp);
    }

    #[test]
    fn counts_in_order_packets() {
        let mut s = Stats::new(1, Instant::now());
        for i in 0..10 {
            record(&mut s, 5, 100 + i, 2, &packet(2, i as u32));
        }
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.packets, 10);
        assert_eq!(t.disorder(), 0);
        assert_eq!(t.seq_gaps, 0);
        assert_eq!(t.mean_latency_us(), 500);
        assert_eq!(s.disorder(), 0);
    }

    #[test]
    fn longest_gap_between_packets() {
        let mut s = Stats::new(1, Instant::now());
        let t0 = Instant::now();
        for (i, ms) in [0u64, 20, 40, 300, 320].into_iter().enumerate() {
            let payload = packet(2, i as u32);
            let rtp = Received {
                ssrc: 5,
                seq: i as u64,
                mid_owner: Some((2, TrackKind::Audio)),
                payload: &payload,
            };
            s.record_rtp(t0 + Duration::from_millis(ms), 0, rtp);
        }
        assert_eq!(
            s.from(2, TrackKind::Audio).max_gap,
            Duration::from_millis(260)
        );
    }

    #[test]
    fn detects_reordering_gaps_and_misdelivery() {
        let mut s = Stats::new(1, Instant::now());
        record(&mut s, 5, 10, 2, &packet(2, 0));
        record(&mut s, 5, 12, 2, &packet(2, 2));
        // Claimed by participant 3's mid, but tagged as 2's.
        record(&mut s, 5, 13, 3, &packet(2, 3));
        // Sent before 12 but arrives after it, without 11 ever arriving: reordered.
        record(&mut s, 5, 10, 2, &packet(2, 1));
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.seq_gaps, 1);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.seq_reorders, 1);
        assert_eq!(t.counter_gaps, 1);
        assert_eq!(t.counter_reorders, 1);
        assert_eq!(t.mid_mismatches, 1);
        assert_eq!(s.disorder(), 3);
    }

    #[test]
    fn late_packet_filling_a_gap_is_a_recovery() {
        let mut s = Stats::new(1, Instant::now());
        record(&mut s, 5, 10, 2, &packet(2, 0));
        record(&mut s, 5, 13, 2, &packet(2, 3));
        record(&mut s, 5, 12, 2, &packet(2, 2));
        // A duplicate of a recovered packet is not a second recovery.
        record(&mut s, 5, 12, 2, &packet(2, 2));
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.seq_gaps, 2);
        assert_eq!(t.recovered, 1);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.seq_reorders, 1);
        assert_eq!(t.counter_reorders, 1);
    }

    #[test]
    fn huge_gap_is_remembered_in_part() {
        let mut s = Stats::new(1, Instant::now());
        record(&mut s, 5, 1, 2, &packet(2, 0));
        record(&mut s, 5, 100_000, 2, &packet(2, 1));
        record(&mut s, 5, 99_999, 2, &packet(2, 2));
        record(&mut s, 5, 2, 2, &packet(2, 3));
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.seq_gaps, 99_998);
        assert_eq!(t.recovered, 1);
        assert_eq!(t.seq_reorders, 1);
    }

    #[test]
    fn new_ssrc_restarts_sequence_tracking() {
        let mut s = Stats::new(1, Instant::now());
        record(&mut s, 5, 1000, 2, &packet(2, 0));
        record(&mut s, 6, 3, 2, &packet(2, 1));
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.ssrc_changes, 1);
        assert_eq!(t.seq_reorders, 0);
    }

    #[test]
    fn counts_layers_and_restarts_counters_on_a_switch() {
        let mut s = Stats::new(1, Instant::now());
        let tagged = |layer, counter| layer_packet(2, layer, counter);
        record(&mut s, 5, 1, 2, &tagged(2, 500));
        record(&mut s, 5, 2, 2, &tagged(2, 501));
        // The SFU switched to layer 0, whose counter is elsewhere: no gap, no reorder.
        record(&mut s, 5, 3, 2, &tagged(0, 7));
        record(&mut s, 5, 4, 2, &tagged(0, 8));
        let t = s.from(2, TrackKind::Audio);
        assert_eq!(t.layer, 0);
        assert_eq!(t.layer_switches, 1);
        assert_eq!(t.layer_packets, [2, 0, 2]);
        assert_eq!(t.layer_bytes, [120, 0, 120]);
        assert_eq!(t.counter_gaps + t.counter_reorders, 0);
    }

    #[test]
    fn untagged_and_unknown_mid() {
        let mut s = Stats::new(1, Instant::now());
        let rtp = Received {
            ssrc: 1,
            seq: 1,
            mid_owner: None,
            payload: &[1, 2, 3],
        };
        s.record_rtp(Instant::now(), 0, rtp);
        assert_eq!(s.untagged, 1);
        assert_eq!(s.unknown_mid, 1);
        assert!(s.received.is_empty());
    }
}

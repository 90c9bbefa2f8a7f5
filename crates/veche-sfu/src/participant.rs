//! One participant: its str0m `Rtc`, the m-lines it has negotiated and what it publishes.

use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::Pt;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Rtc};
use veche_proto::{
    ConnectionQuality, ParticipantId, ParticipantInfo, Role, ServerMessage, TrackKind,
};

use crate::id_map::IdMap;
use crate::quality::LinkStats;
use crate::simulcast::{Dynacast, LAYERS, Layer, LayerChoice, PublishedLayers, RIDS, layer_of_rid};
use crate::subscription::{MAX_RED_LEVELS, Packet, Subscription, Tile};

/// What an m-line in a participant's peer connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The participant sends its own `TrackKind` to us here.
    Publish(TrackKind),
    /// We send another participant's track here.
    Subscribe(ParticipantId, TrackKind),
}

/// Where an m-line is in its offer/answer life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineState {
    /// Wanted, goes into the next offer.
    ToOpen,
    /// In the outstanding offer.
    Negotiating(Mid),
    /// In the outstanding offer, but no longer wanted: stop it once the answer lands.
    NegotiatingThenStop(Mid),
    /// Negotiated; media flows.
    Open(Mid),
    /// Goes into the next offer as stopped.
    ToStop(Mid),
    /// Stopped in the outstanding offer; forgotten once the answer lands.
    Stopping(Mid),
}

impl LineState {
    pub(crate) fn open_mid(self) -> Option<Mid> {
        match self {
            LineState::Open(mid) => Some(mid),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) purpose: Purpose,
    pub(crate) state: LineState,
    /// What a subscription line forwards and how (`None` on publish lines). Its cached
    /// send stream is forgotten whenever the lines change (see [`Participant::reindex`]).
    pub(crate) subscription: Option<Subscription>,
}

impl Line {
    fn new(purpose: Purpose) -> Line {
        let subscription = match purpose {
            Purpose::Publish(_) => None,
            Purpose::Subscribe(_, kind) => Some(Subscription::new(kind)),
        };
        Line {
            purpose,
            state: LineState::ToOpen,
            subscription,
        }
    }
}

/// Keyframe requests towards one of our publish slots, throttled per slot, not per layer.
///
/// N subscribers asking within the interval cost the publisher one keyframe, not N. And
/// libwebrtc (Chromium, Firefox) honours at most one keyframe request per video send stream
/// every 300 ms, for all its simulcast layers together (`EncoderRtcpFeedback`): a request for
/// another layer inside that window is silently dropped, so a subscriber resuming on the
/// lowest layer just after another switched to the top one would wait for the next retry.
/// Requests are therefore spaced by [`KEYFRAME_INTERVAL`] whatever their layer; layers asked
/// for inside the window wait their turn, lowest first (a resume or a step down is what
/// someone is waiting for).
#[derive(Debug, Default)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    /// Layers asked for inside the window, sent one per interval once it ends.
    deferred: [bool; LAYERS],
}

/// A little over libwebrtc's 300 ms, so that network jitter does not bring two requests
/// closer than that at the publisher.
pub(crate) const KEYFRAME_INTERVAL: Duration = Duration::from_millis(350);

impl KeyframeThrottle {
    /// Returns true if a request for `layer` should go out now; otherwise remembers it.
    pub(crate) fn request(&mut self, now: Instant, layer: Layer) -> bool {
        let i = (layer as usize).min(LAYERS - 1);
        match self.last_sent {
            Some(t) if now < t + KEYFRAME_INTERVAL => {
                self.deferred[i] = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred[i] = false;
                true
            }
        }
    }

    /// When a deferred request is due, if any.
    pub(crate) fn deferred_due(&self) -> Option<Instant> {
        match self.last_sent {
            Some(t) if self.deferred.contains(&true) => Some(t + KEYFRAME_INTERVAL),
            _ => None,
        }
    }

    /// The deferred layer to ask for now, if one is due; it counts as sent.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Layer> {
        if self.deferred_due().is_none_or(|due| now < due) {
            return None;
        }
        let i = self.deferred.iter().position(|d| *d)?;
        self.deferred[i] = false;
        self.last_sent = Some(now);
        Some(i as Layer)
    }
}

pub(crate) struct Participant {
    pub(crate) id: ParticipantId,
    room: u64,
    pub(crate) info: ParticipantInfo,
    pub(crate) rtc: Rtc,
    /// Our local ICE ufrag in this participant's session (unique among participants).
    pub(crate) ufrag: String,
    /// An ICE restart asked for (`ice_restart`), to go into the next offer.
    pub(crate) restart_wanted: bool,
    /// The local ufrag of the ICE restart in the outstanding offer; it replaces `ufrag` once
    /// the answer is accepted. Routed to this participant meanwhile, as the browser checks
    /// with it as soon as it has the offer.
    pub(crate) restart_ufrag: Option<String>,
    lines: Vec<Line>,
    /// Index into `lines` of the open line of each subscription: forwarding looks a
    /// subscription up once per packet and subscriber, and a scan of the lines would make that
    /// O(participants) (O(participants²) per packet in a meeting where everyone publishes).
    /// Rebuilt by [`Participant::reindex`] whenever `lines` changes.
    open_subscriptions: IdMap<(ParticipantId, TrackKind), usize>,
    pending: Option<SdpPendingOffer>,
    /// Slots whose first `set_media{enabled:true}` has been seen: other participants
    /// subscribe to them. Indexed like [`TrackKind::ALL`].
    pub(crate) published: [bool; 3],
    /// Keyframe requests towards each slot (all its layers together).
    pub(crate) keyframes: [KeyframeThrottle; 3],
    /// What arrives of each slot's layers (video slots only).
    pub(crate) layers: [PublishedLayers; 3],
    /// What the participant was told of its camera layers that nobody needs.
    pub(crate) dynacast: Dynacast,
    /// Incoming SSRC → publish slot and simulcast layer, learnt from the first packet of
    /// each stream.
    ssrc_slots: Vec<(Ssrc, TrackKind, Layer)>,
    /// The tile sizes the client last reported (`video_sizes`); `None` until it does.
    tiles: Option<Vec<((ParticipantId, TrackKind), Tile)>>,
    /// The bandwidth estimate towards this participant (str0m's TWCC-based one), bits per
    /// second; `None`: no limit known.
    pub(crate) estimate: Option<u64>,
    /// The estimator's own value at the latest stats event (`PeerStats::bwe_tx`), bits per
    /// second. str0m's estimate events carry a 3-second average of its values, which lags
    /// seconds behind when a link narrows; this one does not (see `allocator::allocate`).
    pub(crate) raw_estimate: Option<u64>,
    /// The rate its transport feedback acknowledged at the latest stats event
    /// (`PeerStats::bwe_acked_tx`, a vendored str0m addition), bits per second.
    pub(crate) delivered: Option<u64>,
    /// The last allocation held a step up back until the link delivers it
    /// (`allocator::Totals::unproven`).
    pub(crate) unproven: bool,
    /// What the server last saw of the link, and the grade last told to the room.
    pub(crate) link: LinkStats,
    pub(crate) quality: Option<ConnectionQuality>,
    /// How many earlier packets each audio packet sent to it carries (see
    /// [`red_levels`]; 0: none).
    pub(crate) red_levels: usize,
    /// The levels its loss asks for ([`red_levels`]); `red_levels` is at most this, and less
    /// when redundancy would take more than its share of the estimate
    /// (`Sfu::allocate`).
    pub(crate) red_wanted: usize,
    /// The round trip without queueing: the lowest of this window's and the last window's
    /// samples ([`RttFloor`]).
    pub(crate) rtt_floor: RttFloor,
    /// Its round trip is well over that floor: packets queue on the way to it, so its loss
    /// is its link's congestion rather than random (and more redundancy would only add to
    /// it).
    pub(crate) queueing: bool,
    /// When packets last queued towards it (see `queueing`).
    pub(crate) queued_at: Option<Instant>,
    /// What the bandwidth estimator was last told: (minimum, desired), bits per second.
    pub(crate) bwe_asked: (u64, u64),
    /// When str0m next wants `Input::Timeout`.
    pub(crate) next_timeout: Instant,
    pub(crate) joined_at: Instant,
    /// Sum and count of [`loudness`] over the current speaker window.
    pub(crate) loudness: (u32, u32),
    pub(crate) remote_candidates: usize,
    /// Already in the core's poll queue.
    pub(crate) queued_poll: bool,
    /// Per slot: a host muted this track; it is not forwarded until unmuted. The forwarding
    /// gate only: the meeting decides it (`Effect::Gate`).
    pub(crate) host_muted: [bool; 3],
    /// The payload types that mean VP8 (its packets carry picture ids to rewrite).
    vp8_pts: Vec<Pt>,
    /// The payload types that mean H.264 (for telling its keyframes).
    h264_pts: Vec<Pt>,
    /// The payload types that mean RED around one of our audio codecs.
    red_pts: Vec<Pt>,
}

/// Loss towards a subscriber (the fraction its receiver reports lost) at or above which its
/// audio carries one earlier packet, and two.
const RED_UP_LOSS: [f32; MAX_RED_LEVELS] = [0.02, 0.08];
/// Loss under which each level is given up again: between the two, what was chosen stays, so
/// a loss that hovers at a threshold (random loss reported each second does) does not switch
/// redundancy up and down with every report.
const RED_DOWN_LOSS: [f32; MAX_RED_LEVELS] = [0.005, 0.04];

/// How many earlier packets to send with each audio packet to a subscriber whose receiver
/// reports `loss` (0..1) of what we send lost, when it carries `current` now. One level turns
/// 5 % random loss into 0.25 % lost audio, two turn 10 % into 0.1 %, for one or two more
/// Opus payloads per packet.
pub(crate) fn red_levels(loss: f32, current: usize) -> usize {
    let up = RED_UP_LOSS.iter().filter(|&&t| loss >= t).count();
    let mut level = current.min(MAX_RED_LEVELS);
    while level > up && loss < RED_DOWN_LOSS[level - 1] {
        level -= 1;
    }
    level.max(up)
}

/// Adds `usedtx=1` to the format parameters of every Opus payload type in our SDP `offer`:
/// the browser's encoder then sends almost nothing while its microphone hears silence (Opus
/// DTX, RFC 7587 section 6.1; a packet every 400 ms instead of fifty a second), so the voices
/// of those who do not speak cost each subscriber little of its bandwidth. Receivers play
/// comfort noise in the gaps.
///
/// Done on the text because str0m 0.25 writes the `a=fmtp` of its codec config and offers no
/// way to have both `usedtx` and RED on Opus: `CodecConfig::add_config` takes the format
/// parameters but not a RED payload type (`set_red_pt` is private), `enable_opus` takes RED
/// but fixes the parameters. (Upstream: an `enable_opus` variant taking `FormatParams`.)
pub(crate) fn ask_for_dtx(offer: &str) -> String {
    let opus: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    let mut out = String::with_capacity(offer.len() + 16 * opus.len());
    for line in offer.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let is_opus_fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|l| l.split_once(' '))
            .is_some_and(|(pt, params)| opus.contains(&pt) && !params.contains("usedtx"));
        if is_opus_fmtp {
            out.push_str(body);
            out.push_str(";usedtx=1");
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// How loud one audio packet is, from its RFC 6464 level: 0 for silence (-127 dBov) up to 127
/// at full scale (0 dBov). str0m gives the level as the negative dBov value it stands for
/// (`-(byte & 0x7f)`: -30 means 30 dB below full scale).
pub(crate) fn loudness(level: i8) -> u32 {
    (127 + i32::from(level)).clamp(0, 127) as u32
}

pub(crate) fn slot(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
        TrackKind::Screen => 2,
    }
}

fn media_kind(kind: TrackKind) -> MediaKind {
    if kind.is_video() {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
        TrackKind::Screen => "screen",
    }
}

/// Why an answer was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    #[error("no offer is outstanding")]
    NoOffer,
    #[error("unparseable SDP answer: {0}")]
    Parse(String),
    #[error("SDP answer does not fit the offer: {0}")]
    Rejected(String),
}

impl Participant {
    pub(crate) fn new(
        id: ParticipantId,
        room: u64,
        name: String,
        mut rtc: Rtc,
        ufrag: String,
        candidates: &[Candidate],
        now: Instant,
    ) -> Participant {
        for c in candidates {
            rtc.add_local_candidate(c.clone());
        }
        let pts = |codec| {
            rtc.codec_config()
                .params()
                .iter()
                .filter(|p| p.spec().codec == codec)
                .map(|p| p.pt())
                .collect()
        };
        let vp8_pts = pts(Codec::Vp8);
        let h264_pts = pts(Codec::H264);
        let red_pts = rtc
            .codec_config()
            .params()
            .iter()
            .filter_map(|p| p.red())
            .collect();
        let lines = TrackKind::ALL
            .iter()
            .map(|&k| Line::new(Purpose::Publish(k)))
            .collect();
        Participant {
            id,
            room,
            info: ParticipantInfo {
                id,
                name,
                role: Role::Participant,
                audio: false,
                video: false,
                screen: false,
                hand_raised: false,
                e2ee: false,
            },
            rtc,
            ufrag,
            restart_wanted: false,
            restart_ufrag: None,
            lines,
            open_subscriptions: IdMap::default(),
            pending: None,
            published: [false; 3],
            keyframes: Default::default(),
            layers: Default::default(),
            dynacast: Dynacast::default(),
            ssrc_slots: Vec::new(),
            tiles: None,
            estimate: None,
            raw_estimate: None,
            delivered: None,
            unproven: false,
            bwe_asked: (0, 0),
            link: LinkStats::default(),
            quality: None,
            red_levels: 0,
            red_wanted: 0,
            rtt_floor: RttFloor::default(),
            queueing: false,
            queued_at: None,
            next_timeout: now,
            joined_at: now,
            loudness: (0, 0),
            remote_candidates: 0,
            queued_poll: false,
            host_muted: [false; 3],
            vp8_pts,
            h264_pts,
            red_pts,
        }
    }

    pub(crate) fn room_key(&self) -> u64 {
        self.room
    }

    pub(crate) fn subscribe(&mut self, publisher: ParticipantId, kind: TrackKind) {
        self.add_subscription(publisher, kind);
        self.reindex();
    }

    fn add_subscription(&mut self, publisher: ParticipantId, kind: TrackKind) {
        let purpose = Purpose::Subscribe(publisher, kind);
        // A track that comes back before its stop reached the client (a screen share
        // restarted on another window) keeps its m-line; one whose stop is already offered
        // gets a new m-line next to the stopping one.
        for line in self.lines.iter_mut().filter(|l| l.purpose == purpose) {
            match line.state {
                LineState::ToOpen | LineState::Negotiating(_) | LineState::Open(_) => return,
                LineState::NegotiatingThenStop(mid) => {
                    line.state = LineState::Negotiating(mid);
                    return;
                }
                LineState::ToStop(mid) => {
                    line.state = LineState::Open(mid);
                    return;
                }
                LineState::Stopping(_) => {}
            }
        }
        self.lines.push(Line::new(purpose));
    }

    /// Brings `open_subscriptions` in step with `lines`, and drops cached stream SSRCs (a
    /// negotiation may have replaced streams). Runs on (re)negotiation only, never per packet.
    fn reindex(&mut self) {
        self.open_subscriptions.clear();
        for (i, line) in self.lines.iter_mut().enumerate() {
            if let Some(sub) = &mut line.subscription {
                sub.forget_stream();
            }
            if let (Purpose::Subscribe(p, k), LineState::Open(_)) = (line.purpose, line.state) {
                self.open_subscriptions.insert((p, k), i);
            }
        }
        self.apply_tiles();
    }

    /// Stops subscriptions matching `pred`, whatever state their negotiation is in.
    pub(crate) fn unsubscribe(&mut self, pred: impl Fn(ParticipantId, TrackKind) -> bool) {
        self.lines.retain_mut(|line| {
            let Purpose::Subscribe(p, k) = line.purpose else {
                return true;
            };
            if !pred(p, k) {
                return true;
            }
            match line.state {
                // Never offered: just forget it.
                LineState::ToOpen => return false,
                LineState::Negotiating(mid) => line.state = LineState::NegotiatingThenStop(mid),
                LineState::Open(mid) => line.state = LineState::ToStop(mid),
                LineState::NegotiatingThenStop(_)
                | LineState::ToStop(_)
                | LineState::Stopping(_) => {}
            }
            true
        });
        self.reindex();
    }

    /// If no offer is outstanding and lines need (un)negotiating, creates the next offer.
    /// Returns the messages to send: `track_published`/`track_unpublished` first, then the
    /// offer, so the client can map each new transceiver as it appears.
    ///
    /// An ICE restart asked for goes into this offer, with a local ufrag for which `taken`
    /// is false; that ufrag is returned, to route the checks that name it here.
    pub(crate) fn negotiate(
        &mut self,
        out: &mut Vec<ServerMessage>,
        taken: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        if self.pending.is_some() {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        let mut restart_ufrag = None;
        if std::mem::take(&mut self.restart_wanted) {
            // Random 16-character ufrags: a clash is near impossible, but would misroute.
            loop {
                let creds = api.ice_restart(true);
                if !taken(&creds.ufrag) {
                    restart_ufrag = Some(creds.ufrag);
                    break;
                }
            }
        }
        for line in &mut self.lines {
            match (line.state, line.purpose) {
                (LineState::ToOpen, Purpose::Publish(kind)) => {
                    // The camera may come in simulcast layers; a screen share is one
                    // high-resolution stream.
                    let simulcast = (kind == TrackKind::Video).then(|| {
                        let mut s = Simulcast::new();
                        for rid in RIDS {
                            s.add_recv_layer(SimulcastLayer::new(rid));
                        }
                        s
                    });
                    let mid =
                        api.add_media(media_kind(kind), Direction::RecvOnly, None, None, simulcast);
                    line.state = LineState::Negotiating(mid);
                }
                (LineState::ToOpen, Purpose::Subscribe(publisher, kind)) => {
                    let mid = api.add_media(
                        media_kind(kind),
                        Direction::SendOnly,
                        Some(format!("p{publisher}")),
                        Some(format!("p{publisher}-{}", kind_name(kind))),
                        None,
                    );
                    line.state = LineState::Negotiating(mid);
                    out.push(ServerMessage::TrackPublished {
                        participant_id: publisher,
                        kind,
                        mid: mid.to_string(),
                    });
                }
                (LineState::ToStop(mid), purpose) => {
                    api.stop_media(mid);
                    line.state = LineState::Stopping(mid);
                    if let Purpose::Subscribe(publisher, kind) = purpose {
                        out.push(ServerMessage::TrackUnpublished {
                            participant_id: publisher,
                            kind,
                            mid: mid.to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        if !api.has_changes() {
            return None;
        }
        if let Some((offer, pending)) = api.apply() {
            self.pending = Some(pending);
            out.push(ServerMessage::Offer {
                sdp: ask_for_dtx(&offer.to_sdp_string()),
            });
            self.restart_ufrag.clone_from(&restart_ufrag);
            return restart_ufrag;
        }
        None
    }

    /// Applies the client's answer. On success returns the subscriptions that just opened
    /// (so their publishers can be asked for a keyframe).
    ///
    /// `retired` gets the local ufrag that no longer routes here: the one an accepted ICE
    /// restart replaced, or the restart's own if the answer was refused.
    pub(crate) fn accept_answer(
        &mut self,
        sdp: &str,
        opened: &mut Vec<(ParticipantId, TrackKind)>,
        retired: &mut Option<String>,
    ) -> Result<(), AnswerError> {
        if self.pending.is_none() {
            return Err(AnswerError::NoOffer);
        }
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| AnswerError::Parse(e.to_string()))?;
        // Checked above; the pending offer is consumed whatever the outcome.
        let pending = self.pending.take().expect("pending offer");
        let result = self.rtc.sdp_api().accept_answer(pending, answer);
        let ok = result.is_ok();
        if let Some(ufrag) = self.restart_ufrag.take() {
            if ok {
                *retired = Some(std::mem::replace(&mut self.ufrag, ufrag));
                self.remote_candidates = 0;
            } else {
                self.restart_wanted = true;
                *retired = Some(ufrag);
            }
        }
        self.lines.retain_mut(|line| {
            match line.state {
                LineState::Negotiating(mid) if ok => {
                    line.state = LineState::Open(mid);
                    if let Purpose::Subscribe(p, k) = line.purpose {
                        opened.push((p, k));
                    }
                }
                // A refused answer rolls the offer back (str0m applies nothing until the
                // answer is accepted), so the line is offered again under a new mid.
                LineState::Negotiating(_) => line.state = LineState::ToOpen,
                LineState::NegotiatingThenStop(mid) if ok => line.state = LineState::ToStop(mid),
                LineState::NegotiatingThenStop(_) => return false,
                LineState::Stopping(_) if ok => return false,
                LineState::Stopping(mid) => line.state = LineState::ToStop(mid),
                _ => {}
            }
            true
        });
        self.reindex();
        result.map_err(|e| AnswerError::Rejected(e.to_string()))
    }

    /// The publish slot and simulcast layer an incoming RTP stream belongs to.
    pub(crate) fn slot_of(&mut self, ssrc: Ssrc) -> Option<(TrackKind, Layer)> {
        if let Some(&(_, kind, layer)) = self.ssrc_slots.iter().find(|(s, _, _)| *s == ssrc) {
            return Some((kind, layer));
        }
        let mut api = self.rtc.direct_api();
        let rx = api.stream_rx(&ssrc)?;
        let mid = rx.mid();
        let rid = rx.rid();
        let layer = layer_of_rid(rid.as_deref())?;
        let kind = self.lines.iter().find_map(|l| match l.purpose {
            Purpose::Publish(k) if l.state.open_mid() == Some(mid) => Some(k),
            _ => None,
        })?;
        if rid.is_some() {
            self.layers[slot(kind)].simulcast = true;
        }
        self.ssrc_slots.push((ssrc, kind, layer));
        Some((kind, layer))
    }

    /// The RID of `layer` of our `kind` track, when it comes in simulcast layers.
    pub(crate) fn rid_of(&self, kind: TrackKind, layer: Layer) -> Option<&'static str> {
        self.layers[slot(kind)]
            .simulcast
            .then(|| RIDS.get(layer as usize).copied())
            .flatten()
    }

    /// Takes the client's report of what it renders remote video in: listed tracks at
    /// their size, every other one hidden.
    pub(crate) fn set_tiles(&mut self, tiles: Vec<((ParticipantId, TrackKind), Tile)>) {
        self.tiles = Some(tiles);
        self.apply_tiles();
    }

    /// Gives every subscription its tile from the latest report.
    fn apply_tiles(&mut self) {
        let Some(tiles) = &self.tiles else {
            return;
        };
        for line in &mut self.lines {
            let (Purpose::Subscribe(p, k), Some(sub)) = (line.purpose, &mut line.subscription)
            else {
                continue;
            };
            if !k.is_video() {
                continue;
            }
            sub.tile = tiles
                .iter()
                .find(|(key, _)| *key == (p, k))
                .map_or(Tile::Hidden, |(_, t)| *t);
        }
    }

    /// The open subscription to `publisher`'s `kind` track, if any.
    pub(crate) fn subscription(
        &self,
        publisher: ParticipantId,
        kind: TrackKind,
    ) -> Option<&Subscription> {
        let &i = self.open_subscriptions.get(&(publisher, kind))?;
        self.lines.get(i)?.subscription.as_ref()
    }

    /// The open subscriptions, with the publisher and kind of each, in line order.
    pub(crate) fn open_subscriptions(
        &self,
    ) -> impl Iterator<Item = (ParticipantId, TrackKind, &Subscription)> {
        self.lines
            .iter()
            .filter_map(|l| match (l.purpose, l.state) {
                (Purpose::Subscribe(p, k), LineState::Open(_)) => {
                    l.subscription.as_ref().map(|s| (p, k, s))
                }
                _ => None,
            })
    }

    /// [`Participant::open_subscriptions`], mutably, in the same order.
    pub(crate) fn open_subscriptions_mut(
        &mut self,
    ) -> impl Iterator<Item = (ParticipantId, TrackKind, &mut Subscription)> {
        self.lines
            .iter_mut()
            .filter_map(|l| match (l.purpose, l.state) {
                (Purpose::Subscribe(p, k), LineState::Open(_)) => {
                    l.subscription.as_mut().map(|s| (p, k, s))
                }
                _ => None,
            })
    }

    /// The subscription sent on `mid`, if any.
    pub(crate) fn subscription_on(
        &self,
        mid: Mid,
    ) -> Option<(ParticipantId, TrackKind, LayerChoice)> {
        self.lines.iter().find_map(|l| match l.purpose {
            Purpose::Subscribe(p, k) if l.state.open_mid() == Some(mid) => {
                let choice = l.subscription.as_ref().map(|s| s.choice)?;
                Some((p, k, choice))
            }
            _ => None,
        })
    }

    /// Writes `publisher`'s packet to our subscription of its `kind`, rewritten for us.
    /// Returns false when there is no such open subscription (yet) or the packet cannot be
    /// numbered. O(1) in the number of lines and streams: it runs once per forwarded packet
    /// and subscriber.
    pub(crate) fn forward(
        &mut self,
        publisher: ParticipantId,
        kind: TrackKind,
        packet: &Packet<'_>,
    ) -> bool {
        let Some(line) = self
            .open_subscriptions
            .get(&(publisher, kind))
            .and_then(|&i| self.lines.get_mut(i))
        else {
            return false;
        };
        let (Some(mid), Some(sub)) = (line.state.open_mid(), line.subscription.as_mut()) else {
            debug_assert!(
                false,
                "open_subscriptions names a line that is not an open subscription"
            );
            return false;
        };
        sub.forward(&mut self.rtc, mid, packet, self.red_levels)
    }

    /// Whether `pt` is VP8 in this participant's codec configuration (the same in every
    /// `Rtc` of this SFU).
    pub(crate) fn is_vp8(&self, pt: Pt) -> bool {
        self.vp8_pts.contains(&pt)
    }

    /// Whether `pt` is RED (RFC 2198) in this participant's codec configuration.
    pub(crate) fn is_red(&self, pt: Pt) -> bool {
        self.red_pts.contains(&pt)
    }

    /// Whether `pt` is H.264 in this participant's codec configuration.
    pub(crate) fn is_h264(&self, pt: Pt) -> bool {
        self.h264_pts.contains(&pt)
    }

    pub(crate) fn publish_mid(&self, kind: TrackKind) -> Option<Mid> {
        self.lines
            .iter()
            .find(|l| l.purpose == Purpose::Publish(kind))
            .and_then(|l| l.state.open_mid())
    }
}

#[cfg(test)]
mod tests {
    use super::{RttFloor, ask_for_dtx, loudness};
    use std::time::{Duration, Instant};

    #[test]
    fn the_offer_asks_for_opus_dtx_and_nothing_else_changes() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n\
            a=fmtp:63 111/111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=rtpmap:96 VP8/90000\r\na=fmtp:96 max-fr=30\r\n";
        let asked = ask_for_dtx(offer);
        assert_eq!(
            asked,
            offer.replace("useinbandfec=1\r\n", "useinbandfec=1;usedtx=1\r\n")
        );
        assert_eq!(ask_for_dtx(&asked), asked, "asked once");
        assert_eq!(ask_for_dtx("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn loudness_rises_with_the_level_str0m_reports() {
        assert_eq!(loudness(0), 127, "full scale");
        assert_eq!(loudness(-30), 97);
        assert_eq!(loudness(-127), 0, "silence");
        assert!(
            loudness(-20) > loudness(-50),
            "-20 dBov is louder than -50 dBov"
        );
        // Out of range either way stays in 0…127.
        assert_eq!(loudness(-128), 0);
        assert_eq!(loudness(5), 127);
    }

    #[test]
    fn queueing_is_a_round_trip_well_over_the_recent_floor() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut f = RttFloor::default();
        assert!(!f.sample(t, ms(20)));
        assert!(!f.sample(t + ms(500), ms(50)), "30 ms over: jitter");
        assert!(f.sample(t + ms(1000), ms(220)), "200 ms over: queueing");
        // Congestion for longer than a window does not raise the floor: the last window's
        // low holds it.
        for s in 1..=15 {
            assert!(f.sample(t + ms(1000) + ms(1000) * s, ms(230)));
        }
        // Once every sample of two windows is high, the floor follows (a longer path).
        for s in 16..=40 {
            f.sample(t + ms(1000) + ms(1000) * s, ms(230));
        }
        assert!(!f.sample(t + ms(42_000), ms(235)));
    }
}

/// How long one window of [`RttFloor`] lasts.
const RTT_FLOOR_WINDOW: Duration = Duration::from_secs(10);

/// How long a link that queued is still taken for a narrow one: redundant audio switched
/// back on as soon as the queue drained would fill it again.
pub(crate) const QUEUE_MEMORY: Duration = Duration::from_secs(10);

/// How long after packets last queued towards a subscriber its steps up must be proven
/// (`allocator::Link::delivered`): an estimate misled by a probe that fitted a narrow link's
/// burst allowance comes back whenever the estimator probes, long after the link last
/// queued (10 s was seen too short behind 300 kbit/s).
pub(crate) const PROOF_MEMORY: Duration = Duration::from_secs(60);

/// A round trip this much over the floor means packets are queueing on the way.
pub(crate) const QUEUEING_RTT: Duration = Duration::from_millis(40);

/// The lowest round trip seen over the last 10 to 20 seconds: two windows, the floor being
/// the lower of the two, so a sample from a congested moment ages out without the floor
/// ever following the congestion up.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RttFloor {
    current: Option<(Duration, Instant)>,
    previous: Option<Duration>,
}

impl RttFloor {
    /// Takes a sample; returns whether it is [`QUEUEING_RTT`] over the floor.
    pub(crate) fn sample(&mut self, now: Instant, rtt: Duration) -> bool {
        match self.current {
            Some((_, started)) if now.saturating_duration_since(started) >= RTT_FLOOR_WINDOW => {
                self.previous = self.current.map(|(m, _)| m);
                self.current = Some((rtt, now));
            }
            Some((m, started)) => self.current = Some((m.min(rtt), started)),
            None => self.current = Some((rtt, now)),
        }
        let floor = self
            .current
            .map(|(m, _)| m)
            .into_iter()
            .chain(self.previous)
            .min()
            .unwrap_or(rtt);
        rtt > floor + QUEUEING_RTT
    }
}

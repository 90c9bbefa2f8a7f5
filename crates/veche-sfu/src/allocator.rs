//! Sharing one subscriber's bandwidth estimate between the tracks it receives.
//!
//! A pure function of its inputs (time comes in as a value), run on the core's tick for
//! each subscriber. Audio is served first, whatever the estimate; then video in priority
//! order — screen shares, the active speaker, everyone else. Each video track is capped by
//! the tile the client renders it in (the smallest layer that covers the tile); a hidden
//! tile gets nothing. A track that arrives in one layer only is never paused for bandwidth:
//! there is nothing smaller to send. Every video track first gets the temporal base of its
//! lowest layer (or the whole layer when it has no temporal layers), in priority order, as
//! long as the budget lasts (a track that does not fit is paused, and resumes with a margin
//! to spare); then each its whole lowest layer; then, in the same order, each is raised as
//! far as its cap and the rest of the budget allow. The floors (voices and those temporal
//! bases) may take the whole estimate; everything above them leaves a margin for
//! retransmissions and bursts. What is given out never exceeds the estimate.
//!
//! Where the link queued lately, a step up must also be proven: the total with it must be
//! within what the subscriber's feedback shows the link delivering ([`Link::delivered`]),
//! which padding lets grow where there is room.
//!
//! One exception to "never more than the estimate": a camera already flowing at its floor
//! keeps it while the link carries what it is sent ([`Link::carried`]: no queueing, next to
//! no loss). After a burst of loss (a link that just narrowed) the estimator stays under
//! the real capacity for seconds, and pausing a camera then is no saving: resuming it costs
//! a keyframe of every layer its publisher sends, for every subscriber. Where the floor
//! itself is too much, packets queue or are lost, and the camera is paused.
//!
//! Going down happens at once (the switch itself waits for the lower layer's keyframe);
//! going up waits until the higher layer has fitted for [`UP_HOLD`], so an estimate that
//! wobbles around a layer's rate does not make the picture flip between sizes.

use std::time::{Duration, Instant};

use veche_proto::TrackKind;

use crate::simulcast::{LAYERS, Layer};
use crate::subscription::Tile;

/// How long a higher layer must have fitted before a track moves up to it.
pub(crate) const UP_HOLD: Duration = Duration::from_millis(1500);

/// How much more than its floor (in percent of it) a paused camera needs to resume. The
/// measured rates it is judged by wobble from one run to the next; without a margin a camera
/// at the edge of the budget is paused and resumed every few hundred milliseconds, and each
/// resume is a keyframe on all of its publisher's layers, for every subscriber.
pub(crate) const RESUME_SLACK_PERCENT: u64 = 15;

/// Loss towards the subscriber (a fraction, over the last second) under which its link is
/// taken to carry what it is sent, when it does not queue either ([`Link::carried`]).
pub(crate) const CARRIED_LOSS: f32 = 0.02;

/// The share of the estimate given to media; the rest is for retransmissions, RTCP and
/// packet headers.
const BUDGET_PERCENT: u64 = 90;

/// A layer is taken to cover a tile when it is at least this share (in percent) of the
/// tile's height and width: a 180p layer covers a 200-pixel-high tile.
const COVER_PERCENT: u64 = 90;

/// Rates assumed for a layer that arrives but has not been measured yet, bits per second:
/// the caps the browser client gives its layers (`CAMERA_LAYERS` in `web/js/session.js`).
const ASSUMED_VIDEO_BPS: [u64; LAYERS] = [90_000, 500_000, 1_500_000];
/// A voice as it costs the link: Opus at about 32 kbit/s and 50 packets a second of headers.
const ASSUMED_AUDIO_BPS: u64 = 58_000;
/// What each earlier packet carried as redundancy adds to a voice: its Opus payload again
/// and a 4-byte block header, 50 times a second.
const REDUNDANT_AUDIO_BPS: u64 = 34_000;

/// The least a voice is counted at: Opus DTX sends a packet every 400 ms in silence, and a
/// voice that starts to speak is measured at its new rate within a window or two.
const SILENT_AUDIO_BPS: u64 = 8_000;

/// What one voice costs a subscriber whose audio carries `red_levels` earlier packets
/// (`subscription::Redundancy`). `measured` is the voice's rate as it arrives (0 before a
/// measure): a voice in silence costs what it sends (Opus DTX), the active speaker's is
/// counted at least at the full rate of speech, so that the speaker's voice always fits.
/// Redundancy repeats the payload, so it costs in proportion.
pub(crate) fn audio_bps(red_levels: usize, measured: u64, speaking: bool) -> u64 {
    let voice = if speaking || measured == 0 {
        measured.max(ASSUMED_AUDIO_BPS)
    } else {
        measured.max(SILENT_AUDIO_BPS)
    };
    voice * (ASSUMED_AUDIO_BPS + REDUNDANT_AUDIO_BPS * red_levels as u64) / ASSUMED_AUDIO_BPS
}

/// Whether a picture of `width` × `height` covers `tile` (a hidden tile is covered by
/// anything, an unreported one by nothing).
pub(crate) fn covers(tile: Tile, width: u32, height: u32) -> bool {
    match tile {
        Tile::Hidden => true,
        Tile::Unreported => false,
        Tile::Size {
            width: w,
            height: h,
        } => {
            u64::from(height) * 100 >= u64::from(h) * COVER_PERCENT
                && u64::from(width) * 100 >= u64::from(w) * COVER_PERCENT
        }
    }
}

/// A layer a track can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerOffer {
    /// Its measured rate, bits per second (0: not measured yet).
    pub(crate) bitrate: u64,
    /// The measured rate of its temporal base layer alone (0: it has none, or not measured).
    pub(crate) base_bitrate: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// One track the subscriber receives, with what is known of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Track {
    pub(crate) kind: TrackKind,
    /// Its publisher is the active speaker.
    pub(crate) speaker: bool,
    pub(crate) tile: Tile,
    /// The layers arriving from the publisher (`None`: not arriving); audio and tracks
    /// without simulcast have layer 0 only.
    pub(crate) layers: [Option<LayerOffer>; LAYERS],
    /// The layer forwarded now.
    pub(crate) current: Option<Layer>,
    /// When the estimate last kept it from a higher layer than `current` (kept between
    /// runs by the caller).
    pub(crate) limited_at: Option<Instant>,
    /// The last run paused it (kept between runs by the caller): it resumes only with
    /// [`RESUME_SLACK_PERCENT`] of its floor to spare.
    pub(crate) paused: bool,
    /// Out: the layer to forward (`None`: paused) and the rate given to it.
    pub(crate) chosen: Option<Layer>,
    /// Out: the highest temporal layer of it to forward (`None`: all). Only the lowest
    /// layer is ever cut to its base, when whole it does not fit.
    pub(crate) temporal: Option<u8>,
    /// It is forwarded cut to its temporal base now (the last run's `temporal`, kept by the
    /// caller): back to the whole layer only after [`UP_HOLD`], like any step up.
    pub(crate) at_base: bool,
    pub(crate) bitrate: u64,
    /// Out: the rate the track would take at its tile's cap, whatever the estimate.
    pub(crate) wanted: u64,
}

impl Track {
    pub(crate) fn new(kind: TrackKind, tile: Tile, layers: [Option<LayerOffer>; LAYERS]) -> Track {
        Track {
            kind,
            speaker: false,
            tile,
            layers,
            current: None,
            limited_at: None,
            paused: false,
            chosen: None,
            temporal: None,
            at_base: false,
            bitrate: 0,
            wanted: 0,
        }
    }

    fn cost(&self, layer: Layer) -> u64 {
        let assumed = if self.kind.is_video() {
            ASSUMED_VIDEO_BPS[(layer as usize).min(LAYERS - 1)]
        } else {
            ASSUMED_AUDIO_BPS
        };
        match self.layers.get(layer as usize).copied().flatten() {
            Some(l) if l.bitrate > 0 => l.bitrate,
            _ => assumed,
        }
    }

    /// What it costs as it is forwarded now: the temporal base or the whole of its
    /// current layer (nothing while paused); a voice its rate.
    fn current_cost(&self) -> u64 {
        if !self.kind.is_video() {
            return self.layers[0].map_or(0, |_| self.cost(0));
        }
        let Some(layer) = self.current else {
            return 0;
        };
        let base = self.layers[(layer as usize).min(LAYERS - 1)].map_or(0, |o| o.base_bitrate);
        if self.at_base && base > 0 {
            base
        } else {
            self.cost(layer)
        }
    }

    /// How much giving it `cost` adds over what it is forwarded at now and what this run
    /// already gave it: what a step up must prove ([`Link::delivered`]).
    fn step_up(&self, cost: u64) -> u64 {
        cost.saturating_sub(self.current_cost().max(self.bitrate))
    }

    fn available(&self) -> impl Iterator<Item = (Layer, LayerOffer)> + '_ {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|l| (i as Layer, l)))
    }

    /// The highest layer worth sending for the tile: the smallest that covers it, or the
    /// largest there is. `None` when hidden or nothing arrives.
    fn cap(&self) -> Option<Layer> {
        if self.tile == Tile::Hidden {
            return None;
        }
        self.available()
            .find(|(_, l)| covers(self.tile, l.width, l.height))
            .or_else(|| self.available().last())
            .map(|(i, _)| i)
    }

    /// The order lowest layers are handed out in: as [`Self::priority`], but a camera that
    /// flows keeps it before one that is paused, the active speaker's included. When the
    /// estimate holds one camera and not two, the picture stays where it is instead of
    /// hopping to whoever speaks (each hop costs a keyframe on a link already full).
    fn floor_priority(&self) -> (u8, u8) {
        let paused = u8::from(self.kind == TrackKind::Video && self.current.is_none());
        (paused, self.priority())
    }

    fn priority(&self) -> u8 {
        match (self.kind, self.speaker) {
            (TrackKind::Audio, _) => 0,
            (TrackKind::Screen, _) => 1,
            (TrackKind::Video, true) => 2,
            (TrackKind::Video, false) => 3,
        }
    }
}

/// What one run of [`allocate`] gave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    /// Bits per second given to all tracks.
    pub(crate) sent: u64,
    /// What every track at its tile's cap would take.
    pub(crate) wanted: u64,
    /// The smallest extra rate (over `sent`) that would raise or resume a track the
    /// estimate holds back: what the estimator should find room for next.
    pub(crate) next_step: Option<u64>,
    /// A step up that the estimate allowed waits for the link to deliver it
    /// ([`Link::delivered`]).
    pub(crate) unproven: bool,
}

/// What is known of a subscriber's link when its estimate is shared out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Link {
    /// The bandwidth estimate, bits per second (`None`: none yet, everything gets its cap).
    pub(crate) estimate: Option<u64>,
    /// When lower, bounds what all tracks together may take once raised above their lowest
    /// layers: the estimator's latest value, which falls at once when a link narrows while
    /// `estimate` (an average) lags, so higher layers (and whole lowest layers, down to their
    /// temporal bases) go at once but a track is paused only on the steadier figure.
    pub(crate) raise_cap: Option<u64>,
    /// The link carries what it is sent now: its round trip shows no queue and under
    /// [`CARRIED_LOSS`] of the packets are lost. A camera flowing at its floor then keeps
    /// it whatever the estimate says.
    pub(crate) carried: bool,
    /// What the link was last seen to deliver (the rate the subscriber's transport feedback
    /// acknowledges), bits per second, where a step up must first be proven: on a link that
    /// queued lately. `None`: the estimate alone decides. There, every step above the floors
    /// and above what is forwarded now (a whole lowest layer after its base, a higher layer;
    /// not a camera resumed at its floor) is taken only while the total with it stays within [`PROVEN_PERCENT`] of the
    /// delivered rate, which padding up to [`proving_rate`] of the next step lets grow where
    /// the link has room. A probe can pass a narrow link's burst allowance at its own rate
    /// and leave an estimate far over what the link carries; raising on that estimate alone
    /// overflows the queue, and the loss reaches the voices.
    pub(crate) delivered: Option<u64>,
}

/// How much of the delivered rate ([`Link::delivered`]) the total after a step up may be,
/// in percent: the measure wobbles by a few percent from one window to the next.
pub(crate) const PROVEN_PERCENT: u64 = 95;

/// The rate to pad up to for a step that must be proven, the total with it being `total`:
/// as much over it as raising leaves free of the estimate, so that a link which delivers
/// it has room for the step and its retransmissions.
pub(crate) fn proving_rate(total: u64) -> u64 {
    total / BUDGET_PERCENT * 100
}

/// Chooses a layer for every track in `tracks` within `link`'s estimate. Writes `chosen`,
/// `bitrate`, `wanted` and `limited_at` of each track. `order` is scratch space, reused
/// between calls so a run allocates nothing.
pub(crate) fn allocate(
    now: Instant,
    link: Link,
    tracks: &mut [Track],
    order: &mut Vec<usize>,
) -> Totals {
    let Link {
        estimate,
        raise_cap,
        carried,
        delivered,
    } = link;
    let mut next_step: Option<u64> = None;
    let mut note_step = |extra: u64| {
        next_step = Some(next_step.map_or(extra, |n| n.min(extra)));
    };
    // The floors may use the whole estimate; anything above them leaves the margin free.
    let mut budget = estimate.unwrap_or(u64::MAX);
    // What steps up may add where they must be proven: the delivered rate's share over what
    // is forwarded now.
    let mut proof = delivered.map(|d| {
        let kept: u64 = tracks.iter().map(Track::current_cost).sum();
        (d / 100 * PROVEN_PERCENT).saturating_sub(kept)
    });
    // Takes `extra` from the proven room; false (taking nothing) when it is not there.
    let mut unproven = false;
    let mut proven = |extra: u64| match proof.as_mut() {
        None => true,
        Some(room) if extra <= *room => {
            *room -= extra;
            true
        }
        Some(_) => {
            unproven = true;
            false
        }
    };
    order.clear();
    order.extend(0..tracks.len());
    order.sort_by_key(|&i| tracks[i].floor_priority());

    // Audio first, and always.
    for t in tracks.iter_mut() {
        t.chosen = None;
        t.temporal = None;
        t.bitrate = 0;
        t.wanted = 0;
        if !t.kind.is_video() {
            t.chosen = t.layers[0].map(|_| 0);
            t.bitrate = t.chosen.map_or(0, |l| t.cost(l));
            t.wanted = t.bitrate;
            budget = budget.saturating_sub(t.bitrate);
        }
    }
    // Every visible video track its lowest layer, in priority order: first each one's
    // temporal base where it has one (a lower frame rate for every camera rather than one
    // whole and the next paused), then the whole lowest layer as the budget allows.
    for &i in order.iter() {
        let t = &mut tracks[i];
        if !t.kind.is_video() {
            continue;
        }
        let Some(cap) = t.cap() else {
            t.limited_at = None;
            continue;
        };
        t.wanted = t.cost(cap);
        let Some((lowest, _)) = t.available().next() else {
            continue;
        };
        let cost = t.cost(lowest);
        // A track with one layer has nothing smaller to step down to: it is forwarded whatever
        // the estimate (pausing it would leave the tile black, as with a publisher that sends
        // no simulcast, or a screen share).
        let only_layer = t.available().count() == 1;
        let base = t.layers[lowest as usize].map_or(0, |o| o.base_bitrate);
        let floor = if base > 0 { base } else { cost };
        let slack = if t.paused {
            floor / 100 * RESUME_SLACK_PERCENT
        } else {
            0
        };
        // Over the estimate, a camera that flows keeps its floor while the link carries it.
        let holds = carried && !t.paused && t.current.is_some();
        // (A floor is not a step that must be proven: a tile shown again, or a newcomer's
        // camera, comes back at once at its floor.)
        if only_layer || floor + slack <= budget || holds {
            let given = if only_layer { cost } else { floor };
            budget = budget.saturating_sub(given);
            t.chosen = Some(lowest);
            t.bitrate = given;
            if given < cost {
                t.temporal = Some(0);
            }
        } else {
            note_step(floor);
        }
    }
    // Above the floors everything leaves the margin free, of the estimate and of the
    // estimator's latest value when that has fallen under the average: on a link that just
    // narrowed, cutting to the temporal bases at once ends the loss that would break the
    // subscriber's decoder (and make it ask for keyframes), while pausing waits for the
    // steadier average.
    let floors: u64 = tracks.iter().map(|t| t.bitrate).sum();
    let share = |limit: u64| (limit / 100 * BUDGET_PERCENT).saturating_sub(floors);
    budget = estimate.map_or(u64::MAX, share).min(budget);
    if let Some(cap) = raise_cap {
        budget = budget.min(share(cap));
    }
    // The whole lowest layers, in priority order.
    for &i in order.iter() {
        let t = &mut tracks[i];
        let (Some(lowest), Some(_)) = (t.chosen, t.temporal) else {
            continue;
        };
        let cost = t.cost(lowest);
        let extra = cost.saturating_sub(t.bitrate);
        let held = t.at_base
            && t.limited_at
                .is_some_and(|at| now.saturating_duration_since(at) < UP_HOLD);
        let room = extra <= budget;
        if room && !held && proven(t.step_up(cost)) {
            budget -= extra;
            t.temporal = None;
            t.bitrate = cost;
        } else {
            if !room {
                t.limited_at = Some(now);
            }
            note_step(extra);
        }
    }
    // Then raise each, in priority order, as far as its cap and the budget allow.
    order.sort_by_key(|&i| tracks[i].priority());
    for &i in order.iter() {
        let t = &mut tracks[i];
        let (Some(from), Some(cap)) = (t.chosen, t.cap()) else {
            continue;
        };
        if t.temporal.is_some() {
            // Already cut to its base: nothing left to raise it with.
            continue;
        }
        if !t.kind.is_video() {
            continue;
        }
        let spent = t.bitrate;
        let best = t
            .available()
            .filter(|(l, _)| *l > from && *l <= cap)
            .map(|(l, _)| l)
            .filter(|&l| t.cost(l).saturating_sub(spent) <= budget)
            .last()
            .unwrap_or(from);
        let mut layer = best;
        if t.available().any(|(l, _)| l > best && l <= cap) && t.current.is_none_or(|c| best <= c) {
            // Kept at (or below) what is forwarded while more was wanted.
            t.limited_at = Some(now);
        } else if let Some(current) = t.current
            && best > current
            && t.limited_at
                .is_some_and(|at| now.saturating_duration_since(at) < UP_HOLD)
        {
            // Up from what is forwarded only once the estimate has stopped holding it back
            // for a while.
            layer = current.max(from);
        }
        // As high as the proven room allows, of what the estimate allows.
        while layer > from && !proven(t.step_up(t.cost(layer))) {
            layer = t
                .available()
                .map(|(l, _)| l)
                .filter(|&l| l >= from && l < layer)
                .last()
                .unwrap_or(from);
        }
        if let Some((up, _)) = t.available().find(|(l, _)| *l > layer && *l <= cap) {
            note_step(t.cost(up).saturating_sub(spent));
        }
        let cost = t.cost(layer);
        budget = (budget + spent).saturating_sub(cost);
        t.chosen = Some(layer);
        t.bitrate = cost;
    }
    Totals {
        sent: tracks.iter().map(|t| t.bitrate).sum(),
        wanted: tracks.iter().map(|t| t.wanted).sum(),
        next_step,
        unproven,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KBPS: u64 = 1000;

    /// Shares `estimate` between `tracks` at `now`, with nothing else known of the link.
    fn share(now: Instant, estimate: u64, tracks: &mut [Track]) {
        allocate(now, link(Some(estimate), None), tracks, &mut Vec::new());
    }

    /// A link with `estimate` and `raise_cap` that does not say whether it carries its load.
    fn link(estimate: Option<u64>, raise_cap: Option<u64>) -> Link {
        Link {
            estimate,
            raise_cap,
            carried: false,
            delivered: None,
        }
    }

    fn camera(tile: Tile) -> Track {
        let layer = |bitrate, width, height| {
            Some(LayerOffer {
                bitrate,
                base_bitrate: 0,
                width,
                height,
            })
        };
        Track::new(
            TrackKind::Video,
            tile,
            [
                layer(150 * KBPS, 320, 180),
                layer(500 * KBPS, 640, 360),
                layer(1500 * KBPS, 1280, 720),
            ],
        )
    }

    /// A camera whose lowest layer's temporal base is measured at `base` bits per second.
    fn based(tile: Tile, base: u64) -> Track {
        let mut c = camera(tile);
        if let Some(o) = &mut c.layers[0] {
            o.base_bitrate = base;
        }
        c
    }

    fn audio() -> Track {
        Track::new(
            TrackKind::Audio,
            Tile::Unreported,
            [
                Some(LayerOffer {
                    bitrate: 40 * KBPS,
                    base_bitrate: 0,
                    width: 0,
                    height: 0,
                }),
                None,
                None,
            ],
        )
    }

    fn tile(width: u32, height: u32) -> Tile {
        Tile::Size { width, height }
    }

    /// Runs the allocator like the core does: every 100 ms, the chosen layer becoming the
    /// forwarded one at once (the keyframe wait is the subscription's business).
    fn run(tracks: &mut [Track], now: Instant, estimate: Option<u64>) -> Vec<Option<Layer>> {
        allocate(now, link(estimate, None), tracks, &mut Vec::new());
        for t in tracks.iter_mut() {
            t.current = t.chosen;
            t.paused = t.kind.is_video() && t.chosen.is_none();
        }
        tracks.iter().map(|t| t.chosen).collect()
    }

    #[test]
    fn a_paused_camera_resumes_only_with_room_to_spare() {
        let t = Instant::now();
        let mut tracks = [audio(), camera(tile(320, 180))];
        // 40 + 150 kbit/s: it fits exactly, and flows.
        assert_eq!(run(&mut tracks, t, Some(190 * KBPS))[1], Some(0));
        // Not at 180: paused.
        assert_eq!(run(&mut tracks, t, Some(180 * KBPS))[1], None);
        // Back at 190 it would fit exactly, but a paused camera needs 15 % of its floor to
        // spare (22 kbit/s).
        assert_eq!(run(&mut tracks, t, Some(190 * KBPS))[1], None);
        assert_eq!(run(&mut tracks, t, Some(211 * KBPS))[1], None);
        assert_eq!(run(&mut tracks, t, Some(213 * KBPS))[1], Some(0));
        // Flowing again, it keeps its floor down to an exact fit.
        assert_eq!(run(&mut tracks, t, Some(190 * KBPS))[1], Some(0));
    }

    #[test]
    fn a_silent_voice_costs_what_it_sends_the_speaker_a_full_voice() {
        // Not yet measured: a full voice.
        assert_eq!(audio_bps(0, 0, false), ASSUMED_AUDIO_BPS);
        // In silence with DTX (about 1.5 kbit/s on the wire): the floor.
        assert_eq!(audio_bps(0, 1_500, false), SILENT_AUDIO_BPS);
        assert_eq!(audio_bps(0, 30 * KBPS, false), 30 * KBPS);
        // The active speaker is never counted under a voice of speech, nor under its rate.
        assert_eq!(audio_bps(0, 1_500, true), ASSUMED_AUDIO_BPS);
        assert_eq!(audio_bps(0, 70 * KBPS, true), 70 * KBPS);
        // Redundancy repeats the payload: one level of a full voice adds 34 kbit/s, of a
        // quiet one in proportion.
        assert_eq!(audio_bps(1, 0, false), 92 * KBPS);
        assert_eq!(audio_bps(2, 0, true), 126 * KBPS);
        assert_eq!(audio_bps(1, 29 * KBPS, false), 46 * KBPS);
    }

    #[test]
    fn the_tile_caps_the_layer() {
        let t = Instant::now();
        let mut tracks = [
            camera(tile(320, 200)),
            camera(tile(1280, 720)),
            camera(tile(640, 360)),
            camera(Tile::Hidden),
            camera(Tile::Unreported),
        ];
        assert_eq!(
            run(&mut tracks, t, None),
            [Some(0), Some(2), Some(1), None, Some(2)]
        );
        assert_eq!(tracks[0].wanted, 150 * KBPS);
        assert_eq!(tracks[3].wanted, 0);
    }

    #[test]
    fn a_layer_not_arriving_is_skipped() {
        let t = Instant::now();
        let mut top_missing = camera(tile(1280, 720));
        top_missing.layers[2] = None;
        let mut only_top = camera(tile(320, 180));
        only_top.layers[0] = None;
        only_top.layers[1] = None;
        let mut tracks = [top_missing, only_top];
        assert_eq!(run(&mut tracks, t, None), [Some(1), Some(2)]);
    }

    #[test]
    fn audio_then_screen_then_speaker_then_the_others() {
        let t = Instant::now();
        let mut screen = Track::new(
            TrackKind::Screen,
            tile(1280, 720),
            [
                Some(LayerOffer {
                    bitrate: 1000 * KBPS,
                    base_bitrate: 0,
                    width: 1920,
                    height: 1080,
                }),
                None,
                None,
            ],
        );
        screen.current = None;
        let mut speaker = camera(tile(1280, 720));
        speaker.speaker = true;
        let other = camera(tile(1280, 720));
        let mut tracks = [other, audio(), speaker, screen];
        // 2 Mbit/s: 1.8 for media. Audio 40k, everyone's lowest (150k each), the screen (1M
        // in all), then the speaker up to 360p (+350k); the rest is too little for more.
        let chosen = run(&mut tracks, t, Some(2000 * KBPS));
        assert_eq!(chosen, [Some(0), Some(0), Some(1), Some(0)]);
        let total: u64 = tracks.iter().map(|t| t.bitrate).sum();
        assert!(total <= 1800 * KBPS, "{total}");

        // Too little for every video: the lowest priority camera is paused, audio never is,
        // and the screen (one layer, nothing smaller to send) neither.
        let chosen = run(&mut tracks, t, Some(1250 * KBPS));
        assert_eq!(chosen, [None, Some(0), Some(0), Some(0)]);
        let chosen = run(&mut tracks, t, Some(10 * KBPS));
        assert_eq!(chosen, [None, Some(0), None, Some(0)]);
    }

    #[test]
    fn a_lowest_layer_that_does_not_fit_goes_at_its_temporal_base() {
        let t = Instant::now();
        let with_base = || {
            let mut c = camera(tile(320, 180));
            for (l, base) in c.layers.iter_mut().zip([70, 250, 750]) {
                if let Some(o) = l {
                    o.base_bitrate = base * KBPS;
                }
            }
            c
        };
        let mut tracks = [audio(), with_base(), with_base()];
        // 300 kbit/s: a voice and both bases (40 + 2 × 70) are floors; above them 90 % of
        // the estimate may go (90 more): the first lowest layer whole (+80), the second only
        // at its base.
        share(t, 300 * KBPS, &mut tracks);
        assert_eq!(tracks[1].chosen, Some(0));
        assert_eq!(tracks[2].chosen, Some(0));
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (None, Some(0)));
        // 180 kbit/s, 140 left: both at their base.
        share(t, 180 * KBPS, &mut tracks);
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (Some(0), Some(0)));
        // Plenty: whole layers.
        share(t, 3000 * KBPS, &mut tracks);
        assert_eq!(tracks[1].temporal, None);
        // 220 kbit/s, 180 left: room for one whole lowest layer and nothing beside it, or
        // both at their base with 40 over: both at their base, not one whole and one paused.
        share(t, 220 * KBPS, &mut tracks);
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), Some(0)));
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (Some(0), Some(0)));
        // Without temporal layers measured, a layer that does not fit is paused as before.
        let mut plain = [audio(), camera(tile(320, 180)), camera(tile(320, 180))];
        share(t, 270 * KBPS, &mut plain);
        assert_eq!(plain[2].chosen, None);
    }

    #[test]
    fn a_flowing_camera_keeps_its_floor_while_the_link_carries_it() {
        let t = Instant::now();
        let based = || based(tile(320, 180), 60 * KBPS);
        let mut tracks = [audio(), based(), based()];
        let mut run = |estimate: u64, carried: bool| {
            let link = Link {
                carried,
                ..link(Some(estimate), None)
            };
            allocate(t, link, &mut tracks, &mut Vec::new());
            for t in tracks.iter_mut() {
                t.current = t.chosen;
                t.paused = t.kind.is_video() && t.chosen.is_none();
            }
            tracks[1..]
                .iter()
                .map(|t| (t.chosen, t.temporal))
                .collect::<Vec<_>>()
        };
        // 40 + 2 × 60 kbit/s at the temporal bases.
        assert_eq!(run(160 * KBPS, false), [(Some(0), Some(0)); 2]);
        // The estimate falls under that floor while the link still delivers it with no queue
        // and no loss: both keep their base, nothing is paused.
        assert_eq!(run(120 * KBPS, true), [(Some(0), Some(0)); 2]);
        assert_eq!(run(50 * KBPS, true), [(Some(0), Some(0)); 2]);
        // Once the floor queues or loses, the estimate rules: the second camera is paused.
        assert_eq!(run(120 * KBPS, false), [(Some(0), Some(0)), (None, None)]);
        // A paused camera resumes on the estimate alone, however well the link carries.
        assert_eq!(run(120 * KBPS, true), [(Some(0), Some(0)), (None, None)]);
        assert_eq!(run(170 * KBPS, true), [(Some(0), Some(0)); 2]);
        // Raising above the floor still waits for the estimate.
        assert_eq!(run(170 * KBPS, true), [(Some(0), Some(0)); 2]);
    }

    #[test]
    fn where_steps_up_must_be_proven_the_delivered_rate_bounds_them() {
        let t = Instant::now();
        let based = || {
            let mut c = based(tile(640, 360), 60 * KBPS);
            c.current = Some(0);
            c.at_base = true;
            c
        };
        // A probe passed a narrow link's burst allowance: the estimate says 420 kbit/s.
        let mut tracks = [audio(), based(), based()];
        let run = |delivered: Option<u64>, tracks: &mut [Track]| {
            let l = Link {
                delivered,
                ..link(Some(420 * KBPS), None)
            };
            let totals = allocate(t, l, tracks, &mut Vec::new());
            let chosen = tracks[1..]
                .iter()
                .map(|t| (t.chosen, t.temporal))
                .collect::<Vec<_>>();
            (chosen, totals.next_step)
        };
        // Forwarded now: a voice and both bases, 160 kbit/s. The link delivered 200: 95 %
        // of it leaves 30 over that, too little for a whole layer (+90): both stay at their
        // base, and the step is what to pad for.
        let (chosen, step) = run(Some(200 * KBPS), &mut tracks);
        assert_eq!(chosen, [(Some(0), Some(0)); 2]);
        assert_eq!(step, Some(90 * KBPS));
        // Delivered 270 (the padding got through): room for one whole layer, not two.
        let (chosen, _) = run(Some(270 * KBPS), &mut tracks);
        assert_eq!(chosen, [(Some(0), None), (Some(0), Some(0))]);
        // Without a proof asked for, the estimate alone: both whole (360p for either would
        // be over 90 % of 420).
        let (chosen, _) = run(None, &mut [audio(), based(), based()]);
        assert_eq!(chosen, [(Some(0), None), (Some(0), None)]);

        // What is forwarded is never cut for want of proof: at 360p with the estimate
        // holding it, a delivered rate under it keeps it there, and a higher layer waits.
        let mut at_360 = camera(tile(1280, 720));
        at_360.current = Some(1);
        let mut tracks = [audio(), at_360];
        let l = Link {
            delivered: Some(100 * KBPS),
            ..link(Some(5000 * KBPS), None)
        };
        allocate(t, l, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[1].chosen, Some(1));
        // Proven, it goes up at once: waiting for the proof did not count as being held
        // back by the estimate.
        let l = Link {
            delivered: Some(3000 * KBPS),
            ..l
        };
        allocate(t, l, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[1].chosen, Some(2));

        // A paused camera (a tile shown again) resumes at its floor at once: floors are not
        // steps to prove. Its whole lowest layer waits for the proof.
        let mut paused = self::based(tile(320, 180), 60 * KBPS);
        paused.paused = true;
        let mut tracks = [audio(), paused];
        let l = Link {
            delivered: Some(50 * KBPS),
            ..link(Some(5000 * KBPS), None)
        };
        allocate(t, l, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].chosen, tracks[1].temporal), (Some(0), Some(0)));
        let l = Link {
            delivered: Some(210 * KBPS),
            ..l
        };
        allocate(t, l, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].chosen, tracks[1].temporal), (Some(0), None));
    }

    #[test]
    fn at_the_floor_a_flowing_camera_is_not_dropped_for_the_speaker() {
        let t = Instant::now();
        let mut flowing = camera(tile(320, 180));
        flowing.current = Some(0);
        let mut speaker = camera(tile(320, 180));
        speaker.speaker = true;
        let mut tracks = [audio(), flowing, speaker];
        // Room for one lowest layer: the one already shown keeps it.
        share(t, 200 * KBPS, &mut tracks);
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), None));
        // With room for both, the paused one resumes.
        share(t, 1000 * KBPS, &mut tracks);
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), Some(0)));
    }

    #[test]
    fn back_from_the_temporal_base_only_after_the_hold() {
        let start = Instant::now();
        let mut c = camera(tile(320, 180));
        if let Some(o) = &mut c.layers[0] {
            o.base_bitrate = 70 * KBPS;
        }
        let mut tracks = [c];
        share(start, 120 * KBPS, &mut tracks);
        assert_eq!(tracks[0].temporal, Some(0));
        tracks[0].at_base = true;
        tracks[0].current = tracks[0].chosen;
        // The estimate recovers at once; the base holds for UP_HOLD.
        let soon = start + UP_HOLD / 2;
        share(soon, 3000 * KBPS, &mut tracks);
        assert_eq!(tracks[0].temporal, Some(0));
        let later = start + UP_HOLD + Duration::from_millis(100);
        share(later, 3000 * KBPS, &mut tracks);
        assert_eq!(tracks[0].temporal, None);
    }

    #[test]
    fn the_raw_estimate_lowers_layers_but_pauses_nothing() {
        let t = Instant::now();
        let mut tracks = [audio(), camera(tile(1280, 720)), camera(tile(1280, 720))];
        let mut chosen = |average: u64, raw: Option<u64>| {
            allocate(t, link(Some(average), raw), &mut tracks, &mut Vec::new());
            tracks.iter().map(|t| t.chosen).collect::<Vec<_>>()
        };
        // The average still says 3 Mbit/s; the estimator already says 400 kbit/s: both
        // cameras step down to what 400 kbit/s holds.
        assert_eq!(
            chosen(3000 * KBPS, Some(400 * KBPS)),
            [Some(0), Some(0), Some(0)]
        );
        // Even at 100 kbit/s, nothing is paused on the raw value alone.
        assert_eq!(
            chosen(3000 * KBPS, Some(100 * KBPS)),
            [Some(0), Some(0), Some(0)]
        );
        // A raw value above the average changes nothing.
        let high = chosen(3000 * KBPS, Some(9000 * KBPS));
        assert_eq!(chosen(3000 * KBPS, None), high);
    }

    #[test]
    fn the_raw_estimate_cuts_to_temporal_bases_but_pauses_nothing() {
        let t = Instant::now();
        let based = || based(tile(320, 180), 60 * KBPS);
        let mut tracks = [audio(), based(), based()];
        let run = |average: u64, raw: Option<u64>, tracks: &mut [Track]| {
            allocate(t, link(Some(average), raw), tracks, &mut Vec::new());
            tracks[1..]
                .iter()
                .map(|t| (t.chosen, t.temporal))
                .collect::<Vec<_>>()
        };
        // The average holds both whole lowest layers (40 + 2 × 150 kbit/s).
        assert_eq!(run(500 * KBPS, None, &mut tracks), [(Some(0), None); 2]);
        // The link narrowed to 200 kbit/s and the average lags: both at their temporal
        // base at once (40 + 2 × 60), neither paused.
        assert_eq!(
            run(500 * KBPS, Some(200 * KBPS), &mut tracks),
            [(Some(0), Some(0)); 2]
        );
        // Room in 90 % of the raw value for one whole layer beside both bases: the first in
        // order.
        assert_eq!(
            run(500 * KBPS, Some(290 * KBPS), &mut tracks),
            [(Some(0), None), (Some(0), Some(0))]
        );
        // Even a raw value under every floor pauses nothing while the average holds them.
        assert_eq!(
            run(500 * KBPS, Some(50 * KBPS), &mut tracks),
            [(Some(0), Some(0)); 2]
        );
    }

    #[test]
    fn steps_down_at_once_and_up_after_the_estimate_recovers() {
        let start = Instant::now();
        let mut tracks = [audio(), camera(tile(1280, 720))];
        let mut now = start;
        let mut step = |tracks: &mut [Track], estimate: u64| {
            now += Duration::from_millis(100);
            (now, run(tracks, now, Some(estimate))[1])
        };
        // A good link: the top layer, from the first run on.
        assert_eq!(step(&mut tracks, 3000 * KBPS).1, Some(2));

        // The estimate falls to 700 kbit/s: down within the next run.
        assert_eq!(step(&mut tracks, 700 * KBPS).1, Some(1));
        // And to 250 kbit/s: the lowest layer.
        assert_eq!(step(&mut tracks, 250 * KBPS).1, Some(0));
        let mut recovered = start;
        for _ in 0..20 {
            let (at, layer) = step(&mut tracks, 250 * KBPS);
            assert_eq!(layer, Some(0));
            recovered = at;
        }

        // It recovers: up again, but only once the estimate has not held it back for UP_HOLD.
        let mut up_at = None;
        for _ in 0..40 {
            let (at, layer) = step(&mut tracks, 3000 * KBPS);
            if layer == Some(2) {
                up_at = Some(at);
                break;
            }
        }
        let waited = up_at.expect("back to the top layer") - recovered;
        assert!(waited >= UP_HOLD && waited <= UP_HOLD + Duration::from_millis(200));
    }

    #[test]
    fn a_wobbling_estimate_does_not_flip_layers() {
        let start = Instant::now();
        let mut tracks = [camera(tile(1280, 720))];
        run(&mut tracks, start, Some(700 * KBPS));
        assert_eq!(tracks[0].current, Some(1));
        // Above and below the top layer's need, every 300 ms: it stays at 360p.
        for i in 1..30u32 {
            let estimate = if i % 6 < 3 { 2000 } else { 700 } * KBPS;
            let chosen = run(
                &mut tracks,
                start + Duration::from_millis(100) * i,
                Some(estimate),
            );
            assert_eq!(chosen, [Some(1)], "at {} ms", i * 100);
        }
    }

    #[test]
    fn a_growing_tile_moves_up_at_once() {
        let t = Instant::now();
        let mut tracks = [camera(tile(320, 180))];
        assert_eq!(run(&mut tracks, t, Some(5000 * KBPS)), [Some(0)]);
        tracks[0].tile = tile(1280, 720);
        assert_eq!(run(&mut tracks, t, Some(5000 * KBPS)), [Some(2)]);
    }

    #[test]
    fn a_hidden_tile_pauses_and_showing_it_resumes_at_once() {
        let t = Instant::now();
        let mut tracks = [camera(tile(640, 360))];
        assert_eq!(run(&mut tracks, t, Some(5000 * KBPS)), [Some(1)]);
        tracks[0].tile = Tile::Hidden;
        assert_eq!(run(&mut tracks, t, Some(5000 * KBPS)), [None]);
        tracks[0].tile = tile(640, 360);
        // Resuming is not moving up from a layer forwarded: no hold.
        assert_eq!(run(&mut tracks, t, Some(5000 * KBPS)), [Some(1)]);
    }
}

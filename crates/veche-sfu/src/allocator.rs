//! Sharing one subscriber's bandwidth estimate between the tracks it receives.
//!
//! A pure function of its inputs (time comes in as a value), run on the core's tick for
//! each subscriber. Audio is served first, whatever the estimate; then video in priority
//! order — screen shares, the active speaker, everyone else. Each video track is capped by
//! the tile the client renders it in (the smallest layer that covers the tile); a hidden
//! tile gets nothing. A track that arrives in one layer only is never paused for bandwidth:
//! there is nothing smaller to send. Every video track first gets the temporal base of its
//! lowest layer (or the whole layer when it has no temporal layers), in priority order, as
//! long as the budget lasts (a track that does not fit is paused, and resumes only after it
//! has fitted for [`RESUME_HOLD`]: a resume costs a keyframe); then each its whole lowest
//! layer; then, in the same order, each is raised as far as its cap and the rest of the
//! budget allow. The lowest layers may
//! take the whole estimate; raising leaves a margin for retransmissions and headers. What is
//! given out never exceeds the estimate.
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

/// How long a camera the estimate paused must have fitted again before it resumes.
pub(crate) const RESUME_HOLD: Duration = Duration::from_millis(1500);

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
    /// When the estimate last kept it paused (kept between runs by the caller): it resumes
    /// only once [`RESUME_HOLD`] has passed since.
    pub(crate) paused_at: Option<Instant>,
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
            paused_at: None,
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
}

/// Chooses a layer for every track in `tracks` within `estimate` (bits per second; `None`:
/// no estimate, everything gets its cap). `raise_cap`, when lower, bounds what all tracks
/// together may take once raised above their lowest layers: the estimator's latest value,
/// which falls at once when a link narrows while `estimate` (an average) lags, so higher
/// layers go at once but a track is paused only on the steadier figure. Writes `chosen`,
/// `bitrate`, `wanted` and `limited_at` of each track. `order` is scratch space, reused
/// between calls so a run allocates nothing.
pub(crate) fn allocate(
    now: Instant,
    estimate: Option<u64>,
    raise_cap: Option<u64>,
    tracks: &mut [Track],
    order: &mut Vec<usize>,
) -> Totals {
    let mut next_step: Option<u64> = None;
    let mut note_step = |extra: u64| {
        next_step = Some(next_step.map_or(extra, |n| n.min(extra)));
    };
    // The lowest layers may use the whole estimate; raising a track leaves the margin free.
    let mut budget = estimate.unwrap_or(u64::MAX);
    let margin = estimate.map_or(0, |e| e / 100 * (100 - BUDGET_PERCENT));
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
            t.paused_at = None;
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
        // A camera the estimate paused resumes only once it has fitted for a while: every
        // resume asks its publisher for a keyframe, which a simulcast encoder makes on all
        // its layers, for every other subscriber too.
        let recently_paused = t
            .paused_at
            .is_some_and(|at| now.saturating_duration_since(at) < RESUME_HOLD);
        if only_layer || (floor <= budget && !recently_paused) {
            let given = if only_layer { cost } else { floor };
            budget = budget.saturating_sub(given);
            t.chosen = Some(lowest);
            t.bitrate = given;
            if given < cost {
                t.temporal = Some(0);
            }
        } else {
            if floor > budget {
                t.paused_at = Some(now);
            }
            note_step(floor);
        }
    }
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
        if extra <= budget && !held {
            budget -= extra;
            t.temporal = None;
            t.bitrate = cost;
        } else {
            if extra > budget {
                t.limited_at = Some(now);
            }
            note_step(extra);
        }
    }
    // Then raise each, in priority order, as far as its cap and the budget allow.
    order.sort_by_key(|&i| tracks[i].priority());
    budget = budget.saturating_sub(margin);
    if let Some(cap) = raise_cap {
        let spent = estimate.map_or(0, |e| e.saturating_sub(budget + margin));
        let cap_margin = cap / 100 * (100 - BUDGET_PERCENT);
        budget = budget.min(cap.saturating_sub(spent + cap_margin));
    }
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
        let held_back = t.available().find(|(l, _)| *l > best && *l <= cap);
        if let Some((up, _)) = held_back {
            note_step(t.cost(up).saturating_sub(spent));
        }
        let mut layer = best;
        if held_back.is_some() && t.current.is_none_or(|c| best <= c) {
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
        let cost = t.cost(layer);
        budget = (budget + spent).saturating_sub(cost);
        t.chosen = Some(layer);
        t.bitrate = cost;
    }
    Totals {
        sent: tracks.iter().map(|t| t.bitrate).sum(),
        wanted: tracks.iter().map(|t| t.wanted).sum(),
        next_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KBPS: u64 = 1000;

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
        allocate(now, estimate, None, tracks, &mut Vec::new());
        for t in tracks.iter_mut() {
            t.current = t.chosen;
        }
        tracks.iter().map(|t| t.chosen).collect()
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
        // 270 kbit/s: a voice (40) leaves 230: the first lowest layer whole (150), the second
        // only at its base (70 of the 80 left).
        allocate(t, Some(270 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[1].chosen, Some(0));
        assert_eq!(tracks[2].chosen, Some(0));
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (None, Some(0)));
        // 180 kbit/s, 140 left: both at their base.
        allocate(t, Some(180 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (Some(0), Some(0)));
        // Plenty: whole layers.
        allocate(t, Some(3000 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[1].temporal, None);
        // 220 kbit/s, 180 left: room for one whole lowest layer and nothing beside it, or
        // both at their base with 40 over: both at their base, not one whole and one paused.
        allocate(t, Some(220 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), Some(0)));
        assert_eq!((tracks[1].temporal, tracks[2].temporal), (Some(0), Some(0)));
        // Without temporal layers measured, a layer that does not fit is paused as before.
        let mut plain = [audio(), camera(tile(320, 180)), camera(tile(320, 180))];
        allocate(t, Some(270 * KBPS), None, &mut plain, &mut Vec::new());
        assert_eq!(plain[2].chosen, None);
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
        allocate(t, Some(200 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), None));
        // With room for both, the paused one resumes once it has fitted for RESUME_HOLD
        // (each resume is a keyframe for everyone): not at once, nor while room comes and
        // goes.
        allocate(t, Some(1000 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!((tracks[1].chosen, tracks[2].chosen), (Some(0), None));
        let dip = t + RESUME_HOLD / 2;
        allocate(dip, Some(200 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[2].chosen, None);
        allocate(
            dip + RESUME_HOLD / 2,
            Some(1000 * KBPS),
            None,
            &mut tracks,
            &mut Vec::new(),
        );
        assert_eq!(tracks[2].chosen, None, "the dip started the hold again");
        allocate(
            dip + RESUME_HOLD,
            Some(1000 * KBPS),
            None,
            &mut tracks,
            &mut Vec::new(),
        );
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
        allocate(start, Some(120 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[0].temporal, Some(0));
        tracks[0].at_base = true;
        tracks[0].current = tracks[0].chosen;
        // The estimate recovers at once; the base holds for UP_HOLD.
        let soon = start + UP_HOLD / 2;
        allocate(soon, Some(3000 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[0].temporal, Some(0));
        let later = start + UP_HOLD + Duration::from_millis(100);
        allocate(later, Some(3000 * KBPS), None, &mut tracks, &mut Vec::new());
        assert_eq!(tracks[0].temporal, None);
    }

    #[test]
    fn the_raw_estimate_lowers_layers_but_pauses_nothing() {
        let t = Instant::now();
        let mut tracks = [audio(), camera(tile(1280, 720)), camera(tile(1280, 720))];
        let mut chosen = |average: u64, raw: Option<u64>| {
            allocate(t, Some(average), raw, &mut tracks, &mut Vec::new());
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

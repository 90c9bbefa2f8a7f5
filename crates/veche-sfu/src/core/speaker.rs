//! Who is the active speaker of a room, judged once per window from each member's mean
//! [`loudness`](crate::participant::loudness). Sans-IO: the caller measures, this decides.
//!
//! A member who is not the speaker takes over only by being the loudest of those speaking for
//! [`HOLD_WINDOWS`] windows in a row, and — while the speaker still speaks — by at least
//! [`MARGIN`] dB. So a pause between sentences, a cough, or two people at the same background
//! level do not move the speaker, while someone who starts talking over them does.

use veche_proto::ParticipantId;

/// Mean loudness above which a member counts as speaking: louder than -60 dBov.
pub(super) const SPEAKING: u32 = 67;
/// How much louder than a speaker who still speaks a challenger must be, in dB.
pub(super) const MARGIN: u32 = 6;
/// Windows in a row a challenger must win before taking over.
pub(super) const HOLD_WINDOWS: u32 = 2;

#[derive(Debug, Default)]
pub(super) struct ActiveSpeaker {
    speaker: Option<ParticipantId>,
    /// Who would take over, and for how many windows in a row they have qualified.
    challenger: Option<(ParticipantId, u32)>,
}

impl ActiveSpeaker {
    /// Judges one window: `levels` has each member whose microphone is on and who sent audio,
    /// with their mean loudness. Returns the new speaker when it changed.
    pub(super) fn judge(
        &mut self,
        levels: impl IntoIterator<Item = (ParticipantId, u32)>,
    ) -> Option<ParticipantId> {
        let mut loudest: Option<(u32, ParticipantId)> = None;
        let mut current = None;
        for (id, loudness) in levels {
            if loudness < SPEAKING {
                continue;
            }
            if self.speaker == Some(id) {
                current = Some(loudness);
            }
            if loudest.is_none_or(|(l, _)| loudness > l) {
                loudest = Some((loudness, id));
            }
        }
        let Some((loudness, id)) = loudest else {
            self.challenger = None;
            return None;
        };
        if self.speaker == Some(id) || current.is_some_and(|held| loudness < held + MARGIN) {
            self.challenger = None;
            return None;
        }
        let windows = match self.challenger {
            Some((c, n)) if c == id => n + 1,
            _ => 1,
        };
        // The first speaker of a room needs no patience: nobody is shown yet.
        if windows >= HOLD_WINDOWS || self.speaker.is_none() {
            self.speaker = Some(id);
            self.challenger = None;
            return Some(id);
        }
        self.challenger = Some((id, windows));
        None
    }

    /// The member judged to be speaking, if any.
    pub(super) fn current(&self) -> Option<ParticipantId> {
        self.speaker
    }

    /// A member left: they are neither speaker nor challenger any more.
    pub(super) fn remove(&mut self, id: ParticipantId) {
        if self.speaker == Some(id) {
            self.speaker = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs windows of (member, loudness) levels; returns the speaker after each.
    fn run(windows: &[&[(ParticipantId, u32)]]) -> Vec<Option<ParticipantId>> {
        let mut s = ActiveSpeaker::default();
        windows
            .iter()
            .map(|w| {
                s.judge(w.iter().copied());
                s.speaker
            })
            .collect()
    }

    #[test]
    fn the_first_speaker_is_taken_at_once_and_silence_never_speaks() {
        assert_eq!(run(&[&[(1, 10), (2, 0)]]), [None]);
        assert_eq!(run(&[&[(1, 100), (2, 70)]]), [Some(1)]);
    }

    #[test]
    fn a_louder_challenger_takes_over_after_two_windows() {
        let a = (1, 80);
        let b = (2, 100);
        assert_eq!(run(&[&[a], &[a, b], &[a, b]]), [Some(1), Some(1), Some(2)]);
    }

    #[test]
    fn a_pause_of_one_window_keeps_the_speaker() {
        let quiet = (2, 77);
        assert_eq!(
            run(&[&[(1, 110), quiet], &[(1, 0), quiet], &[(1, 110), quiet]]),
            [Some(1), Some(1), Some(1)]
        );
    }

    #[test]
    fn two_at_the_same_level_do_not_take_turns() {
        // 2 and 3 at about the same level, now one a little louder, now the other, and 2
        // dipping below the threshold for single windows.
        let windows: Vec<Vec<(ParticipantId, u32)>> = (0..20)
            .map(|i| match i % 4 {
                0 => vec![(2, 78), (3, 76)],
                1 => vec![(2, 75), (3, 79)],
                2 => vec![(2, 60), (3, 77)],
                _ => vec![(2, 77), (3, 78)],
            })
            .collect();
        let refs: Vec<&[(ParticipantId, u32)]> = windows.iter().map(Vec::as_slice).collect();
        assert!(run(&refs).iter().all(|s| *s == Some(2)));
    }

    #[test]
    fn a_speaker_who_left_is_replaced_by_the_next_who_speaks() {
        let mut s = ActiveSpeaker::default();
        assert_eq!(s.judge([(1, 100)]), Some(1));
        s.remove(1);
        assert_eq!(s.judge([(2, 80)]), Some(2));
    }
}

//! Per-subscriber RTP rewriting.

use str0m::rtp::Ssrc;

/// Maps a publisher's extended sequence numbers onto one subscriber's outgoing stream.
///
/// A subscriber that joins mid-call must see its stream start near sequence 0 (str0m and
/// browsers assume a zero rollover counter unless told otherwise), and a publisher whose SSRC
/// changes must not make the subscriber see a jump of thousands of sequence numbers (it would
/// NACK them all). So each subscription keeps its own base.
#[derive(Debug, Default)]
pub(crate) struct SeqRewriter {
    source: Option<Ssrc>,
    base_in: u64,
    base_out: u64,
    last_out: u64,
}

/// Outgoing sequence numbers start here rather than 0, leaving room for packets of the first
/// frame that arrive slightly out of order.
const FIRST_OUT: u64 = 1000;

impl SeqRewriter {
    /// The outgoing sequence number for `seq` from `ssrc`, or `None` for a packet older than
    /// the first one forwarded from this source (it cannot be numbered without going back).
    pub(crate) fn map(&mut self, ssrc: Ssrc, seq: u64) -> Option<u64> {
        if self.source != Some(ssrc) {
            self.base_out = if self.source.is_none() {
                FIRST_OUT
            } else {
                self.last_out + 1
            };
            self.source = Some(ssrc);
            self.base_in = seq;
        }
        let out = (seq.checked_sub(self.base_in)? + self.base_out).max(self.base_out);
        if seq >= self.base_in {
            self.last_out = self.last_out.max(out);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_low_and_keeps_gaps() {
        let mut r = SeqRewriter::default();
        let a = Ssrc::from(1);
        assert_eq!(r.map(a, 70_000), Some(FIRST_OUT));
        assert_eq!(r.map(a, 70_001), Some(FIRST_OUT + 1));
        assert_eq!(r.map(a, 70_005), Some(FIRST_OUT + 5));
        // Reordered packet from before the first one forwarded.
        assert_eq!(r.map(a, 69_999), None);
        // Late but after the base: keeps its own number.
        assert_eq!(r.map(a, 70_003), Some(FIRST_OUT + 3));
    }

    #[test]
    fn new_source_continues_numbering() {
        let mut r = SeqRewriter::default();
        let (a, b) = (Ssrc::from(1), Ssrc::from(2));
        r.map(a, 10);
        r.map(a, 11);
        assert_eq!(r.map(b, 5_000), Some(FIRST_OUT + 2));
        assert_eq!(r.map(b, 5_001), Some(FIRST_OUT + 3));
    }
}

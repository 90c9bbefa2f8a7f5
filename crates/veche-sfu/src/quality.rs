//! Grading a participant's link from what the server sees of it.

use std::time::Duration;

use veche_proto::ConnectionQuality;

/// What the server knows of one participant's link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LinkStats {
    /// Fraction of packets lost from the participant to us, and from us to it (0..1).
    pub(crate) ingress_loss: f32,
    pub(crate) egress_loss: f32,
    pub(crate) rtt: Option<Duration>,
    /// Our bandwidth estimate towards it, bits per second.
    pub(crate) estimate: Option<u64>,
}

/// Loss, round-trip time and estimate at or past which a link is fair, then poor.
const FAIR_LOSS: f32 = 0.03;
const POOR_LOSS: f32 = 0.10;
const FAIR_RTT: Duration = Duration::from_millis(250);
const POOR_RTT: Duration = Duration::from_millis(500);
/// Below this the link cannot carry even the lowest camera layer and audio.
const POOR_ESTIMATE: u64 = 150_000;

/// The grade of a link: poor when media visibly suffers, fair when it is at risk.
pub(crate) fn grade(link: LinkStats) -> ConnectionQuality {
    let loss = link.ingress_loss.max(link.egress_loss);
    let rtt = link.rtt.unwrap_or_default();
    if loss >= POOR_LOSS || rtt >= POOR_RTT || link.estimate.is_some_and(|e| e < POOR_ESTIMATE) {
        ConnectionQuality::Poor
    } else if loss >= FAIR_LOSS || rtt >= FAIR_RTT {
        ConnectionQuality::Fair
    } else {
        ConnectionQuality::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_loss_rtt_and_estimate() {
        let good = LinkStats {
            rtt: Some(Duration::from_millis(30)),
            estimate: Some(2_000_000),
            ..LinkStats::default()
        };
        assert_eq!(grade(good), ConnectionQuality::Good);
        assert_eq!(
            grade(LinkStats {
                egress_loss: 0.05,
                ..good
            }),
            ConnectionQuality::Fair
        );
        assert_eq!(
            grade(LinkStats {
                ingress_loss: 0.2,
                ..good
            }),
            ConnectionQuality::Poor
        );
        assert_eq!(
            grade(LinkStats {
                rtt: Some(Duration::from_millis(300)),
                ..good
            }),
            ConnectionQuality::Fair
        );
        assert_eq!(
            grade(LinkStats {
                estimate: Some(100_000),
                ..good
            }),
            ConnectionQuality::Poor
        );
    }
}

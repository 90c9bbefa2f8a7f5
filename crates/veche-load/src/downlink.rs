//! A narrow downlink in front of a participant's receive path: a bottleneck of fixed rate with
//! a drop-tail queue, as a home router or a mobile cell gives. Sans-IO: time comes in as a
//! value; datagrams go in when they arrive from the socket and come out when the link has
//! carried them.
//!
//! What exceeds the rate waits in the queue (so the receiver sees delay grow, as the
//! delay-based part of a bandwidth estimator expects), and what would wait longer than the
//! queue's limit is dropped (so its transport-wide sequence number never reaches str0m and
//! the TWCC feedback reports it lost). Both are what the sender's estimate of a narrow link
//! is built from.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes a datagram takes on the link besides its payload: the IPv4 and UDP headers.
const IP_UDP_OVERHEAD: usize = 28;

/// The shape of an emulated downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownlinkLimit {
    /// What the link carries, kbit/s, IP and UDP headers included.
    pub kbps: u32,
    /// The longest a datagram may wait for the link; one that would wait longer is dropped.
    pub queue: Duration,
}

/// The link's state: when it is free again, and what it carries until then.
pub(crate) struct Downlink<T> {
    limit: DownlinkLimit,
    /// When the last queued datagram will have crossed the link.
    busy_until: Option<Instant>,
    /// Datagrams on their way, with the time each comes out, in order.
    queue: VecDeque<(Instant, T)>,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    /// The longest a datagram that got through waited in the queue.
    pub(crate) max_wait: Duration,
}

impl<T> Downlink<T> {
    pub(crate) fn new(limit: DownlinkLimit) -> Downlink<T> {
        Downlink {
            limit,
            busy_until: None,
            queue: VecDeque::new(),
            delivered: 0,
            dropped: 0,
            max_wait: Duration::ZERO,
        }
    }

    /// A datagram of `len` payload bytes arrived at `now`. Returns false when the queue is
    /// full and it is dropped.
    pub(crate) fn push(&mut self, now: Instant, len: usize, datagram: T) -> bool {
        let free_at = self.busy_until.filter(|t| *t > now).unwrap_or(now);
        let wait = free_at - now;
        if wait > self.limit.queue {
            self.dropped += 1;
            return false;
        }
        self.max_wait = self.max_wait.max(wait);
        let bits = ((len + IP_UDP_OVERHEAD) * 8) as u64;
        let micros = bits * 1000 / u64::from(self.limit.kbps.max(1));
        let out_at = free_at + Duration::from_micros(micros);
        self.busy_until = Some(out_at);
        self.queue.push_back((out_at, datagram));
        true
    }

    /// When the next datagram comes out, if any is on its way.
    pub(crate) fn next_out(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// The next datagram that has crossed the link by `now`.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<T> {
        if self.next_out()? > now {
            return None;
        }
        self.delivered += 1;
        self.queue.pop_front().map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kbps: u32, queue_ms: u64) -> Downlink<u32> {
        Downlink::new(DownlinkLimit {
            kbps,
            queue: Duration::from_millis(queue_ms),
        })
    }

    #[test]
    fn carries_at_its_rate() {
        let t0 = Instant::now();
        // 972 + 28 bytes = 8000 bits: 10 ms each at 800 kbit/s.
        let mut l = link(800, 1000);
        for i in 0..3 {
            assert!(l.push(t0, 972, i));
        }
        assert_eq!(l.next_out(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(l.pop(t0 + Duration::from_millis(9)), None);
        assert_eq!(l.pop(t0 + Duration::from_millis(10)), Some(0));
        assert_eq!(l.pop(t0 + Duration::from_millis(25)), Some(1));
        assert_eq!(l.pop(t0 + Duration::from_millis(25)), None);
        assert_eq!(l.pop(t0 + Duration::from_millis(30)), Some(2));
        // An idle link carries the next one at once, not after the old backlog.
        assert!(l.push(t0 + Duration::from_secs(1), 972, 3));
        assert_eq!(
            l.next_out(),
            Some(t0 + Duration::from_secs(1) + Duration::from_millis(10))
        );
    }

    #[test]
    fn drops_what_would_wait_longer_than_the_queue() {
        let t0 = Instant::now();
        // 10 ms per datagram, at most 50 ms of waiting: 6 in (the sixth waits exactly 50).
        let mut l = link(800, 50);
        let kept = (0..20).filter(|i| l.push(t0, 972, *i)).count();
        assert_eq!(kept, 6);
        assert_eq!(l.dropped, 14);
        assert_eq!(l.max_wait, Duration::from_millis(50));
        // Once the queue drains, datagrams get through again.
        let later = t0 + Duration::from_millis(60);
        while l.pop(later).is_some() {}
        assert_eq!(l.delivered, 6);
        assert!(l.push(later, 972, 99));
    }

    #[test]
    fn long_run_rate_is_the_limit() {
        // Offered 1 Mbit/s for 10 s through a 300 kbit/s link: about 300 kbit/s come out.
        let t0 = Instant::now();
        let mut l = link(300, 100);
        let mut bits = 0;
        for ms in 0..10_000 {
            let now = t0 + Duration::from_millis(ms);
            l.push(now, 97, 0);
            while l.pop(now).is_some() {
                bits += (97 + IP_UDP_OVERHEAD) * 8;
            }
        }
        let kbps = bits / 10_000;
        assert!((290..=300).contains(&kbps), "{kbps} kbit/s");
        assert!(l.dropped > 0);
    }
}

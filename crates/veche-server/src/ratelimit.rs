//! Per-connection message rate limiting. Time comes in as a value, so the policy is tested
//! without clocks or sockets.

use std::time::{Duration, Instant};

/// How many times the allowed rate, sustained over one window, marks a connection as abusive.
const ABUSE_FACTOR: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Drop the message. `notify` is true for the first drop in a window, so a flooding client
    /// gets told without us answering every message.
    Drop {
        notify: bool,
    },
    /// The client is far over the limit: close the connection.
    Close,
}

/// A token bucket (`rate` tokens per second, at most `burst` saved up) plus a one-second
/// window counting everything received, allowed or not, to spot sustained abuse.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_refill: Instant,
    window_start: Instant,
    received_in_window: u32,
    notified_in_window: bool,
    abuse_threshold: u32,
}

impl RateLimiter {
    pub(crate) fn new(per_sec: u32, burst: u32, now: Instant) -> RateLimiter {
        // A burst smaller than one second's worth would make the per-second rate unreachable.
        let burst = burst.max(per_sec).max(1);
        RateLimiter {
            rate: f64::from(per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last_refill: now,
            window_start: now,
            received_in_window: 0,
            notified_in_window: false,
            // The burst is allowed on top, so a client that saved up tokens and then spends
            // them is not mistaken for an abuser.
            abuse_threshold: per_sec.saturating_mul(ABUSE_FACTOR).saturating_add(burst),
        }
    }

    /// Accounts for one message received at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.received_in_window = 0;
            self.notified_in_window = false;
        }
        self.received_in_window = self.received_in_window.saturating_add(1);
        if self.received_in_window > self.abuse_threshold {
            return Verdict::Close;
        }

        let elapsed = now.saturating_duration_since(self.last_refill);
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Verdict::Allow
        } else {
            let notify = !self.notified_in_window;
            self.notified_in_window = true;
            Verdict::Drop { notify }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn allows_the_burst_then_drops() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 20, t0);
        for _ in 0..20 {
            assert_eq!(rl.check(t0), Verdict::Allow);
        }
        assert_eq!(rl.check(t0), Verdict::Drop { notify: true });
        assert_eq!(rl.check(t0), Verdict::Drop { notify: false });
    }

    #[test]
    fn refills_at_the_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 10, t0);
        for _ in 0..10 {
            assert_eq!(rl.check(t0), Verdict::Allow);
        }
        assert!(matches!(rl.check(t0), Verdict::Drop { .. }));
        // 100 ms buys exactly one more message at 10/s.
        assert_eq!(rl.check(t0 + ms(100)), Verdict::Allow);
        assert!(matches!(rl.check(t0 + ms(100)), Verdict::Drop { .. }));
    }

    #[test]
    fn steady_client_at_the_rate_is_never_limited() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(50, 100, t0);
        for i in 0..1000 {
            assert_eq!(rl.check(t0 + ms(20 * i)), Verdict::Allow, "message {i}");
        }
    }

    #[test]
    fn notifies_once_per_window() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1, 1, t0);
        assert_eq!(rl.check(t0), Verdict::Allow);
        assert_eq!(rl.check(t0), Verdict::Drop { notify: true });
        assert_eq!(rl.check(t0 + ms(500)), Verdict::Drop { notify: false });
        // A new window, and the token has refilled.
        assert_eq!(rl.check(t0 + ms(1000)), Verdict::Allow);
        assert_eq!(rl.check(t0 + ms(1000)), Verdict::Drop { notify: true });
    }

    #[test]
    fn closes_a_flood() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 20, t0);
        // 5 × 10 + 20 messages are tolerated (most dropped); the next one closes.
        for _ in 0..70 {
            assert_ne!(rl.check(t0), Verdict::Close);
        }
        assert_eq!(rl.check(t0), Verdict::Close);
    }

    #[test]
    fn moderate_overuse_is_only_dropped() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 10, t0);
        // Twice the rate for ten seconds: drops, never a close.
        for i in 0..200 {
            assert_ne!(rl.check(t0 + ms(50 * i)), Verdict::Close);
        }
    }
}

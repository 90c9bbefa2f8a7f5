//! A log-linear histogram of microsecond values: exact below 16, then 16 buckets per power of
//! two (at most 6.25 % relative error). Fixed size, no allocation per value, and two
//! snapshots subtract to give the values recorded between them.

/// Buckets: 16 exact ones, then 16 per power of two from 2^4 to 2^63.
const BUCKETS: usize = 16 + 60 * 16;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

fn index(v: u64) -> usize {
    if v < 16 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize; // 4..=63
    let sub = ((v >> (e - 4)) & 15) as usize;
    (e - 3) * 16 + sub
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < 16 {
        return i as u64;
    }
    let e = i / 16 + 3;
    let sub = (i % 16) as u64;
    ((16 + sub + 1) << (e - 4)).wrapping_sub(1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The values recorded since the snapshot `earlier` of this histogram.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (a, b) in out.counts.iter_mut().zip(earlier.counts.iter()) {
            *a = a.saturating_sub(*b);
        }
        out.total = out.counts.iter().sum();
        out
    }

    /// The value at quantile `q` (0..=1), as the upper bound of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }

    /// The upper bound of the highest non-empty bucket; 0 when empty.
    pub fn max(&self) -> u64 {
        self.counts
            .iter()
            .rposition(|c| *c > 0)
            .map_or(0, upper_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in [0u64, 1, 15, 16, 17, 31, 32, 33, 1000, 123_456, u64::MAX / 3] {
            let i = index(v);
            assert!(upper_bound(i) >= v, "{v}");
            if i > 0 {
                assert!(upper_bound(i - 1) < v, "{v}");
            }
            assert!(
                (upper_bound(i) - v) as f64 <= v as f64 * 0.0625 + 1.0,
                "{v}"
            );
        }
    }

    #[test]
    fn quantiles_and_window() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v * 100);
        }
        let p50 = h.quantile(0.5);
        assert!((4800..=5300).contains(&p50), "{p50}");
        assert!(h.max() >= 10_000 && h.max() < 10_700);
        let snapshot = h.clone();
        h.record(1_000_000);
        let w = h.since(&snapshot);
        assert_eq!(w.count(), 1);
        assert!(w.quantile(0.5) >= 1_000_000);
        let mut m = Histogram::default();
        m.merge(&h);
        assert_eq!(m.count(), 101);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}

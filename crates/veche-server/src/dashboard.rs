//! What the operator's dashboard needs beyond the store: who is in which meeting right now
//! (for peak concurrency), and forwarding rates from the SFU's counters. Both are plain
//! state machines — time comes in as a value — driven by the event writer and the API.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use veche_proto::ParticipantId;

/// Default of [`DashboardSettings::max_buckets`]: a month of hours, or nearly three years
/// of days.
pub const DEFAULT_MAX_USAGE_BUCKETS: i64 = 1000;

/// The operator's limits on dashboard queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardSettings {
    /// Most buckets one usage series (or CSV export) may have.
    pub max_buckets: i64,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            max_buckets: DEFAULT_MAX_USAGE_BUCKETS,
        }
    }
}

/// The participants of each running meeting with a stored record, mirrored from the SFU's
/// join and leave events.
///
/// Driving contract: call [`LiveUsage::joined`] for every `ParticipantJoined`,
/// [`LiveUsage::left`] for every `ParticipantLeft` and [`LiveUsage::finished`] for every
/// `MeetingFinished` (members still in a meeting when it ends get no leave event). A
/// participant who joins twice (a dropped connection coming back) counts once.
#[derive(Debug, Default)]
pub struct LiveUsage {
    meetings: HashMap<String, LiveMeeting>,
}

#[derive(Debug)]
struct LiveMeeting {
    org_id: String,
    participants: HashSet<ParticipantId>,
}

/// Participants in meetings now: of one organisation, and of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub org: usize,
    pub total: usize,
}

impl LiveUsage {
    pub fn joined(&mut self, meeting_id: &str, org_id: &str, id: ParticipantId) -> Concurrency {
        self.meetings
            .entry(meeting_id.to_owned())
            .or_insert_with(|| LiveMeeting {
                org_id: org_id.to_owned(),
                participants: HashSet::new(),
            })
            .participants
            .insert(id);
        self.concurrency(org_id)
    }

    pub fn left(&mut self, meeting_id: &str, id: ParticipantId) {
        if let Some(m) = self.meetings.get_mut(meeting_id) {
            m.participants.remove(&id);
            if m.participants.is_empty() {
                self.meetings.remove(meeting_id);
            }
        }
    }

    pub fn finished(&mut self, meeting_id: &str) {
        self.meetings.remove(meeting_id);
    }

    pub fn concurrency(&self, org_id: &str) -> Concurrency {
        let mut c = Concurrency { org: 0, total: 0 };
        for m in self.meetings.values() {
            c.total += m.participants.len();
            if m.org_id == org_id {
                c.org += m.participants.len();
            }
        }
        c
    }

    /// Participants in meetings now, per organisation that has any.
    pub fn per_org(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for m in self.meetings.values() {
            *out.entry(m.org_id.clone()).or_default() += m.participants.len();
        }
        out
    }

    /// Meetings running now, per organisation that has any.
    pub fn meetings_per_org(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for m in self.meetings.values() {
            *out.entry(m.org_id.clone()).or_default() += 1;
        }
        out
    }
}

/// Forwarding rates from two readings of monotonic counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Over how long the rate was measured, in seconds.
    pub window_secs: f64,
}

/// Readings of the forwarding counters over the last [`RateWindow::SPAN`]; a rate is the
/// difference between the newest and the oldest. Readings closer together than
/// [`RateWindow::STEP`] are not kept, so many callers polling fast do not shrink the window.
#[derive(Debug, Default)]
pub struct RateWindow {
    readings: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    pub const SPAN: Duration = Duration::from_secs(10);
    pub const STEP: Duration = Duration::from_secs(1);

    /// Adds a reading of the totals at `now` and returns the rate since the oldest one kept
    /// (`None` until two readings at least [`RateWindow::STEP`] apart exist).
    pub fn observe(&mut self, now: Instant, packets: u64, bytes: u64) -> Option<Rate> {
        let keep = self
            .readings
            .back()
            .is_none_or(|(at, _, _)| now.saturating_duration_since(*at) >= Self::STEP);
        if keep {
            self.readings.push_back((now, packets, bytes));
        }
        while self.readings.len() > 2
            && self
                .readings
                .get(1)
                .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= Self::SPAN)
        {
            self.readings.pop_front();
        }
        let (at0, p0, b0) = *self.readings.front()?;
        let window = now.saturating_duration_since(at0);
        if window < Self::STEP {
            return None;
        }
        let secs = window.as_secs_f64();
        Some(Rate {
            // Counters restart with the server; a smaller reading is no negative rate.
            packets_per_sec: packets.saturating_sub(p0) as f64 / secs,
            bytes_per_sec: bytes.saturating_sub(b0) as f64 / secs,
            window_secs: secs,
        })
    }
}

/// The dashboard's shared state: the live participants (written by the event writer, read
/// by the API) and the rate window. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub settings: DashboardSettings,
    pub live: Arc<Mutex<LiveUsage>>,
    pub rates: Arc<Mutex<RateWindow>>,
}

impl Dashboard {
    pub fn new(settings: DashboardSettings) -> Dashboard {
        Dashboard {
            settings,
            ..Dashboard::default()
        }
    }

    /// The live participants; a panic elsewhere while holding the lock leaves plain
    /// counts behind, still good to read.
    pub fn live(&self) -> std::sync::MutexGuard<'_, LiveUsage> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rates(&self) -> std::sync::MutexGuard<'_, RateWindow> {
        self.rates.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participant_counts_once_and_a_finished_meeting_empties() {
        let mut live = LiveUsage::default();
        assert_eq!(live.joined("m1", "a", 1), Concurrency { org: 1, total: 1 });
        assert_eq!(
            live.joined("m1", "a", 1),
            Concurrency { org: 1, total: 1 },
            "a connection coming back is the same participant"
        );
        assert_eq!(live.joined("m2", "b", 2), Concurrency { org: 1, total: 2 });
        assert_eq!(live.joined("m1", "a", 3).org, 2);
        live.left("m1", 1);
        assert_eq!(live.concurrency("a"), Concurrency { org: 1, total: 2 });
        live.finished("m1");
        assert_eq!(live.concurrency("a"), Concurrency { org: 0, total: 1 });
        live.left("m2", 2);
        assert!(live.per_org().is_empty());
        live.left("nowhere", 9);
    }

    #[test]
    fn rates_come_from_readings_a_second_or_more_apart() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        assert_eq!(w.observe(t0, 0, 0), None);
        assert_eq!(w.observe(t0 + Duration::from_millis(500), 50, 500), None);
        let r = w.observe(t0 + Duration::from_secs(2), 200, 2000).unwrap();
        assert_eq!(r.packets_per_sec, 100.0);
        assert_eq!(r.bytes_per_sec, 1000.0);
        // Old readings fall out of the window.
        let r = w.observe(t0 + Duration::from_secs(30), 200, 2000).unwrap();
        assert!(r.window_secs <= 28.0, "{r:?}");
        assert_eq!(r.packets_per_sec, 0.0);
        // A restart (smaller totals) reads as no traffic, not a negative rate.
        let r = w.observe(t0 + Duration::from_secs(31), 10, 10).unwrap();
        assert_eq!(r.packets_per_sec, 0.0);
    }
}

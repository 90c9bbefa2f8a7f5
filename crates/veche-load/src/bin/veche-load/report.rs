//! What a load run measured: totals over all participants, the window's deltas, and the report
//! (a table for people, JSON for scripts).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use veche_load::{Histogram, SIMULCAST_LAYERS, Stats};
use veche_proto::TrackKind;

use crate::proc::CpuTimes;

/// Counters summed over every participant at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub(crate) received_packets: u64,
    pub(crate) received_bytes: u64,
    /// Sender counter values skipped (lost, or recovered later by RTX).
    pub(crate) counter_gaps: u64,
    pub(crate) recovered: u64,
    pub(crate) latency_us: Histogram,
    pub(crate) sent_packets: u64,
    pub(crate) nacks_sent: u64,
    pub(crate) nacks_received: u64,
    pub(crate) keyframe_requests_sent: u64,
    pub(crate) keyframe_requests_received: u64,
    /// Participants whose task has stopped (failed mid-run).
    pub(crate) ended: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, s: &Stats) {
        for t in s.received.values() {
            self.received_packets += t.packets;
            self.received_bytes += t.bytes;
            self.counter_gaps += t.counter_gaps;
            self.recovered += t.recovered;
        }
        self.latency_us.merge(&s.latency_us);
        self.sent_packets += s.sent.audio_packets + s.sent.video_packets + s.sent.screen_packets;
        self.nacks_sent += s.nacks_sent;
        self.nacks_received += s.nacks_received;
        self.keyframe_requests_sent += s.keyframe_requests_sent;
        self.keyframe_requests_received += s.sent.keyframe_request_count;
        self.ended += u64::from(s.ended.is_some());
    }

    pub(crate) fn since(&self, e: &Totals) -> Totals {
        Totals {
            received_packets: self.received_packets - e.received_packets,
            received_bytes: self.received_bytes - e.received_bytes,
            counter_gaps: self.counter_gaps - e.counter_gaps,
            recovered: self.recovered - e.recovered,
            latency_us: self.latency_us.since(&e.latency_us),
            sent_packets: self.sent_packets - e.sent_packets,
            nacks_sent: self.nacks_sent.saturating_sub(e.nacks_sent),
            nacks_received: self.nacks_received.saturating_sub(e.nacks_received),
            keyframe_requests_sent: self
                .keyframe_requests_sent
                .saturating_sub(e.keyframe_requests_sent),
            keyframe_requests_received: self.keyframe_requests_received
                - e.keyframe_requests_received,
            ended: self.ended,
        }
    }

    /// Packets never received: counter gaps not filled by a retransmission.
    pub(crate) fn lost(&self) -> u64 {
        self.counter_gaps.saturating_sub(self.recovered)
    }
}

/// The names of the simulcast layers in the report, lowest first: the RIDs Veche offers and
/// Janus publishers send.
const LAYER_NAMES: [&str; SIMULCAST_LAYERS] = ["q", "h", "f"];

/// The video one receive-only subscriber got over the window.
#[derive(Debug, Clone)]
pub(crate) struct SubscriberVideo {
    tile: Option<(u32, u32)>,
    /// Of its largest remote video: the layer and picture height it ended the window on.
    layer: Option<u8>,
    height: Option<u16>,
    /// Video kbit/s received per layer (payload bytes, all remote videos).
    kbps_by_layer: [f64; SIMULCAST_LAYERS],
    downlink_dropped: u64,
}

impl SubscriberVideo {
    /// From snapshots at the start (`a`) and end (`b`) of a window of `window_s` seconds.
    pub(crate) fn between(tile: Option<(u32, u32)>, a: &Stats, b: &Stats, window_s: f64) -> Self {
        let mut kbps_by_layer = [0.0; SIMULCAST_LAYERS];
        let mut largest: Option<(u64, u8, Option<u16>)> = None;
        for (key, t) in b.received.iter().filter(|(k, _)| k.1 == TrackKind::Video) {
            let before = a.received.get(key);
            let mut bytes = 0;
            for (l, rate) in kbps_by_layer.iter_mut().enumerate() {
                let got = t.layer_bytes[l] - before.map_or(0, |t| t.layer_bytes[l]);
                *rate += got as f64 * 8.0 / window_s / 1000.0;
                bytes += got;
            }
            if largest.is_none_or(|(most, _, _)| bytes > most) {
                largest = Some((bytes, t.layer, t.frame_size.map(|(_, h)| h)));
            }
        }
        SubscriberVideo {
            tile,
            layer: largest.map(|(_, l, _)| l),
            height: largest.and_then(|(_, _, h)| h),
            kbps_by_layer,
            downlink_dropped: b.downlink_dropped - a.downlink_dropped,
        }
    }

    fn kbps(&self) -> f64 {
        self.kbps_by_layer.iter().sum()
    }

    fn tile_name(&self) -> String {
        self.tile
            .map_or_else(|| "none".to_owned(), |(w, h)| format!("{w}x{h}"))
    }

    fn layer_name(&self) -> Option<&'static str> {
        self.layer
            .and_then(|l| LAYER_NAMES.get(usize::from(l)).copied())
    }

    fn to_json(&self) -> Value {
        let by_layer: serde_json::Map<String, Value> = LAYER_NAMES
            .iter()
            .zip(self.kbps_by_layer)
            .map(|(n, k)| ((*n).to_owned(), json!(round(k, 1))))
            .collect();
        json!({
            "tile": self.tile_name(),
            "layer": self.layer_name(),
            "height": self.height,
            "video_kbps": round(self.kbps(), 1),
            "video_kbps_by_layer": by_layer,
            "downlink_dropped": self.downlink_dropped,
        })
    }
}

/// Subscribers grouped by tile: how many ended on each layer, and their video rates.
fn by_tile(subscribers: &[SubscriberVideo]) -> Value {
    let mut groups: BTreeMap<String, Vec<&SubscriberVideo>> = BTreeMap::new();
    for s in subscribers {
        groups.entry(s.tile_name()).or_default().push(s);
    }
    let groups: serde_json::Map<String, Value> = groups
        .into_iter()
        .map(|(tile, subs)| {
            let mut on_layer: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &subs {
                *on_layer
                    .entry(s.layer_name().unwrap_or("none"))
                    .or_default() += 1;
            }
            let mut rates: Vec<f64> = subs.iter().map(|s| s.kbps()).collect();
            rates.sort_by(f64::total_cmp);
            let group = json!({
                "subscribers": subs.len(),
                "on_layer": on_layer,
                "video_kbps_min": round(rates[0], 1),
                "video_kbps_p50": round(rates[rates.len() / 2], 1),
                "video_kbps_max": round(rates[rates.len() - 1], 1),
            });
            (tile, group)
        })
        .collect();
    Value::Object(groups)
}

/// The server's resources over the window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerUse {
    pub(crate) pid: u32,
    pub(crate) cpu: CpuTimes,
    pub(crate) rss_mib: f64,
}

pub(crate) struct Report {
    pub(crate) config: Value,
    /// Receivers of each publisher's media: the other publishers in its room plus the
    /// subscribers (every room has the same shape).
    pub(crate) receivers_per_publisher: u64,
    /// What all publishers together should send per second (clip and audio rates).
    pub(crate) nominal_sent_pps: f64,
    pub(crate) joined: usize,
    pub(crate) failed: usize,
    pub(crate) join_ms: Histogram,
    pub(crate) window_s: f64,
    pub(crate) window: Totals,
    pub(crate) server: Option<ServerUse>,
    pub(crate) tool_cpu: CpuTimes,
    /// Per receive-only subscriber, in join order.
    pub(crate) subscriber_video: Vec<SubscriberVideo>,
}

impl Report {
    fn pps(&self) -> f64 {
        self.window.received_packets as f64 / self.window_s
    }

    fn loss_pct(&self) -> f64 {
        let lost = self.window.lost();
        let expected = self.window.received_packets + lost;
        if expected == 0 {
            return 0.0;
        }
        100.0 * lost as f64 / expected as f64
    }

    /// Packets the subscribers should have received: what the publishers sent in the window
    /// times the receivers of each.
    fn expected(&self) -> u64 {
        self.window.sent_packets * self.receivers_per_publisher
    }

    /// Received / expected: catches what counter gaps cannot see, such as a track that
    /// never arrives at all (retransmissions can push it slightly above 100).
    fn delivered_pct(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            e => 100.0 * self.window.received_packets as f64 / e as f64,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let w = &self.window;
        let server = self.server.map(|s| {
            let cpu_s = s.cpu.total_s();
            json!({
                "pid": s.pid,
                "cpu_user_s": round(s.cpu.user_s, 2),
                "cpu_system_s": round(s.cpu.system_s, 2),
                "cpu_pct_of_one_core": round(100.0 * cpu_s / self.window_s, 1),
                "cpu_us_per_packet": (w.received_packets > 0)
                    .then(|| round(cpu_s * 1e6 / w.received_packets as f64, 3)),
                "packets_per_cpu_s": (cpu_s > 0.0)
                    .then(|| round(w.received_packets as f64 / cpu_s, 0)),
                "rss_mib": round(s.rss_mib, 1),
            })
        });
        json!({
            "config": self.config,
            "joined": self.joined,
            "failed": self.failed,
            "join_ms_p50": self.join_ms.quantile(0.5),
            "join_ms_p99": self.join_ms.quantile(0.99),
            "window_s": round(self.window_s, 2),
            "received_packets": w.received_packets,
            "received_packets_per_s": round(self.pps(), 0),
            "received_mbit_per_s": round(w.received_bytes as f64 * 8.0 / self.window_s / 1e6, 2),
            "sent_packets_per_s": round(w.sent_packets as f64 / self.window_s, 0),
            "nominal_sent_packets_per_s": round(self.nominal_sent_pps, 0),
            "expected_packets": self.expected(),
            "delivered_pct": round(self.delivered_pct(), 2),
            "lost_packets": w.lost(),
            "recovered_packets": w.recovered,
            "loss_pct": round(self.loss_pct(), 3),
            "latency_ms_p50": round(w.latency_us.quantile(0.5) as f64 / 1000.0, 2),
            "latency_ms_p99": round(w.latency_us.quantile(0.99) as f64 / 1000.0, 2),
            "latency_ms_max": round(w.latency_us.max() as f64 / 1000.0, 2),
            "nacks_sent": w.nacks_sent,
            "nacks_received": w.nacks_received,
            "plis_sent": w.keyframe_requests_sent,
            "plis_received": w.keyframe_requests_received,
            "participants_ended": w.ended,
            "subscribers_by_tile": by_tile(&self.subscriber_video),
            "subscribers": self.subscriber_video.iter().map(SubscriberVideo::to_json)
                .collect::<Vec<_>>(),
            "server": server,
            "tool": {
                "cpu_user_s": round(self.tool_cpu.user_s, 2),
                "cpu_system_s": round(self.tool_cpu.system_s, 2),
                "cpu_pct_of_one_core": round(100.0 * self.tool_cpu.total_s() / self.window_s, 1),
            },
        })
    }

    pub(crate) fn print_table(&self) {
        let j = self.to_json();
        let w = &self.window;
        println!("veche-load report ({})", self.config);
        let row = |k: &str, v: String| println!("  {k:<34} {v}");
        row(
            "connections joined / failed",
            format!("{} / {}", self.joined, self.failed),
        );
        row(
            "join time p50 / p99 (ms)",
            format!("{} / {}", j["join_ms_p50"], j["join_ms_p99"]),
        );
        row("measurement window (s)", format!("{:.1}", self.window_s));
        row(
            "received packets/s (subscribers)",
            format!("{:.0}", self.pps()),
        );
        row("received Mbit/s", j["received_mbit_per_s"].to_string());
        row(
            "sent packets/s (publishers)",
            j["sent_packets_per_s"].to_string(),
        );
        row(
            "sent packets/s nominal",
            format!("{:.0}", self.nominal_sent_pps),
        );
        row(
            "delivered % (received / expected)",
            format!("{:.2}", self.delivered_pct()),
        );
        row(
            "loss % (lost / recovered by RTX)",
            format!("{:.3} ({} / {})", self.loss_pct(), w.lost(), w.recovered),
        );
        row(
            "latency p50 / p99 / max (ms)",
            format!(
                "{} / {} / {}",
                j["latency_ms_p50"], j["latency_ms_p99"], j["latency_ms_max"]
            ),
        );
        row(
            "NACKs sent / received",
            format!("{} / {}", w.nacks_sent, w.nacks_received),
        );
        row(
            "PLIs sent / received",
            format!(
                "{} / {}",
                w.keyframe_requests_sent, w.keyframe_requests_received
            ),
        );
        if w.ended > 0 {
            row("participants ended early", w.ended.to_string());
        }
        if let Some(groups) = j["subscribers_by_tile"].as_object() {
            for (tile, g) in groups {
                row(
                    &format!("subscribers, tile {tile}"),
                    format!(
                        "{} on layers {}, video kbit/s p50 {} ({} – {})",
                        g["subscribers"],
                        g["on_layer"],
                        g["video_kbps_p50"],
                        g["video_kbps_min"],
                        g["video_kbps_max"]
                    ),
                );
            }
        }
        if let Some(s) = j["server"].as_object() {
            row(
                "server CPU user / system (s)",
                format!("{} / {}", s["cpu_user_s"], s["cpu_system_s"]),
            );
            row(
                "server CPU % of one core",
                s["cpu_pct_of_one_core"].to_string(),
            );
            row(
                "server CPU µs per forwarded packet",
                s["cpu_us_per_packet"].to_string(),
            );
            row(
                "server forwarded packets per CPU-s",
                s["packets_per_cpu_s"].to_string(),
            );
            row("server RSS (MiB)", s["rss_mib"].to_string());
        }
        row(
            "load tool CPU user / system (s)",
            format!(
                "{:.2} / {:.2}",
                self.tool_cpu.user_s, self.tool_cpu.system_s
            ),
        );
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

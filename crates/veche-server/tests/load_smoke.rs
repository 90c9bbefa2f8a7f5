//! A short smoke run of the load generator against the real `veche` binary: one publisher
//! sending the real VP8 clip and Opus to five subscribers for a few seconds. It checks that
//! media flowed with little loss and that the numbers the load report is built from are sane.
//! Not a performance test: no timing or throughput thresholds (the benchmark is
//! `bench/compare-janus.sh`, outside CI).

use crate::common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::{CONNECT_TIMEOUT, Server};
use veche_load::{Clip, Histogram, ParticipantOptions, SyntheticParticipant};
use veche_proto::TrackKind;

const SUBSCRIBERS: usize = 5;
const WINDOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_to_five_subscribers_flows_with_low_loss() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let url = server.ws_url();
    let publisher_opts = ParticipantOptions {
        clip: Some(Clip::builtin(1000)),
        ..ParticipantOptions::default()
    };
    let publisher = SyntheticParticipant::join(&url, "smoke", "pub", publisher_opts).await?;
    publisher.wait_connected(CONNECT_TIMEOUT).await?;
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let s = SyntheticParticipant::join(
            &url,
            "smoke",
            &format!("sub-{i}"),
            ParticipantOptions::receive_only(),
        )
        .await?;
        s.wait_connected(CONNECT_TIMEOUT).await?;
        subscribers.push(s);
    }
    // Start measuring once every subscriber has video (its first key frame arrived).
    for s in &subscribers {
        s.wait_for(CONNECT_TIMEOUT, |st| {
            st.from(publisher.id(), TrackKind::Video).keyframes > 0
        })
        .await
        .with_context(|| format!("subscriber {} never got a key frame", s.id()))?;
    }
    let before: Vec<_> = subscribers.iter().map(|s| s.stats()).collect();
    tokio::time::sleep(WINDOW).await;

    let mut packets = 0;
    let mut lost = 0;
    let mut latency = Histogram::default();
    for (s, before) in subscribers.iter().zip(&before) {
        let after = s.stats();
        ensure!(
            after.ended.is_none(),
            "subscriber stopped: {:?}",
            after.ended
        );
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let (a, b) = (
                after.from(publisher.id(), kind),
                before.from(publisher.id(), kind),
            );
            let got = a.packets - b.packets;
            ensure!(
                got > 0,
                "subscriber {} got no {kind:?} in {WINDOW:?}",
                s.id()
            );
            packets += got;
            lost += (a.counter_gaps - b.counter_gaps).saturating_sub(a.recovered - b.recovered);
        }
        latency.merge(&after.latency_us.since(&before.latency_us));
    }
    let loss = lost as f64 / (packets + lost) as f64;
    eprintln!(
        "smoke: {packets} packets to {SUBSCRIBERS} subscribers in {WINDOW:?}, loss {:.3} %, \
         latency p50 {} µs p99 {} µs max {} µs",
        100.0 * loss,
        latency.quantile(0.5),
        latency.quantile(0.99),
        latency.max()
    );
    ensure!(loss < 0.02, "loss {:.2} % (>= 2 %)", 100.0 * loss);
    ensure!(latency.count() > 0, "no latency measured");
    let p99 = latency.quantile(0.99);
    // Sanity, not timing: a latency is positive and below the window (same-process clocks).
    ensure!(
        p99 > 0 && p99 < WINDOW.as_micros() as u64,
        "implausible latency p99 {p99} µs"
    );
    // The publisher sent the clip's key frames and its packets counted.
    let sent = publisher.stats().sent;
    ensure!(sent.video_packets > 0 && sent.audio_packets > 0 && sent.keyframes > 0);
    server.pass();
    Ok(())
}

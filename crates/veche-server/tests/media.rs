//! Media through the real server: synthetic str0m participants join over the real WebSocket
//! and exchange Opus and VP8 RTP over real ICE, DTLS and SRTP on loopback.

use crate::common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{
    Server, assert_clean, assert_no_gap, join_connected, published_tracks, summary, wait_mesh,
};
use veche_load::{ParticipantOptions, SyntheticParticipant};
use veche_proto::{ServerMessage, TrackKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_receive_each_other_in_order_and_survive_a_leave() -> anyhow::Result<()>
{
    let server = Server::start().await?;
    let a = join_connected(&server, "media", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "media", "Bob", ParticipantOptions::default()).await?;
    let c = join_connected(&server, "media", "Cid", ParticipantOptions::default()).await?;

    // ~3 s of audio (50/s) and video (60 packets/s) from each to each.
    wait_mesh(&[&a, &b, &c], 150, 150, Duration::from_secs(20)).await?;
    for p in [&a, &b, &c] {
        assert_clean(p)?;
        for o in [&a, &b, &c].into_iter().filter(|o| o.id() != p.id()) {
            for kind in [TrackKind::Audio, TrackKind::Video] {
                ensure!(
                    published_tracks(p).contains(&(o.id(), kind)),
                    "{} was never told about {}'s {kind:?}",
                    p.id(),
                    o.id()
                );
            }
            ensure!(
                p.stats().from(o.id(), TrackKind::Video).keyframes > 0,
                "{} got no key frame from {}",
                p.id(),
                o.id()
            );
        }
    }

    let c_id = c.id();
    let offers_before = (a.stats().offers, b.stats().offers);
    c.leave().await.context("C leaving")?;
    for p in [&a, &b] {
        p.wait_for_event(Duration::from_secs(5), |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == c_id)
        })
        .await
        .with_context(|| format!("{} hearing that {c_id} left", p.id()))?;
        for kind in [TrackKind::Audio, TrackKind::Video] {
            p.wait_for_event(Duration::from_secs(5), |m| {
                matches!(m, ServerMessage::TrackUnpublished { participant_id, kind: k, .. }
                    if *participant_id == c_id && *k == kind)
            })
            .await
            .with_context(|| format!("{} hearing that {c_id}'s {kind:?} ended", p.id()))?;
        }
    }

    // A and B keep receiving each other, without a gap, for several seconds after the leave
    // (and the renegotiation it causes).
    for _ in 0..3 {
        let before = (a.stats(), b.stats());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = (a.stats(), b.stats());
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let a_got = after.0.packets_from(b.id(), kind) - before.0.packets_from(b.id(), kind);
            let b_got = after.1.packets_from(a.id(), kind) - before.1.packets_from(a.id(), kind);
            // 50 (audio) or 60 (video) per second are sent; allow for a busy machine.
            ensure!(
                a_got >= 25 && b_got >= 25,
                "{kind:?} slowed after the leave: A got {a_got}/s from B, B got {b_got}/s from A \
                 (A: {}; B: {})",
                summary(&after.0),
                summary(&after.1)
            );
        }
    }
    assert_clean(&a)?;
    assert_clean(&b)?;
    // Not even C's join and leave made A and B's media pause.
    assert_no_gap(&a, &[&b])?;
    assert_no_gap(&b, &[&a])?;
    // The leave was renegotiated (C's m-lines stopped), and both answered without a hitch.
    let offers_after = (a.stats().offers, b.stats().offers);
    ensure!(
        offers_after.0 > offers_before.0 && offers_after.1 > offers_before.1,
        "offers before/after the leave: {offers_before:?} / {offers_after:?}"
    );
    ensure!(server.healthz().await? == 200);

    // The metrics saw the same traffic: every packet A and B received was forwarded once.
    let (a_now, b_now) = (a.stats(), b.stats());
    let received = |f: fn(&veche_load::TrackStats) -> u64| {
        [&a_now, &b_now]
            .iter()
            .flat_map(|s| s.received.values())
            .map(f)
            .sum::<u64>()
    };
    let (packets, bytes) = (received(|t| t.packets), received(|t| t.bytes));
    let forwarded = server.metric("veche_forwarded_packets_total").await?;
    let forwarded_bytes = server.metric("veche_forwarded_bytes_total").await?;
    ensure!(
        forwarded >= packets && forwarded_bytes >= bytes,
        "metrics say {forwarded} packets / {forwarded_bytes} bytes forwarded, but A and B \
         alone received {packets} / {bytes}"
    );
    ensure!(server.metric("veche_participants").await? == 2);
    ensure!(server.metric("veche_rooms").await? == 1);
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscriber_gets_a_keyframe_at_once() -> anyhow::Result<()> {
    let server = Server::start().await?;
    // Periodic key frames rarely enough that only a keyframe request explains a quick one.
    let publisher_opts = ParticipantOptions {
        keyframe_interval: Duration::from_secs(600),
        ..Default::default()
    };
    let a = join_connected(&server, "keyframe", "Ann", publisher_opts).await?;
    // Let A's first key frame (sent on connecting, to nobody) pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests_before = a.stats().sent.keyframe_request_count;

    let b_joined = Instant::now();
    let b = join_connected(
        &server,
        "keyframe",
        "Bob",
        ParticipantOptions::receive_only(),
    )
    .await?;
    let b_connected = b.stats().connected_at.context("B connected")?;
    let got = b
        .wait_for(Duration::from_secs(5), |s| {
            s.from(a.id(), TrackKind::Video).keyframes > 0
        })
        .await
        .with_context(|| {
            format!(
                "B receiving a key frame from A; B has {}",
                summary(&b.stats())
            )
        })?;
    let first_key = got
        .from(a.id(), TrackKind::Video)
        .first_keyframe_at
        .context("key frame arrived")?;

    let a_stats = a.stats();
    ensure!(
        a_stats.sent.keyframe_request_count > requests_before,
        "A saw no keyframe request after B subscribed: {}",
        summary(&a_stats)
    );
    let request = a_stats
        .sent
        .keyframe_requests
        .iter()
        .find(|t| **t >= b_joined)
        .context("a keyframe request after B joined")?;
    ensure!(
        *request <= b_connected + Duration::from_secs(1),
        "A's keyframe request came {:?} after B connected",
        request.saturating_duration_since(b_connected)
    );
    // B's picture can start within a second of its media connecting (not at A's next
    // periodic key frame, minutes away).
    let waited = first_key.saturating_duration_since(b_connected);
    eprintln!(
        "B: join to media connected {:?}, connected to first key frame {waited:?}, \
         keyframe request {:?} after connecting",
        b_connected - b_joined,
        request.saturating_duration_since(b_connected)
    );
    ensure!(
        waited <= Duration::from_secs(1),
        "B's first key frame from A came {waited:?} after connecting"
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_packets_are_retransmitted() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = join_connected(&server, "nack", "Ann", ParticipantOptions::default()).await?;
    // 5 % loss on B's downlink: B's str0m NACKs, the SFU has to retransmit (RTX).
    let lossy = ParticipantOptions {
        drop_every_nth_rtp: Some(20),
        ..ParticipantOptions::receive_only()
    };
    let b = join_connected(&server, "nack", "Bob", lossy).await?;
    b.wait_for(Duration::from_secs(20), |s| {
        s.packets_from(a.id(), TrackKind::Video) >= 400
    })
    .await
    .with_context(|| format!("B receiving A's video; B has {}", summary(&b.stats())))?;
    // Let the NACKs of the last losses be answered.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stats = b.stats();
    let video = stats.from(a.id(), TrackKind::Video);
    eprintln!(
        "B dropped {} datagrams; A's video: {} gaps, {} recovered",
        stats.dropped_on_purpose, video.seq_gaps, video.recovered
    );
    ensure!(
        video.seq_gaps >= 10,
        "too few losses to judge retransmission: {video:?}"
    );
    ensure!(
        video.recovered * 10 >= video.seq_gaps * 9,
        "only {} of {} lost video packets were retransmitted",
        video.recovered,
        video.seq_gaps
    );
    ensure!(
        video.disorder() == 0,
        "video disordered beyond the repaired losses: {video:?}"
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_participant_is_removed_and_the_rest_carry_on() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = join_connected(&server, "vanish", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "vanish", "Bob", ParticipantOptions::default()).await?;
    let c = join_connected(&server, "vanish", "Cid", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b, &c], 25, 25, Duration::from_secs(20)).await?;

    let c_id = c.id();
    c.kill();
    // Its place is kept for a reattach (the socket went without a goodbye), but its media
    // is gone too: once ICE has heard nothing for 15 s (str0m's ICE-lite timeout) it leaves.
    for p in [&a, &b] {
        p.wait_for_event(Duration::from_secs(25), |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == c_id)
        })
        .await
        .with_context(|| format!("{} hearing that {c_id} vanished", p.id()))?;
    }
    let before = (a.stats(), b.stats());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a_now, b_now) = (a.stats(), b.stats());
    for kind in [TrackKind::Audio, TrackKind::Video] {
        ensure!(
            a_now.packets_from(b.id(), kind) > before.0.packets_from(b.id(), kind) + 20
                && b_now.packets_from(a.id(), kind) > before.1.packets_from(a.id(), kind) + 20,
            "{kind:?} between A and B slowed after C vanished"
        );
    }
    assert_clean(&a)?;
    assert_clean(&b)?;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_reaches_the_others_and_ends_cleanly() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = join_connected(&server, "screen", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "screen", "Bob", ParticipantOptions::default()).await?;
    let c = join_connected(&server, "screen", "Cid", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b, &c], 25, 25, Duration::from_secs(20)).await?;

    a.share_screen(true)?;
    for p in [&b, &c] {
        p.wait_for_event(Duration::from_secs(5), |m| {
            matches!(m, ServerMessage::TrackPublished { participant_id, kind: TrackKind::Screen, .. }
                if *participant_id == a.id())
        })
        .await
        .with_context(|| format!("{} told about A's screen", p.id()))?;
        // 5 frames/s of 2 packets, starting with a key frame.
        p.wait_for(Duration::from_secs(10), |s| {
            let screen = s.from(a.id(), TrackKind::Screen);
            screen.packets >= 10 && screen.keyframes > 0
        })
        .await
        .with_context(|| format!("{} receiving A's screen: {}", p.id(), summary(&p.stats())))?;
    }

    a.share_screen(false)?;
    for p in [&b, &c] {
        p.wait_for_event(Duration::from_secs(5), |m| {
            matches!(m, ServerMessage::TrackUnpublished { participant_id, kind: TrackKind::Screen, .. }
                if *participant_id == a.id())
        })
        .await
        .with_context(|| format!("{} told A's screen ended", p.id()))?;
    }
    // Let packets in flight land, then the screen stays quiet while the rest flows on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.stats();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = b.stats();
    ensure!(
        after.packets_from(a.id(), TrackKind::Screen)
            == before.packets_from(a.id(), TrackKind::Screen),
        "A's screen still arriving after the share ended"
    );
    for kind in [TrackKind::Audio, TrackKind::Video] {
        ensure!(
            after.packets_from(a.id(), kind) > before.packets_from(a.id(), kind) + 20,
            "A's {kind:?} slowed after the screen share ended"
        );
    }
    for p in [&a, &b, &c] {
        assert_clean(p)?;
    }
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_joins_converge_to_a_full_mesh() -> anyhow::Result<()> {
    let server = Server::start().await?;
    // Six join at once: the server renegotiates with each while the others keep arriving.
    let joins = ["P1", "P2", "P3", "P4", "P5", "P6"]
        .map(|n| join_connected(&server, "crowd", n, ParticipantOptions::default()));
    let ps = futures_util::future::try_join_all(joins).await?;
    let refs: Vec<&SyntheticParticipant> = ps.iter().collect();
    wait_mesh(&refs, 50, 50, Duration::from_secs(30)).await?;
    for p in &ps {
        assert_clean(p)?;
    }
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_do_not_interrupt_the_call() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = join_connected(&server, "churn", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "churn", "Bob", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b], 25, 25, Duration::from_secs(20)).await?;

    for round in 0..4 {
        let c = join_connected(
            &server,
            "churn",
            &format!("C{round}"),
            ParticipantOptions::default(),
        )
        .await?;
        wait_mesh(&[&a, &b, &c], 10, 10, Duration::from_secs(20))
            .await
            .with_context(|| format!("round {round}"))?;
        if round % 2 == 0 {
            c.leave().await?;
        } else {
            c.kill();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_no_gap(&a, &[&b])?;
    assert_no_gap(&b, &[&a])?;
    assert_clean(&a)?;
    assert_clean(&b)?;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_restarted_at_once_still_reaches_the_others() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = join_connected(&server, "reshare", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "reshare", "Bob", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b], 25, 25, Duration::from_secs(20)).await?;

    // What a browser does when the user picks another window to share: stop, start again,
    // faster than one renegotiation round trip.
    a.share_screen(true)?;
    a.share_screen(false)?;
    a.share_screen(true)?;
    b.wait_for(Duration::from_secs(10), |s| {
        s.packets_from(a.id(), TrackKind::Screen) >= 10
    })
    .await
    .with_context(|| format!("B receiving A's restarted screen: {}", summary(&b.stats())))?;
    assert_no_gap(&a, &[&b])?;
    assert_no_gap(&b, &[&a])?;
    assert_clean(&a)?;
    assert_clean(&b)?;
    server.pass();
    Ok(())
}

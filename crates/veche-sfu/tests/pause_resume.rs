//! A remote video the client does not render is paused — nothing is forwarded — and resumes
//! at a keyframe within a second of being listed again.

use crate::common;

use std::time::Duration;

use common::{Sim, camera_tile};
use veche_proto::{ClientMessage, TrackKind};
use veche_sfu::Limits;

#[test]
fn an_unlisted_tile_is_paused_and_resumes_within_a_second() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_secs(1));
    let ann = sim.clients[a].id;
    let shown = camera_tile(ann, 640, 360);
    sim.send(b, shown.clone());
    sim.run_for(Duration::from_secs(1));
    assert!(sim.clients[b].stats(ann, TrackKind::Video).packets > 30);

    // Hidden: not listed at all.
    sim.send(b, ClientMessage::VideoSizes { sizes: vec![] });
    // What was in flight lands.
    sim.run_for(Duration::from_millis(100));
    let paused = sim.clients[b].stats(ann, TrackKind::Video);
    let audio = sim.clients[b].stats(ann, TrackKind::Audio).packets;
    sim.run_for(Duration::from_secs(2));
    let s = sim.clients[b].stats(ann, TrackKind::Video);
    assert_eq!(s.packets, paused.packets, "nothing forwarded while paused");
    assert!(
        sim.clients[b].stats(ann, TrackKind::Audio).packets > audio + 80,
        "audio keeps flowing"
    );

    // Listed again: back within a second, starting at a keyframe.
    let listed_at = sim.now;
    sim.send(b, shown);
    sim.run_for(Duration::from_secs(1));
    let s = sim.clients[b].stats(ann, TrackKind::Video);
    assert!(s.packets > paused.packets + 10, "resumed: {s:?}");
    assert!(s.keyframes > paused.keyframes, "resumed at a keyframe");
    assert!(s.layer_at[1].is_some_and(|t| t > listed_at));
    // 0×0 pauses too.
    sim.send(b, camera_tile(ann, 0, 0));
    sim.run_for(Duration::from_millis(100));
    let before = sim.clients[b].stats(ann, TrackKind::Video).packets;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.clients[b].stats(ann, TrackKind::Video).packets, before);
}

/// A browser honours one keyframe request per 300 ms for all the layers of its camera and
/// drops the others (the test client does the same). A subscriber resuming on the lowest
/// layer just after another stepped down to the middle one must still get its keyframe
/// promptly, not at the next retry.
#[test]
fn a_resume_just_after_another_layers_switch_still_gets_its_keyframe() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    let c = sim.join("r", "Cat");
    sim.run_for(Duration::from_secs(1));
    let ann = sim.clients[a].id;
    sim.send(b, camera_tile(ann, 1280, 720));
    sim.send(c, camera_tile(ann, 320, 180));
    sim.run_for(Duration::from_secs(6));
    assert_eq!(sim.clients[b].stats(ann, TrackKind::Video).layer, Some(2));
    sim.send(c, ClientMessage::VideoSizes { sizes: vec![] });
    sim.run_for(Duration::from_secs(2));

    // Bob steps down to 360p (a keyframe of layer 1); Cat comes back 100 ms later (layer 0).
    sim.send(b, camera_tile(ann, 640, 360));
    sim.run_for(Duration::from_millis(100));
    let listed_at = sim.now;
    let before = sim.clients[c].stats(ann, TrackKind::Video);
    sim.send(c, camera_tile(ann, 320, 180));
    sim.run_for(Duration::from_millis(700));
    let bob = sim.clients[b].stats(ann, TrackKind::Video);
    let cat = sim.clients[c].stats(ann, TrackKind::Video);
    assert_eq!(bob.layer, Some(1), "Bob switched down: {bob:?}");
    assert!(
        cat.packets > before.packets + 10 && cat.layer_at[0].is_some_and(|t| t > listed_at),
        "Cat resumed within 700 ms: {cat:?}"
    );
    assert_eq!(
        sim.clients[a].keyframe_requests_dropped, 0,
        "no keyframe request reached Ann inside her 300 ms window"
    );
}

/// A subscriber's own keyframe requests (its decoder's PLIs) reach the publisher while the
/// subscription flows, and not while it is paused: there is nothing to decode, and the
/// publisher's encoder would make a keyframe on all its layers, for every other subscriber.
#[test]
fn a_paused_subscriptions_keyframe_requests_stay_at_the_sfu() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    let ann = sim.clients[a].id;
    let shown = camera_tile(ann, 640, 360);
    sim.send(b, shown.clone());
    sim.run_for(Duration::from_secs(2));

    // Flowing: each request gets through (spaced beyond the SFU's per-track throttle).
    let before = sim.clients[a].keyframe_requests;
    for _ in 0..3 {
        assert!(sim.clients[b].request_keyframe(ann, TrackKind::Video));
        sim.run_for(Duration::from_millis(500));
    }
    let passed = sim.clients[a].keyframe_requests - before;
    assert!(passed >= 3, "flowing: {passed} of 3 requests reached Ann");

    // Paused: none does.
    sim.send(b, ClientMessage::VideoSizes { sizes: vec![] });
    sim.run_for(Duration::from_millis(500));
    let before = sim.clients[a].keyframe_requests;
    for _ in 0..3 {
        assert!(sim.clients[b].request_keyframe(ann, TrackKind::Video));
        sim.run_for(Duration::from_millis(500));
    }
    assert_eq!(
        sim.clients[a].keyframe_requests, before,
        "requests on a paused subscription reached Ann"
    );
}

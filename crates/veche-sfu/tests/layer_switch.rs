//! A subscription switches layers only at a keyframe of the new layer, asking the publisher
//! for one; many subscribers switching at once cost the publisher one request per layer,
//! not one each.

use crate::common;

use std::time::Duration;

use common::{Sim, camera_tile};
use veche_proto::{ClientMessage, ParticipantId, TrackKind};
use veche_sfu::Limits;

fn sizes(of: ParticipantId, height: u32) -> ClientMessage {
    camera_tile(of, height * 16 / 9, height)
}

#[test]
fn switching_layers_waits_for_a_keyframe_and_keeps_the_stream_continuous() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_millis(500));
    let ann = sim.clients[a].id;
    sim.send(b, sizes(ann, 720));
    sim.run_for(Duration::from_secs(6));
    assert_eq!(sim.clients[b].stats(ann, TrackKind::Video).layer, Some(2));

    for (height, layer) in [(180, 0), (360, 1), (720, 2), (100, 0)] {
        let requests = sim.clients[a].keyframe_requests_by_layer[layer];
        sim.send(b, sizes(ann, height));
        sim.run_for(Duration::from_secs(1));
        let s = sim.clients[b].stats(ann, TrackKind::Video);
        assert_eq!(
            s.layer,
            Some(layer as u8),
            "a {height}-pixel tile gets layer {layer}"
        );
        assert!(
            sim.clients[a].keyframe_requests_by_layer[layer] > requests,
            "the publisher was asked for a keyframe of layer {layer}"
        );
    }
    let s = sim.clients[b].stats(ann, TrackKind::Video);
    assert!(s.switches >= 4, "{s:?}");
    assert_eq!(
        s.bad_switches, 0,
        "every switch starts at a keyframe: {s:?}"
    );
    assert_eq!(s.seq_gaps, 0, "one continuous sequence: {s:?}");
    assert_eq!(
        s.picture_id_jumps, 0,
        "picture ids continue across layers: {s:?}"
    );
}

#[test]
fn many_subscribers_switching_at_once_ask_for_few_keyframes() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let subscribers: Vec<usize> = (0..6).map(|i| sim.join("r", &format!("S{i}"))).collect();
    sim.run_for(Duration::from_millis(500));
    let ann = sim.clients[a].id;
    for &s in &subscribers {
        sim.send(s, sizes(ann, 720));
    }
    sim.run_for(Duration::from_secs(6));

    let before = sim.clients[a].keyframe_requests_by_layer[0];
    for &s in &subscribers {
        sim.send(s, sizes(ann, 180));
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(1));
    let asked = sim.clients[a].keyframe_requests_by_layer[0] - before;
    assert!(
        (1..=2).contains(&asked),
        "six subscribers switching within 120 ms cost {asked} keyframe requests"
    );
    for &s in &subscribers {
        let st = sim.clients[s].stats(ann, TrackKind::Video);
        assert_eq!(st.layer, Some(0));
        assert_eq!(st.bad_switches, 0);
    }
}

//! Datagrams from an address the SFU has not seen are routed by the ICE ufrag in their STUN
//! check, in one lookup: participants in several rooms connect, a participant whose address
//! changes (NAT rebinding) is found again by its next check, and from strangers anything but
//! a check naming one of our ufrags is dropped without an answer.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Sim, server_addr};
use veche_proto::{ClientMessage, ServerMessage, TrackKind};
use veche_sfu::{Limits, Output};

/// The server's ufrag in the first offer client `idx` received.
fn server_ufrag(sim: &Sim, idx: usize) -> String {
    sim.clients[idx]
        .inbox
        .iter()
        .find_map(|m| match m {
            ServerMessage::Offer { sdp } => sdp
                .lines()
                .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
                .map(|u| u.trim().to_owned()),
            _ => None,
        })
        .expect("an offer with an ice-ufrag")
}

/// A STUN binding request whose USERNAME is `username`, with no valid integrity.
fn binding_request(username: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&0x0006u16.to_be_bytes());
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    attr.resize(attr.len().div_ceil(4) * 4, 0);
    attr.extend_from_slice(&0x0008u16.to_be_bytes()); // MESSAGE-INTEGRITY, all wrong
    attr.extend_from_slice(&20u16.to_be_bytes());
    attr.extend_from_slice(&[0x5a; 20]);
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    d.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    d.extend_from_slice(&[9; 12]);
    d.extend_from_slice(&attr);
    d
}

/// Feeds one datagram from `from` and returns how many datagrams the SFU sent back to it.
fn answers_to(sim: &mut Sim, from: SocketAddr, datagram: &[u8]) -> usize {
    sim.sfu
        .handle_datagram(sim.now, from, server_addr(), datagram);
    let mut answers = 0;
    loop {
        match sim.sfu.poll_output() {
            Output::Timeout(_) => return answers,
            Output::Transmit(d) if d.destination == from => answers += 1,
            _ => {}
        }
    }
}

#[test]
fn new_addresses_are_routed_by_ufrag() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("one", "Ann");
    let b = sim.join("one", "Bob");
    let c = sim.join("two", "Cid");
    let d = sim.join("two", "Dee");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.clients.iter().all(|c| c.connected), "all connected");
    let ufrags: Vec<_> = (0..4).map(|i| server_ufrag(&sim, i)).collect();
    for (i, u) in ufrags.iter().enumerate() {
        assert!(!ufrags[..i].contains(u), "ufrags are distinct");
    }

    // Strangers: media, DTLS, noise, a check for nobody, and a forged check naming Ann's
    // ufrag (its integrity is wrong) get no answer.
    let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)), 5000);
    let rtp = [&[0x80u8, 96, 0, 1][..], &[0; 60]].concat();
    let dtls = [&[22u8, 0xfe, 0xfd][..], &[0; 60]].concat();
    assert_eq!(answers_to(&mut sim, stranger, &rtp), 0);
    assert_eq!(answers_to(&mut sim, stranger, &dtls), 0);
    assert_eq!(answers_to(&mut sim, stranger, &[0xff; 100]), 0);
    let unknown = binding_request("nobody00:x");
    assert_eq!(answers_to(&mut sim, stranger, &unknown), 0);
    let forged = binding_request(&format!("{}:x", ufrags[a]));
    assert_eq!(answers_to(&mut sim, stranger, &forged), 0);

    // Bob's NAT gives him a new address: his next consent check is found by its ufrag, and
    // his media from there reaches Ann. (Sending back to the new address is str0m's ICE
    // agent's decision, made on the client's nomination, not the SFU's routing.)
    let from_bob = sim.clients[a]
        .stats(sim.clients[b].id, TrackKind::Audio)
        .packets;
    sim.relocate(
        b,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)), 41_000),
    );
    sim.run_for(Duration::from_secs(8));
    let from_bob_after = sim.clients[a]
        .stats(sim.clients[b].id, TrackKind::Audio)
        .packets;
    assert!(
        from_bob_after > from_bob + 100,
        "Ann hears Bob after his move ({from_bob} -> {from_bob_after})"
    );
    // The other room was not disturbed.
    let s = sim.clients[d].stats(sim.clients[c].id, TrackKind::Video);
    assert!(s.packets > 100 && s.out_of_order == 0 && s.misattributed == 0);
    assert_eq!(sim.sfu.participant_count(), 4);
}

/// The server's ufrag in the latest offer client `idx` received.
fn latest_server_ufrag(sim: &Sim, idx: usize) -> String {
    sim.clients[idx]
        .inbox
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Offer { sdp } => sdp
                .lines()
                .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
                .map(|u| u.trim().to_owned()),
            _ => None,
        })
        .expect("an offer with an ice-ufrag")
}

#[test]
fn an_ice_restart_renews_the_credentials_on_the_same_session() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("one", "Ann");
    let b = sim.join("one", "Bob");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.clients.iter().all(|c| c.connected), "all connected");
    let before = latest_server_ufrag(&sim, b);
    let bob = sim.clients[b].id;

    // Bob asks twice in a row (a client retrying): one restart, in one offer.
    let offers = |sim: &Sim| {
        sim.clients[b]
            .inbox
            .iter()
            .filter(|m| matches!(m, ServerMessage::Offer { .. }))
            .count()
    };
    let offers_before = offers(&sim);
    sim.send(b, ClientMessage::IceRestart);
    sim.send(b, ClientMessage::IceRestart);
    sim.run_for(Duration::from_secs(1));
    let after = latest_server_ufrag(&sim, b);
    assert_ne!(after, before, "the offer carries new ICE credentials");
    assert!(
        offers(&sim) <= offers_before + 2,
        "a repeated ask does not make an offer each"
    );

    // Checks under the new credentials carry the media on: Ann keeps hearing Bob, Bob is
    // still the same participant, and nobody was told he left.
    let from_bob = sim.clients[a].stats(bob, TrackKind::Audio).packets;
    sim.run_for(Duration::from_secs(8));
    let from_bob_after = sim.clients[a].stats(bob, TrackKind::Audio).packets;
    assert!(
        from_bob_after > from_bob + 100,
        "Ann hears Bob after his ICE restart ({from_bob} -> {from_bob_after})"
    );
    assert_eq!(sim.sfu.participant_count(), 2);
    assert!(!sim.clients[a].saw(|m| matches!(m, ServerMessage::ParticipantLeft { .. })));
    // Past str0m's ICE-lite timeout (15 s) the session is still up: the old pair's
    // expiry did not take the participant with it.
    sim.run_for(Duration::from_secs(16));
    assert_eq!(sim.sfu.participant_count(), 2);
    let later = sim.clients[a].stats(bob, TrackKind::Audio).packets;
    assert!(
        later > from_bob_after + 100,
        "still flowing ({from_bob_after} -> {later})"
    );
}

//! Hostile datagrams — random bytes, truncated or corrupted STUN/DTLS/RTP, from strangers and
//! spoofing a participant's own address — never panic the SFU and never stop anyone's media.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Sim, server_addr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use veche_proto::TrackKind;
use veche_sfu::Limits;

/// A datagram that looks like one of the protocols multiplexed on the media port (RFC 7983
/// first-byte ranges), corrupted, or pure noise.
fn hostile(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..1500);
    let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if let Some(first) = d.first_mut() {
        *first = match rng.random_range(0..4) {
            0 => rng.random_range(0..=3),     // STUN
            1 => rng.random_range(20..=63),   // DTLS
            2 => rng.random_range(128..=191), // RTP/RTCP
            _ => *first,
        };
    }
    if d.len() >= 20 && d[0] <= 3 {
        // A plausible STUN header: binding request, magic cookie, length within the packet.
        d[0] = 0;
        d[1] = 1;
        let body = (d.len() - 20) as u16 & !3;
        d[2..4].copy_from_slice(&body.to_be_bytes());
        d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    }
    d
}

#[test]
fn garbage_on_the_media_port_is_dropped() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_secs(1));
    let before = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Video)
        .packets;

    let mut rng = StdRng::seed_from_u64(0x0076_6563_6865);
    let victim = sim.clients[a].addr;
    for round in 0..20 {
        for i in 0..500 {
            let source = if i % 5 == 0 {
                victim
            } else {
                let port = rng.random_range(1024..65535);
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, rng.random_range(2..250))),
                    port,
                )
            };
            let d = hostile(&mut rng);
            sim.sfu.handle_datagram(sim.now, source, server_addr(), &d);
        }
        sim.run_for(Duration::from_millis(100));
        assert_eq!(
            sim.sfu.participant_count(),
            2,
            "round {round}: nobody was dropped"
        );
    }

    let after = sim.clients[b].stats(sim.clients[a].id, TrackKind::Video);
    assert!(
        after.packets > before + 150,
        "media kept flowing through the garbage ({before} -> {})",
        after.packets
    );
    assert_eq!(after.out_of_order + after.misattributed, 0);
}

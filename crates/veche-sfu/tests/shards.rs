//! Media shards through the real driver (sockets on loopback, signalling only): rooms spread
//! over the shards, everyone in a room is offered that shard's port, a join that failed and
//! retries into another shard's room is handed over, and metrics add up over shards.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::timeout;
use veche_proto::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage};
use veche_sfu::{Connection, Limits, SfuConfig, SfuHandle};

fn join(room: &str, name: &str) -> ClientMessage {
    ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        passcode: None,
        resume: None,
        e2ee: false,
        require_e2ee: false,
    }
}

/// The next message, failing after a few seconds.
async fn next(c: &mut Connection) -> ServerMessage {
    timeout(Duration::from_secs(5), c.events.recv())
        .await
        .expect("a message within 5 s")
        .expect("connection open")
}

/// Waits for the first offer and returns the port of its host candidate.
async fn offered_port(c: &mut Connection) -> u16 {
    loop {
        match next(c).await {
            ServerMessage::Offer { sdp } => {
                let line = sdp
                    .lines()
                    .find(|l| l.starts_with("a=candidate:"))
                    .expect("a candidate in the offer");
                // a=candidate:FOUNDATION COMPONENT udp PRIORITY IP PORT typ host
                return line
                    .split_whitespace()
                    .nth(5)
                    .and_then(|p| p.parse().ok())
                    .expect("a port in the candidate");
            }
            ServerMessage::Error { code, message } => panic!("error {code:?}: {message}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_spread_over_shards_and_joins_follow_them() {
    let sfu = SfuHandle::spawn(SfuConfig {
        media_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        ice_tcp_port: None,
        public_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        limits: Limits {
            media_shards: 3,
            ..Limits::default()
        },
        resume_key: veche_sfu::ResumeKey::random(),
    })
    .expect("SFU starts");
    let ports: HashSet<u16> = sfu.local_media_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 3, "a socket per shard");

    // Two participants in each of eight rooms: both are offered the same shard's port.
    let mut room_port = HashMap::new();
    let mut conns = Vec::new();
    for r in 0..8 {
        let room = format!("room-{r}");
        for name in ["Ann", "Bob"] {
            let mut c = sfu.connect();
            sfu.send(c.id, join(&room, name));
            let port = offered_port(&mut c).await;
            assert!(ports.contains(&port), "{port} is a shard's port");
            assert_eq!(
                *room_port.entry(room.clone()).or_insert(port),
                port,
                "{room}"
            );
            conns.push(c);
        }
    }
    let used: HashSet<u16> = room_port.values().copied().collect();
    assert!(used.len() >= 2, "eight rooms on one shard: {room_port:?}");

    // Anything before a join gets the core's answer.
    let mut early = sfu.connect();
    sfu.send(early.id, ClientMessage::RaiseHand { raised: true });
    assert!(matches!(
        next(&mut early).await,
        ServerMessage::Error {
            code: ErrorCode::NotJoined,
            ..
        }
    ));

    // A join refused on one shard, retried into a room of another shard, lands there.
    let (first, second) = {
        let mut rooms = room_port.iter();
        let (a, pa) = rooms.next().expect("a room");
        let (b, _) = rooms
            .find(|(_, p)| *p != pa)
            .expect("a room on another shard");
        (a.clone(), b.clone())
    };
    sfu.send(early.id, join(&first, "\u{7}bell"));
    assert!(matches!(
        next(&mut early).await,
        ServerMessage::Error {
            code: ErrorCode::InvalidName,
            ..
        }
    ));
    // Back and forth between shards: each refused join moves it to the room's shard.
    for room in [&second, &first, &second] {
        sfu.send(early.id, join(room, ""));
        assert!(matches!(
            next(&mut early).await,
            ServerMessage::Error {
                code: ErrorCode::InvalidName,
                ..
            }
        ));
    }
    sfu.send(early.id, join(&second, "Cid"));
    assert_eq!(offered_port(&mut early).await, room_port[&second]);
    // Its later messages follow it to the other shard.
    sfu.send(early.id, join(&first, "Cid"));
    assert!(matches!(
        next(&mut early).await,
        ServerMessage::Error {
            code: ErrorCode::AlreadyJoined,
            ..
        }
    ));

    // Counters are published after each round of a shard's loop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = sfu.metrics();
    assert_eq!((m.rooms, m.participants), (8, 17), "summed over shards");
    sfu.disconnect(early.id);
    for c in &conns[..2] {
        sfu.disconnect(c.id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = sfu.metrics();
    assert_eq!((m.rooms, m.participants), (7, 14));

    // Shutdown reaches everyone on every shard, then ends their connections.
    tokio::task::spawn_blocking(move || sfu.shutdown())
        .await
        .expect("shutdown");
    for c in &mut conns[2..] {
        let mut last = None;
        while let Some(m) = timeout(Duration::from_secs(5), c.events.recv())
            .await
            .expect("connection ends within 5 s")
        {
            last = Some(m);
        }
        assert!(
            matches!(
                last,
                Some(ServerMessage::Error {
                    code: ErrorCode::ShuttingDown,
                    ..
                })
            ),
            "last message {last:?}"
        );
    }
}

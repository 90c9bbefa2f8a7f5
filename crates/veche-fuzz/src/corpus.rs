//! The seed corpus, made by code: valid signalling messages, STUN binding requests, RTP, RTCP
//! and DTLS-shaped datagrams, API bodies. `cargo run -p veche-fuzz --bin gen-corpus` writes it
//! to `fuzz/corpus/<target>/`; the stable test checks the committed files still match.
//! Inputs that once crashed a target are committed beside these as `crash-*` files.

use veche_proto::{ClientMessage, MlsBlob, PROTOCOL_VERSION, Role, TrackKind};

use crate::sfu_datagram::{binding_request, record};

/// One seed: target, file name, contents.
pub type Seed = (&'static str, String, Vec<u8>);

pub fn seeds() -> Vec<Seed> {
    let mut all = Vec::new();
    for (name, bytes) in client_messages() {
        all.push(("client_message", name, bytes));
    }
    for (name, bytes) in stun() {
        all.push(("stun_ufrag", name, bytes));
    }
    for (name, bytes) in sfu() {
        all.push(("sfu_datagram", name, bytes));
    }
    for (name, bytes) in api() {
        all.push(("api_body", name, bytes));
    }
    all
}

/// One of every client message, as the browser sends them.
pub fn messages() -> Vec<ClientMessage> {
    use ClientMessage::*;
    vec![
        Join {
            version: PROTOCOL_VERSION,
            room: "standup".into(),
            name: "Ann".into(),
            passcode: None,
            resume: None,
            e2ee: false,
            require_e2ee: false,
        },
        Join {
            version: PROTOCOL_VERSION,
            room: "board".into(),
            name: "Bo \u{e9}".into(),
            passcode: Some("4821".into()),
            resume: Some(format!(
                "v1.{}.1900000000.{}",
                "a".repeat(32),
                "0".repeat(64)
            )),
            e2ee: false,
            require_e2ee: false,
        },
        Answer {
            sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".into(),
        },
        Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host".into(),
        },
        SetMedia {
            kind: TrackKind::Video,
            enabled: true,
        },
        SetMedia {
            kind: TrackKind::Screen,
            enabled: false,
        },
        Chat {
            text: "hello \u{1f44b}".into(),
        },
        RaiseHand { raised: true },
        Leave,
        Admit { participant_id: 2 },
        Deny { participant_id: 3 },
        Mute {
            participant_id: 2,
            kind: TrackKind::Audio,
        },
        MuteAll {
            allow_self_unmute: false,
        },
        AskUnmute {
            participant_id: 2,
            kind: TrackKind::Video,
        },
        SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
        Remove {
            participant_id: 2,
            bar: true,
        },
        SetRole {
            participant_id: 2,
            role: Role::CoHost,
        },
        TransferHost { participant_id: 2 },
        EndMeeting,
        Join {
            version: PROTOCOL_VERSION,
            room: "secret".into(),
            name: "Cy".into(),
            passcode: None,
            resume: None,
            e2ee: true,
            require_e2ee: true,
        },
        MlsKeyPackage {
            key_package: MlsBlob(vec![0, 1, 0, 5, 0, 1, 0, 32]),
        },
        MlsCommit {
            epoch: 1,
            commit: MlsBlob(vec![
                0, 1, 0, 1, 8, b's', b'e', b'c', b'r', b'e', b't', b'#', b'1', 0, 0, 0, 0, 0, 0, 0,
                1,
            ]),
            welcome: Some(MlsBlob(vec![0, 1, 0, 3, 0, 1])),
            added: vec![3],
            removed: vec![2],
        },
    ]
}

fn type_name(msg: &ClientMessage) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&msg.to_json()).expect("a message serialises to JSON");
    json["type"].as_str().expect("tagged").to_owned()
}

fn client_messages() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = messages()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{i:02}-{}", type_name(m)), m.to_json().into_bytes()))
        .collect();
    let invalid = [
        ("unknown-type", r#"{"type":"dance","style":"tango"}"#),
        ("no-type", r#"{"room":"x"}"#),
        ("extra-field", r#"{"type":"leave","why":"bored"}"#),
        (
            "wrong-kind",
            r#"{"type":"set_media","kind":"hologram","enabled":true}"#,
        ),
        (
            "big-number",
            r#"{"type":"mute","participant_id":18446744073709551616,"kind":"audio"}"#,
        ),
        (
            "nested",
            r#"[[[[[[[[[[[[[[[[{"type":"leave"}]]]]]]]]]]]]]]]]"#,
        ),
        (
            "escapes",
            r#"{"type":"chat","text":"\u0000\ud83d\ude00\"\\"}"#,
        ),
        ("lone-surrogate", r#"{"type":"chat","text":"\ud800"}"#),
    ];
    for (name, text) in invalid {
        out.push((format!("bad-{name}"), text.as_bytes().to_vec()));
    }
    out
}

/// STUN attribute: type, length, value, padding.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = kind.to_be_bytes().to_vec();
    a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    a.extend_from_slice(value);
    a.resize(a.len().div_ceil(4) * 4, 0);
    a
}

/// The attributes a browser's ICE check carries after USERNAME (RFC 8445 §7.1.2): PRIORITY,
/// ICE-CONTROLLING, MESSAGE-INTEGRITY, FINGERPRINT (the last two with dummy values).
fn ice_attrs() -> Vec<u8> {
    let mut a = attr(0x0024, &0x6e7f_00ffu32.to_be_bytes());
    a.extend(attr(0x802a, &[1, 2, 3, 4, 5, 6, 7, 8]));
    a.extend(attr(0x0008, &[0x5a; 20]));
    a.extend(attr(0x8028, &[0, 0, 0, 0]));
    a
}

fn stun() -> Vec<(String, Vec<u8>)> {
    let mut with_attrs = b"cli2\0".to_vec();
    with_attrs.extend(ice_attrs());
    let mut before = vec![0x00, 0x01, 0x00, 0x00];
    before.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    before.extend_from_slice(&[9; 12]);
    let mut body = attr(0x0024, &[0, 0, 0, 1]);
    body.extend(attr(0x0006, b"srv1:cli2"));
    let len = body.len() as u16;
    before[2..4].copy_from_slice(&len.to_be_bytes());
    before.extend(body);
    vec![
        ("binding".into(), binding_request("srv1", b"cli2")),
        ("binding-ice".into(), binding_request("aBcD", &with_attrs)),
        ("username-not-first".into(), before),
        ("no-colon".into(), {
            let mut d = binding_request("srv1", b"");
            // USERNAME "srv1:" with the colon made a letter.
            let at = d.len() - 4;
            d[at] = b'x';
            d
        }),
        ("rtp".into(), rtp(96, 1, 0x1234_5678, &[0x10; 32])),
    ]
}

/// An RTP packet (RFC 3550 §5.1), no extensions.
fn rtp(pt: u8, seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An RTP packet with a one-byte header extension (RFC 8285) holding a mid ("0").
fn rtp_with_extension() -> Vec<u8> {
    let mut p = rtp(111, 7, 0xdead_beef, &[]);
    p[0] |= 0x10;
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, b'0', 0, 0]);
    p.extend_from_slice(&[0xfc; 40]);
    p
}

/// RTCP (RFC 3550 §6.4, RFC 4585 §6): a receiver report, a PLI and a NACK, compound.
fn rtcp() -> Vec<u8> {
    let mut rr = vec![0x81, 201, 0x00, 0x07];
    rr.extend_from_slice(&0x0000_0001u32.to_be_bytes());
    rr.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    rr.extend_from_slice(&[0; 20]);
    let mut pli = vec![0x81, 206, 0x00, 0x02];
    pli.extend_from_slice(&1u32.to_be_bytes());
    pli.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    let mut nack = vec![0x81, 205, 0x00, 0x03];
    nack.extend_from_slice(&1u32.to_be_bytes());
    nack.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    nack.extend_from_slice(&[0x00, 0x05, 0x00, 0x03]);
    rr.extend(pli);
    rr.extend(nack);
    rr
}

/// A DTLS 1.2 handshake record header (RFC 6347 §4.1) with a truncated ClientHello.
fn dtls() -> Vec<u8> {
    let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
    d.extend_from_slice(&[1, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0, 0x14]);
    d.extend_from_slice(&[0xfe, 0xfd]);
    d.extend_from_slice(&[0x42; 18]);
    d
}

fn sfu() -> Vec<(String, Vec<u8>)> {
    let mut stun_p1 = vec![1];
    stun_p1.extend_from_slice(b"remote\0");
    stun_p1.extend(ice_attrs());
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "stranger-stun",
            vec![record(0, &binding_request("nobody", b"x"))],
        ),
        (
            "stranger-rtp",
            vec![record(0, &rtp(96, 1, 7, &[0x10; 100]))],
        ),
        ("ufrag-stun", vec![record(2, &[0]), record(2, &stun_p1)]),
        (
            "spoofed-rtp",
            vec![
                record(
                    1,
                    &[&[0u8][..], &rtp(96, 9, 0x1234_5678, &[0x10; 200])].concat(),
                ),
                record(1, &[&[1u8][..], &rtp_with_extension()].concat()),
            ],
        ),
        (
            "spoofed-rtcp",
            vec![record(1, &[&[0u8][..], &rtcp()].concat())],
        ),
        (
            "spoofed-dtls",
            vec![record(1, &[&[0u8][..], &dtls()].concat())],
        ),
        (
            "replays",
            vec![
                record(3, &[0, 0, 0, 0, 0]),
                record(3, &[5, 1, 0, 0, 0]),
                record(3, &[12, 0, 0, 30, 0x55]),
                record(3, &[40, 0, 0, 1, 0x80]),
            ],
        ),
        (
            "signals",
            vec![
                record(4, br#"{"type":"chat","text":"hi"}"#),
                record(4, br#"{"type":"set_media","kind":"screen","enabled":true}"#),
                record(4, br#"{"type":"mute","participant_id":2,"kind":"audio"}"#),
                record(5, &[20]),
                record(4, br#"{"type":"leave"}"#),
                record(3, &[3, 0, 0, 0, 0]),
            ],
        ),
        (
            "time",
            vec![
                record(5, &[200]),
                record(3, &[1, 0, 0, 0, 0]),
                record(5, &[255]),
            ],
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, records)| (name.to_owned(), records.concat()))
        .collect()
}

fn api() -> Vec<(String, Vec<u8>)> {
    // route index into api_body::ROUTES, auth (0 none, 1 operator, 2 member bearer, 3 member
    // cookie + CSRF, 4 cookie without), content type (0 JSON, 1 none, 2 text/plain), address.
    let seeds: [(&str, [u8; 4], &str); 22] = [
        (
            "signup",
            [0, 0, 0, 1],
            r#"{"email":"new@fuzz.test","password":"long-enough-1","name":"New","org_name":"Org"}"#,
        ),
        (
            "login",
            [1, 0, 0, 2],
            r#"{"email":"member@fuzz.test","password":"fuzz-password-1"}"#,
        ),
        (
            "login-wrong",
            [1, 0, 0, 3],
            r#"{"email":"member@fuzz.test","password":"nope"}"#,
        ),
        (
            "login-plain",
            [1, 0, 2, 1],
            r#"{"email":"a@b.c","password":"x"}"#,
        ),
        (
            "password",
            [2, 2, 0, 1],
            r#"{"current_password":"wrong","new_password":"another-one-2"}"#,
        ),
        (
            "plan",
            [3, 1, 0, 1],
            r#"{"name":"Free","max_participants":100,"max_duration_minutes":40,"recording":false,"breakout_rooms":false,"e2ee_required":false,"large_meetings":false}"#,
        ),
        (
            "create-meeting",
            [4, 2, 0, 1],
            r#"{"title":"Weekly","starts_at":1800000000,"duration_minutes":30,"recurrence":"weekly","passcode":"4821","waiting_room":true,"join_before_host":false,"co_hosts":["operator@fuzz.test"]}"#,
        ),
        (
            "create-meeting-cookie",
            [4, 3, 0, 1],
            r#"{"title":"Cookie"}"#,
        ),
        (
            "create-meeting-no-csrf",
            [4, 4, 0, 1],
            r#"{"title":"No CSRF"}"#,
        ),
        (
            "patch-meeting",
            [5, 2, 0, 1],
            r#"{"title":"Renamed","starts_at":null,"passcode":null,"waiting_room":false,"co_hosts":[]}"#,
        ),
        ("join", [6, 0, 0, 4], r#"{"passcode":"0000"}"#),
        ("join-empty", [6, 2, 1, 4], ""),
        (
            "live-control",
            [7, 2, 0, 1],
            r#"{"type":"mute_all","allow_self_unmute":true}"#,
        ),
        (
            "add-member",
            [8, 2, 0, 1],
            r#"{"email":"m2@fuzz.test","name":"M2","password":"long-enough-1","org_role":"member"}"#,
        ),
        (
            "upgrade",
            [9, 2, 0, 1],
            r#"{"plan_id":"pro","note":"please"}"#,
        ),
        (
            "user-patch",
            [10, 1, 0, 1],
            r#"{"role":"user","org_role":"admin"}"#,
        ),
        (
            "org-patch",
            [11, 1, 0, 1],
            r#"{"name":"Renamed org","plan_id":"free"}"#,
        ),
        ("usage-query", [12, 2, 1, 1], "since=0&until=1900000000"),
        ("audit-query", [13, 1, 1, 1], "limit=5"),
        ("requests-query", [14, 1, 1, 1], "status=pending"),
        ("meeting-segment", [16, 2, 1, 1], "no-such-meeting"),
        ("approve-segment", [17, 1, 1, 1], "req-1"),
    ];
    seeds
        .iter()
        .map(|(name, head, body)| {
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(body.as_bytes());
            ((*name).to_owned(), bytes)
        })
        .collect()
}

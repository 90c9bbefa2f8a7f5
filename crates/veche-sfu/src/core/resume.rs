//! Resume tokens: how a guest, who has no account, is recognised when their connection comes
//! back — after a dropped network or a server restart — with the role and host mutes they
//! had. See `docs/security.md` ("Resume tokens") for the threat model.
//!
//! A token is `v1.<guest>.<expires>.<mac>`: a random 128-bit guest id (hex), the Unix second
//! it expires at, and HMAC-SHA-256 (RFC 2104) under the server's resume key over the room,
//! the start of the meeting it was issued in, the guest id, the expiry and the address it was
//! issued to. So a token cannot be forged without the key, names one meeting (a later meeting
//! in the same room has another start), stops working when it expires, and is only good from
//! the address it was given to.

use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The longest token worth looking at (real ones are ~115 characters).
const MAX_TOKEN_LEN: usize = 200;

/// The server's secret for resume tokens. Kept with the meetings it protects (the server
/// stores it in the database), so tokens outlive a restart.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeKey([u8; 32]);

impl ResumeKey {
    pub fn random() -> ResumeKey {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        ResumeKey(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ResumeKey {
        ResumeKey(bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn mac(
        &self,
        room: &str,
        started_ms: u64,
        guest: &str,
        expires: u64,
        ip: IpAddr,
    ) -> HmacSha256 {
        // Infallible: HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        // Lengths first, so no two different inputs concatenate alike.
        for part in [
            "veche-resume-v1".as_bytes(),
            room.as_bytes(),
            started_ms.to_string().as_bytes(),
            guest.as_bytes(),
            expires.to_string().as_bytes(),
            ip.to_string().as_bytes(),
        ] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

/// The key is a secret: never in a log.
impl fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeKey(<redacted>)")
    }
}

/// A new guest id: 128 random bits, hex.
pub(super) fn new_guest_id() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    hex(&id)
}

/// A token for `guest` in the meeting that started at `started_ms` in `room`, good from `ip`
/// until `expires` (Unix seconds).
pub(super) fn mint(
    key: &ResumeKey,
    room: &str,
    started_ms: u64,
    guest: &str,
    ip: IpAddr,
    expires: u64,
) -> String {
    let tag = key
        .mac(room, started_ms, guest, expires, ip)
        .finalize()
        .into_bytes();
    format!("v1.{guest}.{expires}.{}", hex(&tag))
}

/// The guest id of a genuine, unexpired `token` for this meeting presented from `ip`.
pub(super) fn verify(
    key: &ResumeKey,
    room: &str,
    started_ms: u64,
    token: &str,
    ip: IpAddr,
    now_s: u64,
) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some("v1"), Some(guest), Some(expires), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if guest.len() != 32 || !guest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let expires: u64 = expires.parse().ok()?;
    if now_s >= expires {
        return None;
    }
    let tag = unhex(tag)?;
    key.mac(room, started_ms, guest, expires, ip)
        .verify_slice(&tag)
        .ok()?;
    Some(guest.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Infallible: writing to a String.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "standup";
    const START: u64 = 1_700_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_names_its_guest_in_its_meeting_only() {
        let key = ResumeKey::random();
        let guest = new_guest_id();
        let at = ip("192.0.2.7");
        let token = mint(&key, ROOM, START, &guest, at, 2_000);
        assert_eq!(verify(&key, ROOM, START, &token, at, 1_000), Some(guest));
        // Another room, a later meeting in the same room, another address, too late, or
        // another server's key: not recognised.
        assert_eq!(verify(&key, "other", START, &token, at, 1_000), None);
        assert_eq!(verify(&key, ROOM, START + 1, &token, at, 1_000), None);
        assert_eq!(
            verify(&key, ROOM, START, &token, ip("192.0.2.8"), 1_000),
            None
        );
        assert_eq!(verify(&key, ROOM, START, &token, at, 2_000), None);
        assert_eq!(
            verify(&ResumeKey::random(), ROOM, START, &token, at, 1_000),
            None
        );
    }

    #[test]
    fn a_changed_token_is_refused() {
        let key = ResumeKey::random();
        let at = ip("2001:db8::1");
        let token = mint(&key, ROOM, START, &new_guest_id(), at, 2_000);
        // A later expiry, another guest id, a truncated or garbage tag.
        let later = token.replacen(".2000.", ".9000.", 1);
        assert_eq!(verify(&key, ROOM, START, &later, at, 1_000), None);
        let mut other_guest = token.clone().into_bytes();
        other_guest[3] = if other_guest[3] == b'a' { b'b' } else { b'a' };
        let other_guest = String::from_utf8(other_guest).unwrap();
        assert_eq!(verify(&key, ROOM, START, &other_guest, at, 1_000), None);
        assert_eq!(
            verify(&key, ROOM, START, &token[..token.len() - 2], at, 1_000),
            None
        );
        for junk in [
            "",
            "v1",
            "v1...",
            "v2.a.b.c",
            &"x".repeat(10_000),
            "v1.é.1.ff",
        ] {
            assert_eq!(verify(&key, ROOM, START, junk, at, 1_000), None, "{junk:?}");
        }
    }
}

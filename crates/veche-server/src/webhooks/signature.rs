//! The signature of a delivery (docs/webhooks.md): `Veche-Signature: t=UNIX_SECONDS,v1=HEX`,
//! where HEX is the HMAC-SHA256 (RFC 2104) under the endpoint's secret of the ASCII decimal
//! timestamp, one `.` and the body's bytes exactly as sent. The timestamp is the time of the
//! attempt, so each retry is signed afresh and a receiver can refuse old (replayed) ones.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "veche-signature";
/// The version tag of the scheme: a receiver looks for it and ignores tags it does not
/// know, so a later scheme can be sent beside this one.
const VERSION: &str = "v1";

/// The HMAC-SHA256 of `timestamp.body`, in lower-case hex.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The value of [`HEADER`] for `body` sent at `timestamp`: one signature under `secret`
/// and, while a rolled endpoint's previous secret still signs, one under that (a receiver
/// accepts the request if any matches, so it can switch secrets at its own moment).
pub fn header_value(secret: &str, previous: Option<&str>, timestamp: i64, body: &[u8]) -> String {
    let mut v = format!("t={timestamp},{VERSION}={}", sign(secret, timestamp, body));
    if let Some(old) = previous {
        v.push_str(&format!(",{VERSION}={}", sign(old, timestamp, body)));
    }
    v
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the signature header has no t= timestamp")]
    NoTimestamp,
    #[error("the timestamp {0} is more than the tolerated {1} seconds away from now")]
    Stale(i64, i64),
    #[error("no v1= signature matches the body")]
    Mismatch,
}

/// What a receiver does (the reference for docs/webhooks.md): the signature in `header`
/// is one of this secret's over `body`, made within `tolerance_secs` of `now`.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some((VERSION, s)) => signatures.push(s),
            _ => {}
        }
    }
    let t = timestamp.ok_or(VerifyError::NoTimestamp)?;
    if (now - t).abs() > tolerance_secs {
        return Err(VerifyError::Stale(t, tolerance_secs));
    }
    for s in signatures {
        let Some(given) = unhex(s) else { continue };
        let mut mac = mac(secret);
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` fails for none.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
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

    /// RFC 4231 test case 2 pins the HMAC-SHA256 itself; the signed message is the
    /// timestamp, a dot and the body.
    #[test]
    fn matches_the_rfc_4231_vector() {
        let mut m = mac("Jefe");
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut m = mac("k");
        m.update(b"12345.{\"a\":1}");
        assert_eq!(
            sign("k", 12345, b"{\"a\":1}"),
            hex(&m.finalize().into_bytes())
        );
    }

    #[test]
    fn verifies_its_own_and_refuses_the_rest() {
        let body = br#"{"type":"meeting.started"}"#;
        let h = header_value("secret", None, 1000, body);
        assert!(h.starts_with("t=1000,v1="));
        assert_eq!(h.matches("v1=").count(), 1);
        // After a roll, both the new and the previous secret verify.
        let rolled = header_value("new", Some("secret"), 1000, body);
        assert_eq!(rolled.matches("v1=").count(), 2);
        assert_eq!(verify("new", &rolled, body, 1000, 300), Ok(()));
        assert_eq!(verify("secret", &rolled, body, 1000, 300), Ok(()));
        assert_eq!(
            verify("other", &rolled, body, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify("secret", &h, body, 1100, 300), Ok(()));
        assert_eq!(
            verify("other", &h, body, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("secret", &h, b"{}", 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("secret", &h, body, 2000, 300),
            Err(VerifyError::Stale(1000, 300))
        );
        // Another timestamp with the same signature: the timestamp is signed too.
        let moved = h.replace("t=1000", "t=1001");
        assert_eq!(
            verify("secret", &moved, body, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        // Unknown tags are ignored; a second, valid v1 is accepted.
        let two = format!("v0=zz,{h},v1=00");
        assert_eq!(verify("secret", &two, body, 1000, 300), Ok(()));
        assert_eq!(
            verify("secret", "v1=00", body, 1000, 300),
            Err(VerifyError::NoTimestamp)
        );
    }
}

//! Just enough of a STUN message (RFC 8489) to route it: the USERNAME attribute of an ICE
//! connectivity check (RFC 8445 §7.2.2), whose part before the colon is the ufrag the
//! *receiving* agent — us — put in its SDP. str0m verifies the message properly (integrity,
//! fingerprint) once it reaches the right participant's `Rtc`.

/// The STUN magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
const USERNAME: u16 = 0x0006;

/// Whether `datagram` looks like STUN: RFC 7983's first-byte range (0..=3) and the magic
/// cookie.
pub(crate) fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] < 4 && datagram[4..8] == MAGIC_COOKIE
}

/// The local ufrag named by a STUN request's USERNAME (`LOCAL:REMOTE`), if it has one.
/// Never panics, whatever the bytes.
pub(crate) fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(HEADER_LEN..HEADER_LEN + declared)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (local, _remote) = username.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        // Attributes are padded to a multiple of four bytes.
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut d = vec![0x00, 0x01];
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&MAGIC_COOKIE);
        d.extend_from_slice(&[7; 12]);
        d.extend_from_slice(&body);
        d
    }

    #[test]
    fn finds_the_local_ufrag_after_other_attributes() {
        let d = request(&[
            (0x0024, &[0, 0, 0, 1]),
            (0x0006, b"srv1:cli2"),
            (0x8028, &[0; 4]),
        ]);
        assert_eq!(local_ufrag(&d), Some("srv1"));
    }

    #[test]
    fn no_username_or_no_colon_is_none() {
        assert_eq!(local_ufrag(&request(&[(0x0024, &[0; 4])])), None);
        assert_eq!(local_ufrag(&request(&[(0x0006, b"nocolon")])), None);
        assert_eq!(local_ufrag(&request(&[(0x0006, b":x")])), None);
        assert_eq!(
            local_ufrag(&request(&[(0x0006, &[0xff, b':', b'a'])])),
            None
        );
    }

    #[test]
    fn truncated_and_lying_lengths_are_none() {
        let d = request(&[(0x0006, b"srv1:cli2")]);
        for cut in 0..d.len() {
            assert_eq!(local_ufrag(&d[..cut]), None, "cut at {cut}");
        }
        let mut long = d.clone();
        long[2] = 0xff;
        assert_eq!(local_ufrag(&long), None);
        let mut attr = d.clone();
        attr[HEADER_LEN + 3] = 200;
        assert_eq!(local_ufrag(&attr), None);
    }

    #[test]
    fn other_protocols_are_not_stun() {
        assert!(!is_stun(&[0x80; 40]), "RTP");
        assert!(!is_stun(&[22; 40]), "DTLS");
        assert!(!is_stun(&[0; 19]), "too short");
    }
}

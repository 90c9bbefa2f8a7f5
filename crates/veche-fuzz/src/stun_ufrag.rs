//! The SFU's STUN peek: the USERNAME of a datagram from an unknown address picks the
//! participant it belongs to, before str0m (or anything else) has looked at it.

use veche_sfu::fuzzing::{is_stun, stun_local_ufrag};

pub fn run(data: &[u8]) {
    let Some(ufrag) = stun_local_ufrag(data) else {
        return;
    };
    assert!(is_stun(data), "a ufrag from a datagram that is not STUN");
    assert!(!ufrag.is_empty(), "an empty ufrag");
    assert!(!ufrag.contains(':'), "ufrag {ufrag:?} holds the separator");
    // It is a slice of the datagram's body, after the 20-byte header and an attribute header,
    // followed by the colon.
    let start = ufrag.as_ptr() as usize - data.as_ptr() as usize;
    assert!(start >= 24, "ufrag starts at {start}, inside the headers");
    let end = start + ufrag.len();
    assert_eq!(data.get(end), Some(&b':'), "ufrag not followed by ':'");
    let declared = usize::from(u16::from_be_bytes([data[2], data[3]]));
    assert!(
        end < 20 + declared,
        "ufrag beyond the declared message length"
    );
}

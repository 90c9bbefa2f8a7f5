//! RFC 4571 framing of ICE-TCP (RFC 6544): on a TCP connection each STUN, DTLS, RTP or RTCP
//! packet is preceded by its length as a 16-bit big-endian number.

use thiserror::Error;

/// Longest frame accepted. WebRTC keeps its packets under the path MTU (~1200 bytes of
/// payload; str0m's DTLS and RTP stay below 1200 too), so anything near RFC 4571's 65535 is
/// not a browser: refusing it early keeps each connection's read buffer small.
pub(crate) const MAX_FRAME: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum FrameError {
    #[error("frame of {0} bytes is longer than {MAX_FRAME}")]
    TooLong(usize),
}

/// The first complete frame at the start of `data`: its payload and the bytes it took
/// (length prefix included). `Ok(None)` when more bytes are needed. An empty frame (RFC 4571
/// allows one) comes back with an empty payload.
pub(crate) fn split_frame(data: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = data.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    Ok(data.get(2..2 + len).map(|payload| (payload, 2 + len)))
}

/// Appends `payload` as one frame to `out`. A payload longer than a frame can say is a
/// broken invariant of the caller (str0m's packets are far smaller); it is not written.
pub(crate) fn write_frame(payload: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(len) = u16::try_from(payload.len()) else {
        debug_assert!(false, "frame of {} bytes", payload.len());
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_as_they_arrive() {
        let mut wire = Vec::new();
        assert!(write_frame(b"hello", &mut wire));
        assert!(write_frame(b"", &mut wire));
        assert!(write_frame(&[9; 1200], &mut wire));
        // Byte by byte: nothing until a frame is whole.
        for cut in 0..7 {
            assert_eq!(split_frame(&wire[..cut]), Ok(None));
        }
        let (first, used) = split_frame(&wire).unwrap().unwrap();
        assert_eq!((first, used), (&b"hello"[..], 7));
        let (empty, used2) = split_frame(&wire[used..]).unwrap().unwrap();
        assert_eq!((empty.len(), used2), (0, 2));
        let rest = &wire[used + used2..];
        assert_eq!(split_frame(&rest[..1201]), Ok(None));
        let (big, used3) = split_frame(rest).unwrap().unwrap();
        assert_eq!((big.len(), used3), (1200, 1202));
    }

    #[test]
    fn refuses_oversized_frames_from_the_prefix_alone() {
        assert_eq!(split_frame(&[0xff, 0xff]), Err(FrameError::TooLong(65535)));
        let len = (MAX_FRAME as u16 + 1).to_be_bytes();
        assert_eq!(split_frame(&len), Err(FrameError::TooLong(MAX_FRAME + 1)));
    }
}

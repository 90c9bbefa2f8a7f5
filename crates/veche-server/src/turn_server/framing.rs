//! TURN over a byte stream (TCP, TLS): STUN messages and ChannelData frames back to back,
//! ChannelData padded to a multiple of four bytes (RFC 8656 §12.5). The protocol crate
//! neither strips nor adds that padding, and browsers send and expect it, so the driver frames
//! the stream here and hands the crate one unpadded frame at a time.

/// The largest frame: a ChannelData header, 65535 bytes of data and its padding.
const MAX_FRAME: usize = 4 + 65535 + 3;
/// RFC 8489 §5.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A stream that is not TURN: the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a STUN message or ChannelData frame (first byte {first:#04x})")]
pub(crate) struct NotTurn {
    first: u8,
}

/// Splits received bytes into frames.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame without its padding, `None` until one is complete.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, NotTurn> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let first = self.buf[0];
        let length = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let (frame, consumed) = match first {
            // STUN: a 20-byte header with the magic cookie, then `length` bytes of attributes.
            0x00..=0x3f => {
                if self.buf.len() < 8 {
                    return Ok(None);
                }
                if self.buf[4..8] != MAGIC_COOKIE {
                    return Err(NotTurn { first });
                }
                (20 + length, 20 + length)
            }
            // ChannelData (channel numbers 0x4000–0x4FFF): 4 bytes of header, padded.
            0x40..=0x4f => (4 + length, (4 + length).next_multiple_of(4)),
            _ => return Err(NotTurn { first }),
        };
        debug_assert!(consumed <= MAX_FRAME + 20);
        if self.buf.len() < consumed {
            return Ok(None);
        }
        let rest = self.buf.split_off(consumed);
        let mut frame_bytes = std::mem::replace(&mut self.buf, rest);
        frame_bytes.truncate(frame);
        Ok(Some(frame_bytes))
    }

    /// Bytes held for an incomplete frame (at most one frame's worth plus one read).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Pads a ChannelData frame for a stream transport; STUN messages are always whole words.
pub(crate) fn pad_for_stream(mut data: Vec<u8>) -> Vec<u8> {
    if data.first().is_some_and(|b| b >> 6 == 1) {
        let padded = data.len().next_multiple_of(4);
        data.resize(padded, 0);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_and_padded_channel_data_in_any_chunks() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]); // transaction id
        stun.extend_from_slice(&[1, 2, 3, 4]); // 4 bytes of attributes
        let channel = vec![0x40, 0x00, 0x00, 0x03, 9, 9, 9];
        let mut stream = stun.clone();
        stream.extend(pad_for_stream(channel.clone()));
        stream.extend_from_slice(&stun);
        assert_eq!(stream.len(), 24 + 8 + 24);

        for chunk in [1, 3, 5, 100] {
            let mut framer = Framer::default();
            let mut frames = vec![];
            for piece in stream.chunks(chunk) {
                framer.push(piece);
                while let Some(f) = framer.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(
                frames,
                vec![stun.clone(), channel.clone(), stun.clone()],
                "{chunk}"
            );
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn refuses_what_is_not_turn() {
        let mut framer = Framer::default();
        // A TLS ClientHello record: no magic cookie.
        framer.push(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);
        assert_eq!(framer.next_frame(), Err(NotTurn { first: 0x16 }));
        let mut framer = Framer::default();
        framer.push(&[0x80, 0, 0, 0]);
        assert!(framer.next_frame().is_err());
    }
}

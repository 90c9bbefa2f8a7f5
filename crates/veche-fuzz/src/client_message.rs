//! `ClientMessage::parse`: every WebSocket text frame a client sends goes through it first.

use veche_proto::{ClientMessage, ParseError};

/// Parses `data` (as the server would: only valid UTF-8 reaches the parser, a WebSocket text
/// frame is UTF-8 by definition) and checks what comes out.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMessage::parse(text) {
        Ok(msg) => {
            // What we accept, we can say again and read back the same.
            let json = msg.to_json();
            let again = ClientMessage::parse(&json)
                .unwrap_or_else(|e| panic!("re-parsing {json} failed: {e}"));
            assert_eq!(again, msg, "round trip through {json} changed the message");
        }
        Err(ParseError::UnknownType(kind)) => {
            // The echoed type is capped: an attacker's megabyte-long type is not logged whole.
            assert!(kind.chars().count() <= 64, "unknown type echoed uncapped");
        }
        Err(_) => {}
    }
}

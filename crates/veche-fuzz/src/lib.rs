//! Fuzz target bodies for every parser of untrusted bytes in Veche, shared by two drivers so
//! they cannot drift:
//!
//! - the cargo-fuzz crate in `fuzz/` (libFuzzer, coverage-guided, nightly), one
//!   `fuzz_target!` per module below, each a one-line call to its `run`;
//! - the bounded stable run in `tests/targets.rs` (part of `cargo test --workspace`), which
//!   feeds each `run` every file of the committed corpus (`fuzz/corpus/<target>/`) and a few
//!   thousand inputs mutated from it by a seeded RNG ([`stable`]).
//!
//! Each `run` takes raw bytes, never panics on any input, and panics (with the reason) when an
//! invariant of the code under test breaks: that panic is what both drivers report.
//!
//! | target | code under test |
//! | --- | --- |
//! | [`client_message`] | `veche_proto::ClientMessage::parse` |
//! | [`stun_ufrag`] | the SFU's STUN USERNAME peek (`veche-sfu/src/stun.rs`) |
//! | [`sfu_datagram`] | `veche_sfu::Sfu::handle_datagram` (demux before str0m) with two joined, connected participants, plus their signalling |
//! | [`api_body`] | the `/api/v1` router: request bodies, queries and the handlers' validation |

pub mod api_body;
pub mod client_message;
pub mod corpus;
pub mod sfu_datagram;
pub mod stable;
pub mod stun_ufrag;

/// A target's body: runs one input, panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its corpus directory and cargo-fuzz binary.
pub const TARGETS: [(&str, Target); 4] = [
    ("client_message", client_message::run),
    ("stun_ufrag", stun_ufrag::run),
    ("sfu_datagram", sfu_datagram::run),
    ("api_body", api_body::run),
];

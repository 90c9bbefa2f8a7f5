//! Which participant a datagram is for: by its source address once known, and before that by
//! the ICE ufrag that the first datagram from a new address (a STUN check) names. Addresses
//! are per transport: a UDP and an ICE-TCP peer may use the same IP and port.

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::net::Protocol;
use veche_proto::ParticipantId;

use crate::stun;

/// Remote addresses remembered per participant (a browser uses one or two; more are spoofed
/// checks or a long-lived client moving between networks).
pub(crate) const MAX_ADDRS_PER_PARTICIPANT: usize = 16;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// From an address this participant's `Rtc` accepted traffic from before.
    Known(ParticipantId),
    /// From a new address, naming this participant's ufrag: its `Rtc` must accept it before
    /// [`Demux::learn`] remembers the address.
    New(ParticipantId),
}

/// The datagram routing tables. Both are keyed by what a peer sends, so they use std's
/// DoS-resistant hasher.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_addr: HashMap<(Protocol, SocketAddr), ParticipantId>,
    by_ufrag: HashMap<String, ParticipantId>,
    /// Each participant's addresses in the order learnt, to forget them and to bound them.
    addrs: HashMap<ParticipantId, Vec<(Protocol, SocketAddr)>>,
}

impl Demux {
    /// A known address names its participant. A new one must start with an ICE check (STUN)
    /// whose USERNAME names our ufrag and so the participant, in one lookup. Anything else from
    /// a stranger is `None`: dropped before any parsing or per-participant work.
    pub(crate) fn route(&self, proto: Protocol, source: SocketAddr, data: &[u8]) -> Option<Route> {
        if let Some(id) = self.by_addr.get(&(proto, source)) {
            return Some(Route::Known(*id));
        }
        let ufrag = stun::local_ufrag(data)?;
        self.by_ufrag.get(ufrag).map(|id| Route::New(*id))
    }

    pub(crate) fn has_ufrag(&self, ufrag: &str) -> bool {
        self.by_ufrag.contains_key(ufrag)
    }

    /// Registers a participant's local ufrag (unique: see [`Demux::has_ufrag`]).
    pub(crate) fn add(&mut self, id: ParticipantId, ufrag: String) {
        debug_assert!(!self.by_ufrag.contains_key(&ufrag), "ufrag clash");
        self.by_ufrag.insert(ufrag, id);
        self.addrs.entry(id).or_default();
    }

    /// Stops routing by `ufrag` (one an ICE restart replaced); the addresses stay.
    pub(crate) fn remove_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    /// Remembers an address `id`'s `Rtc` accepted. Spoofed checks could otherwise grow the
    /// map without bound, so past [`MAX_ADDRS_PER_PARTICIPANT`] the oldest is forgotten; a
    /// real peer's current address comes back with its next consent check.
    pub(crate) fn learn(&mut self, id: ParticipantId, proto: Protocol, source: SocketAddr) {
        let addrs = self.addrs.entry(id).or_default();
        if addrs.len() >= MAX_ADDRS_PER_PARTICIPANT {
            let oldest = addrs.remove(0);
            self.by_addr.remove(&oldest);
        }
        addrs.push((proto, source));
        self.by_addr.insert((proto, source), id);
    }

    /// Forgets everything that routed datagrams to `id`.
    pub(crate) fn remove(&mut self, id: ParticipantId, ufrag: &str) {
        for addr in self.addrs.remove(&id).unwrap_or_default() {
            self.by_addr.remove(&addr);
        }
        self.by_ufrag.remove(ufrag);
    }

    pub(crate) fn clear(&mut self) {
        *self = Demux::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request whose USERNAME is `user`.
    fn binding(user: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&0x0006u16.to_be_bytes());
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const UDP: Protocol = Protocol::Udp;

    #[test]
    fn routes_new_addresses_by_ufrag_then_by_address() {
        let mut d = Demux::default();
        d.add(7, "abcd".into());
        assert_eq!(
            d.route(UDP, addr(1), &binding("abcd:peer")),
            Some(Route::New(7))
        );
        assert_eq!(d.route(UDP, addr(1), &binding("zzzz:peer")), None);
        // Not STUN, from a stranger.
        assert_eq!(d.route(UDP, addr(1), &[0x80; 40]), None);
        d.learn(7, UDP, addr(1));
        assert_eq!(d.route(UDP, addr(1), &[0x80; 40]), Some(Route::Known(7)));
        d.remove(7, "abcd");
        assert_eq!(d.route(UDP, addr(1), &[0x80; 40]), None);
        assert_eq!(d.route(UDP, addr(2), &binding("abcd:peer")), None);
    }

    #[test]
    fn an_ice_restart_routes_the_new_ufrag_and_retires_the_old() {
        let mut d = Demux::default();
        d.add(7, "old".into());
        d.learn(7, UDP, addr(1));
        // The restart's offer is out: both route here until the answer.
        d.add(7, "new".into());
        assert_eq!(
            d.route(UDP, addr(2), &binding("new:p")),
            Some(Route::New(7))
        );
        assert_eq!(
            d.route(UDP, addr(2), &binding("old:p")),
            Some(Route::New(7))
        );
        d.remove_ufrag("old");
        assert_eq!(d.route(UDP, addr(2), &binding("old:p")), None);
        assert_eq!(
            d.route(UDP, addr(2), &binding("new:p")),
            Some(Route::New(7))
        );
        // The known address still routes, and removing the participant forgets the rest.
        assert_eq!(d.route(UDP, addr(1), &[0x80; 40]), Some(Route::Known(7)));
        d.remove(7, "new");
        assert_eq!(d.route(UDP, addr(1), &[0x80; 40]), None);
        assert!(!d.has_ufrag("new"));
    }

    #[test]
    fn addresses_are_per_transport() {
        let mut d = Demux::default();
        d.add(1, "u".into());
        d.add(2, "v".into());
        d.learn(1, UDP, addr(5));
        d.learn(2, Protocol::Tcp, addr(5));
        assert_eq!(d.route(UDP, addr(5), &[0x80; 40]), Some(Route::Known(1)));
        assert_eq!(
            d.route(Protocol::Tcp, addr(5), &[0x80; 40]),
            Some(Route::Known(2))
        );
        d.remove(2, "v");
        assert_eq!(d.route(Protocol::Tcp, addr(5), &[0x80; 40]), None);
        assert_eq!(d.route(UDP, addr(5), &[0x80; 40]), Some(Route::Known(1)));
    }

    #[test]
    fn bounds_addresses_per_participant() {
        let mut d = Demux::default();
        d.add(1, "u".into());
        for port in 0..(MAX_ADDRS_PER_PARTICIPANT as u16 + 4) {
            d.learn(1, UDP, addr(port));
        }
        assert_eq!(d.by_addr.len(), MAX_ADDRS_PER_PARTICIPANT);
        // The oldest went first.
        assert_eq!(d.route(UDP, addr(0), &[0x80; 40]), None);
        assert_eq!(d.route(UDP, addr(19), &[0x80; 40]), Some(Route::Known(1)));
    }
}

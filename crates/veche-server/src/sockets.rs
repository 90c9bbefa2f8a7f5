//! The live signalling connections: counted per peer address (so one address cannot open
//! unbounded sockets) and indexed by the account session they were opened with (so signing
//! out, changing the password or changing a role ends them at once, not at their next
//! upgrade).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// Why the server ended a connection's account session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    SignedOut,
    PasswordChanged,
    RoleChanged,
}

impl SessionEnd {
    /// What the participant is told (with [`veche_proto::ErrorCode::SessionEnded`]).
    pub fn message(self) -> &'static str {
        match self {
            SessionEnd::SignedOut => "you signed out; sign in again to join",
            SessionEnd::PasswordChanged => {
                "the account's password was changed; sign in again to join"
            }
            SessionEnd::RoleChanged => "the account's roles were changed; join again",
        }
    }
}

/// The registry of live connections, shared by the WebSocket layer (which admits and
/// releases them) and the API (which ends those of a session). One mutex: admission is a
/// check and an increment in one step, so parallel upgrades cannot pass the cap together.
#[derive(Debug, Default)]
pub struct LiveSockets {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_key: u64,
    per_ip: HashMap<IpAddr, usize>,
    sockets: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The account session, once the upgrade has identified one.
    owner: Option<Owner>,
    end: watch::Sender<Option<SessionEnd>>,
}

#[derive(Debug)]
struct Owner {
    user_id: String,
    /// The digest of the session token (what the sessions table keys on).
    session: String,
}

/// One admitted connection; dropping it releases its place.
#[derive(Debug)]
pub(crate) struct Admission {
    sockets: Arc<LiveSockets>,
    key: u64,
    ip: IpAddr,
    /// Becomes `Some` when the connection's session is ended.
    pub(crate) ended: watch::Receiver<Option<SessionEnd>>,
}

impl LiveSockets {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain counters and maps, still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip` unless `max_per_ip` are already open from it.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, max_per_ip: usize) -> Option<Admission> {
        let ip = ip.to_canonical();
        let mut inner = self.lock();
        let open = inner.per_ip.entry(ip).or_default();
        if *open >= max_per_ip {
            return None;
        }
        *open += 1;
        inner.next_key += 1;
        let key = inner.next_key;
        let (end, ended) = watch::channel(None);
        inner.sockets.insert(key, Entry { owner: None, end });
        Some(Admission {
            sockets: Arc::clone(self),
            key,
            ip,
            ended,
        })
    }

    /// Open connections from `ip`.
    #[cfg(test)]
    pub(crate) fn open_from(&self, ip: IpAddr) -> usize {
        self.lock()
            .per_ip
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }

    /// Ends every connection opened with the session whose token digest is `session`.
    /// Returns how many.
    pub fn end_session(&self, session: &str, why: SessionEnd) -> usize {
        self.end_where(|o| o.session == session, why)
    }

    /// Ends every connection of `user_id`, whatever session it was opened with.
    pub fn end_user(&self, user_id: &str, why: SessionEnd) -> usize {
        self.end_where(|o| o.user_id == user_id, why)
    }

    fn end_where(&self, matches: impl Fn(&Owner) -> bool, why: SessionEnd) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for entry in inner.sockets.values() {
            if entry.owner.as_ref().is_some_and(&matches) {
                entry.end.send_replace(Some(why));
                n += 1;
            }
        }
        n
    }
}

impl Admission {
    /// Records the account session the connection was opened with.
    pub(crate) fn set_owner(&self, user_id: String, session: String) {
        if let Some(entry) = self.sockets.lock().sockets.get_mut(&self.key) {
            entry.owner = Some(Owner { user_id, session });
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self.sockets.lock();
        inner.sockets.remove(&self.key);
        if let Some(open) = inner.per_ip.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_releases_on_drop() {
        let live = Arc::new(LiveSockets::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = live.admit(a, 2).unwrap();
        let _second = live.admit(a, 2).unwrap();
        assert!(live.admit(a, 2).is_none(), "a third from one address");
        // The same address written as IPv4-mapped IPv6 counts against the same cap.
        assert!(live.admit("::ffff:192.0.2.1".parse().unwrap(), 2).is_none());
        assert!(
            live.admit(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert_eq!(live.open_from(a), 1);
        assert!(live.admit(a, 2).is_some());
    }

    #[test]
    fn ends_the_connections_of_a_session_or_a_user() {
        let live = Arc::new(LiveSockets::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = live.admit(ip, 10).unwrap();
        s1.set_owner("alice".into(), "digest-1".into());
        let s2 = live.admit(ip, 10).unwrap();
        s2.set_owner("alice".into(), "digest-2".into());
        let guest = live.admit(ip, 10).unwrap();
        assert_eq!(live.end_session("digest-1", SessionEnd::SignedOut), 1);
        assert_eq!(*s1.ended.borrow(), Some(SessionEnd::SignedOut));
        assert_eq!(*s2.ended.borrow(), None);
        assert_eq!(live.end_user("alice", SessionEnd::RoleChanged), 2);
        assert_eq!(*s2.ended.borrow(), Some(SessionEnd::RoleChanged));
        assert_eq!(*guest.ended.borrow(), None);
    }
}

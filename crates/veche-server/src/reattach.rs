//! Keeping a participant's place while its signalling connection is down, so that a client
//! whose socket dropped — its network changed, a proxy restarted — takes the same place back
//! from a new connection (`reattach`) instead of joining again: same participant id, role,
//! mutes and media session, and no message lost either way.
//!
//! What moves between connections is a [`Link`]: the SFU end of the participant and, for
//! each direction, a count of the text messages since the `join`. The server also keeps a
//! copy of its latest messages (up to a byte budget), so that on a reattach it sends again
//! those the client says it did not read; the client does the same with its own. A place is
//! held by exactly one task at a time — the connection's session, or, once the socket is
//! gone, the same task waiting out the grace period — and changes hands only through that
//! task's [`Holder`] queue, so a takeover and the end of the place cannot race: either the
//! holder answers the request with the link, or it has given the place up and the request
//! fails.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use veche_sfu::Connection;

use crate::auth::token_digest;

/// A request to the holder of a place: send the link here.
pub(crate) type Takeover = oneshot::Sender<Link>;

/// The part of a signalling session that outlives its socket.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    /// The place's token, once the participant has joined (and places are kept).
    pub(crate) token: Option<String>,
    /// Text messages sent to the client since its `join`, on every connection.
    sent: u64,
    /// The latest of them, oldest first, `kept_bytes` in all.
    kept: VecDeque<Utf8Bytes>,
    kept_bytes: usize,
    /// Text messages read from the client since its `join`.
    pub(crate) received: u64,
}

impl Link {
    pub(crate) fn new(conn: Connection) -> Link {
        Link {
            conn,
            token: None,
            sent: 0,
            kept: VecDeque::new(),
            kept_bytes: 0,
            received: 0,
        }
    }

    /// Counts a message sent to the client and keeps a copy, forgetting the oldest past
    /// `max_bytes`.
    pub(crate) fn record(&mut self, text: &Utf8Bytes, max_bytes: usize) {
        self.sent += 1;
        self.kept_bytes += text.len();
        self.kept.push_back(text.clone());
        while self.kept_bytes > max_bytes {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= old.len();
        }
    }

    /// Whether anything was said on this link yet (a `reattach` must come first).
    pub(crate) fn is_fresh(&self) -> bool {
        self.sent == 0 && self.received == 0 && self.token.is_none()
    }

    /// The messages after the first `read` the client read, if all of them are still kept.
    pub(crate) fn missed(&self, read: u64) -> Option<Vec<Utf8Bytes>> {
        let missing = usize::try_from(self.sent.checked_sub(read)?).ok()?;
        let skip = self.kept.len().checked_sub(missing)?;
        Some(self.kept.iter().skip(skip).cloned().collect())
    }
}

/// Why a place could not be taken; said to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeError {
    Unknown,
    OtherAccount,
    /// The holder did not answer in time, or gave the place up meanwhile.
    Gone,
}

impl TakeError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            TakeError::Unknown => "no place is kept for this token (it expired or never was)",
            TakeError::OtherAccount => "the place belongs to another account",
            TakeError::Gone => "the place was given up",
        }
    }
}

struct Slot {
    generation: u64,
    /// The account that joined, if any: only it may take the place back.
    user: Option<String>,
    requests: mpsc::Sender<Takeover>,
}

/// The places held now, by the digest of their token.
#[derive(Default)]
pub(crate) struct Places {
    slots: Mutex<HashMap<String, Slot>>,
    next_generation: AtomicU64,
    /// Places kept without a connection, per address.
    kept: Mutex<HashMap<IpAddr, usize>>,
}

/// One place kept without a connection, counted against its address until dropped.
pub(crate) struct Kept<'a> {
    places: &'a Places,
    ip: Option<IpAddr>,
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut kept = self.places.kept_lock();
        if let Some(n) = kept.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                kept.remove(&ip);
            }
        }
    }
}

/// The holder's end of a place: takeover requests arrive here.
pub(crate) struct Holder {
    pub(crate) requests: mpsc::Receiver<Takeover>,
    digest: String,
    generation: u64,
}

impl Places {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock leaves a plain map, still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kept_lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a place kept without a connection against `ip`, unless that address keeps
    /// `max` already (then the place is not kept: a client cannot pile up participants by
    /// dropping connections).
    pub(crate) fn keep(&self, ip: Option<IpAddr>, max: usize) -> Option<Kept<'_>> {
        if let Some(ip) = ip {
            let mut kept = self.kept_lock();
            let n = kept.entry(ip).or_default();
            if *n >= max {
                return None;
            }
            *n += 1;
        }
        Some(Kept { places: self, ip })
    }

    /// A new token: 256 random bits, hex.
    pub(crate) fn new_token() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Makes the caller the holder of `token`'s place (replacing an earlier holder's
    /// registration, which is how a takeover ends).
    pub(crate) fn hold(&self, token: &str, user: Option<String>) -> Holder {
        let (tx, rx) = mpsc::channel(1);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let digest = token_digest(token);
        self.lock().insert(
            digest.clone(),
            Slot {
                generation,
                user,
                requests: tx,
            },
        );
        Holder {
            requests: rx,
            digest,
            generation,
        }
    }

    /// Gives the place up, unless someone else holds it by now.
    pub(crate) fn release(&self, holder: &Holder) {
        let mut slots = self.lock();
        if slots
            .get(&holder.digest)
            .is_some_and(|s| s.generation == holder.generation)
        {
            slots.remove(&holder.digest);
        }
    }

    /// Asks the holder of `token`'s place for its link, waiting at most `wait`.
    pub(crate) async fn take(
        &self,
        token: &str,
        user: Option<&str>,
        wait: Duration,
    ) -> Result<Link, TakeError> {
        let requests = {
            let slots = self.lock();
            let slot = slots.get(&token_digest(token)).ok_or(TakeError::Unknown)?;
            if slot.user.as_deref().is_some_and(|u| Some(u) != user) {
                return Err(TakeError::OtherAccount);
            }
            slot.requests.clone()
        };
        let (tx, rx) = oneshot::channel();
        // A full queue means another connection is taking the place right now.
        requests.try_send(tx).map_err(|_| TakeError::Gone)?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(link)) => Ok(link),
            _ => Err(TakeError::Gone),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        let (_tx, events) = mpsc::channel(1);
        Link::new(Connection { id: 1, events })
    }

    #[test]
    fn missed_messages_are_those_after_what_the_client_read() {
        let mut l = link();
        for i in 0..5 {
            l.record(&Utf8Bytes::from(format!("m{i}")), 1000);
        }
        assert_eq!(l.missed(5), Some(vec![]));
        assert_eq!(
            l.missed(3),
            Some(vec![Utf8Bytes::from("m3"), Utf8Bytes::from("m4")])
        );
        assert_eq!(l.missed(0).map(|m| m.len()), Some(5));
        // More read than sent: a confused client, not a replay.
        assert_eq!(l.missed(6), None);
    }

    #[test]
    fn past_the_byte_budget_the_oldest_are_forgotten_and_cannot_be_replayed() {
        let mut l = link();
        for i in 0..10 {
            l.record(&Utf8Bytes::from(format!("msg{i}")), 12);
        }
        // Three 4-byte messages fit in 12 bytes.
        assert_eq!(l.missed(7).map(|m| m.len()), Some(3));
        assert_eq!(l.missed(6), None);
    }

    #[test]
    fn an_address_keeps_a_bounded_number_of_places() {
        let places = Places::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = places.keep(Some(ip), 2);
        let b = places.keep(Some(ip), 2);
        assert!(a.is_some() && b.is_some());
        assert!(places.keep(Some(ip), 2).is_none(), "over the cap");
        assert!(places.keep(Some("192.0.2.2".parse().unwrap()), 2).is_some());
        drop(a);
        assert!(
            places.keep(Some(ip), 2).is_some(),
            "a place given up frees its count"
        );
        drop(b);
        assert!(places.kept_lock().get(&ip).is_none());
    }

    #[tokio::test]
    async fn a_place_changes_hands_only_through_its_holder() {
        let places = Places::default();
        let token = Places::new_token();
        assert_eq!(token.len(), 64);
        let mut holder = places.hold(&token, Some("u1".into()));

        assert_eq!(
            places
                .take("nope", Some("u1"), Duration::from_millis(50))
                .await
                .err(),
            Some(TakeError::Unknown)
        );
        assert_eq!(
            places
                .take(&token, Some("u2"), Duration::from_millis(50))
                .await
                .err(),
            Some(TakeError::OtherAccount)
        );
        // The holder answers with its link.
        let answer = tokio::spawn(async move {
            let reply = holder.requests.recv().await.unwrap();
            assert!(reply.send(link()).is_ok());
            holder
        });
        let taken = places
            .take(&token, Some("u1"), Duration::from_secs(5))
            .await;
        assert!(taken.is_ok());
        let holder = answer.await.unwrap();

        // The new holder registers; the old one's release no longer removes it.
        let new_holder = places.hold(&token, Some("u1".into()));
        places.release(&holder);
        assert_eq!(places.len(), 1);
        // A holder that does not answer: the taker gives up.
        assert_eq!(
            places
                .take(&token, Some("u1"), Duration::from_millis(50))
                .await
                .err(),
            Some(TakeError::Gone)
        );
        places.release(&new_holder);
        assert_eq!(places.len(), 0);
    }
}

//! The core's outputs on their way out, and the news of a change held back until the change
//! is stored.
//!
//! A change to a meeting's live state (a host mute, the lock, a role, an admission, a raised
//! hand) takes effect at once, but the signalling messages announcing it wait until the
//! server has stored the snapshot holding the change ([`crate::Sfu::handle_saved`]), and
//! `meeting_ended` waits until the meeting is stored as over: a client is never told of
//! something a `kill -9` could make the meeting forget. Each held message
//! carries a [`Hold`] — its room, the sequence number of that snapshot, and a deadline after
//! which it goes out anyway (a failing database must not hang a meeting). Order per
//! connection is kept: whatever is sent to a connection after a held message waits behind
//! it, held or not. Datagrams and events never wait.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use veche_proto::ParticipantId;

use super::Output;
use super::room::RoomKey;

/// What a held message waits for: the snapshot `seq` of `room` stored, or `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) room: RoomKey,
    pub(super) seq: u64,
    pub(super) deadline: Instant,
}

/// A message that waits: for its own [`Hold`], or (`None`) only for those ahead of it.
#[derive(Debug)]
struct Held {
    hold: Option<Hold>,
    output: Output,
}

/// The outputs ready to go, and the messages held back per connection.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    ready: VecDeque<Output>,
    held: HashMap<ParticipantId, VecDeque<Held>>,
    /// While set, messages to connections are held for it (see [`Outbox::hold_with`]).
    holding: Option<Hold>,
    /// Something may have become releasable (a snapshot stored, a room gone).
    recheck: bool,
}

impl Outbox {
    /// Queues an output. A message to a connection is held while a hold is in force, or
    /// when something earlier to that connection still is.
    pub(super) fn push_back(&mut self, output: Output) {
        let to = match &output {
            Output::Signal(id, _) | Output::Close(id) => *id,
            _ => return self.ready.push_back(output),
        };
        if let Some(hold) = self.holding {
            self.held.entry(to).or_default().push_back(Held {
                hold: Some(hold),
                output,
            });
        } else if let Some(queue) = self.held.get_mut(&to) {
            queue.push_back(Held { hold: None, output });
        } else {
            self.ready.push_back(output);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<Output> {
        self.ready.pop_front()
    }

    /// Holds messages to connections for `hold` until [`Outbox::end_hold`] puts `previous`
    /// (what this returns) back.
    pub(super) fn hold_with(&mut self, hold: Hold) -> Option<Hold> {
        self.holding.replace(hold)
    }

    /// The hold in force, if any.
    pub(super) fn holding(&self) -> Option<Hold> {
        self.holding
    }

    pub(super) fn end_hold(&mut self, previous: Option<Hold>) {
        self.holding = previous;
    }

    /// Asks for a release pass at the next [`Outbox::needs_release`].
    pub(super) fn recheck(&mut self) {
        self.recheck = true;
    }

    /// Whether a stored snapshot or a room gone may have freed held messages.
    pub(super) fn needs_release(&self) -> bool {
        self.recheck && !self.held.is_empty()
    }

    /// Sends on every held message whose hold `stored` says is over (or whose deadline has
    /// passed at `now`), with whatever waited only behind it. Returns how many went out by
    /// their deadline, unstored.
    pub(super) fn release(&mut self, now: Instant, stored: impl Fn(RoomKey, u64) -> bool) -> usize {
        self.recheck = false;
        let mut late = 0;
        let ready = &mut self.ready;
        self.held.retain(|_, queue| {
            while let Some(front) = queue.front() {
                match front.hold {
                    Some(h) if stored(h.room, h.seq) => {}
                    Some(h) if now >= h.deadline => late += 1,
                    Some(_) => break,
                    None => {}
                }
                if let Some(held) = queue.pop_front() {
                    ready.push_back(held.output);
                }
            }
            !queue.is_empty()
        });
        late
    }

    /// Sends on everything held, stored or not (the server is shutting down).
    pub(super) fn release_all(&mut self) {
        for (_, queue) in self.held.drain() {
            self.ready.extend(queue.into_iter().map(|h| h.output));
        }
    }

    /// Drops what is held for a connection that is gone.
    pub(super) fn forget(&mut self, id: ParticipantId) {
        self.held.remove(&id);
    }

    /// The earliest deadline of a message held at the front of its queue.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.held
            .values()
            .filter_map(|q| q.front()?.hold.map(|h| h.deadline))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use veche_proto::ServerMessage;

    use super::*;

    fn signal(to: ParticipantId, id: ParticipantId) -> Output {
        Output::Signal(to, ServerMessage::ParticipantLeft { participant_id: id })
    }

    fn drain(out: &mut Outbox) -> Vec<(ParticipantId, ParticipantId)> {
        std::iter::from_fn(|| out.pop_front())
            .map(|o| match o {
                Output::Signal(to, ServerMessage::ParticipantLeft { participant_id }) => {
                    (to, participant_id)
                }
                Output::Close(to) => (to, 0),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn held_news_waits_for_its_snapshot_and_keeps_each_connections_order() {
        let t0 = Instant::now();
        let mut out = Outbox::default();
        out.push_back(signal(1, 10));
        let hold = Hold {
            room: 7,
            seq: 3,
            deadline: t0 + Duration::from_secs(1),
        };
        let previous = out.hold_with(hold);
        out.push_back(signal(1, 11));
        out.end_hold(previous);
        // Behind the held message to 1; nothing holds 2.
        out.push_back(signal(1, 12));
        out.push_back(Output::Close(1));
        out.push_back(signal(2, 13));
        assert_eq!(drain(&mut out), [(1, 10), (2, 13)]);
        assert_eq!(out.next_deadline(), Some(hold.deadline));

        assert_eq!(out.release(t0, |room, seq| room == 7 && seq <= 2), 0);
        assert!(
            drain(&mut out).is_empty(),
            "snapshot 2 does not hold the change"
        );
        out.recheck();
        assert!(out.needs_release());
        assert_eq!(out.release(t0, |room, seq| room == 7 && seq <= 3), 0);
        assert_eq!(drain(&mut out), [(1, 11), (1, 12), (1, 0)]);
        assert!(!out.needs_release());
        assert_eq!(out.next_deadline(), None);
        out.push_back(signal(1, 14));
        assert_eq!(drain(&mut out), [(1, 14)], "nothing left to wait behind");
    }

    #[test]
    fn news_goes_out_unstored_at_its_deadline() {
        let t0 = Instant::now();
        let mut out = Outbox::default();
        let deadline = t0 + Duration::from_millis(500);
        out.hold_with(Hold {
            room: 1,
            seq: 1,
            deadline,
        });
        out.push_back(signal(5, 1));
        out.end_hold(None);
        assert_eq!(
            out.release(deadline - Duration::from_millis(1), |_, _| false),
            0
        );
        assert!(drain(&mut out).is_empty());
        assert_eq!(out.release(deadline, |_, _| false), 1);
        assert_eq!(drain(&mut out), [(5, 1)]);
    }

    #[test]
    fn a_gone_connection_leaves_nothing_held() {
        let t0 = Instant::now();
        let mut out = Outbox::default();
        out.hold_with(Hold {
            room: 1,
            seq: 1,
            deadline: t0,
        });
        out.push_back(signal(5, 1));
        out.end_hold(None);
        out.forget(5);
        assert_eq!(out.next_deadline(), None);
        out.push_back(signal(5, 2));
        assert_eq!(drain(&mut out), [(5, 2)]);
    }
}

//! Rooms: who is in each, who speaks, and its live meeting; and the registry that names them.

use std::collections::HashMap;
use std::time::Instant;

use veche_proto::ParticipantId;

use super::e2ee::{E2eeGroup, E2eeLimits};
use super::policy::Meeting;
use super::speaker::ActiveSpeaker;
use crate::id_map::IdMap;

/// A room's handle inside the core (rooms are named by clients; the key is ours).
pub(super) type RoomKey = u64;

pub(super) struct Room {
    pub(super) name: String,
    /// Whose media is forwarded to whom, in the order they came in. The meeting keeps its
    /// own record of each (role, host mutes); a member is in both or in neither.
    pub(super) members: Vec<ParticipantId>,
    pub(super) speaker: ActiveSpeaker,
    pub(super) meeting: Meeting,
    /// The MLS delivery service, when the meeting is end-to-end encrypted.
    pub(super) e2ee: Option<E2eeGroup>,
    /// The sequence number the next snapshot of the meeting goes out with, once a change
    /// not yet in a snapshot has news held for it (see `outbox.rs`).
    pub(super) next_snapshot: Option<u64>,
    /// The latest snapshot sequence number the server has stored.
    pub(super) stored: u64,
}

impl Room {
    /// Gives the room its delivery service once its meeting is end-to-end encrypted.
    pub(super) fn follow_e2ee(&mut self, limits: E2eeLimits) {
        if self.e2ee.is_none() && self.meeting.e2ee().has_group() {
            self.e2ee = Some(E2eeGroup::new(&self.name, limits));
        }
    }

    /// Takes `id` out of the member list (and the speaker slot).
    pub(super) fn remove_member(&mut self, id: ParticipantId) {
        self.members.retain(|m| *m != id);
        self.speaker.remove(id);
    }

    /// Nobody is in it or waiting for it (or coming back to it after a restart).
    pub(super) fn is_over(&self, now: Instant) -> bool {
        self.members.is_empty() && self.meeting.is_over(now)
    }
}

/// Every room of this core, by key and by name; a room and its name come and go together.
#[derive(Default)]
pub(super) struct Rooms {
    by_key: IdMap<RoomKey, Room>,
    /// Keyed by what a client sends, so std's DoS-resistant hasher.
    by_name: HashMap<String, RoomKey>,
    next_key: RoomKey,
    /// Rooms whose meeting was ended while the news of it waits for the server to store that
    /// it is over (see `outbox.rs`).
    ending: HashMap<RoomKey, Ending>,
}

/// A meeting ended, until its end is stored or `until`.
struct Ending {
    name: String,
    seq: u64,
    until: Instant,
}

impl Rooms {
    pub(super) fn key_of(&self, name: &str) -> Option<RoomKey> {
        self.by_name.get(name).copied()
    }

    pub(super) fn get(&self, key: &RoomKey) -> Option<&Room> {
        self.by_key.get(key)
    }

    pub(super) fn get_mut(&mut self, key: &RoomKey) -> Option<&mut Room> {
        self.by_key.get_mut(key)
    }

    /// A new room called `name` (which must not exist yet) with no members yet.
    pub(super) fn create(&mut self, name: &str, meeting: Meeting, limits: E2eeLimits) -> RoomKey {
        debug_assert!(!self.by_name.contains_key(name), "room {name} exists");
        let key = self.next_key;
        self.next_key += 1;
        self.by_name.insert(name.to_owned(), key);
        let mut room = Room {
            name: name.to_owned(),
            members: Vec::new(),
            speaker: ActiveSpeaker::default(),
            meeting,
            e2ee: None,
            next_snapshot: None,
            stored: 0,
        };
        room.follow_e2ee(limits);
        self.by_key.insert(key, room);
        key
    }

    /// Whether the server has stored room `key`'s snapshot `seq`, or has nothing more to
    /// store of it: a room gone is done once its end is stored.
    pub(super) fn is_stored(&self, key: RoomKey, seq: u64) -> bool {
        match self.by_key.get(&key) {
            Some(room) => room.stored >= seq,
            None => !self.ending.contains_key(&key),
        }
    }

    /// The server stored what it had of room `name` up to `seq`; whether that stored
    /// anything news waits for.
    pub(super) fn saved(&mut self, name: &str, seq: u64) -> bool {
        let before = self.ending.len();
        self.ending.retain(|_, e| !(e.name == name && e.seq <= seq));
        let mut changed = self.ending.len() != before;
        if let Some(room) = self.key_of(name).and_then(|k| self.by_key.get_mut(&k)) {
            changed |= seq > room.stored;
            room.stored = room.stored.max(seq);
        }
        changed
    }

    /// Room `key` (removed) ended with snapshot sequence `seq`: news of the end waits until
    /// that is stored, or `until`.
    pub(super) fn ending(&mut self, key: RoomKey, name: &str, seq: u64, until: Instant) {
        self.ending.insert(
            key,
            Ending {
                name: name.to_owned(),
                seq,
                until,
            },
        );
    }

    /// Forgets ends whose news went out unstored.
    pub(super) fn expire_endings(&mut self, now: Instant) {
        self.ending.retain(|_, e| now < e.until);
    }

    pub(super) fn remove(&mut self, key: &RoomKey) -> Option<Room> {
        let room = self.by_key.remove(key)?;
        self.by_name.remove(&room.name);
        Some(room)
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn keys(&self) -> Vec<RoomKey> {
        self.by_key.keys().copied().collect()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&RoomKey, &mut Room)> {
        self.by_key.iter_mut()
    }

    pub(super) fn clear(&mut self) {
        self.by_key.clear();
        self.by_name.clear();
        self.ending.clear();
    }
}

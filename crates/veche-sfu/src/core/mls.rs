//! The core's side of end-to-end encryption: MLS requests of a participant go to its room's
//! [`E2eeGroup`] (the delivery service, `e2ee.rs`), and what the group asks to send goes out
//! as signals in the order it produced them. A participant's `joined` always precedes its
//! delivery-service messages: the group only hears of those who are in the room.

use std::time::Instant;

use veche_proto::{ErrorCode, MlsAdd, MlsBlob, ParticipantId, ServerMessage};

use super::e2ee::{Commit, DsMessage, E2eeGroup, MlsError, check_identity};
use super::{Output, RoomKey, Sfu};

impl Sfu {
    /// `id` handed in its key package.
    pub(super) fn mls_key_package(&mut self, now: Instant, id: ParticipantId, kp: Vec<u8>) {
        let account = self
            .participants
            .get(&id)
            .and_then(|p| self.rooms.get(&p.room_key()))
            .and_then(|r| r.meeting.account_of(id).map(str::to_owned));
        let result = self.with_group(id, |g| {
            g.key_package(now, id, kp, |kp| check_identity(kp, id, account.as_deref()))
        });
        self.answer_mls(id, result);
    }

    /// `id` sent a commit.
    pub(super) fn mls_commit(&mut self, now: Instant, id: ParticipantId, commit: Commit) {
        let result = self.with_group(id, |g| g.commit(now, id, commit));
        self.answer_mls(id, result);
    }

    /// `id` is no longer in room `key` (left, dropped, removed by a host): the committer is
    /// asked to remove them from the group.
    pub(super) fn mls_leave(&mut self, now: Instant, key: RoomKey, id: ParticipantId) {
        self.on_group(key, |g| g.leave(now, id));
    }

    /// Passes the committer's turn on in every room whose committer did not answer in time.
    pub(super) fn mls_timeouts(&mut self, now: Instant) {
        for key in self.rooms.keys() {
            let due = self
                .rooms
                .get(&key)
                .and_then(|r| r.e2ee.as_ref())
                .and_then(E2eeGroup::deadline)
                .is_some_and(|d| d <= now);
            if due {
                self.on_group(key, |g| g.handle_timeout(now));
            }
        }
    }

    /// Runs `f` on the group of `id`'s room; `None` when the room is not end-to-end
    /// encrypted.
    fn with_group<T>(
        &mut self,
        id: ParticipantId,
        f: impl FnOnce(&mut E2eeGroup) -> T,
    ) -> Option<T> {
        let key = self.participants.get(&id)?.room_key();
        self.on_group(key, f)
    }

    /// Runs `f` on the group of room `key` and sends what it produced.
    fn on_group<T>(&mut self, key: RoomKey, f: impl FnOnce(&mut E2eeGroup) -> T) -> Option<T> {
        let group = self.rooms.get_mut(&key)?.e2ee.as_mut()?;
        let result = f(group);
        for (to, msg) in group.out.drain(..) {
            self.out.push_back(Output::Signal(to, signal(msg)));
        }
        Some(result)
    }

    fn answer_mls(&mut self, id: ParticipantId, result: Option<Result<(), MlsError>>) {
        match result {
            Some(Ok(())) => {}
            None => self.error(
                id,
                ErrorCode::InvalidMls,
                "this meeting is not end-to-end encrypted",
            ),
            Some(Err(e @ MlsError::StaleEpoch { .. })) => {
                self.error(id, ErrorCode::StaleEpoch, e.to_string());
            }
            Some(Err(e)) => self.error(id, ErrorCode::InvalidMls, e.to_string()),
        }
    }
}

/// The wire form of what the delivery service sends.
fn signal(msg: DsMessage) -> ServerMessage {
    match msg {
        DsMessage::Create { group_id } => ServerMessage::MlsCreate { group_id },
        DsMessage::Propose { epoch, add, remove } => ServerMessage::MlsPropose {
            epoch,
            add: add
                .into_iter()
                .map(|(participant_id, kp)| MlsAdd {
                    participant_id,
                    key_package: MlsBlob(kp),
                })
                .collect(),
            remove,
        },
        DsMessage::CommitAccepted { epoch } => ServerMessage::MlsCommitAccepted { epoch },
        DsMessage::Commit { epoch, commit } => ServerMessage::MlsCommit {
            epoch,
            commit: MlsBlob(commit),
        },
        DsMessage::Welcome { epoch, welcome } => ServerMessage::MlsWelcome {
            epoch,
            welcome: MlsBlob(welcome),
        },
    }
}

//! The MLS delivery service (RFC 9420 section 15 calls it the DS) of one end-to-end
//! encrypted room: it relays key packages, commits and Welcomes it cannot read, orders the
//! commits (exactly one per epoch, the first valid one wins), and asks a member to commit the
//! Add or Remove when someone joins or leaves. It never holds a private key.
//!
//! ts-mls, the browser's MLS library, cannot take proposals from an external sender, so the
//! server does not propose: it asks the *designated committer* (the member with the lowest
//! participant id) to commit the pending adds and removes, and asks again after every accepted
//! commit until none are left.
//!
//! Sans-IO like the rest of the core: methods take the request and push what to send on
//! [`E2eeGroup::out`]; the caller delivers it. Not yet wired into the core's dispatch.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};

use veche_proto::ParticipantId;

/// Limits on what clients hand the delivery service to relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct E2eeLimits {
    /// Largest key package, commit or Welcome, in bytes (decoded).
    pub(crate) max_blob_bytes: usize,
}

impl Default for E2eeLimits {
    fn default() -> E2eeLimits {
        E2eeLimits {
            max_blob_bytes: 48 * 1024,
        }
    }
}

/// What the delivery service sends to one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DsMessage {
    /// You are the first: create the group, at epoch 0.
    Create { group_id: String },
    /// To the designated committer: commit these adds and removes on `epoch`.
    Propose {
        epoch: u64,
        add: Vec<(ParticipantId, Vec<u8>)>,
        remove: Vec<ParticipantId>,
    },
    /// Your commit on `epoch` was accepted: merge it (you are now at `epoch + 1`).
    CommitAccepted { epoch: u64 },
    /// Another member's commit on `epoch`: process it.
    Commit { epoch: u64, commit: Vec<u8> },
    /// You were added: join from this Welcome (at `epoch`).
    Welcome { epoch: u64, welcome: Vec<u8> },
}

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CommitError {
    /// Another commit won this epoch (or the sender is behind): process it, then retry.
    #[error("commit is for epoch {got}, the group is at epoch {current}")]
    StaleEpoch { got: u64, current: u64 },
    #[error("commit of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("not an MLS commit: {0}")]
    Malformed(&'static str),
    #[error("participant {0} is not a member of the group")]
    NotMember(ParticipantId),
    #[error("participant {0} added without a key package")]
    NoKeyPackage(ParticipantId),
    #[error("an add needs a welcome")]
    MissingWelcome,
}

/// The header every MLS handshake message starts with (RFC 9420 section 6): the group and
/// epoch it belongs to, read without decrypting anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MlsHeader {
    pub(crate) group_id: Vec<u8>,
    pub(crate) epoch: u64,
}

impl TryFrom<&[u8]> for MlsHeader {
    type Error = &'static str;

    /// `MLSMessage { version = mls10 (1), wire_format = public (1) | private (2),
    /// group_id<V>, epoch: u64, ... }`; `<V>` is a QUIC-style variable-length length
    /// (RFC 9420 section 2.1.2).
    fn try_from(b: &[u8]) -> Result<MlsHeader, &'static str> {
        let (version, b) = take_u16(b).ok_or("truncated version")?;
        if version != 1 {
            return Err("not MLS 1.0");
        }
        let (wire, b) = take_u16(b).ok_or("truncated wire format")?;
        if wire != 1 && wire != 2 {
            return Err("not a public or private message");
        }
        let (len, b) = take_varint(b).ok_or("bad group id length")?;
        let len = usize::try_from(len).map_err(|_| "group id too long")?;
        if b.len() < len + 8 {
            return Err("truncated group id or epoch");
        }
        let (group_id, b) = b.split_at(len);
        let (epoch, _) = b.split_at(8);
        let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| "truncated epoch")?);
        Ok(MlsHeader {
            group_id: group_id.to_vec(),
            epoch,
        })
    }
}

fn take_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    let (h, t) = b.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*h), t))
}

fn take_varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let first = *b.first()?;
    let n = 1usize << (first >> 6);
    if n == 8 || b.len() < n {
        return None; // RFC 9420 allows 1, 2 and 4-byte lengths only.
    }
    let mut v = u64::from(first & 0x3f);
    for x in &b[1..n] {
        v = (v << 8) | u64::from(*x);
    }
    Some((v, &b[n..]))
}

/// The delivery service's state for one room.
#[derive(Debug, Default)]
pub(crate) struct E2eeGroup {
    limits: E2eeLimits,
    group_id: String,
    /// The group's current epoch, once it exists.
    epoch: Option<u64>,
    /// Participants in the MLS group, as the accepted commits say.
    members: BTreeSet<ParticipantId>,
    /// In the room with a key package, not yet added.
    to_add: BTreeMap<ParticipantId, Vec<u8>>,
    /// Left the room, still in the group.
    to_remove: BTreeSet<ParticipantId>,
    /// Groups created so far in this room (a room that empties starts a new group).
    generation: u64,
    /// What to send, in order.
    pub(crate) out: Vec<(ParticipantId, DsMessage)>,
}

impl E2eeGroup {
    pub(crate) fn new(room: &str, limits: E2eeLimits) -> E2eeGroup {
        E2eeGroup {
            limits,
            group_id: room.to_owned(),
            ..E2eeGroup::default()
        }
    }

    pub(crate) fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The member asked to commit adds and removes.
    pub(crate) fn committer(&self) -> Option<ParticipantId> {
        self.members
            .iter()
            .copied()
            .find(|m| !self.to_remove.contains(m))
    }

    /// A participant in the room handed in its key package.
    pub(crate) fn key_package(&mut self, id: ParticipantId, kp: Vec<u8>) -> Result<(), usize> {
        if kp.len() > self.limits.max_blob_bytes {
            return Err(kp.len());
        }
        if self.members.contains(&id) {
            return Ok(()); // Already in; a second package is of no use.
        }
        if self.committer().is_none() {
            self.generation += 1;
            self.members = BTreeSet::from([id]);
            self.to_remove.clear();
            self.epoch = Some(0);
            let group_id = format!("{}#{}", self.group_id, self.generation);
            self.out.push((id, DsMessage::Create { group_id }));
        } else {
            self.to_add.insert(id, kp);
        }
        self.ask();
        Ok(())
    }

    /// A participant left the room (or was removed by a host).
    pub(crate) fn leave(&mut self, id: ParticipantId) {
        self.to_add.remove(&id);
        if self.members.contains(&id) {
            self.to_remove.insert(id);
        }
        if self.committer().is_none() {
            // Nobody is left to commit: the group is gone with its last member.
            self.members.clear();
            self.to_remove.clear();
            self.epoch = None;
            // Those waiting to be added start a new group: the lowest creates it.
            let waiting = std::mem::take(&mut self.to_add);
            for (id, kp) in waiting {
                // Within the limit: it was checked when it came in.
                let _ = self.key_package(id, kp);
            }
            return;
        }
        self.ask();
    }

    /// A member's commit on `epoch`, adding `added` (with `welcome`) and removing `removed`.
    pub(crate) fn commit(
        &mut self,
        from: ParticipantId,
        commit: Vec<u8>,
        welcome: Option<Vec<u8>>,
        added: &[ParticipantId],
        removed: &[ParticipantId],
    ) -> Result<(), CommitError> {
        let max = self.limits.max_blob_bytes;
        if commit.len() > max {
            return Err(CommitError::TooLarge(commit.len()));
        }
        if let Some(w) = &welcome
            && w.len() > max
        {
            return Err(CommitError::TooLarge(w.len()));
        }
        if !self.members.contains(&from) || self.to_remove.contains(&from) {
            return Err(CommitError::NotMember(from));
        }
        let header = MlsHeader::try_from(commit.as_slice()).map_err(CommitError::Malformed)?;
        let current = self.epoch.unwrap_or(0);
        if header.epoch != current {
            return Err(CommitError::StaleEpoch {
                got: header.epoch,
                current,
            });
        }
        if let Some(missing) = added.iter().find(|a| !self.to_add.contains_key(a)) {
            return Err(CommitError::NoKeyPackage(*missing));
        }
        if !added.is_empty() && welcome.is_none() {
            return Err(CommitError::MissingWelcome);
        }
        self.epoch = Some(current + 1);
        // Those who left are gone from the room: nothing to send them.
        for m in &self.members {
            if *m != from && !self.to_remove.contains(m) {
                self.out.push((
                    *m,
                    DsMessage::Commit {
                        epoch: current,
                        commit: commit.clone(),
                    },
                ));
            }
        }
        self.out
            .push((from, DsMessage::CommitAccepted { epoch: current }));
        for r in removed {
            self.members.remove(r);
            self.to_remove.remove(r);
        }
        for a in added {
            self.to_add.remove(a);
            self.members.insert(*a);
            if let Some(w) = &welcome {
                self.out.push((
                    *a,
                    DsMessage::Welcome {
                        epoch: current + 1,
                        welcome: w.clone(),
                    },
                ));
            }
        }
        self.ask();
        Ok(())
    }

    /// Asks the committer for what is pending, if anything.
    fn ask(&mut self) {
        let (Some(committer), Some(epoch)) = (self.committer(), self.epoch) else {
            return;
        };
        if self.to_add.is_empty() && self.to_remove.is_empty() {
            return;
        }
        let add = self.to_add.iter().map(|(k, v)| (*k, v.clone())).collect();
        let remove = self.to_remove.iter().copied().collect();
        self.out
            .push((committer, DsMessage::Propose { epoch, add, remove }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A public-message commit header for `epoch` of group "g".
    fn commit_at(epoch: u64) -> Vec<u8> {
        let mut b = vec![0, 1, 0, 1, 1, b'g'];
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(b"rest of the framed content");
        b
    }

    fn group() -> E2eeGroup {
        E2eeGroup::new("room", E2eeLimits::default())
    }

    #[test]
    fn header_parses_and_bad_input_is_an_error() {
        let h = MlsHeader::try_from(commit_at(7).as_slice()).unwrap();
        assert_eq!(
            h,
            MlsHeader {
                group_id: b"g".to_vec(),
                epoch: 7
            }
        );
        for bad in [
            &[][..],
            &[0, 1],
            &[0, 2, 0, 1, 0],
            &[0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(MlsHeader::try_from(bad).is_err(), "{bad:?}");
        }
        // A 2-byte length larger than what follows, and an 8-byte length (not allowed).
        assert!(MlsHeader::try_from(&[0, 1, 0, 1, 0x7f, 0xff, 1][..]).is_err());
        assert!(MlsHeader::try_from(&[0, 1, 0, 1, 0xc0, 0, 0, 0, 0, 0, 0, 0][..]).is_err());
    }

    #[test]
    fn every_truncation_of_a_header_is_an_error_not_a_panic() {
        let full = commit_at(3);
        for n in 0..14 {
            assert!(MlsHeader::try_from(&full[..n]).is_err(), "{n} bytes");
        }
        assert!(MlsHeader::try_from(&full[..14]).is_ok());
    }

    #[test]
    fn first_creates_the_second_is_proposed_to_the_first_and_welcomed() {
        let mut g = group();
        g.key_package(1, b"kp1".to_vec()).unwrap();
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [(
                1,
                DsMessage::Create {
                    group_id: "room#1".into()
                }
            )]
        );
        g.key_package(2, b"kp2".to_vec()).unwrap();
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [(
                1,
                DsMessage::Propose {
                    epoch: 0,
                    add: vec![(2, b"kp2".to_vec())],
                    remove: vec![]
                }
            )]
        );
        g.commit(1, commit_at(0), Some(b"w".to_vec()), &[2], &[])
            .unwrap();
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [
                (1, DsMessage::CommitAccepted { epoch: 0 }),
                (
                    2,
                    DsMessage::Welcome {
                        epoch: 1,
                        welcome: b"w".to_vec()
                    }
                ),
            ]
        );
        assert_eq!(g.epoch(), Some(1));
    }

    #[test]
    fn exactly_one_commit_per_epoch_the_loser_gets_stale_epoch() {
        let mut g = group();
        g.key_package(1, b"kp1".to_vec()).unwrap();
        g.key_package(2, b"kp2".to_vec()).unwrap();
        g.commit(1, commit_at(0), Some(b"w".to_vec()), &[2], &[])
            .unwrap();
        g.out.clear();
        // Both commit epoch 1 (say, a key update): the first wins, the second is told to retry.
        g.commit(2, commit_at(1), None, &[], &[]).unwrap();
        assert_eq!(
            g.commit(1, commit_at(1), None, &[], &[]),
            Err(CommitError::StaleEpoch { got: 1, current: 2 })
        );
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [
                (
                    1,
                    DsMessage::Commit {
                        epoch: 1,
                        commit: commit_at(1)
                    }
                ),
                (2, DsMessage::CommitAccepted { epoch: 1 })
            ]
        );
        // The loser retries on the new epoch and is accepted.
        g.commit(1, commit_at(2), None, &[], &[]).unwrap();
        assert_eq!(g.epoch(), Some(3));
    }

    #[test]
    fn a_leaving_committer_hands_the_removal_to_the_next_member() {
        let mut g = group();
        for id in 1..=3 {
            g.key_package(id, vec![id as u8]).unwrap();
        }
        g.commit(1, commit_at(0), Some(b"w".to_vec()), &[2, 3], &[])
            .unwrap();
        g.out.clear();
        g.leave(1);
        assert_eq!(g.committer(), Some(2));
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [(
                2,
                DsMessage::Propose {
                    epoch: 1,
                    add: vec![],
                    remove: vec![1]
                }
            )]
        );
        // The one who left may not commit any more.
        assert_eq!(
            g.commit(1, commit_at(1), None, &[], &[]),
            Err(CommitError::NotMember(1))
        );
        g.commit(2, commit_at(1), None, &[], &[1]).unwrap();
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [
                (
                    3,
                    DsMessage::Commit {
                        epoch: 1,
                        commit: commit_at(1)
                    }
                ),
                (2, DsMessage::CommitAccepted { epoch: 1 })
            ]
        );
    }

    #[test]
    fn when_the_last_member_leaves_a_waiting_joiner_starts_a_new_group() {
        let mut g = group();
        g.key_package(1, b"a".to_vec()).unwrap();
        g.key_package(2, b"b".to_vec()).unwrap();
        g.out.clear();
        g.leave(1);
        assert_eq!(
            g.out.drain(..).collect::<Vec<_>>(),
            [(
                2,
                DsMessage::Create {
                    group_id: "room#2".into()
                }
            )]
        );
        assert_eq!(g.epoch(), Some(0));
    }

    #[test]
    fn oversized_or_malformed_input_is_refused_without_changing_the_group() {
        let mut g = E2eeGroup::new("room", E2eeLimits { max_blob_bytes: 64 });
        assert_eq!(g.key_package(1, vec![0; 65]), Err(65));
        g.key_package(1, vec![0; 64]).unwrap();
        assert_eq!(
            g.commit(1, vec![0; 65], None, &[], &[]),
            Err(CommitError::TooLarge(65))
        );
        assert!(matches!(
            g.commit(1, vec![9; 5], None, &[], &[]),
            Err(CommitError::Malformed(_))
        ));
        assert_eq!(
            g.commit(1, commit_at(0), None, &[5], &[]),
            Err(CommitError::NoKeyPackage(5))
        );
        assert_eq!(g.epoch(), Some(0));
    }
}

//! The MLS delivery service (RFC 9420 section 15 calls it the DS) of one end-to-end
//! encrypted room: it relays key packages, commits and Welcomes it cannot read, orders the
//! commits (exactly one per epoch, the first valid one wins), and asks a member to commit the
//! Add or Remove when someone joins or leaves. It never holds a private key.
//!
//! ts-mls, the browser's MLS library, cannot take proposals from an external sender, so the
//! server does not propose: it asks the *designated committer* (the member with the lowest
//! participant id that has not let a request time out) to commit the pending adds and
//! removes, and asks again after every accepted commit until none are left. A committer that
//! does not answer within [`E2eeLimits::commit_timeout`] is passed over.
//!
//! Sans-IO like the rest of the core: methods take the request and the time, and push what
//! to send on [`E2eeGroup::out`]; the caller delivers it in order and calls
//! [`E2eeGroup::handle_timeout`] no later than [`E2eeGroup::deadline`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use veche_proto::ParticipantId;

/// Limits on what clients hand the delivery service to relay, and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E2eeLimits {
    /// Largest key package, commit or Welcome, in bytes (decoded).
    pub max_blob_bytes: usize,
    /// How long the designated committer has to answer a request with a commit before the
    /// next member is asked.
    pub commit_timeout: Duration,
}

impl Default for E2eeLimits {
    fn default() -> E2eeLimits {
        E2eeLimits {
            max_blob_bytes: 48 * 1024,
            commit_timeout: Duration::from_millis(5000),
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

/// Why a key package or commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MlsError {
    /// Another commit won this epoch (or the sender is behind): process it, then retry.
    #[error("commit is for epoch {got}, the group is at epoch {current}")]
    StaleEpoch { got: u64, current: u64 },
    #[error("{what} of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("the commit's header names epoch {header}, the message says {field}")]
    EpochMismatch { field: u64, header: u64 },
    #[error("the commit is for another group than this meeting's")]
    WrongGroup,
    #[error("participant {0} is not a member of the group")]
    NotMember(ParticipantId),
    #[error("participant {0} added without a key package")]
    NoKeyPackage(ParticipantId),
    #[error("participant {0} already handed in a key package that waits to be added")]
    KeyPackagePending(ParticipantId),
    #[error("participant {0} removed but has not left")]
    NotLeaving(ParticipantId),
    #[error("an add needs a welcome")]
    MissingWelcome,
    #[error("participant {0} committed a change of its own less than a second ago")]
    TooFrequent(ParticipantId),
    /// The key package's credential does not name the connection's participant and account.
    #[error("the key package's credential names {got}, not this connection's {want}")]
    WrongIdentity { got: String, want: String },
}

/// A member's commit on `epoch`, adding `added` (with `welcome`) and removing `removed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub(crate) epoch: u64,
    pub(crate) commit: Vec<u8>,
    pub(crate) welcome: Option<Vec<u8>>,
    pub(crate) added: Vec<ParticipantId>,
    pub(crate) removed: Vec<ParticipantId>,
}

/// The shortest time between two accepted commits of one member that add and remove nobody.
const MIN_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// RFC 9420 section 6 `WireFormat` values.
const WIRE_PUBLIC: u16 = 1;
const WIRE_PRIVATE: u16 = 2;
const WIRE_WELCOME: u16 = 3;
const WIRE_KEY_PACKAGE: u16 = 5;

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
        let (wire, b) = wire_format(b)?;
        if wire != WIRE_PUBLIC && wire != WIRE_PRIVATE {
            return Err("not a public or private message");
        }
        let (len, b) = take_varint(b).ok_or("bad group id length")?;
        let len = usize::try_from(len).map_err(|_| "group id too long")?;
        if b.len() < len.saturating_add(8) {
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

/// The wire format of an `MLSMessage` of version 1.0, and what follows it.
fn wire_format(b: &[u8]) -> Result<(u16, &[u8]), &'static str> {
    let (version, b) = take_u16(b).ok_or("truncated version")?;
    if version != 1 {
        return Err("not MLS 1.0");
    }
    take_u16(b).ok_or("truncated wire format")
}

/// Checks that `b` is an `MLSMessage` of wire format `want`, within the size limit.
fn check_blob(b: &[u8], want: u16, what: &'static str, max: usize) -> Result<(), MlsError> {
    if b.len() > max {
        return Err(MlsError::TooLarge {
            what,
            len: b.len(),
            max,
        });
    }
    match wire_format(b) {
        Ok((wire, _)) if wire == want => Ok(()),
        Ok(_) => Err(MlsError::Malformed {
            what,
            why: "wrong wire format",
        }),
        Err(why) => Err(MlsError::Malformed { what, why }),
    }
}

/// The identity of a key package's credential, which must be basic: `KeyPackage { version,
/// cipher_suite, init_key<V>, leaf_node: LeafNode { encryption_key<V>, signature_key<V>,
/// credential: Credential { credential_type = basic (1), identity<V> }, ... }, ... }`
/// (RFC 9420 sections 10 and 5.3). Nothing is verified: the members check the signature.
pub(crate) fn key_package_identity(b: &[u8]) -> Result<&[u8], &'static str> {
    let (wire, b) = wire_format(b)?;
    if wire != WIRE_KEY_PACKAGE {
        return Err("not a key package");
    }
    let (_version, b) = take_u16(b).ok_or("truncated key package")?;
    let (_suite, b) = take_u16(b).ok_or("truncated key package")?;
    let (_init_key, b) = take_opaque(b).ok_or("bad init key")?;
    let (_encryption_key, b) = take_opaque(b).ok_or("bad encryption key")?;
    let (_signature_key, b) = take_opaque(b).ok_or("bad signature key")?;
    let (credential_type, b) = take_u16(b).ok_or("truncated credential")?;
    if credential_type != 1 {
        return Err("not a basic credential");
    }
    let (identity, _) = take_opaque(b).ok_or("bad credential identity")?;
    Ok(identity)
}

/// What a credential's identity says, as the web client writes it (`web/js/mls.js`): the
/// participant id in the room and the account's email (empty for a guest).
#[derive(Debug, serde::Deserialize)]
struct CredentialIdentity {
    p: String,
    #[serde(default)]
    a: String,
}

/// Checks that key package `kp` speaks for participant `id` signed in as `account` (a guest:
/// none), so that nobody joins the group under another's name or account.
pub(crate) fn check_identity(
    kp: &[u8],
    id: ParticipantId,
    account: Option<&str>,
) -> Result<(), MlsError> {
    let malformed = |why| MlsError::Malformed {
        what: "key package",
        why,
    };
    let identity = key_package_identity(kp).map_err(malformed)?;
    let who: CredentialIdentity = serde_json::from_slice(identity)
        .map_err(|_| malformed("the credential's identity is not {\"p\", \"a\"} JSON"))?;
    let account = account.unwrap_or("");
    if who.p != id.to_string() || who.a != account {
        let shown = |p: &str, a: &str| {
            let p: String = p.chars().take(32).collect();
            let a: String = a.chars().take(128).collect();
            if a.is_empty() {
                format!("participant {p} (a guest)")
            } else {
                format!("participant {p} ({a})")
            }
        };
        return Err(MlsError::WrongIdentity {
            got: shown(&who.p, &who.a),
            want: shown(&id.to_string(), account),
        });
    }
    Ok(())
}

fn take_opaque(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, b) = take_varint(b)?;
    let len = usize::try_from(len).ok()?;
    (b.len() >= len).then(|| b.split_at(len))
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

/// The outstanding request to the designated committer.
#[derive(Debug, Clone, Copy)]
struct Asked {
    to: ParticipantId,
    epoch: u64,
    deadline: Instant,
}

/// The delivery service's state for one room.
#[derive(Debug, Default)]
pub(crate) struct E2eeGroup {
    limits: E2eeLimits,
    room: String,
    /// The group id of the current group (the room and its generation).
    group_id: String,
    /// The group's current epoch, once it exists.
    epoch: Option<u64>,
    /// Participants in the MLS group, as the accepted commits say.
    members: BTreeSet<ParticipantId>,
    /// In the room with a key package, not yet added.
    to_add: BTreeMap<ParticipantId, Vec<u8>>,
    /// Those a request on the current epoch asked to add.
    proposed: BTreeSet<ParticipantId>,
    /// Of `proposed`, those who left before a commit added them: a commit may still add
    /// them (it was made before they left); they are then removed at once.
    departed: BTreeSet<ParticipantId>,
    /// Left the room, still in the group.
    to_remove: BTreeSet<ParticipantId>,
    /// Members who let a request time out: passed over as committer until they commit.
    timed_out: BTreeSet<ParticipantId>,
    /// When each member's latest commit that added and removed nobody was accepted.
    last_update: BTreeMap<ParticipantId, Instant>,
    asked: Option<Asked>,
    /// Groups created so far in this room (a room that empties starts a new group).
    generation: u64,
    /// What to send, in order.
    pub(crate) out: Vec<(ParticipantId, DsMessage)>,
}

impl E2eeGroup {
    pub(crate) fn new(room: &str, limits: E2eeLimits) -> E2eeGroup {
        E2eeGroup {
            limits,
            room: room.to_owned(),
            ..E2eeGroup::default()
        }
    }

    #[cfg(test)]
    fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Members still in the room, lowest id first.
    fn live(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.members
            .iter()
            .copied()
            .filter(|m| !self.to_remove.contains(m))
    }

    /// The member asked to commit adds and removes: the lowest that has not timed out, or
    /// the lowest of all when every one has.
    pub(crate) fn committer(&self) -> Option<ParticipantId> {
        self.live()
            .find(|m| !self.timed_out.contains(m))
            .or_else(|| self.live().next())
    }

    /// When [`E2eeGroup::handle_timeout`] is due: the committer's time to answer is up.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.asked.map(|a| a.deadline)
    }

    /// A participant in the room handed in its key package.
    ///
    /// `check` vets the package's credential once its size and format are known good.
    pub(crate) fn key_package(
        &mut self,
        now: Instant,
        id: ParticipantId,
        kp: Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<(), MlsError>,
    ) -> Result<(), MlsError> {
        check_blob(
            &kp,
            WIRE_KEY_PACKAGE,
            "key package",
            self.limits.max_blob_bytes,
        )?;
        check(&kp)?;
        if self.members.contains(&id) {
            return Ok(()); // Already in; a second package is of no use.
        }
        if self.to_add.contains_key(&id) {
            // One live package each: every new one is asked for again in full, so taking
            // repeats would let one participant flood the committer.
            return Err(MlsError::KeyPackagePending(id));
        }
        if self.committer().is_none() {
            self.generation += 1;
            self.members = BTreeSet::from([id]);
            self.to_remove.clear();
            self.timed_out.clear();
            self.proposed.clear();
            self.departed.clear();
            self.epoch = Some(0);
            self.group_id = format!("{}#{}", self.room, self.generation);
            let group_id = self.group_id.clone();
            self.out.push((id, DsMessage::Create { group_id }));
        } else {
            self.to_add.insert(id, kp);
        }
        self.ask(now);
        Ok(())
    }

    /// A participant left the room (or was removed by a host).
    pub(crate) fn leave(&mut self, now: Instant, id: ParticipantId) {
        if self.to_add.remove(&id).is_some() && self.proposed.contains(&id) {
            self.departed.insert(id);
        }
        self.timed_out.remove(&id);
        self.last_update.remove(&id);
        if self.members.contains(&id) {
            self.to_remove.insert(id);
        }
        if self.committer().is_none() {
            // Nobody is left to commit: the group is gone with its last member.
            self.members.clear();
            self.to_remove.clear();
            self.proposed.clear();
            self.departed.clear();
            self.asked = None;
            self.epoch = None;
            // Those waiting to be added start a new group: the lowest creates it.
            let waiting = std::mem::take(&mut self.to_add);
            for (id, kp) in waiting {
                // Within the limits, and its credential vetted: it was checked when it came in.
                let _ = self.key_package(now, id, kp, |_| Ok(()));
            }
            return;
        }
        self.ask(now);
    }

    /// A member's commit.
    pub(crate) fn commit(
        &mut self,
        now: Instant,
        from: ParticipantId,
        c: Commit,
    ) -> Result<(), MlsError> {
        let Commit {
            epoch,
            commit,
            welcome,
            added,
            removed,
        } = c;
        let max = self.limits.max_blob_bytes;
        if commit.len() > max {
            return Err(MlsError::TooLarge {
                what: "commit",
                len: commit.len(),
                max,
            });
        }
        if let Some(w) = &welcome {
            check_blob(w, WIRE_WELCOME, "welcome", max)?;
        }
        let header = MlsHeader::try_from(commit.as_slice()).map_err(|why| MlsError::Malformed {
            what: "commit",
            why,
        })?;
        if header.epoch != epoch {
            return Err(MlsError::EpochMismatch {
                field: epoch,
                header: header.epoch,
            });
        }
        if !self.members.contains(&from) || self.to_remove.contains(&from) {
            return Err(MlsError::NotMember(from));
        }
        if header.group_id != self.group_id.as_bytes() {
            return Err(MlsError::WrongGroup);
        }
        let current = self.epoch.unwrap_or(0);
        if header.epoch != current {
            return Err(MlsError::StaleEpoch {
                got: header.epoch,
                current,
            });
        }
        if let Some(missing) = added
            .iter()
            .find(|a| !self.to_add.contains_key(a) && !self.departed.contains(a))
        {
            return Err(MlsError::NoKeyPackage(*missing));
        }
        if let Some(staying) = removed.iter().find(|r| !self.to_remove.contains(r)) {
            return Err(MlsError::NotLeaving(*staying));
        }
        if !added.is_empty() && welcome.is_none() {
            return Err(MlsError::MissingWelcome);
        }
        // A commit that adds and removes nobody (a key update) is relayed to every member
        // like any other: one per member per second, so one member cannot flood the room.
        let update = added.is_empty() && removed.is_empty();
        if update
            && self
                .last_update
                .get(&from)
                .is_some_and(|at| now.saturating_duration_since(*at) < MIN_UPDATE_INTERVAL)
        {
            return Err(MlsError::TooFrequent(from));
        }
        if update {
            self.last_update.insert(from, now);
        }
        self.epoch = Some(current + 1);
        // Those who left are gone from the room: nothing to send them.
        let others: Vec<_> = self.live().filter(|m| *m != from).collect();
        for m in others {
            self.out.push((
                m,
                DsMessage::Commit {
                    epoch: current,
                    commit: commit.clone(),
                },
            ));
        }
        self.out
            .push((from, DsMessage::CommitAccepted { epoch: current }));
        for r in &removed {
            self.members.remove(r);
            self.to_remove.remove(r);
        }
        for a in added {
            self.members.insert(a);
            if self.to_add.remove(&a).is_none() {
                // Left after the request that added them: in the group, not in the room.
                self.to_remove.insert(a);
                continue;
            }
            if let Some(w) = &welcome {
                self.out.push((
                    a,
                    DsMessage::Welcome {
                        epoch: current + 1,
                        welcome: w.clone(),
                    },
                ));
            }
        }
        self.timed_out.remove(&from);
        self.proposed.clear();
        self.departed.clear();
        self.asked = None;
        self.ask(now);
        Ok(())
    }

    /// The committer's time is up: the next member is asked instead.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(asked) = self.asked.filter(|a| now >= a.deadline) else {
            return;
        };
        self.asked = None;
        self.timed_out.insert(asked.to);
        if self.live().all(|m| self.timed_out.contains(&m)) {
            // Everyone has failed once: start the round again after the one just passed.
            self.timed_out = BTreeSet::from([asked.to]);
        }
        self.ask(now);
    }

    /// Asks the committer for what is pending, if anything. A request repeated to the same
    /// committer on the same epoch (someone else joined meanwhile) keeps its deadline.
    fn ask(&mut self, now: Instant) {
        let (Some(committer), Some(epoch)) = (self.committer(), self.epoch) else {
            self.asked = None;
            return;
        };
        if self.to_add.is_empty() && self.to_remove.is_empty() {
            self.asked = None;
            return;
        }
        let deadline = match self.asked {
            Some(a) if a.to == committer && a.epoch == epoch => a.deadline,
            _ => now + self.limits.commit_timeout,
        };
        self.asked = Some(Asked {
            to: committer,
            epoch,
            deadline,
        });
        self.proposed.extend(self.to_add.keys().copied());
        let add = self.to_add.iter().map(|(k, v)| (*k, v.clone())).collect();
        let remove = self.to_remove.iter().copied().collect();
        self.out
            .push((committer, DsMessage::Propose { epoch, add, remove }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A public-message commit header for `epoch` of group `group`.
    fn header(group: &str, epoch: u64) -> Vec<u8> {
        let mut b = vec![0, 1, 0, 1, group.len() as u8];
        b.extend_from_slice(group.as_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(b"rest of the framed content");
        b
    }

    /// A commit on `epoch` of the room's first group.
    fn commit_at(epoch: u64) -> Vec<u8> {
        header("room#1", epoch)
    }

    fn kp(id: u8) -> Vec<u8> {
        vec![0, 1, 0, 5, id]
    }

    fn welcome() -> Vec<u8> {
        vec![0, 1, 0, 3, b'w']
    }

    fn commit(epoch: u64, added: &[ParticipantId], removed: &[ParticipantId]) -> Commit {
        Commit {
            epoch,
            commit: commit_at(epoch),
            welcome: (!added.is_empty()).then(welcome),
            added: added.to_vec(),
            removed: removed.to_vec(),
        }
    }

    fn t0() -> Instant {
        Instant::now()
    }

    fn group() -> E2eeGroup {
        E2eeGroup::new("room", E2eeLimits::default())
    }

    fn drain(g: &mut E2eeGroup) -> Vec<(ParticipantId, DsMessage)> {
        g.out.drain(..).collect()
    }

    /// A group of members 1..=n at epoch 1, with nothing pending.
    fn group_of(n: u64, now: Instant) -> E2eeGroup {
        let mut g = group();
        for id in 1..=n {
            g.key_package(now, id, kp(id as u8), |_| Ok(())).unwrap();
        }
        let added: Vec<_> = (2..=n).collect();
        g.commit(now, 1, commit(0, &added, &[])).unwrap();
        g.out.clear();
        g
    }

    #[test]
    fn header_parses_and_bad_input_is_an_error() {
        let h = MlsHeader::try_from(header("g", 7).as_slice()).unwrap();
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
        // A 4-byte length near the top of the range must not overflow.
        assert!(MlsHeader::try_from(&[0, 1, 0, 1, 0xbf, 0xff, 0xff, 0xff, 0][..]).is_err());
    }

    #[test]
    fn every_truncation_of_a_header_is_an_error_not_a_panic() {
        let full = header("g", 3);
        for n in 0..14 {
            assert!(MlsHeader::try_from(&full[..n]).is_err(), "{n} bytes");
        }
        assert!(MlsHeader::try_from(&full[..14]).is_ok());
    }

    #[test]
    fn first_creates_the_second_is_proposed_to_the_first_and_welcomed() {
        let now = t0();
        let mut g = group();
        g.key_package(now, 1, kp(1), |_| Ok(())).unwrap();
        assert_eq!(
            drain(&mut g),
            [(
                1,
                DsMessage::Create {
                    group_id: "room#1".into()
                }
            )]
        );
        g.key_package(now, 2, kp(2), |_| Ok(())).unwrap();
        assert_eq!(
            drain(&mut g),
            [(
                1,
                DsMessage::Propose {
                    epoch: 0,
                    add: vec![(2, kp(2))],
                    remove: vec![]
                }
            )]
        );
        g.commit(now, 1, commit(0, &[2], &[])).unwrap();
        assert_eq!(
            drain(&mut g),
            [
                (1, DsMessage::CommitAccepted { epoch: 0 }),
                (
                    2,
                    DsMessage::Welcome {
                        epoch: 1,
                        welcome: welcome()
                    }
                ),
            ]
        );
        assert_eq!(g.epoch(), Some(1));
        assert_eq!(g.deadline(), None, "nothing is pending");
    }

    #[test]
    fn exactly_one_commit_per_epoch_the_loser_gets_stale_epoch() {
        let now = t0();
        let mut g = group_of(2, now);
        // Both commit epoch 1 (say, a key update): the first wins, the second is told to retry.
        g.commit(now, 2, commit(1, &[], &[])).unwrap();
        assert_eq!(
            g.commit(now, 1, commit(1, &[], &[])),
            Err(MlsError::StaleEpoch { got: 1, current: 2 })
        );
        assert_eq!(
            drain(&mut g),
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
        g.commit(now, 1, commit(2, &[], &[])).unwrap();
        assert_eq!(g.epoch(), Some(3));
        // Key updates of one member: at most one a second.
        assert_eq!(
            g.commit(now, 2, commit(3, &[], &[])),
            Err(MlsError::TooFrequent(2))
        );
        g.commit(now + MIN_UPDATE_INTERVAL, 2, commit(3, &[], &[]))
            .unwrap();
        assert_eq!(g.epoch(), Some(4));
    }

    #[test]
    fn a_leaving_committer_hands_the_removal_to_the_next_member() {
        let now = t0();
        let mut g = group_of(3, now);
        g.leave(now, 1);
        assert_eq!(g.committer(), Some(2));
        assert_eq!(
            drain(&mut g),
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
            g.commit(now, 1, commit(1, &[], &[])),
            Err(MlsError::NotMember(1))
        );
        g.commit(now, 2, commit(1, &[], &[1])).unwrap();
        assert_eq!(
            drain(&mut g),
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
        let now = t0();
        let mut g = group();
        g.key_package(now, 1, kp(1), |_| Ok(())).unwrap();
        g.key_package(now, 2, kp(2), |_| Ok(())).unwrap();
        g.out.clear();
        g.leave(now, 1);
        assert_eq!(
            drain(&mut g),
            [(
                2,
                DsMessage::Create {
                    group_id: "room#2".into()
                }
            )]
        );
        assert_eq!(g.epoch(), Some(0));
        // A commit for the old group is refused; the new group's is taken.
        assert_eq!(
            g.commit(now, 2, commit(0, &[], &[])),
            Err(MlsError::WrongGroup)
        );
        g.key_package(now, 3, kp(3), |_| Ok(())).unwrap();
        let mut c = commit(0, &[3], &[]);
        c.commit = header("room#2", 0);
        g.commit(now, 2, c).unwrap();
        assert_eq!(g.epoch(), Some(1));
    }

    #[test]
    fn oversized_or_malformed_input_is_refused_without_changing_the_group() {
        let now = t0();
        let mut g = E2eeGroup::new(
            "room",
            E2eeLimits {
                max_blob_bytes: 64,
                ..E2eeLimits::default()
            },
        );
        let mut big = kp(1);
        big.resize(65, 0);
        assert!(matches!(
            g.key_package(now, 1, big.clone(), |_| Ok(())),
            Err(MlsError::TooLarge { len: 65, .. })
        ));
        assert!(matches!(
            g.key_package(now, 1, welcome(), |_| Ok(())),
            Err(MlsError::Malformed {
                why: "wrong wire format",
                ..
            })
        ));
        assert!(matches!(
            g.key_package(now, 1, vec![0, 2, 0, 5], |_| Ok(())),
            Err(MlsError::Malformed {
                why: "not MLS 1.0",
                ..
            })
        ));
        assert!(g.out.is_empty(), "nothing was created");
        big.truncate(64);
        g.key_package(now, 1, big, |_| Ok(())).unwrap();
        let mut c = commit(0, &[], &[]);
        c.commit.resize(65, 0);
        assert!(matches!(
            g.commit(now, 1, c),
            Err(MlsError::TooLarge { len: 65, .. })
        ));
        let mut c = commit(0, &[], &[]);
        c.commit = vec![9; 5];
        assert!(matches!(
            g.commit(now, 1, c),
            Err(MlsError::Malformed { what: "commit", .. })
        ));
        assert_eq!(
            g.commit(now, 1, commit(0, &[5], &[])),
            Err(MlsError::NoKeyPackage(5))
        );
        let mut c = commit(0, &[], &[]);
        c.epoch = 4;
        assert_eq!(
            g.commit(now, 1, c),
            Err(MlsError::EpochMismatch {
                field: 4,
                header: 0
            })
        );
        assert_eq!(
            g.commit(now, 1, commit(0, &[], &[1])),
            Err(MlsError::NotLeaving(1))
        );
        g.key_package(now, 2, kp(2), |_| Ok(())).unwrap();
        let mut c = commit(0, &[2], &[]);
        c.welcome = None;
        assert_eq!(g.commit(now, 1, c), Err(MlsError::MissingWelcome));
        let mut c = commit(0, &[2], &[]);
        c.welcome = Some(kp(9));
        assert!(matches!(
            g.commit(now, 1, c),
            Err(MlsError::Malformed {
                what: "welcome",
                ..
            })
        ));
        // One live key package each; a member's second is ignored.
        g.out.clear();
        assert_eq!(
            g.key_package(now, 2, kp(2), |_| Ok(())),
            Err(MlsError::KeyPackagePending(2))
        );
        g.key_package(now, 1, kp(1), |_| Ok(())).unwrap();
        assert!(g.out.is_empty(), "nothing asked again");
        assert_eq!(g.epoch(), Some(0));
    }

    #[test]
    fn a_committer_that_does_not_answer_is_passed_over() {
        let now = t0();
        let timeout = E2eeLimits::default().commit_timeout;
        let mut g = group_of(3, now);
        g.key_package(now, 4, kp(4), |_| Ok(())).unwrap();
        assert_eq!(g.deadline(), Some(now + timeout));
        // Another joiner before the deadline: the same request, the same deadline.
        g.key_package(now + timeout / 2, 5, kp(5), |_| Ok(()))
            .unwrap();
        assert_eq!(g.deadline(), Some(now + timeout));
        g.out.clear();
        g.handle_timeout(now + timeout / 2);
        assert!(g.out.is_empty(), "not due yet");
        g.handle_timeout(now + timeout);
        assert_eq!(g.committer(), Some(2));
        assert_eq!(
            drain(&mut g),
            [(
                2,
                DsMessage::Propose {
                    epoch: 1,
                    add: vec![(4, kp(4)), (5, kp(5))],
                    remove: vec![]
                }
            )]
        );
        assert_eq!(g.deadline(), Some(now + timeout * 2));
        // The old committer's late commit is still taken when it comes first, and puts it
        // back in line.
        g.commit(now + timeout, 1, commit(1, &[4, 5], &[])).unwrap();
        assert_eq!(g.committer(), Some(1));
        assert_eq!(g.deadline(), None);
        assert_eq!(
            g.commit(now + timeout, 2, commit(1, &[4, 5], &[])),
            Err(MlsError::StaleEpoch { got: 1, current: 2 })
        );
    }

    #[test]
    fn when_every_member_timed_out_the_turn_goes_round_again() {
        let now = t0();
        let timeout = E2eeLimits::default().commit_timeout;
        let mut g = group_of(2, now);
        g.key_package(now, 3, kp(3), |_| Ok(())).unwrap();
        let mut at = now;
        let mut asked = Vec::new();
        for _ in 0..4 {
            at += timeout;
            g.handle_timeout(at);
            asked.push(g.committer());
        }
        assert_eq!(asked, [Some(2), Some(1), Some(2), Some(1)]);
    }

    #[test]
    fn someone_who_leaves_after_being_proposed_may_still_be_added_then_is_removed() {
        let now = t0();
        let mut g = group_of(2, now);
        g.key_package(now, 3, kp(3), |_| Ok(())).unwrap();
        g.out.clear();
        // 3 leaves while 1 commits its add: the request changes to nothing pending...
        g.leave(now, 3);
        assert!(g.out.is_empty());
        assert_eq!(g.deadline(), None);
        // ...but the commit made before is accepted, 3 gets no Welcome, and its removal is
        // asked for at once.
        g.commit(now, 1, commit(1, &[3], &[])).unwrap();
        assert_eq!(
            drain(&mut g),
            [
                (
                    2,
                    DsMessage::Commit {
                        epoch: 1,
                        commit: commit_at(1)
                    }
                ),
                (1, DsMessage::CommitAccepted { epoch: 1 }),
                (
                    1,
                    DsMessage::Propose {
                        epoch: 2,
                        add: vec![],
                        remove: vec![3]
                    }
                ),
            ]
        );
        // Someone never proposed cannot be added that way.
        g.leave(now, 9);
        assert_eq!(
            g.commit(now, 1, commit(2, &[9], &[3])),
            Err(MlsError::NoKeyPackage(9))
        );
    }
}

//! What the core is asked to do on behalf of one signalling connection, and the host
//! controls, in the core's own terms. The wire's [`ClientMessage`] is turned into these at
//! the edge (the driver), so the core never matches on messages it does not handle and a
//! host control is a host control by its type.

use veche_proto::{ClientMessage, ParticipantId, Role, TrackKind, VideoSize};

use crate::meeting::{JoinGrant, JoinRequest};

/// One connection's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join a room. From the wire (a bare `join`), an instant guest room; the server's gate
    /// uses [`crate::Sfu::handle_join`] with its own grant instead.
    Join(Box<JoinRequest>),
    /// Take an earlier connection's place (the signalling layer's business; the core
    /// refuses it).
    Reattach,
    /// Restart ICE in the next offer.
    IceRestart,
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
    },
    SetMedia {
        kind: TrackKind,
        enabled: bool,
    },
    Chat {
        text: String,
    },
    SealedChat {
        sealed: Vec<u8>,
    },
    RaiseHand {
        raised: bool,
    },
    Leave,
    /// The remote videos the client renders, and how large (replaces the previous report).
    VideoSizes {
        sizes: Vec<VideoSize>,
    },
    Host(HostControl),
    /// This participant's MLS key package (decoded).
    MlsKeyPackage {
        key_package: Vec<u8>,
    },
    /// A commit for the room's MLS group (decoded).
    MlsCommit {
        epoch: u64,
        commit: Vec<u8>,
        welcome: Option<Vec<u8>>,
        added: Vec<ParticipantId>,
        removed: Vec<ParticipantId>,
    },
}

/// A host control, from a participant in the meeting or from the API (see
/// `docs/protocol.md` for who may use which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostControl {
    Admit {
        participant_id: ParticipantId,
    },
    Deny {
        participant_id: ParticipantId,
    },
    Mute {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    MuteAll {
        allow_self_unmute: bool,
    },
    AskUnmute {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    SetMeeting {
        locked: Option<bool>,
        allow_self_unmute: Option<bool>,
    },
    Remove {
        participant_id: ParticipantId,
        bar: bool,
    },
    SetRole {
        participant_id: ParticipantId,
        role: Role,
    },
    TransferHost {
        participant_id: ParticipantId,
    },
    EndMeeting,
}

impl From<ClientMessage> for Command {
    fn from(msg: ClientMessage) -> Command {
        match msg {
            // The passcode is the gate's business; a bare join has none to check.
            ClientMessage::Join {
                version,
                room,
                name,
                passcode: _,
                resume,
                e2ee,
                require_e2ee,
            } => Command::Join(Box::new(JoinRequest {
                version,
                room,
                name,
                grant: JoinGrant::guest_room(),
                resume,
                e2ee,
                require_e2ee,
            })),
            ClientMessage::Reattach { .. } => Command::Reattach,
            ClientMessage::IceRestart => Command::IceRestart,
            ClientMessage::Answer { sdp } => Command::Answer { sdp },
            ClientMessage::Candidate { candidate } => Command::Candidate { candidate },
            ClientMessage::SetMedia { kind, enabled } => Command::SetMedia { kind, enabled },
            ClientMessage::Chat { text } => Command::Chat { text },
            ClientMessage::SealedChat { sealed } => Command::SealedChat { sealed: sealed.0 },
            ClientMessage::RaiseHand { raised } => Command::RaiseHand { raised },
            ClientMessage::Leave => Command::Leave,
            ClientMessage::VideoSizes { sizes } => Command::VideoSizes { sizes },
            ClientMessage::MlsKeyPackage { key_package } => Command::MlsKeyPackage {
                key_package: key_package.0,
            },
            ClientMessage::MlsCommit {
                epoch,
                commit,
                welcome,
                added,
                removed,
            } => Command::MlsCommit {
                epoch,
                commit: commit.0,
                welcome: welcome.map(|w| w.0),
                added,
                removed,
            },
            host @ (ClientMessage::Admit { .. }
            | ClientMessage::Deny { .. }
            | ClientMessage::Mute { .. }
            | ClientMessage::MuteAll { .. }
            | ClientMessage::AskUnmute { .. }
            | ClientMessage::SetMeeting { .. }
            | ClientMessage::Remove { .. }
            | ClientMessage::SetRole { .. }
            | ClientMessage::TransferHost { .. }
            | ClientMessage::EndMeeting) => match HostControl::try_from(host) {
                Ok(control) => Command::Host(control),
                // The pattern above names exactly the variants `try_from` converts.
                Err(other) => unreachable!("a host control refused: {other:?}"),
            },
        }
    }
}

impl TryFrom<ClientMessage> for HostControl {
    /// The message, when it is not a host control.
    type Error = ClientMessage;

    fn try_from(msg: ClientMessage) -> Result<HostControl, ClientMessage> {
        Ok(match msg {
            ClientMessage::Admit { participant_id } => HostControl::Admit { participant_id },
            ClientMessage::Deny { participant_id } => HostControl::Deny { participant_id },
            ClientMessage::Mute {
                participant_id,
                kind,
            } => HostControl::Mute {
                participant_id,
                kind,
            },
            ClientMessage::MuteAll { allow_self_unmute } => {
                HostControl::MuteAll { allow_self_unmute }
            }
            ClientMessage::AskUnmute {
                participant_id,
                kind,
            } => HostControl::AskUnmute {
                participant_id,
                kind,
            },
            ClientMessage::SetMeeting {
                locked,
                allow_self_unmute,
            } => HostControl::SetMeeting {
                locked,
                allow_self_unmute,
            },
            ClientMessage::Remove {
                participant_id,
                bar,
            } => HostControl::Remove {
                participant_id,
                bar,
            },
            ClientMessage::SetRole {
                participant_id,
                role,
            } => HostControl::SetRole {
                participant_id,
                role,
            },
            ClientMessage::TransferHost { participant_id } => {
                HostControl::TransferHost { participant_id }
            }
            ClientMessage::EndMeeting => HostControl::EndMeeting,
            other @ (ClientMessage::Join { .. }
            | ClientMessage::Reattach { .. }
            | ClientMessage::IceRestart
            | ClientMessage::Answer { .. }
            | ClientMessage::Candidate { .. }
            | ClientMessage::SetMedia { .. }
            | ClientMessage::Chat { .. }
            | ClientMessage::SealedChat { .. }
            | ClientMessage::RaiseHand { .. }
            | ClientMessage::Leave
            | ClientMessage::VideoSizes { .. }
            | ClientMessage::MlsKeyPackage { .. }
            | ClientMessage::MlsCommit { .. }) => return Err(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_controls_are_host_controls() {
        assert_eq!(
            HostControl::try_from(ClientMessage::EndMeeting),
            Ok(HostControl::EndMeeting)
        );
        let chat = ClientMessage::Chat { text: "hi".into() };
        assert_eq!(HostControl::try_from(chat.clone()), Err(chat));
    }

    #[test]
    fn a_bare_join_is_an_instant_guest_room() {
        let Command::Join(req) = Command::from(ClientMessage::Join {
            version: 1,
            room: "r".into(),
            name: "n".into(),
            passcode: Some("ignored".into()),
            resume: None,
            e2ee: true,
            require_e2ee: false,
        }) else {
            panic!("a join is a join");
        };
        assert_eq!(req.grant.role, Role::Guest);
        assert!(req.grant.meeting.is_none());
    }
}

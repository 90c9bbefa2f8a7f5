//! The Veche signalling protocol.
//!
//! Every WebSocket text frame carries one JSON object with a `"type"` field. Client → server
//! messages are [`ClientMessage`], server → client messages are [`ServerMessage`]. The first
//! client message on a connection must be [`ClientMessage::Join`] carrying
//! [`PROTOCOL_VERSION`]; see `docs/protocol.md` for the full exchange.
//!
//! The server is always the SDP offerer: it offers receive slots for the client's microphone,
//! camera and screen, plus one send m-line per remote track, and the client answers. One offerer
//! means there is never glare to resolve.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Server-assigned participant id, unique for the life of the server process.
pub type ParticipantId = u64;

/// A kind of media a participant publishes. Each has its own m-line (slot) in the publisher's
/// peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Microphone (Opus).
    Audio,
    /// Camera (VP8, or H.264).
    Video,
    /// Screen share (video).
    Screen,
}

impl TrackKind {
    /// All kinds, in slot order.
    pub const ALL: [TrackKind; 3] = [TrackKind::Audio, TrackKind::Video, TrackKind::Screen];

    /// Whether this kind is carried as video RTP.
    pub fn is_video(self) -> bool {
        !matches!(self, TrackKind::Audio)
    }
}

/// A participant's standing in a meeting. Hosts and co-hosts may use the host controls; only
/// the host may appoint co-hosts, hand the host role on, or end the meeting for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    CoHost,
    /// Signed in with an account.
    #[default]
    Participant,
    /// Joined without an account.
    Guest,
}

impl Role {
    /// Host or co-host: may admit, mute, remove and lock.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

/// Why a joiner is held in the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// The meeting has a waiting room: a host or co-host admits or denies each joiner.
    WaitingRoom,
    /// Join-before-host is off and no host or co-host is in the meeting yet.
    HostAbsent,
}

/// Why a meeting ended for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The host ended it.
    Host,
    /// The organisation's plan limits meetings to this length.
    TimeLimit,
}

/// Whether a meeting's media is end-to-end encrypted (see `docs/e2ee.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum E2eeMode {
    /// Media goes through the server as the browsers send it (DTLS-SRTP hop by hop).
    #[default]
    Off,
    /// Every participant encrypts its media with the group's MLS keys; a browser that
    /// cannot is refused with [`ErrorCode::E2eeUnsupported`].
    Required,
    /// Encrypted while every participant's browser can encrypt (each says so in
    /// [`ParticipantInfo::e2ee`]): those that can form the MLS group, and media and chat are
    /// sealed under its keys. A browser that cannot is let in, and while it is in the meeting
    /// everyone sends media and chat in the clear (hop-by-hop DTLS-SRTP only) and every
    /// client shows that the meeting is not end-to-end encrypted, and because of whom.
    Optional,
}

impl E2eeMode {
    /// Whether the meeting has an MLS group (its members' clients encrypt at least while
    /// everyone can).
    pub fn has_group(self) -> bool {
        self != E2eeMode::Off
    }
}

/// An MLS message (key package, commit or Welcome) that the server relays without reading
/// more than its header: standard base64 with padding in JSON, bytes in Rust.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MlsBlob(pub Vec<u8>);

/// Only the length: the bytes are opaque and may be large.
impl std::fmt::Debug for MlsBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MlsBlob({} bytes)", self.0.len())
    }
}

impl Serialize for MlsBlob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for MlsBlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MlsBlob, D::Error> {
        use base64::Engine as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(MlsBlob)
            .map_err(|e| serde::de::Error::custom(format!("not standard base64: {e}")))
    }
}

/// One participant the designated committer is asked to add, with its key package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlsAdd {
    pub participant_id: ParticipantId,
    pub key_package: MlsBlob,
}

/// Most participants one `mls_commit` may list as added or removed.
pub const MAX_MLS_CHANGES: usize = 1024;

/// The largest sealed chat message the server relays when a plain one may have
/// `max_chat_chars` characters: four bytes a character of UTF-8, and room for what sealing
/// adds (an epoch, a nonce and an authentication tag take 36 bytes in the browser client's
/// format).
pub const fn sealed_chat_max_bytes(max_chat_chars: usize) -> usize {
    max_chat_chars.saturating_mul(4).saturating_add(64)
}

/// Meeting-wide settings and limits, sent on join and whenever a host changes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingState {
    /// The meeting's title (empty for an instant guest room).
    pub title: String,
    /// No one new may join (hosts and co-hosts of the meeting still may).
    pub locked: bool,
    /// Participants muted by a host may unmute themselves. When `false` they need a host's
    /// [`ClientMessage::AskUnmute`] first.
    pub allow_self_unmute: bool,
    /// When the plan's time limit ends the meeting, in milliseconds since the Unix epoch.
    pub ends_at_ms: Option<u64>,
    /// End-to-end encryption; fixed for the life of the running meeting. Absent means
    /// `off` (snapshots stored before it existed).
    #[serde(default)]
    pub e2ee: E2eeMode,
}

/// A STUN or TURN server for the browser's `RTCPeerConnection` (`iceServers`), with
/// short-lived TURN credentials minted for this participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:HOST:PORT?transport=udp|tcp` or `turns:HOST:PORT?transport=tcp`.
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Someone in the waiting room, as hosts and co-hosts see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
}

/// What the room knows about one participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Microphone is on (published and not muted).
    pub audio: bool,
    /// Camera is on.
    pub video: bool,
    /// Screen is being shared.
    pub screen: bool,
    pub hand_raised: bool,
    /// The participant's browser can encrypt media end to end (its `join` said `e2ee`). In
    /// an [`E2eeMode::Optional`] meeting, one that cannot keeps everyone's media in the clear.
    #[serde(default)]
    pub e2ee: bool,
}

/// Most remote videos one `video_sizes` may list: two (camera and screen) for each other
/// participant of the largest room, with room to spare.
pub const MAX_VIDEO_SIZES: usize = 256;

/// The longest `reattach` token accepted (the server's are 64 hex digits).
pub const MAX_REATTACH_TOKEN_LEN: usize = 128;

/// Largest tile width or height a `video_sizes` entry may give, in pixels.
pub const MAX_VIDEO_DIMENSION: u32 = 16_384;

/// One remote video as the client renders it: the size of its tile in device pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSize {
    pub participant_id: ParticipantId,
    /// `video` or `screen`.
    pub kind: TrackKind,
    pub width: u32,
    pub height: u32,
}

/// How well a participant's link to the server carries media, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionQuality {
    Good,
    Fair,
    Poor,
}

/// One participant's [`ConnectionQuality`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantQuality {
    pub participant_id: ParticipantId,
    pub quality: ConnectionQuality,
}

/// Messages the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on a connection. `room` is a meeting id or an instant guest room name.
    /// After a non-fatal refusal (passcode required or wrong) the client may send it again.
    Join {
        version: u32,
        room: String,
        name: String,
        /// The meeting's passcode, when it has one (hosts and co-hosts need none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<String>,
        /// The `resume` token of an earlier [`ServerMessage::Joined`] in this meeting: a
        /// guest coming back is recognised by it (role, host mutes, no second trip through
        /// the waiting room or the lock).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// This client can encrypt and decrypt media end to end (it has the encoded-frame
        /// transform API and WebCrypto). A meeting with [`E2eeMode::Required`] refuses a
        /// join without it.
        #[serde(default, skip_serializing_if = "is_false")]
        e2ee: bool,
        /// The join URL asked for end-to-end encryption (`?e2ee=1`): when this join creates
        /// an instant guest room, the room is [`E2eeMode::Required`] for as long as it
        /// lives. Ignored for stored meetings and for rooms that already exist.
        #[serde(default, skip_serializing_if = "is_false")]
        require_e2ee: bool,
    },
    /// First message on a new connection that takes back an earlier connection's place in
    /// the meeting (its socket dropped, or the client's network changed) instead of joining
    /// again: same participant, role, mutes and media session. `token` is the `reconnect`
    /// of that connection's [`ServerMessage::Joined`]; `received` counts the text messages
    /// this client has read from the server since its `join` (on every connection of this
    /// stay). Answered with [`ServerMessage::Reattached`] and then every message after
    /// `received` again, or with the non-fatal [`ErrorCode::ReattachFailed`] (then `join`).
    Reattach { token: String, received: u64 },
    /// The client's network changed: the server's next [`ServerMessage::Offer`] restarts ICE
    /// (new credentials, RFC 8445 §9) on the same media session.
    IceRestart,
    /// The answer to the server's latest [`ServerMessage::Offer`].
    Answer { sdp: String },
    /// A trickled local ICE candidate (`RTCIceCandidate.candidate`). An empty string marks the
    /// end of candidates and is ignored.
    Candidate { candidate: String },
    /// Turn a track on or off. For audio/video this is mute/unmute (the m-lines stay); for
    /// screen, `true` publishes the share and `false` ends it.
    SetMedia { kind: TrackKind, enabled: bool },
    /// A chat message to everyone in the room. Not in an end-to-end encrypted meeting, whose
    /// chat is [`ClientMessage::SealedChat`].
    Chat { text: String },
    /// A chat message to everyone in an end-to-end encrypted meeting: the text sealed by the
    /// client under a key of the group's epoch, opaque to the server (the format is the
    /// clients' business: `web/js/e2ee.js`). At most [`sealed_chat_max_bytes`] bytes.
    SealedChat { sealed: MlsBlob },
    /// Raise or lower the hand.
    RaiseHand { raised: bool },
    /// Leave the room; the server closes the connection afterwards.
    Leave,
    /// The remote videos the client renders and the size of each tile; replaces the whole
    /// previous report. A remote video not listed, or listed as 0×0, is not rendered: the
    /// server stops forwarding it until it is listed again. Until the first report every
    /// remote video is forwarded at the best quality the link allows.
    VideoSizes { sizes: Vec<VideoSize> },

    // Host controls: hosts and co-hosts, except where noted. Anyone else gets
    // [`ErrorCode::Forbidden`].
    /// Let a participant in from the waiting room.
    Admit { participant_id: ParticipantId },
    /// Turn a participant in the waiting room away.
    Deny { participant_id: ParticipantId },
    /// Mute a participant's microphone or camera (or end their screen share). The server stops
    /// forwarding the track at once, whatever the participant's client does.
    Mute {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    /// Mute every microphone except the hosts' and co-hosts', and set whether participants may
    /// unmute themselves.
    MuteAll { allow_self_unmute: bool },
    /// Ask a muted participant to unmute; allows them to even when self-unmute is off.
    AskUnmute {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    /// Change meeting-wide settings; absent fields stay as they are.
    SetMeeting {
        #[serde(default)]
        locked: Option<bool>,
        #[serde(default)]
        allow_self_unmute: Option<bool>,
    },
    /// Remove a participant; with `bar`, they cannot join this meeting again while it runs.
    Remove {
        participant_id: ParticipantId,
        #[serde(default)]
        bar: bool,
    },
    /// Host only: make a participant co-host (`co_host`) or take it back (`participant`).
    SetRole {
        participant_id: ParticipantId,
        role: Role,
    },
    /// Host only: make another participant the host; the old host becomes co-host.
    TransferHost { participant_id: ParticipantId },
    /// Host only: end the meeting for everyone.
    EndMeeting,

    // End-to-end encryption: the server is the MLS delivery service (`docs/e2ee.md`). Only
    // in a meeting with [`E2eeMode::Required`]; elsewhere [`ErrorCode::InvalidMls`].
    /// This participant's MLS key package (an `MLSMessage` of wire format
    /// `mls_key_package`), sent once after `joined`. One is live per participant: another
    /// while the first waits to be added gets [`ErrorCode::InvalidMls`], and one from a
    /// member of the group is ignored.
    MlsKeyPackage { key_package: MlsBlob },
    /// A commit (an `MLSMessage`, public or private) on `epoch`, which must be the epoch its
    /// header names; `welcome` (wire format `mls_welcome`) for those it adds. The first
    /// commit on the group's current epoch wins ([`ServerMessage::MlsCommitAccepted`]);
    /// any other gets [`ErrorCode::StaleEpoch`].
    MlsCommit {
        epoch: u64,
        commit: MlsBlob,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<MlsBlob>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added: Vec<ParticipantId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<ParticipantId>,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to [`ClientMessage::Join`].
    Joined {
        version: u32,
        participant_id: ParticipantId,
        room: String,
        /// Everyone already in the room (not including the joiner).
        participants: Vec<ParticipantInfo>,
        /// The joiner's own role.
        role: Role,
        meeting: MeetingState,
        /// The waiting room, when the joiner moderates (empty otherwise).
        waiting: Vec<WaitingInfo>,
        /// For a guest: a token to send in the `join` of a later connection to this meeting
        /// (after a dropped network or a server restart) to be recognised. Keep it for this
        /// tab only; it is a credential.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// The joiner's tracks a host muted, when they come back to a meeting that remembers
        /// it (they stay off until a host asks or the meeting allows unmuting).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        host_muted: Vec<TrackKind>,
        /// TURN servers to use, with credentials for this participant (none when the
        /// operator configured no TURN server).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
        /// The secret a later connection sends in [`ClientMessage::Reattach`] to take this
        /// one's place (absent when the server does not keep places). A credential: this tab
        /// only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reconnect: Option<String>,
    },
    /// Reply to [`ClientMessage::Reattach`]: this connection now carries `participant_id`.
    /// `received` counts the client's text messages the server has read since the `join`;
    /// the client sends the ones after it again. The server's messages the client missed
    /// follow. Neither this reply nor a refusal of `reattach` is counted, on either side.
    Reattached {
        participant_id: ParticipantId,
        received: u64,
    },
    /// Reply to [`ClientMessage::Join`] when the joiner is held in the waiting room. A
    /// [`ServerMessage::Joined`] follows once admitted; a fatal [`ErrorCode::Denied`] if not.
    Waiting {
        room: String,
        title: String,
        reason: WaitReason,
    },
    /// A new SDP offer; the client answers with [`ClientMessage::Answer`]. Sent again on every
    /// renegotiation (joins, leaves, screen shares).
    Offer {
        sdp: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    /// A remote track will arrive on the transceiver with this `mid` (sent before the offer
    /// that adds the m-line).
    TrackPublished {
        participant_id: ParticipantId,
        kind: TrackKind,
        mid: String,
    },
    /// The remote track on `mid` has ended; its m-line is stopped by the next offer.
    TrackUnpublished {
        participant_id: ParticipantId,
        kind: TrackKind,
        mid: String,
    },
    /// A participant turned a track on or off.
    MediaState {
        participant_id: ParticipantId,
        kind: TrackKind,
        enabled: bool,
    },
    Chat {
        from: ParticipantId,
        name: String,
        text: String,
        /// Server time, milliseconds since the Unix epoch.
        sent_at_ms: u64,
    },
    /// A [`ClientMessage::SealedChat`] as its sender sealed it.
    SealedChat {
        from: ParticipantId,
        name: String,
        sealed: MlsBlob,
        /// Server time, milliseconds since the Unix epoch.
        sent_at_ms: u64,
    },
    Hand {
        participant_id: ParticipantId,
        raised: bool,
    },
    /// To a publisher: the simulcast layers (by RID) of its `kind` track that some subscriber
    /// needs now. The client stops encoding the others (`active = false` on their encodings)
    /// until they are listed again. Sent when the set changes.
    LayersWanted {
        kind: TrackKind,
        rids: Vec<String>,
    },
    /// The quality of every participant's link, from the server's view (loss both ways,
    /// round-trip time, bandwidth estimate). Sent to the room when one changes, at most
    /// every 2 s.
    ConnectionQuality {
        participants: Vec<ParticipantQuality>,
    },
    /// The loudest participant changed (from RFC 6464 audio levels; `None` when all are quiet).
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
    /// To hosts and co-hosts: someone is waiting to be admitted.
    WaitingAdded {
        participant: WaitingInfo,
    },
    /// To hosts and co-hosts: someone left the waiting room (admitted, denied or gone).
    WaitingRemoved {
        participant_id: ParticipantId,
    },
    /// A participant's role changed.
    RoleChanged {
        participant_id: ParticipantId,
        role: Role,
    },
    /// To the muted participant: a host muted this track. A
    /// [`ServerMessage::MediaState`] tells everyone.
    MutedByHost {
        kind: TrackKind,
        by: ParticipantId,
    },
    /// To a participant: a host asks them to unmute this track (they are now allowed to).
    UnmuteRequested {
        kind: TrackKind,
        by: ParticipantId,
    },
    /// A host changed the meeting's settings.
    MeetingUpdated {
        meeting: MeetingState,
    },
    /// The plan's time limit ends the meeting soon.
    MeetingEnding {
        minutes_left: u32,
        ends_at_ms: u64,
    },
    /// The meeting is over for everyone; the server closes the connection afterwards.
    MeetingEnded {
        reason: EndReason,
    },
    /// You are the first member of the meeting's MLS group: create it (epoch 0) with this
    /// group id.
    MlsCreate {
        group_id: String,
    },
    /// To the designated committer: commit these adds and removes on `epoch`. A later
    /// propose on the same epoch replaces an earlier one not yet committed.
    MlsPropose {
        epoch: u64,
        add: Vec<MlsAdd>,
        remove: Vec<ParticipantId>,
    },
    /// Your commit on `epoch` won: merge it (the group is now at `epoch + 1`).
    MlsCommitAccepted {
        epoch: u64,
    },
    /// Another member's commit on `epoch`: process it.
    MlsCommit {
        epoch: u64,
        commit: MlsBlob,
    },
    /// You were added to the group: join it from this Welcome, at `epoch`.
    MlsWelcome {
        epoch: u64,
        welcome: MlsBlob,
    },
    /// Something the client sent was refused. The connection stays open unless the code says
    /// otherwise ([`ErrorCode::is_fatal`]).
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Stable machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not valid JSON, or not a JSON object with a string `type`.
    MalformedMessage,
    /// `type` names no message this server knows.
    UnknownType,
    /// Known `type`, but fields are missing or of the wrong shape.
    InvalidMessage,
    /// The frame exceeded the configured message size limit.
    MessageTooLarge,
    /// Too many messages per second on this connection.
    RateLimited,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    UnsupportedVersion,
    NotJoined,
    AlreadyJoined,
    InvalidRoom,
    InvalidName,
    RoomFull,
    /// The SDP answer could not be parsed or does not match the offer.
    InvalidSdp,
    /// An answer arrived while no offer was outstanding.
    UnexpectedAnswer,
    InvalidCandidate,
    ChatTooLong,
    /// The media connection failed (ICE/DTLS); the client should reconnect.
    MediaFailed,
    /// The server is shutting down.
    ShuttingDown,
    Internal,
    /// The meeting has a passcode and the join carried none.
    PasscodeRequired,
    WrongPasscode,
    /// Too many wrong passcodes for this meeting or from this address; try again later.
    LockedOut,
    /// No meeting has this id, and instant guest rooms are turned off.
    MeetingNotFound,
    /// A host locked the meeting.
    MeetingLocked,
    /// A host removed this participant from the meeting.
    Removed,
    /// A host removed this participant and barred them from rejoining.
    Barred,
    /// A host turned this participant away from the waiting room.
    Denied,
    /// The action needs a host or co-host (or the host).
    Forbidden,
    /// No participant (or waiting participant) has this id in the meeting.
    UnknownParticipant,
    /// A host muted this track and self-unmute is off; wait for a host's ask to unmute.
    UnmuteNotAllowed,
    /// To a host admitting someone: the meeting is at its participant cap.
    MeetingFull,
    /// The account session this connection was opened with ended (signed out, password
    /// changed, role changed); sign in again to join.
    SessionEnded,
    /// An MLS commit lost: another commit on this epoch won (or the sender is behind).
    /// Process the winner, then wait for the next `mls_propose`.
    StaleEpoch,
    /// An MLS message the delivery service cannot take: malformed header, over the size
    /// limit, not from a member, an add without key package or Welcome, or sent in a meeting
    /// that is not end-to-end encrypted. The message says which.
    InvalidMls,
    /// The meeting is end-to-end encrypted and the join did not say `e2ee: true`.
    E2eeUnsupported,
    /// A `reattach` the server cannot take (unknown or expired token, the place was given
    /// up, or the messages missed are no longer kept); join again instead.
    ReattachFailed,
}

impl ErrorCode {
    /// Whether the server closes the connection after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedVersion
                | ErrorCode::RoomFull
                | ErrorCode::MediaFailed
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::LockedOut
                | ErrorCode::MeetingNotFound
                | ErrorCode::MeetingLocked
                | ErrorCode::Removed
                | ErrorCode::Barred
                | ErrorCode::Denied
                | ErrorCode::SessionEnded
                | ErrorCode::E2eeUnsupported
        )
    }
}

/// Why a text frame could not be turned into a [`ClientMessage`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("invalid {kind:?} message: {reason}")]
    Invalid { kind: String, reason: String },
}

impl ParseError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::Malformed(_) => ErrorCode::MalformedMessage,
            ParseError::UnknownType(_) => ErrorCode::UnknownType,
            ParseError::Invalid { .. } => ErrorCode::InvalidMessage,
        }
    }
}

const CLIENT_TYPES: [&str; 23] = [
    "join",
    "reattach",
    "ice_restart",
    "answer",
    "candidate",
    "set_media",
    "chat",
    "sealed_chat",
    "raise_hand",
    "leave",
    "video_sizes",
    "admit",
    "deny",
    "mute",
    "mute_all",
    "ask_unmute",
    "set_meeting",
    "remove",
    "set_role",
    "transfer_host",
    "end_meeting",
    "mls_key_package",
    "mls_commit",
];

impl ClientMessage {
    /// Parses one text frame, telling malformed JSON, unknown types and bad fields apart so
    /// the peer gets a specific error.
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
        let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
            return Err(ParseError::Malformed(
                "expected a JSON object with a string \"type\" field".into(),
            ));
        };
        if !CLIENT_TYPES.contains(&kind) {
            return Err(ParseError::UnknownType(truncate(kind, 64)));
        }
        let kind = kind.to_owned();
        let msg: ClientMessage =
            serde_json::from_value(value).map_err(|e| ParseError::Invalid {
                kind: kind.clone(),
                reason: e.to_string(),
            })?;
        msg.check_limits()
            .map_err(|reason| ParseError::Invalid { kind, reason })?;
        Ok(msg.sanitized())
    }

    /// The limits a well-formed message must also keep to.
    fn check_limits(&self) -> Result<(), String> {
        if let ClientMessage::Reattach { token, .. } = self {
            if token.len() > MAX_REATTACH_TOKEN_LEN {
                return Err(format!(
                    "token of {} bytes, at most {MAX_REATTACH_TOKEN_LEN}",
                    token.len()
                ));
            }
            return Ok(());
        }
        if let ClientMessage::MlsCommit { added, removed, .. } = self {
            let n = added.len() + removed.len();
            if n > MAX_MLS_CHANGES {
                return Err(format!(
                    "{n} participants added and removed, at most {MAX_MLS_CHANGES} allowed"
                ));
            }
            return Ok(());
        }
        let ClientMessage::VideoSizes { sizes } = self else {
            return Ok(());
        };
        if sizes.len() > MAX_VIDEO_SIZES {
            return Err(format!(
                "{} sizes listed, at most {MAX_VIDEO_SIZES} allowed",
                sizes.len()
            ));
        }
        for s in sizes {
            if !s.kind.is_video() {
                return Err(format!(
                    "participant {}: kind must be video or screen, not audio",
                    s.participant_id
                ));
            }
            if s.width > MAX_VIDEO_DIMENSION || s.height > MAX_VIDEO_DIMENSION {
                return Err(format!(
                    "participant {}: {}x{} is larger than {MAX_VIDEO_DIMENSION} pixels",
                    s.participant_id, s.width, s.height
                ));
            }
        }
        Ok(())
    }

    /// The message with [`sanitize_text`] applied to the text other participants see: the
    /// display name of a join and the text of a chat message.
    fn sanitized(self) -> ClientMessage {
        match self {
            ClientMessage::Join {
                version,
                room,
                name,
                passcode,
                resume,
                e2ee,
                require_e2ee,
            } => ClientMessage::Join {
                version,
                room,
                name: sanitize_text(&name),
                passcode,
                resume,
                e2ee,
                require_e2ee,
            },
            ClientMessage::Chat { text } => ClientMessage::Chat {
                text: sanitize_text(&text),
            },
            other => other,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising a plain enum of strings, bools and numbers cannot fail.
        serde_json::to_string(self).expect("client message serialises")
    }
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising a plain enum of strings, bools and numbers cannot fail.
        serde_json::to_string(self).expect("server message serialises")
    }

    pub fn parse(text: &str) -> Result<ServerMessage, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

/// Invisible characters that reorder or hide text: the bidirectional embeddings, overrides
/// and isolates (U+202A–202E, U+2066–2069) and marks (U+200E, U+200F, U+061C), zero-width
/// space and no-break space (U+200B, U+FEFF), the word joiner and invisible operators
/// (U+2060–2064) and the Mongolian vowel separator (U+180E). With them a display name can
/// render as someone else's ("host" followed by an override that flips what comes next) or
/// a chat line can hide what it says.
fn is_stripped(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{061C}'
            | '\u{180E}'
    )
}

/// Zero-width non-joiner and joiner (U+200C, U+200D): needed inside emoji sequences and by
/// scripts such as Persian and Devanagari, but also a way to make "admin" and "ad\u{200D}min"
/// different names that look the same.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

/// Removes the characters of [`is_stripped`], and a joiner ([`is_joiner`]) unless it stands
/// between two non-ASCII characters (an emoji sequence or a script that uses it): text that
/// reaches other participants cannot hide or reorder what it shows. Everything else is
/// kept as it is.
pub fn sanitize_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().filter(|c| !is_stripped(*c)).collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if is_joiner(c) {
            let before = i.checked_sub(1).and_then(|j| chars.get(j));
            let after = chars.get(i + 1);
            let joins = |n: Option<&char>| n.is_some_and(|n| !n.is_ascii() && !is_joiner(*n));
            if !(joins(before) && joins(after)) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_join() {
        let msg = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: "abc".into(),
            name: "Ann".into(),
            passcode: None,
            resume: None,
            e2ee: false,
            require_e2ee: false,
        };
        let json = msg.to_json();
        assert_eq!(
            json,
            r#"{"type":"join","version":1,"room":"abc","name":"Ann"}"#
        );
        assert_eq!(ClientMessage::parse(&json).unwrap(), msg);
    }

    #[test]
    fn unit_variant_is_an_object() {
        assert_eq!(ClientMessage::Leave.to_json(), r#"{"type":"leave"}"#);
        assert_eq!(
            ClientMessage::parse(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
    }

    #[test]
    fn tells_bad_input_apart() {
        assert_eq!(
            ClientMessage::parse("{not json").unwrap_err().code(),
            ErrorCode::MalformedMessage
        );
        assert_eq!(
            ClientMessage::parse("[1,2]").unwrap_err().code(),
            ErrorCode::MalformedMessage
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"dance"}"#).unwrap_err(),
            ParseError::UnknownType("dance".into())
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"chat"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"chat","text":"hi","x":1}"#)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn a_reattach_token_is_bounded() {
        let long = "a".repeat(MAX_REATTACH_TOKEN_LEN + 1);
        let err = ClientMessage::parse(&format!(
            r#"{{"type":"reattach","token":"{long}","received":0}}"#
        ))
        .unwrap_err();
        assert!(
            matches!(err, ParseError::Invalid { ref kind, .. } if kind == "reattach"),
            "{err}"
        );
        let ok = ClientMessage::parse(r#"{"type":"reattach","token":"ab","received":5}"#);
        assert_eq!(
            ok.unwrap(),
            ClientMessage::Reattach {
                token: "ab".into(),
                received: 5
            }
        );
    }

    #[test]
    fn every_client_type_is_listed() {
        let samples = [
            ClientMessage::Join {
                version: 1,
                room: "r".into(),
                name: "n".into(),
                passcode: Some("1234".into()),
                resume: Some("v1.token".into()),
                e2ee: true,
                require_e2ee: true,
            },
            ClientMessage::Reattach {
                token: "ab".into(),
                received: 3,
            },
            ClientMessage::IceRestart,
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Candidate {
                candidate: String::new(),
            },
            ClientMessage::SetMedia {
                kind: TrackKind::Screen,
                enabled: true,
            },
            ClientMessage::Chat { text: "x".into() },
            ClientMessage::SealedChat {
                sealed: MlsBlob(vec![1, 2, 3]),
            },
            ClientMessage::RaiseHand { raised: true },
            ClientMessage::Leave,
            ClientMessage::VideoSizes {
                sizes: vec![VideoSize {
                    participant_id: 3,
                    kind: TrackKind::Screen,
                    width: 640,
                    height: 360,
                }],
            },
            ClientMessage::Admit { participant_id: 2 },
            ClientMessage::Deny { participant_id: 2 },
            ClientMessage::Mute {
                participant_id: 2,
                kind: TrackKind::Audio,
            },
            ClientMessage::MuteAll {
                allow_self_unmute: false,
            },
            ClientMessage::AskUnmute {
                participant_id: 2,
                kind: TrackKind::Video,
            },
            ClientMessage::SetMeeting {
                locked: Some(true),
                allow_self_unmute: None,
            },
            ClientMessage::Remove {
                participant_id: 2,
                bar: true,
            },
            ClientMessage::SetRole {
                participant_id: 2,
                role: Role::CoHost,
            },
            ClientMessage::TransferHost { participant_id: 2 },
            ClientMessage::EndMeeting,
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(vec![0, 1, 0, 5, 9]),
            },
            ClientMessage::MlsCommit {
                epoch: 3,
                commit: MlsBlob(vec![0, 1, 0, 1]),
                welcome: Some(MlsBlob(vec![0, 1, 0, 3])),
                added: vec![4],
                removed: vec![2],
            },
        ];
        assert_eq!(samples.len(), CLIENT_TYPES.len());
        for msg in samples {
            assert_eq!(ClientMessage::parse(&msg.to_json()).unwrap(), msg);
        }
    }

    #[test]
    fn video_sizes_has_the_documented_shape_and_limits() {
        let msg = ClientMessage::parse(
            r#"{"type":"video_sizes","sizes":[{"participant_id":7,"kind":"video","width":320,"height":180}]}"#,
        )
        .unwrap();
        assert_eq!(
            msg,
            ClientMessage::VideoSizes {
                sizes: vec![VideoSize {
                    participant_id: 7,
                    kind: TrackKind::Video,
                    width: 320,
                    height: 180
                }]
            }
        );
        let refused = |json: &str| match ClientMessage::parse(json) {
            Err(ParseError::Invalid { kind, reason }) => {
                assert_eq!(kind, "video_sizes");
                reason
            }
            other => panic!("{json}: {other:?}"),
        };
        let entry = r#"{"participant_id":1,"kind":"video","width":1,"height":1}"#;
        let many = vec![entry; MAX_VIDEO_SIZES + 1].join(",");
        assert_eq!(
            refused(&format!(r#"{{"type":"video_sizes","sizes":[{many}]}}"#)),
            "257 sizes listed, at most 256 allowed"
        );
        let fits = vec![entry; MAX_VIDEO_SIZES].join(",");
        assert!(
            ClientMessage::parse(&format!(r#"{{"type":"video_sizes","sizes":[{fits}]}}"#)).is_ok()
        );
        assert_eq!(
            refused(
                r#"{"type":"video_sizes","sizes":[{"participant_id":2,"kind":"audio","width":1,"height":1}]}"#
            ),
            "participant 2: kind must be video or screen, not audio"
        );
        assert_eq!(
            refused(
                r#"{"type":"video_sizes","sizes":[{"participant_id":2,"kind":"video","width":99999,"height":1}]}"#
            ),
            "participant 2: 99999x1 is larger than 16384 pixels"
        );
        refused(
            r#"{"type":"video_sizes","sizes":[{"participant_id":2,"kind":"video","width":-1,"height":1}]}"#,
        );
        refused(
            r#"{"type":"video_sizes","sizes":[{"participant_id":2,"kind":"video","width":1,"height":1,"x":0}]}"#,
        );
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"set_meeting","locked":true}"#).unwrap(),
            ClientMessage::SetMeeting {
                locked: Some(true),
                allow_self_unmute: None
            }
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"remove","participant_id":3}"#).unwrap(),
            ClientMessage::Remove {
                participant_id: 3,
                bar: false
            }
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"set_role","participant_id":3,"role":"co_host"}"#)
                .unwrap(),
            ClientMessage::SetRole {
                participant_id: 3,
                role: Role::CoHost
            }
        );
    }

    #[test]
    fn names_and_chat_lose_bidi_overrides_and_invisible_characters() {
        // "host" followed by a right-to-left override: the rest renders reversed.
        let join = ClientMessage::parse(
            r#"{"type":"join","version":1,"room":"r","name":"Eve\u202e tsoh\u202c","passcode":"a\u200bb"}"#,
        )
        .unwrap();
        assert_eq!(
            join,
            ClientMessage::Join {
                version: 1,
                room: "r".into(),
                name: "Eve tsoh".into(),
                // Only what others see is cleaned; a passcode is compared as typed.
                passcode: Some("a\u{200b}b".into()),
                resume: None,
                e2ee: false,
                require_e2ee: false,
            }
        );
        let chat = ClientMessage::parse(
            r#"{"type":"chat","text":"\u2066pay\u2069 \ufeffme\u200b\u200e\u200f\u202a\u202b\u202d\u2067\u2068\u2060"}"#,
        )
        .unwrap();
        assert_eq!(
            chat,
            ClientMessage::Chat {
                text: "pay me".into()
            }
        );
    }

    #[test]
    fn joiners_stay_only_inside_emoji_and_scripts() {
        // An emoji family and a Persian word keep their joiners.
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert_eq!(sanitize_text(family), family);
        let persian = "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}";
        assert_eq!(sanitize_text(persian), persian);
        // Between ASCII letters, at the ends, or doubled, they only hide a difference.
        assert_eq!(sanitize_text("ad\u{200D}min"), "admin");
        assert_eq!(sanitize_text("\u{200C}admin\u{200D}"), "admin");
        assert_eq!(
            sanitize_text("\u{0645}\u{200C}\u{200C}\u{0645}"),
            "\u{0645}\u{0645}"
        );
        // Ordinary text, newlines included, is untouched.
        assert_eq!(sanitize_text("Zoë says:\nhi ✓"), "Zoë says:\nhi ✓");
        assert_eq!(sanitize_text("\u{202E}\u{200B}"), "");
    }

    #[test]
    fn server_messages_round_trip() {
        let msg = ServerMessage::TrackPublished {
            participant_id: 7,
            kind: TrackKind::Screen,
            mid: "3".into(),
        };
        let json = msg.to_json();
        assert_eq!(
            json,
            r#"{"type":"track_published","participant_id":7,"kind":"screen","mid":"3"}"#
        );
        assert_eq!(ServerMessage::parse(&json).unwrap(), msg);
        let err = ServerMessage::error(ErrorCode::RoomFull, "room is full (max 2)");
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"room_full","message":"room is full (max 2)"}"#
        );
    }

    #[test]
    fn join_carries_the_e2ee_capability_and_request_only_when_set() {
        let join = ClientMessage::parse(
            r#"{"type":"join","version":1,"room":"r","name":"n","e2ee":true,"require_e2ee":true}"#,
        )
        .unwrap();
        let ClientMessage::Join {
            e2ee, require_e2ee, ..
        } = &join
        else {
            panic!("a join is a join: {join:?}");
        };
        assert!(*e2ee && *require_e2ee);
        assert_eq!(
            join.to_json(),
            r#"{"type":"join","version":1,"room":"r","name":"n","e2ee":true,"require_e2ee":true}"#
        );
    }

    #[test]
    fn mls_blobs_are_standard_base64_and_bad_base64_is_invalid() {
        let msg = ClientMessage::parse(
            r#"{"type":"mls_commit","epoch":2,"commit":"AAEAAQ==","added":[5]}"#,
        )
        .unwrap();
        assert_eq!(
            msg,
            ClientMessage::MlsCommit {
                epoch: 2,
                commit: MlsBlob(vec![0, 1, 0, 1]),
                welcome: None,
                added: vec![5],
                removed: vec![],
            }
        );
        for bad in [
            r#"{"type":"mls_key_package","key_package":"AAEAAQ"}"#,
            r#"{"type":"mls_key_package","key_package":"AA-_"}"#,
            r#"{"type":"mls_key_package","key_package":7}"#,
            r#"{"type":"mls_commit","epoch":-1,"commit":"AAEAAQ=="}"#,
        ] {
            match ClientMessage::parse(bad) {
                Err(ParseError::Invalid { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let many = vec!["1"; MAX_MLS_CHANGES + 1].join(",");
        assert!(matches!(
            ClientMessage::parse(&format!(
                r#"{{"type":"mls_commit","epoch":0,"commit":"","removed":[{many}]}}"#
            )),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn mls_server_messages_have_the_documented_shape() {
        let propose = ServerMessage::MlsPropose {
            epoch: 1,
            add: vec![MlsAdd {
                participant_id: 7,
                key_package: MlsBlob(b"kp".to_vec()),
            }],
            remove: vec![3],
        };
        assert_eq!(
            propose.to_json(),
            r#"{"type":"mls_propose","epoch":1,"add":[{"participant_id":7,"key_package":"a3A="}],"remove":[3]}"#
        );
        assert_eq!(ServerMessage::parse(&propose.to_json()).unwrap(), propose);
        assert_eq!(
            ServerMessage::error(ErrorCode::StaleEpoch, "x").to_json(),
            r#"{"type":"error","code":"stale_epoch","message":"x"}"#
        );
        assert!(ErrorCode::E2eeUnsupported.is_fatal());
        assert!(!ErrorCode::StaleEpoch.is_fatal() && !ErrorCode::InvalidMls.is_fatal());
        // A meeting state stored before `e2ee` existed reads as `off`.
        let old: MeetingState = serde_json::from_str(
            r#"{"title":"","locked":false,"allow_self_unmute":true,"ends_at_ms":null}"#,
        )
        .unwrap();
        assert_eq!(old.e2ee, E2eeMode::Off);
    }
}

//! The handle to a synthetic participant and its options. The participant itself runs as one
//! tokio task ([`crate::driver`]), so many can run in one process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::net::TcpType;
use str0m::{Candidate, Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ParticipantId, ServerMessage};

use crate::clip::{Clip, SIMULCAST_LAYERS};
use crate::downlink::DownlinkLimit;
use crate::driver::{Driver, PublishSlots, Signalling, mline_mids, pt_for};
use crate::janus::JanusSignal;
use crate::source::SourceConfig;
use crate::stats::Stats;
use crate::{Error, SignalClient};

/// What a synthetic participant publishes and how.
#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// Publish Opus audio on the microphone slot.
    pub audio: bool,
    /// Publish VP8 video on the camera slot.
    pub video: bool,
    /// One audio packet per interval (20 ms is what browsers send).
    pub audio_interval: Duration,
    pub audio_payload_size: usize,
    pub video_fps: u32,
    /// Frame rate of a screen share (see [`SyntheticParticipant::share_screen`]).
    pub screen_fps: u32,
    pub video_packets_per_frame: u32,
    pub video_payload_size: usize,
    /// Send a key frame at least this often, besides answering keyframe requests.
    pub keyframe_interval: Duration,
    /// Address the UDP socket binds to (port chosen by the OS) and advertises as host candidate.
    pub bind_ip: IpAddr,
    /// Simulated network loss: drop every n-th incoming RTP datagram before str0m sees it, so
    /// str0m NACKs it and the SFU has to retransmit. `None` drops nothing.
    pub drop_every_nth_rtp: Option<u32>,
    /// Send this real VP8 clip on the camera instead of synthetic frames (see [`Clip`]).
    pub clip: Option<Clip>,
    /// Send the camera in these simulcast layers instead (lowest first, e.g.
    /// [`Clip::builtin_simulcast`]), each its own RTP stream with its RID, as a browser
    /// does: on Veche the RIDs the server's offer lists (lowest first), turning layers off
    /// and on as `layers_wanted` says; on Janus `q`, `h` and `f`, offered by us.
    pub simulcast: Option<[Clip; SIMULCAST_LAYERS]>,
    /// The tile every remote video is shown in, width × height in pixels, reported to Veche
    /// in `video_sizes` whenever the set of remote videos changes, as the browser client
    /// does. `None` reports nothing (the server then sends the best the link allows).
    pub tile: Option<(u32, u32)>,
    /// The simulcast substream (0 the lowest) a Janus subscriber asks for on every video
    /// it receives (Janus chooses by request, not by tile size). `None`: Janus's default.
    pub janus_substream: Option<u8>,
    /// Receive through an emulated narrow downlink (see [`DownlinkLimit`]): the server's
    /// bandwidth estimate then sees a narrow link. UDP only; `None` is the machine's own.
    pub downlink: Option<DownlinkLimit>,
    /// Media over ICE-TCP (RFC 6544): offer only a TCP active candidate and connect to the
    /// server's TCP passive one, as a browser on a network that blocks UDP does.
    pub ice_tcp: bool,
    /// Keep the first this many RTP payloads of every remote track as they arrived
    /// ([`Stats::captured`]), to look at what the SFU forwards. 0 keeps none.
    pub capture_payloads: usize,
    /// Say in `join` that this client encrypts media end to end, as a browser does. It does
    /// not: a participant that claims it sees what anyone in an encrypted meeting would.
    pub claim_e2ee: bool,
}

impl Default for ParticipantOptions {
    fn default() -> Self {
        ParticipantOptions {
            audio: true,
            video: true,
            audio_interval: Duration::from_millis(20),
            audio_payload_size: 80,
            video_fps: 30,
            screen_fps: 5,
            video_packets_per_frame: 2,
            video_payload_size: 900,
            keyframe_interval: Duration::from_secs(5),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            drop_every_nth_rtp: None,
            clip: None,
            simulcast: None,
            tile: None,
            janus_substream: None,
            downlink: None,
            ice_tcp: false,
            capture_payloads: 0,
            claim_e2ee: false,
        }
    }
}

impl ParticipantOptions {
    /// A participant that only receives.
    pub fn receive_only() -> Self {
        ParticipantOptions {
            audio: false,
            video: false,
            ..Default::default()
        }
    }

    pub(crate) fn source_config(&self) -> SourceConfig {
        SourceConfig {
            audio: self.audio,
            camera: self.video,
            audio_interval: self.audio_interval,
            audio_payload_size: self.audio_payload_size,
            camera_fps: self.video_fps,
            screen_fps: self.screen_fps,
            video_packets_per_frame: self.video_packets_per_frame,
            video_payload_size: self.video_payload_size,
            keyframe_interval: self.keyframe_interval,
            clip: self.clip.clone(),
            simulcast: self.simulcast.clone(),
        }
    }
}

/// The RIDs a Janus publisher sends its simulcast layers on, lowest first (Janus takes any).
const JANUS_RIDS: [&str; SIMULCAST_LAYERS] = ["q", "h", "f"];

/// How often, and how far apart, a Janus subscriber asks again for feeds that are not there
/// yet.
const FEED_RETRIES: u32 = 20;
const FEED_RETRY_DELAY: Duration = Duration::from_millis(250);

/// A handle to a running synthetic participant. Dropping it makes the participant leave.
pub struct SyntheticParticipant {
    id: ParticipantId,
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// State the driver task shares with the handle.
pub(crate) struct Shared {
    pub(crate) stats: Stats,
    /// Every server message from `joined` on, with its arrival time.
    pub(crate) events: Vec<(Instant, ServerMessage)>,
    pub(crate) last_answer: Option<String>,
}

/// What the handle asks of the driver.
pub(crate) enum Command {
    Send(ClientMessage),
    SendText(String),
    ShareScreen(bool),
    StallReading(bool),
    Leave,
}

/// How often `wait_for*` re-checks; fine-grained enough for tests, cheap for many participants.
const WAIT_POLL: Duration = Duration::from_millis(10);

impl SyntheticParticipant {
    /// Connects to the signalling `url` (e.g. `ws://127.0.0.1:8080/ws`), joins `room` and
    /// returns once the server has said `joined`. Media connects in the background: see
    /// [`SyntheticParticipant::wait_connected`].
    pub async fn join(
        url: &str,
        room: &str,
        name: &str,
        opts: ParticipantOptions,
    ) -> Result<SyntheticParticipant, Error> {
        let mut signal = SignalClient::connect(url).await?;
        signal
            .send(&ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: room.to_owned(),
                name: name.to_owned(),
                passcode: None,
                resume: None,
                e2ee: opts.claim_e2ee,
                require_e2ee: false,
            })
            .await?;
        // The first reply is `joined` or an error saying why not.
        let (participant_id, joined) = match signal.recv().await? {
            Some(msg @ ServerMessage::Joined { participant_id, .. }) => (participant_id, msg),
            Some(ServerMessage::Error { code, message }) => {
                return Err(Error::Refused { code, message });
            }
            Some(other) => return Err(Error::Unexpected(other.to_json())),
            None => return Err(Error::Closed),
        };
        let now = Instant::now();
        let (socket, rtc) = media_endpoint(&opts, now).await?;
        let signal = Signalling::Veche(signal);
        Self::spawn(
            participant_id,
            opts,
            rtc,
            socket,
            signal,
            None,
            vec![(now, joined)],
        )
    }

    /// Joins Janus VideoRoom `room` (which must exist, see [`create_janus_room`]) as
    /// publisher `id`: we offer audio and/or video send-only, Janus answers. This
    /// participant receives nothing; see [`SyntheticParticipant::join_janus_subscriber`].
    pub async fn join_janus_publisher(
        url: &str,
        room: u64,
        id: u64,
        opts: ParticipantOptions,
    ) -> Result<SyntheticParticipant, Error> {
        let mut signal = JanusSignal::connect(url).await?;
        let join = json!({"request": "join", "ptype": "publisher", "room": room, "id": id,
                          "display": format!("load-{id}")});
        signal.message(join, None).await?;
        let now = Instant::now();
        let (socket, mut rtc) = media_endpoint(&opts, now).await?;
        let mut api = rtc.sdp_api();
        let audio = opts
            .audio
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        // Janus reads the RIDs of `a=simulcast` highest first unless told otherwise, as
        // its own browser library offers them.
        let simulcast = opts.simulcast.as_ref().map(|_| {
            let mut s = Simulcast::new();
            for rid in JANUS_RIDS.iter().rev() {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let camera = opts
            .video
            .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast));
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| Error::BadOffer("publisher with neither audio nor video".into()))?;
        let configure = json!({"request": "configure", "audio": opts.audio, "video": opts.video});
        let offer = offer.to_sdp_string();
        let (_, answer) = signal.message(configure, Some(("offer", &offer))).await?;
        let answer = answer.ok_or_else(|| Error::Unexpected("configure without SDP".into()))?;
        let answer =
            SdpAnswer::from_sdp_string(&answer).map_err(|e| Error::BadOffer(e.to_string()))?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        signal.trickle_completed().await?;
        let slots = PublishSlots {
            audio: audio
                .map(|m| pt_for(&rtc, m, Codec::Opus).map(|pt| (m, pt)))
                .transpose()?,
            camera: camera
                .map(|m| pt_for(&rtc, m, Codec::Vp8).map(|pt| (m, pt)))
                .transpose()?,
            screen: None,
            camera_rids: match &opts.simulcast {
                Some(_) => JANUS_RIDS.map(|r| Some(r.into())),
                None => [None; SIMULCAST_LAYERS],
            },
        };
        // As after an answer in Veche's flow: str0m's ICE agent starts once time moves.
        rtc.handle_input(Input::Timeout(Instant::now()))?;
        let signal = Signalling::Janus(signal);
        Self::spawn(id, opts, rtc, socket, signal, Some(slots), Vec::new())
    }

    /// Joins Janus VideoRoom `room` as a subscriber to every stream of the publishers
    /// `feeds` (one PeerConnection for all, Janus's multistream subscription): Janus offers,
    /// we answer with `start`. `id` only names this participant in the stats; of `opts` only
    /// the network settings matter, as a subscriber sends no media.
    pub async fn join_janus_subscriber(
        url: &str,
        room: u64,
        id: u64,
        feeds: &[u64],
        opts: ParticipantOptions,
    ) -> Result<SyntheticParticipant, Error> {
        let mut signal = JanusSignal::connect(url).await?;
        let streams: Vec<_> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let join =
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
        // A feed is there once Janus has its publisher's media up, which can be a moment
        // after our publisher saw DTLS connect: retry what Janus calls no such feed (428).
        let mut tries = 0;
        let (_, offer) = loop {
            match signal.message(join.clone(), None).await {
                Err(Error::Janus { code: 428, .. }) if tries < FEED_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(FEED_RETRY_DELAY).await;
                }
                res => break res?,
            }
        };
        let offer_sdp = offer.ok_or_else(|| Error::Unexpected("attached without SDP".into()))?;
        let now = Instant::now();
        let (socket, mut rtc) = media_endpoint(&opts, now).await?;
        let offer =
            SdpOffer::from_sdp_string(&offer_sdp).map_err(|e| Error::BadOffer(e.to_string()))?;
        let answer = rtc.sdp_api().accept_offer(offer)?.to_sdp_string();
        signal
            .message(json!({"request": "start"}), Some(("answer", &answer)))
            .await?;
        signal.trickle_completed().await?;
        if let Some(substream) = opts.janus_substream {
            let streams: Vec<_> = mline_mids(&offer_sdp)
                .into_iter()
                .filter(|(kind, _)| kind == "video")
                .map(|(_, mid)| json!({"mid": mid, "substream": substream}))
                .collect();
            signal
                .message(json!({"request": "configure", "streams": streams}), None)
                .await?;
        }
        rtc.handle_input(Input::Timeout(Instant::now()))?;
        let signal = Signalling::Janus(signal);
        Self::spawn(id, opts, rtc, socket, signal, None, Vec::new())
    }

    /// Starts the driver task for a negotiated (or, for Veche, about to be) `rtc`.
    fn spawn(
        participant_id: ParticipantId,
        opts: ParticipantOptions,
        rtc: Rtc,
        socket: UdpSocket,
        signal: Signalling,
        slots: Option<PublishSlots>,
        events: Vec<(Instant, ServerMessage)>,
    ) -> Result<SyntheticParticipant, Error> {
        let now = Instant::now();
        let shared = Arc::new(Mutex::new(Shared {
            stats: Stats::new(participant_id, now),
            events,
            last_answer: None,
        }));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let driver = Driver::new(
            participant_id,
            opts,
            rtc,
            socket,
            signal,
            slots,
            shared.clone(),
        )?;
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            let reason = match driver.run(command_rx).await {
                Ok(()) => "left".to_owned(),
                Err(e) => {
                    debug!(participant = participant_id, "participant stopped: {e}");
                    e.to_string()
                }
            };
            lock(&task_shared).stats.ended = Some(reason);
        });
        Ok(SyntheticParticipant {
            id: participant_id,
            shared,
            commands,
            task,
        })
    }

    /// The id the server assigned.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared).stats.clone()
    }

    /// Every server message received so far, starting with `joined`.
    pub fn events(&self) -> Vec<ServerMessage> {
        lock(&self.shared)
            .events
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The SDP of the last answer sent.
    pub fn last_answer(&self) -> Option<String> {
        lock(&self.shared).last_answer.clone()
    }

    /// Waits until `pred` holds for the stats and returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let shared = lock(&self.shared);
                if pred(&shared.stats) {
                    return Ok(shared.stats.clone());
                }
                if let Some(reason) = &shared.stats.ended {
                    return Err(Error::Ended(reason.clone()));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<Stats, Error> {
        self.wait_for(timeout, |s| s.connected_at.is_some()).await
    }

    /// Waits until a server message matching `pred` has arrived (at any time since joining)
    /// and returns it with its arrival time.
    pub async fn wait_for_event(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> Result<(Instant, ServerMessage), Error> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            {
                let shared = lock(&self.shared);
                if let Some(found) = shared.events[checked..].iter().find(|(_, m)| pred(m)) {
                    return Ok(found.clone());
                }
                checked = shared.events.len();
                if let Some(reason) = &shared.stats.ended {
                    return Err(Error::Ended(reason.clone()));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Sends a signalling message on this participant's connection (chat, mute, ...).
    pub fn send(&self, msg: ClientMessage) -> Result<(), Error> {
        self.command(Command::Send(msg))
    }

    /// Starts or stops sharing a screen: announces it with `set_media` and sends VP8 on the
    /// screen slot (at [`ParticipantOptions::screen_fps`]) while on.
    pub fn share_screen(&self, on: bool) -> Result<(), Error> {
        self.command(Command::ShareScreen(on))
    }

    /// Stops (or resumes) reading the media socket while still sending, like a frozen tab:
    /// what the server sends piles up in the kernel's buffers and then in the server's.
    pub fn stall_reading(&self, on: bool) -> Result<(), Error> {
        self.command(Command::StallReading(on))
    }

    /// Sends any text frame on this participant's connection, well-formed or not.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.command(Command::SendText(text.into()))
    }

    fn command(&self, cmd: Command) -> Result<(), Error> {
        self.commands
            .send(cmd)
            .map_err(|_| Error::Ended(self.stats().ended.unwrap_or_default()))
    }

    /// Whether the driver task has stopped (left, or failed: see [`Stats::ended`]).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Vanishes without a word: the task stops, its WebSocket and UDP socket are dropped
    /// without a `leave` or a close frame, like a crashed browser tab.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Sends `leave`, waits for the task to stop and returns the final stats.
    pub async fn leave(self) -> Result<Stats, Error> {
        // A send error means the task has already stopped, which is what we want.
        let _ = self.commands.send(Command::Leave);
        let timeout = Duration::from_secs(5);
        tokio::time::timeout(timeout, self.task)
            .await
            .map_err(|_| Error::Timeout(timeout))?
            .map_err(|e| Error::Ended(format!("participant task panicked: {e}")))?;
        Ok(lock(&self.shared).stats.clone())
    }
}

/// Creates Janus VideoRoom `room` for up to `publishers` publishers (Opus and VP8, no
/// bitrate cap), unless it exists.
pub async fn create_janus_room(url: &str, room: u64, publishers: u32) -> Result<(), Error> {
    crate::janus::create_room(url, room, publishers).await
}

/// A UDP socket on `opts.bind_ip` and an `Rtc` in RTP mode with it as host candidate.
async fn media_endpoint(
    opts: &ParticipantOptions,
    now: Instant,
) -> Result<(UdpSocket, Rtc), Error> {
    let socket = UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        // NACK and PLI counts for the load report come from str0m's stats events.
        .set_stats_interval(Some(STATS_INTERVAL))
        .build(now);
    let candidate = if opts.ice_tcp {
        ice_tcp_candidate(opts.bind_ip)?
    } else {
        Candidate::host(socket.local_addr()?, "udp").map_err(str0m::RtcError::from)?
    };
    rtc.add_local_candidate(candidate);
    Ok((socket, rtc))
}

/// Our TCP active host candidate: port 9 by convention (RFC 6544 §4.5), since an active
/// side's port is only known once it connects.
fn ice_tcp_candidate(ip: IpAddr) -> Result<Candidate, Error> {
    Ok(Candidate::builder()
        .tcp()
        .host(SocketAddr::new(ip, crate::driver::ICE_TCP_ACTIVE_PORT))
        .tcptype(TcpType::Active)
        .build()
        .map_err(str0m::RtcError::from)?)
}

const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The lock is only poisoned if the driver panicked while holding it; that is a bug in
    // this crate and the caller should see it.
    shared.lock().expect("participant state lock poisoned")
}

//! A synthetic participant: one signalling WebSocket, one UDP socket and one str0m `Rtc` in RTP
//! mode, driven by one tokio task. Many can run in one process.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind};

use crate::payload::{Tag, Vp8Position, opus_packet, vp8_packet};
use crate::stats::{Received, Stats};
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
    pub video_packets_per_frame: u32,
    pub video_payload_size: usize,
    /// Send a key frame at least this often, besides answering keyframe requests.
    pub keyframe_interval: Duration,
    /// Address the UDP socket binds to (port chosen by the OS) and advertises as host candidate.
    pub bind_ip: IpAddr,
    /// Simulated network loss: drop every n-th incoming RTP datagram before str0m sees it, so
    /// str0m NACKs it and the SFU has to retransmit. `None` drops nothing.
    pub drop_every_nth_rtp: Option<u32>,
}

impl Default for ParticipantOptions {
    fn default() -> Self {
        ParticipantOptions {
            audio: true,
            video: true,
            audio_interval: Duration::from_millis(20),
            audio_payload_size: 80,
            video_fps: 30,
            video_packets_per_frame: 2,
            video_payload_size: 900,
            keyframe_interval: Duration::from_secs(5),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            drop_every_nth_rtp: None,
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
}

/// A handle to a running synthetic participant. Dropping it makes the participant leave.
pub struct SyntheticParticipant {
    id: ParticipantId,
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// State the driver task shares with the handle.
struct Shared {
    stats: Stats,
    /// Every server message from `joined` on, with its arrival time.
    events: Vec<(Instant, ServerMessage)>,
    last_answer: Option<String>,
}

enum Command {
    Send(ClientMessage),
    SendText(String),
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

        let socket = UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
        let local_addr = socket.local_addr()?;
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
        let candidate = Candidate::host(local_addr, "udp").map_err(str0m::RtcError::from)?;
        rtc.add_local_candidate(candidate);

        let shared = Arc::new(Mutex::new(Shared {
            stats: Stats::new(participant_id, now),
            events: vec![(now, joined)],
            last_answer: None,
        }));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            id: participant_id,
            opts,
            rtc,
            socket,
            local_addr,
            signal,
            shared: shared.clone(),
            buf: vec![0; 2000],
            slots: None,
            remote_tracks: HashMap::new(),
            media: None,
            keyframe_wanted: false,
            rtp_datagrams: 0,
        };
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

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The lock is only poisoned if the driver panicked while holding it; that is a bug in
    // this crate and the caller should see it.
    shared.lock().expect("participant state lock poisoned")
}

/// The m-lines this participant publishes on, from the server's first offer.
#[derive(Debug, Clone, Copy)]
struct PublishSlots {
    audio: (Mid, Pt),
    video: (Mid, Pt),
}

/// Send state once media is flowing.
struct MediaClock {
    start: Instant,
    next_audio: Instant,
    next_video: Instant,
    last_keyframe: Option<Instant>,
    audio: TrackState,
    video: TrackState,
    picture_id: u16,
}

/// Per-track RTP sequence and sender counter.
struct TrackState {
    seq: u64,
    counter: u32,
}

struct Driver {
    id: ParticipantId,
    opts: ParticipantOptions,
    rtc: Rtc,
    socket: UdpSocket,
    local_addr: SocketAddr,
    signal: SignalClient,
    shared: Arc<Mutex<Shared>>,
    buf: Vec<u8>,
    slots: Option<PublishSlots>,
    /// mid → (publisher, kind), from `track_published`.
    remote_tracks: HashMap<Mid, (ParticipantId, TrackKind)>,
    media: Option<MediaClock>,
    keyframe_wanted: bool,
    /// Incoming RTP datagrams, for simulated loss.
    rtp_datagrams: u64,
}

/// What woke the driver.
enum Wake {
    Command(Option<Command>),
    Signal(Result<Option<ServerMessage>, Error>),
    Udp(std::io::Result<(usize, SocketAddr)>),
    Timer,
}

impl Driver {
    /// The run loop. str0m's contract: after every mutation of the `Rtc` drain `poll_output`
    /// until it returns a timeout, then wait for the earliest of that timeout, a datagram, a
    /// signalling message, a command or the next media packet due.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> Result<(), Error> {
        loop {
            let rtc_deadline = self.drain().await?;
            if self.keyframe_wanted && self.media.is_some() {
                // Answer PLI/FIR at once rather than at the next frame tick.
                self.send_video_frame(Instant::now(), true).await?;
                continue;
            }
            let wake_at = self
                .media_deadline()
                .map_or(rtc_deadline, |m| m.min(rtc_deadline));
            trace!(
                participant = self.id,
                in_ms = wake_at.saturating_duration_since(Instant::now()).as_millis() as u64,
                reason = ?self.rtc.last_timeout_reason(),
                "waiting"
            );
            let wake = tokio::select! {
                cmd = commands.recv() => Wake::Command(cmd),
                msg = self.signal.recv() => Wake::Signal(msg),
                res = self.socket.recv_from(&mut self.buf) => Wake::Udp(res),
                _ = tokio::time::sleep_until(wake_at.into()) => Wake::Timer,
            };
            match wake {
                Wake::Command(Some(Command::Send(msg))) => self.signal.send(&msg).await?,
                Wake::Command(Some(Command::SendText(text))) => self.signal.send_text(text).await?,
                Wake::Command(Some(Command::Leave) | None) => return self.leave().await,
                Wake::Signal(msg) => match msg? {
                    Some(msg) => self.on_signal(msg).await?,
                    None => return Err(Error::Closed),
                },
                Wake::Udp(res) => {
                    let (n, source) = res?;
                    if self.simulate_loss(n) {
                        continue;
                    }
                    let receive =
                        Receive::new(Protocol::Udp, source, self.local_addr, &self.buf[..n]);
                    match receive {
                        Ok(receive) => {
                            let input = Input::Receive(Instant::now(), receive);
                            self.rtc.handle_input(input)?;
                        }
                        // Not STUN, DTLS, RTP or RTCP: nothing str0m can use.
                        Err(e) => debug!(participant = self.id, "ignoring datagram: {e}"),
                    }
                }
                Wake::Timer => {
                    let now = Instant::now();
                    if now >= rtc_deadline {
                        self.rtc.handle_input(Input::Timeout(now))?;
                        self.drain().await?;
                    }
                    self.send_due_media(now).await?;
                }
            }
        }
    }

    /// Whether to drop the datagram of `n` bytes in `buf` (see
    /// [`ParticipantOptions::drop_every_nth_rtp`]).
    fn simulate_loss(&mut self, n: usize) -> bool {
        let Some(every) = self.opts.drop_every_nth_rtp else {
            return false;
        };
        // RTP (not RTCP, RFC 5761 §4): version 2, and a payload type outside 64..=95, which
        // with the marker bit is a second byte outside 192..=223.
        let rtp = n >= 12 && self.buf[0] >> 6 == 2 && !(192..=223).contains(&self.buf[1]);
        if !rtp {
            return false;
        }
        self.rtp_datagrams += 1;
        if !self.rtp_datagrams.is_multiple_of(u64::from(every.max(1))) {
            return false;
        }
        lock(&self.shared).stats.dropped_on_purpose += 1;
        true
    }

    /// Drains `poll_output` until it yields the next timeout.
    async fn drain(&mut self) -> Result<Instant, Error> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // UDP send errors (e.g. ECONNREFUSED from an earlier ICMP) are transient
                    // for our purposes: ICE and NACK recover, like in a browser.
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        debug!(participant = self.id, "udp send to {}: {e}", t.destination);
                    }
                }
                Output::Event(e) => self.on_rtc_event(e),
            }
        }
    }

    fn on_rtc_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Connected => {
                lock(&self.shared).stats.connected_at = Some(now);
                if self.media.is_none() {
                    self.media = Some(MediaClock::new(now, self.id));
                    self.keyframe_wanted = true;
                }
            }
            Event::RtpPacket(pkt) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&pkt.header.ssrc)
                    .map(|s| s.mid());
                let rtp = Received {
                    ssrc: *pkt.header.ssrc,
                    seq: *pkt.seq_no,
                    mid_owner: mid.and_then(|m| self.remote_tracks.get(&m).copied()),
                    payload: &pkt.payload,
                };
                lock(&self.shared).stats.record_rtp(now, unix_micros(), rtp);
            }
            Event::KeyframeRequest(req) if self.slots.is_some_and(|s| s.video.0 == req.mid) => {
                self.keyframe_wanted = true;
                lock(&self.shared).stats.record_keyframe_request(now);
            }
            Event::IceConnectionStateChange(state) => {
                debug!(participant = self.id, "ice {state:?}");
            }
            _ => {}
        }
    }

    async fn on_signal(&mut self, msg: ServerMessage) -> Result<(), Error> {
        lock(&self.shared)
            .events
            .push((Instant::now(), msg.clone()));
        match msg {
            ServerMessage::Offer { sdp } => self.answer(&sdp).await?,
            ServerMessage::TrackPublished {
                participant_id,
                kind,
                mid,
            } => {
                self.remote_tracks
                    .insert(mid.as_str().into(), (participant_id, kind));
            }
            ServerMessage::TrackUnpublished { mid, .. } => {
                self.remote_tracks.remove(&Mid::from(mid.as_str()));
            }
            ServerMessage::Error { code, message } => {
                warn!(participant = self.id, "server error {code:?}: {message}");
            }
            _ => {}
        }
        Ok(())
    }

    async fn answer(&mut self, sdp: &str) -> Result<(), Error> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| Error::BadOffer(e.to_string()))?;
        // str0m inverts the offered direction: the server's recvonly publish slots become
        // sendonly here, and str0m creates the send streams for them.
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        self.drain().await?;
        // str0m's ICE agent schedules its first connectivity check only once time moves;
        // without this tick `poll_output` reports no timeout and nothing would ever be sent.
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        let first = self.slots.is_none();
        if first {
            self.slots = Some(self.publish_slots(sdp)?);
        }
        let answer = answer.to_sdp_string();
        self.signal
            .send(&ClientMessage::Answer {
                sdp: answer.clone(),
            })
            .await?;
        {
            let mut shared = lock(&self.shared);
            shared.stats.offers += 1;
            shared.stats.answered_at.push(Instant::now());
            shared.last_answer = Some(answer);
        }
        if first {
            // The server forwards a slot only once it is announced as enabled.
            for (kind, enabled) in [
                (TrackKind::Audio, self.opts.audio),
                (TrackKind::Video, self.opts.video),
            ] {
                if enabled {
                    self.signal
                        .send(&ClientMessage::SetMedia { kind, enabled })
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The first three m-lines of the first offer are our microphone, camera and screen slots.
    fn publish_slots(&self, sdp: &str) -> Result<PublishSlots, Error> {
        let mids = mline_mids(sdp);
        let (Some(audio), Some(video)) = (mids.first(), mids.get(1)) else {
            return Err(Error::BadOffer(format!(
                "expected audio and video publish slots, got m-lines {mids:?}"
            )));
        };
        if audio.0 != "audio" || video.0 != "video" {
            return Err(Error::BadOffer(format!(
                "publish slots out of order: {mids:?}"
            )));
        }
        let audio = Mid::from(audio.1.as_str());
        let video = Mid::from(video.1.as_str());
        Ok(PublishSlots {
            audio: (audio, self.pt_for(audio, Codec::Opus)?),
            video: (video, self.pt_for(video, Codec::Vp8)?),
        })
    }

    fn pt_for(&self, mid: Mid, codec: Codec) -> Result<Pt, Error> {
        let media = self
            .rtc
            .media(mid)
            .ok_or_else(|| Error::BadOffer(format!("no media for mid {mid}")))?;
        let pts = media.remote_pts();
        let expected_kind = if codec.is_audio() {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        if media.kind() != expected_kind {
            return Err(Error::BadOffer(format!("mid {mid} is {:?}", media.kind())));
        }
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| pts.contains(&p.pt()) && p.spec().codec == codec)
            .map(|p| p.pt())
            .ok_or_else(|| Error::BadOffer(format!("mid {mid} offers no {codec:?}")))
    }

    fn media_deadline(&self) -> Option<Instant> {
        let m = self.media.as_ref()?;
        match (self.opts.audio, self.opts.video) {
            (true, true) => Some(m.next_audio.min(m.next_video)),
            (true, false) => Some(m.next_audio),
            (false, true) => Some(m.next_video),
            (false, false) => None,
        }
    }

    async fn send_due_media(&mut self, now: Instant) -> Result<(), Error> {
        let Some(m) = self.media.as_mut() else {
            return Ok(());
        };
        let audio_due = self.opts.audio && now >= m.next_audio;
        let video_due = self.opts.video && now >= m.next_video;
        if audio_due {
            m.next_audio = next_tick(m.next_audio, self.opts.audio_interval, now);
        }
        if video_due {
            let frame = Duration::from_secs(1) / self.opts.video_fps.max(1);
            m.next_video = next_tick(m.next_video, frame, now);
        }
        if audio_due {
            self.send_audio(now).await?;
        }
        if video_due {
            let keyframe = keyframe_due(self.media.as_ref(), self.opts.keyframe_interval, now);
            self.send_video_frame(now, keyframe).await?;
        }
        Ok(())
    }

    async fn send_audio(&mut self, now: Instant) -> Result<(), Error> {
        let (Some(slots), Some(m)) = (self.slots, self.media.as_mut()) else {
            return Ok(());
        };
        let (mid, pt) = slots.audio;
        let tag = Tag {
            origin: self.id,
            kind: TrackKind::Audio,
            counter: m.audio.counter,
            sent_at_us: unix_micros(),
        };
        let payload = opus_packet(self.opts.audio_payload_size, &tag);
        let time = rtp_time(m.start, now, 48_000);
        let write =
            RtpWrite::new(pt, m.audio.seq.into(), time, now, payload).ext_vals(ExtensionValues {
                audio_level: Some(-30),
                voice_activity: Some(true),
                ..Default::default()
            });
        m.audio.seq += 1;
        m.audio.counter += 1;
        if self.write(mid, write) {
            lock(&self.shared).stats.sent.audio_packets += 1;
            self.drain().await?;
        }
        Ok(())
    }

    async fn send_video_frame(&mut self, now: Instant, keyframe: bool) -> Result<(), Error> {
        let (Some(slots), Some(_)) = (self.slots, self.media.as_ref()) else {
            return Ok(());
        };
        if !self.opts.video {
            self.keyframe_wanted = false;
            return Ok(());
        }
        let (mid, pt) = slots.video;
        let packets = self.opts.video_packets_per_frame.max(1);
        let mut written = 0;
        for i in 0..packets {
            // Present (checked above); re-borrowed per packet because `drain` needs `self`.
            let m = self.media.as_mut().expect("media clock");
            let pos = Vp8Position {
                first: i == 0,
                keyframe,
                picture_id: m.picture_id,
            };
            let tag = Tag {
                origin: self.id,
                kind: TrackKind::Video,
                counter: m.video.counter,
                sent_at_us: unix_micros(),
            };
            let payload = vp8_packet(self.opts.video_payload_size, pos, &tag);
            let time = rtp_time(m.start, now, 90_000);
            let write = RtpWrite::new(pt, m.video.seq.into(), time, now, payload)
                .marker(i + 1 == packets)
                .nackable(true);
            m.video.seq += 1;
            m.video.counter += 1;
            if self.write(mid, write) {
                written += 1;
                self.drain().await?;
            }
        }
        let m = self.media.as_mut().expect("media clock");
        m.picture_id = (m.picture_id + 1) & 0x7fff;
        if keyframe {
            m.last_keyframe = Some(now);
            self.keyframe_wanted = false;
        }
        let mut shared = lock(&self.shared);
        shared.stats.sent.video_packets += written;
        if written > 0 {
            shared.stats.sent.video_frames += 1;
            if keyframe {
                shared.stats.sent.keyframes += 1;
            }
        }
        Ok(())
    }

    /// Hands one packet to str0m; false if the slot has no send stream (not negotiated).
    fn write(&mut self, mid: Mid, write: RtpWrite) -> bool {
        let mut api = self.rtc.direct_api();
        match api.stream_tx_by_mid(mid, None) {
            Some(tx) => {
                tx.write_rtp(write);
                true
            }
            None => false,
        }
    }

    async fn leave(mut self) -> Result<(), Error> {
        self.signal.send(&ClientMessage::Leave).await?;
        // Give the server a moment to close the connection; record what it still says.
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(Some(msg))) =
            tokio::time::timeout_at(until.into(), self.signal.recv()).await
        {
            lock(&self.shared).events.push((Instant::now(), msg));
        }
        self.rtc.disconnect();
        Ok(())
    }
}

fn keyframe_due(m: Option<&MediaClock>, interval: Duration, now: Instant) -> bool {
    m.is_none_or(|m| m.last_keyframe.is_none_or(|t| now >= t + interval))
}

impl MediaClock {
    fn new(now: Instant, id: ParticipantId) -> MediaClock {
        // Distinct starting sequence numbers per participant make mix-ups visible; kept below
        // 2^15 so the first sequence number has no rollover (str0m warns otherwise).
        let seq = (id.wrapping_mul(7919) % 30_000) + 1;
        MediaClock {
            start: now,
            next_audio: now,
            next_video: now,
            last_keyframe: None,
            audio: TrackState { seq, counter: 0 },
            video: TrackState {
                seq: seq + 5_000,
                counter: 0,
            },
            picture_id: (seq as u16) & 0x7fff,
        }
    }
}

/// The next tick after `prev`, skipping ticks missed by more than one period (a busy machine
/// should not make us burst).
fn next_tick(prev: Instant, period: Duration, now: Instant) -> Instant {
    let next = prev + period;
    if next + period < now {
        now + period
    } else {
        next
    }
}

/// RTP timestamp for `now` at `clock_rate`, counted from `start`.
fn rtp_time(start: Instant, now: Instant, clock_rate: u64) -> u32 {
    let elapsed = now.saturating_duration_since(start);
    (elapsed.as_micros() as u64 * clock_rate / 1_000_000) as u32
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// (media kind, mid) of each m-line, in order.
fn mline_mids(sdp: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            let kind = rest.split(' ').next().unwrap_or_default();
            out.push((kind.to_owned(), String::new()));
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), out.last_mut()) {
            last.1 = mid.trim().to_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mids_in_order() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=mid:2\r\n";
        assert_eq!(
            mline_mids(sdp),
            vec![
                ("audio".into(), "0".into()),
                ("video".into(), "1".into()),
                ("video".into(), "2".into())
            ]
        );
    }

    #[test]
    fn ticks_skip_when_far_behind() {
        let t0 = Instant::now();
        let p = Duration::from_millis(20);
        assert_eq!(next_tick(t0, p, t0), t0 + p);
        let late = t0 + Duration::from_secs(1);
        assert_eq!(next_tick(t0, p, late), late + p);
    }

    #[test]
    fn rtp_time_counts_clock_rate() {
        let t0 = Instant::now();
        assert_eq!(rtp_time(t0, t0 + Duration::from_millis(20), 48_000), 960);
        assert_eq!(rtp_time(t0, t0 + Duration::from_secs(1), 90_000), 90_000);
    }
}

//! The task behind a [`crate::SyntheticParticipant`]: one signalling WebSocket, one UDP socket
//! (or, with ICE-TCP, a TCP connection made when str0m first sends on it) and one str0m `Rtc`
//! in RTP mode, plus the [`MediaSource`] that decides what to send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt, Rid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};
use veche_proto::{ClientMessage, ParticipantId, ServerMessage, TrackKind, VideoSize};

use crate::clip::SIMULCAST_LAYERS;
use crate::downlink::Downlink;
use crate::janus::{JanusEvent, JanusSignal};
use crate::participant::{Command, ParticipantOptions, Shared, lock};
use crate::source::{MediaSource, Packet, unix_micros};
use crate::stats::{CapturedPacket, Received};
use crate::tcp_link::TcpLink;
use crate::{Error, SignalClient};

/// The m-lines this participant publishes on (Veche: from the server's first offer;
/// Janus: from our own offer): microphone, camera and screen, with the payload type to send
/// on each. `None` where there is no such m-line (a Janus publisher has no screen slot).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublishSlots {
    pub(crate) audio: Option<(Mid, Pt)>,
    pub(crate) camera: Option<(Mid, Pt)>,
    pub(crate) screen: Option<(Mid, Pt)>,
    /// The RID of each simulcast layer of the camera, lowest first; `None` where the layer
    /// was not negotiated (all `None` without simulcast).
    pub(crate) camera_rids: [Option<Rid>; SIMULCAST_LAYERS],
}

impl PublishSlots {
    fn of(&self, kind: TrackKind) -> Option<(Mid, Pt)> {
        match kind {
            TrackKind::Audio => self.audio,
            TrackKind::Video => self.camera,
            TrackKind::Screen => self.screen,
        }
    }

    /// The camera layer sent on `rid`.
    fn layer_of(&self, rid: Rid) -> Option<u8> {
        self.camera_rids
            .iter()
            .position(|r| *r == Some(rid))
            .map(|l| l as u8)
    }

    fn video_kind(&self, mid: Mid) -> Option<TrackKind> {
        [TrackKind::Video, TrackKind::Screen]
            .into_iter()
            .find(|k| self.of(*k).is_some_and(|(m, _)| m == mid))
    }
}

/// The signalling connection: Veche's protocol, or one Janus VideoRoom handle.
pub(crate) enum Signalling {
    Veche(SignalClient),
    Janus(JanusSignal),
}

/// A message from either server.
enum Incoming {
    Veche(Box<ServerMessage>),
    Janus(JanusEvent),
}

impl Signalling {
    /// Cancel-safe, like both underlying `recv`s.
    async fn recv(&mut self) -> Result<Option<Incoming>, Error> {
        Ok(match self {
            Signalling::Veche(s) => s.recv().await?.map(|m| Incoming::Veche(Box::new(m))),
            Signalling::Janus(s) => s.recv().await?.map(Incoming::Janus),
        })
    }

    /// The Veche connection, for messages only Veche's protocol has.
    fn veche(&mut self) -> Option<&mut SignalClient> {
        match self {
            Signalling::Veche(s) => Some(s),
            Signalling::Janus(_) => None,
        }
    }
}

pub(crate) struct Driver {
    id: ParticipantId,
    opts: ParticipantOptions,
    rtc: Rtc,
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// The ICE-TCP connection, once str0m has sent on TCP.
    tcp: Option<TcpLink>,
    /// Reading the media socket is paused ([`Command::StallReading`]).
    stalled: bool,
    signal: Signalling,
    shared: Arc<Mutex<Shared>>,
    buf: Vec<u8>,
    slots: Option<PublishSlots>,
    /// mid → (publisher, kind), from `track_published`.
    remote_tracks: HashMap<Mid, (ParticipantId, TrackKind)>,
    source: MediaSource,
    /// ICE and DTLS are up: media may flow.
    connected: bool,
    /// Reused buffer for the packets the source hands out.
    packets: Vec<Packet>,
    /// Incoming RTP datagrams, for simulated loss.
    rtp_datagrams: u64,
    /// Latest cumulative str0m counters per m-line: (NACKs sent, keyframe requests sent)
    /// for what we receive, NACKs received for what we send.
    ingress: HashMap<Mid, (u64, u64)>,
    egress: HashMap<Mid, u64>,
    /// The emulated narrow downlink, holding the datagrams it is carrying.
    downlink: Option<Downlink<(SocketAddr, Vec<u8>)>>,
    /// The remote videos being published, in the order announced, for the tile report.
    remote_videos: Vec<(ParticipantId, TrackKind)>,
}

/// What woke the driver.
enum Wake {
    Command(Option<Command>),
    Signal(Result<Option<Incoming>, Error>),
    Udp(std::io::Result<(usize, SocketAddr)>),
    Tcp(std::io::Result<Option<Vec<u8>>>),
    Timer,
}

impl Driver {
    pub(crate) fn new(
        id: ParticipantId,
        opts: ParticipantOptions,
        rtc: Rtc,
        socket: UdpSocket,
        signal: Signalling,
        slots: Option<PublishSlots>,
        shared: Arc<Mutex<Shared>>,
    ) -> Result<Driver, Error> {
        let now = Instant::now();
        Ok(Driver {
            id,
            source: MediaSource::new(id, opts.source_config(), now),
            downlink: opts.downlink.map(Downlink::new),
            remote_videos: Vec::new(),
            opts,
            rtc,
            local_addr: socket.local_addr()?,
            socket,
            tcp: None,
            stalled: false,
            signal,
            shared,
            buf: vec![0; 2000],
            slots,
            remote_tracks: HashMap::new(),
            connected: false,
            packets: Vec::new(),
            rtp_datagrams: 0,
            ingress: HashMap::new(),
            egress: HashMap::new(),
        })
    }

    /// The run loop. str0m's contract: after every mutation of the `Rtc` drain `poll_output`
    /// until it returns a timeout, then wait for the earliest of that timeout, a datagram, a
    /// signalling message, a command or the next media packet due.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), Error> {
        loop {
            self.downlink_deliver(Instant::now()).await?;
            let rtc_deadline = self.drain().await?;
            let wake_at = [self.media_due(), self.downlink_due()]
                .into_iter()
                .flatten()
                .fold(rtc_deadline, Instant::min);
            trace!(
                participant = self.id,
                in_ms = wake_at.saturating_duration_since(Instant::now()).as_millis() as u64,
                reason = ?self.rtc.last_timeout_reason(),
                "waiting"
            );
            let reading = !self.stalled;
            let wake = tokio::select! {
                cmd = commands.recv() => Wake::Command(cmd),
                msg = self.signal.recv() => Wake::Signal(msg),
                res = self.socket.recv_from(&mut self.buf), if reading => Wake::Udp(res),
                res = recv_tcp(&mut self.tcp), if reading => Wake::Tcp(res),
                _ = tokio::time::sleep_until(wake_at.into()) => Wake::Timer,
            };
            match wake {
                // Chat, mute and screen sharing exist in Veche's protocol only; a Janus
                // participant ignores them.
                Wake::Command(Some(Command::Send(msg))) => {
                    if let Some(s) = self.signal.veche() {
                        s.send(&msg).await?;
                    }
                }
                Wake::Command(Some(Command::SendText(text))) => {
                    if let Some(s) = self.signal.veche() {
                        s.send_text(text).await?;
                    }
                }
                Wake::Command(Some(Command::ShareScreen(on))) => {
                    if let Some(s) = self.signal.veche() {
                        let msg = ClientMessage::SetMedia {
                            kind: TrackKind::Screen,
                            enabled: on,
                        };
                        s.send(&msg).await?;
                        self.source.set_screen(on, Instant::now());
                    }
                }
                Wake::Command(Some(Command::StallReading(on))) => self.stalled = on,
                Wake::Command(Some(Command::Leave) | None) => return self.leave().await,
                Wake::Signal(msg) => match msg? {
                    Some(Incoming::Veche(msg)) => self.on_signal(*msg).await?,
                    Some(Incoming::Janus(JanusEvent::Offer(sdp))) => self.answer(&sdp).await?,
                    Some(Incoming::Janus(JanusEvent::Other)) => {}
                    None => return Err(Error::Closed),
                },
                Wake::Udp(res) => {
                    let (n, source) = res?;
                    self.arrive(n, source)?;
                    // Read whatever else is queued before going back to `select!`, which
                    // costs a timer registration and three polls per wake: with hundreds of
                    // participants in one thread that overhead dominates. str0m holds one
                    // received packet until the next poll, so drain after each.
                    loop {
                        self.drain().await?;
                        match self.socket.try_recv_from(&mut self.buf) {
                            Ok((n, source)) => self.arrive(n, source)?,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Wake::Tcp(res) => match (res, self.tcp.as_ref().map(TcpLink::peer)) {
                    (Ok(Some(frame)), Some(peer)) => {
                        // Frames come from str0m on the server: never past a datagram's size.
                        let n = frame.len().min(self.buf.len());
                        self.buf[..n].copy_from_slice(&frame[..n]);
                        self.receive(Protocol::Tcp, n, peer)?;
                    }
                    // Closed or failed: ICE finds out through its consent checks.
                    (res, _) => {
                        debug!(participant = self.id, "ICE-TCP connection ended: {res:?}");
                        self.tcp = None;
                    }
                },
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

    /// The UDP datagram of `n` bytes in `buf` arrived from `source`: to str0m at once, or
    /// onto the emulated downlink.
    fn arrive(&mut self, n: usize, source: SocketAddr) -> Result<(), Error> {
        let Some(link) = self.downlink.as_mut() else {
            return self.receive(Protocol::Udp, n, source);
        };
        // A datagram the full queue drops is counted in `link.dropped`.
        link.push(Instant::now(), n, (source, self.buf[..n].to_vec()));
        let mut shared = lock(&self.shared);
        shared.stats.downlink_dropped = link.dropped;
        shared.stats.downlink_max_queue = link.max_wait;
        Ok(())
    }

    /// When the emulated downlink next delivers a datagram.
    fn downlink_due(&self) -> Option<Instant> {
        self.downlink.as_ref().and_then(Downlink::next_out)
    }

    /// Hands str0m every datagram the emulated downlink has carried by `now`.
    async fn downlink_deliver(&mut self, now: Instant) -> Result<(), Error> {
        while let Some((source, datagram)) = self.downlink.as_mut().and_then(|l| l.pop(now)) {
            let n = datagram.len().min(self.buf.len());
            self.buf[..n].copy_from_slice(&datagram[..n]);
            self.receive(Protocol::Udp, n, source)?;
            self.drain().await?;
        }
        Ok(())
    }

    /// Hands the datagram of `n` bytes in `buf` to str0m (unless simulated loss drops it).
    /// The caller must drain `poll_output` before the next one.
    fn receive(&mut self, proto: Protocol, n: usize, source: SocketAddr) -> Result<(), Error> {
        if self.simulate_loss(n) {
            return Ok(());
        }
        // Over TCP, our candidate is the active one: the address str0m knows it by.
        let destination = match proto {
            Protocol::Udp => self.local_addr,
            _ => SocketAddr::new(self.local_addr.ip(), ICE_TCP_ACTIVE_PORT),
        };
        match Receive::new(proto, source, destination, &self.buf[..n]) {
            Ok(receive) => {
                let input = Input::Receive(Instant::now(), receive);
                self.rtc.handle_input(input)?;
            }
            // Not STUN, DTLS, RTP or RTCP: nothing str0m can use.
            Err(e) => debug!(participant = self.id, "ignoring datagram: {e}"),
        }
        Ok(())
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
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    self.send_tcp(t.destination, &t.contents).await;
                }
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

    /// Sends a frame on the ICE-TCP connection to `peer`, connecting first if there is
    /// none. Failures are like lost datagrams: ICE retries its checks.
    async fn send_tcp(&mut self, peer: SocketAddr, payload: &[u8]) {
        if self.tcp.as_ref().is_none_or(|l| l.peer() != peer) {
            match TcpLink::connect(peer).await {
                Ok(link) => self.tcp = Some(link),
                Err(e) => return debug!(participant = self.id, "ICE-TCP connect to {peer}: {e}"),
            }
        }
        if let Some(link) = self.tcp.as_mut()
            && let Err(e) = link.send(payload).await
        {
            debug!(participant = self.id, "ICE-TCP send to {peer}: {e}");
            self.tcp = None;
        }
    }

    fn on_rtc_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Connected => {
                lock(&self.shared).stats.connected_at = Some(now);
                self.connected = true;
            }
            Event::RtpPacket(pkt) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&pkt.header.ssrc)
                    .map(|s| s.mid());
                let owner = mid.and_then(|m| self.remote_tracks.get(&m).copied());
                let rtp = Received {
                    ssrc: *pkt.header.ssrc,
                    seq: *pkt.seq_no,
                    mid_owner: owner,
                    payload: &pkt.payload,
                };
                let mut shared = lock(&self.shared);
                shared.stats.record_rtp(now, unix_micros(), rtp);
                if let Some(owner) = owner
                    && self.opts.capture_payloads > 0
                {
                    let kept = shared.stats.captured.entry(owner).or_default();
                    if kept.len() < self.opts.capture_payloads {
                        kept.push(CapturedPacket {
                            marker: pkt.header.marker,
                            payload: pkt.payload.to_vec(),
                        });
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                if let Some(slots) = self.slots
                    && let Some(kind) = slots.video_kind(req.mid)
                {
                    let layer = req.rid.and_then(|rid| slots.layer_of(rid));
                    self.source.request_keyframe(kind, layer);
                    lock(&self.shared).stats.record_keyframe_request(now);
                }
            }
            Event::MediaIngressStats(s) => {
                self.ingress.insert(s.mid, (s.nacks, s.plis + s.firs));
                let mut shared = lock(&self.shared);
                shared.stats.nacks_sent = self.ingress.values().map(|v| v.0).sum();
                shared.stats.keyframe_requests_sent = self.ingress.values().map(|v| v.1).sum();
            }
            Event::MediaEgressStats(s) => {
                self.egress.insert(s.mid, s.nacks);
                lock(&self.shared).stats.nacks_received = self.egress.values().sum();
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
                if kind.is_video() && !self.remote_videos.contains(&(participant_id, kind)) {
                    self.remote_videos.push((participant_id, kind));
                    self.report_tiles().await?;
                }
            }
            // The mid keeps its owner: the last packets of an ended track may still be on
            // their way when the (faster) signalling says it ended, and are that track's, not
            // packets on a mid nobody announced. A `track_published` that reuses the mid
            // names its new owner.
            ServerMessage::TrackUnpublished {
                participant_id,
                kind,
                ..
            } => {
                let before = self.remote_videos.len();
                self.remote_videos.retain(|v| *v != (participant_id, kind));
                if self.remote_videos.len() != before {
                    self.report_tiles().await?;
                }
            }
            ServerMessage::LayersWanted {
                kind: TrackKind::Video,
                rids,
            } => {
                if let Some(slots) = self.slots {
                    let wanted = slots
                        .camera_rids
                        .map(|r| r.is_some_and(|r| rids.iter().any(|w| **w == *r)));
                    self.source.set_layers(wanted, Instant::now());
                }
            }
            ServerMessage::Error { code, message } => {
                warn!(participant = self.id, "server error {code:?}: {message}");
            }
            _ => {}
        }
        Ok(())
    }

    /// Tells the server the tile every remote video is shown in (`video_sizes`), when
    /// [`ParticipantOptions::tile`] is set.
    async fn report_tiles(&mut self) -> Result<(), Error> {
        let (Some((width, height)), Some(s)) = (self.opts.tile, self.signal.veche()) else {
            return Ok(());
        };
        let sizes = self
            .remote_videos
            .iter()
            .map(|&(participant_id, kind)| VideoSize {
                participant_id,
                kind,
                width,
                height,
            })
            .collect();
        s.send(&ClientMessage::VideoSizes { sizes }).await
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
        let answer = answer.to_sdp_string();
        let first = self.slots.is_none();
        if first && matches!(self.signal, Signalling::Veche(_)) {
            let slots = self.publish_slots(sdp)?;
            // Simulcast without the server's RIDs: one stream, the top layer, as a browser
            // whose offer had no simulcast sends its one encoding.
            if self.opts.simulcast.is_some() && slots.camera_rids.iter().any(Option::is_none) {
                let mut top = [false; SIMULCAST_LAYERS];
                top[SIMULCAST_LAYERS - 1] = true;
                self.source.set_layers(top, Instant::now());
            }
            self.slots = Some(slots);
        }
        match &mut self.signal {
            Signalling::Veche(s) => {
                let msg = ClientMessage::Answer {
                    sdp: answer.clone(),
                };
                s.send(&msg).await?;
            }
            // A Janus subscriber publishes nothing: no slots.
            Signalling::Janus(s) => s.send_answer(&answer).await?,
        }
        {
            let mut shared = lock(&self.shared);
            shared.stats.offers += 1;
            shared.stats.answered_at.push(Instant::now());
            shared.last_answer = Some(answer);
        }
        if let (true, Signalling::Veche(s)) = (first, &mut self.signal) {
            // The server forwards a slot only once it is announced as enabled.
            for (kind, enabled) in [
                (TrackKind::Audio, self.opts.audio),
                (TrackKind::Video, self.opts.video),
            ] {
                if enabled {
                    s.send(&ClientMessage::SetMedia { kind, enabled }).await?;
                }
            }
        }
        Ok(())
    }

    /// The first three m-lines of the first offer are our microphone, camera and screen slots.
    fn publish_slots(&self, sdp: &str) -> Result<PublishSlots, Error> {
        let mids = mline_mids(sdp);
        let kinds: Vec<&str> = mids.iter().take(3).map(|(k, _)| k.as_str()).collect();
        if kinds != ["audio", "video", "video"] {
            return Err(Error::BadOffer(format!(
                "expected audio, video and video publish slots first, got m-lines {mids:?}"
            )));
        }
        let slot = |i: usize, codec| {
            let mid = Mid::from(mids[i].1.as_str());
            self.pt_for(mid, codec).map(|pt| (mid, pt))
        };
        let camera = slot(1, Codec::Vp8)?;
        // The server offers the camera's layers lowest first (`a=simulcast:recv q;h;f`).
        let mut camera_rids = [None; SIMULCAST_LAYERS];
        if self.opts.simulcast.is_some()
            && let Some(Rids::Specific(rids)) = self.rtc.media(camera.0).map(|m| m.rids_tx())
            && rids.len() == SIMULCAST_LAYERS
        {
            for (slot, rid) in camera_rids.iter_mut().zip(rids) {
                *slot = Some(*rid);
            }
        }
        Ok(PublishSlots {
            audio: Some(slot(0, Codec::Opus)?),
            camera: Some(camera),
            screen: Some(slot(2, Codec::Vp8)?),
            camera_rids,
        })
    }

    fn pt_for(&self, mid: Mid, codec: Codec) -> Result<Pt, Error> {
        pt_for(&self.rtc, mid, codec)
    }

    /// When media is next due, once it can flow.
    fn media_due(&self) -> Option<Instant> {
        if self.connected && self.slots.is_some() {
            self.source.next_due()
        } else {
            None
        }
    }

    async fn send_due_media(&mut self, now: Instant) -> Result<(), Error> {
        let Some(slots) = self.slots.filter(|_| self.connected) else {
            return Ok(());
        };
        let mut packets = std::mem::take(&mut self.packets);
        self.source.poll(now, &mut packets);
        for p in packets.drain(..) {
            let Some((mid, pt)) = slots.of(p.kind) else {
                continue;
            };
            let rid = p.layer.and_then(|l| slots.camera_rids[usize::from(l)]);
            let (kind, keyframe, marker) = (p.kind, p.keyframe, p.marker);
            let mut write = RtpWrite::new(pt, p.seq.into(), p.time, now, p.payload)
                .marker(marker)
                // Browsers NACK video only; audio is not worth retransmitting.
                .nackable(kind.is_video());
            if kind == TrackKind::Audio {
                write = write.ext_vals(ExtensionValues {
                    audio_level: Some(-30),
                    voice_activity: Some(true),
                    ..Default::default()
                });
            }
            if !self.write(mid, rid, write) {
                continue;
            }
            {
                let mut shared = lock(&self.shared);
                let sent = &mut shared.stats.sent;
                match kind {
                    TrackKind::Audio => sent.audio_packets += 1,
                    TrackKind::Video => sent.video_packets += 1,
                    TrackKind::Screen => sent.screen_packets += 1,
                }
                if kind == TrackKind::Video && marker {
                    sent.video_frames += 1;
                }
                if keyframe {
                    sent.keyframes += 1;
                }
            }
            self.drain().await?;
        }
        self.packets = packets;
        Ok(())
    }

    /// Hands one packet to str0m (on the stream of simulcast layer `rid`, if any); false if
    /// the slot has no such send stream (not negotiated).
    fn write(&mut self, mid: Mid, rid: Option<Rid>, write: RtpWrite) -> bool {
        let mut api = self.rtc.direct_api();
        match api.stream_tx_by_mid(mid, rid) {
            Some(tx) => {
                tx.write_rtp(write);
                true
            }
            None => false,
        }
    }

    async fn leave(mut self) -> Result<(), Error> {
        let signal = match &mut self.signal {
            Signalling::Veche(s) => s,
            Signalling::Janus(s) => {
                s.destroy().await?;
                self.rtc.disconnect();
                return Ok(());
            }
        };
        signal.send(&ClientMessage::Leave).await?;
        // Give the server a moment to close the connection; record what it still says.
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(Some(msg))) = tokio::time::timeout_at(until.into(), signal.recv()).await {
            lock(&self.shared).events.push((Instant::now(), msg));
        }
        self.rtc.disconnect();
        Ok(())
    }
}

/// The payload type negotiated for `codec` on `mid`.
pub(crate) fn pt_for(rtc: &Rtc, mid: Mid, codec: Codec) -> Result<Pt, Error> {
    let media = rtc
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
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| pts.contains(&p.pt()) && p.spec().codec == codec)
        .map(|p| p.pt())
        .ok_or_else(|| Error::BadOffer(format!("mid {mid} offers no {codec:?}")))
}

/// (media kind, mid) of each m-line, in order.
pub(crate) fn mline_mids(sdp: &str) -> Vec<(String, String)> {
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

/// The port of our TCP active candidate (see `participant::ice_tcp_candidate`).
pub(crate) const ICE_TCP_ACTIVE_PORT: u16 = 9;

/// The next frame on the ICE-TCP connection, or never while there is none. Cancel-safe.
async fn recv_tcp(tcp: &mut Option<TcpLink>) -> std::io::Result<Option<Vec<u8>>> {
    match tcp {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
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
}

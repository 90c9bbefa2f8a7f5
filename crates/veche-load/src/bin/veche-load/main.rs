//! `veche-load`: many synthetic WebRTC participants against Veche or Janus, and a report of
//! what the server forwarded, how well, and at what CPU cost.
//!
//! A run: publishers join (throttled to `--join-rate`), then subscribers; after the joins
//! settle a measurement window of `--duration` seconds starts. Counters are snapshotted at
//! both ends of the window, so joins and warm-up do not count. Everything runs on one tokio
//! thread: the tool's own CPU is reported so a saturated tool is visible. With
//! `--simulcast` the report also says, per receive-only subscriber, which layer it received
//! and at what rate.

mod proc;
mod report;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::task::JoinSet;
use veche_load::{
    Clip, DownlinkLimit, Histogram, ParticipantOptions, SIMULCAST_LAYERS, Stats,
    SyntheticParticipant, create_janus_room,
};

use crate::proc::{CpuTimes, rss_mib};
use crate::report::{Report, ServerUse, SubscriberVideo, Totals};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Veche,
    Janus,
}

/// Load a Veche (or Janus VideoRoom) server with synthetic WebRTC participants and report
/// forwarded packets, loss, latency and the server's CPU per forwarded packet.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Signalling URL: ws://HOST:PORT/ws for Veche, ws://HOST:8188 for Janus.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "veche")]
    target: Target,
    /// Rooms, each with the same shape.
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// Participants per room that publish (and receive every other publisher).
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// Participants per room that only receive.
    #[arg(long, default_value_t = 0)]
    subscribers: u32,
    /// Measurement window in seconds, after the joins have settled.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds to wait after the last join before measuring.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Camera bitrate: picks the built-in VP8 clip (300 kbit/s up to 550, else 1 Mbit/s);
    /// 0 publishes no video.
    #[arg(long, default_value_t = 1000)]
    video_kbps: u32,
    /// Publish Opus audio too (20 ms packets, ~32 kbit/s).
    #[arg(long)]
    audio: bool,
    /// Joins started per second.
    #[arg(long, default_value_t = 20.0)]
    join_rate: f64,
    /// Server process whose CPU and memory to measure over the window.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as JSON (one object) instead of a table.
    #[arg(long)]
    json: bool,
    /// Room name prefix (Veche) or seed of the room numbers (Janus): use a fresh one per run.
    #[arg(long, default_value = "load-")]
    room_prefix: String,
    /// Address the participants' UDP sockets bind to and advertise. Janus (libnice) gathers
    /// no loopback candidates, so against Janus use this machine's own address.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: std::net::IpAddr,
    /// Drop every n-th incoming RTP packet at each receiver before str0m sees it (simulated
    /// network loss, to exercise NACK/RTX; loss then counts what retransmission missed).
    #[arg(long)]
    drop_every_nth: Option<u32>,
    /// How long one participant may take to connect media before it counts as failed.
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
    /// Publishers send the camera in three simulcast layers (RIDs q, h, f: 320x180 at 15 fps
    /// and 90 kbit/s, 640x360 at 500 kbit/s, 1280x720 at 1.5 Mbit/s, the browser client's
    /// layers) instead of one --video-kbps stream. Veche chooses each subscriber's layer by
    /// its tile and bandwidth estimate; on Janus each subscriber asks for the substream its
    /// --tile needs.
    #[arg(long)]
    simulcast: bool,
    /// With --simulcast: the layers from the three .ivf (VP8) files in DIR, ordered by
    /// height, instead of the built-in clips (make-simulcast-clips.sh DIR, in
    /// crates/veche-load/fixtures, makes them).
    #[arg(long, value_name = "DIR", requires = "simulcast")]
    clip_dir: Option<std::path::PathBuf>,
    /// Receive-only subscribers report that they show every remote video in a WxH tile (as
    /// the browser client does). Given more than once, the sizes take turns among the
    /// subscribers of each room.
    #[arg(long, value_name = "WxH", value_parser = parse_tile)]
    tile: Vec<(u32, u32)>,
    /// Receive-only subscribers receive through an emulated downlink of this many kbit/s
    /// (IP and UDP headers included; UDP only): a fixed-rate bottleneck whose queue drops
    /// what would wait longer than --downlink-queue-ms.
    #[arg(long, value_name = "KBPS")]
    downlink_kbps: Option<u32>,
    /// The emulated downlink's queue, in milliseconds of its rate.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 200,
        requires = "downlink_kbps"
    )]
    downlink_queue_ms: u64,
}

/// `WxH`, e.g. `1280x720`.
fn parse_tile(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("tile {s:?} is not WxH"))?;
    let dim = |d: &str| {
        d.parse::<u32>()
            .ok()
            .filter(|d| (1..=16_384).contains(d))
            .ok_or_else(|| format!("tile {s:?}: {d:?} is not a size in 1..=16384"))
    };
    Ok((dim(w)?, dim(h)?))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = veche_load::tool_runtime()?;
    let report = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
    // Participants are not asked to leave: the process exit closes every socket at once,
    // which both servers handle as vanished peers; that keeps a large run's end fast.
    std::process::exit(0);
}

/// One joined participant, and how long joining took.
struct Joined {
    participant: SyntheticParticipant,
    join_ms: u64,
    /// The tile of a receive-only subscriber (`None` for publishers and their receivers,
    /// and for subscribers without --tile); `subscriber` says which it is.
    tile: Option<(u32, u32)>,
    subscriber: bool,
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let simulcast = match (&args.clip_dir, args.simulcast) {
        (Some(dir), _) => Some(Clip::simulcast_from_dir(dir)?),
        (None, true) => Some(Clip::builtin_simulcast()),
        (None, false) => None,
    };
    let clip = (args.video_kbps > 0 && simulcast.is_none()).then(|| Clip::builtin(args.video_kbps));
    let publisher_opts = ParticipantOptions {
        audio: args.audio,
        video: clip.is_some() || simulcast.is_some(),
        simulcast: simulcast.clone(),
        // 80-byte Opus frames every 20 ms: 32 kbit/s.
        audio_payload_size: 80,
        clip: clip.clone(),
        bind_ip: args.bind_ip,
        drop_every_nth_rtp: args.drop_every_nth,
        ..ParticipantOptions::default()
    };
    let receiver_opts = ParticipantOptions {
        bind_ip: args.bind_ip,
        drop_every_nth_rtp: args.drop_every_nth,
        ..ParticipantOptions::receive_only()
    };
    let downlink = args.downlink_kbps.map(|kbps| DownlinkLimit {
        kbps,
        queue: Duration::from_millis(args.downlink_queue_ms),
    });
    // Receive-only subscriber `i` of a room: its tile (taking turns) and downlink; on Janus
    // the substream its tile needs, as Veche would choose without a bandwidth limit.
    let subscriber_opts = |i: u32| {
        let tile = (!args.tile.is_empty()).then(|| args.tile[i as usize % args.tile.len()]);
        let substream = simulcast
            .as_ref()
            .zip(tile)
            .map(|(layers, tile)| layer_for_tile(layers, tile));
        let opts = ParticipantOptions {
            tile,
            downlink,
            janus_substream: substream,
            ..receiver_opts.clone()
        };
        (opts, tile)
    };
    let config = json!({
        "target": format!("{:?}", args.target).to_lowercase(),
        "rooms": args.rooms, "publishers": args.publishers, "subscribers": args.subscribers,
        "duration_s": args.duration, "video_kbps": clip.as_ref().map(Clip::kbps),
        "simulcast_kbps": simulcast.as_ref().map(|l| l.each_ref().map(Clip::kbps)),
        "tiles": args.tile.iter().map(|(w, h)| format!("{w}x{h}")).collect::<Vec<_>>(),
        "downlink_kbps": args.downlink_kbps,
        "downlink_queue_ms": args.downlink_kbps.map(|_| args.downlink_queue_ms),
        "audio": args.audio, "join_rate": args.join_rate,
    });
    let connect_timeout = Duration::from_secs(args.connect_timeout);
    let mut pacer = Pacer::new(args.join_rate);
    let mut joins = JoinSet::new();
    let mut joined = Vec::new();
    let mut failed = 0;

    match args.target {
        Target::Veche => {
            // Publishers first so subscribers' first offers already carry every track.
            let roles = [(args.publishers, true), (args.subscribers, false)];
            for (count, publishes) in roles {
                for room in 0..args.rooms {
                    for i in 0..count {
                        pacer.wait().await;
                        let url = args.url.clone();
                        let room = format!("{}{room}", args.room_prefix);
                        let name = format!("{}-{i}", if publishes { "pub" } else { "sub" });
                        let (opts, tile) = if publishes {
                            (publisher_opts.clone(), None)
                        } else {
                            subscriber_opts(i)
                        };
                        joins.spawn(async move {
                            let start = Instant::now();
                            let p = SyntheticParticipant::join(&url, &room, &name, opts).await?;
                            let mut j = connected(p, start, connect_timeout).await?;
                            (j.tile, j.subscriber) = (tile, !publishes);
                            Ok(j)
                        });
                    }
                }
            }
            collect(&mut joins, &mut joined, &mut failed).await;
        }
        Target::Janus => {
            let base = janus_room_base(&args.room_prefix);
            let room_id = |r: u32| base + u64::from(r);
            let publisher_id = |r: u32, i: u32| u64::from(r) * 100_000 + u64::from(i) + 1;
            for r in 0..args.rooms {
                create_janus_room(&args.url, room_id(r), args.publishers.max(1) + 10)
                    .await
                    .context("creating the Janus room")?;
            }
            for r in 0..args.rooms {
                for i in 0..args.publishers {
                    pacer.wait().await;
                    let (url, opts) = (args.url.clone(), publisher_opts.clone());
                    let (room, id) = (room_id(r), publisher_id(r, i));
                    joins.spawn(async move {
                        let start = Instant::now();
                        let p = SyntheticParticipant::join_janus_publisher(&url, room, id, opts)
                            .await?;
                        connected(p, start, connect_timeout).await
                    });
                }
            }
            // Janus subscribes to feeds that exist: wait for every publisher first.
            collect(&mut joins, &mut joined, &mut failed).await;
            for r in 0..args.rooms {
                let feeds: Vec<u64> = (0..args.publishers).map(|i| publisher_id(r, i)).collect();
                // Each publisher receives the others on a subscriber handle of its own, like
                // a browser in a Janus meeting; then the receive-only subscribers.
                let receivers = (0..args.publishers)
                    .map(|i| (publisher_id(r, i), Some(publisher_id(r, i)), i))
                    .chain((0..args.subscribers).map(|i| (publisher_id(r, 50_000 + i), None, i)));
                for (id, own, i) in receivers {
                    let wanted: Vec<u64> =
                        feeds.iter().copied().filter(|f| Some(*f) != own).collect();
                    if wanted.is_empty() {
                        continue;
                    }
                    pacer.wait().await;
                    let (url, room) = (args.url.clone(), room_id(r));
                    let (opts, tile) = match own {
                        Some(_) => (receiver_opts.clone(), None),
                        None => subscriber_opts(i),
                    };
                    joins.spawn(async move {
                        let start = Instant::now();
                        let p = SyntheticParticipant::join_janus_subscriber(
                            &url, room, id, &wanted, opts,
                        )
                        .await?;
                        let mut j = connected(p, start, connect_timeout).await?;
                        (j.tile, j.subscriber) = (tile, own.is_none());
                        Ok(j)
                    });
                }
            }
            collect(&mut joins, &mut joined, &mut failed).await;
        }
    }
    if joined.is_empty() {
        bail!("no participant could join ({failed} failed)");
    }
    let mut join_ms = Histogram::default();
    for j in &joined {
        join_ms.record(j.join_ms);
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    let pid = args.pid.map(|p| p.to_string());
    let snapshot = |joined: &[Joined]| {
        let mut t = Totals::default();
        for j in joined {
            t.add(&j.participant.stats());
        }
        t
    };
    let server_cpu = |pid: &Option<String>| pid.as_deref().map(CpuTimes::of).transpose();
    let subscribers = |joined: &[Joined]| -> Vec<Stats> {
        joined
            .iter()
            .filter(|j| j.subscriber)
            .map(|j| j.participant.stats())
            .collect()
    };
    let (t0, totals0, server0, tool0, subs0) = (
        Instant::now(),
        snapshot(&joined),
        server_cpu(&pid)?,
        CpuTimes::of("self")?,
        subscribers(&joined),
    );
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let (t1, totals1, server1, tool1, subs1) = (
        Instant::now(),
        snapshot(&joined),
        server_cpu(&pid)?,
        CpuTimes::of("self")?,
        subscribers(&joined),
    );
    let tiles = joined.iter().filter(|j| j.subscriber).map(|j| j.tile);
    let subscriber_video = tiles
        .zip(subs0.iter().zip(&subs1))
        .map(|(tile, (a, b))| SubscriberVideo::between(tile, a, b, (t1 - t0).as_secs_f64()))
        .collect();
    let server = match (args.pid, server0, server1) {
        (Some(pid_n), Some(a), Some(b)) => Some(ServerUse {
            pid: pid_n,
            cpu: b.since(&a),
            rss_mib: rss_mib(&pid_n.to_string())?,
        }),
        _ => None,
    };
    let video_pps = match &simulcast {
        Some(layers) => layers.iter().map(Clip::packets_per_second).sum(),
        None => clip.as_ref().map_or(0.0, Clip::packets_per_second),
    };
    let per_publisher = video_pps + if args.audio { 50.0 } else { 0.0 };
    Ok(Report {
        config,
        receivers_per_publisher: u64::from(args.publishers.saturating_sub(1) + args.subscribers),
        nominal_sent_pps: per_publisher * f64::from(args.publishers * args.rooms),
        joined: joined.len(),
        failed,
        join_ms,
        window_s: (t1 - t0).as_secs_f64(),
        window: totals1.since(&totals0),
        server,
        tool_cpu: tool1.since(&tool0),
        subscriber_video,
    })
}

/// Waits until `p` has connected media; the join time runs from `start`.
async fn connected(
    p: SyntheticParticipant,
    start: Instant,
    timeout: Duration,
) -> Result<Joined, veche_load::Error> {
    let stats = p.wait_connected(timeout).await?;
    let at = stats.connected_at.unwrap_or_else(Instant::now);
    Ok(Joined {
        participant: p,
        join_ms: at.saturating_duration_since(start).as_millis() as u64,
        tile: None,
        subscriber: false,
    })
}

/// The lowest simulcast layer at least 90 % as wide and as tall as `tile` (the top one if
/// none is): what Veche's allocator picks for a tile when the link allows.
fn layer_for_tile(layers: &[Clip; SIMULCAST_LAYERS], (width, height): (u32, u32)) -> u8 {
    let covers = |c: &Clip| {
        u32::from(c.width()) * 10 >= width * 9 && u32::from(c.height()) * 10 >= height * 9
    };
    layers
        .iter()
        .position(covers)
        .unwrap_or(SIMULCAST_LAYERS - 1) as u8
}

async fn collect(
    joins: &mut JoinSet<Result<Joined, veche_load::Error>>,
    joined: &mut Vec<Joined>,
    failed: &mut usize,
) {
    while let Some(res) = joins.join_next().await {
        match res {
            Ok(Ok(j)) => joined.push(j),
            Ok(Err(e)) => {
                *failed += 1;
                tracing::warn!("join failed: {e}");
            }
            Err(e) => {
                *failed += 1;
                tracing::warn!("join task failed: {e}");
            }
        }
    }
}

/// Room numbers for Janus from the prefix, so successive runs against one Janus use fresh
/// rooms (publisher ids must be unique per room). FNV-1a, folded into 1..=90_000 × 1000.
fn janus_room_base(prefix: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % 90_000 + 1) * 1000
}

/// Spaces joins `1 / rate` seconds apart.
struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next.into()).await;
        self.next = self.next.max(Instant::now() - self.interval) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_asks_for_the_lowest_layer_that_covers_it() {
        let layers = Clip::builtin_simulcast();
        for (tile, layer) in [
            ((320, 180), 0),
            // 180 is 90 % of 200: still covered.
            ((300, 200), 0),
            ((400, 225), 1),
            ((1280, 720), 2),
            // Nothing covers it: the top layer.
            ((1920, 1080), 2),
        ] {
            assert_eq!(layer_for_tile(&layers, tile), layer, "tile {tile:?}");
        }
    }

    #[test]
    fn tiles_parse_as_width_x_height() {
        assert_eq!(parse_tile("1280x720"), Ok((1280, 720)));
        assert_eq!(parse_tile("320X180"), Ok((320, 180)));
        assert!(parse_tile("1280").is_err());
        assert!(parse_tile("0x720").is_err());
        assert!(parse_tile("16385x10").is_err());
    }
}

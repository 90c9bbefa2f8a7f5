//! Joins a Veche room as a receive-only participant and prints, as one JSON object, the first
//! RTP payloads of every remote track exactly as the SFU forwarded them (hex). With `--e2ee`
//! it claims to encrypt, as a browser in an end-to-end encrypted meeting does, and so sees what
//! the server and anyone it lets in would see (`e2e/e2ee-tap.test.mjs` looks for plaintext).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use veche_load::{ParticipantOptions, SyntheticParticipant};

#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Signalling URL, ws://HOST:PORT/ws.
    #[arg(long)]
    url: String,
    #[arg(long)]
    room: String,
    #[arg(long, default_value = "tap")]
    name: String,
    /// Say in `join` that this client encrypts end to end.
    #[arg(long)]
    e2ee: bool,
    /// Payloads to keep per remote track.
    #[arg(long, default_value_t = 200)]
    packets: usize,
    /// Seconds to listen once media is connected.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = veche_load::tool_runtime()?;
    runtime.block_on(async {
        let opts = ParticipantOptions {
            capture_payloads: args.packets,
            claim_e2ee: args.e2ee,
            ..ParticipantOptions::receive_only()
        };
        let tap = SyntheticParticipant::join(&args.url, &args.room, &args.name, opts)
            .await
            .context("join")?;
        tap.wait_connected(Duration::from_secs(20))
            .await
            .context("media did not connect")?;
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let stats = tap.stats();
        let tracks: Vec<serde_json::Value> = stats
            .captured
            .iter()
            .map(|((from, kind), packets)| {
                serde_json::json!({
                    "participant_id": from,
                    "kind": kind,
                    "packets": packets
                        .iter()
                        .map(|p| serde_json::json!({ "marker": p.marker, "payload": hex(&p.payload) }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "participant_id": tap.id(), "tracks": tracks })
        );
        anyhow::Ok(())
    })?;
    std::process::exit(0);
}

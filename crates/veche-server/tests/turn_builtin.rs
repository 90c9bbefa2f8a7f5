//! The built-in TURN server of the real binary, over real sockets: a participant's `joined`
//! carries turn:/turns: URLs with minted credentials; a TURN client Allocates with them over
//! UDP and over TLS, is refused with a wrong password and with an expired credential, is
//! granted a permission for Veche's media address and refused one (403) for another port of
//! the same IP, and data it sends there does not arrive. Past the per-user limit an
//! Allocate gets 508.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::net::UdpSocket;
use turn_server_proto::types::stun::message::MessageClass;

use crate::common::Server;
use crate::turn_client::{Client, ice_servers, mint, url_addr};

const SECRET: &str = "test-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_turn_relays_only_to_veche_with_minted_credentials() -> anyhow::Result<()> {
    let server = Server::start_with(&[
        "--media-shards",
        "1",
        "--turn-builtin",
        "true",
        "--turn-udp",
        "127.0.0.1:0",
        "--turn-tls",
        "127.0.0.1:0",
        "--turn-secret",
        SECRET,
        "--turn-max-allocations-per-user",
        "3",
    ])
    .await?;
    tokio::time::timeout(Duration::from_secs(60), async {
        let ice = ice_servers(&server).await?;
        let (expiry, id) = ice.username.split_once(':').context("username EXPIRY:ID")?;
        ensure!(
            expiry.parse::<u64>().is_ok() && id.parse::<u64>().is_ok(),
            "{ice:?}"
        );
        let udp = url_addr(&ice.urls, "turn:")?;
        let tls = url_addr(&ice.urls, "turns:")?;
        let media = SocketAddr::from(([127, 0, 0, 1], server.media_port));
        // Same IP as the media socket, a port Veche does not own.
        let bystander = UdpSocket::bind("127.0.0.1:0").await?;
        let not_veche = bystander.local_addr()?;

        // Wrong password, then an expired credential with the right password: refused.
        let mut wrong = Client::udp(udp, &ice.username, "not-the-password").await?;
        let reply = wrong.allocate().await?;
        ensure!(reply.code == Some(401), "wrong password: {reply:?}");
        let expired = "1000000000:7";
        let mut old = Client::udp(udp, expired, &mint(SECRET, expired)).await?;
        let reply = old.allocate().await?;
        ensure!(reply.code == Some(401), "expired credential: {reply:?}");

        // The minted credential: an allocation, on Veche's address.
        let mut client = Client::udp(udp, &ice.username, &ice.credential).await?;
        let reply = client.allocate().await?;
        ensure!(reply.class == MessageClass::Success, "allocate: {reply:?}");
        let relayed = reply.relayed.context("no relayed address")?;
        ensure!(relayed.ip() == media.ip(), "relayed {relayed}");

        // Veche's media address: granted; another port of the same IP: 403, for a
        // permission and for a channel.
        let reply = client.permission(media).await?;
        ensure!(
            reply.class == MessageClass::Success,
            "media permission: {reply:?}"
        );
        let reply = client.permission(not_veche).await?;
        ensure!(
            reply.code == Some(403),
            "permission for {not_veche}: {reply:?}"
        );
        let reply = client.channel_bind(not_veche, 0x4001).await?;
        ensure!(reply.code == Some(403), "channel to {not_veche}: {reply:?}");
        let reply = client.channel_bind(media, 0x4002).await?;
        ensure!(
            reply.class == MessageClass::Success,
            "media channel: {reply:?}"
        );
        // The IP has a permission (for the media port), but data to another port of it is
        // not relayed.
        client.send_indication(not_veche, b"let me through").await?;
        let mut buf = [0u8; 64];
        let leaked =
            tokio::time::timeout(Duration::from_millis(500), bystander.recv_from(&mut buf)).await;
        ensure!(leaked.is_err(), "the relay sent data to {not_veche}");

        // Over TLS, with the server's (self-signed) certificate: the same allocation works.
        let ca = server.data_dir().join("tls").join("self-signed-cert.pem");
        let mut secure = Client::tls(tls, &ca, &ice.username, &ice.credential).await?;
        let reply = secure.allocate().await?;
        ensure!(
            reply.class == MessageClass::Success,
            "allocate over TLS: {reply:?}"
        );
        let reply = secure.permission(media).await?;
        ensure!(
            reply.class == MessageClass::Success,
            "permission over TLS: {reply:?}"
        );
        let reply = secure.permission(not_veche).await?;
        ensure!(reply.code == Some(403), "permission over TLS: {reply:?}");

        // Two allocations so far under this credential, the limit is 3: one more, then 508.
        let mut third = Client::udp(udp, &ice.username, &ice.credential).await?;
        let reply = third.allocate().await?;
        ensure!(
            reply.class == MessageClass::Success,
            "third allocation: {reply:?}"
        );
        let mut fourth = Client::udp(udp, &ice.username, &ice.credential).await?;
        let reply = fourth.allocate().await?;
        ensure!(
            reply.code == Some(508),
            "past the per-user limit: {reply:?}"
        );
        anyhow::Ok(())
    })
    .await
    .context("the TURN test did not finish in 60 s")??;
    ensure!(
        server.log().contains("not one of Veche's media addresses"),
        "the refusals are logged"
    );
    server.pass();
    Ok(())
}

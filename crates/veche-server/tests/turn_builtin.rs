//! The built-in TURN server of the real binary, over real sockets: a participant's `joined`
//! carries turn:/turns: URLs with minted credentials; a TURN client Allocates with them over
//! UDP and over TLS, is refused with a wrong password and with an expired credential, is
//! granted a permission for Veche's media address and refused one (403) for another port of
//! the same IP, and data it sends there does not arrive. Past the per-user limit an
//! Allocate gets 508.

use crate::common;
use crate::peer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn_server_proto::types::attribute::{
    ChannelNumber, Data, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, SEND};
use turn_server_proto::types::stun::attribute::{ErrorCode, Nonce, Realm, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWriteVec, Method,
};
use turn_server_proto::types::stun::prelude::{MessageWrite, MessageWriteExt};
use veche_proto::{IceServer, ServerMessage};

use common::Server;
use peer::Peer;

const SECRET: &str = "test-secret-0123456789";
const WAIT: Duration = Duration::from_secs(5);

/// How a request reaches the TURN server: UDP datagrams, or frames on a TLS stream.
enum Link {
    Udp(UdpSocket),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, Vec<u8>),
}

/// A minimal TURN client: enough to Allocate, CreatePermission, ChannelBind and Send.
struct Client {
    link: Link,
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

/// What came back: the class, the error code if any, and the relayed address if any.
#[derive(Debug)]
struct Reply {
    class: MessageClass,
    code: Option<u16>,
    relayed: Option<SocketAddr>,
}

impl Client {
    async fn udp(server: SocketAddr, username: &str, password: &str) -> anyhow::Result<Client> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(server).await?;
        Ok(Client::new(Link::Udp(socket), username, password))
    }

    async fn tls(
        server: SocketAddr,
        ca: &std::path::Path,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Client> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(server).await?;
        let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
        let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .context("TLS handshake timed out")??;
        Ok(Client::new(
            Link::Tls(Box::new(tls), Vec::new()),
            username,
            password,
        ))
    }

    fn new(link: Link, username: &str, password: &str) -> Client {
        Client {
            link,
            username: username.into(),
            password: password.into(),
            realm: String::new(),
            nonce: String::new(),
        }
    }

    /// Builds a request (or indication); signed once realm and nonce are known.
    fn build(
        &self,
        method: Method,
        class: MessageClass,
        add: impl FnOnce(&mut MessageWriteVec),
    ) -> anyhow::Result<Vec<u8>> {
        use turn_server_proto::types::stun::message::{MessageType, TransactionId};
        let mut msg = Message::builder(
            MessageType::from_class_method(class, method),
            TransactionId::generate(),
            MessageWriteVec::new(),
        );
        add(&mut msg);
        if class == MessageClass::Request && !self.nonce.is_empty() {
            msg.add_attribute(&Username::new(&self.username)?)?;
            msg.add_attribute(&Realm::new(&self.realm)?)?;
            msg.add_attribute(&Nonce::new(&self.nonce)?)?;
            let key = LongTermKeyCredentials::new(
                self.username.clone(),
                self.password.clone(),
                self.realm.clone(),
            );
            msg.add_message_integrity(
                &MessageIntegrityCredentials::LongTerm(key),
                IntegrityAlgorithm::Sha1,
            )?;
        }
        msg.add_fingerprint()?;
        Ok(msg.finish())
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).await?;
            }
            Link::Tls(s, _) => s.write_all(bytes).await?,
        }
        Ok(())
    }

    /// The next STUN message from the server (skipping ChannelData and indications).
    async fn recv(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let frame = match &mut self.link {
                Link::Udp(s) => {
                    let mut buf = vec![0u8; 2048];
                    let n = tokio::time::timeout(WAIT, s.recv(&mut buf))
                        .await
                        .context("no TURN reply")??;
                    buf.truncate(n);
                    buf
                }
                Link::Tls(s, pending) => loop {
                    if pending.len() >= 20 && pending[0] >> 6 == 0 {
                        let len = 20 + usize::from(u16::from_be_bytes([pending[2], pending[3]]));
                        if pending.len() >= len {
                            let rest = pending.split_off(len);
                            break std::mem::replace(pending, rest);
                        }
                    } else if pending.len() >= 4 && pending[0] >> 6 == 1 {
                        let len = 4 + usize::from(u16::from_be_bytes([pending[2], pending[3]]));
                        let padded = len.next_multiple_of(4);
                        if pending.len() >= padded {
                            let rest = pending.split_off(padded);
                            break std::mem::replace(pending, rest);
                        }
                    }
                    let mut buf = [0u8; 4096];
                    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                        .await
                        .context("no TURN reply")??;
                    ensure!(n > 0, "TURN server closed the TLS connection");
                    pending.extend_from_slice(&buf[..n]);
                },
            };
            if Message::from_bytes(&frame).is_ok_and(|m| m.class() != MessageClass::Indication) {
                return Ok(frame);
            }
        }
    }

    /// Sends a request and reads its reply; a 401 that brings a nonce is answered once
    /// more with credentials, as a TURN client does.
    async fn request(
        &mut self,
        method: Method,
        add: impl Fn(&mut MessageWriteVec),
    ) -> anyhow::Result<Reply> {
        for _ in 0..2 {
            let bytes = self.build(method, MessageClass::Request, &add)?;
            self.send_raw(&bytes).await?;
            let data = self.recv().await?;
            let msg = Message::from_bytes(&data).context("unparsable TURN reply")?;
            let code = msg.attribute::<ErrorCode>().ok().map(|e| e.code());
            let first_challenge = code == Some(401) && self.nonce.is_empty();
            if first_challenge {
                self.realm = msg.attribute::<Realm>()?.realm().to_owned();
                self.nonce = msg.attribute::<Nonce>()?.nonce().to_owned();
                continue;
            }
            let relayed = msg
                .attribute::<XorRelayedAddress>()
                .ok()
                .map(|a| a.addr(msg.transaction_id()));
            return Ok(Reply {
                class: msg.class(),
                code,
                relayed,
            });
        }
        bail!("the TURN server asked for credentials twice")
    }

    async fn allocate(&mut self) -> anyhow::Result<Reply> {
        self.request(ALLOCATE, |m| {
            m.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
                .unwrap();
        })
        .await
    }

    async fn permission(&mut self, peer: SocketAddr) -> anyhow::Result<Reply> {
        self.request(CREATE_PERMISSION, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        })
        .await
    }

    async fn channel_bind(&mut self, peer: SocketAddr, channel: u16) -> anyhow::Result<Reply> {
        self.request(CHANNEL_BIND, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&ChannelNumber::new(channel)).unwrap();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        })
        .await
    }

    async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> anyhow::Result<()> {
        let bytes = self.build(SEND, MessageClass::Indication, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
            m.add_attribute(&Data::new(data)).unwrap();
        })?;
        self.send_raw(&bytes).await
    }
}

/// The participant's TURN servers from `joined`.
async fn ice_servers(server: &Server) -> anyhow::Result<IceServer> {
    let mut peer = Peer::connect(server, None).await?;
    peer.join("turn-room", "Relayed", None).await?;
    match peer
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined { ice_servers, .. } => ice_servers
            .into_iter()
            .next()
            .context("no TURN server in joined"),
        _ => unreachable!("matched above"),
    }
}

/// `turn:127.0.0.1:PORT?transport=udp` → its address.
fn url_addr(urls: &[String], scheme: &str) -> anyhow::Result<SocketAddr> {
    let url = urls
        .iter()
        .find(|u| u.starts_with(scheme))
        .with_context(|| format!("no {scheme} URL in {urls:?}"))?;
    let rest = &url[scheme.len()..];
    let host_port = rest.split('?').next().unwrap_or(rest);
    Ok(host_port.parse()?)
}

/// A credential minted with the server's secret, as `turn.rs` does.
fn mint(username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

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
        let mut old = Client::udp(udp, expired, &mint(expired)).await?;
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

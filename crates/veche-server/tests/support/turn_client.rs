//! A minimal TURN client over real sockets (UDP, or TLS over TCP), for the tests of the
//! built-in TURN server, and how those tests find its URLs and mint its credentials.

// Each test uses a different subset of these helpers.
#![allow(dead_code)]

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

use crate::common::Server;
use crate::peer::Peer;

/// How long a reply may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// How a request reaches the TURN server: UDP datagrams, or frames on a TLS stream.
pub(crate) enum Link {
    Udp(UdpSocket),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, Vec<u8>),
}

/// A minimal TURN client: enough to Allocate, CreatePermission, ChannelBind and Send.
pub(crate) struct Client {
    link: Link,
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

/// What came back: the class, the error code if any, and the relayed address if any.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) class: MessageClass,
    pub(crate) code: Option<u16>,
    pub(crate) relayed: Option<SocketAddr>,
    /// The server answered 438 (Stale Nonce) first, and the request was sent again with the
    /// new nonce.
    pub(crate) stale_nonce: bool,
}

impl Client {
    pub(crate) async fn udp(
        server: SocketAddr,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Client> {
        Client::udp_from(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            server,
            username,
            password,
        )
        .await
    }

    /// Over UDP from `local` (on Linux every 127.x.y.z is a loopback address).
    pub(crate) async fn udp_from(
        local: SocketAddr,
        server: SocketAddr,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Client> {
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        Ok(Client::new(Link::Udp(socket), username, password))
    }

    pub(crate) async fn tls(
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

    /// The nonce the server last gave this client (empty before the first 401).
    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
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
    pub(crate) fn build(
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

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).await?;
            }
            Link::Tls(s, _) => s.write_all(bytes).await?,
        }
        Ok(())
    }

    /// The next STUN message from the server (skipping ChannelData and indications).
    pub(crate) async fn recv(&mut self) -> anyhow::Result<Vec<u8>> {
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

    /// Sends a request and reads its reply; a 401 that brings the first nonce, and a 438
    /// (Stale Nonce) that brings a new one, are answered once more with credentials, as a TURN
    /// client does (a few 438 in a row: under a flood the new nonce may be evicted too).
    pub(crate) async fn request(
        &mut self,
        method: Method,
        add: impl Fn(&mut MessageWriteVec),
    ) -> anyhow::Result<Reply> {
        let mut stale_nonce = false;
        for _ in 0..6 {
            let bytes = self.build(method, MessageClass::Request, &add)?;
            self.send_raw(&bytes).await?;
            let data = self.recv().await?;
            let msg = Message::from_bytes(&data).context("unparsable TURN reply")?;
            let code = msg.attribute::<ErrorCode>().ok().map(|e| e.code());
            let first_challenge = code == Some(401) && self.nonce.is_empty();
            let stale = code == Some(438);
            if first_challenge || stale {
                stale_nonce |= stale;
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
                stale_nonce,
            });
        }
        bail!("the TURN server asked for credentials again and again")
    }

    pub(crate) async fn allocate(&mut self) -> anyhow::Result<Reply> {
        self.request(ALLOCATE, |m| {
            m.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
                .unwrap();
        })
        .await
    }

    pub(crate) async fn permission(&mut self, peer: SocketAddr) -> anyhow::Result<Reply> {
        self.request(CREATE_PERMISSION, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        })
        .await
    }

    pub(crate) async fn channel_bind(
        &mut self,
        peer: SocketAddr,
        channel: u16,
    ) -> anyhow::Result<Reply> {
        self.request(CHANNEL_BIND, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&ChannelNumber::new(channel)).unwrap();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        })
        .await
    }

    pub(crate) async fn send_indication(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let bytes = self.build(SEND, MessageClass::Indication, |m| {
            let tid = m.transaction_id();
            m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
            m.add_attribute(&Data::new(data)).unwrap();
        })?;
        self.send_raw(&bytes).await
    }
}

/// The participant's TURN servers from `joined`.
pub(crate) async fn ice_servers(server: &Server) -> anyhow::Result<IceServer> {
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
pub(crate) fn url_addr(urls: &[String], scheme: &str) -> anyhow::Result<SocketAddr> {
    let url = urls
        .iter()
        .find(|u| u.starts_with(scheme))
        .with_context(|| format!("no {scheme} URL in {urls:?}"))?;
    let rest = &url[scheme.len()..];
    let host_port = rest.split('?').next().unwrap_or(rest);
    Ok(host_port.parse()?)
}

/// A credential minted with the server's secret, as `turn.rs` does.
pub(crate) fn mint(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

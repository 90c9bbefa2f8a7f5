//! Media over ICE-TCP (RFC 6544, active side) for a synthetic participant: one TCP
//! connection to the server's passive candidate, carrying RFC 4571 frames (each packet after
//! its 16-bit big-endian length).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

pub(crate) struct TcpLink {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read and not yet handed out as frames.
    pending: Vec<u8>,
    chunk: Box<[u8; READ_CHUNK]>,
}

impl TcpLink {
    pub(crate) async fn connect(peer: SocketAddr) -> std::io::Result<TcpLink> {
        let stream = TcpStream::connect(peer).await?;
        stream.set_nodelay(true)?;
        Ok(TcpLink {
            stream,
            peer,
            pending: Vec::with_capacity(READ_CHUNK),
            chunk: Box::new([0; READ_CHUNK]),
        })
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `payload` as one frame.
    pub(crate) async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(payload.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
        let mut frame = Vec::with_capacity(2 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await
    }

    /// The next frame, or `None` once the server has closed the connection. Cancel-safe:
    /// what was read stays in `pending`.
    pub(crate) async fn recv(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.pending.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.pending[0], self.pending[1]]));
                if self.pending.len() >= 2 + len {
                    return Ok(Some(self.pending.drain(..2 + len).skip(2).collect()));
                }
            }
            // Reading into `chunk` leaves `pending` whole if this future is dropped.
            match self.stream.read(&mut self.chunk[..]).await? {
                0 => return Ok(None),
                n => self.pending.extend_from_slice(&self.chunk[..n]),
            }
        }
    }
}

//! One device's byte stream: a read buffer in front of it, [`Connection::read_packet`] and
//! [`Connection::write_packet`]. The only code that touches the socket.
//!
//! Generic over the stream so TLS slots in without changes here: `server` hands a plain
//! `TcpStream` today and will hand a `tokio_rustls::server::TlsStream<TcpStream>` once the TLS
//! acceptor wraps it (see `server::serve_stream`). Does not own what packets mean (the session).
//!
//! Reading follows mini-redis: [`codec::check`] on the buffered bytes first, so a partial or an
//! oversized frame costs no allocation, then [`codec::parse`] over the frame split off the buffer
//! (zero-copy: a PUBLISH payload is a slice of it). `read_packet` is cancel-safe: the only await
//! is `read_buf`, which loses nothing when its future is dropped, so the session may `select!`
//! over it.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, EncodeError, FrameError, Packet, ProtocolError};

/// Initial read buffer: CONNECT, PINGREQ and typical telemetry fit; it grows only for larger
/// frames (up to the maximum packet size), which matters at 10,000 idle connections.
const INITIAL_READ_CAPACITY: usize = 1024;

/// Why a connection cannot go on. Every variant closes this connection only.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("socket error")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream in the middle of a frame.
    #[error("connection reset by peer inside a frame")]
    ResetInsideFrame,
    #[error("frame of {declared} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { declared: usize, max: usize },
    #[error("malformed packet")]
    Protocol(#[from] ProtocolError),
    #[error("packet cannot be encoded")]
    Encode(#[from] EncodeError),
}

/// A stream with its read and write buffers.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    max_packet_size: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet_size: usize) -> Connection<S> {
        Connection {
            stream,
            read_buffer: BytesMut::with_capacity(INITIAL_READ_CAPACITY),
            write_buffer: BytesMut::new(),
            max_packet_size,
        }
    }

    /// The next packet; `Ok(None)` when the peer closed the stream between packets.
    pub async fn read_packet(&mut self) -> Result<Option<Packet>, ConnectionError> {
        loop {
            if let Some(packet) = self.buffered_packet()? {
                return Ok(Some(packet));
            }
            if self.stream.read_buf(&mut self.read_buffer).await? == 0 {
                return if self.read_buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::ResetInsideFrame)
                };
            }
        }
    }

    /// The next packet if the read buffer already holds all of it; never touches the socket.
    /// A peer that sends several packets in one segment has them all served before the next
    /// read.
    pub fn buffered_packet(&mut self) -> Result<Option<Packet>, ConnectionError> {
        match codec::check(&self.read_buffer, self.max_packet_size) {
            Ok(frame_length) => {
                let frame = self.read_buffer.split_to(frame_length).freeze();
                Ok(Some(codec::parse(frame)?))
            }
            Err(FrameError::Incomplete) => Ok(None),
            Err(FrameError::Invalid(err)) => Err(err.into()),
            Err(FrameError::TooLarge { declared, max }) => {
                Err(ConnectionError::TooLarge { declared, max })
            }
        }
    }

    /// Encodes `packet` and writes it out, flushed (with anything [`Connection::queue`]d).
    pub async fn write_packet(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        self.queue(packet)?;
        self.flush_queued().await
    }

    /// Encodes `packet` behind what is queued, to go out with the next flush: PUBACKs settled
    /// together leave in one write (one syscall, one TLS record) instead of one each.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnectionError> {
        codec::encode(packet, &mut self.write_buffer)?;
        Ok(())
    }

    /// Writes out and flushes everything queued.
    pub async fn flush_queued(&mut self) -> Result<(), ConnectionError> {
        let written = async {
            self.stream.write_all(&self.write_buffer).await?;
            self.stream.flush().await
        }
        .await;
        self.write_buffer.clear();
        // Outgoing packets are small (acks, CONNACK); do not keep a large buffer per connection.
        if self.write_buffer.capacity() > INITIAL_READ_CAPACITY {
            self.write_buffer = BytesMut::new();
        }
        Ok(written?)
    }

    /// Closes the write side so the peer sees end of stream.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

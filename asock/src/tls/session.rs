//! A TLS session over a connected stream socket: the [`Source`] the byte channels use.
//!
//! rustls does the protocol; this file moves its records to and from the socket with
//! non-blocking I/O. One mutex guards the rustls connection: the read and write channels may
//! be driven by different tasks, and each holds the lock only for a few non-blocking calls.
//!
//! Wakers: reading plaintext waits only on the socket's read readiness and writing only on its
//! write readiness, so a reader and a writer in different tasks never steal each other's waker.
//! The few bytes a reader must send (an alert, a TLS 1.3 key-update answer) go out with one
//! non-blocking send that registers no waker, and otherwise wait in rustls for the next write
//! or flush.

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::{map_rustls_error, tls_io_error, TlsVersion};
use crate::channel::Source;
use crate::error::{Error, Result, TlsReason};
use crate::selector::Handle;
use crate::sockets::StreamShared;

/// Socket I/O for rustls: the stream's non-blocking read, `Pending` as `WouldBlock`.
struct TcpReader<'a, 'b> {
    tcp: &'a StreamShared,
    cx: &'a mut Context<'b>,
    /// Set when a read returned fewer bytes than asked: the socket has nothing more now.
    drained: &'a mut bool,
}

impl Read for TcpReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tcp.poll_read(self.cx, buf) {
            Poll::Ready(r) => {
                *self.drained = matches!(r, Ok(n) if n < buf.len());
                r
            }
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Socket I/O for rustls: vectored non-blocking writes, `Pending` as `WouldBlock`.
struct TcpWriter<'a, 'b> {
    tcp: &'a StreamShared,
    /// `None`: try once without registering a waker.
    cx: Option<&'a mut Context<'b>>,
}

impl Write for TcpWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.cx.as_deref_mut() {
            Some(cx) => match self.tcp.poll_write_vectored(cx, bufs) {
                Poll::Ready(r) => r,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            },
            None => self.tcp.try_write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct State {
    conn: rustls::Connection,
    /// The first fatal error; every later call returns it again.
    error: Option<(TlsReason, String, rustls::Error)>,
    close_notify_sent: bool,
    /// The last socket read returned fewer bytes than asked: nothing more is there now.
    drained: bool,
    /// Decrypted bytes rustls holds for `reader()` (its count after the last
    /// `process_new_packets`, less what was read since), so that a read asks rustls only when
    /// it has something: an empty `reader().read` costs a `WouldBlock` error each time.
    plaintext: usize,
    /// The peer sent close_notify or the socket reached its end: `reader()` says which, once
    /// the plaintext is read.
    ended: bool,
    /// Bytes that arrived before TLS started (read ahead by a plain channel), fed first.
    early: Vec<u8>,
    early_pos: usize,
}

impl State {
    fn fail(&mut self, e: &rustls::Error) -> io::Error {
        let (reason, detail) = map_rustls_error(e);
        self.error = Some((reason, detail.clone(), e.clone()));
        tls_io_error(reason, detail, Some(e.clone()))
    }

    fn stored_error(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|(r, d, e)| tls_io_error(*r, d.clone(), Some(e.clone())))
    }
}

/// A TLS session over a stream socket.
pub(crate) struct TlsSession {
    tcp: Arc<StreamShared>,
    state: Mutex<State>,
}

/// What the handshake settled, kept so that reading it takes no lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeInfo {
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) version: Option<TlsVersion>,
    pub(crate) suite: Option<rustls::CipherSuite>,
    pub(crate) peer_certs: Vec<CertificateDer<'static>>,
    pub(crate) server_name: Option<String>,
    pub(crate) resumed: bool,
}

impl TlsSession {
    pub(crate) fn new(tcp: Arc<StreamShared>, conn: rustls::Connection, early: Vec<u8>) -> Self {
        TlsSession {
            tcp,
            state: Mutex::new(State {
                conn,
                error: None,
                close_notify_sent: false,
                drained: false,
                plaintext: 0,
                ended: false,
                early,
                early_pos: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes out what rustls has queued; `Pending` when the socket is full.
    fn poll_write_tls(&self, st: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while st.conn.wants_write() {
            let mut w = TcpWriter {
                tcp: &self.tcp,
                cx: Some(cx),
            };
            match st.conn.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what rustls has queued if the socket takes it now; never waits.
    fn write_tls_now(&self, st: &mut State) {
        while st.conn.wants_write() {
            let mut w = TcpWriter {
                tcp: &self.tcp,
                cx: None,
            };
            match st.conn.write_tls(&mut w) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Reads one batch of TLS bytes and processes them. `Ok(false)`: the socket is at end of
    /// stream (rustls has been told).
    fn poll_read_tls(&self, st: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let n = if st.early_pos < st.early.len() {
            let mut rest = &st.early[st.early_pos..];
            let r = st.conn.read_tls(&mut rest);
            if let Ok(n) = r {
                st.early_pos += n;
                if st.early_pos == st.early.len() {
                    st.early = Vec::new();
                    st.early_pos = 0;
                }
            }
            r
        } else {
            st.conn.read_tls(&mut TcpReader {
                tcp: &self.tcp,
                cx,
                drained: &mut st.drained,
            })
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match st.conn.process_new_packets() {
            Ok(io) => {
                st.plaintext = io.plaintext_bytes_to_read();
                st.ended |= n == 0 || io.peer_has_closed();
            }
            Err(e) => {
                let err = st.fail(&e);
                // Tell the peer why (the alert rustls queued), if the socket takes it now.
                self.write_tls_now(st);
                return Poll::Ready(Err(err));
            }
        }
        if st.conn.wants_write() && !st.conn.is_handshaking() {
            self.write_tls_now(st);
        }
        Poll::Ready(Ok(n > 0))
    }

    /// Drives the handshake to its end.
    pub(crate) fn poll_handshake(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut st = self.lock();
        loop {
            if let Some(e) = st.stored_error() {
                return Poll::Ready(Err(Error::io("TLS handshake", e)));
            }
            ready!(self.poll_write_tls(&mut st, cx)).map_err(|e| Error::io("TLS handshake", e))?;
            if !st.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.poll_read_tls(&mut st, cx)) {
                Ok(true) => {}
                Ok(false) => {
                    if st.conn.is_handshaking() {
                        return Poll::Ready(Err(Error::tls(
                            TlsReason::HandshakeEof,
                            "the peer closed the connection before the handshake finished",
                        )));
                    }
                }
                Err(e) => return Poll::Ready(Err(Error::io("TLS handshake", e))),
            }
        }
    }

    /// What the handshake settled.
    pub(crate) fn info(&self) -> HandshakeInfo {
        let st = self.lock();
        let c = &st.conn;
        HandshakeInfo {
            alpn: c.alpn_protocol().map(<[u8]>::to_vec),
            version: c.protocol_version().and_then(TlsVersion::from_rustls),
            suite: c.negotiated_cipher_suite().map(|s| s.suite()),
            peer_certs: c.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
            server_name: match c {
                rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
                rustls::Connection::Client(_) => None,
            },
            resumed: c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    /// Queues close_notify and sends it if the socket takes it now (for `close`).
    pub(crate) fn close_now(&self) {
        let mut st = self.lock();
        if !st.close_notify_sent {
            st.close_notify_sent = true;
            st.conn.send_close_notify();
        }
        self.write_tls_now(&mut st);
    }
}

impl Source for TlsSession {
    /// Decrypted bytes: as many as `buf` holds and the socket has now, across records, so a
    /// bulk stream moves up to the channel's 64 KiB per call (one record is at most 16 KiB),
    /// and its echo goes out as one vectored write of several records. Waits only when no byte
    /// is ready at all; once a socket read came back short (drained), the bytes in hand are
    /// returned without asking the socket again.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.lock();
        let mut filled = 0;
        loop {
            if st.plaintext > 0 || st.ended {
                match st.conn.reader().read(&mut buf[filled..]) {
                    // 0: the peer sent close_notify, a clean end of stream (after what was read).
                    Ok(0) => return Poll::Ready(Ok(filled)),
                    Ok(n) => {
                        st.plaintext = st.plaintext.saturating_sub(n);
                        filled += n;
                        if filled == buf.len() {
                            return Poll::Ready(Ok(filled));
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The end (and errors below) come after the bytes already read.
                    Err(_) if filled > 0 => return Poll::Ready(Ok(filled)),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Poll::Ready(Err(tls_io_error(
                            TlsReason::Truncated,
                            "the peer closed the TCP connection without sending close_notify"
                                .into(),
                            None,
                        )));
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            // Nothing decrypted is left: the bytes in hand go when the socket has no more.
            if filled > 0 && st.drained {
                return Poll::Ready(Ok(filled));
            }
            if let Some(e) = st.stored_error() {
                return Poll::Ready(if filled > 0 { Ok(filled) } else { Err(e) });
            }
            match self.poll_read_tls(&mut st, cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) | Poll::Pending if filled > 0 => {
                    return Poll::Ready(Ok(filled))
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.lock();
        if let Some(e) = st.stored_error() {
            return Poll::Ready(Err(e));
        }
        if st.close_notify_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                Error::Closed("TLS write half"),
            )));
        }
        loop {
            let n = st.conn.writer().write(buf)?;
            if n > 0 || buf.is_empty() {
                // Push records out now if the socket takes them; a later write or flush sends
                // the rest.
                if let Poll::Ready(Err(e)) = self.poll_write_tls(&mut st, cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            // rustls's send buffer is full: make room first.
            ready!(self.poll_write_tls(&mut st, cx))?;
        }
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        self.poll_write_tls(&mut st, cx)
    }

    fn poll_shutdown_write(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.lock();
            if !st.close_notify_sent {
                st.close_notify_sent = true;
                st.conn.send_close_notify();
            }
            match self.poll_write_tls(&mut st, cx) {
                Poll::Ready(Ok(())) => {}
                // Failing to send close_notify to a peer that is gone still ends the write half.
                Poll::Ready(Err(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        self.tcp.poll_shutdown_write(cx)
    }

    fn timeout(&self) -> Option<Duration> {
        self.tcp.timeout()
    }

    fn is_closed(&self) -> bool {
        self.tcp.is_closed()
    }

    fn close(&self) {
        self.tcp.close();
    }

    fn manager(&self) -> Option<&Handle> {
        self.tcp.manager()
    }

    fn read_finished(&self, at_end: bool) {
        // At the end means the peer's close_notify (or the socket's end) was read.
        self.tcp.read_finished(at_end);
    }

    fn write_finished(&self) {
        self.tcp.write_finished();
    }
}

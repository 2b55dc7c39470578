//! The state every handle of one datagram socket shares: the socket's [`IoSource`], its
//! addresses and timeout, the checks a datagram passes before any system call, and the mapping
//! of OS errors to [`Error`]s.
//!
//! The socket types, their [`DatagramSender`](super::DatagramSender)s and their
//! [`Incoming`](super::Incoming) streams each hold an `Arc<Shared>`.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use socket2::Socket as RawSocket;

use super::batch::DatagramBatch;
use super::outgoing::TxState;
use super::receive::ReceiveBatch;
use super::Datagram;
use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::selector::registration::{ready, Direction};
use crate::selector::source::IoSource;
use crate::selector::Handle;
use crate::sockets::unix::PathGuard;
use crate::sockets::{to_sockaddr, SocketOptions};
use crate::sys::{self, Outgoing};
use crate::time::WaitTimer;
use crate::util::duration_ns;

/// State shared by a datagram socket, its senders and its incoming stream.
pub(super) struct Shared {
    pub(super) io: IoSource<RawSocket>,
    pub(super) local: SocketAddress,
    pub(super) remote: Option<SocketAddress>,
    broadcast: AtomicBool,
    timeout_ns: AtomicU64,
    /// Batches go out as UDP GSO sends: supported here, asked for, and no `EIO` seen yet.
    pub(super) gso: AtomicBool,
    /// Datagrams taken from the kernel and not yet handed out.
    pub(super) rx: Mutex<ReceiveBatch>,
    /// What the outgoing queue shares with its senders.
    pub(super) tx: TxState,
    path: Option<PathGuard>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        raw: RawSocket,
        handle: &Handle,
        local: SocketAddress,
        remote: Option<SocketAddress>,
        options: &SocketOptions,
        batch: usize,
        outgoing_capacity: usize,
        gso: bool,
        path: Option<PathGuard>,
    ) -> Shared {
        Shared {
            gso: AtomicBool::new(gso),
            io: IoSource::new(raw, handle, ready::ALL),
            local,
            remote,
            broadcast: AtomicBool::new(options.broadcast),
            timeout_ns: AtomicU64::new(options.socket_timeout.map_or(0, duration_ns)),
            rx: Mutex::new(ReceiveBatch::new(batch)),
            tx: TxState::new(outgoing_capacity),
            path,
        }
    }

    pub(super) fn timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    pub(super) fn set_timeout(&self, timeout: Option<Duration>) {
        self.timeout_ns
            .store(timeout.map_or(0, duration_ns), Ordering::Relaxed);
    }

    pub(super) fn broadcast(&self) -> bool {
        self.broadcast.load(Ordering::Relaxed)
    }

    pub(super) fn set_broadcast(&self, on: bool) -> Result<()> {
        self.raw()
            .set_broadcast(on)
            .map_err(|e| Error::io("set broadcast", e))?;
        self.broadcast.store(on, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn raw(&self) -> &RawSocket {
        self.io.get_ref()
    }

    pub(super) fn is_ipv6(&self) -> bool {
        crate::sockets::os::is_ipv6(&self.local)
    }

    /// Checks a datagram before any system call: size, destination, broadcast.
    pub(super) fn prepare(&self, d: Datagram) -> Result<(Outgoing, SocketAddress)> {
        let limit = Datagram::max_payload(&d.address);
        if d.packet.len() > limit {
            return Err(Error::DatagramTooLarge {
                size: d.packet.len(),
                limit,
            });
        }
        if self.io.is_closed() {
            return Err(Error::Closed("socket"));
        }
        if let Some(remote) = &self.remote {
            if &d.address != remote {
                return Err(Error::WrongDestination {
                    to: d.address,
                    connected: remote.clone(),
                });
            }
            let out = Outgoing {
                data: d.packet,
                addr: None,
                segment: None,
            };
            return Ok((out, d.address));
        }
        if let SocketAddress::Inet(SocketAddr::V4(a)) = &d.address {
            if a.ip().is_broadcast() && !self.broadcast() {
                return Err(Error::BroadcastNotEnabled { addr: d.address });
            }
        }
        let sa = to_sockaddr(&d.address).map_err(|e| Error::io("send", e))?;
        let out = Outgoing {
            data: d.packet,
            addr: Some(sa),
            segment: None,
        };
        Ok((out, d.address))
    }

    pub(super) fn send_error(&self, e: io::Error, to: &SocketAddress, size: usize) -> Error {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Error::ConnectionRefused {
                addr: to.clone(),
                source: e,
            },
            Some(libc::EACCES) if to.as_inet().is_some() => {
                Error::BroadcastNotEnabled { addr: to.clone() }
            }
            Some(libc::EMSGSIZE) => Error::DatagramTooLarge {
                size,
                limit: Datagram::max_payload(to),
            },
            Some(libc::ENOENT) if to.as_unix().is_some() => Error::ConnectionRefused {
                addr: to.clone(),
                source: e,
            },
            _ => Error::io("send", e),
        }
    }

    pub(super) fn receive_error(&self, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Error::ConnectionRefused {
                addr: self.remote.clone().unwrap_or_else(|| self.local.clone()),
                source: e,
            },
            _ => Error::io("receive", e),
        }
    }

    fn poll_send_one(
        &self,
        cx: &mut Context<'_>,
        out: &Outgoing,
        to: &SocketAddress,
    ) -> Poll<Result<()>> {
        self.io
            .poll_io(cx, Direction::Write, |s| sys::send_one(s, out), |_| false)
            .map(|r| {
                r.map(|_| ())
                    .map_err(|e| self.send_error(e, to, out.data.len()))
            })
    }

    /// Runs `op` until it is ready, failing with [`Error::Timeout`] once it has waited for the
    /// socket timeout in all (the clock runs only while it waits).
    async fn with_timeout<T>(
        &self,
        mut op: impl FnMut(&mut Context<'_>) -> Poll<Result<T>>,
    ) -> Result<T> {
        let mut timer = WaitTimer::default();
        poll_fn(|cx| match op(cx) {
            Poll::Pending => match timer.poll_expired(cx, self.timeout(), Some(self.io.handle())) {
                Poll::Ready(()) => Poll::Ready(Err(Error::Timeout)),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        })
        .await
    }

    pub(super) async fn receive(&self) -> Result<Datagram> {
        self.with_timeout(|cx| self.poll_receive(cx)).await
    }

    pub(super) async fn receive_batch(&self) -> Result<DatagramBatch> {
        self.with_timeout(|cx| self.poll_receive_batch(cx)).await
    }

    pub(super) async fn send(&self, d: Datagram) -> Result<()> {
        let (out, to) = self.prepare(d)?;
        self.with_timeout(|cx| self.poll_send_one(cx, &out, &to))
            .await
    }

    /// Checks a send of datagrams of `segment` bytes to `to` before any system call: the
    /// segment size (not 0, within [`Datagram::max_payload`]) and the destination (as
    /// [`prepare`](Self::prepare)). Returns the destination and how many datagrams one GSO
    /// message may carry.
    pub(super) fn prepare_segments(
        &self,
        to: SocketAddress,
        segment: usize,
    ) -> Result<(Outgoing, SocketAddress, usize)> {
        let limit = Datagram::max_payload(&to);
        if segment == 0 || segment > limit {
            return Err(Error::DatagramTooLarge {
                size: segment,
                limit,
            });
        }
        let (dest, to) = self.prepare(Datagram::new(Bytes::new(), to))?;
        Ok((dest, to, (limit / segment).clamp(1, sys::MAX_GSO_SEGMENTS)))
    }

    /// Sends `buffer` to `to` as datagrams of `segment` bytes (the last possibly shorter): one
    /// GSO send per up to 64 of them while GSO is on, else batched plain sends. A GSO send that
    /// fails with `EIO` (a device that cannot offload) turns GSO off for this socket and the
    /// batch goes out the plain way. Returns how many datagrams were sent.
    pub(super) async fn send_segments(
        &self,
        to: SocketAddress,
        segment: usize,
        buffer: Bytes,
    ) -> Result<usize> {
        let (dest, to, per_send) = self.prepare_segments(to, segment)?;
        let mut sent = 0;
        for chunk in pieces(&buffer, per_send * segment) {
            let count = chunk.len().div_ceil(segment).max(1);
            if count > 1 && self.gso.load(Ordering::Relaxed) {
                let r = self
                    .with_timeout(|cx| {
                        self.io
                            .poll_io(
                                cx,
                                Direction::Write,
                                |s| sys::send_segments(s, &chunk, segment, dest.addr.as_ref()),
                                |_| false,
                            )
                            .map_err(|e| match e.raw_os_error() {
                                Some(libc::EIO) => Error::Io {
                                    op: "GSO send",
                                    source: e,
                                },
                                _ => self.send_error(e, &to, chunk.len()),
                            })
                    })
                    .await;
                match r {
                    Ok(_) => {
                        sent += count;
                        continue;
                    }
                    Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EIO) => {
                        self.gso.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
            let msgs: Vec<Outgoing> = pieces(&chunk, segment)
                .map(|data| Outgoing {
                    data,
                    addr: dest.addr.clone(),
                    segment: None,
                })
                .collect();
            let mut done = 0;
            while done < msgs.len() {
                let rest = &msgs[done..];
                let n = self
                    .with_timeout(|cx| {
                        self.io
                            .poll_io(
                                cx,
                                Direction::Write,
                                |s| sys::send_batch(s, rest),
                                |_| false,
                            )
                            .map_err(|e| self.send_error(e, &to, rest[0].data.len()))
                    })
                    .await?;
                done += n.max(1);
            }
            sent += count;
        }
        Ok(sent)
    }

    /// Closes the socket now (see [`IoSource::close`]): every wait ends with `Error::Closed`,
    /// and a Unix socket file is removed.
    pub(super) fn close(&self) {
        self.io.close();
        if let Some(p) = &self.path {
            p.remove();
        }
    }
}

/// `buffer` in pieces of `size` bytes (the last possibly shorter; an empty buffer is one empty
/// piece): slices, no copies.
pub(super) fn pieces(buffer: &Bytes, size: usize) -> impl Iterator<Item = Bytes> + '_ {
    let size = size.max(1);
    (0..buffer.len().max(1))
        .step_by(size)
        .map(move |at| buffer.slice(at..(at + size).min(buffer.len())))
}

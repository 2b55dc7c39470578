//! The receive batch: datagrams one system call took from the kernel (`recvmmsg` on Linux) and
//! not yet handed out, shared by every task receiving on the socket.
//!
//! A receive takes the next queued datagram when there is one, else a new batch from the
//! kernel. Waiting is the registration's alone: a receiver waits only after finding both the
//! queue and the kernel empty, and the readiness edge that ends the wait wakes every waiting
//! receiver; whichever runs first takes the batch and the others find the rest queued. So with
//! one receiver busy, the others take what it left.
//!
//! Each entry of the queue is what one kernel buffer held: a single datagram, or with GRO a
//! coalesced run from one sender, kept whole and cut into `Bytes` slices only as `receive`
//! hands its datagrams out (`receive_batch` takes the rest of it at once).
//!
//! Each datagram (or batch) handed out spends one unit of the task's cooperative budget (`coop`), so a
//! busy socket yields its loop like any other source.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::batch::DatagramBatch;
use super::shared::Shared;
use super::Datagram;
use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::selector::coop;
use crate::selector::registration::Direction;
use crate::sockets::from_sockaddr;
use crate::sys::{self, Received, SLOT};
use crate::util::lock;

/// Datagrams taken from the kernel and not yet handed out, and the buffers they came through.
pub(super) struct ReceiveBatch {
    /// One entry per kernel buffer: a GRO-coalesced run of datagrams from one sender, or one
    /// datagram; `receive` takes datagrams off the front one, `receive_batch` the whole of it.
    queue: VecDeque<Result<DatagramBatch>>,
    /// `slots` receive buffers of [`SLOT`] bytes (allocated on first use, never zeroed): the
    /// kernel writes into them directly.
    bufs: Vec<BytesMut>,
    meta: Vec<Received>,
    /// Datagrams one system call may take.
    slots: usize,
    /// Large receive buffers handed out earlier (at most `slots`), taken back as receive
    /// buffers once every slice of them is dropped: memory already mapped, without the page
    /// faults of a fresh allocation the allocator may have just given back to the OS.
    spare: Vec<Bytes>,
}

/// A receive at least this large (a GRO buffer holds up to 64 KiB) is handed out in the buffer
/// the kernel wrote it to, which a spare (or a new buffer) replaces; a smaller one is copied
/// into a fresh buffer of its size and the receive buffer is used again.
const HAND_OUT_MIN: usize = 16 * 1024;

impl ReceiveBatch {
    pub(super) fn new(slots: usize) -> Self {
        ReceiveBatch {
            queue: VecDeque::new(),
            bufs: Vec::new(),
            meta: Vec::new(),
            slots: slots.max(1),
            spare: Vec::new(),
        }
    }

    /// What receive buffer `i` holds, as an owned `Bytes`: a large receive is handed out in
    /// its buffer, no copy (a spare no slice of which is alive any more, or a new buffer, takes
    /// its place), a small one is copied out.
    fn take_received(&mut self, i: usize) -> Bytes {
        if self.bufs[i].len() < HAND_OUT_MIN {
            return Bytes::copy_from_slice(&self.bufs[i]);
        }
        let free = self.spare.iter().position(Bytes::is_unique);
        let reused = free.and_then(|j| self.spare.swap_remove(j).try_into_mut().ok());
        let next = reused.unwrap_or_else(|| BytesMut::with_capacity(SLOT));
        let b = std::mem::replace(&mut self.bufs[i], next).freeze();
        if self.spare.len() < self.slots {
            self.spare.push(b.clone());
        }
        b
    }

    /// The next datagram of the front entry; the entry goes once its last datagram does.
    fn take_one(&mut self) -> Option<Result<Datagram>> {
        let front = self.queue.front_mut()?;
        if let Ok(batch) = front {
            if let Some(d) = batch.split_first() {
                return Some(Ok(d));
            }
        }
        self.queue
            .pop_front()
            .map(|entry| entry.map(DatagramBatch::into_last))
    }
}

impl Shared {
    /// The next datagram: a queued one, else a new batch from the kernel. Cancel-safe: a
    /// datagram taken from the kernel stays queued until a receiver takes it.
    pub(super) fn poll_receive(&self, cx: &mut Context<'_>) -> Poll<Result<Datagram>> {
        self.poll_take(cx, ReceiveBatch::take_one)
    }

    /// The rest of the next kernel buffer, whole (see [`DatagramBatch`]). Cancel-safe too.
    pub(super) fn poll_receive_batch(&self, cx: &mut Context<'_>) -> Poll<Result<DatagramBatch>> {
        self.poll_take(cx, |rx| rx.queue.pop_front())
    }

    /// What `take` hands out of the queue: from what is queued, else from a new batch taken
    /// from the kernel.
    fn poll_take<T>(
        &self,
        cx: &mut Context<'_>,
        take: fn(&mut ReceiveBatch) -> Option<Result<T>>,
    ) -> Poll<Result<T>> {
        if self.io.is_closed() {
            return Poll::Ready(Err(Error::Closed("socket")));
        }
        let mut guard = lock(&self.rx);
        let rx = &mut *guard;
        if !rx.queue.is_empty() {
            if !coop::proceed(cx) {
                return Poll::Pending;
            }
            if let Some(t) = take(rx) {
                return Poll::Ready(t);
            }
        }
        if rx.bufs.is_empty() {
            rx.bufs = (0..rx.slots).map(|_| BytesMut::new()).collect();
        }
        let slots = rx.slots;
        let (bufs, meta) = (&mut rx.bufs, &mut rx.meta);
        let r = self.io.poll_io(
            cx,
            Direction::Read,
            |s| {
                meta.clear();
                sys::recv_batch(s, bufs, SLOT, meta)
            },
            |n| *n < slots,
        );
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.receive_error(e))),
            Poll::Ready(Ok(_)) => {
                let meta = std::mem::take(&mut rx.meta);
                for (i, m) in meta.iter().enumerate() {
                    let from = match &m.addr {
                        Some(a) => from_sockaddr(a),
                        None => self
                            .remote
                            .clone()
                            .unwrap_or_else(|| SocketAddress::Unix(Default::default())),
                    };
                    if m.truncated {
                        rx.queue
                            .push_back(Err(Error::DatagramTruncated { from, limit: SLOT }));
                    } else {
                        // A coalesced buffer is split later, into slices of this one.
                        let packet = rx.take_received(i);
                        let segment = m.segment.unwrap_or(0);
                        rx.queue
                            .push_back(Ok(DatagramBatch::new(packet, segment, from)));
                    }
                }
                rx.meta = meta;
                match take(rx) {
                    Some(t) => Poll::Ready(t),
                    None => {
                        // A batch holds at least one datagram; should none have come, look again.
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
        }
    }
}

//! The outgoing sender: [`DatagramSender`] queues datagrams from any number of tasks on a
//! bounded queue (`queue.rs`), and one task per socket (launched by the first `outgoing()`) sends
//! what is queued, up to 64 datagrams per system call (`sendmmsg` on Linux); a run of queued
//! datagrams to one destination with one size (the last may be shorter) leaves as one UDP GSO
//! send where the socket has GSO (see `UdpSocketBuilder::gso`).
//!
//! The socket and each sender hold a sending end; when the last is dropped the task sends what
//! is left and ends. [`DatagramSender::flush`] queues a marker behind the datagrams queued so
//! far and waits for the task to reach it. Closing the socket (or its manager) ends the task,
//! drops what is queued and fails pending and later sends and flushes with `Error::Closed`.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;

use async_channel::Sender;

use super::queue::{self, QueueReceiver, QueueSender};
use super::shared::{pieces, Shared};
use super::Datagram;
use crate::error::{Error, Result};
use crate::selector::registration::Direction;
use crate::sockets::from_sockaddr;
use crate::sys::{self, Outgoing};
use crate::util::lock;

/// What goes through the queue.
enum Queued {
    /// A checked datagram.
    Datagram(Outgoing),
    /// A flush: answered once every datagram queued before it was handed to the kernel.
    Flush(Sender<()>),
}

/// What the outgoing queue shares with its socket: the first failure of a queued send, and how
/// many datagrams are queued and not yet handed to the kernel.
pub(super) struct TxState {
    capacity: usize,
    pending: AtomicUsize,
    error: Mutex<Option<Error>>,
}

impl TxState {
    pub(super) fn new(capacity: usize) -> Self {
        TxState {
            capacity: capacity.max(1),
            pending: AtomicUsize::new(0),
            error: Mutex::new(None),
        }
    }

    fn take_error(&self) -> Option<Error> {
        lock(&self.error).take()
    }

    fn record_error(&self, e: Error) {
        let mut error = lock(&self.error);
        if error.is_none() {
            *error = Some(e);
        }
    }

    fn done(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The socket's end of its outgoing queue, made (with the sending task) on first use.
#[derive(Default)]
pub(super) struct Outbox(OnceLock<QueueSender<Queued>>);

impl Outbox {
    /// A sender on `shared`'s queue; the first call starts the task that sends what it queues.
    pub(super) fn sender(&self, shared: &Arc<Shared>) -> DatagramSender {
        let queue = self.0.get_or_init(|| {
            let (tx, rx) = queue::bounded(shared.tx.capacity);
            // Detached: it ends when the socket closes, or when every sending end is gone and
            // the queue is empty.
            drop(shared.io.handle().launch(send_loop(shared.clone(), rx)));
            tx
        });
        DatagramSender {
            shared: shared.clone(),
            queue: queue.clone(),
        }
    }

    /// Closes the queue: nothing more can be queued.
    pub(super) fn close(&self) {
        if let Some(q) = self.0.get() {
            q.close();
        }
    }
}

/// A cloneable sender that queues datagrams for a socket from any number of tasks: Ktor's
/// `outgoing` channel. Made by [`BoundDatagramSocket::outgoing`](super::BoundDatagramSocket::outgoing)
/// or [`ConnectedDatagramSocket::outgoing`](super::ConnectedDatagramSocket::outgoing).
///
/// A background task on the socket's selector sends what is queued, many datagrams per system
/// call (`sendmmsg` on Linux) when many are waiting. Size, destination and broadcast are checked
/// by [`send`](Self::send) itself; a failure the kernel reports later for a queued datagram is
/// returned by the next `send` or [`flush`](Self::flush) (and that call's datagram is not
/// queued).
///
/// ```no_run
/// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
/// let socket = asock::a_socket(&selector).udp().bind("127.0.0.1:0").await?;
/// let out = socket.outgoing();
/// for i in 0..4 {
///     let out = out.clone();
///     selector.launch(async move {
///         let d = asock::Datagram::new(format!("task {i}"), "127.0.0.1:9999".parse::<asock::SocketAddress>()?);
///         out.send(d).await
///     });
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DatagramSender {
    shared: Arc<Shared>,
    queue: QueueSender<Queued>,
}

impl std::fmt::Debug for DatagramSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramSender")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl DatagramSender {
    /// Queues `datagram`, waiting only while the queue is full. Fails at once with
    /// [`Error::DatagramTooLarge`], [`Error::WrongDestination`] or
    /// [`Error::BroadcastNotEnabled`] before anything is queued, and with [`Error::Closed`]
    /// once the socket is closed.
    pub async fn send(&self, datagram: Datagram) -> Result<()> {
        let (out, _) = self.shared.prepare(datagram)?;
        if let Some(e) = self.shared.tx.take_error() {
            return Err(e);
        }
        self.queue_one(out).await
    }

    /// Queues `buffer` for `to` as consecutive datagrams of `segment_size` bytes (the last may
    /// be shorter), like the socket's `send_batch` but behind what is already queued: while the
    /// socket has GSO, each run of up to 64 leaves as one GSO message without being copied (in
    /// one `sendmmsg` with what else is queued), else as that many datagrams (slices of
    /// `buffer`). Fails before anything is queued like the socket's `send_batch`, and like
    /// [`send`](Self::send) otherwise.
    ///
    /// An echo can hand a received [`DatagramBatch`](super::DatagramBatch) back whole:
    ///
    /// ```no_run
    /// # async fn demo(socket: asock::BoundDatagramSocket) -> asock::Result<()> {
    /// let out = socket.outgoing();
    /// loop {
    ///     let (buffer, segment, from) = socket.receive_batch().await?.into_parts();
    ///     out.send_batch(from, segment.max(1), buffer).await?;
    /// }
    /// # }
    /// ```
    pub async fn send_batch(
        &self,
        to: super::SocketAddress,
        segment_size: usize,
        buffer: bytes::Bytes,
    ) -> Result<()> {
        let (dest, _, per) = self.shared.prepare_segments(to, segment_size)?;
        if let Some(e) = self.shared.tx.take_error() {
            return Err(e);
        }
        let gso = self.shared.gso.load(Ordering::Relaxed);
        let segment = u16::try_from(segment_size).ok();
        for chunk in pieces(&buffer, per * segment_size) {
            match segment {
                Some(seg) if gso && chunk.len() > segment_size => {
                    let out = Outgoing {
                        data: chunk,
                        addr: dest.addr.clone(),
                        segment: Some(seg),
                    };
                    self.queue_one(out).await?;
                }
                _ => {
                    for data in pieces(&chunk, segment_size) {
                        let out = Outgoing {
                            data,
                            addr: dest.addr.clone(),
                            segment: None,
                        };
                        self.queue_one(out).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues one checked message (a datagram or a GSO run), counting what it holds.
    async fn queue_one(&self, out: Outgoing) -> Result<()> {
        let n = datagrams(&out);
        self.shared.tx.pending.fetch_add(n, Ordering::AcqRel);
        if self.queue.send(Queued::Datagram(out)).await.is_err() {
            self.shared.tx.done(n);
            return Err(Error::Closed("socket"));
        }
        Ok(())
    }

    /// Waits until every datagram queued so far has been handed to the kernel, and reports a
    /// failure of any of them.
    pub async fn flush(&self) -> Result<()> {
        let tx = &self.shared.tx;
        if tx.pending.load(Ordering::Acquire) == 0 {
            return tx.take_error().map_or(Ok(()), Err);
        }
        let (done, reached) = async_channel::bounded(1);
        if self.queue.send(Queued::Flush(done)).await.is_err() {
            return Err(Error::Closed("socket"));
        }
        // The task answers, or drops the marker when it ends; a manager that closes drops the
        // task with the marker still queued, so the close itself ends the wait too.
        let mut answer = pin!(reached.recv());
        let answered = poll_fn(|cx| {
            if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                return Poll::Ready(r.is_ok());
            }
            if self.shared.io.poll_closed(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        match (tx.take_error(), answered) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(()),
            (None, false) => Err(Error::Closed("socket")),
        }
    }

    /// Datagrams queued (or waiting for room in the queue) and not yet handed to the kernel.
    pub fn queued(&self) -> usize {
        self.shared.tx.pending.load(Ordering::Acquire)
    }
}

/// Sends what [`DatagramSender`]s queue, in batches of up to 64 datagrams per system call.
async fn send_loop(shared: Arc<Shared>, queue: QueueReceiver<Queued>) {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(sys::MAX_BATCH);
    let mut flushes: Vec<Sender<()>> = Vec::new();
    while let Some(first) = queue.recv().await {
        if shared.io.is_closed() {
            break;
        }
        let mut next = Some(first);
        while let Some(q) = next.take() {
            match q {
                Queued::Datagram(d) => batch.push(d),
                Queued::Flush(f) => flushes.push(f),
            }
            if batch.len() < sys::MAX_BATCH {
                next = queue.try_recv();
            }
        }
        send_batch(&shared, &batch).await;
        shared.tx.done(batch.iter().map(datagrams).sum());
        batch.clear();
        for f in flushes.drain(..) {
            let _ = f.try_send(());
        }
        if shared.io.is_closed() {
            break;
        }
    }
    // Closed (or every sending end gone): drop what is left, so that pending flushes end.
    queue.close();
    while let Some(q) = queue.try_recv() {
        if let Queued::Datagram(d) = q {
            shared.tx.done(datagrams(&d));
        }
    }
}

/// How many datagrams a queued message holds.
fn datagrams(d: &Outgoing) -> usize {
    match d.segment {
        Some(seg) => d.data.len().div_ceil(usize::from(seg).max(1)).max(1),
        None => 1,
    }
}

/// `msgs` with every GSO run cut into its datagrams (slices), for plain sends.
fn expand(msgs: &[Outgoing]) -> Vec<Outgoing> {
    let mut flat = Vec::with_capacity(msgs.len());
    for m in msgs {
        match m.segment {
            Some(seg) => flat.extend(pieces(&m.data, usize::from(seg)).map(|data| Outgoing {
                data,
                addr: m.addr.clone(),
                segment: None,
            })),
            None => flat.push(Outgoing {
                data: m.data.clone(),
                addr: m.addr.clone(),
                segment: None,
            }),
        }
    }
    flat
}

/// How many datagrams from the start of `rest` can leave as one GSO send: same destination,
/// same size (the last may be shorter), within the kernel's limits.
fn gso_run(rest: &[Outgoing], limit: usize) -> usize {
    let Some(first) = rest.first() else {
        return 0;
    };
    let seg = first.data.len();
    if seg == 0 || first.segment.is_some() {
        return 1;
    }
    let most = (limit / seg).min(sys::MAX_GSO_SEGMENTS);
    let mut n = 1;
    while n < rest.len() && n < most {
        let d = &rest[n];
        if d.addr != first.addr || d.data.len() > seg || d.data.is_empty() || d.segment.is_some() {
            break;
        }
        n += 1;
        if d.data.len() < seg {
            break;
        }
    }
    n
}

/// How one message of a segmented send is made: one queued message as it is (a datagram, or a
/// GSO run queued whole by `DatagramSender::send_batch`), or a run of queued datagrams joined
/// in the scratch buffer, to be cut by the kernel (GSO).
enum Part {
    One(usize),
    Run {
        /// The first datagram's index (its destination is the run's).
        first: usize,
        bytes: std::ops::Range<usize>,
        segment: u16,
        count: usize,
    },
}

/// Plans one `sendmmsg` over the start of `rest`: up to 64 messages, each a run of datagrams to
/// one destination with one size (joined into `joined`: a copy) or a single datagram. Returns
/// the parts, or `None` when no run has two datagrams (the plain batch then does as well).
fn plan_runs(shared: &Shared, rest: &[Outgoing], joined: &mut Vec<u8>) -> Option<Vec<Part>> {
    joined.clear();
    let mut parts = Vec::new();
    let mut at = 0;
    let mut any_run = false;
    while at < rest.len() && parts.len() < sys::MAX_BATCH {
        let limit = match rest[at].addr.as_ref().and_then(|a| a.as_socket()) {
            Some(a) => super::Datagram::max_payload(&a.into()),
            None => shared.remote.as_ref().map_or(
                super::Datagram::MAX_IPV4_PAYLOAD,
                super::Datagram::max_payload,
            ),
        };
        if rest[at].segment.is_some() {
            // A queued GSO run goes as it is, without a copy.
            parts.push(Part::One(at));
            any_run = true;
            at += 1;
            continue;
        }
        let run = gso_run(&rest[at..], limit);
        match u16::try_from(rest[at].data.len()) {
            Ok(segment) if run > 1 => {
                let start = joined.len();
                for d in &rest[at..at + run] {
                    joined.extend_from_slice(&d.data);
                }
                parts.push(Part::Run {
                    first: at,
                    bytes: start..joined.len(),
                    segment,
                    count: run,
                });
                any_run = true;
                at += run;
            }
            _ => {
                parts.push(Part::One(at));
                at += 1;
            }
        }
    }
    any_run.then_some(parts)
}

/// Hands `batch` to the kernel; a failure is recorded for the next `send` or `flush`. While
/// GSO is on, runs of datagrams to one destination with one size leave as GSO messages, many
/// runs (to many peers) and single datagrams together in one `sendmmsg`.
async fn send_batch(shared: &Shared, batch: &[Outgoing]) {
    if let Some(at) = send_some(shared, batch).await {
        // GSO went off (or a GSO send failed) with queued runs left: they go out cut into
        // their datagrams, which `send_some` then sends to the end.
        let flat = expand(&batch[at..]);
        send_some(shared, &flat).await;
    }
}

/// Sends `batch`, as [`send_batch`] says, up to the end or up to where the plain path meets a
/// queued GSO run, whose index it returns.
async fn send_some(shared: &Shared, batch: &[Outgoing]) -> Option<usize> {
    let mut sent = 0;
    let mut refused = 0;
    let mut joined: Vec<u8> = Vec::new();
    while sent < batch.len() {
        let rest = &batch[sent..];
        if shared.gso.load(Ordering::Relaxed) {
            if let Some(parts) = plan_runs(shared, rest, &mut joined) {
                let msgs: Vec<sys::SegmentedMessage<'_>> = parts
                    .iter()
                    .map(|p| match p {
                        Part::One(i) => sys::SegmentedMessage {
                            data: &rest[*i].data,
                            segment: rest[*i].segment,
                            addr: rest[*i].addr.as_ref(),
                        },
                        Part::Run {
                            first,
                            bytes,
                            segment,
                            ..
                        } => sys::SegmentedMessage {
                            data: &joined[bytes.clone()],
                            segment: Some(*segment),
                            addr: rest[*first].addr.as_ref(),
                        },
                    })
                    .collect();
                let r = poll_fn(|cx| {
                    shared.io.poll_io(
                        cx,
                        Direction::Write,
                        |s| sys::send_segmented(s, &msgs),
                        |_| false,
                    )
                })
                .await;
                match r {
                    Ok(n) => {
                        sent += parts[..n.clamp(1, parts.len())]
                            .iter()
                            .map(|p| match p {
                                Part::One(_) => 1,
                                Part::Run { count, .. } => *count,
                            })
                            .sum::<usize>();
                        refused = 0;
                        continue;
                    }
                    Err(_) if shared.io.is_closed() => return None,
                    // The device cannot offload: plain sends from now on.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        shared.gso.store(false, Ordering::Relaxed);
                        continue;
                    }
                    // Fall through to the plain path, which reports or retries it.
                    Err(_) => {}
                }
            }
        }
        if rest
            .iter()
            .take(sys::MAX_BATCH)
            .any(|d| d.segment.is_some())
        {
            return Some(sent);
        }
        let r = poll_fn(|cx| {
            shared.io.poll_io(
                cx,
                Direction::Write,
                |s| sys::send_batch(s, rest),
                |_| false,
            )
        })
        .await;
        match r {
            Ok(n) => {
                sent += n.max(1);
                refused = 0;
            }
            Err(_) if shared.io.is_closed() => return None,
            // ICMP "port unreachable" for an earlier datagram: this one was not sent and the
            // error is now consumed, so try it once more.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) && refused == 0 => {
                refused += 1;
            }
            Err(e) => {
                let d = &batch[sent];
                let to = shared.remote.clone().unwrap_or_else(|| {
                    d.addr
                        .as_ref()
                        .map(from_sockaddr)
                        .unwrap_or_else(|| shared.local.clone())
                });
                shared
                    .tx
                    .record_error(shared.send_error(e, &to, d.data.len()));
                sent += 1;
                refused = 0;
            }
        }
    }
    None
}

//! [`TlsServerSocket`] ([`ServerSocket::tls`]): the accepting listener's handshake pipeline.
//!
//! One accepting task per listener (with per-loop listeners, one on each loop), each running
//! the handshakes of the connections it accepts as tasks on its own loop, so a connection is
//! accepted, handshaken and (with [`TlsServerSocket::serve`]) served on one thread. Pending
//! handshakes are listed oldest first so the silent ones can be shed under pressure; handshaken
//! sockets wait in a bounded ready queue for [`TlsServerSocket::accept`], or go straight to the
//! handler of [`TlsServerSocket::serve`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::server::TlsServerConfig;
use super::socket::TlsSocket;
use crate::address::SocketAddress;
use crate::channel::Source;
use crate::error::{Error, Result};
use crate::selector::Handle;
use crate::sockets::StreamShared;
use crate::util::lock;
use crate::{ServerSocket, Socket};

/// Handshakes in flight at most without a connection cap (with one, the cap if larger): past
/// it one is shed to make room (the oldest silent one; with none silent, the oldest).
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Handshaken sockets waiting for [`TlsServerSocket::accept`]; while it is full nothing more
/// is accepted (the kernel backlog holds new connections).
const READY_QUEUE: usize = 256;
/// At the connection cap, a pending handshake older than this is shed so a new client gets
/// its place (a silent one first: an honest client sends its ClientHello at once and finishes
/// in milliseconds).
const SHED_HANDSHAKE_AFTER: Duration = Duration::from_millis(50);

type ErrorHandler = Arc<dyn Fn(&SocketAddress, &Error) + Send + Sync>;

/// What [`TlsServerSocket::serve`] runs for each handshaken socket.
type Handler = Arc<dyn Fn(TlsSocket) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A listener that accepts TLS connections: [`ServerSocket::tls`].
///
/// Background tasks accept connections and run their handshakes concurrently, each bounded by
/// the handshake timeout, so a slow or hostile client never holds up the others. Take the
/// handshaken sockets with [`accept`](Self::accept), or have [`serve`](Self::serve) run a
/// handler for each on the loop that accepted it. Failed handshakes are passed to
/// [`on_handshake_error`](Self::on_handshake_error), if set, and otherwise dropped. Dropping
/// it closes the listener.
pub struct TlsServerSocket {
    server: Arc<ServerSocket>,
    ready: async_channel::Receiver<TlsSocket>,
    shared: Arc<Accepting>,
}

impl std::fmt::Debug for TlsServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerSocket")
            .field("local", self.server.local_address())
            .finish_non_exhaustive()
    }
}

/// What the accepting tasks, the handshakes they start and the [`TlsServerSocket`] share.
struct Accepting {
    manager: Handle,
    config: TlsServerConfig,
    pending: Pending,
    on_error: Mutex<Option<ErrorHandler>>,
    /// Set while [`TlsServerSocket::serve`] runs: handshaken sockets go to it, not the queue.
    handler: Mutex<Option<Handler>>,
    /// The error a listener failed with (it stopped the accepting), for `serve` to return.
    failed: Mutex<Option<Error>>,
}

impl Accepting {
    fn report(&self, peer: &SocketAddress, e: &Error) {
        let handler = lock(&self.on_error).clone();
        if let Some(h) = handler {
            h(peer, e);
        }
    }
}

impl ServerSocket {
    /// Turns this listener into a TLS listener: connections are accepted and handshaken in the
    /// background, and [`TlsServerSocket::accept`] returns them ready (or
    /// [`TlsServerSocket::serve`] serves them).
    pub fn tls(self, config: &TlsServerConfig) -> TlsServerSocket {
        let server = Arc::new(self);
        let (tx, rx) = async_channel::bounded(READY_QUEUE);
        let shared = Arc::new(Accepting {
            manager: server.manager().clone(),
            config: config.clone(),
            pending: Pending::default(),
            on_error: Mutex::new(None),
            handler: Mutex::new(None),
            failed: Mutex::new(None),
        });
        let manager = server.manager();
        let listeners = server.listeners();
        for i in 0..listeners {
            // Per-loop listeners: listener `i` is registered with loop `i`, where its
            // connections are handshaken too. A single one spreads them over the loops.
            let home = (listeners > 1).then(|| manager.loops()[i].clone());
            let task = accept_loop(server.clone(), i, home.clone(), tx.clone(), shared.clone());
            drop(match home {
                Some(lp) => manager.launch_on(lp, task),
                None => manager.launch(task),
            });
        }
        TlsServerSocket {
            server,
            ready: rx,
            shared,
        }
    }
}

/// Accepts on listener `i` until it is closed, starting a handshake task for each connection
/// (on `home`, else round-robin).
async fn accept_loop(
    server: Arc<ServerSocket>,
    i: usize,
    home: Option<Arc<crate::selector::event_loop::LoopShared>>,
    tx: async_channel::Sender<TlsSocket>,
    shared: Arc<Accepting>,
) {
    loop {
        if !shared.pending.make_room(&server, &tx).await {
            return; // closed
        }
        let socket = match server.accept_on(i).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(Error::Closed(_)) => return,
            Err(e) => {
                // The listener itself failed: accepting stops everywhere, and `serve` says why.
                lock(&shared.failed).get_or_insert(e);
                server.close();
                return;
            }
        };
        if tx.is_closed() {
            return;
        }
        let (id, spoke) = shared.pending.add(&socket);
        let task = handshake(socket, id, spoke, tx.clone(), shared.clone());
        let manager = server.manager();
        drop(match &home {
            Some(lp) => manager.launch_on(lp.clone(), task),
            None => manager.launch(task),
        });
    }
}

/// One accepted connection: its handshake, then the handler of `serve` (on this loop, the one
/// the socket registered with) or the ready queue.
async fn handshake(
    socket: Socket,
    id: u64,
    spoke: Arc<AtomicBool>,
    tx: async_channel::Sender<TlsSocket>,
    shared: Arc<Accepting>,
) {
    let peer = socket.remote_address().clone();
    let r = socket.tls_server_accepted(&shared.config, &spoke).await;
    shared.pending.remove(id);
    let tls = match r {
        Ok(tls) => tls,
        Err(e) => return shared.report(&peer, &e),
    };
    drop(peer);
    let handler = lock(&shared.handler).clone();
    match handler {
        // A task of its own on this loop, so an idle connection holds only its handler's
        // state, not this task's.
        Some(serve) => {
            let manager = &shared.manager;
            drop(manager.launch_on(manager.loop_for_current_thread(), serve(tls)));
        }
        None => {
            let _ = tx.send(tls).await;
        }
    }
}

/// The handshakes a [`TlsServerSocket`] runs, oldest first, so the oldest can be shed.
#[derive(Default)]
struct Pending {
    next: AtomicU64,
    list: Mutex<VecDeque<Handshake>>,
}

/// One pending handshake.
struct Handshake {
    id: u64,
    since: Instant,
    /// Whether the client sent anything yet (its ClientHello began): the silent go first.
    spoke: Arc<AtomicBool>,
    socket: Weak<StreamShared>,
}

impl Pending {
    /// Lists a new handshake: its id, and the flag its task sets when the client speaks.
    fn add(&self, socket: &Socket) -> (u64, Arc<AtomicBool>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let spoke = Arc::new(AtomicBool::new(false));
        lock(&self.list).push_back(Handshake {
            id,
            since: Instant::now(),
            spoke: spoke.clone(),
            socket: Arc::downgrade(socket.shared()),
        });
        (id, spoke)
    }

    fn remove(&self, id: u64) {
        let mut list = lock(&self.list);
        if let Some(i) = list.iter().position(|e| e.id == id) {
            list.remove(i);
        }
    }

    fn len(&self) -> usize {
        lock(&self.list).len()
    }

    /// Closes the oldest pending handshake whose client has sent nothing yet, if it is at
    /// least `min_age` old; with no silent one pending, the oldest one at least that old (it
    /// fails, and its connection goes). Returns whether one was shed.
    fn shed_oldest(&self, min_age: Duration) -> bool {
        let victim = {
            let mut list = lock(&self.list);
            let now = Instant::now();
            // Oldest first: those old enough are a prefix of the list.
            let old = list
                .iter()
                .take_while(|h| now.duration_since(h.since) >= min_age)
                .count();
            let silent = list.iter().position(|h| !h.spoke.load(Ordering::Relaxed));
            let victim = match silent {
                Some(i) if i < old => Some(i),
                // A silent one too young yet: it goes when it is old enough.
                Some(_) => None,
                None => (old > 0).then_some(0),
            };
            victim.and_then(|i| list.remove(i))
        };
        match victim.and_then(|h| h.socket.upgrade()) {
            Some(shared) => {
                Source::close(&*shared);
                true
            }
            None => false,
        }
    }

    /// Before an accept: waits while the ready queue is full (the application is not
    /// accepting), sheds a handshake when too many are pending, and at the listener's
    /// connection cap sheds one that has waited long enough (silent ones first), so a silent
    /// connection never holds up a new client. `false` once the listener is closed.
    async fn make_room(
        &self,
        server: &ServerSocket,
        tx: &async_channel::Sender<TlsSocket>,
    ) -> bool {
        loop {
            if server.is_closed() || tx.is_closed() {
                return false;
            }
            if tx.len() >= READY_QUEUE {
                crate::time::Sleep::until_on(
                    Instant::now() + Duration::from_millis(5),
                    server.manager(),
                )
                .await;
                continue;
            }
            // Everything the cap allows is accepted (nginx-style: the idle time out), so
            // silent connections under the cap cause no churn of accepts and sheds.
            let most = server
                .max_connections()
                .map_or(MAX_PENDING_HANDSHAKES, |m| m.max(MAX_PENDING_HANDSHAKES));
            while self.len() >= most && self.shed_oldest(Duration::ZERO) {}
            if server.is_full() && self.len() > 0 && !self.shed_oldest(SHED_HANDSHAKE_AFTER) {
                // None old enough yet: look again soon (one may finish meanwhile).
                crate::time::Sleep::until_on(
                    Instant::now() + Duration::from_millis(25),
                    server.manager(),
                )
                .await;
                continue;
            }
            return true;
        }
    }
}

impl TlsServerSocket {
    /// Waits for the next client whose handshake succeeded.
    ///
    /// Fails with [`Error::Closed`] once the listener is closed.
    pub async fn accept(&self) -> Result<TlsSocket> {
        self.ready
            .recv()
            .await
            .map_err(|_| Error::Closed("TLS server socket"))
    }

    /// Serves connections until the listener is closed: runs `handler(socket)` as a task for
    /// every connection whose handshake succeeded, on the loop that ran the handshake, so it is
    /// accepted, handshaken and served on one loop (with per-loop listeners, the loop whose
    /// listener accepted it, as [`ServerSocket::serve`] does; with one listener the connections
    /// are spread over the loops round-robin).
    ///
    /// Sockets handshaken before it was called (waiting for [`accept`](Self::accept)) are
    /// served too. Returns `Ok(())` once the listener is closed and the handshakes still
    /// pending then have ended (see [`drain_handshakes`](Self::drain_handshakes)), or the
    /// error a listener failed with (which closes it). Handlers still running go on. Dropping
    /// the future stops serving: later connections wait for `accept` again. Run one `serve`
    /// at a time.
    ///
    /// ```no_run
    /// # async fn demo(server: asock::tls::TlsServerSocket) -> asock::Result<()> {
    /// server
    ///     .serve(|socket| async move {
    ///         let (mut input, mut output) =
    ///             (socket.open_read_channel(), socket.open_write_channel(true));
    ///         while let Ok(Some(line)) = input.read_utf8_line().await {
    ///             if output.write_str(&format!("{line}\r\n")).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn serve<H, F>(&self, handler: H) -> Result<()>
    where
        H: Fn(TlsSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |socket| Box::pin(handler(socket)));
        let _serving = Serving::start(&self.shared, handler.clone());
        // The queue ends once the accepting tasks and every handshake that could still add a
        // socket to it are gone.
        while let Ok(socket) = self.ready.recv().await {
            drop(self.server.manager().launch(handler(socket)));
        }
        lock(&self.shared.failed).take().map_or(Ok(()), Err)
    }

    /// Calls `handler` with the peer's address and the error for every failed handshake (from
    /// the loop's thread: keep it short).
    pub fn on_handshake_error(
        &self,
        handler: impl Fn(&SocketAddress, &Error) + Send + Sync + 'static,
    ) {
        *lock(&self.shared.on_error) = Some(Arc::new(handler));
    }

    /// The address it listens on.
    pub fn local_address(&self) -> &SocketAddress {
        self.server.local_address()
    }

    /// Caps the connections alive at once, pending handshakes included; see
    /// [`ServerSocket::set_max_connections`]. Below the cap every connection is accepted and
    /// handshaken (silent ones end at the handshake timeout), however many are pending. At the
    /// cap, a pending handshake older than
    /// 50 ms is shed (closed) so a new client gets its place: the oldest whose client has sent
    /// nothing yet (one whose client spoke only while no silent one is pending).
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.server.set_max_connections(max);
    }

    /// Connections alive now: pending handshakes, sockets waiting in the ready queue, and
    /// accepted ones not yet dropped.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Handshakes in progress now.
    pub fn pending_handshakes(&self) -> usize {
        self.shared.pending.len()
    }

    /// Waits until no handshake is pending (or `deadline` passes; then the rest are closed):
    /// for a graceful shutdown after [`close`](Self::close).
    pub async fn drain_handshakes(&self, deadline: Instant) {
        while self.shared.pending.len() > 0 && Instant::now() < deadline {
            crate::time::Sleep::until_on(
                (Instant::now() + Duration::from_millis(10)).min(deadline),
                self.server.manager(),
            )
            .await;
        }
        while self.shared.pending.shed_oldest(Duration::ZERO) {}
    }

    /// Stops listening; [`accept`](Self::accept) fails with [`Error::Closed`] once the sockets
    /// already handshaken are taken.
    pub fn close(&self) {
        self.server.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.server.is_closed()
    }
}

/// The handler of a running [`TlsServerSocket::serve`], in place until it is dropped.
struct Serving<'a>(&'a Accepting);

impl<'a> Serving<'a> {
    fn start(shared: &'a Accepting, handler: Handler) -> Serving<'a> {
        *lock(&shared.handler) = Some(handler);
        Serving(shared)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        *lock(&self.0.handler) = None;
    }
}

impl Drop for TlsServerSocket {
    fn drop(&mut self) {
        self.server.close();
        self.ready.close();
    }
}

//! The TLS server: [`TlsServerConfig`], [`Socket::tls_server`] and [`TlsServerSocket`].
//!
//! Over 600 lines: the configuration (certificates, SNI, client authentication) and the
//! accepting listener's handshake pipeline (pending handshakes, shedding silent ones first,
//! the ready queue and its bound) are kept together because the pipeline's limits are part of
//! the configuration. Splitting them is the next step if either grows.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use super::client::{handshake_limit, run_handshake};
use super::session::TlsSession;
use super::socket::TlsSocket;
use super::{
    certified_key, config_error, parse_certs, provider, read_file, versions, CipherSuite,
    TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
use crate::address::SocketAddress;
use crate::channel::Source;
use crate::error::{Error, Result, TlsReason};
use crate::sockets::StreamShared;
use crate::{ServerSocket, Socket};

/// A TLS server configuration: certificate(s) and key(s), optional client-certificate
/// verification, ALPN, versions, handshake timeout.
///
/// Cheap to clone (clones share the rustls config and its session cache).
///
/// ```
/// # #[cfg(feature = "test-certs")] {
/// use asock::tls::{TlsConfig, TlsServerConfig};
/// use asock::{a_socket, SelectorManager};
///
/// // In production: TlsServerConfig::from_pem_files("server.pem", "server.key")?
/// let ca = asock::tls::test_certs::TestCa::new("doc CA")?;
/// let cert = ca.server_cert(&["localhost"])?;
/// let config = TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())?;
/// let client = TlsConfig::client()
///     .os_roots(false)
///     .add_root_pem(ca.cert_pem().as_bytes())?
///     .server_name("localhost")?
///     .build()?;
///
/// let selector = SelectorManager::builder().threads(1).build()?;
/// selector.run_blocking(async {
///     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?.tls(&config);
///     let addr = server.local_address().clone();
///     let sel = selector.clone();
///     let talk = selector.launch(async move {
///         let socket = a_socket(&sel).tcp().connect(addr).await?.tls(&client).await?;
///         socket.open_write_channel(true).write_str("hello\n").await?;
///         Ok::<_, asock::Error>(socket)
///     });
///     let socket = server.accept().await?; // handshaken in the background
///     assert_eq!(socket.open_read_channel().read_utf8_line().await?.as_deref(), Some("hello"));
///     drop(talk.await??);
///     Ok::<(), asock::Error>(())
/// })?;
/// # }
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    rustls: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("alpn", &self.rustls.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Whether and how a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients must present a certificate issued by one of the given roots.
    Required,
    /// Clients may present one; if they do, it must verify.
    Optional,
}

impl TlsServerConfig {
    /// A server with one certificate chain (leaf first) and its key, both PEM, with defaults:
    /// TLS 1.2 and 1.3, no client certificates, 10 s handshake timeout.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsServerConfig> {
        TlsServerConfig::builder()
            .cert_pem(chain_pem, key_pem)?
            .build()
    }

    /// [`from_pem`](Self::from_pem) from files (read now).
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsServerConfig> {
        TlsServerConfig::builder()
            .cert_pem_files(chain, key)?
            .build()
    }

    /// Starts a configuration with every option.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder {
            default_cert: None,
            sni: HashMap::new(),
            client_auth: None,
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            suites: None,
            tickets: true,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Uses a rustls configuration made by hand.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsServerConfig {
        TlsServerConfig {
            rustls: config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The handshake timeout (a socket timeout, when shorter, wins).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The same configuration with another handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsServerConfig {
        self.handshake_timeout = timeout;
        self
    }
}

/// Builds a [`TlsServerConfig`]; from [`TlsServerConfig::builder`].
#[must_use]
pub struct TlsServerConfigBuilder {
    default_cert: Option<(Vec<u8>, Vec<u8>)>,
    sni: HashMap<String, (Vec<u8>, Vec<u8>)>,
    client_auth: Option<(ClientAuth, Vec<u8>)>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    suites: Option<Vec<CipherSuite>>,
    tickets: bool,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServerConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .finish_non_exhaustive()
    }
}

impl TlsServerConfigBuilder {
    /// The default certificate chain (leaf first) and key, PEM: used when the client sends no
    /// SNI name, or one that no [`sni_cert_pem`](Self::sni_cert_pem) matches.
    pub fn cert_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        certified_key(chain_pem, key_pem, &*provider(None)?)?;
        self.default_cert = Some((chain_pem.to_vec(), key_pem.to_vec()));
        Ok(self)
    }

    /// [`cert_pem`](Self::cert_pem) from files (read now).
    pub fn cert_pem_files(self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let (c, k) = (read_file(chain.as_ref())?, read_file(key.as_ref())?);
        self.cert_pem(&c, &k)
    }

    /// A certificate for clients that ask for `host` through SNI (exact name, case-insensitive).
    pub fn sni_cert_pem(mut self, host: &str, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        certified_key(chain_pem, key_pem, &*provider(None)?)?;
        self.sni.insert(
            host.to_ascii_lowercase(),
            (chain_pem.to_vec(), key_pem.to_vec()),
        );
        Ok(self)
    }

    /// [`sni_cert_pem`](Self::sni_cert_pem) from files (read now).
    pub fn sni_cert_pem_files(
        self,
        host: &str,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        let (c, k) = (read_file(chain.as_ref())?, read_file(key.as_ref())?);
        self.sni_cert_pem(host, &c, &k)
    }

    /// Asks clients for a certificate issued by one of the roots in `roots_pem`.
    pub fn client_auth(mut self, mode: ClientAuth, roots_pem: &[u8]) -> Result<Self> {
        parse_certs(roots_pem, "client CA")?;
        self.client_auth = Some((mode, roots_pem.to_vec()));
        Ok(self)
    }

    /// [`client_auth`](Self::client_auth) with the roots from a file (read now).
    pub fn client_auth_file(self, mode: ClientAuth, roots: impl AsRef<Path>) -> Result<Self> {
        let pem = read_file(roots.as_ref())?;
        self.client_auth(mode, &pem)
    }

    /// Protocols accepted through ALPN, most preferred first. A client that offers ALPN but
    /// none of these is refused.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The protocol versions to accept (default TLS 1.3 and 1.2).
    pub fn protocol_versions(mut self, versions: &[TlsVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// The cipher suites to accept, in the server's order of preference.
    pub fn cipher_suites(mut self, suites: &[CipherSuite]) -> Self {
        self.suites = Some(suites.to_vec());
        self
    }

    /// Whether to issue session tickets so clients can resume (default on).
    pub fn session_tickets(mut self, on: bool) -> Self {
        self.tickets = on;
        self
    }

    /// Limit for each handshake (default 10 s; a socket timeout, when shorter, wins). A client
    /// that stalls mid-handshake is dropped then.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Checks the configuration and makes it.
    pub fn build(self) -> Result<TlsServerConfig> {
        let provider = provider(self.suites.as_deref())?;
        if self.default_cert.is_none() && self.sni.is_empty() {
            return Err(Error::tls_config(
                "a TLS server needs a certificate and key",
            ));
        }
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(&self.versions)?)
            .map_err(config_error)?;
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((mode, roots_pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in parse_certs(roots_pem, "client CA")? {
                    roots
                        .add(c)
                        .map_err(|e| Error::tls_config_from(format!("client CA: {e}"), e))?;
                }
                let v =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let v = match mode {
                    ClientAuth::Required => v,
                    ClientAuth::Optional => v.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(v.build().map_err(config_error)?)
            }
        };
        let load = |(c, k): &(Vec<u8>, Vec<u8>)| certified_key(c, k, &provider);
        let resolver = SniResolver {
            default: self.default_cert.as_ref().map(load).transpose()?,
            by_name: self
                .sni
                .iter()
                .map(|(h, ck)| Ok((h.clone(), load(ck)?)))
                .collect::<Result<_>>()?,
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn;
        if self.tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(config_error)?;
        }
        Ok(TlsServerConfig {
            rustls: Arc::new(config),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// Picks the certificate by SNI name, falling back to the default one.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

impl Socket {
    /// Starts TLS as a server on this accepted socket: handshakes within the config's handshake
    /// timeout (or the socket timeout, when shorter), then returns a [`TlsSocket`].
    ///
    /// Fails with [`Error::Tls`] (e.g. [`TlsReason::ProtocolError`](crate::TlsReason::ProtocolError)
    /// for a client that does not speak TLS,
    /// [`TlsReason::ClientCertRequired`](crate::TlsReason::ClientCertRequired),
    /// [`TlsReason::HandshakeTimeout`](crate::TlsReason::HandshakeTimeout)); the socket is
    /// closed then.
    pub async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        self.tls_server_with_early(config, Vec::new()).await
    }

    async fn tls_server_with_early(
        self,
        config: &TlsServerConfig,
        early: Vec<u8>,
    ) -> Result<TlsSocket> {
        let limit = handshake_limit(config.handshake_timeout, self.socket_timeout());
        self.tls_server_within(config, early, limit).await
    }

    /// The server handshake, `early` bytes first, within `limit`.
    async fn tls_server_within(
        self,
        config: &TlsServerConfig,
        early: Vec<u8>,
        limit: Duration,
    ) -> Result<TlsSocket> {
        let conn = rustls::ServerConnection::new(config.rustls.clone())
            .map_err(|e| Error::tls_config_from(e.to_string(), e))?;
        let session = Arc::new(TlsSession::new(self.shared().clone(), conn.into(), early));
        if let Err(e) = run_handshake(&session, limit).await {
            self.close();
            return Err(e);
        }
        let info = session.info();
        Ok(TlsSocket::new(self, session, info))
    }

    /// A [`TlsServerSocket`]'s handshake of an accepted socket: waits for the client's first
    /// bytes (until then `spoke` stays false and the handshake counts as silent, the first to
    /// be shed under pressure), then handshakes, all within one handshake limit.
    async fn tls_server_accepted(
        self,
        config: &TlsServerConfig,
        spoke: &AtomicBool,
    ) -> Result<TlsSocket> {
        let limit = handshake_limit(config.handshake_timeout, self.socket_timeout());
        let deadline = Instant::now() + limit;
        let mut first = vec![0; FIRST_READ];
        let read = std::future::poll_fn(|cx| Source::poll_read(&**self.shared(), cx, &mut first));
        let failed = match crate::time::timeout(limit, read).await {
            Ok(Ok(n)) if n > 0 => {
                first.truncate(n);
                spoke.store(true, Ordering::Relaxed);
                let rest = deadline.saturating_duration_since(Instant::now());
                return self.tls_server_within(config, first, rest).await;
            }
            // The same errors the handshake itself reports.
            Ok(Ok(_)) => Error::tls(
                TlsReason::HandshakeEof,
                "the peer closed the connection before the handshake finished",
            ),
            Ok(Err(e)) => Error::io("TLS handshake", e),
            Err(_) => Error::tls(
                TlsReason::HandshakeTimeout,
                format!("no complete handshake within {limit:?}"),
            ),
        };
        self.close();
        Err(failed)
    }
}

/// The first read of an accepted TLS connection: the start of its ClientHello (the rest, if
/// any, is read by the handshake).
const FIRST_READ: usize = 2048;

impl crate::Connection {
    /// Starts TLS as a server on a connection whose channels are already open (STARTTLS):
    /// queued output is flushed first, and bytes the read channel already buffered (an early
    /// ClientHello) are fed to the handshake.
    pub async fn tls_server(self, config: &TlsServerConfig) -> Result<TlsSocket> {
        let (socket, early) = self.into_plain().await?;
        socket.tls_server_with_early(config, early).await
    }
}

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

/// A listener that accepts TLS connections: [`ServerSocket::tls`].
///
/// A background task accepts connections and runs their handshakes concurrently, each bounded
/// by the handshake timeout, so a slow or hostile client never holds up the others;
/// [`accept`](Self::accept) returns only sockets whose handshake succeeded. Failed handshakes
/// are passed to [`on_handshake_error`](Self::on_handshake_error), if set, and otherwise
/// dropped. Dropping it closes the listener.
pub struct TlsServerSocket {
    server: Arc<ServerSocket>,
    ready: async_channel::Receiver<TlsSocket>,
    on_error: Arc<Mutex<Option<ErrorHandler>>>,
    pending: Arc<Pending>,
}

impl std::fmt::Debug for TlsServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerSocket")
            .field("local", self.server.local_address())
            .finish_non_exhaustive()
    }
}

impl ServerSocket {
    /// Turns this listener into a TLS listener: connections are accepted and handshaken in the
    /// background, and [`TlsServerSocket::accept`] returns them ready.
    pub fn tls(self, config: &TlsServerConfig) -> TlsServerSocket {
        let server = Arc::new(self);
        let (tx, rx) = async_channel::bounded(READY_QUEUE);
        let on_error: Arc<Mutex<Option<ErrorHandler>>> = Arc::new(Mutex::new(None));
        let manager = server.manager().clone();
        let (srv, cfg, errs) = (server.clone(), config.clone(), on_error.clone());
        let pending = Arc::new(Pending::default());
        let in_flight = pending.clone();
        let pump = manager.clone().launch(async move {
            loop {
                if !pending.make_room(&srv, &tx).await {
                    break; // closed
                }
                let socket = match srv.accept().await {
                    Ok(s) => s,
                    Err(_) => break, // closed
                };
                if tx.is_closed() {
                    break;
                }
                let (id, spoke) = pending.add(&socket);
                let (tx, cfg, errs, pending) =
                    (tx.clone(), cfg.clone(), errs.clone(), pending.clone());
                let task = manager.launch(async move {
                    let peer = socket.remote_address().clone();
                    let r = socket.tls_server_accepted(&cfg, &spoke).await;
                    pending.remove(id);
                    match r {
                        Ok(tls) => {
                            let _ = tx.send(tls).await;
                        }
                        Err(e) => {
                            let handler = errs.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            if let Some(h) = handler {
                                h(&peer, &e);
                            }
                        }
                    }
                });
                drop(task);
            }
        });
        drop(pump);
        TlsServerSocket {
            server,
            ready: rx,
            on_error,
            pending: in_flight,
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
        crate::util::lock(&self.list).push_back(Handshake {
            id,
            since: Instant::now(),
            spoke: spoke.clone(),
            socket: Arc::downgrade(socket.shared()),
        });
        (id, spoke)
    }

    fn remove(&self, id: u64) {
        let mut list = crate::util::lock(&self.list);
        if let Some(i) = list.iter().position(|e| e.id == id) {
            list.remove(i);
        }
    }

    fn len(&self) -> usize {
        crate::util::lock(&self.list).len()
    }

    /// Closes the oldest pending handshake whose client has sent nothing yet, if it is at
    /// least `min_age` old; with no silent one pending, the oldest one at least that old (it
    /// fails, and its connection goes). Returns whether one was shed.
    fn shed_oldest(&self, min_age: Duration) -> bool {
        let victim = {
            let mut list = crate::util::lock(&self.list);
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

    /// Calls `handler` with the peer's address and the error for every failed handshake (from
    /// the loop's thread: keep it short).
    pub fn on_handshake_error(
        &self,
        handler: impl Fn(&SocketAddress, &Error) + Send + Sync + 'static,
    ) {
        *self.on_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(handler));
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
        self.pending.len()
    }

    /// Waits until no handshake is pending (or `deadline` passes; then the rest are closed):
    /// for a graceful shutdown after [`close`](Self::close).
    pub async fn drain_handshakes(&self, deadline: Instant) {
        while self.pending.len() > 0 && Instant::now() < deadline {
            crate::time::Sleep::until_on(
                (Instant::now() + Duration::from_millis(10)).min(deadline),
                self.server.manager(),
            )
            .await;
        }
        while self.pending.shed_oldest(Duration::ZERO) {}
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

impl Drop for TlsServerSocket {
    fn drop(&mut self) {
        self.server.close();
        self.ready.close();
    }
}

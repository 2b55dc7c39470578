//! The TLS client: [`TlsConfig`] and [`Socket::tls`].

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::session::TlsSession;
use super::socket::TlsSocket;
use super::{
    certified_key, config_error, parse_certs, parse_key, provider, read_file, versions,
    CipherSuite, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT,
};
use crate::error::{Error, Result, TlsReason};
use crate::{Connection, Socket};

/// A TLS client configuration: Ktor's `TLSConfig`, made with [`TlsConfig::client`].
///
/// Cheap to clone; clones share one rustls configuration and so one session cache (session
/// resumption works across connections made with the same config).
///
/// Roots: the operating system's store (through `rustls-native-certs`, loaded once, on the
/// blocking pool, at the first handshake), plus any added with
/// [`add_root_pem`](TlsConfigBuilder::add_root_pem). The OS store is what the platform's own
/// tools trust, including CAs an administrator installed, and follows the distribution's
/// updates; a compiled-in list (webpki-roots) would go stale with the binary.
///
/// # Example
/// ```
/// # #[cfg(feature = "test-certs")] {
/// use asock::tls::TlsConfig;
///
/// // Verify against the OS roots and one extra CA, offer HTTP/2 and HTTP/1.1, and check the
/// // certificate against "example.org" whatever address is connected to.
/// # let ca_pem = asock::tls::test_certs::TestCa::new("doc CA")?.cert_pem();
/// let config = TlsConfig::client()
///     .add_root_pem(ca_pem.as_bytes())?
///     .server_name("example.org")?
///     .alpn(["h2", "http/1.1"])
///     .build()?;
/// // then: socket.tls(&config).await?
/// # let _ = config;
/// # }
/// # Ok::<(), asock::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    spec: Spec,
    /// The rustls config; made at the first handshake when it needs the OS roots.
    rustls: OnceLock<Arc<rustls::ClientConfig>>,
}

#[derive(Clone)]
struct Spec {
    os_roots: bool,
    roots: Vec<CertificateDer<'static>>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    alpn: Vec<Vec<u8>>,
    versions: Vec<TlsVersion>,
    suites: Option<Vec<CipherSuite>>,
    resumption: bool,
    insecure: bool,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.inner.spec;
        f.debug_struct("TlsConfig")
            .field("os_roots", &s.os_roots)
            .field("extra_roots", &s.roots.len())
            .field("server_name", &s.server_name)
            .field("alpn", &s.alpn)
            .field("versions", &s.versions)
            .field("danger_accept_invalid_certs", &s.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Starts a client configuration with secure defaults: OS roots, TLS 1.2 and 1.3, rustls's
    /// cipher-suite order, session resumption on, 10 s handshake timeout.
    pub fn client() -> TlsConfigBuilder {
        TlsConfigBuilder {
            spec: Spec {
                os_roots: true,
                roots: Vec::new(),
                client_cert: None,
                alpn: Vec::new(),
                versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
                suites: None,
                resumption: true,
                insecure: false,
                server_name: None,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            },
        }
    }

    /// Uses a rustls configuration made by hand. The verification name is still
    /// [`server_name`](Self::server_name) or the host that was connected to.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> TlsConfig {
        let mut spec = TlsConfig::client().spec;
        spec.os_roots = false;
        TlsConfig {
            inner: Arc::new(Inner {
                spec,
                rustls: OnceLock::from(config),
            }),
        }
    }

    /// The verification name set with [`TlsConfigBuilder::server_name`], if any.
    pub fn server_name(&self) -> Option<String> {
        self.inner
            .spec
            .server_name
            .as_ref()
            .map(|n| n.to_str().into_owned())
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.spec.handshake_timeout
    }

    async fn rustls(&self) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(c) = self.inner.rustls.get() {
            return Ok(c.clone());
        }
        let native = native_roots().await;
        let c = Arc::new(make_rustls(&self.inner.spec, Some(&native))?);
        Ok(self.inner.rustls.get_or_init(|| c).clone())
    }
}

/// The OS root store, loaded once on the blocking pool.
async fn native_roots() -> Arc<Vec<CertificateDer<'static>>> {
    static ROOTS: OnceLock<Arc<Vec<CertificateDer<'static>>>> = OnceLock::new();
    if let Some(r) = ROOTS.get() {
        return r.clone();
    }
    let loaded = blocking::unblock(|| rustls_native_certs::load_native_certs().certs).await;
    ROOTS.get_or_init(|| Arc::new(loaded)).clone()
}

fn make_rustls(
    spec: &Spec,
    native: Option<&[CertificateDer<'static>]>,
) -> Result<rustls::ClientConfig> {
    let provider = provider(spec.suites.as_deref())?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(&spec.versions)?)
        .map_err(config_error)?;
    let builder = if spec.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider.clone())))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(native) = native {
            roots.add_parsable_certificates(native.iter().cloned());
        }
        for r in &spec.roots {
            roots
                .add(r.clone())
                .map_err(|e| Error::tls_config_from(format!("root certificate: {e}"), e))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &spec.client_cert {
        Some((chain, key)) => {
            // Checks that the key matches the certificate, and that ring can use it.
            certified_key(chain, key, &provider)?;
            builder
                .with_client_auth_cert(
                    parse_certs(chain, "client certificate chain")?,
                    parse_key(key, "client private key")?,
                )
                .map_err(|e| Error::tls_config_from(format!("client certificate: {e}"), e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = spec.alpn.clone();
    if !spec.resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// Builds a [`TlsConfig`]; from [`TlsConfig::client`].
#[derive(Clone)]
#[must_use]
pub struct TlsConfigBuilder {
    spec: Spec,
}

impl std::fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigBuilder").finish_non_exhaustive()
    }
}

impl TlsConfigBuilder {
    /// Whether to trust the operating system's root store (default `true`). Turn it off to trust
    /// only the roots you add.
    pub fn os_roots(mut self, on: bool) -> Self {
        self.spec.os_roots = on;
        self
    }

    /// Trusts the root certificates in PEM text (one or more `CERTIFICATE` blocks).
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.spec
            .roots
            .extend(parse_certs(pem, "root certificate")?);
        Ok(self)
    }

    /// Trusts the root certificates in a PEM file (read now).
    pub fn add_root_pem_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let pem = read_file(path.as_ref())?;
        self.add_root_pem(&pem)
    }

    /// Trusts one root certificate in DER form.
    pub fn add_root_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.spec.roots.push(CertificateDer::from(der.into()));
        self
    }

    /// The name sent as SNI and checked against the server's certificate (Ktor's `serverName`).
    /// Default: the host name (or IP literal) the socket was connected to, so verification is
    /// never silently skipped. An IP address is checked against the certificate's IP SANs.
    pub fn server_name(mut self, name: &str) -> Result<Self> {
        let n = ServerName::try_from(name.to_owned())
            .map_err(|e| Error::tls_config_from(format!("invalid server name {name:?}"), e))?;
        self.spec.server_name = Some(n);
        Ok(self)
    }

    /// Protocols offered through ALPN, most preferred first (e.g. `["h2", "http/1.1"]`).
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.spec.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Presents a client certificate: the chain (leaf first) and its private key, both PEM.
    /// RSA, ECDSA (P-256, P-384) and Ed25519 keys in PKCS#8, PKCS#1 or SEC1 form.
    pub fn client_cert_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let provider = provider(None)?;
        certified_key(chain_pem, key_pem, &provider)?;
        self.spec.client_cert = Some((chain_pem.to_vec(), key_pem.to_vec()));
        Ok(self)
    }

    /// [`client_cert_pem`](Self::client_cert_pem) from files (read now).
    pub fn client_cert_pem_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        let chain = read_file(chain.as_ref())?;
        let key = read_file(key.as_ref())?;
        self.client_cert_pem(&chain, &key)
    }

    /// The protocol versions to offer (default both TLS 1.3 and 1.2).
    pub fn protocol_versions(mut self, versions: &[TlsVersion]) -> Self {
        self.spec.versions = versions.to_vec();
        self
    }

    /// The cipher suites to offer, most preferred first (default: rustls's list and order).
    pub fn cipher_suites(mut self, suites: &[CipherSuite]) -> Self {
        self.spec.suites = Some(suites.to_vec());
        self
    }

    /// Whether to resume earlier sessions with the same server (default on; sessions are kept
    /// in memory, shared by clones of the config).
    pub fn session_resumption(mut self, on: bool) -> Self {
        self.spec.resumption = on;
        self
    }

    /// Limit for the handshake (default 10 s; a socket timeout, when shorter, wins).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.spec.handshake_timeout = timeout;
        self
    }

    /// **Dangerous**: accepts any server certificate, for any name, trusted or not, expired or
    /// not. The connection is encrypted but not authenticated: anyone in the middle can read it.
    /// For tests only.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.spec.insecure = true;
        self
    }

    /// Checks the configuration and makes it.
    pub fn build(self) -> Result<TlsConfig> {
        // Everything but the OS roots is checked now; with them, the config is completed at the
        // first handshake (reading the store is blocking work).
        let trial = make_rustls(&self.spec, None)?;
        let rustls = OnceLock::new();
        if !self.spec.os_roots || self.spec.insecure {
            let _ = rustls.set(Arc::new(trial));
        }
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                spec: self.spec,
                rustls,
            }),
        })
    }
}

/// Verifies signatures (so the handshake is sound) but accepts any certificate.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The effective handshake limit: the configured one, or the socket timeout when shorter.
pub(crate) fn handshake_limit(configured: Duration, socket_timeout: Option<Duration>) -> Duration {
    socket_timeout.map_or(configured, |t| t.min(configured))
}

/// Runs a handshake within `limit`, mapping the timeout to [`TlsReason::HandshakeTimeout`].
pub(crate) async fn run_handshake(session: &TlsSession, limit: Duration) -> Result<()> {
    let hs = std::future::poll_fn(|cx| session.poll_handshake(cx));
    match crate::time::timeout(limit, hs).await {
        Ok(r) => r,
        Err(_) => Err(Error::tls(
            TlsReason::HandshakeTimeout,
            format!("no complete handshake within {limit:?}"),
        )),
    }
}

impl Socket {
    /// Starts TLS as a client on this connected socket (Ktor's `socket.tls()`): handshakes and
    /// verifies the server, then returns a [`TlsSocket`] with the same channel API.
    ///
    /// Call it before opening channels on the plain socket. The name verified (and sent as SNI)
    /// is the config's [`server_name`](TlsConfigBuilder::server_name), else the host this
    /// socket was connected to; a socket with neither (accepted, or Unix-domain) needs one set.
    ///
    /// Fails with [`Error::Tls`] (e.g. [`TlsReason::UnknownIssuer`],
    /// [`TlsReason::NameMismatch`], [`TlsReason::Expired`], [`TlsReason::HandshakeTimeout`]);
    /// the socket is closed then.
    pub async fn tls(self, config: &TlsConfig) -> Result<TlsSocket> {
        self.tls_with_early(config, Vec::new()).await
    }

    async fn tls_with_early(self, config: &TlsConfig, early: Vec<u8>) -> Result<TlsSocket> {
        let name = match &config.inner.spec.server_name {
            Some(n) => n.clone(),
            None => default_server_name(&self)?,
        };
        let rustls_config = config.rustls().await?;
        let conn = rustls::ClientConnection::new(rustls_config, name.clone())
            .map_err(|e| Error::tls_config_from(e.to_string(), e))?;
        let session = Arc::new(TlsSession::new(self.shared().clone(), conn.into(), early));
        let limit = handshake_limit(config.inner.spec.handshake_timeout, self.socket_timeout());
        if let Err(e) = run_handshake(&session, limit).await {
            self.close();
            return Err(e);
        }
        let mut info = session.info();
        info.server_name = Some(name.to_str().into_owned());
        Ok(TlsSocket::new(self, session, info))
    }
}

fn default_server_name(socket: &Socket) -> Result<ServerName<'static>> {
    if let Some(host) = socket.host() {
        return ServerName::try_from(host.to_owned()).map_err(|e| {
            Error::tls_config_from(format!("{host:?} is not a valid TLS server name"), e)
        });
    }
    if let Some(a) = socket.remote_address().as_inet() {
        return Ok(ServerName::IpAddress(a.ip().into()));
    }
    Err(Error::tls_config(
        "no server name to verify: set TlsConfig::client().server_name(..)",
    ))
}

impl Connection {
    /// Starts TLS as a client on a connection whose channels are already open (STARTTLS):
    /// queued output is flushed first, and bytes the read channel already buffered are fed to
    /// the handshake.
    pub async fn tls(self, config: &TlsConfig) -> Result<TlsSocket> {
        let (socket, early) = self.into_plain().await?;
        socket.tls_with_early(config, early).await
    }

    /// Flushes the output, takes what the input buffered, and retires both channels without
    /// shutting anything down.
    pub(crate) async fn into_plain(self) -> Result<(Socket, Vec<u8>)> {
        let Connection {
            socket,
            input,
            mut output,
        } = self;
        output.flush().await?;
        output.detach();
        let early = input.detach();
        Ok((socket, early))
    }
}

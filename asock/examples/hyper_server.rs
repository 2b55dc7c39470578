//! hyper 1.x on asock: an HTTP server whose connections are asock sockets, served on asock's
//! event loops through hyper's `serve_connection` (no tokio runtime).
//!
//! Routes: `GET /` answers `Hello, world!`; `POST /echo` takes a JSON body (up to 64 KiB) and
//! sends it back as JSON (400 when it is not JSON, 413 when it is too large); anything else is
//! 404 (405 for another method on these paths).
//!
//! ```text
//! cargo run --release --example hyper_server --features hyper,test-certs                # 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! curl -H 'content-type: application/json' -d '{"hello":[1,2,3]}' http://127.0.0.1:8080/echo
//!
//! # TLS with ALPN: HTTP/2 ("h2") or HTTP/1.1, chosen by the client. DIR holds server.pem and
//! # server.key (`asock cert --out DIR` makes them); when they are missing, a test CA is made
//! # and ca.pem, server.pem, server.key are written there.
//! cargo run --release --example hyper_server --features hyper,test-certs -- 127.0.0.1:8443 --tls /tmp/h2
//! curl --http2 --cacert /tmp/h2/ca.pem https://127.0.0.1:8443/
//! ```
//!
//! `--threads N` sets the number of event loops (default: one per core). The first line on
//! stdout is `Listening on http://ADDR` (or `https://`), with the real port when ADDR ends in
//! `:0`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use asock::compat::hyper::{AsockExecutor, AsockTimer};
use asock::tls::{TlsServerConfig, TlsSocket};
use asock::{a_socket, Connection, JoinHandle, SelectorManager, SocketAddress};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

/// The largest `/echo` body taken.
pub const MAX_ECHO_BODY: usize = 64 * 1024;

/// The body of `GET /`.
pub const HELLO: &str = "Hello, world!\n";

/// Counts what the server did, for the curious (and the tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted (TLS: handshakes completed).
    pub connections: AtomicU64,
    /// Connections that negotiated HTTP/2.
    pub h2_connections: AtomicU64,
}

/// A running server: where it listens and the task accepting connections.
pub struct Running {
    /// The bound address (with the real port).
    pub address: SocketAddress,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its counters.
    pub stats: Arc<Stats>,
    /// The accept loop; it ends only on an accept error.
    pub task: JoinHandle<asock::Result<()>>,
}

/// The application: one function from request to response, the same for HTTP/1.1 and HTTP/2.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", HELLO)
        }
        (&Method::POST, "/echo") => echo(req).await,
        (_, "/") => not_allowed("GET, HEAD"),
        (_, "/echo") => not_allowed("POST"),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    })
}

/// `POST /echo`: the JSON body back, re-serialised.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_ECHO_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 64 KiB");
        }
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&value).unwrap_or_default(),
        ),
        Err(e) => json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        "method not allowed\n",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Serves one plain connection with hyper's HTTP/1.1 server (keep-alive on, header read
/// timeout 30 s on asock's timers).
async fn serve_http1<C>(connection: C, peer: SocketAddress)
where
    C: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let result = http1::Builder::new()
        .timer(AsockTimer::new())
        .serve_connection(connection, service_fn(handle))
        .await;
    if let Err(e) = result {
        report(&peer, &e);
    }
}

/// Serves one TLS connection: HTTP/2 when the client chose `h2` by ALPN, else HTTP/1.1.
async fn serve_tls(socket: TlsSocket, executor: AsockExecutor, stats: Arc<Stats>) {
    let peer = socket.remote_address().clone();
    if socket.negotiated_alpn() == Some(&b"h2"[..]) {
        stats.h2_connections.fetch_add(1, Ordering::Relaxed);
        let result = http2::Builder::new(executor)
            .timer(AsockTimer::new())
            .serve_connection(socket.connection(false), service_fn(handle))
            .await;
        if let Err(e) = result {
            report(&peer, &e);
        }
    } else {
        serve_http1(socket.connection(false), peer).await;
    }
}

/// Logs a connection's error, unless it is only the client going away.
fn report(peer: &SocketAddress, e: &hyper::Error) {
    if e.is_incomplete_message() || e.is_canceled() {
        return;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            if matches!(
                io.kind(),
                BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
            ) {
                return;
            }
        }
        source = s.source();
    }
    eprintln!("{peer}: {e}");
}

/// The TLS configuration from `dir`: its `server.pem` and `server.key`, or, when they are not
/// there, a fresh test CA whose `ca.pem`, `server.pem` and `server.key` are written into `dir`
/// (the certificate names `localhost` and `127.0.0.1`). ALPN offers `h2` and `http/1.1`.
pub fn tls_config(dir: &Path) -> Result<TlsServerConfig, Box<dyn std::error::Error>> {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir)?;
        let ca = asock::tls::test_certs::TestCa::new("asock hyper_server test CA")?;
        let server = ca.server_cert(&["localhost", "127.0.0.1"])?;
        std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
        std::fs::write(&cert, &server.chain_pem)?;
        std::fs::write(&key, &server.key_pem)?;
    }
    Ok(TlsServerConfig::builder()
        .cert_pem_files(&cert, &key)?
        .alpn(["h2", "http/1.1"])
        .build()?)
}

/// Binds `addr` and launches the accept loop on `selector`; every connection is a task on the
/// loops. With `tls`, connections are TLS (HTTP/2 or HTTP/1.1 by ALPN), else plain HTTP/1.1.
pub async fn start(
    selector: &SelectorManager,
    addr: &str,
    tls: Option<TlsServerConfig>,
) -> asock::Result<Running> {
    let listener = a_socket(selector).tcp().bind(addr).await?;
    let address = listener.local_address().clone();
    let stats = Arc::new(Stats::default());
    let (sel, counters) = (selector.clone(), stats.clone());
    let is_tls = tls.is_some();
    let task = match tls {
        None => selector.launch(async move {
            loop {
                let socket = listener.accept().await?;
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let peer = socket.remote_address().clone();
                let connection: Connection = socket.connection(false);
                sel.launch(serve_http1(connection, peer));
            }
        }),
        Some(config) => selector.launch(async move {
            let listener = listener.tls(&config);
            listener.on_handshake_error(|peer, e| eprintln!("{peer}: TLS handshake: {e}"));
            let executor = AsockExecutor::new(&sel);
            loop {
                let socket = listener.accept().await?;
                counters.connections.fetch_add(1, Ordering::Relaxed);
                sel.launch(serve_tls(socket, executor.clone(), counters.clone()));
            }
        }),
    };
    Ok(Running {
        address,
        tls: is_tls,
        stats,
        task,
    })
}

struct Args {
    addr: String,
    tls_dir: Option<PathBuf>,
    threads: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".to_string(),
        tls_dir: None,
        threads: None,
    };
    let mut it = std::env::args().skip(1);
    let mut addr_seen = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--tls" => args.tls_dir = Some(it.next().ok_or("--tls needs a directory")?.into()),
            "--threads" => {
                let n = it.next().ok_or("--threads needs a number")?;
                args.threads = Some(n.parse().map_err(|_| format!("bad --threads {n:?}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            a if !a.starts_with('-') && !addr_seen => {
                args.addr = a.to_string();
                addr_seen = true;
            }
            a => return Err(format!("unexpected argument {a:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!(
                "usage: hyper_server [ADDR (default 127.0.0.1:8080)] [--tls DIR] [--threads N]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tls = args.tls_dir.as_deref().map(tls_config).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut builder = SelectorManager::builder();
    if let Some(n) = args.threads {
        builder = builder.threads(n);
    }
    let selector = builder.build()?;
    selector.run_blocking(async {
        let running = start(&selector, &args.addr, tls).await?;
        println!("Listening on {scheme}://{}", running.address);
        running.task.await?
    })?;
    Ok(())
}

//! `asock proxy LISTEN TARGET`: a TCP/Unix relay like `socat TCP-LISTEN:..,fork TCP:..`.
//!
//! Each accepted connection gets a connection to TARGET and a task that relays both ways with
//! `Connection::relay` (zero-copy `splice` between plain sockets on Linux), half-closes passed
//! on. With `--tls-cert/--tls-key` the proxy terminates TLS in front of a plain target (the
//! buffer path). SIGINT/SIGTERM stop accepting and give open connections `--grace` to finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use asock::tls::TlsServerConfig;
use asock::{a_socket, ByteReadChannel, ByteWriteChannel, Error, SelectorManager, SocketAddress};
use clap::Args;

use crate::common::{announce, seconds, unix_bind_error, CliError, CliResult};
use crate::log;
use crate::shutdown::Graceful;

/// Options of `proxy`.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// Address to listen on: HOST:PORT, or unix:PATH.
    pub listen: String,
    /// Address to relay each connection to: HOST:PORT, or unix:PATH.
    pub target: String,
    /// Terminate TLS with this certificate chain (PEM); the target is spoken to in plain.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Event-loop threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Give up connecting to the target after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// At SIGINT/SIGTERM: stop accepting, give open connections this long to finish, then close
    /// them and exit 0 (a second signal exits at once).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub grace: f64,
}

/// What every connection needs to know.
struct Plan {
    selector: SelectorManager,
    /// As given: an address, or a host name resolved (off the loops) at each connect.
    target: String,
    connect_timeout: Duration,
}

/// Runs `asock proxy`.
pub fn run(args: ProxyArgs) -> CliResult {
    let listen: SocketAddress = args
        .listen
        .parse()
        .map_err(|e: Error| CliError(format!("listen address: {e}")))?;
    // An address, or HOST:PORT with a name to resolve at each connection.
    let named = args
        .target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if args.target.parse::<SocketAddress>().is_err() && !named {
        return Err(CliError(format!(
            "invalid target {:?}: expected host:port, [v6]:port or unix:PATH",
            args.target
        )));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsServerConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    let mut b = SelectorManager::builder().name("asock-proxy");
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(CliError("--threads must be at least 1".into()));
        }
        b = b.threads(n);
    }
    let selector = b.build()?;
    let plan = Arc::new(Plan {
        selector: selector.clone(),
        target: args.target.clone(),
        connect_timeout: seconds(args.connect_timeout)?,
    });
    let target = &args.target;
    let graceful = Graceful::new(seconds(args.grace)?);
    let unix = matches!(listen, SocketAddress::Unix(_));
    selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .replace_stale(unix)
            .bind(listen)
            .await
            .map_err(unix_bind_error)?;
        crate::shutdown::log_accept_backoff(&server);
        let bound = server.local_address().clone();
        match tls {
            None => {
                let server = Arc::new(server);
                let closer = server.clone();
                graceful.install(move || closer.close())?;
                announce(&format!("Started proxy to {target} at {bound}"))?;
                loop {
                    match server.accept().await {
                        Ok(s) => {
                            let peer = s.remote_address().to_string();
                            let (input, output) =
                                (s.open_read_channel(), s.open_write_channel(false));
                            spawn(&plan, &graceful, peer, s, input, output);
                        }
                        Err(Error::Closed(_)) => break,
                        Err(e) => log!("accept: {e}"),
                    }
                }
            }
            Some(config) => {
                let server = Arc::new(server.tls(&config));
                let closer = server.clone();
                graceful.install(move || closer.close())?;
                announce(&format!("Started TLS proxy to {target} at {bound}"))?;
                server.on_handshake_error(|peer, e| log!("{peer}: {e}"));
                loop {
                    match server.accept().await {
                        Ok(s) => {
                            let peer = s.remote_address().to_string();
                            let (input, output) =
                                (s.open_read_channel(), s.open_write_channel(false));
                            spawn(&plan, &graceful, peer, s, input, output);
                        }
                        Err(Error::Closed(_)) => break,
                        Err(e) => log!("accept: {e}"),
                    }
                }
            }
        }
        graceful.drain().await;
        Ok(())
    })
}

/// Starts the task that serves one accepted connection (`keep` is its socket, held until the
/// relay is done).
fn spawn<K: Send + 'static>(
    plan: &Arc<Plan>,
    graceful: &Graceful,
    peer: String,
    keep: K,
    mut input: ByteReadChannel,
    mut output: ByteWriteChannel,
) {
    log!("{peer}: accepted");
    let tracked = graceful.track();
    let plan = plan.clone();
    plan.selector.clone().launch(async move {
        let _tracked = tracked;
        let upstream = a_socket(&plan.selector)
            .tcp()
            .connect_timeout(plan.connect_timeout)
            .connect(plan.target.as_str())
            .await;
        let upstream = match upstream {
            Ok(s) => s,
            Err(e) => {
                // The client gets a plain close; the reason goes to the log.
                log!("{peer}: {e}");
                return;
            }
        };
        let mut up = upstream.connection(false);
        match asock::channel::relay(&mut input, &mut output, &mut up.input, &mut up.output).await {
            Ok((sent, received)) => {
                log!(
                    "{peer}: closed ({sent} bytes to {}, {received} back)",
                    plan.target
                )
            }
            Err(e) => log!("{peer}: {e}"),
        }
        drop((input, output, up, keep));
    });
}

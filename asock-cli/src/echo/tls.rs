//! The TLS echo server: the stream server's accept-and-echo loop over TLS sockets.

use std::path::PathBuf;

use asock::tls::{TlsServerConfig, TlsSocket};
use asock::{ByteReadChannel, ByteWriteChannel, SelectorManager, ServerSocket};

use super::stream::{accept_and_echo, EchoSocket};
use super::Mode;
use crate::common::{announce, CliResult};
use crate::log;
use crate::shutdown::Graceful;

/// Serves TLS on `server`: accepts (handshakes run concurrently in the background) and echoes
/// each connection with [`super::stream::serve`].
pub async fn serve(
    selector: &SelectorManager,
    server: ServerSocket,
    config: TlsServerConfig,
    ca: Option<PathBuf>,
    mode: Mode,
    graceful: Graceful,
) -> CliResult {
    let server = std::sync::Arc::new(server.tls(&config));
    let closer = server.clone();
    graceful.install(move || closer.close())?;
    announce(&format!(
        "Started TLS echo telnet server at {}",
        server.local_address()
    ))?;
    if let Some(ca) = ca {
        announce(&format!(
            "Self-signed certificate for localhost, 127.0.0.1 and ::1; its CA certificate is at {}",
            ca.display()
        ))?;
    }
    server.on_handshake_error(|peer, e| log!("{peer}: {e}"));
    let accept = async || server.accept().await;
    accept_and_echo(selector, &graceful, mode, accept).await
}

impl EchoSocket for TlsSocket {
    fn describe(&self) -> String {
        let version = self
            .protocol_version()
            .map(|v| v.to_string())
            .unwrap_or_default();
        format!("{} ({version})", self.remote_address())
    }
    fn channels(&self) -> (ByteReadChannel, ByteWriteChannel) {
        (self.open_read_channel(), self.open_write_channel(false))
    }
}

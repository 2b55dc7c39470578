//! The TLS echo server: the stream server's echo over TLS sockets.

use asock::tls::{TlsServerConfig, TlsSocket};
use asock::{ByteReadChannel, ByteWriteChannel, SelectorManager, ServerSocket};

use super::stream::{echo_connection, EchoSocket};
use super::Mode;
use crate::common::{announce, connection_error, CliResult};
use crate::shutdown::Graceful;
use crate::tls::SelfSigned;

/// Serves TLS on `server`: handshakes run concurrently in the background, and each connection
/// is echoed with [`super::stream::serve`] in the task that ran its handshake, on the loop that
/// accepted it (so no accepted connection passes through the main thread), until a signal
/// closes the listener; then the open connections get the grace period.
pub async fn serve(
    selector: &SelectorManager,
    server: ServerSocket,
    config: TlsServerConfig,
    self_signed: Option<SelfSigned>,
    mode: Mode,
    graceful: Graceful,
) -> CliResult {
    let server = std::sync::Arc::new(server.tls(&config));
    let (closer, sel, grace) = (server.clone(), selector.clone(), graceful.clone());
    graceful.install(move || {
        closer.close();
        // Pending handshakes get the grace period too, then are dropped (accepting ends).
        sel.launch(async move { closer.drain_handshakes(grace.deadline()).await });
    })?;
    announce(&format!(
        "Started TLS echo telnet server at {}",
        server.local_address()
    ))?;
    if let Some(s) = &self_signed {
        announce(&format!(
            "Self-signed certificate for localhost, 127.0.0.1 and ::1 (in a private directory, \
             removed when the server stops); its CA certificate is at {}",
            s.ca.display()
        ))?;
    }
    server.on_handshake_error(|peer, e| connection_error(peer, e));
    let tracker = graceful.clone();
    server
        .serve(move |socket| echo_connection(socket, tracker.track(), mode))
        .await?;
    graceful.drain().await;
    // The CA's directory goes with the server.
    drop(self_signed);
    Ok(())
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

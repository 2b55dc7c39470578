//! A WebSocket echo server: async-tungstenite over asock sockets (through asock's futures-io
//! traits), each connection a task on asock's loops.
//!
//! Every text and binary message comes back as it came; pings are answered with pongs and a
//! close is answered with a close (tungstenite does both). Messages up to 4 MiB; a larger one
//! is refused with close code 1009 (message too big).
//!
//! ```text
//! cargo run --example ws_echo_server                       # 127.0.0.1:9001
//! cargo run --example ws_echo_server -- 127.0.0.1:0        # any free port
//! /usr/bin/python3 -m websockets ws://127.0.0.1:9001/      # Debian's python3-websockets
//! ```
//!
//! The first line on stdout is `Listening on ws://ADDR`.

use std::time::Duration;

use asock::{a_socket, JoinHandle, SelectorManager, SocketAddress};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures::StreamExt;

/// The largest message (and frame) taken from a client.
pub const MAX_MESSAGE: usize = 4 << 20;

/// How long a client may take to send its opening handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server keeps reading (and dropping) after refusing a message that is too large.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Echoes one WebSocket connection until the client closes it.
pub async fn echo(connection: asock::Connection) -> Result<(), WsError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let handshake = async_tungstenite::accept_async_with_config(connection, Some(config));
    let mut ws = match asock::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(ws) => ws?,
        Err(_) => return Ok(()), // a client that never sent its handshake: just close
    };
    while let Some(message) = ws.next().await {
        match message {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => ws.send(m).await?,
            // Ping: tungstenite queued the pong, sent with the next write or read. Close: it
            // queued the reply, and the stream ends after sending it.
            Ok(_) => {}
            Err(WsError::Capacity(e)) => {
                // Too large: say so with close code 1009, then read and drop what the client
                // still sends (bounded in time), so closing does not reset the connection
                // before the client has read the close frame.
                let frame = CloseFrame {
                    code: CloseCode::Size,
                    reason: format!("{e}").into(),
                };
                ws.close(Some(frame)).await?;
                let input = &mut ws.get_mut().input;
                let drain = async {
                    let mut scratch = [0u8; 16 * 1024];
                    while let Ok(1..) = input.read_available(&mut scratch).await {}
                };
                let _ = asock::time::timeout(DRAIN_TIMEOUT, drain).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Binds `addr` and launches the accept loop on `selector`. Returns the bound address and the
/// accept loop's task (it ends only on an accept error).
pub async fn start(
    selector: &SelectorManager,
    addr: &str,
) -> asock::Result<(SocketAddress, JoinHandle<asock::Result<()>>)> {
    let listener = a_socket(selector).tcp().bind(addr).await?;
    let address = listener.local_address().clone();
    let sel = selector.clone();
    let task = selector.launch(async move {
        loop {
            let socket = listener.accept().await?;
            let peer = socket.remote_address().clone();
            sel.launch(async move {
                match echo(socket.connection(false)).await {
                    Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                    Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            });
        }
    });
    Ok((address, task))
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let result = SelectorManager::new().and_then(|selector| {
        selector.run_blocking(async {
            let (address, task) = start(&selector, &addr).await?;
            println!("Listening on ws://{address}");
            task.await?
        })
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

//! `echo-server --udp [ADDR]` and `echo-server --udp --unix PATH`: every datagram goes back to
//! its sender (replies are queued on the socket's outgoing sender, so a busy server sends many
//! per system call, and a GRO buffer from one sender goes back whole as one GSO send). The first SIGINT/SIGTERM closes the socket (a Unix socket file is
//! removed) and the server exits 0.

use std::sync::Arc;

use asock::{a_socket, Datagram, Error};

use super::{selector, EchoArgs};
use crate::common::{announce, bind_error, CliResult, Place};
use crate::log;
use crate::shutdown::{signal_name, Stopper};

/// Runs `asock echo-server --udp`.
pub fn run(args: EchoArgs) -> CliResult {
    let selector = selector(&args)?;
    let place = Place::new(Some(&args.addr), args.unix.as_deref())?;
    let stopper = Stopper::install()?;
    selector.run_blocking(async {
        let socket = a_socket(&selector)
            .udp()
            // Room for bursts of coalesced (GRO) datagrams; the kernel caps it at rmem_max.
            .receive_buffer_size(4 << 20)
            .replace_stale(place.is_unix())
            .bind(&place)
            .await
            .map_err(|e| bind_error(&place, e))?;
        let socket = Arc::new(socket);
        let closer = socket.clone();
        stopper.set(move |sig| {
            tracing::warn!("{}: stopping the UDP echo server", signal_name(sig));
            closer.close();
        });
        announce(&format!(
            "Started echo {} server at {}",
            if place.is_unix() {
                "Unix datagram"
            } else {
                "UDP"
            },
            socket.local_address()
        ))?;
        // The echo runs as a task on an event loop, where the socket's readiness is: no
        // cross-thread wake-up per datagram.
        selector.launch(echo(socket)).await?;
        Ok(())
    })
}

/// Sends every datagram `socket` receives back to its sender, until the socket is closed. A
/// kernel buffer of several datagrams from one sender (coalesced by GRO) goes back whole, as
/// one GSO send; replies leave through the outgoing queue, many per system call.
async fn echo(socket: Arc<asock::BoundDatagramSocket>) {
    let out = socket.outgoing();
    loop {
        match socket.receive_batch().await {
            Ok(batch) => {
                log!(
                    "{}: {} datagram(s), {} bytes",
                    batch.address(),
                    batch.len(),
                    batch.buffer().len()
                );
                let r = if batch.len() > 1 {
                    let (buffer, segment, from) = batch.into_parts();
                    out.send_batch(from, segment, buffer).await
                } else {
                    let (buffer, _, from) = batch.into_parts();
                    out.send(Datagram::new(buffer, from)).await
                };
                match r {
                    Ok(()) => {}
                    Err(Error::Closed(_)) => return,
                    // A reply the kernel refused (e.g. a sender that vanished) is skipped.
                    Err(e) => log!("send: {e}"),
                }
            }
            Err(Error::Closed(_)) => return,
            // One bad datagram never stops the server.
            Err(e) => log!("receive: {e}"),
        }
    }
}

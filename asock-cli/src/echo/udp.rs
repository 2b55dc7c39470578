//! `echo-server --udp [ADDR]`: every datagram goes back to its sender (replies are queued on
//! the socket's outgoing sender, so a busy server sends many per system call).

use asock::{a_socket, Error};

use super::{selector, EchoArgs};
use crate::common::{announce, CliResult};
use crate::log;

/// Runs `asock echo-server --udp`.
pub fn run(args: EchoArgs) -> CliResult {
    let selector = selector(&args)?;
    selector.run_blocking(async {
        let socket = a_socket(&selector).udp().bind(args.addr.as_str()).await?;
        announce(&format!(
            "Started echo UDP server at {}",
            socket.local_address()
        ))?;
        // The echo runs as a task on an event loop, where the socket's readiness is: no
        // cross-thread wake-up per datagram.
        selector.launch(echo(socket)).await?;
        Ok(())
    })
}

/// Sends every datagram `socket` receives back to its sender, until the socket is closed.
async fn echo(socket: asock::BoundDatagramSocket) {
    let out = socket.outgoing();
    loop {
        match socket.receive().await {
            Ok(d) => {
                log!("{}: {} bytes", d.address, d.packet.len());
                match out.send(d).await {
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

//! A UDP echo server: each datagram goes back to its sender.
//!
//! Run `cargo run --example udp_echo [ADDR]` (default `127.0.0.1:2323`), then try
//! `echo hello | socat -t1 - UDP:127.0.0.1:2323`.
//!
//! Replies are queued on the socket's `outgoing()` sender, so a busy server sends them many per
//! system call (`sendmmsg` on Linux), just as it receives many per call.

use asock::{a_socket, SelectorManager};

fn main() -> std::process::ExitCode {
    // One readable line, not the `Debug` dump a `main` returning `Result` prints.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> asock::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2323".into());
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let socket = a_socket(&selector).udp().bind(addr.as_str()).await?;
        println!("Started echo UDP server at {}", socket.local_address());
        // Run the echo as a task on an event loop, next to the socket's readiness.
        let echo = selector.launch(async move {
            let out = socket.outgoing();
            loop {
                match socket.receive().await {
                    Ok(datagram) => out.send(datagram).await?,
                    // An unreadable datagram (e.g. an oversize Unix one) is skipped, not fatal.
                    Err(e @ asock::Error::DatagramTruncated { .. }) => eprintln!("{e}"),
                    Err(e) => return Err(e),
                }
            }
        });
        echo.await?
    })
}

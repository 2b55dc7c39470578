//! asock's UDP echo, for `bench/udp_compare.sh`:
//! `asock-udp-echo [ADDR] [--batch N] [--direct]`.
//!
//! One event loop, one task: `receive()` then send the datagram back. By default receives take
//! up to 16 datagrams per `recvmmsg` and replies go through `outgoing()`, which sends up to 64
//! per `sendmmsg`. `--batch 1 --direct` turns both off (one `recvfrom` and one `sendto` per
//! datagram) to measure what batching gains. Prints `Started ... at ADDR` first, like the peers.

use std::io::Write;

use asock::{a_socket, SelectorManager};

fn main() {
    let mut addr = "127.0.0.1:2323".to_string();
    let mut batch = 16;
    let mut direct = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--batch" => batch = it.next().and_then(|v| v.parse().ok()).unwrap_or(16),
            "--direct" => direct = true,
            s if !s.starts_with("--") => addr = s.to_string(),
            s => {
                eprintln!("error: unknown argument {s}\nusage: asock-udp-echo [ADDR] [--batch N] [--direct]");
                std::process::exit(2);
            }
        }
    }
    let run = || -> asock::Result<()> {
        let selector = SelectorManager::builder().threads(1).build()?;
        selector.run_blocking(async {
            let socket = a_socket(&selector)
                .udp()
                .datagram_batch(batch)
                .bind(addr.as_str())
                .await?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "Started asock UDP echo server (batch {batch}, {}) at {}",
                if direct { "direct send" } else { "outgoing" },
                socket.local_address()
            );
            let _ = out.flush();
            drop(out);
            // The echo runs as a task on the event loop, next to the socket's readiness: no
            // cross-thread wake-up per datagram.
            let echo = selector.launch(async move {
                if direct {
                    loop {
                        if let Ok(d) = socket.receive().await {
                            let _ = socket.send(d).await;
                        }
                    }
                } else {
                    let sender = socket.outgoing();
                    loop {
                        if let Ok(d) = socket.receive().await {
                            let _ = sender.send(d).await;
                        }
                    }
                }
            });
            echo.await
        })
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

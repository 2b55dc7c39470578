//! Sends a numbered datagram to a multicast group every half second, on the loopback interface
//! only (TTL 0: it never leaves this host).
//!
//! Run `cargo run --example multicast_receiver` in one terminal and
//! `cargo run --example multicast_sender` in another. Optional arguments: GROUP PORT COUNT
//! (defaults 239.255.42.42 4242 10).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use asock::{a_socket, Datagram, SelectorManager};

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
    let mut args = std::env::args().skip(1);
    let group: Ipv4Addr = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Ipv4Addr::new(239, 255, 42, 42));
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4242);
    let count: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);

    let selector = SelectorManager::builder().threads(1).build()?;
    selector.run_blocking(async {
        let socket = a_socket(&selector)
            .udp()
            .multicast_interface_v4(Ipv4Addr::LOCALHOST)
            .multicast_loop(true)
            .multicast_ttl(0)
            .bind("127.0.0.1:0")
            .await?;
        let to = SocketAddr::from((group, port));
        for i in 1..=count {
            let text = format!("multicast message {i}");
            socket.send(Datagram::new(text.clone(), to)).await?;
            println!("sent {text:?} to {to}");
            asock::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    })
}

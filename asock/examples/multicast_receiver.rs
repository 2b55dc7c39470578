//! Joins a multicast group on the loopback interface and prints what arrives.
//!
//! Pair it with `cargo run --example multicast_sender`. Optional arguments: GROUP PORT COUNT
//! (defaults 239.255.42.42 4242 10). The socket binds the group address itself, with
//! `reuse_address` on so several receivers can run at once.

use std::net::{Ipv4Addr, SocketAddr};

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
            .reuse_address(true)
            .bind(SocketAddr::from((group, port)))
            .await?;
        socket.join_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
        println!("Joined {group} on 127.0.0.1, listening on port {port}");
        for _ in 0..count {
            let d = socket.receive().await?;
            println!("{}: {}", d.address, String::from_utf8_lossy(&d.packet));
        }
        socket.leave_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
        Ok(())
    })
}

//! The echo server over a Unix-domain stream socket: each line a client sends comes back.
//!
//! Run `cargo run --example unix_echo [PATH]` (default `echo.sock` in the current directory),
//! then `socat - UNIX-CONNECT:echo.sock` and type. A stale socket file left by a crashed server
//! is replaced; a live server's is not. The file is removed when the server stops (Ctrl-C kills
//! the process without running destructors, so the next start replaces the stale file).

use asock::{a_socket, SelectorManager, SocketAddress};

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
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "echo.sock".into());
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .replace_stale(true)
            .bind(SocketAddress::Unix(path.into()))
            .await?;
        println!("Started echo server at {}", server.local_address());

        loop {
            let socket = server.accept().await?;
            selector.launch(async move {
                if let Ok(who) = socket.peer_credentials() {
                    println!("client: pid {:?}, uid {}", who.pid, who.uid);
                }
                let mut input = socket.open_read_channel();
                let mut output = socket.open_write_channel(true);
                while let Ok(Some(line)) = input.read_utf8_line().await {
                    if output.write_str(&format!("{line}\r\n")).await.is_err() {
                        break;
                    }
                }
                let _ = output.close().await;
            });
        }
    })
}

//! A TLS line-echo server: Ktor's echo server over TLS.
//!
//! ```text
//! asock cert --out /tmp/certs          # or any certificate and key you have
//! cargo run --example tls_echo_server -- /tmp/certs/server.pem /tmp/certs/server.key
//! openssl s_client -connect 127.0.0.1:2323 -CAfile /tmp/certs/ca.pem -servername localhost
//! ```

use asock::tls::TlsServerConfig;
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
    let (Some(cert), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: tls_echo_server CERT.pem KEY.pem [ADDR]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2323".into());
    let config = TlsServerConfig::from_pem_files(cert, key)?;
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .bind(addr.as_str())
            .await?
            .tls(&config);
        println!("Started TLS echo server at {}", server.local_address());
        server.on_handshake_error(|peer, e| eprintln!("{peer}: {e}"));
        loop {
            let socket = server.accept().await?;
            selector.launch(async move {
                println!("Socket accepted: {}", socket.remote_address());
                let mut input = socket.open_read_channel();
                let mut output = socket.open_write_channel(true);
                loop {
                    match input.read_utf8_line().await {
                        Ok(Some(line)) => {
                            if output.write_str(&format!("{line}\r\n")).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("{}: {e}", socket.remote_address());
                            break;
                        }
                    }
                }
                let _ = output.close().await;
            });
        }
    })
}

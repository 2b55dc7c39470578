//! The TLS client from Ktor's sockets page, against a local server instead of google.com.
//!
//! It makes a throw-away CA and server certificate, starts a small HTTP-ish TLS server on
//! 127.0.0.1, then does what Ktor's example does: connect, `tls()`, send a request, print the
//! first line of the answer.
//!
//! `cargo run --example tls_client --features test-certs`
//!
//! Against a real server, the client part alone is enough (the OS roots verify it):
//! ```text
//! let socket = a_socket(&selector).tcp().connect("example.org:443").await?;
//! let socket = socket.tls(&TlsConfig::client().build()?).await?;
//! ```

use asock::tls::test_certs::TestCa;
use asock::tls::{TlsConfig, TlsServerConfig};
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
    let selector = SelectorManager::new()?;

    // A local server to talk to, with a certificate for "localhost" from a fresh test CA.
    let ca = TestCa::new("tls_client example CA")?;
    let cert = ca.server_cert(&["localhost", "127.0.0.1"])?;
    let server_config =
        TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())?;

    selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .bind("127.0.0.1:0")
            .await?
            .tls(&server_config);
        let port = server.local_address().port().unwrap_or_default();
        selector.launch(async move {
            while let Ok(socket) = server.accept().await {
                let mut input = socket.open_read_channel();
                let mut output = socket.open_write_channel(true);
                // Read the request head, answer, and close (close_notify).
                while let Ok(Some(line)) = input.read_utf8_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                let _ = output
                    .write_str("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = output.close().await;
            }
        });

        // The client: Ktor's example, verifying the server against our CA.
        let config = TlsConfig::client()
            .add_root_pem(ca.cert_pem().as_bytes())?
            .build()?;
        let socket = a_socket(&selector)
            .tcp()
            .connect(("localhost", port))
            .await?
            .tls(&config)
            .await?;
        let mut w = socket.open_write_channel(false);
        w.write_fully(b"GET / HTTP/1.1\r\n").await?;
        w.write_fully(b"Host: localhost\r\n").await?;
        w.write_fully(b"\r\n").await?;
        w.flush().await?;
        let mut r = socket.open_read_channel();
        println!("{}", r.read_utf8_line().await?.unwrap_or_default());
        println!(
            "({} with {:?}, server verified as {:?})",
            socket
                .protocol_version()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            socket.cipher_suite(),
            socket.server_name().unwrap_or_default()
        );
        Ok(())
    })
}

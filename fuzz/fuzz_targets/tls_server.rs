//! The TLS server fed arbitrary bytes over a real loopback connection: the handshake fails
//! with a typed error (or times out), never panics, and the server keeps accepting.
#![no_main]

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use asock::tls::test_certs::TestCa;
use asock::tls::TlsServerConfig;
use asock::{a_socket, SelectorManager, ServerSocket};

struct Fixture {
    selector: SelectorManager,
    server: ServerSocket,
    config: TlsServerConfig,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let selector = SelectorManager::builder().threads(1).build().unwrap();
        let ca = TestCa::new("fuzz CA").unwrap();
        let cert = ca.server_cert(&["localhost"]).unwrap();
        let config = TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap()
            .with_handshake_timeout(Duration::from_millis(200));
        let server = selector.run_blocking(async {
            a_socket(&selector).tcp().bind("127.0.0.1:0").await.unwrap()
        });
        Fixture {
            selector,
            server,
            config,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let port = f.server.port().unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = client.write_all(data);
    let _ = client.shutdown(Shutdown::Write);
    f.selector.run_blocking(async {
        let socket = f.server.accept().await.unwrap();
        // Arbitrary bytes then end of stream: the handshake must end, one way or another.
        let r = asock::time::timeout(Duration::from_secs(5), socket.tls_server(&f.config)).await;
        match r {
            Ok(Ok(tls)) => tls.close(),
            Ok(Err(_)) => {}
            Err(_) => panic!("handshake neither finished nor failed within 5 s"),
        }
    });
});

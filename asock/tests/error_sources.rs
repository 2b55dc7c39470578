//! Errors keep what caused them as `source()`: the rustls error behind a failed handshake or a
//! key that does not match its certificate, the `io::Error` of a certificate file that cannot
//! be read. Real sockets on 127.0.0.1.

use std::error::Error as _;
use std::time::Duration;

use asock::tls::rustls;
use asock::tls::test_certs::TestCa;
use asock::tls::{TlsConfig, TlsServerConfig};
use asock::{a_socket, Error, SelectorManager, TlsReason};

fn rustls_source(e: &Error) -> Option<&rustls::Error> {
    e.source()?.downcast_ref::<rustls::Error>()
}

#[test]
fn a_failed_handshake_keeps_the_rustls_error_as_its_source() {
    let selector = SelectorManager::builder().threads(1).build().unwrap();
    let ca = TestCa::new("asock test CA").unwrap();
    let server_cert = ca.server_cert(&["127.0.0.1"]).unwrap();
    let server_config = TlsServerConfig::from_pem(
        server_cert.chain_pem.as_bytes(),
        server_cert.key_pem.as_bytes(),
    )
    .unwrap();
    // The client trusts another CA only: verification fails with an unknown issuer.
    let other = TestCa::new("another CA").unwrap();
    let client_config = TlsConfig::client()
        .os_roots(false)
        .add_root_pem(other.cert_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let e = selector
        .run_blocking(async {
            let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
            let addr = server.local_address().clone();
            let sc = server_config.clone();
            let accepted = selector.launch(async move {
                let socket = server.accept().await?;
                // Fails too (the client aborts); only the client's error is looked at.
                let _ = socket.tls_server(&sc).await;
                Ok::<(), Error>(())
            });
            let socket = a_socket(&selector).tcp().connect(addr).await?;
            let r = asock::time::timeout(Duration::from_secs(10), socket.tls(&client_config))
                .await
                .expect("the handshake ends within 10 s");
            let _ = accepted.await;
            Ok::<_, Error>(r.expect_err("verification must fail"))
        })
        .unwrap();
    assert!(
        matches!(
            e,
            Error::Tls {
                reason: TlsReason::UnknownIssuer,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        matches!(
            rustls_source(&e),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "source: {:?}",
        e.source()
    );
}

#[test]
fn a_key_that_does_not_match_keeps_the_rustls_error_as_its_source() {
    let ca = TestCa::new("asock test CA").unwrap();
    let a = ca.server_cert(&["localhost"]).unwrap();
    let b = ca.server_cert(&["localhost"]).unwrap();
    let e = TlsServerConfig::from_pem(a.chain_pem.as_bytes(), b.key_pem.as_bytes())
        .expect_err("a key of another certificate is refused");
    assert!(matches!(e, Error::TlsConfig { .. }), "{e:?}");
    assert!(rustls_source(&e).is_some(), "source: {:?}", e.source());
}

#[test]
fn an_unreadable_certificate_file_keeps_the_io_error_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = TlsServerConfig::from_pem_files(&missing, &missing)
        .expect_err("a missing file is an error");
    assert!(matches!(e, Error::TlsConfig { .. }), "{e:?}");
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

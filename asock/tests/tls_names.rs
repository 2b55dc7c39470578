//! How a TLS client matches the server's certificate against the name it verifies (RFC 6125,
//! as rustls-webpki implements it). Ktor's JVM verifier is more lenient on the two rules marked
//! below; docs/from-ktor.md and the `asock::tls` docs say so.

use asock::{a_socket, Error, SelectorManager, TlsReason};

/// Serves `cert` on 127.0.0.1 and connects verifying `name`; the client's handshake result.
fn verify(cert_names: &[&str], name: &str) -> asock::Result<()> {
    let (server_cfg, client_cfg) = asock_test_support::tls_configs(cert_names, name);
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let accepting = sel.launch(async move {
            let plain = server.accept().await.unwrap();
            let _ = plain.tls_server(&server_cfg).await;
        });
        let plain = a_socket(&sel)
            .tcp()
            .connect(("127.0.0.1", port))
            .await
            .unwrap();
        let r = plain.tls(&client_cfg).await.map(|_| ());
        let _ = accepting.await;
        r
    })
}

fn is_name_mismatch(r: &asock::Result<()>) -> bool {
    matches!(
        r,
        Err(Error::Tls {
            reason: TlsReason::NameMismatch,
            ..
        })
    )
}

#[test]
fn a_wildcard_matches_exactly_one_leftmost_label() {
    verify(&["*.example.test"], "a.example.test").expect("one label under the wildcard");
    let r = verify(&["*.example.test"], "a.b.example.test");
    assert!(is_name_mismatch(&r), "two labels: {r:?}");
    let r = verify(&["*.example.test"], "example.test");
    assert!(is_name_mismatch(&r), "no label: {r:?}");
}

/// Ktor (the JVM's verifier) accepts `*.*.example.test` for `a.b.example.test`; asock does not.
#[test]
fn nested_wildcards_never_match() {
    let r = verify(&["*.*.example.test"], "a.b.example.test");
    assert!(is_name_mismatch(&r), "{r:?}");
}

/// Ktor treats `trailing.example.test.` in a certificate as `trailing.example.test`; asock
/// does not match a certificate entry with a trailing dot.
#[test]
fn certificate_names_with_a_trailing_dot_never_match() {
    let r = verify(&["trailing.example.test."], "trailing.example.test");
    assert!(is_name_mismatch(&r), "{r:?}");
    verify(&["trailing.example.test"], "trailing.example.test").expect("the plain name");
}

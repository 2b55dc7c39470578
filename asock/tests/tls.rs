//! TLS client and server: real sockets on 127.0.0.1, against asock itself, `openssl s_client`,
//! `openssl s_server` and python's `ssl` module.

use asock_test_support::{have, openssl_s_server, selector, wait_output};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asock::tls::test_certs::{KeyType, TestCa, TestCert};
use asock::tls::{ClientAuth, TlsConfig, TlsServerConfig, TlsServerSocket, TlsSocket, TlsVersion};
use asock::{a_socket, Error, SelectorManager, TlsReason};

struct Pki {
    ca: TestCa,
    server: TestCert,
}

fn pki() -> Pki {
    let ca = TestCa::new("asock test CA").unwrap();
    let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    Pki { ca, server }
}

fn server_config(cert: &TestCert) -> TlsServerConfig {
    TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap()
}

fn client_config(ca: &TestCa) -> asock::tls::TlsConfigBuilder {
    TlsConfig::client()
        .os_roots(false)
        .add_root_pem(ca.cert_pem().as_bytes())
        .unwrap()
}

/// A server config for localhost and 127.0.0.1, and a client config that trusts its CA.
fn configs() -> (TlsServerConfig, TlsConfig) {
    let pki = pki();
    (
        server_config(&pki.server),
        client_config(&pki.ca).build().unwrap(),
    )
}

fn tls_reason(e: &Error) -> Option<TlsReason> {
    match e {
        Error::Tls { reason, .. } => Some(*reason),
        _ => None,
    }
}

/// A TLS line-echo server; it answers each line with the line, and closes (close_notify) at
/// end of stream.
async fn echo_server(
    selector: &SelectorManager,
    config: &TlsServerConfig,
) -> (TlsServerSocket, u16) {
    let server = a_socket(selector)
        .tcp()
        .bind("127.0.0.1:0")
        .await
        .unwrap()
        .tls(config);
    let port = server.local_address().port().unwrap();
    (server, port)
}

fn spawn_echo(selector: &SelectorManager, server: TlsServerSocket) {
    let sel = selector.clone();
    selector.launch(async move {
        while let Ok(socket) = server.accept().await {
            sel.launch(echo(socket));
        }
    });
}

async fn echo(socket: TlsSocket) {
    let mut input = socket.open_read_channel();
    let mut output = socket.open_write_channel(true);
    while let Ok(Some(line)) = input.read_utf8_line().await {
        if output.write_str(&format!("{line}\r\n")).await.is_err() {
            return;
        }
    }
    let _ = output.close().await;
}

#[test]
fn round_trip_and_session_details() {
    let pki = pki();
    let sel = selector();
    let scfg = TlsServerConfig::builder()
        .cert_pem(
            pki.server.chain_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .unwrap()
        .alpn(["h2", "asock/1"])
        .build()
        .unwrap();
    let ccfg = client_config(&pki.ca).alpn(["asock/1"]).build().unwrap();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await?;
        let port = server.port().unwrap();
        let s2 = sel.clone();
        let h = sel.launch(async move {
            let plain = server.accept().await?;
            let tls = plain.tls_server(&scfg).await?;
            assert_eq!(tls.server_name(), Some("localhost"));
            assert_eq!(tls.negotiated_alpn(), Some(&b"asock/1"[..]));
            assert!(tls.peer_certificates().is_empty());
            echo(tls).await;
            drop(s2);
            Ok::<_, Error>(())
        });
        let socket = a_socket(&sel).tcp().connect(("localhost", port)).await;
        // localhost may resolve to ::1 first; we only listen on 127.0.0.1, so connect falls back.
        let socket = socket?.tls(&ccfg).await?;
        assert_eq!(socket.server_name(), Some("localhost"));
        assert_eq!(socket.negotiated_alpn(), Some(&b"asock/1"[..]));
        assert_eq!(socket.protocol_version(), Some(TlsVersion::Tls13));
        assert!(socket.cipher_suite().is_some());
        assert_eq!(socket.peer_certificates().len(), 2);
        let mut output = socket.open_write_channel(false);
        let mut input = socket.open_read_channel();
        let big = "x".repeat(200_000);
        output.write_str("hello\r\n").await?;
        output.write_str(&big).await?;
        output.write_str("\r\nbye\n").await?;
        output.flush().await?;
        assert_eq!(input.read_utf8_line().await?.as_deref(), Some("hello"));
        assert_eq!(input.read_utf8_line().await?.as_deref(), Some(big.as_str()));
        assert_eq!(input.read_utf8_line().await?.as_deref(), Some("bye"));
        output.close().await?;
        assert_eq!(
            input.read_utf8_line().await?,
            None,
            "close_notify is end of stream"
        );
        h.await??;
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn each_protocol_version() {
    let pki = pki();
    let sel = selector();
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let scfg = server_config(&pki.server);
        let ccfg = client_config(&pki.ca)
            .protocol_versions(&[v])
            .build()
            .unwrap();
        sel.run_blocking(async {
            let (server, port) = echo_server(&sel, &scfg).await;
            spawn_echo(&sel, server);
            let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
            let s = s.tls(&ccfg).await?;
            assert_eq!(s.protocol_version(), Some(v));
            let mut o = s.open_write_channel(true);
            let mut i = s.open_read_channel();
            o.write_str("ping\n").await?;
            assert_eq!(i.read_utf8_line().await?.as_deref(), Some("ping"));
            Ok::<_, Error>(())
        })
        .unwrap();
    }
}

/// Runs one client handshake against a server with `server_cert`, returning both sides' results.
fn handshake_pair(
    server_cfg: TlsServerConfig,
    client_cfg: TlsConfig,
    connect_host: &str,
) -> (asock::Result<TlsSocket>, asock::Result<TlsSocket>) {
    // The sockets outlive this function: their manager must too (dropping its last handle
    // would close them).
    static SEL: std::sync::OnceLock<asock::SelectorManager> = std::sync::OnceLock::new();
    let sel = SEL.get_or_init(selector).clone();
    let host = connect_host.to_string();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let h = sel.launch(async move {
            let plain = server.accept().await.unwrap();
            plain.tls_server(&server_cfg).await
        });
        let c = match a_socket(&sel).tcp().connect((host.as_str(), port)).await {
            Ok(s) => s.tls(&client_cfg).await,
            Err(e) => Err(e),
        };
        let s = h.await.unwrap();
        (c, s)
    })
}

#[test]
fn wrong_ca_is_unknown_issuer() {
    let pki = pki();
    let other = TestCa::new("other CA").unwrap();
    let (c, s) = handshake_pair(
        server_config(&pki.server),
        client_config(&other).build().unwrap(),
        "127.0.0.1",
    );
    let e = c.unwrap_err();
    assert_eq!(tls_reason(&e), Some(TlsReason::UnknownIssuer), "{e}");
    assert!(e.to_string().contains("unknown issuer"), "{e}");
    let se = s.unwrap_err();
    assert_eq!(tls_reason(&se), Some(TlsReason::AlertReceived), "{se}");
}

#[test]
fn wrong_name_is_name_mismatch() {
    let pki = pki();
    let (c, _) = handshake_pair(
        server_config(&pki.server),
        client_config(&pki.ca)
            .server_name("example.org")
            .unwrap()
            .build()
            .unwrap(),
        "127.0.0.1",
    );
    let e = c.unwrap_err();
    assert_eq!(tls_reason(&e), Some(TlsReason::NameMismatch), "{e}");
}

#[test]
fn ip_literal_checked_against_ip_sans() {
    let pki = pki();
    // The default name is the IP connected to: valid here (the cert has 127.0.0.1).
    let (c, s) = handshake_pair(
        server_config(&pki.server),
        client_config(&pki.ca).build().unwrap(),
        "127.0.0.1",
    );
    assert_eq!(c.unwrap().server_name(), Some("127.0.0.1"));
    s.unwrap();
    // A certificate without that IP SAN fails, even though its DNS name would match "localhost".
    let dns_only = pki.ca.server_cert(&["localhost"]).unwrap();
    let (c, _) = handshake_pair(
        server_config(&dns_only),
        client_config(&pki.ca).build().unwrap(),
        "127.0.0.1",
    );
    assert_eq!(tls_reason(&c.unwrap_err()), Some(TlsReason::NameMismatch));
}

#[test]
fn expired_certificate_is_expired() {
    let pki = pki();
    let expired = pki
        .ca
        .expired_server_cert(&["localhost", "127.0.0.1"])
        .unwrap();
    let (c, _) = handshake_pair(
        server_config(&expired),
        client_config(&pki.ca).build().unwrap(),
        "127.0.0.1",
    );
    let e = c.unwrap_err();
    assert_eq!(tls_reason(&e), Some(TlsReason::Expired), "{e}");
}

#[test]
fn danger_accept_invalid_certs_accepts_anything() {
    let pki = pki();
    let expired = pki.ca.expired_server_cert(&["elsewhere.test"]).unwrap();
    let (c, s) = handshake_pair(
        server_config(&expired),
        TlsConfig::client()
            .danger_accept_invalid_certs()
            .build()
            .unwrap(),
        "127.0.0.1",
    );
    c.unwrap();
    s.unwrap();
}

fn client_auth_server(pki: &Pki, mode: ClientAuth) -> TlsServerConfig {
    TlsServerConfig::builder()
        .cert_pem(
            pki.server.chain_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .unwrap()
        .client_auth(mode, pki.ca.cert_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

#[test]
fn missing_client_cert_is_client_cert_required() {
    let pki = pki();
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let (c, s) = handshake_pair(
            client_auth_server(&pki, ClientAuth::Required),
            client_config(&pki.ca)
                .protocol_versions(&[v])
                .build()
                .unwrap(),
            "127.0.0.1",
        );
        let se = s.unwrap_err();
        assert_eq!(
            tls_reason(&se),
            Some(TlsReason::ClientCertRequired),
            "{v}: {se}"
        );
        // TLS 1.2 fails the client's handshake; in TLS 1.3 the client finishes first and sees
        // the server's alert on its first read.
        if let Ok(sock) = c {
            let r = asock::block_on(async { sock.open_read_channel().read_utf8_line().await });
            let e = r.unwrap_err();
            assert_eq!(tls_reason(&e), Some(TlsReason::ClientCertRequired), "{e}");
        }
    }
}

#[test]
fn client_certificates_of_each_key_type() {
    let pki = pki();
    let mut certs = vec![
        pki.ca.client_cert("client-p256").unwrap(),
        pki.ca
            .cert_with_key(&["client-p384"], false, KeyType::EcdsaP384)
            .unwrap(),
        pki.ca
            .cert_with_key(&["client-ed25519"], false, KeyType::Ed25519)
            .unwrap(),
    ];
    if let Some(rsa) = openssl_rsa_client_cert(&pki.ca) {
        certs.push(rsa);
    }
    for cert in certs {
        let ccfg = client_config(&pki.ca)
            .client_cert_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let (c, s) = handshake_pair(
            client_auth_server(&pki, ClientAuth::Required),
            ccfg,
            "127.0.0.1",
        );
        c.unwrap();
        let s = s.unwrap();
        assert!(!s.peer_certificates().is_empty());
    }
    // Optional: no certificate is fine.
    let (c, s) = handshake_pair(
        client_auth_server(&pki, ClientAuth::Optional),
        client_config(&pki.ca).build().unwrap(),
        "127.0.0.1",
    );
    c.unwrap();
    assert!(s.unwrap().peer_certificates().is_empty());
}

/// An RSA client certificate signed by the test CA, made with the openssl tool.
fn openssl_rsa_client_cert(ca: &TestCa) -> Option<TestCert> {
    let dir = tempfile::tempdir().ok()?;
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.cert_pem()).ok()?;
    std::fs::write(p("ca.key"), ca.key_pem()).ok()?;
    std::fs::write(
        p("ext.cnf"),
        "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:client-rsa\n",
    )
    .ok()?;
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ok = run(&["genrsa", "-out", "rsa.key", "2048"])
        && run(&[
            "req",
            "-new",
            "-key",
            "rsa.key",
            "-subj",
            "/CN=client-rsa",
            "-out",
            "rsa.csr",
        ])
        && run(&[
            "x509",
            "-req",
            "-in",
            "rsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "rsa.pem",
        ]);
    if !ok {
        eprintln!("openssl not usable: skipping the RSA client certificate");
        return None;
    }
    let cert_pem = std::fs::read_to_string(p("rsa.pem")).ok()?;
    Some(TestCert {
        chain_pem: cert_pem.clone(),
        cert_pem,
        key_pem: std::fs::read_to_string(p("rsa.key")).ok()?,
    })
}

#[test]
fn sni_picks_the_certificate() {
    let ca = TestCa::new("sni CA").unwrap();
    let a = ca.server_cert(&["a.test"]).unwrap();
    let b = ca.server_cert(&["b.test"]).unwrap();
    let scfg = TlsServerConfig::builder()
        .cert_pem(a.chain_pem.as_bytes(), a.key_pem.as_bytes())
        .unwrap()
        .sni_cert_pem("b.test", b.chain_pem.as_bytes(), b.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    for name in ["a.test", "b.test"] {
        let (c, s) = handshake_pair(
            scfg.clone(),
            client_config(&ca)
                .server_name(name)
                .unwrap()
                .build()
                .unwrap(),
            "127.0.0.1",
        );
        assert_eq!(c.unwrap().server_name(), Some(name));
        assert_eq!(s.unwrap().server_name(), Some(name));
    }
}

#[test]
fn sessions_resume() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        spawn_echo(&sel, server);
        let mut resumed = Vec::new();
        for _ in 0..3 {
            let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
            let s = s.tls(&ccfg).await?;
            let mut o = s.open_write_channel(true);
            let mut i = s.open_read_channel();
            // Reading lets the client take the server's session tickets.
            o.write_str("x\n").await?;
            assert_eq!(i.read_utf8_line().await?.as_deref(), Some("x"));
            o.close().await?;
            assert_eq!(i.read_utf8_line().await?, None);
            resumed.push(s.is_resumed());
        }
        assert_eq!(resumed, [false, true, true]);
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn truncation_is_an_error_not_eof() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await?;
        let port = server.port().unwrap();
        sel.launch(async move {
            let s = server
                .accept()
                .await
                .unwrap()
                .tls_server(&scfg)
                .await
                .unwrap();
            let mut o = s.open_write_channel(true);
            o.write_str("partial\n").await.unwrap();
            // Close TCP without close_notify.
            s.socket().close();
        });
        let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
        let s = s.tls(&ccfg).await?;
        let mut i = s.open_read_channel();
        assert_eq!(i.read_utf8_line().await?.as_deref(), Some("partial"));
        let e = i.read_utf8_line().await.unwrap_err();
        assert_eq!(tls_reason(&e), Some(TlsReason::Truncated), "{e}");
        Ok::<_, Error>(())
    })
    .unwrap();
}

/// Records, then the end, in one TCP write from a plain rustls client: the reader gets every
/// byte, then a clean end of stream for close_notify, or `Truncated` for a TCP close without it.
#[test]
fn records_and_their_end_in_one_write() {
    use asock::tls::rustls;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pki = pki();
    let scfg = server_config(&pki.server);
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ccfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let sel = selector();
    for close_notify in [true, false] {
        let ccfg = ccfg.clone();
        sel.run_blocking(async {
            let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await?;
            let port = server.port().unwrap();
            let client = std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut conn = rustls::ClientConnection::new(ccfg, name).unwrap();
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp).unwrap();
                }
                // Three records of 5 bytes and the end, sent with one write.
                for _ in 0..3 {
                    conn.writer().write_all(b"hello").unwrap();
                }
                if close_notify {
                    conn.send_close_notify();
                }
                let mut out = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut out).unwrap();
                }
                tcp.write_all(&out).unwrap();
                // Half-close and read until the server closes: closing with its session
                // tickets unread would reset the connection instead.
                tcp.shutdown(std::net::Shutdown::Write).unwrap();
                let _ = std::io::copy(&mut tcp, &mut std::io::sink());
            });
            let s = server.accept().await?.tls_server(&scfg).await?;
            s.set_socket_timeout(Some(Duration::from_secs(10)));
            let mut input = s.open_read_channel();
            let mut got = Vec::new();
            let end = loop {
                let mut buf = [0u8; 64];
                match input.read_available(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Some(tls_reason(&e).unwrap_or_else(|| panic!("{e}"))),
                }
            };
            s.close();
            client.join().unwrap();
            assert_eq!(got, b"hellohellohello");
            let want = if close_notify {
                None
            } else {
                Some(TlsReason::Truncated)
            };
            assert_eq!(end, want, "close_notify sent: {close_notify}");
            Ok::<_, Error>(())
        })
        .unwrap();
    }
}

/// Reads fill the channel's buffer across records: a bulk stream arrives intact and in order,
/// and its end (a clean close_notify, or a TCP close without one) comes after the last byte.
#[test]
fn bulk_stream_arrives_whole_before_its_end() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    // 3 MiB in writes of uneven sizes, so records end anywhere in a read.
    let data: Arc<Vec<u8>> = Arc::new((0..3u32 << 20).map(|i| (i % 251) as u8).collect());
    for clean in [true, false] {
        sel.run_blocking(async {
            let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await?;
            let port = server.port().unwrap();
            let (scfg, d) = (scfg.clone(), data.clone());
            sel.launch(async move {
                let s = server
                    .accept()
                    .await
                    .unwrap()
                    .tls_server(&scfg)
                    .await
                    .unwrap();
                let mut o = s.open_write_channel(false);
                let mut rest = &d[..];
                let mut n = 1;
                while !rest.is_empty() {
                    let k = (n * 7919 % 70_000 + 1).min(rest.len());
                    o.write_fully(&rest[..k]).await.unwrap();
                    rest = &rest[k..];
                    n += 1;
                }
                if clean {
                    o.close().await.unwrap();
                } else {
                    o.flush().await.unwrap();
                    s.socket().close(); // no close_notify
                }
            });
            let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
            let s = s.tls(&ccfg).await?;
            let mut i = s.open_read_channel();
            let mut got = Vec::with_capacity(data.len());
            let end = loop {
                match i.fill_buf().await {
                    Ok([]) => break Ok(()),
                    Ok(chunk) => {
                        let n = chunk.len();
                        got.extend_from_slice(chunk);
                        i.consume(n);
                    }
                    Err(e) => break Err(e),
                }
                assert!(got.len() <= data.len(), "more bytes than were sent");
            };
            assert_eq!(got.len(), data.len(), "clean={clean}");
            assert!(got == *data, "the stream differs (clean={clean})");
            match end {
                Ok(()) => assert!(
                    clean,
                    "a TCP close without close_notify read as a clean end"
                ),
                Err(e) => {
                    assert!(!clean, "{e}");
                    assert_eq!(tls_reason(&e), Some(TlsReason::Truncated), "{e}");
                }
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    }
}

#[test]
fn plain_tcp_and_random_bytes_are_dropped_quickly_while_tls_is_served() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    let failures = Arc::new(AtomicUsize::new(0));
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let port = sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        let (f, r) = (failures.clone(), reasons.clone());
        server.on_handshake_error(move |_, e| {
            f.fetch_add(1, Ordering::SeqCst);
            r.lock().unwrap().push(tls_reason(e));
        });
        spawn_echo(&sel, server);
        port
    });
    let payloads: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"hello\n".to_vec(),
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        // A TLS record header announcing a huge handshake, then garbage.
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4],
    ];
    for p in &payloads {
        let start = Instant::now();
        let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = t.write_all(p);
        let mut sink = Vec::new();
        let _ = t.read_to_end(&mut sink); // ends when the server drops us
        let took = start.elapsed();
        // The oversized-record header only fails once the server gives up waiting for the rest
        // (the handshake timeout); everything else fails on the spot.
        if p[0] != 0x16 {
            assert!(
                took < Duration::from_secs(2),
                "took {took:?} for {:?}",
                &p[..4]
            );
        }
        // TLS clients are still served.
        sel.run_blocking(async {
            let s = a_socket(&sel)
                .tcp()
                .connect(("127.0.0.1", port))
                .await?
                .tls(&ccfg)
                .await?;
            let mut o = s.open_write_channel(true);
            let mut i = s.open_read_channel();
            o.write_str("still here\n").await?;
            assert_eq!(i.read_utf8_line().await?.as_deref(), Some("still here"));
            Ok::<_, Error>(())
        })
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while failures.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(failures.load(Ordering::SeqCst) >= 3);
    assert!(reasons
        .lock()
        .unwrap()
        .contains(&Some(TlsReason::ProtocolError)));
}

#[test]
fn stalled_handshake_is_dropped_at_the_timeout() {
    let pki = pki();
    let scfg = server_config(&pki.server).with_handshake_timeout(Duration::from_millis(400));
    let sel = selector();
    let (port, h) = sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let h = sel.launch(async move {
            let s = server.accept().await.unwrap();
            let start = Instant::now();
            let r = s.tls_server(&scfg).await;
            (r.map(|_| ()), start.elapsed())
        });
        (port, h)
    });
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Half a ClientHello record header, then silence.
    t.write_all(&[0x16, 0x03, 0x01]).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = t.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "dropped without a reply");
    assert!(start.elapsed() < Duration::from_secs(3));
    let (r, took) = asock::block_on(h).unwrap();
    assert_eq!(
        tls_reason(&r.unwrap_err()),
        Some(TlsReason::HandshakeTimeout)
    );
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A shorter socket timeout bounds the handshake too.
    let scfg = server_config(&pki.server);
    let r: (asock::Result<()>, Duration) = sel.run_blocking(async {
        let server = a_socket(&sel)
            .tcp()
            .socket_timeout(Duration::from_millis(300))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let port = server.port().unwrap();
        let _keep = std::thread::spawn(move || {
            // Silent for as long as the default handshake timeout (10 s): only the socket
            // timeout can end the handshake before that.
            let t = TcpStream::connect(("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_secs(10));
            drop(t);
        });
        let s = server.accept().await.unwrap();
        let start = Instant::now();
        (s.tls_server(&scfg).await.map(|_| ()), start.elapsed())
    });
    assert_eq!(
        tls_reason(&r.0.unwrap_err()),
        Some(TlsReason::HandshakeTimeout)
    );
    // 300 ms, with a wide margin for a loaded machine (it failed once at a 1 s bound under a
    // load average of 9), still far below the 10 s the handshake timeout alone would take.
    assert!(r.1 < Duration::from_secs(5), "{:?}", r.1);
}

#[test]
fn two_hundred_clients_fifty_round_trips_each() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    let ok = sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        spawn_echo(&sel, server);
        let mut handles = Vec::new();
        for c in 0..200 {
            let (sel2, ccfg) = (sel.clone(), ccfg.clone());
            handles.push(sel.launch(async move {
                let s = a_socket(&sel2).tcp().connect(("127.0.0.1", port)).await?;
                let s = s.tls(&ccfg).await?;
                let mut o = s.open_write_channel(true);
                let mut i = s.open_read_channel();
                for r in 0..50 {
                    let msg = format!("client {c} round {r} {}", "z".repeat((c * 7 + r) % 300));
                    o.write_str(&msg).await?;
                    o.write_str("\n").await?;
                    let back = i.read_utf8_line().await?;
                    assert_eq!(back.as_deref(), Some(msg.as_str()));
                }
                o.close().await?;
                assert_eq!(i.read_utf8_line().await?, None);
                Ok::<_, Error>(())
            }));
        }
        let mut ok = 0;
        for h in handles {
            h.await.unwrap().unwrap();
            ok += 1;
        }
        ok
    });
    assert_eq!(ok, 200);
}

/// One TLS client: connects, says `line`, expects it back, closes.
async fn say_and_hear(sel: &SelectorManager, port: u16, ccfg: &TlsConfig, line: &str) {
    let s = a_socket(sel)
        .tcp()
        .connect(("127.0.0.1", port))
        .await
        .unwrap();
    let s = s.tls(ccfg).await.unwrap();
    let (mut i, mut o) = (s.open_read_channel(), s.open_write_channel(true));
    o.write_str(&format!("{line}\n")).await.unwrap();
    assert_eq!(i.read_utf8_line().await.unwrap().as_deref(), Some(line));
    o.close().await.unwrap();
    assert_eq!(i.read_utf8_line().await.unwrap(), None);
}

#[test]
fn serve_runs_each_connection_on_a_loop_and_returns_once_closed() {
    let (scfg, ccfg) = configs();
    let sel = SelectorManager::builder()
        .threads(2)
        .name("tls-serve")
        .build()
        .unwrap();
    let threads = Arc::new(Mutex::new(Vec::new()));
    sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        let server = Arc::new(server);
        // Handshaken before `serve` runs: it waits in the ready queue, and is served too.
        let sel2 = sel.clone();
        let (c2, early) = (ccfg.clone(), sel.clone());
        let first = early.launch(async move { say_and_hear(&sel2, port, &c2, "early").await });
        let t0 = Instant::now();
        while server.connections() == 0 && t0.elapsed() < Duration::from_secs(5) {
            asock::time::sleep(Duration::from_millis(5)).await;
        }
        asock::time::sleep(Duration::from_millis(100)).await;
        let (srv, seen) = (server.clone(), threads.clone());
        let serving = sel.launch(async move {
            srv.serve(move |socket| {
                let name = std::thread::current().name().map(str::to_owned);
                seen.lock().unwrap().push(name);
                echo(socket)
            })
            .await
        });
        first.await.unwrap();
        let clients: Vec<_> = (0..16)
            .map(|c| {
                let (sel2, c2) = (sel.clone(), ccfg.clone());
                sel.launch(
                    async move { say_and_hear(&sel2, port, &c2, &format!("client {c}")).await },
                )
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        server.close();
        let r = asock::time::timeout(Duration::from_secs(5), serving).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "serve did not return Ok at close: {r:?}"
        );
    });
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 17, "every connection was served once");
    for name in threads.iter() {
        let name = name.as_deref().unwrap_or("");
        assert!(
            name.starts_with("tls-serve"),
            "served on {name:?}, not a loop"
        );
    }
}

#[test]
fn dropping_serve_hands_connections_back_to_accept() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        let server = Arc::new(server);
        let srv = server.clone();
        let serving = sel.launch(async move { srv.serve(echo).await });
        say_and_hear(&sel, port, &ccfg, "served").await;
        serving.cancel();
        asock::time::sleep(Duration::from_millis(50)).await;
        let (sel2, c2) = (sel.clone(), ccfg.clone());
        let client = sel.launch(async move { say_and_hear(&sel2, port, &c2, "accepted").await });
        let socket = asock::time::timeout(Duration::from_secs(5), server.accept())
            .await
            .expect("accept after serve was dropped")
            .unwrap();
        echo(socket).await;
        client.await.unwrap();
    });
}

#[test]
fn starttls_on_a_connection() {
    let (scfg, ccfg) = configs();
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await?;
        let port = server.port().unwrap();
        sel.launch(async move {
            let conn = server.accept().await.unwrap().connection(true);
            let mut conn = conn;
            let line = conn.input.read_utf8_line().await.unwrap();
            assert_eq!(line.as_deref(), Some("STARTTLS"));
            conn.output.write_str("GO\r\n").await.unwrap();
            let tls = conn.tls_server(&scfg).await.unwrap();
            echo(tls).await;
        });
        let mut conn = a_socket(&sel)
            .tcp()
            .connect(("127.0.0.1", port))
            .await?
            .connection(true);
        conn.output.write_str("STARTTLS\r\n").await?;
        assert_eq!(conn.input.read_utf8_line().await?.as_deref(), Some("GO"));
        let tls = conn.tls(&ccfg).await?;
        let mut o = tls.open_write_channel(true);
        let mut i = tls.open_read_channel();
        o.write_str("secret\n").await?;
        assert_eq!(i.read_utf8_line().await?.as_deref(), Some("secret"));
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn futures_io_traits() {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki();
    let scfg = server_config(&pki.server);
    let ccfg = client_config(&pki.ca).build().unwrap();
    let sel = selector();
    sel.run_blocking(async {
        let (server, port) = echo_server(&sel, &scfg).await;
        spawn_echo(&sel, server);
        let mut s = a_socket(&sel)
            .tcp()
            .connect(("127.0.0.1", port))
            .await?
            .tls(&ccfg)
            .await?;
        s.write_all(b"abc\n").await.unwrap();
        s.flush().await.unwrap();
        AsyncWriteExt::close(&mut s).await.unwrap(); // close_notify; the server echoes and closes
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"abc\r\n");
        Ok::<_, Error>(())
    })
    .unwrap();
}

// ---- interop with independent peers -------------------------------------------------------

fn write_pki(pki: &Pki, client: Option<&TestCert>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), &pki.server.chain_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &pki.server.key_pem).unwrap();
    if let Some(c) = client {
        std::fs::write(dir.path().join("client.pem"), &c.chain_pem).unwrap();
        std::fs::write(dir.path().join("client.key"), &c.key_pem).unwrap();
    }
    dir
}

/// Server for the interop clients: answers one line with `<line> <version>` and closes.
fn spawn_version_reply_server(sel: &SelectorManager, scfg: &TlsServerConfig) -> u16 {
    sel.run_blocking(async {
        let (server, port) = echo_server(sel, scfg).await;
        let s2 = sel.clone();
        sel.launch(async move {
            while let Ok(s) = server.accept().await {
                s2.launch(async move {
                    let mut i = s.open_read_channel();
                    let mut o = s.open_write_channel(true);
                    if let Ok(Some(line)) = i.read_utf8_line().await {
                        let v = s
                            .protocol_version()
                            .map(|v| v.to_string())
                            .unwrap_or_default();
                        let _ = o.write_str(&format!("{line} {v}\n")).await;
                    }
                    let _ = o.close().await;
                });
            }
        });
        port
    })
}

#[test]
fn openssl_s_client_against_asock_server() {
    assert!(
        have("openssl"),
        "{} is needed; .ci/run installs it",
        "openssl"
    );
    let pki = pki();
    let dir = write_pki(&pki, None);
    let sel = selector();
    let port = spawn_version_reply_server(&sel, &server_config(&pki.server));
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                flag,
                "-quiet",
            ])
            .args([
                "-CAfile",
                "ca.pem",
                "-verify_return_error",
                "-servername",
                "localhost",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
        let out =
            String::from_utf8_lossy(&wait_output(child, Duration::from_secs(10)).1).into_owned();
        assert_eq!(out.trim(), format!("hello {name}"), "{flag}");
    }
}

#[test]
fn python_ssl_against_asock_server() {
    assert!(
        have("python3"),
        "{} is needed; .ci/run installs it",
        "python3"
    );
    let pki = pki();
    let dir = write_pki(&pki, None);
    let sel = selector();
    let port = spawn_version_reply_server(&sel, &server_config(&pki.server));
    for v in ["TLSv1_2", "TLSv1_3"] {
        let script = format!(
            r#"
import socket, ssl
ctx = ssl.create_default_context(cafile="ca.pem")
ctx.minimum_version = ssl.TLSVersion.{v}
ctx.maximum_version = ssl.TLSVersion.{v}
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"hi\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(data.decode().strip(), s.version())
"#
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = v.replace('_', ".");
        assert_eq!(stdout.trim(), format!("hi {want} {want}"));
    }
}

#[test]
fn asock_client_against_openssl_s_server() {
    assert!(
        have("openssl"),
        "{} is needed; .ci/run installs it",
        "openssl"
    );
    let pki = pki();
    let client = pki.ca.client_cert("asock-client").unwrap();
    let dir = write_pki(&pki, Some(&client));
    let sel = selector();
    let cases: [(&[&str], TlsVersion, bool); 3] = [
        (&["-tls1_2"], TlsVersion::Tls12, false),
        (&["-tls1_3"], TlsVersion::Tls13, false),
        (
            &["-Verify", "1", "-CAfile", "ca.pem", "-verify_return_error"],
            TlsVersion::Tls13,
            true,
        ),
    ];
    for (extra, version, with_cert) in cases {
        let (mut child, port) = openssl_s_server(dir.path(), extra);
        let mut b = client_config(&pki.ca);
        if with_cert {
            b = b
                .client_cert_pem(client.chain_pem.as_bytes(), client.key_pem.as_bytes())
                .unwrap();
        }
        let ccfg = b.build().unwrap();
        let r = sel.run_blocking(async {
            let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
            let s = s.tls(&ccfg).await?;
            assert_eq!(s.protocol_version(), Some(version));
            let mut o = s.open_write_channel(true);
            let mut i = s.open_read_channel();
            o.write_str("abcdef\n").await?;
            let line = i.read_utf8_line().await?;
            Ok::<_, Error>(line)
        });
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.unwrap().as_deref(), Some("fedcba"), "{extra:?}");
    }
    // Without the client certificate, s_server -Verify rejects us: a typed error.
    let (mut child, port) = openssl_s_server(
        dir.path(),
        &["-Verify", "1", "-CAfile", "ca.pem", "-verify_return_error"],
    );
    let ccfg = client_config(&pki.ca).build().unwrap();
    let r = sel.run_blocking(async {
        let s = a_socket(&sel).tcp().connect(("127.0.0.1", port)).await?;
        let s = s.tls(&ccfg).await?;
        let mut o = s.open_write_channel(true);
        o.write_str("abc\n").await?;
        s.open_read_channel().read_utf8_line().await
    });
    let _ = child.kill();
    let _ = child.wait();
    let e = r.unwrap_err();
    assert!(
        matches!(
            tls_reason(&e),
            Some(TlsReason::ClientCertRequired | TlsReason::AlertReceived)
        ),
        "{e}"
    );
}

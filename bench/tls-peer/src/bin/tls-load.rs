//! TLS load client (tokio-rustls, so both servers face the same client).
//!
//! `tls-load handshakes ADDR CA.pem SECS CONNS` — full handshakes per second: each of CONNS
//!   tasks connects, handshakes (no resumption), echoes one byte and closes, in a loop.
//! `tls-load bulk ADDR CA.pem SECS` — one connection streaming 64 KiB writes while reading the
//!   echo; prints echoed MB/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: tls-load handshakes|bulk ADDR CA.pem SECS [CONNS]");
        std::process::exit(2);
    }
    let (mode, addr, ca) = (args[1].clone(), args[2].clone(), args[3].clone());
    let secs: f64 = args[4].parse().expect("SECS");
    let conns: usize = args.get(5).map(|c| c.parse().expect("CONNS")).unwrap_or(8);
    let connector = tokio_rustls::TlsConnector::from(asock_bench_tls_peer::client_config(&ca));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dur = Duration::from_secs_f64(secs);
    rt.block_on(async move {
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        match mode.as_str() {
            "handshakes" => {
                let done = Arc::new(AtomicU64::new(0));
                let start = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..conns {
                    let (c, a, n, d) =
                        (connector.clone(), addr.clone(), name.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        while start.elapsed() < dur {
                            let tcp = tokio::net::TcpStream::connect(a.as_str())
                                .await
                                .expect("connect");
                            let _ = tcp.set_nodelay(true);
                            let mut tls = c.connect(n.clone(), tcp).await.expect("handshake");
                            tls.write_all(b"x").await.expect("write");
                            let mut b = [0u8; 1];
                            tls.read_exact(&mut b).await.expect("read");
                            let _ = tls.shutdown().await;
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
                let n = done.load(Ordering::Relaxed) as f64;
                println!("{:.1}", n / start.elapsed().as_secs_f64());
            }
            "bulk" => {
                let tcp = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .expect("connect");
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await.expect("handshake");
                let (mut r, mut w) = tokio::io::split(tls);
                let start = Instant::now();
                let writer = tokio::spawn(async move {
                    let chunk = vec![0x5au8; 64 * 1024];
                    while start.elapsed() < dur {
                        w.write_all(&chunk).await.expect("write");
                    }
                    w.flush().await.expect("flush");
                    w.shutdown().await.expect("shutdown");
                });
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
                writer.await.expect("writer");
                println!("{:.1}", total as f64 / 1e6 / start.elapsed().as_secs_f64());
            }
            m => panic!("unknown mode {m}"),
        }
    });
}

//! A byte-echo TLS server on tokio-rustls (current-thread runtime): the peer asock's
//! `echo-server --raw --tls-*` is compared with.
//!
//! `tokio-tls-echo CHAIN.pem KEY.pem ADDR`; prints `Started tokio-rustls echo server at ADDR`
//! when ready (the line `bench/lib.sh`'s `start_server` waits for).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, chain, key, addr] = &args[..] else {
        eprintln!("usage: tokio-tls-echo CHAIN.pem KEY.pem ADDR");
        std::process::exit(2);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(asock_bench_tls_peer::server_config(chain, key));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .expect("bind");
        println!(
            "Started tokio-rustls echo server at {}",
            listener.local_addr().expect("addr")
        );
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
}

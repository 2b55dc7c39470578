//! A TCP relay on tokio, the peer of `asock proxy`: `tokio-proxy LISTEN TARGET [--multi-thread]`.
//!
//! Each accepted connection gets a connection to TARGET and `tokio::io::copy_bidirectional`
//! (a buffer copy both ways, half-closes passed on), on a `current_thread` runtime by default.

use tokio::net::{TcpListener, TcpStream};

fn main() {
    let usage = "tokio-proxy LISTEN TARGET [--multi-thread]";
    let mut pos = Vec::new();
    let mut multi = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--multi-thread" => multi = true,
            "-h" | "--help" => {
                println!("usage: {usage}");
                return;
            }
            s if s.starts_with('-') => {
                asock_bench_peers::die(format!("unknown option {s}\nusage: {usage}"))
            }
            s => pos.push(s.to_string()),
        }
    }
    let [listen, target] = <[String; 2]>::try_from(pos)
        .unwrap_or_else(|_| asock_bench_peers::die(format!("usage: {usage}")));
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| asock_bench_peers::die(e));
    rt.block_on(async move {
        let listener = TcpListener::bind(&listen)
            .await
            .unwrap_or_else(|e| asock_bench_peers::die(format!("bind {listen}: {e}")));
        let local = listener
            .local_addr()
            .unwrap_or_else(|e| asock_bench_peers::die(e));
        asock_bench_peers::announce(&format!("Started tokio proxy to {target} at {local}"));
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    })
}

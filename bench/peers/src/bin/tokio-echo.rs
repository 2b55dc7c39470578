//! Raw byte echo on tokio: `tokio-echo [ADDR] [--multi-thread] [--threads N] [--buf BYTES]`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let args =
        asock_bench_peers::args("tokio-echo [ADDR] [--multi-thread] [--threads N] [--buf BYTES]");
    let rt = asock_bench_peers::runtime(&args);
    rt.block_on(async {
        let listener = TcpListener::bind(&args.addr)
            .await
            .unwrap_or_else(|e| asock_bench_peers::die(format!("bind {}: {e}", args.addr)));
        let local = listener
            .local_addr()
            .unwrap_or_else(|e| asock_bench_peers::die(e));
        asock_bench_peers::announce(&format!(
            "Started tokio {} raw echo server at {local}",
            asock_bench_peers::flavour(&args)
        ));
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let size = args.buf;
            tokio::spawn(async move {
                let mut buf = vec![0u8; size];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    })
}

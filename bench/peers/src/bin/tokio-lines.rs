//! Line echo on tokio with `BufReader::read_line`, each line back with `\r\n` like
//! `asock echo-server`: `tokio-lines [ADDR] [--multi-thread] [--threads N]`.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn main() {
    let args = asock_bench_peers::args("tokio-lines [ADDR] [--multi-thread] [--threads N]");
    let rt = asock_bench_peers::runtime(&args);
    rt.block_on(async {
        let listener = TcpListener::bind(&args.addr)
            .await
            .unwrap_or_else(|e| asock_bench_peers::die(format!("bind {}: {e}", args.addr)));
        let local = listener
            .local_addr()
            .unwrap_or_else(|e| asock_bench_peers::die(e));
        asock_bench_peers::announce(&format!(
            "Started tokio {} line echo server at {local}",
            asock_bench_peers::flavour(&args)
        ));
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (r, mut w) = stream.split();
                let mut reader = BufReader::new(r);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = line.trim_end_matches('\n').trim_end_matches('\r');
                            let len = text.len();
                            line.truncate(len);
                            line.push_str("\r\n");
                            if w.write_all(line.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = w.shutdown().await;
            });
        }
    })
}

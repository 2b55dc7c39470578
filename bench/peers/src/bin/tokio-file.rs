//! The `file_server` example's protocol on tokio, the peer of asock's `send_file`:
//! `tokio-file ADDR DIR`. `GET name\n` is answered with `OK <length>\n` and the file, read in
//! 64 KiB pieces and written with `write_all` (the read + write loop), or `ERR <reason>\n`.

use std::io::Read;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let usage = "tokio-file ADDR DIR";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, dir] = <[String; 2]>::try_from(args)
        .unwrap_or_else(|_| asock_bench_peers::die(format!("usage: {usage}")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| asock_bench_peers::die(e));
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| asock_bench_peers::die(format!("bind {addr}: {e}")));
        let local = listener
            .local_addr()
            .unwrap_or_else(|e| asock_bench_peers::die(e));
        asock_bench_peers::announce(&format!("Started tokio file server at {local}"));
        let dir = PathBuf::from(dir);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let dir = dir.clone();
            tokio::spawn(async move {
                let _ = answer(stream, &dir).await;
            });
        }
    })
}

async fn answer(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return w.shutdown().await;
        }
        let name = line
            .trim()
            .strip_prefix("GET ")
            .unwrap_or("")
            .trim()
            .to_string();
        if name.is_empty() || name.contains('/') || name == ".." {
            w.write_all(b"ERR not a plain file name\n").await?;
            continue;
        }
        let mut file = match std::fs::File::open(dir.join(&name)) {
            Ok(f) => f,
            Err(e) => {
                w.write_all(format!("ERR {e}\n").as_bytes()).await?;
                continue;
            }
        };
        let len = file.metadata()?.len();
        w.write_all(format!("OK {len}\n").as_bytes()).await?;
        loop {
            // A page-cache read: what a read + write loop does.
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await?;
        }
    }
}

//! A static file server with a one-line protocol, answering with `send_file` (on Linux the
//! file's bytes go from the page cache to the socket without entering the process).
//!
//! The client sends `GET name\n`; the server answers `OK <length>\n` followed by the file's
//! bytes, or `ERR <reason>\n`. Requests may follow each other on one connection; the server
//! closes when the client does. Only plain file names inside the served directory are served
//! (no `/`, no `..`).
//!
//! Run `cargo run --release --example file_server -- DIR [ADDR]` (default `127.0.0.1:8000`),
//! then e.g. `printf 'GET Cargo.toml\n' | nc -N 127.0.0.1 8000`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use asock::{a_socket, SelectorManager, ServerSocket, Socket};

fn main() -> asock::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: file_server DIR [ADDR]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8000".into());
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let server = a_socket(&selector).tcp().bind(addr.as_str()).await?;
        println!("Serving {dir} at {}", server.local_address());
        serve(&selector, server, PathBuf::from(dir)).await
    })
}

/// Accepts connections on `server` and answers each on its own task, until the server closes.
pub async fn serve(
    selector: &SelectorManager,
    server: ServerSocket,
    dir: PathBuf,
) -> asock::Result<()> {
    let dir = Arc::new(dir);
    loop {
        let socket = match server.accept().await {
            Ok(s) => s,
            Err(asock::Error::Closed(_)) => return Ok(()),
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let dir = dir.clone();
        selector.launch(async move {
            if let Err(e) = answer(&socket, &dir).await {
                eprintln!("{}: {e}", socket.remote_address());
            }
        });
    }
}

/// Answers the requests of one connection.
async fn answer(socket: &Socket, dir: &Path) -> asock::Result<()> {
    let mut input = socket.open_read_channel();
    input.set_max_line_length(4096);
    let mut output = socket.open_write_channel(false);
    while let Some(line) = input.read_utf8_line().await? {
        let Some(name) = line.strip_prefix("GET ").map(str::trim) else {
            output.write_str("ERR expected: GET name\n").await?;
            output.flush().await?;
            continue;
        };
        match open(dir, name) {
            Ok((file, len)) => {
                output.write_str(&format!("OK {len}\n")).await?;
                // Flushes the header first, then sends the file.
                let sent = output.send_file(&file, 0, len).await?;
                if sent < len {
                    // The file shrank while being sent: the client cannot tell where the next
                    // answer starts, so end the connection.
                    return Err(asock::Error::UnexpectedEof {
                        needed: len as usize,
                        got: sent as usize,
                    });
                }
            }
            Err(why) => {
                output.write_str(&format!("ERR {why}\n")).await?;
                output.flush().await?;
            }
        }
    }
    output.close().await
}

/// Opens `name` inside `dir`: a regular file, named without any path separator.
fn open(dir: &Path, name: &str) -> Result<(std::fs::File, u64), String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err("not a plain file name".into());
    }
    let file = std::fs::File::open(dir.join(name)).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok((file, meta.len()))
}

//! Relaying between the terminal and a connection, shared by `connect` and `listen`.

use std::io::{Read, Write};

use asock::{ByteReadChannel, ByteWriteChannel};

use crate::common::CliResult;

/// Copies stdin to `output` and `input` to stdout. At stdin's end the write half is closed (the
/// peer sees end of stream) and reading goes on until the peer closes; when the peer closes
/// first, it returns at once.
///
/// Stdin is read on its own thread with blocking reads; the channel futures run there through
/// `asock::block_on`, which asock's futures allow.
pub fn relay(mut input: ByteReadChannel, mut output: ByteWriteChannel) -> CliResult {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if asock::block_on(output.write_fully(&buf[..n])).is_err() {
                    return;
                }
            }
            let _ = asock::block_on(output.close());
        })?;

    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = asock::block_on(input.read_available(&mut buf))?;
        if n == 0 {
            return Ok(());
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
}

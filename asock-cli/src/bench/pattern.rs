//! The messages connections send, and checking their echoes.

use asock::ByteReadChannel;

/// The messages connections send: printable ASCII (so line servers take them), in a few
/// variants so a repeated or reordered echo does not go unnoticed.
pub struct Pattern {
    pub variants: Vec<&'static [u8]>,
}

impl Pattern {
    pub fn new(size: usize, lines: bool) -> Pattern {
        let count = ((32usize << 20) / size.max(1)).clamp(2, 94);
        let variants = (0..count)
            .map(|v| {
                let body = if lines { size - 2 } else { size };
                let mut m: Vec<u8> = (0..body).map(|i| b'!' + ((i + v) % 94) as u8).collect();
                if lines {
                    m.extend_from_slice(b"\r\n");
                }
                // Lives as long as the run: leaked so datagrams can borrow it without a copy.
                &*Box::leak(m.into_boxed_slice())
            })
            .collect();
        Pattern { variants }
    }

    pub fn message(&self, conn: usize, k: u64) -> &'static [u8] {
        let n = self.variants.len();
        self.variants[(conn + (k % n as u64) as usize) % n]
    }
}

/// Reads `want.len()` bytes and checks them against `want`, in the channel's buffer.
pub async fn expect(input: &mut ByteReadChannel, want: &[u8]) -> Result<(), String> {
    let mut off = 0;
    while off < want.len() {
        let chunk = input.fill_buf().await.map_err(|e| format!("read: {e}"))?;
        if chunk.is_empty() {
            return Err(format!(
                "the server closed the connection {off} bytes into a {}-byte echo",
                want.len()
            ));
        }
        let n = chunk.len().min(want.len() - off);
        if chunk[..n] != want[off..off + n] {
            let at = off
                + chunk[..n]
                    .iter()
                    .zip(&want[off..off + n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
            return Err(format!(
                "echo mismatch at byte {at} of a {}-byte message",
                want.len()
            ));
        }
        input.consume(n);
        off += n;
    }
    Ok(())
}

/// Expects the server to close after the last echo.
pub async fn expect_eof(input: &mut ByteReadChannel) -> Result<(), String> {
    let rest = input.fill_buf().await.map_err(|e| format!("read: {e}"))?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} unexpected bytes after the last echo",
            rest.len()
        ))
    }
}

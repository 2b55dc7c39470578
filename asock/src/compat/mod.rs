//! Interoperability with the rest of the async ecosystem.
//!
//! - The I/O traits (`futures_io.rs`, feature `futures-io`, default; `tokio.rs`, feature
//!   `tokio`): `AsyncRead`/`AsyncBufRead` on [`ByteReadChannel`](crate::ByteReadChannel),
//!   `AsyncWrite` on [`ByteWriteChannel`](crate::ByteWriteChannel), `AsyncRead`/`AsyncWrite` on
//!   [`TlsSocket`](crate::tls::TlsSocket), and all three on a [`Connection`](crate::Connection) (and a TLS
//!   [`TlsConnection`](crate::tls::TlsConnection)), one duplex stream whose reads go to its
//!   `input` channel and writes to its `output` channel: what codecs that want one
//!   `AsyncRead + AsyncWrite` value take (tokio-util's `Framed`, `futures`' `split`,
//!   async-tungstenite). Each trait is implemented once, by one macro per file, over the poll
//!   functions each type keeps next to its state (`poll_read_io`, `poll_fill_buf_io`,
//!   `consume_io`, `poll_write_io`, `poll_flush_io`, `poll_close_io`).
//! - `compat::hyper` (feature `hyper`): hyper 1.x's runtime traits, so hyper's HTTP/1.1 and HTTP/2
//!   servers and clients run on asock's loops with no tokio runtime.

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tokio")]
mod tokio;

/// The poll functions of a duplex stream (a connection: an `input` read channel and an
/// `output` write channel), for the I/O traits.
#[cfg(any(feature = "futures-io", feature = "tokio"))]
macro_rules! duplex_poll_fns {
    ($t:ty) => {
        impl $t {
            #[cfg(feature = "futures-io")] // tokio's read goes through the buffer
            pub(crate) fn poll_read_io(
                &mut self,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.input.poll_read_io(cx, buf)
            }

            pub(crate) fn poll_fill_buf_io(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<&[u8]>> {
                self.input.poll_fill_buf_io(cx)
            }

            pub(crate) fn consume_io(&mut self, amt: usize) {
                self.input.consume_io(amt)
            }

            pub(crate) fn poll_write_io(
                &mut self,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.output.poll_write_io(cx, buf)
            }

            pub(crate) fn poll_flush_io(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.output.poll_flush_io(cx)
            }

            pub(crate) fn poll_close_io(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.output.poll_close_io(cx)
            }
        }
    };
}

#[cfg(any(feature = "futures-io", feature = "tokio"))]
duplex_poll_fns!(crate::Connection);
#[cfg(all(feature = "tls", any(feature = "futures-io", feature = "tokio")))]
duplex_poll_fns!(crate::tls::TlsConnection);

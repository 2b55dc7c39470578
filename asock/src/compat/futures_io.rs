//! `futures_io::AsyncRead`, `AsyncBufRead` and `AsyncWrite` (feature `futures-io`), each
//! implemented once by [`impl_futures_io!`] over the types' poll functions.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::{ByteReadChannel, ByteWriteChannel, Connection};

/// Implements the `futures_io` traits on types (`Unpin`, so `get_mut` is free) that have the
/// poll functions: `read` (`poll_read_io`), `buf_read` (`poll_fill_buf_io`, `consume_io`),
/// `write` (`poll_write_io`, `poll_flush_io`, `poll_close_io`).
macro_rules! impl_futures_io {
    (read: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl futures_io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_read_io(cx, buf)
            }
        }
    )+};
    (buf_read: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl futures_io::AsyncBufRead for $t {
            fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
                self.get_mut().poll_fill_buf_io(cx)
            }

            fn consume(self: Pin<&mut Self>, amt: usize) {
                self.get_mut().consume_io(amt)
            }
        }
    )+};
    (write: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl futures_io::AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_write_io(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().poll_flush_io(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().poll_close_io(cx)
            }
        }
    )+};
}

impl_futures_io!(read:
    ByteReadChannel,
    Connection,
    #[cfg(feature = "tls")] crate::tls::TlsConnection,
    #[cfg(feature = "tls")] crate::tls::TlsSocket,
);
impl_futures_io!(buf_read:
    ByteReadChannel,
    Connection,
    #[cfg(feature = "tls")] crate::tls::TlsConnection,
);
impl_futures_io!(write:
    ByteWriteChannel,
    Connection,
    #[cfg(feature = "tls")] crate::tls::TlsConnection,
    #[cfg(feature = "tls")] crate::tls::TlsSocket,
);

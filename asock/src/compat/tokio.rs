//! tokio's `AsyncRead`, `AsyncBufRead` and `AsyncWrite` (feature `tokio`: tokio's I/O traits
//! only, no runtime), each implemented once by [`impl_tokio_io!`] over the types' poll
//! functions.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::ReadBuf;

use crate::{ByteReadChannel, ByteWriteChannel, Connection};

/// Implements tokio's I/O traits on types (`Unpin`) that have the poll functions:
/// - `buffered_read` (`poll_fill_buf_io`, `consume_io`): `AsyncBufRead`, and an `AsyncRead`
///   that makes one copy, from the type's buffer into the caller's `ReadBuf`, with no zeroing
///   of uninitialised memory;
/// - `read` (`poll_read_io`): an `AsyncRead` into the initialised part of the `ReadBuf`;
/// - `write` (`poll_write_io`, `poll_flush_io`, `poll_close_io`): `AsyncWrite`, whose
///   `poll_shutdown` is the type's close.
macro_rules! impl_tokio_io {
    (buffered_read: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                let data = ready!(this.poll_fill_buf_io(cx))?;
                let n = buf.remaining().min(data.len());
                buf.put_slice(&data[..n]);
                this.consume_io(n);
                Poll::Ready(Ok(()))
            }
        }

        $(#[$m])*
        impl tokio::io::AsyncBufRead for $t {
            fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
                self.get_mut().poll_fill_buf_io(cx)
            }

            fn consume(self: Pin<&mut Self>, amt: usize) {
                self.get_mut().consume_io(amt)
            }
        }
    )+};
    (read: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let n = ready!(self.get_mut().poll_read_io(cx, buf.initialize_unfilled()))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    )+};
    (write: $($(#[$m:meta])* $t:ty),+ $(,)?) => {$(
        $(#[$m])*
        impl tokio::io::AsyncWrite for $t {
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

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().poll_close_io(cx)
            }
        }
    )+};
}

impl_tokio_io!(buffered_read:
    ByteReadChannel,
    Connection,
    #[cfg(feature = "tls")] crate::tls::TlsConnection,
);
impl_tokio_io!(read: #[cfg(feature = "tls")] crate::tls::TlsSocket);
impl_tokio_io!(write:
    ByteWriteChannel,
    Connection,
    #[cfg(feature = "tls")] crate::tls::TlsConnection,
    #[cfg(feature = "tls")] crate::tls::TlsSocket,
);

//! Interoperability with the rest of the async ecosystem.
//!
//! - A [`Connection`] (and a TLS [`TlsConnection`](crate::tls::TlsConnection)) is one duplex
//!   stream: reads go to its `input` channel, writes to its `output` channel. With the
//!   `futures-io` feature (default) they implement `futures_io::AsyncRead`/`AsyncBufRead`/
//!   `AsyncWrite`, with `tokio` tokio's traits: what codecs that want one `AsyncRead +
//!   AsyncWrite` value (tokio-util's `Framed`, `futures`' `split`, async-tungstenite) take. The
//!   impls for the channels themselves and for `TlsSocket` sit next to those types.
//! - `compat::hyper` (feature `hyper`): hyper 1.x's runtime traits, so hyper's HTTP/1.1 and HTTP/2
//!   servers and clients run on asock's loops with no tokio runtime.

#![allow(unused_imports)] // which imports are used depends on the features

#[cfg(feature = "hyper")]
pub mod hyper;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Connection;

/// Implements the I/O traits for a type with `input: ByteReadChannel` and
/// `output: ByteWriteChannel` fields.
macro_rules! duplex {
    ($t:ty) => {
        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                futures_io::AsyncRead::poll_read(Pin::new(&mut self.get_mut().input), cx, buf)
            }
        }

        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncBufRead for $t {
            fn poll_fill_buf(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<&[u8]>> {
                futures_io::AsyncBufRead::poll_fill_buf(Pin::new(&mut self.get_mut().input), cx)
            }

            fn consume(self: Pin<&mut Self>, amt: usize) {
                self.get_mut().input.consume(amt)
            }
        }

        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                futures_io::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().output), cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                futures_io::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().output), cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                futures_io::AsyncWrite::poll_close(Pin::new(&mut self.get_mut().output), cx)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                tokio::io::AsyncRead::poll_read(Pin::new(&mut self.get_mut().input), cx, buf)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncBufRead for $t {
            fn poll_fill_buf(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<&[u8]>> {
                tokio::io::AsyncBufRead::poll_fill_buf(Pin::new(&mut self.get_mut().input), cx)
            }

            fn consume(self: Pin<&mut Self>, amt: usize) {
                self.get_mut().input.consume(amt)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().output), cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().output), cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().output), cx)
            }
        }
    };
}

duplex!(Connection);
#[cfg(feature = "tls")]
duplex!(crate::tls::TlsConnection);

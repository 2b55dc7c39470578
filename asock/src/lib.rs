//! # asock
//!
//! Raw TCP, UDP and Unix-domain sockets with an async ("suspending") API over non-blocking
//! I/O, byte read/write channels, and TLS: the design of Ktor's sockets module
//! (`ktor-network`, `ktor-network-tls`), in Rust. Coming from Ktor?
//! [`docs/from-ktor.md`](https://github.com/asock-rs/asock/blob/main/docs/from-ktor.md) maps
//! every Ktor sockets API to its asock counterpart, side by side.
//!
//! ```no_run
//! use asock::{a_socket, SelectorManager};
//!
//! fn main() -> asock::Result<()> {
//!     let selector = SelectorManager::new()?;
//!     selector.run_blocking(async {
//!         let server = a_socket(&selector).tcp().bind("127.0.0.1:2323").await?;
//!         println!("Started echo telnet server at {}", server.local_address());
//!         loop {
//!             let socket = server.accept().await?;
//!             selector.launch(async move {
//!                 let mut input = socket.open_read_channel();
//!                 let mut output = socket.open_write_channel(true);
//!                 while let Ok(Some(line)) = input.read_utf8_line().await {
//!                     if output.write_str(&format!("{line}\r\n")).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     })
//! }
//! ```
//!
//! ## A tour
//!
//! 1. **A [`SelectorManager`]** owns the event loops (Ktor's `SelectorManager`).
//!    [`run_blocking`](SelectorManager::run_blocking) runs a future to completion from `main`,
//!    [`launch`](SelectorManager::launch) starts a task and gives a [`JoinHandle`].
//! 2. **[`a_socket`]`(&selector)`** gives a [`SocketBuilder`] (Ktor's `aSocket(selector)`):
//!    `.tcp()` → [`TcpSocketBuilder`] with [`bind`](TcpSocketBuilder::bind) →
//!    [`ServerSocket`] and [`connect`](TcpSocketBuilder::connect) → [`Socket`]; `.udp()` →
//!    [`UdpSocketBuilder`] → [`BoundDatagramSocket`] / [`ConnectedDatagramSocket`]. Options go
//!    through typed setters (`.no_delay(true)`) or [`configure`](TcpSocketBuilder::configure)
//!    on [`SocketOptions`], Ktor's `configure { }`.
//! 3. **Addresses**: anything [`ToSocketAddress`]: `"host:port"`, a `SocketAddr`,
//!    `("host", port)`, or a Unix path as [`SocketAddress::Unix`]. Names are resolved off the
//!    event loops.
//! 4. **Channels**: [`Socket::open_read_channel`] → [`ByteReadChannel`]
//!    ([`read_utf8_line`](ByteReadChannel::read_utf8_line), `read_exact`, typed integer reads,
//!    `read_until`, ...), [`Socket::open_write_channel`] → [`ByteWriteChannel`]
//!    (`write_fully`, `write_str`, `flush`, [`close`](ByteWriteChannel::close) as a
//!    half-close). [`Socket::connection`] opens both at once as a [`Connection`].
//! 5. **Datagrams**: [`Datagram`] `{ packet, address }`,
//!    [`send`](BoundDatagramSocket::send), [`receive`](BoundDatagramSocket::receive),
//!    [`incoming`](BoundDatagramSocket::incoming) (a `Stream`), multicast and broadcast.
//! 6. **TLS** (feature `tls`): [`Socket::tls`] with a [`tls::TlsConfig`] (Ktor's
//!    `socket.tls { }`), and the server side Ktor lacks: [`ServerSocket::tls`],
//!    [`Socket::tls_server`]. A [`tls::TlsSocket`] has the same channels as a plain socket.
//! 7. **Time**: [`time::sleep`] and [`time::timeout`] run on the loops' timers; the
//!    `socket_timeout` option bounds idle reads and writes.
//!
//! A TCP round trip, runnable as a test:
//!
//! ```
//! use asock::{a_socket, SelectorManager};
//!
//! let selector = SelectorManager::builder().threads(1).build()?;
//! selector.run_blocking(async {
//!     let server = a_socket(&selector).tcp().bind("127.0.0.1:0").await?;
//!     let addr = server.local_address().clone();
//!     // The server: one connection, each line back in upper case.
//!     selector.launch(async move {
//!         let conn = server.accept().await?.connection(true);
//!         let (mut input, mut output) = (conn.input, conn.output);
//!         while let Some(line) = input.read_utf8_line().await? {
//!             output.write_str(&format!("{}\n", line.to_uppercase())).await?;
//!         }
//!         output.close().await
//!     });
//!     // The client.
//!     let socket = a_socket(&selector).tcp().connect(addr).await?;
//!     let (mut input, mut output) = (socket.open_read_channel(), socket.open_write_channel(true));
//!     output.write_str("hello\n").await?;
//!     assert_eq!(input.read_utf8_line().await?.as_deref(), Some("HELLO"));
//!     output.close().await?; // half-close: the server sees end of stream and closes too
//!     assert_eq!(input.read_utf8_line().await?, None);
//!     Ok::<(), asock::Error>(())
//! })?;
//! # Ok::<(), asock::Error>(())
//! ```
//!
//! ## Which executor drives what
//!
//! - **asock's own loops** ([`SelectorManager::launch`], [`SelectorManager::run_blocking`]):
//!   each loop thread owns an epoll instance (kqueue on macOS), a run queue and a timer heap. A
//!   socket registers with the loop of the task that first waits on it, so its readiness, its
//!   task and its wakers stay on one thread: no lock and no cross-thread wake-up on the hot
//!   path. This is the fast path, and the one the benchmarks measure.
//! - **A foreign executor** (tokio, `futures::executor`, `async-std`, a hand-written
//!   `block_on`): every asock future is a plain [`std::future::Future`] and works when polled
//!   there. The socket then registers with one of the selector's loops, which keeps polling
//!   the OS for readiness and wakes the foreign task across threads. Correct, but each wait
//!   costs a cross-thread wake-up (a futex and often a context switch, a few microseconds on
//!   bare metal, tens on a VM) and the data is touched by two threads. Fine for clients,
//!   tools and mixed applications; for a busy server, run the connection tasks on asock's
//!   loops and hand results to the other executor through a channel.
//! - **Interop traits**: with the default feature `futures-io` the channels, [`Connection`]
//!   and [`tls::TlsSocket`] implement `futures_io::AsyncRead`/`AsyncBufRead`/`AsyncWrite`;
//!   with the feature `tokio` they implement tokio's `AsyncRead`/`AsyncBufRead`/`AsyncWrite`
//!   (tokio is then a dependency for its I/O traits only, with no tokio runtime or networking).
//!   So `tokio_util::codec::Framed`/`LinesCodec`, `tokio::io::copy`, `futures::io::copy` and
//!   friends work over asock sockets, on either kind of executor. The cost: tokio's
//!   `AsyncRead` copies once from the channel's buffer into the caller's `ReadBuf` (the
//!   channel's own methods such as [`ByteReadChannel::read_line`] return borrowed slices
//!   with no copy), and `AsyncWrite` writes go straight to the socket when nothing is queued.
//! - **Blocking work** (name resolution, reading certificate files, loading the OS roots) runs
//!   on a small blocking pool, never on an event loop.
//!
//! ## Errors
//!
//! Every fallible call returns [`Result`] with the one [`Error`] enum, `#[non_exhaustive]` and
//! typed to match on: [`Error::ConnectionRefused`], [`Error::AddressInUse`],
//! [`Error::ConnectTimeout`], [`Error::Timeout`] (the socket timeout), [`Error::Closed`]
//! (closed locally), [`Error::ConnectionReset`], [`Error::LineTooLong`] (nothing consumed),
//! [`Error::InvalidUtf8`] (the bytes are kept), [`Error::UnexpectedEof`],
//! [`Error::Tls`] with a [`TlsReason`], and more. Operating-system errors are kept as the
//! error's `source`; [`Error::io_kind`] and `From<Error> for std::io::Error` bridge to
//! `std::io` (the interop traits use them, and an asock error survives the round trip
//! through `io::Error`). The library never panics on I/O errors or on anything a peer sends,
//! and writes never raise `SIGPIPE` (`MSG_NOSIGNAL` on Linux and the BSDs, `SO_NOSIGPIPE` on
//! macOS and iOS).
//!
//! ## Cancel safety
//!
//! Dropping a future is how async Rust cancels (a `select!` branch that lost, a timeout).
//! asock documents it per method; in short:
//!
//! - Reads on [`ByteReadChannel`] are cancel-safe (except [`discard`](ByteReadChannel::discard),
//!   whose progress is lost): a dropped read consumes nothing, and bytes that arrived
//!   meanwhile stay buffered for the next call.
//! - Writes on [`ByteWriteChannel`]: once polled, a write's bytes are sent or queued in the
//!   channel and go out with the next `flush`, `close` or the channel's drop. `flush` and
//!   `close` can be retried.
//! - [`ServerSocket::accept`] and datagram [`receive`](BoundDatagramSocket::receive) are
//!   cancel-safe: no connection or datagram is lost by dropping the future.
//! - Dropping a [`JoinHandle`] detaches the task; [`JoinHandle::cancel`] stops it.
//! - Dropping a write channel with unflushed bytes flushes them in the background (bounded by
//!   the socket timeout) and then shuts down the write half: nothing written is silently lost.
//!
//! ## Portability
//!
//! - **Linux** is the primary target and what CI runs: epoll, `recvmmsg`/`sendmmsg` batching
//!   for UDP, peer credentials and abstract names for Unix sockets.
//! - **macOS and the BSDs** are meant to work through mio's kqueue backend: the Linux-only
//!   fast paths sit behind a seam with portable fallbacks (one datagram per system call). CI
//!   does not build there yet, so treat them as untested.
//! - **Windows** is not supported: the library uses Unix-domain sockets and `AsRawFd`
//!   throughout.
//! - TLS is rustls with the `ring` provider: no OpenSSL, no C toolchain beyond what `ring`
//!   needs. Client roots come from the operating system's store (rustls-native-certs).
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tls` | yes | [`tls`]: TLS client and server sockets (rustls + ring) |
//! | `futures-io` | yes | `futures_io` I/O traits on channels, connections and TLS sockets |
//! | `tokio` | no | tokio's I/O traits on the same types |
//! | `test-certs` | no | [`tls::test_certs`]: a test CA and certificates (rcgen) |
//! | `hyper` | no | `compat::hyper`: hyper 1.x's I/O, executor and timer traits on asock |

pub mod address;
pub mod channel;
pub mod compat;
mod error;
mod selector;
mod sockets;
mod sys;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
mod util;

pub use address::{SocketAddress, ToSocketAddress};
pub use channel::{ByteReadChannel, ByteWriteChannel};
pub use error::{Error, Result, TlsReason};
pub use selector::{
    block_on, Builder as SelectorBuilder, JoinHandle, MemoryShed, MemoryUsage, SelectorManager,
};
pub use sockets::{
    a_socket, AcceptBackoff, Connection, ServerSocket, Socket, SocketBuilder, SocketOptions,
    TcpSocketBuilder,
};
pub use sockets::{
    BatchIter, BatchPackets, BoundDatagramSocket, ConnectedDatagramSocket, Datagram, DatagramBatch,
    DatagramSender, Incoming, PeerCredentials, UdpSocketBuilder,
};

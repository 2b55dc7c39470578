//! # asock
//!
//! Raw TCP, UDP and Unix-domain sockets with an async ("suspending") API over non-blocking
//! I/O, byte read/write channels, and TLS: the design of Ktor's sockets module
//! (`ktor-network`), in Rust.
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
//! ## How it runs
//! A [`SelectorManager`] owns event-loop threads (one per core by default), each with its own
//! epoll instance, run queue and timers. [`SelectorManager::launch`] runs a task on a loop; a
//! socket registers with the loop of the task that first waits on it, so its readiness, its
//! task and its wakers stay on one thread. The futures are plain [`std::future::Future`]s and
//! also work when polled by another executor (then the socket's loop wakes that executor).
//!
//! ## Errors
//! Every fallible call returns [`Result`] with the one [`Error`] enum; operating-system errors
//! are kept as the error's source.

#![warn(missing_docs)]

pub mod address;
pub mod channel;
mod compat;
mod error;
mod selector;
mod sockets;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;

pub use address::{SocketAddress, ToSocketAddress};
pub use channel::{ByteReadChannel, ByteWriteChannel};
pub use error::{Error, Result, TlsReason};
pub use selector::{block_on, Builder as SelectorBuilder, JoinHandle, SelectorManager};
pub use sockets::{
    a_socket, AcceptBackoff, Connection, ServerSocket, Socket, SocketBuilder, SocketOptions,
    TcpSocketBuilder,
};
pub use sockets::{
    BoundDatagramSocket, ConnectedDatagramSocket, Datagram, DatagramSender, Incoming,
    PeerCredentials, UdpSocketBuilder,
};

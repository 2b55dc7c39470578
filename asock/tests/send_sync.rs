//! Which public types are `Send`, `Sync` and `Unpin` (in the spirit of tokio's
//! `async_send_sync.rs`): a change that loses one of these breaks users, so it must show here.
//! Everything is checked at compile time; the test functions only exist so the file runs.

#![allow(dead_code)]

use asock::{
    AcceptBackoff, BoundDatagramSocket, ByteReadChannel, ByteWriteChannel, ConnectedDatagramSocket,
    Connection, Datagram, DatagramSender, Error, Incoming, JoinHandle, PeerCredentials,
    SelectorBuilder, SelectorManager, ServerSocket, Socket, SocketAddress, SocketBuilder,
    SocketOptions, TcpSocketBuilder, UdpSocketBuilder,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}
fn send_sync<T: Send + Sync>() {}
fn future_send<F: std::future::Future + Send>(_: F) {}

macro_rules! assert_send_sync {
    ($($t:ty),* $(,)?) => {$( send_sync::<$t>(); )*};
}

#[test]
fn handles_sockets_and_builders_are_send_and_sync() {
    assert_send_sync!(
        SelectorManager,
        SelectorBuilder,
        SocketBuilder,
        TcpSocketBuilder,
        UdpSocketBuilder,
        SocketOptions,
        ServerSocket,
        Socket,
        BoundDatagramSocket,
        ConnectedDatagramSocket,
        DatagramSender,
        Datagram,
        SocketAddress,
        PeerCredentials,
        Error,
        JoinHandle<()>,
    );
    send_sync::<AcceptBackoff<'static>>();
}

#[test]
fn channels_and_streams_are_send_and_unpin() {
    // A channel is used by one task at a time (`&mut self`): Send, not required to be Sync.
    send::<ByteReadChannel>();
    send::<ByteWriteChannel>();
    send::<Connection>();
    send::<Incoming>();
    unpin::<ByteReadChannel>();
    unpin::<ByteWriteChannel>();
    unpin::<Incoming>();
    unpin::<JoinHandle<()>>();
    sync::<ByteReadChannel>();
    sync::<ByteWriteChannel>();
}

#[test]
fn futures_of_the_main_operations_are_send() {
    // Never polled: only their types are checked. `launch` needs them to be Send.
    fn check(
        sel: &'static SelectorManager,
        server: &'static ServerSocket,
        input: &'static mut ByteReadChannel,
        udp: &'static BoundDatagramSocket,
    ) {
        future_send(asock::a_socket(sel).tcp().connect("127.0.0.1:1"));
        future_send(asock::a_socket(sel).tcp().bind("127.0.0.1:0"));
        future_send(asock::a_socket(sel).udp().bind("127.0.0.1:0"));
        future_send(server.accept());
        future_send(server.await_closed());
        future_send(input.read_utf8_line());
        future_send(udp.receive());
        future_send(asock::time::sleep(std::time::Duration::from_millis(1)));
    }
    let _ = check;
}

#[cfg(feature = "tls")]
#[test]
fn tls_types_are_send_and_sync() {
    use asock::tls::{TlsConfig, TlsServerConfig, TlsServerSocket, TlsSocket};
    assert_send_sync!(TlsConfig, TlsServerConfig, TlsServerSocket, TlsSocket);
}

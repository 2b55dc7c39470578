//! tokio interop (feature `tokio`): asock futures polled by a tokio runtime, tokio's I/O traits
//! on the channels, a `Connection` and a `TlsSocket`, and tokio-util's `LinesCodec` over an
//! asock socket. All sockets on 127.0.0.1.

use asock_test_support as common;
use asock_test_support::within;
use std::time::Duration;

use asock::{a_socket, SelectorManager};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

/// A current-thread tokio runtime: the test's futures run on it, not on asock's loops.
fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

/// Starts a line echo server on asock's own loops and returns its address.
fn line_echo_server(sel: &SelectorManager) -> asock::SocketAddress {
    let sel2 = sel.clone();
    sel.run_blocking(async move {
        let server = a_socket(&sel2).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        let sel3 = sel2.clone();
        sel2.launch(async move {
            while let Ok(socket) = server.accept().await {
                sel3.launch(async move {
                    let mut input = socket.open_read_channel();
                    let mut output = socket.open_write_channel(true);
                    while let Ok(Some(line)) = input.read_utf8_line().await {
                        if output.write_str(&format!("{line}\r\n")).await.is_err() {
                            break;
                        }
                    }
                    let _ = output.close().await;
                });
            }
        });
        addr
    })
}

#[test]
fn asock_futures_run_inside_a_tokio_runtime() {
    let sel = common::selector();
    let addr = line_echo_server(&sel);
    tokio_rt().block_on(async {
        // Connect, write and read, all polled by tokio: the socket's readiness comes from an
        // asock loop, which wakes tokio's thread.
        let socket = within(10, a_socket(&sel).tcp().connect(addr.clone()))
            .await
            .unwrap();
        let mut input = socket.open_read_channel();
        let mut output = socket.open_write_channel(true);
        for i in 0..50 {
            output.write_str(&format!("line {i}\n")).await.unwrap();
            let line = within(10, input.read_utf8_line()).await.unwrap();
            assert_eq!(line.as_deref(), Some(format!("line {i}").as_str()));
        }
        // asock's timer works under tokio too.
        asock::time::sleep(Duration::from_millis(10)).await;
        // And a task launched on asock's loops can be awaited from tokio.
        let joined = sel.launch(async { 40 + 2 }).await.unwrap();
        assert_eq!(joined, 42);
    });
}

#[test]
fn lines_codec_over_an_asock_socket() {
    let sel = common::selector();
    let addr = line_echo_server(&sel);
    tokio_rt().block_on(within(20, async {
        // Separate halves: FramedRead over the read channel, FramedWrite over the write channel.
        let socket = a_socket(&sel).tcp().connect(addr.clone()).await.unwrap();
        let mut lines_in = FramedRead::new(socket.open_read_channel(), LinesCodec::new());
        let mut lines_out = FramedWrite::new(socket.open_write_channel(false), LinesCodec::new());
        for i in 0..100 {
            lines_out.feed(format!("message {i}")).await.unwrap();
        }
        SinkExt::<String>::flush(&mut lines_out).await.unwrap();
        for i in 0..100 {
            let line = lines_in.next().await.unwrap().unwrap();
            assert_eq!(line, format!("message {i}"));
        }
        // Closing the sink shuts the write half: the server ends the stream.
        SinkExt::<String>::close(&mut lines_out).await.unwrap();
        assert!(lines_in.next().await.is_none());

        // One duplex value: `Framed` over a `Connection`.
        let conn = a_socket(&sel)
            .tcp()
            .connect(addr.clone())
            .await
            .unwrap()
            .connection(false);
        let mut framed = tokio_util::codec::Framed::new(conn, LinesCodec::new());
        framed.send("über".to_string()).await.unwrap();
        assert_eq!(framed.next().await.unwrap().unwrap(), "über");
    }));
}

#[test]
fn tokio_io_traits_on_the_channels() {
    let sel = common::selector();
    tokio_rt().block_on(within(20, async {
        let (client, accepted) = common::pair(&sel).await;
        // A raw echo with tokio::io::copy between the accepted socket's two channels, on tokio.
        let echo = async {
            let mut input = accepted.open_read_channel();
            let mut output = accepted.open_write_channel(false);
            let n = tokio::io::copy(&mut input, &mut output).await.unwrap();
            output.shutdown().await.unwrap();
            n
        };
        let talk = async {
            let mut output = client.open_write_channel(false);
            let mut input = client.open_read_channel();
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let send = async {
                output.write_all(&payload).await.unwrap();
                output.write_all(b"\nlast line\n").await.unwrap();
                output.shutdown().await.unwrap();
            };
            let receive = async {
                let mut got = vec![0u8; payload.len()];
                AsyncReadExt::read_exact(&mut input, &mut got)
                    .await
                    .unwrap();
                assert!(got == payload, "payload came back changed");
                let mut line = String::new();
                AsyncBufReadExt::read_line(&mut input, &mut line)
                    .await
                    .unwrap(); // the "\n" after the payload
                line.clear();
                AsyncBufReadExt::read_line(&mut input, &mut line)
                    .await
                    .unwrap();
                assert_eq!(line, "last line\n");
                let mut rest = Vec::new();
                input.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
            };
            futures::join!(send, receive);
        };
        let (n, ()) = futures::join!(echo, talk);
        assert_eq!(n, 200_000 + 11);
    }));
}

#[cfg(feature = "test-certs")]
#[test]
fn tokio_io_traits_on_a_tls_socket() {
    let (server_config, client_config) =
        asock_test_support::tls_configs(&["localhost"], "localhost");
    let sel = common::selector();
    tokio_rt().block_on(within(20, async {
        let server = a_socket(&sel)
            .tcp()
            .bind("127.0.0.1:0")
            .await
            .unwrap()
            .tls(&server_config);
        let addr = server.local_address().clone();
        let serve = async {
            let mut tls = server.accept().await.unwrap();
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await.unwrap(); // ends at the client's close_notify
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        };
        let client = async {
            let socket = a_socket(&sel).tcp().connect(addr).await.unwrap();
            let mut tls = socket.tls(&client_config).await.unwrap();
            tls.write_all(b"hello over TLS from tokio").await.unwrap();
            tls.shutdown().await.unwrap();
            let mut back = String::new();
            tls.read_to_string(&mut back).await.unwrap();
            assert_eq!(back, "hello over TLS from tokio");
        };
        futures::join!(serve, client);
    }));
}

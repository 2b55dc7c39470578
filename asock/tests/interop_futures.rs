//! `futures` interop (feature `futures-io`, on by default): an asock socket driven through
//! `futures`' adapters (`lines`, `copy`, `split`, `BufReader`), on a foreign executor
//! (`futures::executor`) and on asock's own loops. All sockets on 127.0.0.1.

use asock::a_socket;
use asock_test_support as common;
use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures::TryStreamExt;

#[test]
fn futures_adapters_over_an_asock_socket() {
    let sel = common::selector();
    // The echo server: futures::io::copy from a Connection's read half to its write half.
    let addr = sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        sel.launch(async move {
            let conn = server.accept().await.unwrap().connection(false);
            let (reader, mut writer) = conn.split();
            futures::io::copy(reader, &mut writer).await.unwrap();
            writer.close().await.unwrap();
        });
        addr
    });
    // The client runs on futures' own executor: asock's loops only drive readiness.
    futures::executor::block_on(common::within(20, async {
        let socket = a_socket(&sel).tcp().connect(addr).await.unwrap();
        let mut output = socket.open_write_channel(false);
        let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
        let send = async {
            for l in &lines {
                output.write_all(l.as_bytes()).await.unwrap();
                output.write_all(b"\r\n").await.unwrap();
            }
            output.close().await.unwrap(); // flush, then half-close
        };
        let receive = async {
            // `lines()` from futures' AsyncBufReadExt, over a BufReader of our own for good
            // measure (the channel is an AsyncBufRead already).
            let got: Vec<String> = BufReader::new(socket.open_read_channel())
                .lines()
                .try_collect()
                .await
                .unwrap();
            got
        };
        let ((), got) = futures::join!(send, receive);
        let got: Vec<String> = got
            .into_iter()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        assert_eq!(got, lines);
    }));
}

#[test]
fn futures_io_read_line_then_read_to_string() {
    let sel = common::selector();
    sel.run_blocking(common::within(10, async {
        let (client, accepted) = common::pair(&sel).await;
        let mut out = client.open_write_channel(true);
        AsyncWriteExt::write_all(&mut out, b"one\ntwo\nthree")
            .await
            .unwrap();
        AsyncWriteExt::close(&mut out).await.unwrap();
        let mut input = accepted.open_read_channel();
        let mut first = String::new();
        AsyncBufReadExt::read_line(&mut input, &mut first)
            .await
            .unwrap();
        assert_eq!(first, "one\n");
        let mut rest = String::new();
        AsyncReadExt::read_to_string(&mut input, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest, "two\nthree");
    }));
}

//! Cancellation safety of the channel methods documented as cancel-safe: a read future dropped
//! before it completes loses no bytes, and a write future dropped after its first poll loses
//! none either. Each read is cancelled through `asock::time::timeout`, then started again.

use asock_test_support::{pair, selector};
use std::time::Duration;

use asock::time::timeout;
use asock::{a_socket, ByteReadChannel, ByteWriteChannel, Error};

const SHORT: Duration = Duration::from_millis(20);

fn is_timeout<T>(r: &asock::Result<T>) -> bool {
    matches!(r, Err(Error::Timeout))
}

/// Each cancel-safe read, cancelled while only part of what it needs has arrived.
#[test]
fn partial_reads_cancelled_then_resumed_lose_nothing() {
    let sel = selector();
    sel.run_blocking(async {
        let (b, a) = pair(&sel).await;
        let mut input: ByteReadChannel = a.open_read_channel();
        let mut out: ByteWriteChannel = b.open_write_channel(true);

        // read_line
        out.write_fully(b"hel").await.unwrap();
        assert!(is_timeout(&timeout(SHORT, input.read_line()).await));
        out.write_fully(b"lo\r\n").await.unwrap();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("hello")
        );

        // read_utf8_line
        out.write_fully("héll".as_bytes()).await.unwrap();
        assert!(is_timeout(&timeout(SHORT, input.read_utf8_line()).await));
        out.write_fully(b"o\n").await.unwrap();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("héllo")
        );

        // read_until with a multi-byte delimiter split across the cut
        out.write_fully(b"record\r\n\r").await.unwrap();
        assert!(is_timeout(
            &timeout(SHORT, input.read_until(b"\r\n\r\n")).await
        ));
        out.write_fully(b"\nnext").await.unwrap();
        assert_eq!(
            input.read_until(b"\r\n\r\n").await.unwrap(),
            Some(&b"record"[..])
        );

        // read_u32 (and every typed read: they share read_exact)
        out.write_fully(&[0xde, 0xad]).await.unwrap();
        // "next" is still buffered: take it first.
        assert_eq!(input.read_bytes(4).await.unwrap(), b"next");
        assert!(is_timeout(&timeout(SHORT, input.read_u32()).await));
        out.write_fully(&[0xbe, 0xef]).await.unwrap();
        assert_eq!(input.read_u32().await.unwrap(), 0xdead_beef);

        // read_u64_le across three cuts
        let v = 0x0102_0304_0506_0708u64.to_le_bytes();
        for part in [&v[..3], &v[3..5]] {
            out.write_fully(part).await.unwrap();
            assert!(is_timeout(&timeout(SHORT, input.read_u64_le()).await));
        }
        out.write_fully(&v[5..]).await.unwrap();
        assert_eq!(input.read_u64_le().await.unwrap(), 0x0102_0304_0506_0708);

        // read_exact
        out.write_fully(b"0123").await.unwrap();
        let mut ten = [0u8; 10];
        assert!(is_timeout(
            &timeout(SHORT, input.read_exact(&mut ten)).await
        ));
        out.write_fully(b"456789").await.unwrap();
        input.read_exact(&mut ten).await.unwrap();
        assert_eq!(&ten, b"0123456789");

        // await_content with nothing buffered
        assert!(is_timeout(&timeout(SHORT, input.await_content()).await));
        out.write_fully(b"x").await.unwrap();
        assert!(input.await_content().await.unwrap());
        assert_eq!(input.read_u8().await.unwrap(), b'x');

        // fill_buf with nothing buffered
        assert!(is_timeout(&timeout(SHORT, input.fill_buf()).await));
        out.write_fully(b"filled").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let chunk = input.fill_buf().await.unwrap();
            let n = chunk.len();
            got.extend_from_slice(chunk);
            input.consume(n);
        }
        assert_eq!(got, b"filled");

        // read_available into a big destination (the direct-read path)
        let mut big = vec![0u8; 64 * 1024];
        assert!(is_timeout(
            &timeout(SHORT, input.read_available(&mut big)).await
        ));
        out.write_fully(b"direct").await.unwrap();
        let n = input.read_available(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"direct");

        // read_remaining, cut before the end of stream
        out.write_fully(b"the rest").await.unwrap();
        assert!(is_timeout(
            &timeout(SHORT, input.read_remaining(1 << 20)).await
        ));
        out.write_fully(b" of it").await.unwrap();
        out.close().await.unwrap();
        assert_eq!(
            input.read_remaining(1 << 20).await.unwrap(),
            b"the rest of it"
        );
    });
}

/// Many lines written in random small pieces, read with timeouts so short that most reads are
/// cancelled part-way: every line arrives, once, in order.
#[test]
fn lines_and_frames_survive_constant_cancellation() {
    let sel = selector();
    sel.run_blocking(async {
        let (b, a) = pair(&sel).await;
        const LINES: usize = 500;
        let writer = sel.launch(async move {
            let mut out = b.open_write_channel(true);
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut wire = Vec::new();
            for i in 0..LINES {
                wire.extend_from_slice(format!("line number {i}\n").as_bytes());
                // A length-prefixed frame after each line.
                wire.extend_from_slice(&(i as u32).to_be_bytes());
                wire.extend_from_slice(&vec![i as u8; i % 17]);
            }
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = (1 + next() % 7) as usize;
                let n = n.min(rest.len());
                out.write_fully(&rest[..n]).await.unwrap();
                rest = &rest[n..];
                if next() % 8 == 0 {
                    asock::time::sleep(Duration::from_micros(next() % 300)).await;
                }
            }
            out.close().await.unwrap();
        });
        let mut input = a.open_read_channel();
        let mut cancelled = 0;
        let tiny = Duration::from_micros(50);
        for i in 0..LINES {
            let line = loop {
                match timeout(tiny, input.read_utf8_line()).await {
                    Ok(r) => break r.unwrap().unwrap(),
                    Err(_) => cancelled += 1,
                }
            };
            assert_eq!(line, format!("line number {i}"));
            let id = loop {
                match timeout(tiny, input.read_u32()).await {
                    Ok(r) => break r.unwrap(),
                    Err(_) => cancelled += 1,
                }
            };
            assert_eq!(id, i as u32);
            let mut body = vec![0u8; i % 17];
            loop {
                match timeout(tiny, input.read_exact(&mut body)).await {
                    Ok(r) => break r.unwrap(),
                    Err(_) => cancelled += 1,
                }
            }
            assert!(body.iter().all(|&x| x == i as u8));
        }
        assert_eq!(input.read_utf8_line().await.unwrap(), None);
        writer.await.unwrap();
        eprintln!("{cancelled} reads cancelled part-way");
    });
}

/// A write future dropped while it waits for the socket (the peer does not read): its bytes
/// are all queued, and a later flush delivers them, once, in order.
#[test]
fn write_dropped_while_blocked_loses_nothing() {
    let sel = selector();
    sel.run_blocking(async {
        let (b, a) = pair(&sel).await;
        b.set_send_buffer_size(16 * 1024).unwrap();
        a.set_receive_buffer_size(16 * 1024).unwrap();
        let mut out = b.open_write_channel(false);
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        // Nobody reads yet: the write blocks and is dropped.
        assert!(is_timeout(&timeout(SHORT, out.write_fully(&data)).await));
        assert!(out.queued() > 0);
        // A flush cancelled too.
        assert!(is_timeout(&timeout(SHORT, out.flush()).await));
        let reader = sel.launch(async move {
            let mut input = a.open_read_channel();
            input.read_remaining(64 << 20).await.unwrap()
        });
        out.write_fully(b"END").await.unwrap();
        out.close().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), data.len() + 3);
        assert!(got[..data.len()] == data[..], "bytes lost or repeated");
        assert_eq!(&got[data.len()..], b"END");
    });
}

/// `accept` cancelled over and over while clients arrive: every client is accepted once.
#[test]
fn accept_cancelled_repeatedly_loses_no_connection() {
    let sel = selector();
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        const N: usize = 50;
        let clients = {
            let sel = sel.clone();
            sel.clone().launch(async move {
                let mut v = Vec::new();
                for i in 0..N {
                    let s = a_socket(&sel).tcp().connect(addr.clone()).await.unwrap();
                    s.open_write_channel(true)
                        .write_u32(i as u32)
                        .await
                        .unwrap();
                    v.push(s);
                    asock::time::sleep(Duration::from_micros(200)).await;
                }
                v
            })
        };
        let mut seen = [false; N];
        let mut cancelled = 0;
        for _ in 0..N {
            let s = loop {
                match timeout(Duration::from_micros(100), server.accept()).await {
                    Ok(r) => break r.unwrap(),
                    Err(_) => cancelled += 1,
                }
            };
            let i = s.open_read_channel().read_u32().await.unwrap() as usize;
            assert!(!seen[i], "client {i} accepted twice");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&x| x));
        drop(clients.await.unwrap());
        eprintln!("{cancelled} accepts cancelled");
    });
}

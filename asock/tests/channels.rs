//! ByteReadChannel / ByteWriteChannel semantics over real loopback sockets.

use std::time::Duration;

use asock::Error;
use asock_test_support::{pair, selector, within};
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[test]
fn lines_accept_lf_and_crlf_and_last_unterminated_line() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_str("one\ntwo\r\n\r\nthree").await.unwrap();
        out.close().await.unwrap();
        let mut input = s.open_read_channel();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("one")
        );
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("two")
        );
        assert_eq!(input.read_utf8_line().await.unwrap().as_deref(), Some(""));
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("three")
        );
        assert_eq!(input.read_utf8_line().await.unwrap(), None);
        assert_eq!(input.read_utf8_line().await.unwrap(), None);
        assert!(input.is_closed_for_read());
    }));
}

#[test]
fn line_split_across_many_writes() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let writer = sel.launch(async move {
            let mut out = c.open_write_channel(true);
            for b in b"split across\r" {
                out.write_u8(*b).await.unwrap();
                asock::time::sleep(Duration::from_millis(1)).await;
            }
            out.write_str("\nnext\n").await.unwrap();
        });
        let mut input = s.open_read_channel();
        assert_eq!(input.read_line().await.unwrap(), Some(&b"split across"[..]));
        assert_eq!(input.read_line().await.unwrap(), Some(&b"next"[..]));
        writer.await.unwrap();
    }));
}

#[test]
fn too_long_line_is_an_error_and_loses_nothing() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_fully(&[b'x'; 100]).await.unwrap();
        out.write_str("\nshort\n").await.unwrap();
        let mut input = s.open_read_channel();
        input.set_max_line_length(10);
        let err = input.read_line().await.unwrap_err();
        assert!(matches!(err, Error::LineTooLong { limit: 10 }), "{err}");
        // Nothing was consumed: the bytes are all still there.
        let mut rest = vec![0; 101];
        input.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest[..100], &[b'x'; 100][..]);
        assert_eq!(input.read_line().await.unwrap(), Some(&b"short"[..]));
        // A line of exactly the limit is fine, with either terminator.
        out.write_str("0123456789\r\n0123456789\n").await.unwrap();
        assert_eq!(input.read_line().await.unwrap().map(<[u8]>::len), Some(10));
        assert_eq!(input.read_line().await.unwrap().map(<[u8]>::len), Some(10));
    }));
}

#[test]
fn endless_line_holds_bounded_memory() {
    let sel = selector();
    sel.run_blocking(within(20, async {
        let (c, s) = pair(&sel).await;
        let writer = sel.launch(async move {
            let mut out = c.open_write_channel(false);
            let chunk = vec![b'a'; 64 * 1024];
            // 10 MiB with no newline; the reader gives up long before.
            for _ in 0..160 {
                if out.write_fully(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = out.flush().await;
        });
        let mut input = s.open_read_channel();
        input.set_max_line_length(64 * 1024);
        let err = input.read_line().await.unwrap_err();
        assert!(matches!(err, Error::LineTooLong { .. }));
        assert!(input.available_for_read() <= 2 * 64 * 1024 + 8192);
        // Dropping the last handle closes the descriptor with unread data: the writer sees a
        // reset, not a hang.
        drop(input);
        drop(s);
        let _ = writer.await;
    }));
}

#[test]
fn invalid_utf8_is_a_typed_error_with_the_bytes() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_fully(b"ok\n\xff\xfe bad\nafter\n").await.unwrap();
        let mut input = s.open_read_channel();
        assert_eq!(input.read_utf8_line().await.unwrap().as_deref(), Some("ok"));
        match input.read_utf8_line().await {
            Err(Error::InvalidUtf8 { line, valid_up_to }) => {
                assert_eq!(line, b"\xff\xfe bad");
                assert_eq!(valid_up_to, 0);
            }
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("after")
        );
    }));
}

#[test]
fn typed_reads_and_writes_round_trip() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(false);
        out.write_u8(0xab).await.unwrap();
        out.write_i8(-2).await.unwrap();
        out.write_u16(0x1234).await.unwrap();
        out.write_u16_le(0x1234).await.unwrap();
        out.write_u32(0xdead_beef).await.unwrap();
        out.write_i32_le(-7).await.unwrap();
        out.write_u64(u64::MAX - 1).await.unwrap();
        out.write_i64_le(i64::MIN).await.unwrap();
        out.write_f64(1.5).await.unwrap();
        out.write_f32_le(-0.25).await.unwrap();
        out.write_u128(7).await.unwrap();
        assert!(out.queued() > 0);
        out.close().await.unwrap();
        let mut input = s.open_read_channel();
        assert_eq!(input.read_u8().await.unwrap(), 0xab);
        assert_eq!(input.read_i8().await.unwrap(), -2);
        assert_eq!(input.read_u16().await.unwrap(), 0x1234);
        assert_eq!(input.read_u16_le().await.unwrap(), 0x1234);
        assert_eq!(input.read_u32().await.unwrap(), 0xdead_beef);
        assert_eq!(input.read_i32_le().await.unwrap(), -7);
        assert_eq!(input.read_u64().await.unwrap(), u64::MAX - 1);
        assert_eq!(input.read_i64_le().await.unwrap(), i64::MIN);
        assert_eq!(input.read_f64().await.unwrap(), 1.5);
        assert_eq!(input.read_f32_le().await.unwrap(), -0.25);
        assert_eq!(input.read_u128().await.unwrap(), 7);
        let err = input.read_u32().await.unwrap_err();
        assert!(
            matches!(err, Error::UnexpectedEof { needed: 4, got: 0 }),
            "{err}"
        );
    }));
}

#[test]
fn read_exact_short_stream_consumes_nothing() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_fully(b"abc").await.unwrap();
        out.close().await.unwrap();
        let mut input = s.open_read_channel();
        let mut five = [0; 5];
        let err = input.read_exact(&mut five).await.unwrap_err();
        assert!(matches!(err, Error::UnexpectedEof { needed: 5, got: 3 }));
        assert_eq!(input.read_bytes(3).await.unwrap(), b"abc");
    }));
}

#[test]
fn read_until_remaining_discard_available() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_fully(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODYBODY0123456789tail")
            .await
            .unwrap();
        out.close().await.unwrap();
        let mut input = s.open_read_channel();
        assert!(input.await_content().await.unwrap());
        assert!(input.available_for_read() > 0);
        let head = input
            .read_until(b"\r\n\r\n")
            .await
            .unwrap()
            .unwrap()
            .to_vec();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x");
        assert_eq!(input.discard(8).await.unwrap(), 8);
        let mut ten = [0; 10];
        let mut got = 0;
        while got < 10 {
            got += input.read_available(&mut ten[got..]).await.unwrap();
        }
        assert_eq!(&ten, b"0123456789");
        let err = input.read_remaining(2).await.unwrap_err();
        assert!(matches!(err, Error::TooMuchData { limit: 2 }));
        assert_eq!(input.read_remaining(100).await.unwrap(), b"tail");
        assert_eq!(input.discard(10).await.unwrap(), 0);
        assert!(!input.await_content().await.unwrap());
        assert_eq!(input.read_until(b"x").await.unwrap(), None);
    }));
}

#[test]
fn cancel_makes_reads_fail() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.write_str("data\n").await.unwrap();
        let mut input = s.open_read_channel();
        assert!(input.await_content().await.unwrap());
        input.cancel();
        assert!(input.is_closed_for_read());
        assert!(matches!(input.read_line().await, Err(Error::Closed(_))));
    }));
}

#[test]
fn dropped_read_line_loses_nothing() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        let mut input = s.open_read_channel();
        out.write_str("par").await.unwrap();
        for _ in 0..3 {
            // Each attempt times out before the line is complete and is dropped.
            let r = asock::time::timeout(Duration::from_millis(20), input.read_line()).await;
            assert!(r.is_err());
        }
        out.write_str("tial\n").await.unwrap();
        assert_eq!(input.read_line().await.unwrap(), Some(&b"partial"[..]));
        // The same for read_exact.
        out.write_fully(&[1, 2]).await.unwrap();
        let mut four = [0; 4];
        let r = asock::time::timeout(Duration::from_millis(20), input.read_exact(&mut four)).await;
        assert!(r.is_err());
        out.write_fully(&[3, 4]).await.unwrap();
        input.read_exact(&mut four).await.unwrap();
        assert_eq!(four, [1, 2, 3, 4]);
    }));
}

#[test]
fn big_write_with_back_pressure_arrives_intact() {
    let sel = selector();
    sel.run_blocking(within(30, async {
        let (c, s) = pair(&sel).await;
        let data: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = sel.launch(async move {
            let mut out = c.open_write_channel(false);
            out.write_fully(&data).await.unwrap();
            out.close().await.unwrap();
        });
        let mut input = s.open_read_channel();
        // Read slowly at first so the writer has to wait.
        asock::time::sleep(Duration::from_millis(50)).await;
        let got = input.read_remaining(usize::MAX).await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
        writer.await.unwrap();
    }));
}

#[test]
fn dropped_writer_flushes_in_background_then_half_closes() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        {
            let mut out = c.open_write_channel(false);
            out.write_str("queued but not flushed\n").await.unwrap();
            assert!(out.queued() > 0);
        }
        let mut input = s.open_read_channel();
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("queued but not flushed")
        );
        assert_eq!(input.read_utf8_line().await.unwrap(), None);
    }));
}

#[test]
fn futures_io_traits_work() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, s) = pair(&sel).await;
        let mut out = c.open_write_channel(false);
        AsyncWriteExt::write_all(&mut out, b"alpha\nbeta\n")
            .await
            .unwrap();
        AsyncWriteExt::flush(&mut out).await.unwrap();
        AsyncWriteExt::close(&mut out).await.unwrap();
        let mut input = s.open_read_channel();
        let mut line = String::new();
        AsyncBufReadExt::read_line(&mut input, &mut line)
            .await
            .unwrap();
        assert_eq!(line, "alpha\n");
        let mut rest = Vec::new();
        AsyncReadExt::read_to_end(&mut input, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest, b"beta\n");
    }));
}

#[test]
fn write_after_close_fails() {
    let sel = selector();
    sel.run_blocking(within(10, async {
        let (c, _s) = pair(&sel).await;
        let mut out = c.open_write_channel(true);
        out.close().await.unwrap();
        assert!(out.is_closed_for_write());
        assert!(matches!(out.write_str("x").await, Err(Error::Closed(_))));
        out.close().await.unwrap();
    }));
}

//! A reference model of `ByteReadChannel` over arbitrary chunking, shared by the property test
//! (tests/chunking.rs) and the fuzz targets (fuzz/fuzz_targets/*.rs include this file).
//!
//! `run(input)`: byte 0 picks the chunk size the "socket" delivers, byte 1 the line limit,
//! bytes 2..4 seed the choice of operations, the rest is the stream. Every read's result is
//! checked against what the documentation promises for the bytes not yet consumed.

use std::sync::Arc;

use asock::channel::memory::read_channel;
use asock::Error;

struct Ops(u64);

impl Ops {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The record `read_line` (`strip_cr`) or `read_until(delim)` must return from `rest`:
/// `Ok(Some((record, consumed)))`, `Ok(None)` at the end, or `Err(skip)` for
/// [`Error::LineTooLong`] (with how many bytes the caller then skips to move on).
fn expect_record(
    rest: &[u8],
    delim: &[u8],
    strip_cr: bool,
    max: usize,
) -> Result<Option<(Vec<u8>, usize)>, usize> {
    if rest.is_empty() {
        return Ok(None);
    }
    match rest.windows(delim.len()).position(|w| w == delim) {
        Some(at) => {
            let mut rec = &rest[..at];
            if strip_cr && rec.last() == Some(&b'\r') {
                rec = &rec[..rec.len() - 1];
            }
            if rec.len() > max {
                Err(at + delim.len())
            } else {
                Ok(Some((rec.to_vec(), at + delim.len())))
            }
        }
        None if rest.len() > max => Err(rest.len()),
        None => Ok(Some((rest.to_vec(), rest.len()))),
    }
}

/// Runs one fuzz/property case; panics when the channel breaks its documented behaviour.
pub fn run(input: &[u8]) {
    if input.len() < 4 {
        return;
    }
    let chunk = usize::from(input[0]) % 64 + 1;
    let max = usize::from(input[1]) % 48 + 1;
    let mut ops = Ops(u64::from(u16::from_le_bytes([input[2], input[3]])) << 17 | 1);
    let data: Arc<[u8]> = input[4..].into();
    let mut ch = read_channel(data.clone(), chunk);
    ch.set_max_line_length(max);
    let mut pos = 0usize;
    asock::block_on(async {
        for _ in 0..4 * data.len() + 8 {
            let rest = &data[pos..];
            match ops.next() % 9 {
                0 | 1 => {
                    let (delim, strip): (&[u8], bool) = if ops.next().is_multiple_of(2) {
                        (b"\n", true)
                    } else {
                        (b"\r\n", false)
                    };
                    let got = if strip {
                        ch.read_line().await.map(|o| o.map(<[u8]>::to_vec))
                    } else {
                        ch.read_until(delim).await.map(|o| o.map(<[u8]>::to_vec))
                    };
                    match (expect_record(rest, delim, strip, max), got) {
                        (Ok(None), Ok(None)) => {}
                        (Ok(Some((rec, n))), Ok(Some(g))) => {
                            assert_eq!(g, rec, "record at {pos}");
                            pos += n;
                        }
                        (Err(skip), Err(Error::LineTooLong { .. })) => {
                            assert_eq!(ch.discard(skip as u64).await.unwrap(), skip as u64);
                            pos += skip;
                        }
                        (want, got) => panic!("at {pos}: expected {want:?}, got {got:?}"),
                    }
                }
                2 => {
                    let got = ch.read_utf8_line().await;
                    match (expect_record(rest, b"\n", true, max), got) {
                        (Ok(None), Ok(None)) => {}
                        (Ok(Some((rec, n))), got) => {
                            match (std::str::from_utf8(&rec), got) {
                                (Ok(s), Ok(Some(g))) => assert_eq!(g, s),
                                (Err(_), Err(Error::InvalidUtf8 { line, .. })) => {
                                    assert_eq!(line, rec)
                                }
                                (want, got) => panic!("at {pos}: {want:?} vs {got:?}"),
                            }
                            pos += n;
                        }
                        (Err(skip), Err(Error::LineTooLong { .. })) => {
                            assert_eq!(ch.discard(skip as u64).await.unwrap(), skip as u64);
                            pos += skip;
                        }
                        (want, got) => panic!("at {pos}: expected {want:?}, got {got:?}"),
                    }
                }
                3 => match ch.read_u32().await {
                    Ok(v) => {
                        assert!(rest.len() >= 4);
                        assert_eq!(v.to_be_bytes(), rest[..4]);
                        pos += 4;
                    }
                    Err(Error::UnexpectedEof { .. }) => assert!(rest.len() < 4),
                    Err(e) => panic!("read_u32: {e}"),
                },
                4 => {
                    let k = (ops.next() % 24) as usize;
                    let mut buf = vec![0; k];
                    match ch.read_exact(&mut buf).await {
                        Ok(()) => {
                            assert_eq!(buf, rest[..k]);
                            pos += k;
                        }
                        Err(Error::UnexpectedEof { .. }) => assert!(rest.len() < k),
                        Err(e) => panic!("read_exact: {e}"),
                    }
                }
                5 => {
                    let b = ch.fill_buf().await.unwrap().to_vec();
                    assert_eq!(b.is_empty(), rest.is_empty());
                    assert_eq!(b, rest[..b.len()]);
                    let n = (ops.next() as usize) % (b.len() + 1);
                    ch.consume(n);
                    pos += n;
                }
                6 => {
                    let k = (ops.next() % 100) as usize;
                    let mut buf = vec![0; k];
                    let n = ch.read_available(&mut buf).await.unwrap();
                    assert!(n <= k && (n > 0 || k == 0 || rest.is_empty()));
                    assert_eq!(buf[..n], rest[..n]);
                    pos += n;
                }
                7 => {
                    let k = ops.next() % 16;
                    let n = ch.discard(k).await.unwrap();
                    assert_eq!(n, k.min(rest.len() as u64));
                    pos += n as usize;
                }
                _ => {
                    assert_eq!(ch.await_content().await.unwrap(), !rest.is_empty());
                    assert_eq!(ch.available_for_read() == 0, rest.is_empty());
                }
            }
            assert!(pos <= data.len());
            if pos == data.len() && ops.next().is_multiple_of(4) {
                assert!(ch.read_line().await.unwrap().is_none());
                assert!(ch.is_closed_for_read());
                return;
            }
        }
    });
}

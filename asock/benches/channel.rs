//! Micro-benchmarks of [`ByteReadChannel`](asock::ByteReadChannel) over bytes in memory (no
//! socket, no event loop): line reads against tokio's `BufReader::read_line` / `read_until` and
//! tokio-util's `LinesCodec`, and typed reads against tokio's `read_u32` / `read_u64`.
//!
//! Every reader sees the data in pieces of at most 8 KiB, as from a socket.
//!
//! `cargo bench -p asock --bench channel`

#![allow(
    missing_docs,
    reason = "criterion_group! makes an undocumented public function"
)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use asock::channel::memory::read_channel;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::codec::{FramedRead, LinesCodec};

const CHUNK: usize = 8 * 1024;

/// Runs a future that never waits (everything is in memory).
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory read waited"),
    }
}

/// `count` lines of `len` bytes each, `\r\n` included, printable ASCII.
fn lines(count: usize, len: usize) -> Arc<[u8]> {
    let mut v = Vec::with_capacity(count * len);
    for i in 0..count {
        v.extend((0..len - 2).map(|j| b'!' + ((i + j) % 94) as u8));
        v.extend_from_slice(b"\r\n");
    }
    v.into()
}

fn read_lines(c: &mut Criterion) {
    for (count, len) in [(10_000, 64), (1_000, 1024)] {
        let data = lines(count, len);
        let mut g = c.benchmark_group(format!("read_line/{len}B"));
        g.throughput(Throughput::Elements(count as u64));

        g.bench_function("asock read_line (bytes)", |b| {
            b.iter_batched(
                || read_channel(data.clone(), CHUNK),
                |mut ch| {
                    now(async {
                        let mut n = 0;
                        while let Some(line) = ch.read_line().await.unwrap() {
                            n += line.len();
                        }
                        (n, ch)
                    })
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("asock read_utf8_line (String)", |b| {
            b.iter_batched(
                || read_channel(data.clone(), CHUNK),
                |mut ch| {
                    now(async {
                        let mut n = 0;
                        while let Some(line) = ch.read_utf8_line().await.unwrap() {
                            n += line.len();
                        }
                        (n, ch)
                    })
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("tokio BufReader::read_line", |b| {
            b.iter(|| {
                now(async {
                    let mut r = BufReader::with_capacity(CHUNK, &data[..]);
                    let mut line = String::new();
                    let mut n = 0;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap() == 0 {
                            break n;
                        }
                        n += line.trim_end_matches(['\r', '\n']).len();
                    }
                })
            })
        });
        g.bench_function("tokio BufReader::read_until", |b| {
            b.iter(|| {
                now(async {
                    let mut r = BufReader::with_capacity(CHUNK, &data[..]);
                    let mut line = Vec::new();
                    let mut n = 0;
                    loop {
                        line.clear();
                        if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
                            break n;
                        }
                        n += line.len();
                    }
                })
            })
        });
        g.bench_function("tokio-util LinesCodec", |b| {
            b.iter(|| {
                now(async {
                    let mut framed = FramedRead::with_capacity(&data[..], LinesCodec::new(), CHUNK);
                    let mut n = 0;
                    while let Some(line) = framed.next().await {
                        n += line.unwrap().len();
                    }
                    n
                })
            })
        });
        g.finish();
    }
}

fn typed_reads(c: &mut Criterion) {
    const N: usize = 10_000;
    let data: Arc<[u8]> = (0..N as u64 * 2)
        .flat_map(|i| (i as u32).to_be_bytes())
        .collect::<Vec<u8>>()
        .into();
    let mut g = c.benchmark_group("typed_reads");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("asock read_u32 x10k", |b| {
        b.iter_batched(
            || read_channel(data.clone(), CHUNK),
            |mut ch| {
                now(async {
                    let mut sum = 0u64;
                    for _ in 0..N {
                        sum += u64::from(ch.read_u32().await.unwrap());
                    }
                    (sum, ch)
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("tokio read_u32 x10k", |b| {
        b.iter(|| {
            now(async {
                let mut r = BufReader::with_capacity(CHUNK, &data[..]);
                let mut sum = 0u64;
                for _ in 0..N {
                    sum += u64::from(r.read_u32().await.unwrap());
                }
                sum
            })
        })
    });
    g.bench_function("asock read_u64 x10k", |b| {
        b.iter_batched(
            || read_channel(data.clone(), CHUNK),
            |mut ch| {
                now(async {
                    let mut sum = 0u64;
                    for _ in 0..N {
                        sum = sum.wrapping_add(ch.read_u64().await.unwrap());
                    }
                    (sum, ch)
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("tokio read_u64 x10k", |b| {
        b.iter(|| {
            now(async {
                let mut r = BufReader::with_capacity(CHUNK, &data[..]);
                let mut sum = 0u64;
                for _ in 0..N {
                    sum = sum.wrapping_add(r.read_u64().await.unwrap());
                }
                sum
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = read_lines, typed_reads
}
criterion_main!(benches);

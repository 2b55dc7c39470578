//! Stress tests of the cross-thread wake path: sockets polled from a foreign executor
//! (`futures::executor::block_on` on plain threads), wakers fired from other threads, and
//! `close` racing a pending read. Bounded: a few seconds in a debug build. For the long run:
//!
//! ```sh
//! ASOCK_STRESS_ITERS=20000 cargo test --release -p asock --test stress
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SelectorManager};

fn iters(default: usize) -> usize {
    std::env::var("ASOCK_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a raw echo server on its own loops; returns its address.
fn echo_server(sel: &SelectorManager) -> asock::SocketAddress {
    sel.run_blocking(async {
        let server = a_socket(sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        let s2 = sel.clone();
        sel.launch(async move {
            while let Ok(socket) = server.accept().await {
                s2.launch(async move {
                    let mut input = socket.open_read_channel();
                    let mut output = socket.open_write_channel(true);
                    loop {
                        let chunk = match input.fill_buf().await {
                            Ok(c) if !c.is_empty() => c,
                            _ => break,
                        };
                        let n = chunk.len();
                        if output.write_fully(chunk).await.is_err() {
                            break;
                        }
                        input.consume(n);
                    }
                });
            }
        });
        addr
    })
}

/// Clients driven by `futures::executor::block_on` on plain threads: every readiness event is
/// a wake-up from an asock loop to a foreign thread.
#[test]
fn foreign_executors_on_many_threads() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let addr = echo_server(&sel);
    let rounds = iters(300);
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (sel, addr, done) = (sel.clone(), addr.clone(), done.clone());
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    let s = a_socket(&sel).tcp().connect(addr).await.unwrap();
                    let mut input = s.open_read_channel();
                    let mut output = s.open_write_channel(true);
                    for i in 0..rounds {
                        let msg = [(t * 31 + i) as u8; 64];
                        output.write_fully(&msg).await.unwrap();
                        let mut back = [0u8; 64];
                        input.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, msg);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 8 * rounds);
}

/// Tasks on asock's loops woken by plain threads (oneshot channels), and their join handles
/// awaited from other plain threads.
#[test]
fn wakers_fired_from_other_threads() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let n = iters(2000);
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = futures::channel::oneshot::channel::<usize>();
        senders.push(tx);
        handles.push(sel.launch(async move { rx.await.unwrap() + i }));
    }
    // Fire from four threads at once, interleaved.
    let mut chunks: Vec<Vec<_>> = (0..4).map(|_| Vec::new()).collect();
    for (i, tx) in senders.into_iter().enumerate() {
        chunks[i % 4].push((i, tx));
    }
    let firers: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                for (i, tx) in c {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    // Await the handles from two other threads.
    let mut halves: Vec<Vec<_>> = vec![Vec::new(), Vec::new()];
    for (i, h) in handles.into_iter().enumerate() {
        halves[i % 2].push((i, h));
    }
    let waiters: Vec<_> = halves
        .into_iter()
        .map(|half| {
            std::thread::spawn(move || {
                for (i, h) in half {
                    assert_eq!(futures::executor::block_on(h).unwrap(), 2 * i);
                }
            })
        })
        .collect();
    for t in firers.into_iter().chain(waiters) {
        t.join().unwrap();
    }
}

/// `close` from another thread while a read waits (on an asock loop, or in a foreign
/// executor), sometimes racing bytes arriving: the read always ends, with the bytes, end of
/// stream or `Error::Closed`, never a hang.
#[test]
fn close_racing_a_pending_read() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let n = iters(300);
    let mut outcomes = [0usize; 3];
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        for i in 0..n {
            let client = a_socket(&sel).tcp().connect(addr.clone()).await.unwrap();
            let accepted = Arc::new(server.accept().await.unwrap());
            let reader_side = accepted.clone();
            let read = async move {
                let mut input = reader_side.open_read_channel();
                let mut buf = [0u8; 16];
                asock::time::timeout(Duration::from_secs(5), input.read_available(&mut buf)).await
            };
            // Half the reads run on an asock loop, half in a foreign executor thread.
            let (tx, rx) = futures::channel::oneshot::channel();
            if i % 2 == 0 {
                sel.launch(async move {
                    let _ = tx.send(read.await);
                });
            } else {
                std::thread::spawn(move || {
                    let _ = tx.send(futures::executor::block_on(read));
                });
            }
            let delay = Duration::from_micros((i as u64 * 37) % 400);
            let closer = accepted.clone();
            let racer = std::thread::spawn(move || {
                let t = Instant::now();
                while t.elapsed() < delay {
                    std::hint::spin_loop();
                }
                closer.close();
            });
            if i % 3 == 0 {
                // Bytes race the close.
                let _ = client.open_write_channel(true).write_fully(b"race").await;
            }
            let r = rx.await.expect("reader vanished");
            racer.join().unwrap();
            match r {
                Err(Error::Timeout) => panic!("iteration {i}: read hung after close"),
                Err(e) => panic!("iteration {i}: {e}"),
                Ok(Ok(n)) if n > 0 => outcomes[0] += 1,
                Ok(Ok(_)) => outcomes[1] += 1,
                // A reset: the racing bytes reached the closed socket.
                Ok(Err(Error::Closed(_) | Error::Io { .. } | Error::ConnectionReset(_))) => {
                    outcomes[2] += 1
                }
                Ok(Err(e)) => panic!("iteration {i}: unexpected {e:?}"),
            }
        }
    });
    eprintln!(
        "close vs read: {} got bytes, {} end of stream, {} closed",
        outcomes[0], outcomes[1], outcomes[2]
    );
}

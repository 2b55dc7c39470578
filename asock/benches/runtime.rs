//! Micro-benchmarks of the event loop: the cost of spawning (and joining) a task, and of a wake
//! (one task waking another, on one loop and across threads), against tokio.
//!
//! `cargo bench -p asock --bench runtime`

#![allow(
    missing_docs,
    reason = "criterion_group! makes an undocumented public function"
)]

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use asock::SelectorManager;
use atomic_waker::AtomicWaker;
use criterion::{criterion_group, criterion_main, Criterion};

/// A one-slot signal between two tasks, the same for every executor.
#[derive(Default)]
struct Flag {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Flag {
    fn signal(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.set.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// One side of a ping-pong: `iters` times, wake the other side and wait to be woken.
async fn ping(me: Arc<Flag>, other: Arc<Flag>, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        other.signal();
        me.wait().await;
    }
    start.elapsed()
}

/// The other side: wait to be woken, wake back.
async fn pong(me: Arc<Flag>, other: Arc<Flag>, iters: u64) {
    for _ in 0..iters {
        me.wait().await;
        other.signal();
    }
}

fn flags() -> (Arc<Flag>, Arc<Flag>) {
    (Arc::new(Flag::default()), Arc::new(Flag::default()))
}

fn spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_and_join");
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    g.bench_function("asock (from a task on the loop)", |b| {
        b.iter_custom(|iters| {
            let s = sel.clone();
            sel.run_blocking(sel.launch(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    s.launch(async {}).await.unwrap();
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    g.bench_function("tokio current_thread", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::spawn(async {}).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    sel.close();
}

fn wake(c: &mut Criterion) {
    let mut g = c.benchmark_group("wake_round_trip");
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    g.bench_function("asock, two tasks on one loop", |b| {
        b.iter_custom(|iters| {
            let (a, z) = flags();
            sel.launch(pong(z.clone(), a.clone(), iters));
            sel.run_blocking(sel.launch(ping(a, z, iters))).unwrap()
        })
    });
    g.bench_function("asock, loop task <-> another thread", |b| {
        b.iter_custom(|iters| {
            let (a, z) = flags();
            sel.launch(pong(z.clone(), a.clone(), iters));
            asock::block_on(ping(a, z, iters))
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    g.bench_function("tokio current_thread, two tasks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (a, z) = flags();
                tokio::spawn(pong(z.clone(), a.clone(), iters));
                tokio::spawn(ping(a, z, iters)).await.unwrap()
            })
        })
    });
    g.finish();
    sel.close();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = spawn, wake
}
criterion_main!(benches);

//! The runtime: tasks, join handles, timers, shutdown, foreign executors.

use asock_test_support as common;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asock::{a_socket, Error, SelectorManager};
use asock_test_support::within;

/// Live threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// Waits (boundedly) until `threads_named(prefix) == n`; threads name themselves as they start.
fn expect_threads(prefix: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named(prefix) != n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(threads_named(prefix), n, "threads named {prefix}*");
}

#[test]
fn launch_and_join() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    assert_eq!(sel.threads(), 2);
    let sum = sel.run_blocking(async {
        let handles: Vec<_> = (0..100u64)
            .map(|i| sel.launch(async move { i * 2 }))
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 9900);
}

#[test]
fn dropped_handle_detaches_and_cancel_stops() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    drop(sel.launch(async move {
        asock::time::sleep(Duration::from_millis(10)).await;
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let r = ran.clone();
    let cancelled = sel.launch(async move {
        asock::time::sleep(Duration::from_millis(10)).await;
        r.fetch_add(100, Ordering::SeqCst);
    });
    cancelled.cancel();
    // Bounded wait for the detached task (a loaded machine may run it late), then a margin in
    // which the cancelled one, due at the same time, would have run too.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ran.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        sel.run_blocking(asock::time::sleep(Duration::from_millis(10)));
    }
    sel.run_blocking(asock::time::sleep(Duration::from_millis(50)));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn panicking_task_is_reported_and_loop_survives() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let r = sel.run_blocking(sel.launch(async {
        if std::hint::black_box(true) {
            panic!("boom");
        }
    }));
    assert!(
        matches!(r, Err(Error::Panicked(ref m)) if m.contains("boom")),
        "{r:?}"
    );
    assert_eq!(sel.run_blocking(sel.launch(async { 5 })).unwrap(), 5);
}

#[test]
fn sleep_and_timeout() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    sel.run_blocking(sel.launch(async {
        let t = Instant::now();
        asock::time::sleep(Duration::from_millis(30)).await;
        assert!(t.elapsed() >= Duration::from_millis(30));
        let r = asock::time::timeout(
            Duration::from_millis(10),
            asock::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert!(matches!(r, Err(Error::Timeout)));
        let r = asock::time::timeout(Duration::from_secs(5), async { 1 }).await;
        assert_eq!(r.unwrap(), 1);
    }))
    .unwrap();
}

#[test]
fn many_timers_fire_in_order() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let order = sel.run_blocking(async {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut hs = Vec::new();
        for i in (0..20u64).rev() {
            let tx = tx.clone();
            hs.push(sel.launch(async move {
                asock::time::sleep(Duration::from_millis(5 * i)).await;
                tx.send(i).unwrap();
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        drop(tx);
        rx.iter().collect::<Vec<_>>()
    });
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}

#[test]
fn close_joins_every_loop_thread() {
    let sel = SelectorManager::builder()
        .threads(3)
        .name("lk-close")
        .build()
        .unwrap();
    expect_threads("lk-close", 3);
    sel.run_blocking(sel.launch(async { 1 })).unwrap();
    // A task stuck forever must not keep the loops alive.
    let _stuck = sel.launch(std::future::pending::<()>());
    sel.close();
    assert!(sel.is_closed());
    // Joined: a joined thread may stay listed in /proc for a moment after it exited.
    expect_threads("lk-close", 0);
    // Launching on a closed manager gives a cancelled task, not a hang.
    assert!(matches!(
        sel.run_blocking(sel.launch(async { 1 })),
        Err(Error::Cancelled)
    ));
}

#[test]
fn drop_of_last_handle_stops_loops() {
    {
        let sel = SelectorManager::builder()
            .threads(2)
            .name("lk-drop")
            .build()
            .unwrap();
        expect_threads("lk-drop", 2);
        sel.run_blocking(sel.launch(async {})).unwrap();
    }
    // Joined: a joined thread may stay listed in /proc for a moment after it exited.
    expect_threads("lk-drop", 0);
}

#[test]
fn sockets_work_from_a_foreign_executor() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    futures::executor::block_on(within(10, async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_address().clone();
        let (client, s) = futures::join!(
            async { a_socket(&sel).tcp().connect(addr).await.unwrap() },
            async { server.accept().await.unwrap() }
        );
        let mut out = client.open_write_channel(true);
        let mut input = s.open_read_channel();
        // The reply comes from a thread of its own, waking this executor across threads.
        let t = std::thread::spawn(move || {
            futures::executor::block_on(async {
                asock::time::sleep(Duration::from_millis(20)).await;
                out.write_str("from another thread\n").await.unwrap();
            })
        });
        assert_eq!(
            input.read_utf8_line().await.unwrap().as_deref(),
            Some("from another thread")
        );
        t.join().unwrap();
    }));
}

#[test]
fn busy_poll_mode_works() {
    let sel = SelectorManager::builder()
        .threads(1)
        .busy_poll(Duration::from_micros(200))
        .build()
        .unwrap();
    sel.run_blocking(within(10, async {
        let (c, s) = common::pair(&sel).await;
        let h = sel.launch(async move {
            let mut i = s.open_read_channel();
            let mut o = s.open_write_channel(true);
            while let Some(l) = i.read_line().await.unwrap() {
                o.write_fully(l).await.unwrap();
                o.write_fully(b"\n").await.unwrap();
            }
        });
        let mut i = c.open_read_channel();
        let mut o = c.open_write_channel(true);
        for n in 0..100 {
            o.write_str(&format!("{n}\n")).await.unwrap();
            assert_eq!(i.read_utf8_line().await.unwrap(), Some(n.to_string()));
        }
        o.close().await.unwrap();
        h.await.unwrap();
    }));
}

#[test]
fn blocking_on_a_loop_is_refused_not_a_deadlock() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let sel2 = sel.clone();
    let r = sel.run_blocking(sel.launch(async move { sel2.run_blocking(async { 1 }) }));
    assert!(
        matches!(r, Err(Error::Panicked(ref m)) if m.contains("event loop")),
        "{r:?}"
    );
    // The loop survives and keeps running tasks.
    assert_eq!(sel.run_blocking(sel.launch(async { 2 })).unwrap(), 2);
}

#[test]
fn a_task_whose_writes_never_wait_does_not_starve_its_loop() {
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicBool;
    // One loop. Task A writes 64-byte pieces to a socket that a thread drains as fast as it
    // can, so its writes never wait: only the cooperative budget makes it yield. Task B, on the
    // same loop, must still get its 20 round trips done while A keeps writing.
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    sel.run_blocking(async {
        let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
        let port = server.port().unwrap();
        let sink = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        let drained = within(10, server.accept()).await.unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let a = {
            let (written, stop) = (written.clone(), stop.clone());
            sel.launch(async move {
                let mut output = drained.open_write_channel(true);
                // Bounded, so that a loop it did monopolize would still come back.
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    output.write_fully(&[1u8; 64]).await.unwrap();
                    written.fetch_add(64, Ordering::SeqCst);
                }
            })
        };
        while written.load(Ordering::SeqCst) < 64 * 1024 {
            asock::time::sleep(Duration::from_millis(1)).await;
        }
        let echo_peer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut b = [0u8; 4];
            for _ in 0..20 {
                s.write_all(b"ping").unwrap();
                s.read_exact(&mut b).unwrap();
                assert_eq!(&b, b"ping");
            }
        });
        let echoed = within(10, server.accept()).await.unwrap();
        let b = sel.launch(async move {
            let (mut input, mut output) =
                (echoed.open_read_channel(), echoed.open_write_channel(true));
            let mut buf = [0u8; 4];
            for _ in 0..20 {
                input.read_exact(&mut buf).await.unwrap();
                output.write_fully(&buf).await.unwrap();
            }
        });
        within(10, b).await.unwrap();
        echo_peer.join().unwrap();
        assert!(!a.is_finished(), "A was still writing while B was served");
        stop.store(true, Ordering::SeqCst);
        within(10, a).await.unwrap();
        sink.join().unwrap();
    });
}

/// Sets its flag when dropped: tells a test when a task's future went.
struct DropFlag(Arc<AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits (boundedly) for `flag` to reach `n`.
fn expect_count(flag: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while flag.load(Ordering::SeqCst) != n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(flag.load(Ordering::SeqCst), n, "{what}");
}

#[test]
fn a_task_that_wakes_itself_while_running_is_polled_again() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let polls = sel.run_blocking(sel.launch(async {
        let mut polls = 0;
        std::future::poll_fn(|cx| {
            polls += 1;
            if polls < 5 {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        polls
    }));
    assert_eq!(polls.unwrap(), 5);
}

#[test]
fn cancel_from_another_thread_drops_a_waiting_future_on_its_loop() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    let task = sel.launch(async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    });
    // Let it run once and wait.
    sel.run_blocking(asock::time::sleep(Duration::from_millis(20)));
    assert!(!task.is_finished());
    std::thread::spawn(move || task.cancel()).join().unwrap();
    expect_count(&dropped, 1, "the cancelled future is dropped");
}

#[test]
fn a_task_cancelled_while_its_poll_runs_is_dropped_when_the_poll_returns() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let flag = DropFlag(dropped.clone());
    let task = sel.launch(async move {
        let _flag = flag;
        std::future::poll_fn(move |_| {
            // One long poll: the test cancels the task while this runs.
            let _ = started_tx.send(());
            let _ = go_rx.recv_timeout(Duration::from_secs(5));
            std::task::Poll::<()>::Pending
        })
        .await;
    });
    started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    task.cancel();
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "not inside its own poll");
    go_tx.send(()).unwrap();
    expect_count(&dropped, 1, "dropped once the poll returned");
}

#[test]
fn closing_the_manager_from_inside_a_task_cancels_it_without_a_deadlock() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    let inner = sel.clone();
    let task = sel.launch(async move {
        let _flag = flag;
        inner.close();
        // Still running: the close dropped every other task; this one goes once it waits.
        std::future::pending::<()>().await;
    });
    // After the close no loop runs asock's timers for this manager; the background loop does.
    let r = asock::block_on(within(10, task));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(sel.is_closed());
}

#[test]
fn a_task_panicking_after_its_handle_was_dropped_does_not_stop_the_loop() {
    let sel = SelectorManager::builder().threads(1).build().unwrap();
    drop(sel.launch(async {
        if std::hint::black_box(true) {
            panic!("detached boom");
        }
    }));
    assert_eq!(sel.run_blocking(sel.launch(async { 3 })).unwrap(), 3);
}

#[test]
fn a_join_handle_is_awaited_from_a_task_on_another_loop() {
    let sel = SelectorManager::builder().threads(2).build().unwrap();
    let worker = sel.launch(async {
        asock::time::sleep(Duration::from_millis(5)).await;
        "done"
    });
    // Round-robin puts the waiter on the other loop.
    let waiter = sel.launch(worker);
    assert_eq!(sel.run_blocking(waiter).unwrap().unwrap(), "done");
}

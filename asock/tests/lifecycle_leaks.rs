//! Lifecycle under repetition: closing or dropping a manager leaves no descriptor and no thread
//! behind. One test per file: it counts the process's descriptors and threads, which other
//! tests running in parallel would disturb.

use std::time::Duration;

use asock::{a_socket, SelectorManager};
use asock_test_support::pair;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The thread count once it is at most `want` (or after 5 s): a joined thread can stay listed
/// in /proc for a moment after it exited (`pthread_join` returns at the tid clear, before the
/// kernel has released the task), so a count may be high for a moment, the baseline included.
fn threads_at_most(want: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while threads() > want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    threads()
}

#[test]
fn close_and_drop_cycles_leak_no_descriptor_and_no_thread() {
    // Warm up what lives for the whole process (the background loop, the dead socket).
    {
        let sel = SelectorManager::builder().threads(2).build().unwrap();
        asock::block_on(asock::time::sleep(Duration::from_millis(1)));
        sel.close();
    }
    // The baseline is the lowest count over 200 ms, so that a thread of the warm-up still
    // leaving /proc does not raise it (and hide a leak of one later).
    let threads0 = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            threads()
        })
        .min()
        .unwrap_or(0);
    let fds0 = open_fds();

    // 1,000 cycles: a listener with a task parked on accept and a connected pair with a task
    // waiting in a read, then close().
    for _ in 0..1000 {
        let sel = SelectorManager::builder().threads(2).build().unwrap();
        let (server, (c, s)) = sel.run_blocking(async {
            let server = a_socket(&sel).tcp().bind("127.0.0.1:0").await.unwrap();
            (server, pair(&sel).await)
        });
        let accepting = sel.launch(async move { server.accept().await.map(|_| ()) });
        let reading = sel.launch(async move {
            let _keep = c;
            s.open_read_channel().read_utf8_line().await.map(|_| ())
        });
        sel.close();
        assert!(!matches!(asock::block_on(accepting), Ok(Ok(()))));
        assert!(!matches!(asock::block_on(reading), Ok(Ok(()))));
    }
    assert_eq!(open_fds(), fds0, "descriptors after 1,000 close cycles");
    let now = threads_at_most(threads0);
    assert!(
        now <= threads0,
        "threads after 1,000 close cycles: {now}, {threads0} before"
    );

    // 100 cycles: the last handle dropped while a task owns sockets.
    for _ in 0..100 {
        let sel = SelectorManager::builder().threads(2).build().unwrap();
        let (c, s) = sel.run_blocking(pair(&sel));
        let h = sel.launch(async move {
            let _keep = c;
            s.open_read_channel().read_utf8_line().await.map(|_| ())
        });
        drop(sel);
        assert!(!matches!(asock::block_on(h), Ok(Ok(()))));
    }
    assert_eq!(open_fds(), fds0, "descriptors after 100 drop cycles");
    let now = threads_at_most(threads0);
    assert!(
        now <= threads0,
        "threads after 100 drop cycles: {now}, {threads0} before"
    );
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use asock::{a_socket, SelectorManager, Socket};

/// A selector with two loops, like the CI machine's two cores.
pub fn selector() -> SelectorManager {
    SelectorManager::builder()
        .threads(2)
        .build()
        .expect("selector")
}

/// A connected pair over 127.0.0.1: (client, accepted).
pub async fn pair(sel: &SelectorManager) -> (Socket, Socket) {
    let server = a_socket(sel).tcp().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_address().clone();
    let client = a_socket(sel).tcp().connect(addr).await.unwrap();
    let accepted = server.accept().await.unwrap();
    (client, accepted)
}

/// Fails the test if `f` takes longer than `secs`.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    asock::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Raises the soft descriptor limit to the hard one (tests with many sockets).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

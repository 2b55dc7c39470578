//! macOS, iOS and the BSDs: the portable paths of `fallback.rs`, plus the peer's credentials
//! (`getpeereid`) and a SIGPIPE guard: `SO_NOSIGPIPE` on every socket on Apple systems (set by
//! [`prepare_socket`] where sockets are made and accepted), `MSG_NOSIGNAL` on every send on the
//! BSDs.

use std::io;
use std::os::fd::RawFd;

use socket2::Socket as RawSocket;

pub(crate) use super::fallback::{
    accept, autobind_unix, gso_supported, pipe, recv, send, sendfile, set_gro, splice, HAS_BATCH,
    HAS_SPLICE,
};
pub(super) use super::fallback::{dup_onto, recv_batch, send_batch, send_segmented, send_segments};

/// Flags for every send: none on Apple systems (the socket has `SO_NOSIGPIPE` instead).
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;
/// Flags for every send: a reset peer is an error, never a SIGPIPE.
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// Apple systems: sets `SO_NOSIGPIPE`, so a write to a reset peer is an error, never a SIGPIPE.
/// (socket2 sets it too on the sockets it makes and accepts; asock's promise does not rest on
/// that.)
#[cfg(target_vendor = "apple")]
pub(crate) fn prepare_socket(sock: &RawSocket) -> io::Result<()> {
    sock.set_nosigpipe(true)
}

/// The BSDs: nothing (`MSG_NOSIGNAL` on each send keeps SIGPIPE away).
#[cfg(not(target_vendor = "apple"))]
#[inline]
pub(crate) fn prepare_socket(_sock: &RawSocket) -> io::Result<()> {
    Ok(())
}

/// The user and group of the peer of a connected Unix stream socket (`getpeereid`); the
/// process is not reported.
pub(crate) fn peer_credentials(fd: RawFd) -> io::Result<(Option<i32>, u32, u32)> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: both out-pointers are valid, writable locals of the types getpeereid expects.
    unsafe { syscall!(getpeereid(fd, &mut uid, &mut gid)) }?;
    Ok((None, uid, gid))
}

/// The CPUs this process may run on: unknown here (pinning is a no-op).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pinning threads to CPUs is not done here: always `false`.
pub(crate) fn pin_current_thread(_cpu: usize) -> bool {
    false
}

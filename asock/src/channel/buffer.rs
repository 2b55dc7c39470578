//! Channel buffers, recycled per thread so an idle connection holds none.
//!
//! A channel takes a buffer when bytes flow and gives it back when it would otherwise wait with
//! an empty one. The pool keeps that from costing an allocation (and a zeroing) per message.
//! Two sizes are pooled: the [`CHUNK`] every channel starts with, and the [`BULK`] size a
//! bulk stream's reads grow to, so a stream that waits between bursts gets its full-size
//! buffer back without zeroing 56 KiB again. A pool never keeps more buffers than its loop has
//! sockets ([`fit_pools`]), so memory a burst of connections took goes back when they leave.

use std::cell::RefCell;

/// Size of a channel's first buffer.
pub(crate) const CHUNK: usize = 8 * 1024;
/// Size of a bulk stream's buffer (its largest read). Other sizes (lines longer than this)
/// are freed, not pooled.
pub(crate) const BULK: usize = 64 * 1024;
/// [`CHUNK`] buffers kept per thread at most (2 MiB).
const POOL_MAX: usize = 256;
/// [`BULK`] buffers kept per thread at most (512 KiB).
const BULK_POOL_MAX: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static BULK_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `size` bytes ([`CHUNK`] or [`BULK`]), from the pool when it has one. A new one
/// is zero-filled; a pooled one holds old bytes, which are only ever read where they were
/// written.
#[inline]
pub(crate) fn take(size: usize) -> Vec<u8> {
    // Each pool named directly (not through a reference to one of them), so the access stays
    // an inlined thread-local read.
    let pooled = if size == BULK {
        BULK_POOL.with_borrow_mut(Vec::pop)
    } else {
        POOL.with_borrow_mut(Vec::pop)
    };
    pooled.unwrap_or_else(|| vec![0; size])
}

/// Returns a buffer to its pool (or frees it). Its contents are left as they are.
#[inline]
pub(crate) fn give(buf: Vec<u8>) {
    // `try_with`: a thread being torn down just frees the buffer.
    if buf.len() == CHUNK {
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(buf);
            }
        });
    } else if buf.len() == BULK {
        let _ = BULK_POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < BULK_POOL_MAX {
                p.push(buf);
            }
        });
    }
}

/// Trims this thread's pools to at most `sockets` buffers each: a buffer is pooled for a socket
/// of the loop to take again, so after a burst of connections has left the loop keeps only as
/// many as it still has sockets. The loop calls it once per poll.
#[inline]
pub(crate) fn fit_pools(sockets: usize) {
    for pool in [&POOL, &BULK_POOL] {
        let _ = pool.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() > sockets {
                p.truncate(sockets);
            }
        });
    }
}

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

/// A thread's pooled buffers, one list per size.
struct Pools {
    chunks: Vec<Vec<u8>>,
    bulk: Vec<Vec<u8>>,
}

thread_local! {
    // Both sizes in one thread-local: every access is one direct read of this thread's slot
    // (two keys chosen by size compiled to an indirect call through the chosen key).
    static POOLS: RefCell<Pools> = const {
        RefCell::new(Pools {
            chunks: Vec::new(),
            bulk: Vec::new(),
        })
    };
}

/// A buffer of `size` bytes ([`CHUNK`] or [`BULK`]), from the pool when it has one. A new one
/// is zero-filled; a pooled one holds old bytes, which are only ever read where they were
/// written.
#[inline]
pub(crate) fn take(size: usize) -> Vec<u8> {
    // `try_with`: a thread being torn down allocates instead.
    let pooled = POOLS
        .try_with(|p| {
            let mut p = p.borrow_mut();
            if size == BULK {
                p.bulk.pop()
            } else {
                p.chunks.pop()
            }
        })
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| vec![0; size])
}

/// Returns a buffer to its pool (or frees it). Its contents are left as they are.
#[inline]
pub(crate) fn give(buf: Vec<u8>) {
    let len = buf.len();
    if len != CHUNK && len != BULK {
        return;
    }
    // `try_with`: a thread being torn down just frees the buffer.
    let _ = POOLS.try_with(|p| {
        let mut p = p.borrow_mut();
        let (pool, max) = if len == CHUNK {
            (&mut p.chunks, POOL_MAX)
        } else {
            (&mut p.bulk, BULK_POOL_MAX)
        };
        if pool.len() < max {
            pool.push(buf);
        }
    });
}

/// Trims this thread's pools to at most `sockets` buffers each: a buffer is pooled for a socket
/// of the loop to take again, so after a burst of connections has left the loop keeps only as
/// many as it still has sockets. The loop calls it once per poll.
#[inline]
pub(crate) fn fit_pools(sockets: usize) {
    let _ = POOLS.try_with(|p| {
        let p = &mut *p.borrow_mut();
        for pool in [&mut p.chunks, &mut p.bulk] {
            if pool.len() > sockets {
                pool.truncate(sockets);
            }
        }
    });
}

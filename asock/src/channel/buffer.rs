//! Channel buffers, recycled per thread so an idle connection holds none.
//!
//! A channel takes a buffer when bytes flow and gives it back when it would otherwise wait with
//! an empty one. The pool keeps that from costing an allocation (and a zeroing) per message.

use std::cell::RefCell;

/// Size of a pooled buffer; larger ones (grown for long lines) are freed, not pooled.
pub(crate) const CHUNK: usize = 8 * 1024;
/// Buffers kept per thread at most.
const POOL_MAX: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A zero-filled buffer of [`CHUNK`] bytes, from the pool when it has one.
#[inline]
pub(crate) fn take() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; CHUNK])
}

/// Returns a buffer to the pool (or frees it). Its contents are left as they are: buffers are
/// only ever read where they were written.
#[inline]
pub(crate) fn give(buf: Vec<u8>) {
    if buf.len() != CHUNK {
        return;
    }
    // `try_with`: a thread being torn down just frees the buffer.
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

//! The memory budget of a [`SelectorManager`](crate::SelectorManager): read-channel buffers
//! counted process-wide, and connections shed when the count would pass the limit.
//!
//! Cost on the hot path: one relaxed atomic add when a channel takes a buffer and one relaxed
//! atomic sub when it gives it back (nothing at all without a budget). Only buffers grown past
//! one pooled chunk (long lines, bulk reads) are tracked individually, in a list behind a mutex
//! that is taken when such a buffer grows or when connections are shed: rare events, and both
//! already cost an allocation and a copy.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Source;
use crate::util::lock;

/// A burst of shedding ends after this long without one; the next shed is reported again.
const BURST_GAP: Duration = Duration::from_secs(1);

/// What [`SelectorManager::on_memory_shed`](crate::SelectorManager::on_memory_shed) reports:
/// the first connection shed in a burst (a burst ends after a second without shedding).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MemoryShed {
    /// The budget, in bytes.
    pub limit: usize,
    /// Bytes of channel buffers held when the connection was shed.
    pub used: usize,
    /// Connections shed since the manager started, this one included.
    pub total_shed: u64,
}

type ShedHandler = Box<dyn Fn(&MemoryShed) + Send + Sync>;

/// A manager's budget for channel buffers.
pub(crate) struct Budget {
    limit: usize,
    /// Bytes of buffers that channels hold now.
    used: AtomicUsize,
    /// Bytes held by channels that were shed and have not let go yet: already counted as free.
    shedding: AtomicUsize,
    /// Channels holding a grown buffer (the candidates for shedding), with how many of them
    /// have been dropped since the list was last pruned.
    holders: Mutex<(Vec<Weak<Holder>>, usize)>,
    total_shed: AtomicU64,
    last_shed: Mutex<Option<Instant>>,
    handler: Mutex<Option<ShedHandler>>,
}

/// One channel's share, as the budget sees it.
pub(crate) struct Holder {
    bytes: AtomicUsize,
    /// When the channel's buffer first grew past a chunk (older is shed first among equals).
    since: Mutex<Option<Instant>>,
    shed: AtomicBool,
    listed: AtomicBool,
    src: Weak<dyn Source>,
}

impl Holder {
    /// A holder for the channel reading from `src`.
    pub(crate) fn new(src: &Arc<dyn Source>) -> Holder {
        Holder {
            bytes: AtomicUsize::new(0),
            since: Mutex::new(None),
            shed: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            src: Arc::downgrade(src),
        }
    }

    /// Whether the budget shed this channel.
    pub(crate) fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Relaxed)
    }
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            shedding: AtomicUsize::new(0),
            holders: Mutex::new((Vec::new(), 0)),
            total_shed: AtomicU64::new(0),
            last_shed: Mutex::new(None),
            handler: Mutex::new(None),
        }
    }

    /// The limit, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by channel buffers now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Connections shed so far.
    pub(crate) fn total_shed(&self) -> u64 {
        self.total_shed.load(Ordering::Relaxed)
    }

    /// Sets who hears about shedding.
    pub(crate) fn set_handler(&self, handler: ShedHandler) {
        *lock(&self.handler) = Some(handler);
    }

    /// A channel took a pooled chunk of `bytes`: on the hot path, one relaxed add (and a
    /// relaxed load of the holder's own flag). Returns `false` when the budget cannot make
    /// room and this channel is the one to shed; its bytes are then given back already.
    #[inline]
    pub(crate) fn take(&self, holder: &Arc<Holder>, bytes: usize) -> bool {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if holder.listed.load(Ordering::Relaxed) {
            holder.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if used <= self.limit {
            return true;
        }
        self.over(holder, bytes)
    }

    /// The budget is passed: shed others, or give `bytes` back and refuse.
    #[cold]
    fn over(&self, holder: &Arc<Holder>, bytes: usize) -> bool {
        if self.make_room(holder) {
            return true;
        }
        self.give(holder, bytes);
        false
    }

    /// A channel gave back `bytes` (a chunk to the pool, or a freed buffer): one relaxed sub.
    #[inline]
    pub(crate) fn give(&self, holder: &Holder, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        if holder.listed.load(Ordering::Relaxed) {
            self.settle(holder, bytes);
        }
    }

    /// A tracked holder let go of `bytes`.
    #[cold]
    fn settle(&self, holder: &Holder, bytes: usize) {
        holder.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if holder.is_shed() {
            self.shedding.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// A channel whose buffer holds `held` bytes grows it by `extra`: it is tracked from now
    /// on (a candidate for shedding). Returns `false` when the budget cannot make room and this
    /// channel is the one to shed; nothing was added then.
    #[cold]
    pub(crate) fn grow(&self, holder: &Arc<Holder>, held: usize, extra: usize) -> bool {
        if !holder.listed.load(Ordering::Relaxed) {
            *lock(&holder.since) = Some(Instant::now());
            holder.bytes.store(held, Ordering::Relaxed);
            holder.listed.store(true, Ordering::Relaxed);
            lock(&self.holders).0.push(Arc::downgrade(holder));
        }
        self.take(holder, extra)
    }

    /// A channel is dropped, `holder` with it. A listed one leaves a dead entry in the list,
    /// and each dead entry keeps two small allocations alive (the holder's and, through its
    /// weak pointer, the socket's): the list is pruned once half of it is dead, so after a
    /// burst of long-line connections has left the memory they used is given back.
    pub(crate) fn leave(&self, holder: Arc<Holder>) {
        let listed = holder.listed.load(Ordering::Relaxed);
        drop(holder);
        if listed {
            let mut guard = lock(&self.holders);
            let (list, dead) = &mut *guard;
            *dead += 1;
            if *dead * 2 >= list.len() {
                list.retain(|h| h.strong_count() > 0);
                list.shrink_to_fit();
                *dead = 0;
            }
        }
    }

    /// Sheds the channels holding the most bytes (the oldest first among equals) until the
    /// bytes not already being shed fit the limit. Returns `false` when `me` would be next (it
    /// holds the most, or nothing else is left to shed) and holds a grown buffer: the caller
    /// then fails its own read.
    fn make_room(&self, me: &Arc<Holder>) -> bool {
        let mut list: Vec<Arc<Holder>> = lock(&self.holders)
            .0
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|h| !h.is_shed())
            .collect();
        let key = |h: &Arc<Holder>| (h.bytes.load(Ordering::Relaxed), *lock(&h.since));
        let mut keyed: Vec<_> = list.drain(..).map(|h| (key(&h), h)).collect();
        keyed.sort_by(|((ba, sa), _), ((bb, sb), _)| bb.cmp(ba).then(sa.cmp(sb)));
        let over = |s: &Budget| {
            s.used
                .load(Ordering::Relaxed)
                .saturating_sub(s.shedding.load(Ordering::Relaxed))
                > s.limit
        };
        let mut victims = keyed.into_iter().map(|(_, h)| h);
        while over(self) {
            match victims.next() {
                Some(v) if !Arc::ptr_eq(&v, me) => self.shed(&v),
                // A connection taking its first chunk (at most 8 KiB) is never shed for the
                // big: what is left over is what shed channels still hold for a moment.
                _ if !me.listed.load(Ordering::Relaxed) => return true,
                _ => {
                    self.shed(me);
                    return false;
                }
            }
        }
        // Shed channels let go as their tasks run; until then the bytes really held may pass
        // the limit. Past a quarter more, no buffer grows past a chunk until they have (a
        // connection taking its first chunk still may: the small are never shed for the big).
        if me.listed.load(Ordering::Relaxed)
            && self.used() > self.limit.saturating_add(self.limit / 4)
        {
            self.shed(me);
            return false;
        }
        true
    }

    /// Marks `h` shed and closes its socket: its pending and later reads fail with
    /// [`Error::MemoryBudget`](crate::Error::MemoryBudget), and its buffer goes as its task ends.
    fn shed(&self, h: &Holder) {
        if h.is_shed() {
            return;
        }
        // Counted before the flag is set: a release racing with this never subtracts first.
        let bytes = h.bytes.load(Ordering::Relaxed);
        self.shedding.fetch_add(bytes, Ordering::Relaxed);
        if h.shed.swap(true, Ordering::Relaxed) {
            self.shedding.fetch_sub(bytes, Ordering::Relaxed);
            return;
        }
        if let Some(src) = h.src.upgrade() {
            src.close();
        }
        self.count_shed();
    }

    /// Counts one connection shed, and reports it when it starts a burst.
    fn count_shed(&self) {
        let total = self.total_shed.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let first = {
            let mut last = lock(&self.last_shed);
            let first = last.is_none_or(|t| now.duration_since(t) > BURST_GAP);
            *last = Some(now);
            first
        };
        if first {
            if let Some(handler) = lock(&self.handler).as_ref() {
                handler(&MemoryShed {
                    limit: self.limit,
                    used: self.used(),
                    total_shed: total,
                });
            }
        }
    }
}

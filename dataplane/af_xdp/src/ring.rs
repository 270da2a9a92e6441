//! Single-producer/single-consumer views over the rings an XSK socket shares with the kernel.
//!
//! Layout and protocol follow `Documentation/networking/af_xdp.rst`: each ring is a power-of-two
//! array of descriptors plus a producer and a consumer index (free-running u32 counters). The
//! producer writes entries, then publishes them with a release store of the producer index; the
//! consumer reads the index with an acquire load, reads the entries, then releases them with a
//! release store of the consumer index. We cache the other side's index and re-read it only
//! when the cached view runs out, so a batch costs one atomic load and one store.

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::XskError;
use crate::mmap::Mmap;

/// The pieces of a mapped ring. `T` is `u64` (fill, completion) or `xdp_desc` (RX, TX).
#[derive(Debug)]
struct RingMap<T> {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
}

// SAFETY: the raw pointers point into `_map`, which moves with the value; one thread owns a
// ring at a time (the kernel is the other side, synchronised through the atomics).
unsafe impl<T> Send for RingMap<T> {}

impl<T: Copy> RingMap<T> {
    fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> Result<Self, XskError> {
        debug_assert!(size.is_power_of_two());
        let len = off.desc as usize + size as usize * size_of::<T>();
        let map = Mmap::ring(fd, len, pgoff)?;
        let base = map.as_ptr();
        let fits = |o: u64, n: usize| (o as usize).checked_add(n).is_some_and(|end| end <= len);
        if !fits(off.producer, 4) || !fits(off.consumer, 4) || !fits(off.flags, 4) {
            return Err(XskError::InvalidConfig(
                "kernel ring offsets outside the mapping",
            ));
        }
        // SAFETY: (for the four `add`s) every offset was checked to lie inside the mapping of
        // `len` bytes; the kernel aligns the indices to 4 and the descriptors to 8 bytes.
        unsafe {
            Ok(RingMap {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                descs: base.add(off.desc as usize).cast(),
                mask: size - 1,
                size,
                _map: map,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, 4-aligned; the kernel accesses it atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer().
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for producer(); the kernel sets/clears XDP_RING_NEED_WAKEUP in this word.
        let flags = unsafe { &*self.flags };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn write(&mut self, idx: u32, value: T) {
        // SAFETY: idx & mask < size, and the mapping holds `size` descriptors; the entry is in
        // the producer's reserved window, which the kernel does not read until published.
        unsafe { self.descs.add((idx & self.mask) as usize).write(value) }
    }

    fn read(&self, idx: u32) -> T {
        // SAFETY: idx & mask < size; the entry was published by the kernel (acquire on the
        // producer index) and stays untouched until we release it.
        unsafe { self.descs.add((idx & self.mask) as usize).read() }
    }
}

/// A ring we produce into (fill, TX).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    ring: RingMap<T>,
    /// Our producer index (mirrors the shared one after `submit`).
    prod: u32,
    /// Last seen consumer index of the kernel.
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> Result<Self, XskError> {
        let ring = RingMap::new(fd, off, size, pgoff)?;
        let prod = ring.producer().load(Ordering::Relaxed);
        let cached_cons = ring.consumer().load(Ordering::Acquire);
        Ok(ProdRing {
            ring,
            prod,
            cached_cons,
        })
    }

    /// Free slots, refreshing the kernel's consumer index only when fewer than `want` are known.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.ring.size - self.prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.ring.consumer().load(Ordering::Acquire);
        self.ring.size - self.prod.wrapping_sub(self.cached_cons)
    }

    /// Write entries, then publish them all with one release store. The caller has checked
    /// `free()`; entries beyond the free space are not written (returns how many were).
    pub(crate) fn produce(&mut self, entries: impl Iterator<Item = T>) -> u32 {
        let free = self.free(1);
        let mut n = 0;
        for e in entries.take(free as usize) {
            self.ring.write(self.prod.wrapping_add(n), e);
            n += 1;
        }
        if n > 0 {
            self.prod = self.prod.wrapping_add(n);
            self.ring.producer().store(self.prod, Ordering::Release);
        }
        n
    }

    /// Entries published but not yet consumed by the kernel.
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.cached_cons = self.ring.consumer().load(Ordering::Acquire);
        self.prod.wrapping_sub(self.cached_cons)
    }

    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

/// A ring we consume from (RX, completion).
#[derive(Debug)]
pub(crate) struct ConsRing<T> {
    ring: RingMap<T>,
    cons: u32,
    cached_prod: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> Result<Self, XskError> {
        let ring = RingMap::new(fd, off, size, pgoff)?;
        let cons = ring.consumer().load(Ordering::Relaxed);
        let cached_prod = ring.producer().load(Ordering::Acquire);
        Ok(ConsRing {
            ring,
            cons,
            cached_prod,
            _t: PhantomData,
        })
    }

    /// Number of entries ready, refreshing the kernel's producer index when none are cached.
    pub(crate) fn available(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cons);
        if avail >= want {
            return avail;
        }
        self.cached_prod = self.ring.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cons)
    }

    /// Read up to `max` entries into `sink`, then release them to the kernel with one store.
    pub(crate) fn consume(&mut self, max: u32, mut sink: impl FnMut(T)) -> u32 {
        let n = self.available(max).min(max);
        for i in 0..n {
            sink(self.ring.read(self.cons.wrapping_add(i)));
        }
        if n > 0 {
            self.cons = self.cons.wrapping_add(n);
            self.ring.consumer().store(self.cons, Ordering::Release);
        }
        n
    }

    pub(crate) fn size(&self) -> u32 {
        self.ring.size
    }
}

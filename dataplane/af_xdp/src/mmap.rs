//! Owned memory mappings: the UMEM area and the rings the kernel shares with us.

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use crate::XskError;

/// A mapping that is unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// ownership. Concurrent access is coordinated by the ring protocol and frame tokens, not here.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Anonymous, private, pre-faulted memory for a UMEM. With `hugepages`, 2 MiB pages are tried
    /// first (fewer TLB misses) and plain pages used when none are reserved.
    pub(crate) fn anonymous(len: usize, hugepages: bool) -> Result<Self, XskError> {
        let base = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        if hugepages {
            if let Ok(m) = Self::map(len, base | libc::MAP_HUGETLB, None, 0) {
                return Ok(m);
            }
            tracing::info!("no huge pages available for the UMEM; using 4 KiB pages");
        }
        Self::map(len, base, None, 0)
    }

    /// A ring of an AF_XDP socket, at the page offset the kernel defines for it.
    pub(crate) fn ring(fd: BorrowedFd<'_>, len: usize, pgoff: u64) -> Result<Self, XskError> {
        Self::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, Some(fd), pgoff)
    }

    fn map(len: usize, flags: i32, fd: Option<BorrowedFd<'_>>, off: u64) -> Result<Self, XskError> {
        use std::os::fd::AsRawFd;
        let raw_fd = fd.map_or(-1, |f| f.as_raw_fd());
        // SAFETY: a fresh mapping chosen by the kernel (addr = NULL) cannot overlap any Rust
        // object; the result is checked for MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw_fd,
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XskError::last_os("mmap"));
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or(XskError::InvalidConfig("mmap returned NULL"))?;
        Ok(Mmap { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped exactly once; nothing
        // borrows the mapping past the owner's lifetime (rings and frames hold the owner).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

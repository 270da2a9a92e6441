//! The UMEM area and the move-only frame tokens that own its frames.
//!
//! A UMEM is one mmap'ed area split into equal frames, registered with the kernel through an
//! XSK socket (`XDP_UMEM_REG`, see [`Umem::register`]). The kernel's UMEM lives as long as any
//! socket bound to it; the area (and so every frame token) outlives them, and can be registered
//! again when a group's last socket has gone. At any moment each frame is in exactly one place: in userspace
//! (a [`Frame`] token exists for it), in a fill ring, in the kernel's receive path, in a TX
//! ring, or in a completion ring. [`Frame`] is neither `Copy` nor `Clone`, and the only ways to
//! get one are [`Umem::new`] (once per frame) and taking a descriptor off an RX or completion
//! ring, so the compiler enforces fill → RX → process → TX → completion → fill. Because a token
//! is unique, handing out `&mut [u8]` to its frame through [`FrameMut`] cannot alias.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::XskError;
use crate::mmap::Mmap;
use crate::sys;

/// Headroom the kernel always leaves in front of received data (`XDP_PACKET_HEADROOM`), on top
/// of [`UmemConfig::headroom`]. VXLAN encapsulation (50 bytes) fits here without moving data.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Shape of a UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Number of frames. Must cover every fill, RX, TX and completion ring of the sockets that
    /// share the UMEM, plus a batch or two in userspace.
    pub frame_count: u32,
    /// Frame size in bytes: a power of two from 2048 to 4096 (aligned chunk mode).
    pub frame_size: u32,
    /// Extra headroom the kernel leaves before received data, beyond XDP_PACKET_HEADROOM.
    pub headroom: u32,
    /// Back the UMEM with 2 MiB huge pages when the system has them reserved.
    pub hugepages: bool,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frame_count: 16384,
            frame_size: 4096,
            headroom: 0,
            hugepages: true,
        }
    }
}

static NEXT_UMEM_ID: AtomicU32 = AtomicU32::new(1);

/// A UMEM area, split into frames.
#[derive(Debug)]
pub struct Umem {
    area: Mmap,
    id: u32,
    frame_size: u32,
    frame_mask: u64,
    frame_count: u32,
    headroom: u32,
}

/// Ownership of one UMEM frame while it is in userspace, with the range of packet data in it.
///
/// Move-only: dropping a token without giving it back to its group leaks the frame, and the
/// group's [`FrameCounts`](crate::FrameCounts) will show it as held in userspace for ever.
/// A token cannot be duplicated:
///
/// ```compile_fail
/// fn dup(f: &af_xdp::Frame) -> af_xdp::Frame { f.clone() }
/// ```
/// ```compile_fail
/// fn twice(f: af_xdp::Frame) -> (af_xdp::Frame, af_xdp::Frame) { (f, f) }
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a Frame owns a UMEM frame: transmit it, or give it back to its pool"]
pub struct Frame {
    base: u64,
    umem: u32,
    off: u16,
    len: u16,
}

impl Frame {
    /// Bytes of packet data.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the frame carries no packet data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the packet data from the start of the frame (the headroom in front of it).
    #[inline]
    pub fn headroom(&self) -> usize {
        self.off as usize
    }

    /// The UMEM address of the packet data, as put in an RX/TX descriptor.
    #[inline]
    pub(crate) fn addr(&self) -> u64 {
        self.base + u64::from(self.off)
    }

    #[inline]
    pub(crate) fn base(&self) -> u64 {
        self.base
    }
}

impl Umem {
    /// Map a UMEM area. Returns it with a token for every one of its frames; this is the only
    /// place tokens are created out of nothing (frames also come back from the kernel, and a
    /// group takes back, once, those the kernel held for a socket it closed).
    pub fn new(cfg: &UmemConfig) -> Result<(Umem, Vec<Frame>), XskError> {
        if !(2048..=4096).contains(&cfg.frame_size) || !cfg.frame_size.is_power_of_two() {
            return Err(XskError::InvalidConfig("frame_size must be 2048 or 4096"));
        }
        if cfg.frame_count == 0 {
            return Err(XskError::InvalidConfig("frame_count must be > 0"));
        }
        if cfg.headroom + XDP_PACKET_HEADROOM + 128 > cfg.frame_size {
            return Err(XskError::InvalidConfig(
                "headroom leaves no room for a packet",
            ));
        }
        let len = cfg.frame_count as usize * cfg.frame_size as usize;
        let area = Mmap::anonymous(len, cfg.hugepages)?;
        let id = NEXT_UMEM_ID.fetch_add(1, Ordering::Relaxed);
        let default_off = (cfg.headroom + XDP_PACKET_HEADROOM) as u16;
        let frames = (0..u64::from(cfg.frame_count))
            .map(|i| Frame {
                base: i * u64::from(cfg.frame_size),
                umem: id,
                off: default_off,
                len: 0,
            })
            .collect();
        let umem = Umem {
            area,
            id,
            frame_size: cfg.frame_size,
            frame_mask: !(u64::from(cfg.frame_size) - 1),
            frame_count: cfg.frame_count,
            headroom: cfg.headroom,
        };
        Ok((umem, frames))
    }

    /// Frames in the area.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Offset at which received packet data starts in a frame; also the default start of data
    /// for frames the engine builds itself.
    pub fn rx_data_offset(&self) -> u32 {
        self.headroom + XDP_PACKET_HEADROOM
    }

    /// A new XSK socket with this area registered on it (`XDP_UMEM_REG`), not yet bound: the
    /// socket a group's first socket binds as (the others share its UMEM). Registering the same
    /// area again later (after every socket of the previous registration closed) is allowed.
    pub(crate) fn register(&self) -> Result<OwnedFd, XskError> {
        let fd = sys::xsk_socket()?;
        let reg = libc::xdp_umem_reg {
            addr: self.area.as_ptr() as u64,
            len: self.area.len() as u64,
            chunk_size: self.frame_size,
            headroom: self.headroom,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::setsockopt(
            fd.as_fd(),
            libc::XDP_UMEM_REG,
            &reg,
            "setsockopt(XDP_UMEM_REG)",
        )?;
        Ok(fd)
    }

    /// Index of the frame that holds UMEM address `addr` (for a token's base, its index).
    #[inline]
    pub(crate) fn frame_index(&self, addr: u64) -> usize {
        (addr / u64::from(self.frame_size)) as usize
    }

    /// A token for frame `index`, empty at the default data offset. Only for a frame the caller
    /// has proven to be owned by nobody (see `XskGroup::remove_socket`).
    pub(crate) fn frame_at(&self, index: usize) -> Frame {
        let mut f = self.frame_from_kernel(index as u64 * u64::from(self.frame_size), 0);
        self.reset(&mut f);
        f
    }

    /// Token for a frame the kernel handed back at `addr` with `len` bytes of data.
    ///
    /// The kernel only returns addresses we gave it, once each; the clamps below keep even a
    /// misbehaving kernel from making us index outside the area.
    #[inline]
    pub(crate) fn frame_from_kernel(&self, addr: u64, len: u32) -> Frame {
        let area_len = self.area.len() as u64;
        let mut base = addr & self.frame_mask;
        debug_assert!(
            base < area_len,
            "kernel returned UMEM address {addr:#x} outside the area"
        );
        if base >= area_len {
            base = area_len - u64::from(self.frame_size);
        }
        let off = (addr - base).min(u64::from(self.frame_size)) as u32;
        let len = len.min(self.frame_size - off);
        Frame {
            base,
            umem: self.id,
            off: off as u16,
            len: len as u16,
        }
    }

    /// A mutable view of a frame's bytes. Panics if the token belongs to another UMEM: that is a
    /// wiring bug in the caller (a frame moved between workers), never a property of a packet.
    #[inline]
    pub fn view<'a>(&'a self, frame: &'a mut Frame) -> FrameMut<'a> {
        assert_eq!(
            frame.umem, self.id,
            "frame token used with a UMEM it does not belong to"
        );
        FrameMut { umem: self, frame }
    }

    /// Return the frame's data range to the state of a fresh frame (data at the RX offset, empty).
    #[inline]
    pub fn reset(&self, frame: &mut Frame) {
        frame.off = self.rx_data_offset() as u16;
        frame.len = 0;
    }

    #[inline]
    fn frame_ptr(&self, frame: &Frame) -> *mut u8 {
        // SAFETY: frame.base + frame_size <= area.len() for every token (created in new() from
        // indices < frame_count, or clamped in frame_from_kernel), so the offset is in bounds.
        unsafe { self.area.as_ptr().add(frame.base as usize) }
    }
}

/// Mutable access to one frame's bytes and data range, borrowed from its token.
#[derive(Debug)]
pub struct FrameMut<'a> {
    umem: &'a Umem,
    frame: &'a mut Frame,
}

impl FrameMut<'_> {
    /// The packet data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: off + len <= frame_size (kept by every method that changes them), the frame
        // lies inside the area, and the unique token (borrowed mutably for our lifetime) means no
        // other reference to these bytes exists; the kernel does not touch a frame we hold.
        unsafe {
            std::slice::from_raw_parts(
                self.umem.frame_ptr(self.frame).add(self.frame.off as usize),
                self.frame.len as usize,
            )
        }
    }

    /// The packet data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self guarantees exclusivity on our side.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.umem.frame_ptr(self.frame).add(self.frame.off as usize),
                self.frame.len as usize,
            )
        }
    }

    /// The whole frame buffer, headroom and tailroom included.
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        // SAFETY: the frame [base, base + frame_size) lies in the area and is ours alone.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.umem.frame_ptr(self.frame),
                self.umem.frame_size as usize,
            )
        }
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.frame.off as usize
    }

    /// Bytes free after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.umem.frame_size as usize - self.frame.off as usize - self.frame.len as usize
    }

    /// Grow the data by `n` bytes at the front (for encapsulation headers). Returns false, and
    /// changes nothing, when the headroom is too small.
    #[inline]
    pub fn push_head(&mut self, n: usize) -> bool {
        if n > self.headroom() {
            return false;
        }
        self.frame.off -= n as u16;
        self.frame.len += n as u16;
        true
    }

    /// Drop `n` bytes from the front of the data (decapsulation). False if there are fewer.
    #[inline]
    pub fn pull_head(&mut self, n: usize) -> bool {
        if n > self.frame.len as usize {
            return false;
        }
        self.frame.off += n as u16;
        self.frame.len -= n as u16;
        true
    }

    /// Set the data length (trim, or extend into the tailroom). False if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.frame.off as usize + len > self.umem.frame_size as usize {
            return false;
        }
        self.frame.len = len as u16;
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frame_views_stay_inside_their_frame() {
        // No privileges needed: the area is registered with the kernel only when a group binds.
        let (umem, mut frames) = Umem::new(&UmemConfig {
            frame_count: 4,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(frames.len(), 4);
        let mut f = frames.pop().unwrap();
        let mut v = umem.view(&mut f);
        assert_eq!(v.headroom(), 256);
        assert!(v.set_len(100));
        v.data_mut().fill(0xab);
        assert!(v.push_head(50));
        assert_eq!(v.data().len(), 150);
        assert!(!v.push_head(1000));
        assert!(v.pull_head(50));
        assert_eq!(v.data(), &[0xab; 100][..]);
        assert!(!v.set_len(4096));
        assert_eq!(v.tailroom(), 4096 - 256 - 100);
        // A kernel address inside a frame maps back to that frame.
        let k = umem.frame_from_kernel(3 * 4096 + 300, 60);
        assert_eq!((k.base(), k.headroom(), k.len()), (3 * 4096, 300, 60));
    }
}

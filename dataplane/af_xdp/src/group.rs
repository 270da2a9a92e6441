//! [`XskGroup`]: the sockets of one worker sharing one UMEM, and the frame accounting.
//!
//! Every frame of the UMEM is, at any time, in exactly one of these states:
//! - `free`: a token in the group's pool;
//! - `fill`: given to the kernel through a fill ring and not yet received (includes frames the
//!   kernel took off the ring and keeps for the next packet);
//! - `tx`: given to the kernel through a TX ring and not yet completed;
//! - `user`: a token held by the caller (a batch being processed).
//!
//! The group counts the transitions it performs, so `user` is what the caller holds; after a
//! batch has been fully handed back it must be zero, and a dropped token shows up there for
//! ever. [`FrameCounts`] is what tests and metrics read.
//!
//! Sockets come and go while the group runs ([`XskGroup::remove_socket`]). To give back every
//! frame the kernel held for a socket, the group records, per frame, which socket's rings it
//! was last handed to (one store per frame on each hand-over). Reading the socket's fill and RX
//! rings would not be enough: in copy mode the kernel also keeps frames it took off the fill
//! ring in a private free list (when the RX ring was full), where no ring shows them. Once the
//! socket is closed the kernel has let go of them all, and the record names exactly those.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::XskError;
use crate::socket::{SocketConfig, UmemBind, XskSocket};
use crate::umem::{Frame, Umem, UmemConfig};

/// How long [`XskGroup::add_socket`] retries a queue the kernel still has busy.
const BUSY_QUEUE_WAIT: Duration = Duration::from_millis(500);

/// Index of a socket in its group. Stable while the socket lives; the index of a removed
/// socket is given to the next socket added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u16);

impl SocketId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The tag of [`XskGroup::holder`] for frames in this socket's rings (0 means userspace).
    #[inline]
    fn tag(self) -> u16 {
        self.0 + 1
    }
}

/// Frames per state (see the module docs). `free + fill + tx + user == total` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub total: u64,
    pub free: u64,
    pub fill: u64,
    pub tx: u64,
    pub user: u64,
}

/// What [`XskGroup::remove_socket`] took back from the kernel into the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Frames given for receiving (fill ring, kernel free list, RX ring) and never received.
    pub fill: u64,
    /// Frames transmitted whose completion never came back within the wait.
    pub tx: u64,
}

/// One live socket and the frames the kernel holds for it.
#[derive(Debug)]
struct Slot {
    sock: XskSocket,
    in_fill: u64,
    in_tx: u64,
}

/// The sockets of one worker over one shared UMEM.
#[derive(Debug)]
pub struct XskGroup {
    // Field order matters: sockets (and their ring mappings) go before the UMEM they use.
    sockets: Vec<Option<Slot>>,
    /// A socket with the UMEM registered on it and not bound yet, used by the next socket added
    /// when no bound socket is left to share the UMEM with.
    spare_registration: Option<OwnedFd>,
    umem: Umem,
    pool: Vec<Frame>,
    /// Per frame (by index): 0 while it is in userspace (pool or caller), else the
    /// [`SocketId::tag`] of the socket whose fill or TX ring it was last given to.
    holder: Vec<u16>,
    /// Frames kept back from fill rings so the engine can always build a packet (ARP reply,
    /// ICMP error) or take over a frame.
    reserve: usize,
    in_fill: u64,
    in_tx: u64,
}

impl XskGroup {
    /// Map a UMEM for a new group and register it with the kernel (so a missing privilege shows
    /// here, before any socket).
    pub fn new(cfg: &UmemConfig) -> Result<Self, XskError> {
        let (umem, pool) = Umem::new(cfg)?;
        let spare_registration = Some(umem.register()?);
        Ok(XskGroup {
            sockets: Vec::new(),
            spare_registration,
            holder: vec![0; pool.len()],
            umem,
            pool,
            reserve: 128,
            in_fill: 0,
            in_tx: 0,
        })
    }

    /// Bind a socket on (`ifindex`, `queue`) to this group's UMEM and fill its fill ring. The
    /// first socket registers the UMEM's copy/zero-copy mode; later ones share it. Reuses the
    /// index of a removed socket.
    pub fn add_socket(
        &mut self,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<SocketId, XskError> {
        if self
            .live()
            .any(|(_, s)| s.sock.ifindex() == ifindex && s.sock.queue() == queue)
        {
            return Err(XskError::DuplicateQueue { ifindex, queue });
        }
        let index = match self.sockets.iter().position(Option::is_none) {
            Some(i) => i,
            // Indices stay below u16::MAX so that every tag (index + 1) fits a u16.
            None if self.sockets.len() < usize::from(u16::MAX) => self.sockets.len(),
            None => return Err(XskError::InvalidConfig("too many sockets in one group")),
        };
        let sock = self.bind_socket(ifindex, queue, cfg)?;
        let slot = Some(Slot {
            sock,
            in_fill: 0,
            in_tx: 0,
        });
        if index == self.sockets.len() {
            self.sockets.push(slot);
        } else {
            self.sockets[index] = slot;
        }
        let id = SocketId(index as u16);
        self.refill(id);
        Ok(id)
    }

    /// Bind, retrying for a while on EBUSY: the kernel frees a closed socket's claim on its
    /// (interface, queue) in a deferred work item (`xp_put_pool` → `xp_release_deferred`), so
    /// re-adding a queue right after removing its socket can briefly find it taken. EBUSY that
    /// lasts is another program's socket on that queue.
    fn bind_socket(
        &mut self,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, XskError> {
        let deadline = Instant::now() + BUSY_QUEUE_WAIT;
        loop {
            match self.try_bind(ifindex, queue, cfg) {
                Err(e) if e.errno() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    /// Bind sharing the kernel UMEM of a live socket, or, with none left, as the owner of a
    /// (new) registration of the area.
    fn try_bind(
        &mut self,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, XskError> {
        for (_, slot) in self.live() {
            let shared = UmemBind::Shared(slot.sock.as_fd());
            match XskSocket::bind(shared, ifindex, queue, cfg) {
                Ok(sock) => return Ok(sock),
                // EBADF: that socket is no longer bound (its interface went away); the kernel
                // takes the UMEM only from a bound socket. Try another.
                Err(e) if e.errno() == Some(libc::EBADF) => {}
                Err(e) => return Err(e),
            }
        }
        // No bound socket to share with: a fresh registration of the same area. (With sockets
        // left whose interface vanished, their dead registration coexists with it harmlessly.)
        let owner = match self.spare_registration.take() {
            Some(fd) => fd,
            None => self.umem.register()?,
        };
        XskSocket::bind(UmemBind::Owner(owner), ifindex, queue, cfg)
    }

    /// Bind by interface name (resolved in the calling thread's network namespace).
    pub fn add_socket_by_name(
        &mut self,
        ifname: &str,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<SocketId, XskError> {
        let ifindex = crate::ifindex(ifname)?;
        self.add_socket(ifindex, queue, cfg)
    }

    /// Close a socket and take back into the pool every frame the kernel held for it.
    ///
    /// First waits up to `tx_wait` for its transmissions to complete (kicking the TX ring),
    /// so frames normally come back the ordinary way; a kick that fails hard (the interface is
    /// gone) ends the wait at once. Then unmaps its rings and closes it: the kernel unbinds it
    /// and lets go of its frames (in copy mode synchronously; frames of transmissions still in
    /// flight were copied into their skbs). Every frame recorded as last given to this socket is
    /// then back in the pool, and [`counts`](Self::counts) no longer counts any of them as
    /// `fill` or `tx`. Frames the caller already took off the socket's RX ring stay the caller's
    /// (`user`): release or transmit them as usual.
    ///
    /// Remove a socket from every XSKMAP first (the engine does): a map does not keep the
    /// socket alive, but frames keep arriving while it is there. Returns `None` if there is no
    /// such socket.
    pub fn remove_socket(&mut self, id: SocketId, tx_wait: Duration) -> Option<Reclaimed> {
        self.sockets.get(id.index())?.as_ref()?;
        let deadline = Instant::now() + tx_wait;
        loop {
            self.complete(id);
            let slot = self.sockets[id.index()].as_mut()?;
            if slot.in_tx == 0 || Instant::now() >= deadline {
                break;
            }
            if slot.sock.tx.outstanding() > 0 && !slot.sock.kick_tx() {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let Slot {
            sock,
            in_fill,
            in_tx,
        } = self.sockets[id.index()].take()?;
        // Unmaps the rings, then closes the fd: the last reference, so the kernel releases it.
        drop(sock);
        let tag = id.tag();
        let mut found = 0u64;
        for (index, holder) in self.holder.iter_mut().enumerate() {
            if *holder == tag {
                *holder = 0;
                self.pool.push(self.umem.frame_at(index));
                found += 1;
            }
        }
        if found != in_fill + in_tx {
            tracing::error!(
                socket = id.index(),
                found,
                in_fill,
                in_tx,
                "frame record disagrees with the socket's counts"
            );
        }
        self.in_fill -= in_fill;
        self.in_tx -= in_tx;
        Some(Reclaimed {
            fill: in_fill,
            tx: in_tx,
        })
    }

    /// A live socket.
    pub fn socket(&self, id: SocketId) -> Option<&XskSocket> {
        self.sockets
            .get(id.index())
            .and_then(Option::as_ref)
            .map(|s| &s.sock)
    }

    /// The live sockets.
    pub fn sockets(&self) -> impl Iterator<Item = (SocketId, &XskSocket)> {
        self.live().map(|(id, s)| (id, &s.sock))
    }

    /// Frames the kernel holds for a live socket: (`fill`, `tx`) as in [`FrameCounts`].
    pub fn socket_frames(&self, id: SocketId) -> Option<(u64, u64)> {
        let slot = self.sockets.get(id.index())?.as_ref()?;
        Some((slot.in_fill, slot.in_tx))
    }

    fn live(&self) -> impl Iterator<Item = (SocketId, &Slot)> {
        self.sockets
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (SocketId(i as u16), s)))
    }

    #[inline]
    fn slot(&mut self, id: SocketId) -> Option<&mut Slot> {
        self.sockets.get_mut(id.index()).and_then(Option::as_mut)
    }

    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Top up a socket's fill ring from the pool (keeping the reserve back), and wake the
    /// kernel if it ran dry. Returns frames given (0 for a removed socket).
    #[inline]
    pub fn refill(&mut self, id: SocketId) -> u32 {
        let spare = self.pool.len().saturating_sub(self.reserve);
        let Some(slot) = self.sockets.get_mut(id.index()).and_then(Option::as_mut) else {
            return 0;
        };
        let n = slot.sock.fill.free(1).min(spare as u32) as usize;
        if n == 0 {
            return 0;
        }
        let start = self.pool.len() - n;
        let (umem, holder, tag) = (&self.umem, &mut self.holder, id.tag());
        let given = slot.sock.fill.produce(self.pool.drain(start..).map(|f| {
            if let Some(h) = holder.get_mut(umem.frame_index(f.base())) {
                *h = tag;
            }
            f.base()
        }));
        debug_assert_eq!(given as usize, n);
        slot.in_fill += u64::from(given);
        self.in_fill += u64::from(given);
        slot.sock.kick_fill();
        given
    }

    /// Take up to `max` received frames off a socket's RX ring into `out`, never growing `out`
    /// beyond its capacity (so a pre-sized vector never allocates).
    #[inline]
    pub fn rx_burst(&mut self, id: SocketId, out: &mut Vec<Frame>, max: u32) -> u32 {
        let room = (out.capacity() - out.len()).min(max as usize) as u32;
        let (umem, holder) = (&self.umem, &mut self.holder);
        let Some(slot) = self.sockets.get_mut(id.index()).and_then(Option::as_mut) else {
            return 0;
        };
        let n = slot.sock.rx.consume(room, |d| {
            let f = umem.frame_from_kernel(d.addr, d.len);
            if let Some(h) = holder.get_mut(umem.frame_index(f.base())) {
                *h = 0;
            }
            out.push(f);
        });
        slot.in_fill -= u64::from(n);
        self.in_fill -= u64::from(n);
        n
    }

    /// Put frames from the front of `frames` on a socket's TX ring; what does not fit stays in
    /// `frames` (the caller drops it as "TX ring full" or retries). Does not kick. A removed
    /// socket takes nothing.
    #[inline]
    pub fn tx_burst(&mut self, id: SocketId, frames: &mut Vec<Frame>) -> u32 {
        let (umem, holder, tag) = (&self.umem, &mut self.holder, id.tag());
        let Some(slot) = self.sockets.get_mut(id.index()).and_then(Option::as_mut) else {
            return 0;
        };
        let n = slot
            .sock
            .tx
            .free(frames.len() as u32)
            .min(frames.len() as u32);
        if n == 0 {
            return 0;
        }
        let sent = slot.sock.tx.produce(frames.drain(..n as usize).map(|f| {
            if let Some(h) = holder.get_mut(umem.frame_index(f.base())) {
                *h = tag;
            }
            libc::xdp_desc {
                addr: f.addr(),
                len: f.len() as u32,
                options: 0,
            }
        }));
        debug_assert_eq!(sent, n);
        slot.in_tx += u64::from(sent);
        self.in_tx += u64::from(sent);
        sent
    }

    /// Ask the kernel to transmit what is on a socket's TX ring (one syscall; copy mode sends
    /// in this call). False on a hard error such as the interface going down or away.
    #[inline]
    pub fn kick_tx(&mut self, id: SocketId) -> bool {
        let Some(slot) = self.slot(id) else {
            return true;
        };
        if slot.sock.tx.outstanding() == 0 {
            return true;
        }
        slot.sock.kick_tx()
    }

    /// Frames given to the kernel for transmission, on any socket of the group, that have not
    /// come back through a completion ring yet.
    pub fn tx_outstanding(&self) -> u64 {
        self.in_tx
    }

    /// Move completed TX frames of a socket back to the pool. Returns how many.
    #[inline]
    pub fn complete(&mut self, id: SocketId) -> u32 {
        let (umem, pool, holder) = (&self.umem, &mut self.pool, &mut self.holder);
        let Some(slot) = self.sockets.get_mut(id.index()).and_then(Option::as_mut) else {
            return 0;
        };
        let n = slot.sock.comp.consume(slot.sock.comp.size(), |addr| {
            let mut f = umem.frame_from_kernel(addr, 0);
            if let Some(h) = holder.get_mut(umem.frame_index(f.base())) {
                *h = 0;
            }
            umem.reset(&mut f);
            pool.push(f);
        });
        slot.in_tx -= u64::from(n);
        self.in_tx -= u64::from(n);
        n
    }

    /// Give a frame back to the pool (a dropped packet, or one that was not sent).
    #[inline]
    pub fn release(&mut self, mut frame: Frame) {
        self.umem.reset(&mut frame);
        self.pool.push(frame);
    }

    /// Take a frame from the pool to build a packet in (data empty at the default offset).
    #[inline]
    pub fn alloc(&mut self) -> Option<Frame> {
        self.pool.pop()
    }

    /// Frames per state.
    pub fn counts(&self) -> FrameCounts {
        let total = u64::from(self.umem.frame_count());
        let free = self.pool.len() as u64;
        FrameCounts {
            total,
            free,
            fill: self.in_fill,
            tx: self.in_tx,
            user: total - free - self.in_fill - self.in_tx,
        }
    }

    /// Raw fds of the live sockets, for registering with a poller.
    pub fn raw_fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        use std::os::fd::AsRawFd;
        self.live().map(|(_, s)| s.sock.as_raw_fd())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;

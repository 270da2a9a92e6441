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

use crate::XskError;
use crate::socket::{SocketConfig, XskSocket};
use crate::umem::{Frame, Umem, UmemConfig};

/// Index of a socket in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u16);

impl SocketId {
    pub fn index(self) -> usize {
        self.0 as usize
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

/// The sockets of one worker over one shared UMEM.
#[derive(Debug)]
pub struct XskGroup {
    // Field order matters: sockets (and their ring mappings) go before the UMEM they use.
    sockets: Vec<XskSocket>,
    umem: Umem,
    pool: Vec<Frame>,
    /// Frames kept back from fill rings so the engine can always build a packet (ARP reply,
    /// ICMP error) or take over a frame.
    reserve: usize,
    in_fill: u64,
    in_tx: u64,
}

impl XskGroup {
    /// Map and register a UMEM for a new group.
    pub fn new(cfg: &UmemConfig) -> Result<Self, XskError> {
        let (umem, pool) = Umem::new(cfg)?;
        Ok(XskGroup {
            sockets: Vec::new(),
            umem,
            pool,
            reserve: 128,
            in_fill: 0,
            in_tx: 0,
        })
    }

    /// Bind a socket on (`ifindex`, `queue`) to this group's UMEM. The first socket registers
    /// the UMEM's copy/zero-copy mode; later ones share it.
    pub fn add_socket(
        &mut self,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<SocketId, XskError> {
        if self
            .sockets
            .iter()
            .any(|s| s.ifindex() == ifindex && s.queue() == queue)
        {
            return Err(XskError::DuplicateQueue { ifindex, queue });
        }
        if self.sockets.len() >= usize::from(u16::MAX) {
            return Err(XskError::InvalidConfig("too many sockets in one group"));
        }
        let shared = !self.sockets.is_empty();
        let sock = XskSocket::bind(self.umem.fd(), shared, ifindex, queue, cfg)?;
        self.sockets.push(sock);
        let id = SocketId((self.sockets.len() - 1) as u16);
        self.refill(id);
        Ok(id)
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

    pub fn socket(&self, id: SocketId) -> &XskSocket {
        &self.sockets[id.index()]
    }

    pub fn sockets(&self) -> impl ExactSizeIterator<Item = (SocketId, &XskSocket)> {
        self.sockets
            .iter()
            .enumerate()
            .map(|(i, s)| (SocketId(i as u16), s))
    }

    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Top up a socket's fill ring from the pool (keeping the reserve back), and wake the
    /// kernel if it ran dry. Returns frames given.
    #[inline]
    pub fn refill(&mut self, id: SocketId) -> u32 {
        let spare = self.pool.len().saturating_sub(self.reserve);
        let sock = &mut self.sockets[id.index()];
        let n = sock.fill.free(1).min(spare as u32) as usize;
        if n == 0 {
            return 0;
        }
        let start = self.pool.len() - n;
        let given = sock
            .fill
            .produce(self.pool.drain(start..).map(|f| f.base()));
        debug_assert_eq!(given as usize, n);
        self.in_fill += u64::from(given);
        sock.kick_fill();
        given
    }

    /// Take up to `max` received frames off a socket's RX ring into `out`, never growing `out`
    /// beyond its capacity (so a pre-sized vector never allocates).
    #[inline]
    pub fn rx_burst(&mut self, id: SocketId, out: &mut Vec<Frame>, max: u32) -> u32 {
        let room = (out.capacity() - out.len()).min(max as usize) as u32;
        let umem = &self.umem;
        let n = self.sockets[id.index()]
            .rx
            .consume(room, |d| out.push(umem.frame_from_kernel(d.addr, d.len)));
        self.in_fill -= u64::from(n);
        n
    }

    /// Put frames from the front of `frames` on a socket's TX ring; what does not fit stays in
    /// `frames` (the caller drops it as "TX ring full" or retries). Does not kick.
    #[inline]
    pub fn tx_burst(&mut self, id: SocketId, frames: &mut Vec<Frame>) -> u32 {
        let sock = &mut self.sockets[id.index()];
        let n = sock.tx.free(frames.len() as u32).min(frames.len() as u32);
        if n == 0 {
            return 0;
        }
        let sent = sock
            .tx
            .produce(frames.drain(..n as usize).map(|f| libc::xdp_desc {
                addr: f.addr(),
                len: f.len() as u32,
                options: 0,
            }));
        debug_assert_eq!(sent, n);
        self.in_tx += u64::from(sent);
        sent
    }

    /// Ask the kernel to transmit what is on a socket's TX ring (one syscall; copy mode sends
    /// in this call). False on a hard error such as the interface going down.
    #[inline]
    pub fn kick_tx(&mut self, id: SocketId) -> bool {
        let sock = &mut self.sockets[id.index()];
        if sock.tx.outstanding() == 0 {
            return true;
        }
        sock.kick_tx()
    }

    /// Frames given to the kernel for transmission, on any socket of the group, that have not
    /// come back through a completion ring yet.
    pub fn tx_outstanding(&self) -> u64 {
        self.in_tx
    }

    /// Move completed TX frames of a socket back to the pool. Returns how many.
    #[inline]
    pub fn complete(&mut self, id: SocketId) -> u32 {
        let umem = &self.umem;
        let pool = &mut self.pool;
        let sock = &mut self.sockets[id.index()];
        let n = sock.comp.consume(sock.comp.size(), |addr| {
            let mut f = umem.frame_from_kernel(addr, 0);
            umem.reset(&mut f);
            pool.push(f);
        });
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

    /// Raw fds of the sockets, for registering with a poller.
    pub fn raw_fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        use std::os::fd::AsRawFd;
        self.sockets.iter().map(|s| s.as_raw_fd())
    }
}

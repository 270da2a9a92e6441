//! One XSK socket: bound to an (interface, queue), with its own RX, TX, fill and completion
//! rings, sharing its group's UMEM.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::XskError;
use crate::ring::{ConsRing, ProdRing};
use crate::sys;

/// How to bind: zero-copy needs driver support (veth has none: copy mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Try zero-copy, fall back to copy mode with a log line.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy or fail.
    ZeroCopy,
}

/// Ring sizes (powers of two) and bind options of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    pub rx_size: u32,
    pub tx_size: u32,
    pub fill_size: u32,
    pub comp_size: u32,
    pub bind: BindMode,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            bind: BindMode::Auto,
        }
    }
}

/// Kernel-side counters of a socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames dropped for reasons other than an empty fill ring or a full RX ring.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because our RX ring was full (we were too slow).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (we did not give it frames in time).
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)` (Linux 6.17+): how many descriptors one
/// copy-mode `sendto` transmits before returning EAGAIN; the default of 32 costs a syscall per
/// 32 frames.
const XDP_MAX_TX_SKB_BUDGET: i32 = 9;

/// Which UMEM a new socket binds to.
#[derive(Debug)]
pub(crate) enum UmemBind<'a> {
    /// This socket has the UMEM registered on it (`Umem::register`) and binds first.
    Owner(OwnedFd),
    /// Share the UMEM of this bound socket (`XDP_SHARED_UMEM`). Any bound socket using the UMEM
    /// will do; the kernel only takes the UMEM (and its copy/zero-copy mode) from it.
    Shared(BorrowedFd<'a>),
}

/// A bound XSK socket.
///
/// Dropping it unmaps the rings, then closes the socket. A ring mapping holds a reference to
/// the socket's file, so only once both are gone does the kernel release the socket: it leaves
/// the XSKMAPs it was in, unbinds (waiting out in-flight receives with `synchronize_net`) and
/// stops using the frames it held for it.
#[derive(Debug)]
pub struct XskSocket {
    // Rings first: they are unmapped before the socket closes.
    pub(crate) rx: ConsRing<libc::xdp_desc>,
    pub(crate) tx: ProdRing<libc::xdp_desc>,
    pub(crate) fill: ProdRing<u64>,
    pub(crate) comp: ConsRing<u64>,
    fd: OwnedFd,
    ifindex: u32,
    queue: u32,
    zero_copy: bool,
}

impl XskSocket {
    /// Create and bind a socket. With [`UmemBind::Owner`] this socket *is* the one the UMEM is
    /// registered on; with [`UmemBind::Shared`] it binds with `XDP_SHARED_UMEM` and gets its own
    /// fill and completion rings, which the kernel requires when the interface or queue differs
    /// from the other socket's.
    ///
    /// EINVAL from binding a queue other than 0 is [`XskError::QueueUnavailable`]: the
    /// interface has fewer queues than that (`xsk_reg_pool_at_qid`).
    pub(crate) fn bind(
        umem: UmemBind<'_>,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, XskError> {
        for size in [cfg.rx_size, cfg.tx_size, cfg.fill_size, cfg.comp_size] {
            if !size.is_power_of_two() || size < 64 {
                return Err(XskError::InvalidConfig(
                    "ring sizes must be powers of two ≥ 64",
                ));
            }
        }
        let (fd, shared_with) = match umem {
            UmemBind::Owner(fd) => (fd, None),
            UmemBind::Shared(other) => (sys::xsk_socket()?, Some(other)),
        };
        let bfd = fd.as_fd();
        sys::setsockopt(
            bfd,
            libc::XDP_RX_RING,
            &cfg.rx_size,
            "setsockopt(XDP_RX_RING)",
        )?;
        sys::setsockopt(
            bfd,
            libc::XDP_TX_RING,
            &cfg.tx_size,
            "setsockopt(XDP_TX_RING)",
        )?;
        sys::setsockopt(
            bfd,
            libc::XDP_UMEM_FILL_RING,
            &cfg.fill_size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        sys::setsockopt(
            bfd,
            libc::XDP_UMEM_COMPLETION_RING,
            &cfg.comp_size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        let off: libc::xdp_mmap_offsets =
            sys::getsockopt(bfd, libc::XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")?;
        let rx = ConsRing::new(bfd, &off.rx, cfg.rx_size, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = ProdRing::new(bfd, &off.tx, cfg.tx_size, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = ProdRing::new(bfd, &off.fr, cfg.fill_size, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = ConsRing::new(
            bfd,
            &off.cr,
            cfg.comp_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )?;

        let mut addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let ifname =
            || sys::if_indextoname(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"));
        let bind_error = |op: &'static str, source: std::io::Error| {
            if queue > 0 && source.raw_os_error() == Some(libc::EINVAL) {
                XskError::QueueUnavailable {
                    ifname: ifname(),
                    queue,
                    source,
                }
            } else {
                XskError::Os { op, source }
            }
        };
        if let Some(other) = shared_with {
            // The kernel refuses mode flags here: a shared socket inherits copy/zero-copy and
            // need_wakeup from the UMEM's first socket.
            addr.sxdp_flags = libc::XDP_SHARED_UMEM;
            addr.sxdp_shared_umem_fd = other.as_raw_fd() as u32;
            sys::bind(bfd, &addr).map_err(|e| bind_error("bind(XDP_SHARED_UMEM)", e))?;
        } else {
            let wake = libc::XDP_USE_NEED_WAKEUP;
            match cfg.bind {
                BindMode::Copy => {
                    addr.sxdp_flags = wake | libc::XDP_COPY;
                    sys::bind(bfd, &addr).map_err(|e| bind_error("bind(XDP_COPY)", e))?;
                }
                BindMode::ZeroCopy | BindMode::Auto => {
                    addr.sxdp_flags = wake | libc::XDP_ZEROCOPY;
                    if let Err(source) = sys::bind(bfd, &addr) {
                        if cfg.bind == BindMode::ZeroCopy {
                            return Err(XskError::ZeroCopyUnsupported {
                                ifname: ifname(),
                                queue,
                                source,
                            });
                        }
                        if queue > 0 && source.raw_os_error() == Some(libc::EINVAL) {
                            // Most likely no such queue; the copy-mode bind below says for sure.
                            tracing::debug!(
                                "{} queue {queue}: zero-copy bind: {source}; trying copy mode",
                                ifname()
                            );
                        } else {
                            tracing::info!(
                                "{} queue {queue}: zero-copy AF_XDP not available ({source}); using copy mode",
                                ifname()
                            );
                        }
                        addr.sxdp_flags = wake | libc::XDP_COPY;
                        sys::bind(bfd, &addr).map_err(|e| bind_error("bind(XDP_COPY)", e))?;
                    }
                }
            }
        }
        let opts: u32 = sys::getsockopt(bfd, libc::XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        let budget = cfg.tx_size.max(64);
        if sys::setsockopt(
            bfd,
            XDP_MAX_TX_SKB_BUDGET,
            &budget,
            "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
        )
        .is_err()
        {
            tracing::debug!(
                "kernel has no XDP_MAX_TX_SKB_BUDGET; copy-mode TX sends 32 frames per kick"
            );
        }
        Ok(XskSocket {
            rx,
            tx,
            fill,
            comp,
            fd,
            ifindex,
            queue,
            zero_copy: opts & libc::XDP_OPTIONS_ZEROCOPY != 0,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when the kernel bound the socket in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Kernel-side counters.
    pub fn stats(&self) -> Result<SocketStats, XskError> {
        let s: libc::xdp_statistics = sys::getsockopt(
            self.fd.as_fd(),
            libc::XDP_STATISTICS,
            "getsockopt(XDP_STATISTICS)",
        )?;
        Ok(SocketStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Kick transmission if the kernel asked for it (always, in copy mode). Returns false when
    /// the kernel reported an error other than "busy, try again": ENXIO once the interface went
    /// away (the kernel unbinds the socket on `NETDEV_UNREGISTER`), ENETDOWN when it is down.
    pub(crate) fn kick_tx(&self) -> bool {
        if !self.tx.needs_wakeup() {
            return true;
        }
        match sys::kick_tx(self.fd.as_fd()) {
            Ok(()) => true,
            Err(e) => matches!(e, libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR),
        }
    }

    /// Wake the receive side if the kernel ran dry of fill-ring frames and asked for a wakeup.
    pub(crate) fn kick_fill(&self) {
        if self.fill.needs_wakeup() {
            sys::kick_rx(self.fd.as_fd());
        }
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

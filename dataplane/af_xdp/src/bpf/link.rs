//! Attaching XDP programs through `BPF_LINK_CREATE`.
//!
//! A bpf_link, unlike the older netlink `IFLA_XDP` attach, belongs to its file
//! descriptor: when the last fd closes (including when the process dies) the
//! kernel detaches the program. The dataplane relies on that for crash safety:
//! a SIGKILLed agent never leaves the node's interfaces steering into sockets
//! nobody reads. A link also refuses to replace another program that is
//! already attached (EBUSY), so we never silently evict someone else's.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::BpfError;
use super::sys::{BPF_XDP, bpf, cmd};

/// `XDP_FLAGS_SKB_MODE` (`include/uapi/linux/if_link.h`).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Where in the receive path an XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`); needs
    /// driver support (veth has it).
    Native,
    /// After skb allocation, in the generic receive path
    /// (`XDP_FLAGS_SKB_MODE`); works on any interface, slower.
    Generic,
    /// Native if the driver accepts it, else generic (with a warning).
    Auto,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        })
    }
}

/// `union bpf_attr` member for `BPF_LINK_CREATE`, up to `flags`.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `union bpf_attr` member for `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// An XDP program attached to one interface. Dropping it detaches the
/// program; so does the process exiting, however it exits.
#[derive(Debug)]
pub struct XdpAttachment {
    link: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpAttachment {
    /// The interface the program is attached to (in the network namespace of
    /// the thread that attached it).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode actually used: [`XdpMode::Native`] or [`XdpMode::Generic`],
    /// never `Auto`.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        // Closing the fd alone detaches only if no other reference to the link
        // exists (a child between fork and exec briefly holds one), so detach
        // explicitly; the fd is then closed by OwnedFd.
        let mut attr = LinkDetachAttr {
            link_fd: self.link.as_raw_fd() as u32,
        };
        // SAFETY: LinkDetachAttr is the BPF_LINK_DETACH member and holds no pointers.
        if let Err(e) = unsafe { bpf(cmd::LINK_DETACH, &mut attr) } {
            tracing::debug!(ifindex = self.ifindex, error = %e, "BPF_LINK_DETACH failed; closing the link fd instead");
        }
    }
}

/// Attaches `prog` (an XDP program) to `ifindex` in the calling thread's
/// network namespace.
pub fn attach_xdp(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    mode: XdpMode,
) -> Result<XdpAttachment, BpfError> {
    match mode {
        XdpMode::Native | XdpMode::Generic => {
            link_create(prog, ifindex, mode).map_err(|source| BpfError::Attach {
                ifindex,
                mode,
                source,
            })
        }
        XdpMode::Auto => match link_create(prog, ifindex, XdpMode::Native) {
            Ok(att) => Ok(att),
            Err(native) => {
                tracing::warn!(
                    ifindex,
                    error = %native,
                    "native XDP attach failed; falling back to generic (skb) mode, which is slower"
                );
                link_create(prog, ifindex, XdpMode::Generic).map_err(|generic| {
                    BpfError::AttachAuto {
                        ifindex,
                        native,
                        generic,
                    }
                })
            }
        },
    }
}

fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    mode: XdpMode,
) -> std::io::Result<XdpAttachment> {
    let flags = match mode {
        XdpMode::Native => XDP_FLAGS_DRV_MODE,
        // Auto never reaches here; generic is its safe reading anyway.
        XdpMode::Generic | XdpMode::Auto => XDP_FLAGS_SKB_MODE,
    };
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: LinkCreateAttr is the BPF_LINK_CREATE member (four u32, no
    // padding) and holds no pointers.
    let ret = unsafe { bpf(cmd::LINK_CREATE, &mut attr) }?;
    Ok(XdpAttachment {
        link: super::sys::owned_fd(ret),
        ifindex,
        mode: if flags == XDP_FLAGS_DRV_MODE {
            XdpMode::Native
        } else {
            XdpMode::Generic
        },
    })
}

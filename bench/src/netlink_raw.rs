//! The few netlink requests the benchmark needs beyond `kxdp_control::netlink` (whose request
//! plumbing is crate-private): one request, one ACK, on a socket opened in the calling
//! thread's namespace. Messages are built with that crate's public [`MessageBuilder`].
//!
//! User: [`crate::offload`] (ethtool over generic netlink: features, as `ethtool -K` does).

use std::os::fd::{AsRawFd, OwnedFd};

use kxdp_control::netlink::wire::{self, MessageBuilder, Messages, flags, kind};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

/// Errors from a raw netlink request.
#[derive(Debug, thiserror::Error)]
pub enum RawNetlinkError {
    /// A socket call failed.
    #[error("netlink {what}: {errno}")]
    Socket { what: &'static str, errno: Errno },
    /// The kernel refused the request.
    #[error("{op} {object}: {errno}")]
    Kernel {
        op: &'static str,
        object: String,
        errno: Errno,
    },
    /// The reply could not be decoded.
    #[error("{op} {object}: malformed reply: {why}")]
    Malformed {
        op: &'static str,
        object: String,
        why: &'static str,
    },
}

/// A netlink socket of one protocol in the namespace of the thread that opened it.
#[derive(Debug)]
pub struct RawNetlink {
    fd: OwnedFd,
    seq: u32,
}

impl RawNetlink {
    /// Opens a socket of `protocol` in the calling thread's network namespace.
    pub fn open(protocol: SockProtocol) -> Result<Self, RawNetlinkError> {
        let err = |what| move |errno| RawNetlinkError::Socket { what, errno };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .map_err(err("socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(err("bind"))?;
        Ok(RawNetlink { fd, seq: 0 })
    }

    /// Sends `request` with REQUEST|ACK added and returns the payloads of the data messages
    /// that came back before the ACK.
    pub fn request(
        &mut self,
        mut request: MessageBuilder,
        op: &'static str,
        object: &str,
    ) -> Result<Vec<Vec<u8>>, RawNetlinkError> {
        request.add_flags(flags::REQUEST | flags::ACK);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = request.finish(seq);
        sendto(
            self.fd.as_raw_fd(),
            &bytes,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|errno| RawNetlinkError::Socket {
            what: "sendto",
            errno,
        })?;
        let malformed = |why| RawNetlinkError::Malformed {
            op,
            object: object.to_owned(),
            why,
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut parts = Vec::new();
        loop {
            // Setup requests are answered at once; a blocking receive is fine here.
            let len = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|errno| {
                RawNetlinkError::Socket {
                    what: "recv",
                    errno,
                }
            })?;
            for message in Messages::new(&buf[..len]) {
                let message = message.map_err(|e| malformed(e.0))?;
                if message.seq != seq {
                    continue;
                }
                match message.kind {
                    kind::NLMSG_ERROR => {
                        let code =
                            wire::parse_error_code(message.payload).map_err(|e| malformed(e.0))?;
                        if code != 0 {
                            return Err(RawNetlinkError::Kernel {
                                op,
                                object: object.to_owned(),
                                errno: Errno::from_raw(code.abs()),
                            });
                        }
                        return Ok(parts);
                    }
                    kind::NLMSG_NOOP | kind::NLMSG_DONE => {}
                    _ => parts.push(message.payload.to_vec()),
                }
            }
        }
    }
}

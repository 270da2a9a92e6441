//! The one error type of the netlink client. Every variant names the operation (the request's
//! message type) and the object it was about, so a log line reads like
//! `RTM_NEWLINK veth kxdp0: EEXIST: File exists`.

use nix::errno::Errno;

use super::wire::DecodeError;

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket itself failed (create, bind, send, receive).
    #[error("netlink socket: {what}: {errno}")]
    Socket { what: &'static str, errno: Errno },
    /// Entering the target network namespace to open a socket there failed.
    #[error("setns into the target network namespace: {0}")]
    Netns(Errno),
    /// The kernel refused the request.
    #[error("{op} {object}: {errno}")]
    Kernel {
        op: &'static str,
        object: String,
        errno: Errno,
    },
    /// No reply came within the socket's receive timeout.
    #[error("{op} {object}: no reply from the kernel within {timeout_ms} ms")]
    Timeout {
        op: &'static str,
        object: String,
        timeout_ms: u128,
    },
    /// A reply did not parse.
    #[error("{op} {object}: malformed reply: {source}")]
    Malformed {
        op: &'static str,
        object: String,
        source: DecodeError,
    },
    /// The kernel acknowledged a query but sent nothing back for it.
    #[error("{op} {object}: the kernel sent no {expected}")]
    MissingReply {
        op: &'static str,
        object: String,
        expected: &'static str,
    },
    /// A request this client will not send (mixed address families, a name too long).
    #[error("{op} {object}: invalid request: {reason}")]
    Invalid {
        op: &'static str,
        object: String,
        reason: &'static str,
    },
}

impl Error {
    /// The kernel's errno when the kernel refused the request (EEXIST, ENODEV, ESRCH, ...),
    /// so callers can make operations idempotent (`kxdp-cni DEL` ignores ENODEV).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } | Error::Socket { errno, .. } => Some(*errno),
            Error::Netns(errno) => Some(*errno),
            _ => None,
        }
    }

    /// True when the kernel said the object does not exist: ENODEV (links), ENOENT (routes),
    /// ESRCH (routes, older kernels), EADDRNOTAVAIL (addresses).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Kernel {
                errno: Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL,
                ..
            }
        )
    }
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The rtnetlink socket: sending a request, matching its replies by sequence number, ACKs,
//! multipart dumps, and multicast notifications for subscribers.
//!
//! A netlink socket belongs to the network namespace it was created in, whatever namespace
//! the thread using it is in later. [`Netlink::open_in`] relies on that: it creates the socket
//! on a short-lived thread that has `setns`'d into the target namespace, and hands it back.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, getsockname,
    recvmsg, sendto, setsockopt, socket, sockopt,
};

use super::error::{Error, Result};
use super::wire::{self, DecodeError, MessageBuilder, Messages, flags, kind};

/// Receive buffer for one datagram. The kernel sizes dump parts to at most 32 KiB (or a page,
/// if larger); a datagram that still does not fit is reported, never silently cut.
const RECV_BUF: usize = 64 * 1024;
/// Socket receive buffer asked for, so bursts of notifications do not overrun (ENOBUFS).
const SO_RCVBUF: usize = 1024 * 1024;
/// How long a request waits for its reply unless changed with [`Netlink::set_timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Notification datagrams kept while a request waits for its own reply; more than that and
/// the subscriber is told to resynchronise instead.
const MAX_QUEUED_EVENTS: usize = 1024;
/// A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried this many times.
const DUMP_ATTEMPTS: usize = 3;

/// A synchronous rtnetlink client bound to one network namespace.
///
/// Requests block the calling thread until the kernel answers (or the timeout passes); they
/// are meant for setup and reconcile paths, never for the per-packet path.
pub struct Netlink {
    fd: OwnedFd,
    port: u32,
    seq: u32,
    groups: u32,
    timeout: Duration,
    buf: Vec<u8>,
    /// Multicast datagrams that arrived while a request waited for its reply.
    events: VecDeque<Vec<u8>>,
    events_lost: bool,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let sock_err = |what| move |errno| Error::Socket { what, errno };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(sock_err("socket(AF_NETLINK, NETLINK_ROUTE)"))?;
        // Not fatal: the default buffer works, it only overruns sooner under notification storms.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &SO_RCVBUF);
        // Port 0: the kernel picks a unique port id, which replies are addressed to.
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(sock_err("bind"))?;
        let local: NetlinkAddr = getsockname(fd.as_raw_fd()).map_err(sock_err("getsockname"))?;
        Ok(Netlink {
            fd,
            port: local.pid(),
            seq: 0,
            groups: 0,
            timeout: DEFAULT_TIMEOUT,
            buf: vec![0; RECV_BUF],
            events: VecDeque::new(),
            events_lost: false,
        })
    }

    /// Opens a socket in the network namespace `netns` (an open `/run/netns/NAME` or
    /// `/proc/PID/ns/net`). The calling thread stays where it is: a helper thread enters the
    /// namespace, creates the socket and exits, and the socket keeps working in `netns`.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Self> {
        std::thread::scope(|scope| {
            let helper = scope.spawn(move || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(Error::Netns)?;
                Netlink::open()
            });
            match helper.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// How long each request waits for its reply (default 5 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The port id the kernel assigned to this socket.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Joins multicast groups given as the legacy `RTMGRP_*` bit mask (groups 1..=32).
    /// Notifications are then collected with [`recv_events`](Self::recv_events).
    pub(crate) fn subscribe(&mut self, groups: u32) -> Result<()> {
        self.groups |= groups;
        // Binding again with the same port id only updates the group subscriptions.
        bind(
            self.fd.as_raw_fd(),
            &NetlinkAddr::new(self.port, self.groups),
        )
        .map_err(|errno| Error::Socket {
            what: "bind (subscribe)",
            errno,
        })
    }

    /// Sends a request that changes something and waits for the kernel's ACK.
    pub(crate) fn execute(
        &mut self,
        mut request: MessageBuilder,
        op: &'static str,
        object: &str,
    ) -> Result<()> {
        request.add_flags(flags::REQUEST | flags::ACK);
        self.transact(request, op, object, false).map(drop)
    }

    /// Sends a query answered by a single message (RTM_GETLINK by name, RTM_GETROUTE) and
    /// returns the payloads of the data messages that came back before the ACK.
    pub(crate) fn query(
        &mut self,
        mut request: MessageBuilder,
        op: &'static str,
        object: &str,
    ) -> Result<Vec<Vec<u8>>> {
        request.add_flags(flags::REQUEST | flags::ACK);
        Ok(self.transact(request, op, object, false)?.0)
    }

    /// Sends a dump request and returns the payloads of every part, until NLMSG_DONE. A dump
    /// the kernel marks as interrupted by a concurrent change is retried.
    pub(crate) fn dump(
        &mut self,
        request: &MessageBuilder,
        op: &'static str,
        object: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = request.clone();
            request.add_flags(flags::REQUEST | flags::DUMP);
            let (parts, interrupted) = self.transact(request, op, object, true)?;
            if !interrupted || attempt >= DUMP_ATTEMPTS {
                return Ok(parts);
            }
        }
    }

    /// Moves the notifications received so far into `out`, waiting up to `wait` for the first
    /// one if none is queued. Returns true when some were lost (the socket overran, or too
    /// many queued up behind a request): the subscriber should resynchronise with a dump.
    pub(crate) fn recv_events(&mut self, wait: Duration, out: &mut Vec<Vec<u8>>) -> Result<bool> {
        let deadline = Instant::now() + wait;
        out.extend(self.events.drain(..));
        loop {
            // Wait only for the first notification; after that take what is already there.
            let timeout = if out.is_empty() && !self.events_lost {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.recv_datagram(timeout) {
                // A unicast datagram here is a late reply to a request that timed out.
                Ok(Some(Datagram { len, multicast })) => {
                    if multicast {
                        out.push(self.buf[..len].to_vec());
                    }
                }
                Ok(None) => break,
                Err(Errno::ENOBUFS) => self.events_lost = true,
                Err(errno) => {
                    return Err(Error::Socket {
                        what: "recvmsg",
                        errno,
                    });
                }
            }
        }
        Ok(std::mem::take(&mut self.events_lost))
    }

    /// Sends `request` (flags final) and collects the replies carrying its sequence number.
    /// Returns the data message payloads and whether a dump part was flagged DUMP_INTR.
    fn transact(
        &mut self,
        request: MessageBuilder,
        op: &'static str,
        object: &str,
        is_dump: bool,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = request.finish(seq);
        let sent = sendto(
            self.fd.as_raw_fd(),
            &bytes,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|errno| Error::Socket {
            what: "sendto",
            errno,
        })?;
        if sent != bytes.len() {
            return Err(Error::Socket {
                what: "sendto (short write)",
                errno: Errno::EMSGSIZE,
            });
        }

        let malformed = |source: DecodeError| Error::Malformed {
            op,
            object: object.to_owned(),
            source,
        };
        let deadline = Instant::now() + self.timeout;
        let mut parts = Vec::new();
        let mut interrupted = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let len = match self.recv_datagram(remaining) {
                Ok(Some(Datagram {
                    len,
                    multicast: false,
                })) => len,
                Ok(Some(Datagram {
                    len,
                    multicast: true,
                })) => {
                    self.queue_event(len);
                    continue;
                }
                Ok(None) => {
                    return Err(Error::Timeout {
                        op,
                        object: object.to_owned(),
                        timeout_ms: self.timeout.as_millis(),
                    });
                }
                Err(Errno::ENOBUFS) => {
                    // Only multicast traffic overruns a socket waiting on one request.
                    self.events_lost = true;
                    continue;
                }
                Err(errno) => {
                    return Err(Error::Socket {
                        what: "recvmsg",
                        errno,
                    });
                }
            };
            for message in Messages::new(&self.buf[..len]) {
                let message = message.map_err(malformed)?;
                if message.seq != seq {
                    // A late reply to an earlier request that timed out.
                    continue;
                }
                interrupted |= message.flags & flags::DUMP_INTR != 0;
                match message.kind {
                    kind::NLMSG_NOOP => {}
                    kind::NLMSG_ERROR => {
                        let code = wire::parse_error_code(message.payload).map_err(malformed)?;
                        if code != 0 {
                            return Err(Error::Kernel {
                                op,
                                object: object.to_owned(),
                                errno: Errno::from_raw(code),
                            });
                        }
                        return Ok((parts, interrupted));
                    }
                    kind::NLMSG_DONE if is_dump => {
                        // Since 4.x the DONE payload carries the dump's error code, if any.
                        let code = wire::parse_error_code(message.payload).unwrap_or(0);
                        if code != 0 {
                            return Err(Error::Kernel {
                                op,
                                object: object.to_owned(),
                                errno: Errno::from_raw(code),
                            });
                        }
                        return Ok((parts, interrupted));
                    }
                    kind::NLMSG_OVERRUN => {
                        return Err(malformed(DecodeError("NLMSG_OVERRUN: data lost")));
                    }
                    _ => parts.push(message.payload.to_vec()),
                }
            }
        }
    }

    fn queue_event(&mut self, len: usize) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.clear();
            self.events_lost = true;
        } else {
            self.events.push_back(self.buf[..len].to_vec());
        }
    }

    /// Waits up to `timeout` for one datagram and reads it into `self.buf`. `Ok(None)` is a
    /// timeout. EINTR is retried; ENOBUFS (the socket overran) is returned to the caller.
    fn recv_datagram(&mut self, timeout: Duration) -> nix::Result<Option<Datagram>> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let poll_timeout = PollTimeout::try_from(remaining).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, poll_timeout) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
            }
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            let received =
                recvmsg::<NetlinkAddr>(self.fd.as_raw_fd(), &mut iov, None, MsgFlags::MSG_DONTWAIT);
            match received {
                Ok(msg) => {
                    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                        return Err(Errno::EMSGSIZE);
                    }
                    let multicast = msg.address.is_some_and(|a| a.groups() != 0);
                    return Ok(Some(Datagram {
                        len: msg.bytes,
                        multicast,
                    }));
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(errno) => return Err(errno),
            }
        }
    }
}

impl fmt::Debug for Netlink {
    /// Leaves out the 64 KiB receive buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.fd)
            .field("port", &self.port)
            .field("seq", &self.seq)
            .field("groups", &self.groups)
            .field("timeout", &self.timeout)
            .field("queued_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl AsFd for Netlink {
    /// Readable when a reply or notification is waiting: register it with an event loop and
    /// call the subscriber's poll function when it fires (notifications that arrived during a
    /// request are queued inside and do not make the fd readable again).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[derive(Debug, Clone, Copy)]
struct Datagram {
    len: usize,
    /// Sent to a multicast group (a notification), not to us alone (a reply).
    multicast: bool,
}

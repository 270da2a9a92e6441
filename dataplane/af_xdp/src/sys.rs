//! The narrow OS boundary for XSK sockets: socket, setsockopt/getsockopt with plain-data
//! values, bind, and the zero-length send/recv calls that wake the kernel.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::XskError;

/// Marker for the `repr(C)` plain-data structs of `linux/if_xdp.h` that may be passed to the
/// kernel by pointer and filled in by it: every bit pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` with only integer fields.
pub(crate) unsafe trait Pod: Copy {}
// SAFETY: each is a repr(C) struct of integers from libc's if_xdp.h mirror.
unsafe impl Pod for libc::xdp_umem_reg {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_statistics {}
// SAFETY: a plain integer.
unsafe impl Pod for u32 {}
// SAFETY: a plain integer.
unsafe impl Pod for i32 {}

pub(crate) fn xsk_socket() -> Result<OwnedFd, XskError> {
    // SAFETY: socket() has no memory-safety preconditions; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(XskError::last_os("socket(AF_XDP)"));
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    opt: i32,
    value: &T,
    op: &'static str,
) -> Result<(), XskError> {
    // SAFETY: value points to a live T of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(XskError::last_os(op))
    } else {
        Ok(())
    }
}

pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    opt: i32,
    op: &'static str,
) -> Result<T, XskError> {
    // SAFETY: T is Pod, so the all-zero bit pattern is a valid value.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a live, writable T; len tells the kernel its size; any bit pattern
    // the kernel writes is a valid T (Pod).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(XskError::last_os(op))
    } else {
        Ok(value)
    }
}

pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &libc::sockaddr_xdp) -> std::io::Result<()> {
    // SAFETY: addr is a valid sockaddr_xdp and its exact size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_xdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Ask the kernel to process the TX ring (copy mode transmits inside this call).
/// Returns the errno on failure; EAGAIN/EBUSY/ENOBUFS mean "try again on the next batch".
pub(crate) fn kick_tx(fd: BorrowedFd<'_>) -> Result<(), i32> {
    // SAFETY: a zero-length send with a NULL buffer and no address touches no user memory.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(())
    }
}

/// Wake the kernel to refill from the fill ring (needed when it set XDP_RING_NEED_WAKEUP).
pub(crate) fn kick_rx(fd: BorrowedFd<'_>) {
    // SAFETY: a zero-length receive into a NULL buffer touches no user memory.
    unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
}

pub(crate) fn if_nametoindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

pub(crate) fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into buf.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// The hardware (MAC) address of `ifname` in the calling thread's network namespace, with
/// `ioctl(SIOCGIFHWADDR)` on a throwaway UDP socket (the ioctl is answered by the generic
/// device layer whatever the socket's protocol; AF_XDP sockets refuse it).
pub(crate) fn if_hwaddr(ifname: &str) -> Result<[u8; 6], XskError> {
    let mut req = ifreq_named(ifname)?;
    let fd = udp_socket("socket(AF_INET) for SIOCGIFHWADDR")?;
    // SAFETY: SIOCGIFHWADDR reads ifr_name (NUL-terminated: the name is shorter than IFNAMSIZ
    // and the rest is zero) and writes a sockaddr into ifr_ifru, all inside `req`, which lives
    // across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ENODEV) {
            return Err(XskError::NoSuchInterface(ifname.to_owned()));
        }
        return Err(XskError::Os {
            op: "ioctl(SIOCGIFHWADDR)",
            source,
        });
    }
    // SAFETY: on success the kernel filled ifru_hwaddr; reading a union member of plain
    // integers is valid for any bit pattern.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&data) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// `struct ethtool_value` of `linux/ethtool.h`: the argument of the legacy get/set commands.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM` (`linux/ethtool.h`).
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// TX checksum offload of `ifname` in the calling thread's network namespace, what `ethtool -k`
/// shows as `tx-checksumming`.
pub(crate) fn tx_checksum_offload(ifname: &str) -> Result<bool, XskError> {
    ethtool_value(
        ifname,
        ETHTOOL_GTXCSUM,
        0,
        "ioctl(SIOCETHTOOL, ETHTOOL_GTXCSUM)",
    )
    .map(|v| v != 0)
}

/// Turns TX checksum offload of `ifname` on or off (`ethtool -K <ifname> tx on|off`). The
/// kernel maps the legacy command onto every checksum feature (`NETIF_F_CSUM_MASK`) and drops
/// the segmentation offloads that depend on it.
pub(crate) fn set_tx_checksum_offload(ifname: &str, on: bool) -> Result<(), XskError> {
    ethtool_value(
        ifname,
        ETHTOOL_STXCSUM,
        u32::from(on),
        "ioctl(SIOCETHTOOL, ETHTOOL_STXCSUM)",
    )
    .map(drop)
}

/// One legacy `SIOCETHTOOL` get/set command with a `struct ethtool_value`, on a throwaway
/// UDP socket in the calling thread's namespace (as `ethtool` itself does). Returns the value
/// the kernel left in `data`.
fn ethtool_value(ifname: &str, cmd: u32, data: u32, op: &'static str) -> Result<u32, XskError> {
    let mut req = ifreq_named(ifname)?;
    let fd = udp_socket("socket(AF_INET) for SIOCETHTOOL")?;
    let mut value = EthtoolValue { cmd, data };
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads ifr_name (NUL-terminated by ifreq_named) and follows
    // ifru_data to a `struct ethtool_value` (repr(C), 8 bytes), which it reads and, for a get
    // command, writes. Both `req` and `value` live on this stack frame across the call, and
    // nothing else aliases `value` while the kernel holds the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ENODEV) {
            return Err(XskError::NoSuchInterface(ifname.to_owned()));
        }
        return Err(XskError::Os { op, source });
    }
    Ok(value.data)
}

/// A UDP socket used only as a handle for interface ioctls (they are answered by the generic
/// device layer whatever the socket's protocol; AF_XDP sockets refuse them).
fn udp_socket(op: &'static str) -> Result<OwnedFd, XskError> {
    // SAFETY: socket() has no memory-safety preconditions; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(XskError::last_os(op));
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An all-zero `ifreq` carrying `ifname`; a name the kernel could never know (empty, too long,
/// with a NUL) is reported as [`XskError::NoSuchInterface`].
fn ifreq_named(ifname: &str) -> Result<libc::ifreq, XskError> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(XskError::NoSuchInterface(ifname.to_owned()));
    }
    // SAFETY: ifreq is a repr(C) struct of integers, byte arrays and a union of those (plus a
    // pointer member we never read); all-zero is a valid value and NUL-terminates the name.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwaddr_of_loopback_and_of_nothing() {
        // Every namespace has lo, with an all-zero address; no privilege needed.
        assert_eq!(if_hwaddr("lo").ok(), Some([0; 6]));
        assert!(matches!(
            if_hwaddr("kxdp-no-such0"),
            Err(XskError::NoSuchInterface(_))
        ));
        assert!(matches!(
            if_hwaddr("a-name-longer-than-ifnamsiz"),
            Err(XskError::NoSuchInterface(_))
        ));
    }

    #[test]
    fn tx_checksum_of_loopback_and_of_nothing() {
        // Reading needs no privilege; loopback "offloads" checksums (it never computes them).
        assert_eq!(tx_checksum_offload("lo").ok(), Some(true));
        assert!(matches!(
            tx_checksum_offload("kxdp-no-such0"),
            Err(XskError::NoSuchInterface(_))
        ));
        assert!(matches!(
            set_tx_checksum_offload("kxdp-no-such0", false),
            Err(XskError::NoSuchInterface(_))
        ));
    }
}

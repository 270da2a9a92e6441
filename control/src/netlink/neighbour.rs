//! Neighbour (ARP / NDP) entries: permanent, kernel-managed, delete, dump.
//!
//! A *managed* entry (`NTF_EXT_MANAGED`, kernel 5.16 and later) asks the kernel to resolve
//! the address by itself and to keep it resolved: it re-probes before the entry would go
//! stale, without any traffic towards it. That is what an engine that sends frames past the
//! kernel (AF_XDP) needs, since its packets never refresh the kernel's entries.

use std::fmt;
use std::net::IpAddr;

use super::error::{Error, Result};
use super::link::{LinkId, MacAddr};
use super::socket::Netlink;
use super::wire::{self, DecodeError, MessageBuilder, NdMsg, family, flags, kind};

/// `NDA_*` attribute types.
mod nda {
    pub const DST: u16 = 1;
    pub const LLADDR: u16 = 2;
    /// Extended flags, u32 (kernel 5.16+).
    pub const FLAGS_EXT: u16 = 15;
}

/// `NTF_EXT_MANAGED`, carried in NDA_FLAGS_EXT (`linux/neighbour.h`: `(1 << 0)`).
pub const NTF_EXT_MANAGED: u32 = 1 << 0;

/// A neighbour entry's `NUD_*` state bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NudState(pub u16);

impl NudState {
    pub const NONE: NudState = NudState(0x00);
    pub const INCOMPLETE: NudState = NudState(0x01);
    pub const REACHABLE: NudState = NudState(0x02);
    pub const STALE: NudState = NudState(0x04);
    pub const DELAY: NudState = NudState(0x08);
    pub const PROBE: NudState = NudState(0x10);
    pub const FAILED: NudState = NudState(0x20);
    pub const NOARP: NudState = NudState(0x40);
    pub const PERMANENT: NudState = NudState(0x80);

    /// States whose link-layer address can be used to send: confirmed recently (REACHABLE),
    /// unconfirmed but not refuted (STALE, DELAY, PROBE: the kernel is re-checking), or
    /// configured (PERMANENT).
    const USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

    pub fn contains(self, other: NudState) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_usable(self) -> bool {
        self.0 & Self::USABLE != 0
    }
}

impl fmt::Display for NudState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u16, &str); 8] = [
            (0x01, "INCOMPLETE"),
            (0x02, "REACHABLE"),
            (0x04, "STALE"),
            (0x08, "DELAY"),
            (0x10, "PROBE"),
            (0x20, "FAILED"),
            (0x40, "NOARP"),
            (0x80, "PERMANENT"),
        ];
        if self.0 == 0 {
            return f.write_str("NONE");
        }
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// Present only in valid states (the kernel omits NDA_LLADDR otherwise).
    pub mac: Option<MacAddr>,
    pub state: NudState,
    /// `NTF_*` bits (NTF_ROUTER, NTF_PROXY, ...).
    pub flags: u8,
    /// NDA_FLAGS_EXT bits ([`NTF_EXT_MANAGED`]).
    pub ext_flags: u32,
}

impl Neighbour {
    /// The MAC can be used to send to `ip` (see [`NudState::is_usable`]).
    pub fn is_resolved(&self) -> bool {
        self.state.is_usable() && self.mac.is_some()
    }

    /// The kernel keeps this entry resolved by itself.
    pub fn is_managed(&self) -> bool {
        self.ext_flags & NTF_EXT_MANAGED != 0
    }

    /// Parses the payload of an RTM_NEWNEIGH or RTM_DELNEIGH message. Entries of other
    /// families (bridge FDB entries share the message type) have no IP and are an error.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let (header, attrs) = wire::split_header(payload, NdMsg::LEN)?;
        let header = NdMsg::parse(header)?;
        let mut ip = None;
        let mut mac = None;
        let mut ext_flags = 0;
        for attr in attrs {
            let attr = attr?;
            match attr.kind {
                nda::DST => ip = wire::parse_ip(attr.payload),
                nda::LLADDR => mac = attr.payload.try_into().ok(),
                nda::FLAGS_EXT => ext_flags = wire::parse_u32(attr.payload)?,
                _ => {}
            }
        }
        Ok(Neighbour {
            ifindex: header.index,
            ip: ip.ok_or(DecodeError("neighbour without an IP NDA_DST"))?,
            mac,
            state: NudState(header.state),
            flags: header.flags,
            ext_flags,
        })
    }
}

/// RTM_NEWNEIGH / RTM_DELNEIGH for `ip` on link `index`.
pub(crate) fn neighbour_request(
    msg_kind: u16,
    msg_flags: u16,
    index: u32,
    ip: IpAddr,
    state: NudState,
    mac: Option<MacAddr>,
    ext_flags: u32,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(msg_kind, msg_flags);
    m.header(
        &NdMsg {
            family: wire::family_of(ip),
            index,
            state: state.0,
            ..NdMsg::default()
        }
        .emit(),
    );
    m.attr(nda::DST, &wire::ip_bytes(&ip));
    if let Some(mac) = mac {
        m.attr(nda::LLADDR, &mac);
    }
    if ext_flags != 0 {
        m.attr_u32(nda::FLAGS_EXT, ext_flags);
    }
    m
}

impl Netlink {
    /// Adds a permanent entry `ip` → `mac` on a link; EEXIST if there is any entry for `ip`.
    pub fn add_permanent_neighbour(
        &mut self,
        link: impl Into<LinkId>,
        ip: IpAddr,
        mac: MacAddr,
    ) -> Result<()> {
        self.permanent_neighbour(link.into(), ip, mac, flags::CREATE | flags::EXCL)
    }

    /// Adds a permanent entry, or turns the existing entry for `ip` into this one.
    pub fn replace_permanent_neighbour(
        &mut self,
        link: impl Into<LinkId>,
        ip: IpAddr,
        mac: MacAddr,
    ) -> Result<()> {
        self.permanent_neighbour(link.into(), ip, mac, flags::CREATE | flags::REPLACE)
    }

    fn permanent_neighbour(
        &mut self,
        link: LinkId,
        ip: IpAddr,
        mac: MacAddr,
        msg_flags: u16,
    ) -> Result<()> {
        let object = format!("{ip} dev {link}");
        let index = self.resolve_index(link)?;
        let request = neighbour_request(
            kind::RTM_NEWNEIGH,
            msg_flags,
            index,
            ip,
            NudState::PERMANENT,
            Some(mac),
            0,
        );
        self.execute(request, "RTM_NEWNEIGH", &object)
    }

    /// Makes the entry for `ip` on a link kernel-managed: the kernel resolves it now and keeps
    /// it resolved. An existing resolved entry keeps its MAC while it converts (it is written
    /// back as STALE with that MAC, which the kernel then re-confirms); any other entry starts
    /// from NUD_NONE. Needs kernel 5.16+ (older kernels reject NDA_FLAGS_EXT with EINVAL).
    /// A PERMANENT entry cannot be managed (EINVAL).
    pub fn add_managed_neighbour(&mut self, link: impl Into<LinkId>, ip: IpAddr) -> Result<()> {
        self.managed_neighbour(link.into(), ip, None)
    }

    /// [`add_managed_neighbour`](Self::add_managed_neighbour), keeping `known_mac` usable
    /// during the conversion of an existing resolved entry.
    pub(crate) fn managed_neighbour(
        &mut self,
        link: LinkId,
        ip: IpAddr,
        known_mac: Option<MacAddr>,
    ) -> Result<()> {
        let object = format!("{ip} dev {link} managed");
        let index = self.resolve_index(link)?;
        let state = if known_mac.is_some() {
            NudState::STALE
        } else {
            NudState::NONE
        };
        let request = neighbour_request(
            kind::RTM_NEWNEIGH,
            flags::CREATE | flags::REPLACE,
            index,
            ip,
            state,
            known_mac,
            NTF_EXT_MANAGED,
        );
        self.execute(request, "RTM_NEWNEIGH", &object)
    }

    /// Deletes the entry for `ip` on a link; ENOENT if there is none.
    pub fn delete_neighbour(&mut self, link: impl Into<LinkId>, ip: IpAddr) -> Result<()> {
        let link = link.into();
        let object = format!("{ip} dev {link}");
        let index = self.resolve_index(link)?;
        let request = neighbour_request(kind::RTM_DELNEIGH, 0, index, ip, NudState::NONE, None, 0);
        self.execute(request, "RTM_DELNEIGH", &object)
    }

    /// The IPv4 and IPv6 neighbour entries of one link, or of all links with `None`.
    pub fn neighbours(&mut self, link: Option<LinkId>) -> Result<Vec<Neighbour>> {
        const OP: &str = "RTM_GETNEIGH";
        let index = link.map(|l| self.resolve_index(l)).transpose()?;
        let mut all = Vec::new();
        // Two dumps rather than AF_UNSPEC, which would also return bridge FDB entries.
        for fam in [family::AF_INET, family::AF_INET6] {
            let mut request = MessageBuilder::new(kind::RTM_GETNEIGH, 0);
            request.header(
                &NdMsg {
                    family: fam,
                    ..NdMsg::default()
                }
                .emit(),
            );
            for part in self.dump(&request, OP, "dump")? {
                let neighbour = Neighbour::parse(&part).map_err(|source| Error::Malformed {
                    op: OP,
                    object: "dump".to_owned(),
                    source,
                })?;
                if index.is_none_or(|i| neighbour.ifindex == i) {
                    all.push(neighbour);
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::wire::Messages;

    #[test]
    fn managed_request_carries_flags_ext_and_no_state() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let bytes = neighbour_request(
            kind::RTM_NEWNEIGH,
            flags::CREATE | flags::REPLACE,
            3,
            ip,
            NudState::NONE,
            None,
            NTF_EXT_MANAGED,
        )
        .finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let n = Neighbour::parse(msg.payload).unwrap();
        assert_eq!(
            n,
            Neighbour {
                ifindex: 3,
                ip,
                mac: None,
                state: NudState::NONE,
                flags: 0,
                ext_flags: NTF_EXT_MANAGED,
            }
        );
        assert!(n.is_managed());
        assert!(!n.is_resolved());
        // The attribute itself: type 15, a 4-byte host-order u32 of 1.
        let (_, attrs) = wire::split_header(msg.payload, NdMsg::LEN).unwrap();
        let ext = attrs.map(Result::unwrap).find(|a| a.kind == 15).unwrap();
        assert_eq!(ext.payload, 1u32.to_ne_bytes());
    }

    #[test]
    fn permanent_request_round_trips() {
        let ip: IpAddr = "fd00::9".parse().unwrap();
        let mac = [2, 0, 0, 0, 0, 9];
        let bytes = neighbour_request(
            kind::RTM_NEWNEIGH,
            flags::CREATE,
            5,
            ip,
            NudState::PERMANENT,
            Some(mac),
            0,
        )
        .finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let n = Neighbour::parse(msg.payload).unwrap();
        assert_eq!(
            (n.ifindex, n.ip, n.mac, n.state),
            (5, ip, Some(mac), NudState::PERMANENT)
        );
        assert!(n.is_resolved());
        assert!(!n.is_managed());
    }

    #[test]
    fn only_usable_states_count_as_resolved() {
        for (state, usable) in [
            (NudState::NONE, false),
            (NudState::INCOMPLETE, false),
            (NudState::FAILED, false),
            (NudState::NOARP, false),
            (NudState::REACHABLE, true),
            (NudState::STALE, true),
            (NudState::DELAY, true),
            (NudState::PROBE, true),
            (NudState::PERMANENT, true),
        ] {
            assert_eq!(state.is_usable(), usable, "{state}");
        }
        assert_eq!(NudState(0x82).to_string(), "REACHABLE|PERMANENT");
        assert_eq!(NudState::NONE.to_string(), "NONE");
    }
}

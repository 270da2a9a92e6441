//! Interface addresses (IPv4 and IPv6).

use std::net::IpAddr;

use super::error::{Error, Result};
use super::link::LinkId;
use super::socket::Netlink;
use super::wire::{self, DecodeError, IfAddrMsg, MessageBuilder, family, flags, kind};

/// `IFA_*` attribute types.
mod ifa {
    /// The peer address on point-to-point links, else the same as IFA_LOCAL.
    pub const ADDRESS: u16 = 1;
    /// The interface's own address (IPv4).
    pub const LOCAL: u16 = 2;
}

/// An address assigned to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressInfo {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
}

impl AddressInfo {
    /// Parses the payload of an RTM_NEWADDR message. IPv4 reports the interface's own address
    /// in IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links); IPv6 in IFA_ADDRESS.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let (header, attrs) = wire::split_header(payload, IfAddrMsg::LEN)?;
        let header = IfAddrMsg::parse(header)?;
        let (mut local, mut address) = (None, None);
        for attr in attrs {
            let attr = attr?;
            match attr.kind {
                ifa::LOCAL => local = wire::parse_ip(attr.payload),
                ifa::ADDRESS => address = wire::parse_ip(attr.payload),
                _ => {}
            }
        }
        Ok(AddressInfo {
            index: header.index,
            address: local.or(address).ok_or(DecodeError(
                "address message without IFA_LOCAL or IFA_ADDRESS",
            ))?,
            prefix_len: header.prefix_len,
            scope: header.scope,
        })
    }
}

/// RTM_NEWADDR / RTM_DELADDR for `address/prefix_len` on link `index`.
fn address_request(
    msg_kind: u16,
    msg_flags: u16,
    index: u32,
    address: IpAddr,
    prefix_len: u8,
) -> MessageBuilder {
    let mut m = MessageBuilder::new(msg_kind, msg_flags);
    m.header(
        &IfAddrMsg {
            family: wire::family_of(address),
            prefix_len,
            index,
            ..IfAddrMsg::default()
        }
        .emit(),
    );
    let bytes = wire::ip_bytes(&address);
    // As iproute2 does: without a peer, local and address are the same.
    m.attr(ifa::LOCAL, &bytes).attr(ifa::ADDRESS, &bytes);
    m
}

fn check_prefix(op: &'static str, object: &str, address: IpAddr, prefix_len: u8) -> Result<()> {
    let max = if address.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(Error::Invalid {
            op,
            object: object.to_owned(),
            reason: "prefix length longer than the address",
        });
    }
    Ok(())
}

impl Netlink {
    /// Adds `address/prefix_len` to a link (EEXIST if it is there already). The kernel adds
    /// the prefix route with it.
    pub fn add_address(
        &mut self,
        link: impl Into<LinkId>,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<()> {
        const OP: &str = "RTM_NEWADDR";
        let link = link.into();
        let object = format!("{address}/{prefix_len} dev {link}");
        check_prefix(OP, &object, address, prefix_len)?;
        let index = self.resolve_index(link)?;
        let request = address_request(
            kind::RTM_NEWADDR,
            flags::CREATE | flags::EXCL,
            index,
            address,
            prefix_len,
        );
        self.execute(request, OP, &object)
    }

    /// Removes `address/prefix_len` from a link (EADDRNOTAVAIL if it is not there).
    pub fn delete_address(
        &mut self,
        link: impl Into<LinkId>,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<()> {
        const OP: &str = "RTM_DELADDR";
        let link = link.into();
        let object = format!("{address}/{prefix_len} dev {link}");
        check_prefix(OP, &object, address, prefix_len)?;
        let index = self.resolve_index(link)?;
        let request = address_request(kind::RTM_DELADDR, 0, index, address, prefix_len);
        self.execute(request, OP, &object)
    }

    /// The addresses of one link, or of every link with `None`.
    pub fn addresses(&mut self, link: Option<LinkId>) -> Result<Vec<AddressInfo>> {
        const OP: &str = "RTM_GETADDR";
        let index = link.map(|l| self.resolve_index(l)).transpose()?;
        let mut request = MessageBuilder::new(kind::RTM_GETADDR, 0);
        request.header(
            &IfAddrMsg {
                family: family::AF_UNSPEC,
                ..IfAddrMsg::default()
            }
            .emit(),
        );
        let parts = self.dump(&request, OP, "dump")?;
        let all: Vec<AddressInfo> = parts
            .iter()
            .map(|p| AddressInfo::parse(p))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Malformed {
                op: OP,
                object: "dump".to_owned(),
                source,
            })?;
        // Filtering here: the kernel filters dumps by index only with NETLINK_GET_STRICT_CHK.
        Ok(all
            .into_iter()
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::wire::Messages;

    #[test]
    fn address_request_round_trips() {
        for (ip, len) in [("10.1.2.3", 24), ("fd00::7", 64)] {
            let ip: IpAddr = ip.parse().unwrap();
            let bytes = address_request(kind::RTM_NEWADDR, flags::CREATE, 4, ip, len).finish(1);
            let msg = Messages::new(&bytes).next().unwrap().unwrap();
            let parsed = AddressInfo::parse(msg.payload).unwrap();
            assert_eq!(
                parsed,
                AddressInfo {
                    index: 4,
                    address: ip,
                    prefix_len: len,
                    scope: 0
                }
            );
        }
    }

    #[test]
    fn ipv4_reports_the_local_address_not_the_peer() {
        let mut m = MessageBuilder::new(kind::RTM_NEWADDR, 0);
        m.header(
            &IfAddrMsg {
                family: family::AF_INET,
                prefix_len: 32,
                index: 2,
                ..IfAddrMsg::default()
            }
            .emit(),
        );
        m.attr(ifa::ADDRESS, &[192, 0, 2, 99])
            .attr(ifa::LOCAL, &[192, 0, 2, 1]);
        let bytes = m.finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let parsed = AddressInfo::parse(msg.payload).unwrap();
        assert_eq!(parsed.address, IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn prefix_lengths_are_checked() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(check_prefix("op", "x", v4, 32).is_ok());
        assert!(check_prefix("op", "x", v4, 33).is_err());
        assert!(check_prefix("op", "x", "::1".parse().unwrap(), 128).is_ok());
    }
}

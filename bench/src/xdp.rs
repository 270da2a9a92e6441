//! Which XDP program an interface has, and detaching one left behind, over rtnetlink
//! (`IFLA_XDP`, as `ip link` shows and sets it).
//!
//! Users: the runner checks that kxdp's steering program is gone before DPDK testpmd attaches
//! its own, and that testpmd's are gone after it exits ([`crate::dpdk`]). kxdp attaches through
//! a bpf_link, which the kernel detaches when its last fd closes; libxdp (testpmd's net_af_xdp
//! PMD) attaches through netlink, and such a program outlives a process that was killed.

use anyhow::{Context, Result, bail};
use kxdp_control::netlink::wire::{self, IfInfoMsg, MessageBuilder, kind};
use nix::sys::socket::SockProtocol;

use crate::netlink_raw::RawNetlink;
use crate::netns::Netns;

/// `IFLA_XDP` (linux/if_link.h) and its nested attributes.
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
/// `XDP_ATTACHED_*`: how the program is attached.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
/// `XDP_FLAGS_*`.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// An XDP program attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The program's id (`bpftool prog show id N`); 0 when several are attached.
    pub prog_id: u32,
    /// `XDP_ATTACHED_*`: 1 native, 2 generic, 3 offloaded, 4 several.
    pub mode: u8,
}

impl Attached {
    /// `native`, `generic`, `offload` or `multi`, as `ip link` would say.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            XDP_ATTACHED_DRV => "native",
            XDP_ATTACHED_SKB => "generic",
            3 => "offload",
            _ => "multi",
        }
    }
}

/// The XDP program attached to `ifindex` in `ns`, if any.
pub fn attached(ns: &Netns, ifindex: u32) -> Result<Option<Attached>> {
    ns.run(|| -> Result<Option<Attached>> {
        let mut nl = RawNetlink::open(SockProtocol::NetlinkRoute)?;
        let mut m = MessageBuilder::new(kind::RTM_GETLINK, 0);
        m.header(
            &IfInfoMsg {
                index: ifindex,
                ..IfInfoMsg::default()
            }
            .emit(),
        );
        let object = format!("ifindex {ifindex}");
        let replies = nl.request(m, "RTM_GETLINK", &object)?;
        let reply = replies
            .first()
            .with_context(|| format!("no RTM_NEWLINK reply for {object}"))?;
        parse_link_xdp(reply).map_err(|e| anyhow::anyhow!("{}", e.0))
    })?
    .with_context(|| {
        format!(
            "reading the XDP state of ifindex {ifindex} in {}",
            ns.name()
        )
    })
}

/// Detaches a netlink-attached XDP program from `ifindex` in `ns` (`ip link set dev X xdp
/// off`); a bpf_link's program cannot be detached this way (EBUSY).
pub fn detach(ns: &Netns, ifindex: u32, how: Attached) -> Result<()> {
    let flags = match how.mode {
        XDP_ATTACHED_DRV => XDP_FLAGS_DRV_MODE,
        XDP_ATTACHED_SKB => XDP_FLAGS_SKB_MODE,
        other => bail!("XDP program attached in mode {other}: not detaching it"),
    };
    ns.run(|| -> Result<()> {
        let mut nl = RawNetlink::open(SockProtocol::NetlinkRoute)?;
        let mut m = MessageBuilder::new(kind::RTM_SETLINK, 0);
        m.header(
            &IfInfoMsg {
                index: ifindex,
                ..IfInfoMsg::default()
            }
            .emit(),
        );
        let xdp = m.begin_nest(IFLA_XDP);
        m.attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        m.attr_u32(IFLA_XDP_FLAGS, flags);
        m.end_nest(xdp);
        nl.request(m, "RTM_SETLINK xdp off", &format!("ifindex {ifindex}"))?;
        Ok(())
    })?
    .with_context(|| {
        format!(
            "detaching XDP program {} from ifindex {ifindex} in {}",
            how.prog_id,
            ns.name()
        )
    })
}

/// The `IFLA_XDP` state in an RTM_NEWLINK payload; None when nothing is attached.
fn parse_link_xdp(payload: &[u8]) -> Result<Option<Attached>, wire::DecodeError> {
    let (_, attrs) = wire::split_header(payload, IfInfoMsg::LEN)?;
    for attr in attrs {
        let attr = attr?;
        if attr.kind != IFLA_XDP {
            continue;
        }
        let (mut mode, mut prog_id) = (0, 0);
        for inner in attr.nested() {
            let inner = inner?;
            match inner.kind {
                IFLA_XDP_ATTACHED => mode = inner.payload.first().copied().unwrap_or(0),
                IFLA_XDP_PROG_ID => prog_id = wire::parse_u32(inner.payload)?,
                _ => {}
            }
        }
        return Ok((mode != 0).then_some(Attached { prog_id, mode }));
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// An RTM_NEWLINK payload with an IFLA_XDP nest of `attached` and `prog_id`.
    fn payload(attached: u8, prog_id: Option<u32>) -> Vec<u8> {
        let mut m = MessageBuilder::new(kind::RTM_NEWLINK, 0);
        m.header(&IfInfoMsg::default().emit());
        m.attr_str(3, "kb-ngen"); // IFLA_IFNAME
        let x = m.begin_nest(IFLA_XDP);
        m.attr(IFLA_XDP_ATTACHED, &[attached]);
        if let Some(id) = prog_id {
            m.attr_u32(IFLA_XDP_PROG_ID, id);
        }
        m.end_nest(x);
        m.finish(1)[wire::NLMSG_HDRLEN..].to_vec()
    }

    #[test]
    fn xdp_state_is_parsed() {
        assert_eq!(parse_link_xdp(&payload(0, None)).unwrap(), None);
        assert_eq!(
            parse_link_xdp(&payload(1, Some(1137))).unwrap(),
            Some(Attached {
                prog_id: 1137,
                mode: 1
            })
        );
    }

    #[test]
    fn nothing_attached_to_a_fresh_veth() {
        if !kxdp_tests::require_root("xdp::nothing_attached_to_a_fresh_veth") {
            return;
        }
        let t = crate::topology::Topology::chain3("kb-xdpq", 1).unwrap();
        assert_eq!(attached(&t.node, t.node_gen_if.ifindex).unwrap(), None);
    }
}

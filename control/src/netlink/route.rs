//! Routes: add, replace, delete, dump, and asking the kernel which route a destination takes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{Error, Result};
use super::socket::Netlink;
use super::wire::{self, DecodeError, MessageBuilder, RtMsg, family, flags, kind};

/// `RTA_*` attribute types.
mod rta {
    pub const DST: u16 = 1;
    pub const OIF: u16 = 4;
    pub const GATEWAY: u16 = 5;
    pub const PRIORITY: u16 = 6;
    pub const PREFSRC: u16 = 7;
    pub const TABLE: u16 = 15;
}

/// `RT_TABLE_MAIN`.
pub const TABLE_MAIN: u32 = 254;
/// `RTPROT_STATIC`: installed by an administrator (here: by kxdp), not by the kernel or a
/// routing daemon.
pub const PROTOCOL_STATIC: u8 = 4;
/// `RTNH_F_ONLINK`: the gateway is reachable on `oif` even though no prefix says so.
const RTNH_F_ONLINK: u32 = 4;
/// `RT_SCOPE_NOWHERE`: in a delete request, "match any scope".
const SCOPE_NOWHERE: u8 = 255;

/// How far a route's destination is (`RT_SCOPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// Via a gateway.
    Universe,
    /// Directly on the link.
    Link,
    /// This host.
    Host,
    Other(u8),
}

impl RouteScope {
    fn to_raw(self) -> u8 {
        match self {
            RouteScope::Universe => 0,
            RouteScope::Link => 253,
            RouteScope::Host => 254,
            RouteScope::Other(raw) => raw,
        }
    }

    fn from_raw(raw: u8) -> Self {
        match raw {
            0 => RouteScope::Universe,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            other => RouteScope::Other(other),
        }
    }
}

/// What the kernel does with matching packets (`RTN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteType {
    Unicast,
    /// Delivered to this host.
    Local,
    Broadcast,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

impl RouteType {
    fn to_raw(self) -> u8 {
        match self {
            RouteType::Unicast => 1,
            RouteType::Local => 2,
            RouteType::Broadcast => 3,
            RouteType::Blackhole => 6,
            RouteType::Unreachable => 7,
            RouteType::Prohibit => 8,
            RouteType::Other(raw) => raw,
        }
    }

    fn from_raw(raw: u8) -> Self {
        match raw {
            1 => RouteType::Unicast,
            2 => RouteType::Local,
            3 => RouteType::Broadcast,
            6 => RouteType::Blackhole,
            7 => RouteType::Unreachable,
            8 => RouteType::Prohibit,
            other => RouteType::Other(other),
        }
    }
}

/// A route, as added or as reported by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Use the gateway on `oif` without a covering prefix route (RTNH_F_ONLINK), as flannel
    /// does for routes to other nodes' pod CIDRs.
    pub onlink: bool,
    /// None: link scope without a gateway, universe with one (iproute2's default).
    pub scope: Option<RouteScope>,
    pub route_type: RouteType,
    pub table: u32,
    pub protocol: u8,
    /// Priority (`ip route ... metric N`).
    pub metric: Option<u32>,
    /// Preferred source address for locally originated packets.
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// A unicast route to `dst/prefix_len` in the main table; add a gateway and/or an oif.
    pub fn new(dst: IpAddr, prefix_len: u8) -> Self {
        Route {
            dst,
            prefix_len,
            gateway: None,
            oif: None,
            onlink: false,
            scope: None,
            route_type: RouteType::Unicast,
            table: TABLE_MAIN,
            protocol: PROTOCOL_STATIC,
            metric: None,
            prefsrc: None,
        }
    }

    pub fn via(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    pub fn dev(mut self, oif: u32) -> Self {
        self.oif = Some(oif);
        self
    }

    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    pub fn scope(mut self, scope: RouteScope) -> Self {
        self.scope = Some(scope);
        self
    }

    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    pub fn prefsrc(mut self, prefsrc: IpAddr) -> Self {
        self.prefsrc = Some(prefsrc);
        self
    }

    /// The scope the request carries.
    fn effective_scope(&self) -> RouteScope {
        self.scope.unwrap_or(if self.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        })
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let invalid = |reason| {
            Err(Error::Invalid {
                op,
                object: format!("route {self}"),
                reason,
            })
        };
        let max = if self.dst.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max {
            return invalid("prefix length longer than the address");
        }
        let same_family =
            |ip: &Option<IpAddr>| ip.is_none_or(|ip| ip.is_ipv4() == self.dst.is_ipv4());
        if !same_family(&self.gateway) || !same_family(&self.prefsrc) {
            return invalid("gateway and prefsrc must be of the destination's family");
        }
        Ok(())
    }

    /// RTM_NEWROUTE / RTM_DELROUTE. A delete leaves protocol and type open and asks for any
    /// scope, so it matches the route however it was added.
    pub(crate) fn request(&self, msg_kind: u16, msg_flags: u16) -> MessageBuilder {
        let delete = msg_kind == kind::RTM_DELROUTE;
        let mut m = MessageBuilder::new(msg_kind, msg_flags);
        m.header(
            &RtMsg {
                family: wire::family_of(self.dst),
                dst_len: self.prefix_len,
                // Tables above 255 travel in RTA_TABLE only (RT_TABLE_UNSPEC here).
                table: u8::try_from(self.table).unwrap_or(0),
                protocol: if delete { 0 } else { self.protocol },
                scope: if delete {
                    SCOPE_NOWHERE
                } else {
                    self.effective_scope().to_raw()
                },
                route_type: if delete { 0 } else { self.route_type.to_raw() },
                flags: if self.onlink { RTNH_F_ONLINK } else { 0 },
                ..RtMsg::default()
            }
            .emit(),
        );
        m.attr_u32(rta::TABLE, self.table);
        if self.prefix_len > 0 {
            m.attr(rta::DST, &wire::ip_bytes(&self.dst));
        }
        if let Some(gateway) = &self.gateway {
            m.attr(rta::GATEWAY, &wire::ip_bytes(gateway));
        }
        if let Some(oif) = self.oif {
            m.attr_u32(rta::OIF, oif);
        }
        if let Some(metric) = self.metric {
            m.attr_u32(rta::PRIORITY, metric);
        }
        if let Some(prefsrc) = &self.prefsrc {
            m.attr(rta::PREFSRC, &wire::ip_bytes(prefsrc));
        }
        m
    }

    /// Parses the payload of an RTM_NEWROUTE message.
    pub fn parse(payload: &[u8]) -> Result<Self, DecodeError> {
        let (header, attrs) = wire::split_header(payload, RtMsg::LEN)?;
        let header = RtMsg::parse(header)?;
        let mut route = Route {
            dst: match header.family {
                family::AF_INET6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            },
            prefix_len: header.dst_len,
            gateway: None,
            oif: None,
            onlink: header.flags & RTNH_F_ONLINK != 0,
            scope: Some(RouteScope::from_raw(header.scope)),
            route_type: RouteType::from_raw(header.route_type),
            table: u32::from(header.table),
            protocol: header.protocol,
            metric: None,
            prefsrc: None,
        };
        let ip = |bytes| wire::parse_ip(bytes).ok_or(DecodeError("route address of odd length"));
        for attr in attrs {
            let attr = attr?;
            match attr.kind {
                rta::DST => route.dst = ip(attr.payload)?,
                rta::GATEWAY => route.gateway = Some(ip(attr.payload)?),
                rta::PREFSRC => route.prefsrc = Some(ip(attr.payload)?),
                rta::OIF => route.oif = Some(wire::parse_u32(attr.payload)?),
                rta::PRIORITY => route.metric = Some(wire::parse_u32(attr.payload)?),
                rta::TABLE => route.table = wire::parse_u32(attr.payload)?,
                _ => {}
            }
        }
        Ok(route)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix_len)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " oif {oif}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Adds a route; EEXIST if one with the same destination, table and metric exists.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        const OP: &str = "RTM_NEWROUTE";
        route.check(OP)?;
        let request = route.request(kind::RTM_NEWROUTE, flags::CREATE | flags::EXCL);
        self.execute(request, OP, &format!("route {route}"))
    }

    /// Adds a route, or replaces the one with the same destination, table and metric.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        const OP: &str = "RTM_NEWROUTE";
        route.check(OP)?;
        let request = route.request(kind::RTM_NEWROUTE, flags::CREATE | flags::REPLACE);
        self.execute(request, OP, &format!("route {route}"))
    }

    /// Deletes the route matching `route`'s destination and whatever else it sets (gateway,
    /// oif, metric); ESRCH (or ENOENT) if none does.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        const OP: &str = "RTM_DELROUTE";
        route.check(OP)?;
        let request = route.request(kind::RTM_DELROUTE, 0);
        self.execute(request, OP, &format!("route {route}"))
    }

    /// Asks the kernel which route a packet to `dst` takes (`ip route get`): the gateway (None
    /// when `dst` is on a connected link), the output interface, the preferred source.
    /// ENETUNREACH when there is no route.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<Route> {
        const OP: &str = "RTM_GETROUTE";
        let object = format!("to {dst}");
        let mut request = MessageBuilder::new(kind::RTM_GETROUTE, 0);
        request.header(
            &RtMsg {
                family: wire::family_of(dst),
                dst_len: if dst.is_ipv4() { 32 } else { 128 },
                ..RtMsg::default()
            }
            .emit(),
        );
        request.attr(rta::DST, &wire::ip_bytes(&dst));
        let replies = self.query(request, OP, &object)?;
        let payload = replies.first().ok_or_else(|| Error::MissingReply {
            op: OP,
            object: object.clone(),
            expected: "RTM_NEWROUTE",
        })?;
        Route::parse(payload).map_err(|source| Error::Malformed {
            op: OP,
            object,
            source,
        })
    }

    /// Every IPv4 and IPv6 route of every table (local, main, ...).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        const OP: &str = "RTM_GETROUTE";
        let mut request = MessageBuilder::new(kind::RTM_GETROUTE, 0);
        request.header(&RtMsg::default().emit());
        let parts = self.dump(&request, OP, "dump")?;
        parts
            .iter()
            .map(|p| Route::parse(p))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Malformed {
                op: OP,
                object: "dump".to_owned(),
                source,
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::netlink::wire::Messages;

    fn round_trip(route: &Route, msg_kind: u16) -> (RtMsg, Route) {
        let bytes = route.request(msg_kind, flags::CREATE).finish(1);
        let msg = Messages::new(&bytes).next().unwrap().unwrap();
        let header = RtMsg::parse(msg.payload).unwrap();
        (header, Route::parse(msg.payload).unwrap())
    }

    #[test]
    fn gateway_route_round_trips() {
        let route = Route::new("10.244.1.0".parse().unwrap(), 24)
            .via("192.0.2.2".parse().unwrap())
            .dev(3)
            .onlink()
            .metric(100);
        let (header, parsed) = round_trip(&route, kind::RTM_NEWROUTE);
        assert_eq!(header.scope, 0, "universe scope with a gateway");
        assert_eq!(header.table, 254);
        assert_eq!(
            parsed,
            Route {
                scope: Some(RouteScope::Universe),
                ..route
            }
        );
    }

    #[test]
    fn connected_route_defaults_to_link_scope() {
        let route = Route::new("10.1.0.0".parse().unwrap(), 16).dev(2);
        let (header, parsed) = round_trip(&route, kind::RTM_NEWROUTE);
        assert_eq!(header.scope, 253);
        assert_eq!(parsed.scope, Some(RouteScope::Link));
    }

    #[test]
    fn default_route_has_no_dst_attribute_and_big_tables_use_rta_table() {
        let route = Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            .via("192.0.2.1".parse().unwrap())
            .table(1000);
        let (header, parsed) = round_trip(&route, kind::RTM_NEWROUTE);
        assert_eq!(header.table, 0);
        assert_eq!(parsed.table, 1000);
        assert_eq!(parsed.dst, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn delete_matches_any_scope_protocol_and_type() {
        let route = Route::new("10.9.0.0".parse().unwrap(), 16).dev(2);
        let (header, _) = round_trip(&route, kind::RTM_DELROUTE);
        assert_eq!(
            (header.scope, header.protocol, header.route_type),
            (255, 0, 0)
        );
    }

    #[test]
    fn mixed_families_are_refused() {
        let route = Route::new("10.0.0.0".parse().unwrap(), 8).via("fe80::1".parse().unwrap());
        assert!(route.check("RTM_NEWROUTE").is_err());
        let route = Route::new("10.0.0.0".parse().unwrap(), 33);
        assert!(route.check("RTM_NEWROUTE").is_err());
    }
}

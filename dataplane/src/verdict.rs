//! What a stage decides for a packet, and why packets are dropped.

/// Index of an engine port (an interface the engine holds sockets on). Assigned by the
/// engine in the order ports are configured; tables refer to ports by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PortId(pub u16);

impl PortId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The fate of one packet after the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this port (same worker, same UMEM: no copy).
    Forward(PortId),
    /// The packet belongs to the host kernel's stack.
    ToHost,
    /// Dropped, counted under the reason.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $label:literal,)*) => {
        /// Why a packet was dropped. Each reason indexes a per-worker counter; the label is the
        /// `reason` of the `kxdp_drops_total` metric.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons (length of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// The metric label.
            pub const fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    TruncatedEthernet = "truncated_ethernet",
    /// An EtherType the engine does not handle on this port.
    UnsupportedEthertype = "unsupported_ethertype",
    /// IPv4 header malformed: version, header length, total length.
    MalformedIpv4 = "malformed_ipv4",
    /// IPv4 header checksum wrong.
    BadIpv4Checksum = "bad_ipv4_checksum",
    /// TTL would reach zero.
    TtlExceeded = "ttl_exceeded",
    /// No route for the destination.
    NoRoute = "no_route",
    /// The route says drop (blackhole).
    Blackhole = "blackhole",
    /// The packet is larger than the egress MTU.
    TooBig = "too_big",
    /// Traffic for the host with no path to the host kernel from this port.
    NoHostPath = "no_host_path",
    /// The egress TX ring was full.
    TxRingFull = "tx_ring_full",
    /// The frame would be sent back out the port it came in on.
    Hairpin = "hairpin",
    /// A pod used a source address (IPv4 source, ARP sender) that is not its own, or a pod
    /// port has no address configured yet.
    Spoofed = "spoofed",
    /// ARP shorter than its fixed size, or not Ethernet/IPv4.
    ArpMalformed = "arp_malformed",
    /// An ARP reply or other non-request: the engine answers, it never learns.
    ArpNotRequest = "arp_not_request",
    /// An ARP request the engine does not answer: gratuitous ARP, an RFC 5227 probe, a pod
    /// asking for its own address, the host asking for an address the engine does not forward.
    ArpIgnored = "arp_ignored",
    /// VXLAN to our VTEP cut short, or its UDP length disagrees with the IP length.
    MalformedVxlan = "malformed_vxlan",
    /// VXLAN header without the I flag (RFC 7348 §5: the VNI is not valid).
    VxlanBadFlags = "vxlan_bad_flags",
    /// VXLAN for a VNI other than the overlay's.
    VxlanWrongVni = "vxlan_wrong_vni",
    /// Inner Ethernet destination is not our VTEP MAC.
    VxlanWrongInnerMac = "vxlan_wrong_inner_mac",
    /// Inner frame is not IPv4 (the overlay carries IPv4 only; neighbours are static).
    VxlanInnerNotIpv4 = "vxlan_inner_not_ipv4",
    /// A route names a tunnel the tables do not hold (a table compiler bug, made visible).
    NoTunnel = "no_tunnel",
    /// The underlay next hop has no resolved MAC yet.
    NoNeighbour = "no_neighbour",
    /// The egress port has no socket on this worker (the port has fewer queues than there
    /// are workers, or it is being removed).
    NoEgressSocket = "no_egress_socket",
    /// Not enough headroom in the frame to prepend a header (encapsulation, ICMP error).
    NoHeadroom = "no_headroom",
    /// To a service frontend without endpoints: dropped, or (counted as `service_rejects`
    /// instead) answered with a TCP RST or ICMP port unreachable when the frontend rejects.
    ServiceNoEndpoints = "service_no_endpoints",
    /// To a LoadBalancer frontend from outside its `loadBalancerSourceRanges`.
    SourceRangeDenied = "source_range_denied",
    /// A flow needing source NAT found no free node port for its backend (every port of the
    /// range tried was taken by a live flow).
    SnatPortsExhausted = "snat_ports_exhausted",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_counters_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(!r.label().is_empty());
        }
    }
}

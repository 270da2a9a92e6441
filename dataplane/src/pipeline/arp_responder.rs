//! Proxy ARP on pod and host ports (RFC 1027 style): the engine is every pod's gateway and the
//! host's way to the pods, so it answers "who has X?" with its own MAC for the addresses it
//! routes, rewriting the request into the reply in place and sending it back out the port it
//! came in on. It never learns from ARP: neighbours are in the tables.
//!
//! - **Pod port**: answers for any address but the pod's own (the pod's gateway, other pods,
//!   anything off-node), and only when the sender address is the pod's: a request claiming
//!   another sender would let a pod poison our view of who it is, so it is dropped as spoofed.
//! - **Host port**: answers for addresses the engine forwards (pod and remote-pod routes), not
//!   for addresses routed to the host itself (the host would be asking about itself).
//!
//! Not answered, and counted: replies (`arp_not_request`), gratuitous ARP and RFC 5227 probes
//! (sender = target, or sender 0.0.0.0; answering a probe would tell the pod its address is
//! taken), anything not Ethernet/IPv4 or cut short (`arp_malformed`).

use super::{Next, PacketBuf, PacketMeta, Packets, PipelineCounters, for_each};
use crate::tables::{PortInfo, PortRole, Route, Tables};
use crate::verdict::{DropReason, PortId, Verdict};
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetFrame, MacAddr};

#[inline]
pub fn run<P: Packets>(
    tables: &Tables,
    in_port: PortId,
    pkts: &mut P,
    meta: &mut [PacketMeta],
    counters: &mut PipelineCounters,
) {
    let port = tables.port(in_port);
    for_each(
        pkts,
        meta,
        |n| (n == Next::Arp).then_some(()),
        |buf, m, ()| {
            let verdict = respond(tables, &port, in_port, buf.data_mut());
            if let Verdict::Forward(_) = verdict {
                counters.arp_replies += 1;
            }
            m.next = Next::Done(verdict);
        },
    );
}

/// Turns an ARP request in `frame` into our reply, or says why not.
#[inline]
pub fn respond(tables: &Tables, port: &PortInfo, in_port: PortId, frame: &mut [u8]) -> Verdict {
    let drop = Verdict::Drop;
    let Some(Ok(mut arp)) = frame
        .get_mut(ETHERNET_HEADER_LEN..)
        .map(ArpPacket::new_checked)
    else {
        return drop(DropReason::ArpMalformed);
    };
    let Ok(req) = ArpRepr::parse(&arp) else {
        return drop(DropReason::ArpMalformed);
    };
    if req.operation != ArpOperation::Request {
        return drop(DropReason::ArpNotRequest);
    }
    let sender = req.source_protocol_addr;
    let target = req.target_protocol_addr;
    if sender.is_unspecified() || sender == target {
        return drop(DropReason::ArpIgnored);
    }
    // The reply goes to the sender's hardware address: it must be one station.
    if !req.source_hardware_addr.is_unicast() {
        return drop(DropReason::ArpMalformed);
    }
    let answer = match port.role {
        PortRole::Pod => {
            let Some(pod) = port.pod else {
                return drop(DropReason::Spoofed);
            };
            if sender != pod.ip4 {
                return drop(DropReason::Spoofed);
            }
            target != pod.ip4
        }
        PortRole::Host => match tables.routes4.lookup(u32::from(target)) {
            // Not a route back out this port: the host would send us what it should send itself.
            Some(Route::Via(nh)) => nh.port != in_port,
            Some(Route::Vxlan(_) | Route::Unresolved) => true,
            Some(Route::Host | Route::Blackhole) | None => false,
        },
        // Ingress sends no uplink ARP here; the uplink's neighbours belong to the host.
        PortRole::Uplink => false,
    };
    if !answer {
        return drop(DropReason::ArpIgnored);
    }
    let router = MacAddr(tables.router_mac);
    ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: router,
        source_protocol_addr: target,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: sender,
    }
    .emit(&mut arp);
    // The Ethernet header is there: the ARP view above starts after it.
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(req.source_hardware_addr);
    eth.set_src_addr(router);
    Verdict::Forward(in_port)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::pipeline::test_support::*;
    use proptest::prelude::*;

    fn request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&sender_mac);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&sender_mac);
        f.extend_from_slice(&sender.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        f.resize(60, 0); // minimum Ethernet frame: padding must not confuse anything
        f
    }

    /// Reply fields checked against the bytes RFC 826 prescribes (not our own parser).
    fn check_reply(f: &[u8], to_mac: [u8; 6], to_ip: Ipv4Addr, about: Ipv4Addr) {
        let eth = etherparse::Ethernet2HeaderSlice::from_slice(f).unwrap();
        assert_eq!(eth.destination(), to_mac);
        assert_eq!(eth.source(), ROUTER_MAC);
        assert_eq!(eth.ether_type(), etherparse::EtherType::ARP);
        // etherparse 0.16 has no ARP: read the fixed offsets by hand (RFC 826).
        let arp = &f[14..42];
        assert_eq!(
            &arp[..8],
            &[0, 1, 0x08, 0, 6, 4, 0, 2],
            "Ethernet/IPv4 reply"
        );
        assert_eq!(&arp[8..14], &ROUTER_MAC);
        assert_eq!(&arp[14..18], &about.octets());
        assert_eq!(&arp[18..24], &to_mac);
        assert_eq!(&arp[24..28], &to_ip.octets());
    }

    #[test]
    fn pod_asking_for_its_gateway_gets_our_mac() {
        let (t, _) = node_tables();
        let gw = Ipv4Addr::new(10, 244, 1, 1);
        let (v, f) = run_one(&t, POD_A, &request(POD_A_MAC, POD_A_IP, gw));
        assert_eq!(v, Verdict::Forward(POD_A));
        check_reply(&f, POD_A_MAC, POD_A_IP, gw);
        assert_eq!(f.len(), 60);
        // Any other address too (proxy ARP): another pod, something off-node.
        for target in [POD_B_IP, REMOTE_POD_IP, Ipv4Addr::new(8, 8, 8, 8)] {
            let (v, f) = run_one(&t, POD_A, &request(POD_A_MAC, POD_A_IP, target));
            assert_eq!(v, Verdict::Forward(POD_A));
            check_reply(&f, POD_A_MAC, POD_A_IP, target);
        }
    }

    #[test]
    fn pod_requests_we_do_not_answer() {
        let (t, _) = node_tables();
        let gw = Ipv4Addr::new(10, 244, 1, 1);
        let d = |v: Verdict| match v {
            Verdict::Drop(r) => r,
            other => panic!("{other:?}"),
        };
        // Spoofed sender address.
        assert_eq!(
            d(run_one(&t, POD_A, &request(POD_A_MAC, POD_B_IP, gw)).0),
            DropReason::Spoofed
        );
        // Its own address (duplicate detection), gratuitous, probe.
        assert_eq!(
            d(run_one(&t, POD_A, &request(POD_A_MAC, POD_A_IP, POD_A_IP)).0),
            DropReason::ArpIgnored
        );
        assert_eq!(
            d(run_one(&t, POD_A, &request(POD_A_MAC, Ipv4Addr::UNSPECIFIED, gw)).0),
            DropReason::ArpIgnored
        );
        // A reply.
        let mut r = request(POD_A_MAC, POD_A_IP, gw);
        r[21] = 2;
        assert_eq!(d(run_one(&t, POD_A, &r).0), DropReason::ArpNotRequest);
        // Not Ethernet/IPv4; cut short; a multicast sender.
        let mut r = request(POD_A_MAC, POD_A_IP, gw);
        r[18] = 5;
        assert_eq!(d(run_one(&t, POD_A, &r).0), DropReason::ArpMalformed);
        assert_eq!(
            d(run_one(&t, POD_A, &request(POD_A_MAC, POD_A_IP, gw)[..41]).0),
            DropReason::ArpMalformed
        );
        assert_eq!(
            d(run_one(&t, POD_A, &request([1, 0, 0x5e, 0, 0, 1], POD_A_IP, gw)).0),
            DropReason::ArpMalformed
        );
        // No ARP on the uplink.
        assert_eq!(
            d(run_one(&t, UPLINK, &request(GATEWAY_MAC, REMOTE_NODE_IP, NODE_IP)).0),
            DropReason::UnsupportedEthertype
        );
    }

    #[test]
    fn host_port_answers_for_pods_only() {
        let (t, _) = node_tables();
        let host_ip = Ipv4Addr::new(169, 254, 1, 1);
        for target in [POD_A_IP, REMOTE_POD_IP] {
            let (v, f) = run_one(&t, HOST, &request(HOST_VETH_MAC, host_ip, target));
            assert_eq!(v, Verdict::Forward(HOST));
            check_reply(&f, HOST_VETH_MAC, host_ip, target);
        }
        // The node's own address (Route::Host), a blackhole: not ours to answer.
        for target in [NODE_IP, Ipv4Addr::new(10, 244, 9, 1)] {
            let (v, _) = run_one(&t, HOST, &request(HOST_VETH_MAC, host_ip, target));
            assert_eq!(v, Verdict::Drop(DropReason::ArpIgnored));
        }
        // Something routed back out the host port itself.
        let t2 = t.clone().with_route4(
            Ipv4Addr::new(203, 0, 113, 0),
            24,
            Route::Via(crate::tables::NextHop::new(HOST, HOST_VETH_MAC, ROUTER_MAC)),
        );
        let (v, _) = run_one(
            &t2,
            HOST,
            &request(HOST_VETH_MAC, host_ip, Ipv4Addr::new(203, 0, 113, 9)),
        );
        assert_eq!(v, Verdict::Drop(DropReason::ArpIgnored));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..64), port in 0u16..4) {
            if data.len() >= 14 {
                data[12] = 0x08;
                data[13] = 0x06;
            }
            let (t, _) = node_tables();
            let _ = respond(&t, &t.port(PortId(port)), PortId(port), &mut data);
        }
    }
}

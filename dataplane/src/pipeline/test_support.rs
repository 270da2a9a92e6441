//! Test doubles for the stages: a frame-like byte buffer with headroom, a node's tables with
//! pods, a host port and a tunnel, and packet builders (etherparse).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::{BATCH_SIZE, PacketBuf, PacketMeta, Packets, Pipeline, final_verdict};
use crate::tables::{NextHop, Overlay, PortInfo, PortRole, Route, Tables, TunnelId, TunnelSpec};
use crate::verdict::{PortId, Verdict};

/// A UMEM frame stand-in: `size` bytes with the data starting after `HEADROOM`.
#[derive(Debug, Clone)]
pub struct TestBuf {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

/// What the kernel leaves in front of RX data (XDP_PACKET_HEADROOM).
pub const HEADROOM: usize = 256;
const FRAME_SIZE: usize = 4096;

impl TestBuf {
    pub fn new(data: &[u8]) -> Self {
        Self::with_headroom(data, HEADROOM)
    }

    pub fn with_headroom(data: &[u8], headroom: usize) -> Self {
        let mut buf = vec![0xee; FRAME_SIZE.max(headroom + data.len())];
        buf[headroom..headroom + data.len()].copy_from_slice(data);
        TestBuf {
            buf,
            off: headroom,
            len: data.len(),
        }
    }

    pub fn headroom(&self) -> usize {
        self.off
    }

    /// Make the buffer hold `data` after the default headroom again, without allocating (a
    /// recycled frame, for benchmarks).
    pub fn reset(&mut self, data: &[u8]) {
        let end = HEADROOM + data.len();
        if self.buf.len() < end {
            self.buf.resize(end, 0xee);
        }
        self.buf[HEADROOM..end].copy_from_slice(data);
        self.off = HEADROOM;
        self.len = data.len();
    }
}

impl PacketBuf for TestBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
    fn push_head(&mut self, n: usize) -> bool {
        if n > self.off {
            return false;
        }
        self.off -= n;
        self.len += n;
        true
    }
    fn pull_head(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.off += n;
        self.len -= n;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if self.off + len > self.buf.len() {
            return false;
        }
        self.len = len;
        true
    }
}

impl Packets for Vec<TestBuf> {
    type Buf<'a> = &'a mut TestBuf;
    fn count(&self) -> usize {
        self.len()
    }
    fn get(&mut self, i: usize) -> Option<&mut TestBuf> {
        self.get_mut(i)
    }
}

impl<B: PacketBuf + ?Sized> PacketBuf for &mut B {
    fn data(&self) -> &[u8] {
        (**self).data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        (**self).data_mut()
    }
    fn push_head(&mut self, n: usize) -> bool {
        (**self).push_head(n)
    }
    fn pull_head(&mut self, n: usize) -> bool {
        (**self).pull_head(n)
    }
    fn set_len(&mut self, len: usize) -> bool {
        (**self).set_len(len)
    }
}

// The node of the tests: uplink 0, pods on ports 1 and 2, the host veth on port 3, a remote
// node's pod CIDR behind tunnel 0.
pub const UPLINK: PortId = PortId(0);
pub const POD_A: PortId = PortId(1);
pub const POD_B: PortId = PortId(2);
pub const HOST: PortId = PortId(3);

pub const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
pub const REMOTE_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);
pub const POD_A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
pub const POD_A_MAC: [u8; 6] = [0x0a, 0x58, 10, 244, 1, 2];
pub const POD_B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
pub const POD_B_MAC: [u8; 6] = [0x0a, 0x58, 10, 244, 1, 3];
pub const REMOTE_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
pub const HOST_VETH_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 3];
pub const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd1];
pub const VTEP_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x10];
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x20];
pub const VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
pub const UPLINK_MTU: u16 = 1500;

pub fn tunnel_spec() -> TunnelSpec {
    TunnelSpec {
        port: UPLINK,
        outer_dst_mac: GATEWAY_MAC,
        outer_src_mac: UPLINK_MAC,
        local: NODE_IP,
        remote: REMOTE_NODE_IP,
        vni: VNI,
        dst_port: VXLAN_PORT,
        inner_dst_mac: REMOTE_VTEP_MAC,
        inner_src_mac: VTEP_MAC,
    }
}

pub fn node_tables() -> (Tables, TunnelId) {
    let (t, tunnel) = Tables::default()
        .with_port(
            UPLINK,
            PortInfo {
                mtu: UPLINK_MTU,
                ..PortInfo::default()
            },
        )
        .with_port(POD_A, PortInfo::pod(POD_A_IP, POD_A_MAC))
        .with_port(POD_B, PortInfo::pod(POD_B_IP, POD_B_MAC))
        .with_port(HOST, PortInfo::with_role(PortRole::Host))
        .with_router(ROUTER_MAC, Some(NODE_IP))
        .with_host(NextHop::new(HOST, HOST_VETH_MAC, ROUTER_MAC))
        .with_overlay(Overlay {
            local_ip: NODE_IP,
            vni: VNI,
            port: VXLAN_PORT,
            vtep_mac: VTEP_MAC,
            uplink: UPLINK,
        })
        .with_tunnel(&tunnel_spec());
    let t = t
        .with_route4(
            POD_A_IP,
            32,
            Route::Via(NextHop::new(POD_A, POD_A_MAC, ROUTER_MAC)),
        )
        .with_route4(
            POD_B_IP,
            32,
            Route::Via(NextHop::new(POD_B, POD_B_MAC, ROUTER_MAC)),
        )
        .with_route4(Ipv4Addr::new(10, 244, 2, 0), 24, Route::Vxlan(tunnel))
        .with_route4(NODE_IP, 32, Route::Host)
        .with_route4(Ipv4Addr::new(10, 244, 9, 0), 24, Route::Blackhole)
        .with_route4(
            Ipv4Addr::new(0, 0, 0, 0),
            0,
            Route::Via(NextHop::new(UPLINK, GATEWAY_MAC, UPLINK_MAC)),
        );
    (t, tunnel)
}

/// Ethernet + IPv4 + UDP with `payload` bytes of 0x5a; DF set.
pub fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, sport: u16, payload: usize) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(
        0,
        ttl,
        etherparse::IpNumber::UDP,
        src.octets(),
        dst.octets(),
    )
    .unwrap();
    ip.dont_fragment = true;
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], ROUTER_MAC)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(sport, 80);
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; payload]).unwrap();
    v
}

/// Runs one frame through a fresh pipeline; returns the verdict and the bytes after.
pub fn run_one(tables: &Tables, in_port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut p = Pipeline::default();
    run_with(&mut p, tables, in_port, frame)
}

pub fn run_with(
    p: &mut Pipeline,
    tables: &Tables,
    in_port: PortId,
    frame: &[u8],
) -> (Verdict, Vec<u8>) {
    let mut pkts = vec![TestBuf::new(frame)];
    let mut meta = [PacketMeta::default(); BATCH_SIZE];
    p.run_on(tables, in_port, &mut pkts, &mut meta);
    (final_verdict(meta[0]), pkts[0].data().to_vec())
}

//! Steering program tests: encodings without privileges; with root, the
//! verifier's acceptance, every steering decision through BPF_PROG_TEST_RUN,
//! and attaching to a veth in a throwaway namespace.

use super::*;
use crate::bpf::XDP_DROP;
use crate::bpf::test_support::{TestNetns, require_root};

/// `lo`, which exists in every namespace and has a registered RX queue 0.
const LO: u32 = 1;
/// Tests load with `fallback_action = XDP_DROP` and no sockets, so a steered
/// frame comes back as DROP while a frame that is not ours comes back as PASS.
const STEERED: u32 = XDP_DROP;
const NOT_OURS: u32 = XDP_PASS;

const POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const OTHER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

fn test_config(fallback_action: u32) -> SteeringConfig {
    SteeringConfig {
        max_ifaces: 8,
        max_queues: 4,
        max_dst4: 64,
        max_ports: 64,
        fallback_action,
    }
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (checksum left 0: the program does not check it) + `l4`.
fn ipv4(ver_ihl: u8, flags_frag: u16, proto: u8, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    let hlen = usize::from(ver_ihl & 0x0f) * 4;
    let mut h = vec![0u8; hlen];
    h[0] = ver_ihl;
    h[2..4].copy_from_slice(&u16::try_from(hlen + l4.len()).unwrap().to_be_bytes());
    h[6..8].copy_from_slice(&flags_frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&dst.octets());
    h.extend_from_slice(l4);
    h
}

fn udp(dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(&[0, 0, 0xde, 0xad, 0xbe, 0xef]);
    u
}

fn tcp(dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t
}

fn udp_frame(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    eth(0x0800, &ipv4(0x45, 0, 17, dst, &udp(dport)))
}

fn tcp_frame(dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    eth(0x0800, &ipv4(0x45, 0x4000, 6, dst, &tcp(dport)))
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 10, 0, 0, 1]);
    a.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    a.extend_from_slice(&NODE.octets());
    eth(0x0806, &a)
}

fn ipv6_udp() -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(&udp(8472));
    eth(0x86dd, &h)
}

#[test]
fn keys_have_the_map_layouts() {
    let key = dst4_key(Ipv4Addr::new(10, 244, 1, 99), 24).unwrap();
    assert_eq!(&key[..4], &24u32.to_ne_bytes());
    assert_eq!(
        &key[4..],
        &[10, 244, 1, 0],
        "host bits cleared, network order"
    );
    assert_eq!(&dst4_key(NODE, 0).unwrap()[4..], &[0, 0, 0, 0]);
    assert_eq!(&dst4_key(NODE, 32).unwrap()[4..], &NODE.octets());
    assert!(dst4_key(NODE, 33).is_err());

    assert_eq!(port_key(17, 8472).unwrap(), [17, 0, 0x21, 0x18]);
    assert_eq!(port_key(6, 22).unwrap(), [6, 0, 0, 22]);
    assert!(port_key(1, 0).is_err());
}

#[test]
fn program_assembles_and_embeds_the_maps() {
    let fds = MapFds {
        ifaces: 11,
        xsks: 12,
        dst4: 13,
        ports: 14,
    };
    let insns = assemble(&fds, XDP_PASS).unwrap();
    eprintln!("steering program: {} instructions", insns.len());
    let map_loads: Vec<i32> = insns
        .iter()
        .filter(|i| i.code == 0x18)
        .map(|i| {
            assert_eq!(i.regs >> 4, crate::bpf::asm::BPF_PSEUDO_MAP_FD, "{i:?}");
            i.imm
        })
        .collect();
    assert_eq!(map_loads, [11, 13, 14, 12]);
    assert_eq!(insns.last(), Some(&Insn::exit()));
    // Every jump lands inside the program.
    for (at, i) in insns.iter().enumerate() {
        if i.code & 0x07 == 0x05 && !matches!(i.code & 0xf0, 0x80 | 0x90) {
            let target = at as i64 + 1 + i64::from(i.off);
            assert!((0..insns.len() as i64).contains(&target), "{at}: {i:?}");
        }
    }
}

#[test]
fn config_is_validated() {
    let err = SteeringProgram::load(&SteeringConfig {
        fallback_action: crate::bpf::XDP_REDIRECT,
        ..SteeringConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, BpfError::InvalidArgument { .. }), "{err}");
    let err = SteeringProgram::load(&SteeringConfig {
        max_ifaces: 1 << 20,
        max_queues: 1 << 20,
        ..SteeringConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
}

#[test]
fn verifier_accepts_the_default_program() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&SteeringConfig::default()).unwrap();
    let info = prog.info().unwrap();
    eprintln!(
        "kxdp_steer: {} insns assembled, {} after verifier rewrites, {} bytes JITed, id {}",
        prog.instruction_count(),
        info.xlated_insns,
        info.jited_bytes,
        info.id
    );
    assert_ne!(info.id, 0);
}

#[test]
fn steering_decisions() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&test_config(XDP_DROP)).unwrap();
    let run = |frame: &[u8]| prog.test_run(frame, LO, 0).unwrap();

    // No kxdp_ifaces entry: the kernel's, whatever it is.
    assert_eq!(run(&udp_frame(POD, 53)), NOT_OURS, "unknown interface");
    assert_eq!(run(&arp_request()), NOT_OURS, "unknown interface, ARP");

    // STEER_ALL: everything, ARP and IPv6 included.
    prog.set_iface(LO, SteerMode::All, 0).unwrap();
    for (name, frame) in [
        ("udp", udp_frame(OTHER_POD, 53)),
        ("arp", arp_request()),
        ("ipv6", ipv6_udp()),
        ("bare ethernet header", eth(0x0800, &[])),
    ] {
        assert_eq!(run(&frame), STEERED, "All mode: {name}");
    }

    prog.set_iface(LO, SteerMode::ByDestination, 0).unwrap();
    prog.add_dst4(POD_NET, 24, DstKind::All).unwrap();
    prog.add_dst4(NODE, 32, DstKind::PortsOnly).unwrap();
    prog.add_port(17, 8472).unwrap();
    prog.add_port(6, 30080).unwrap();

    let mf = 0x2000;
    let offset = 185; // 1480 bytes, in 8-byte units
    let udp_to_node = udp_frame(NODE, 8472);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("UDP to a pod in a DST_ALL /24", udp_frame(POD, 53), STEERED),
        ("TCP to a pod in a DST_ALL /24", tcp_frame(POD, 22), STEERED),
        (
            "fragment to a pod in a DST_ALL /24",
            eth(0x0800, &ipv4(0x45, mf, 17, POD, &udp(53))),
            STEERED,
        ),
        (
            "UDP to a prefix we do not own",
            udp_frame(OTHER_POD, 53),
            NOT_OURS,
        ),
        ("VXLAN (UDP 8472) to the node", udp_to_node.clone(), STEERED),
        (
            "NodePort (TCP 30080) to the node",
            tcp_frame(NODE, 30080),
            STEERED,
        ),
        ("SSH (TCP 22) to the node", tcp_frame(NODE, 22), NOT_OURS),
        (
            "UDP 30080 to the node (only TCP registered)",
            udp_frame(NODE, 30080),
            NOT_OURS,
        ),
        (
            "TCP 8472 to the node (only UDP registered)",
            tcp_frame(NODE, 8472),
            NOT_OURS,
        ),
        (
            "first fragment (MF) of UDP 8472 to the node",
            eth(0x0800, &ipv4(0x45, mf, 17, NODE, &udp(8472))),
            NOT_OURS,
        ),
        (
            "later fragment of UDP 8472 to the node",
            eth(0x0800, &ipv4(0x45, offset, 17, NODE, &udp(8472))),
            NOT_OURS,
        ),
        (
            "IHL 6 (options) UDP 8472 to the node",
            eth(0x0800, &ipv4(0x46, 0, 17, NODE, &udp(8472))),
            NOT_OURS,
        ),
        (
            "ICMP to the node",
            eth(0x0800, &ipv4(0x45, 0, 1, NODE, &[8, 0, 0, 0, 0, 0, 0, 0])),
            NOT_OURS,
        ),
        ("ARP for the node", arp_request(), NOT_OURS),
        ("IPv6 (not steered yet)", ipv6_udp(), NOT_OURS),
        (
            "VLAN-tagged",
            eth(0x8100, &[&[0, 100][..], &udp_frame(POD, 53)[12..]].concat()),
            NOT_OURS,
        ),
        (
            "bare Ethernet header (14 bytes)",
            eth(0x0800, &[]),
            NOT_OURS,
        ),
        (
            "33 bytes of IPv4 to a pod",
            udp_frame(POD, 53)[..33].to_vec(),
            NOT_OURS,
        ),
        (
            "37 bytes of UDP 8472 to the node",
            udp_to_node[..37].to_vec(),
            NOT_OURS,
        ),
        (
            "38 bytes of UDP 8472 to the node",
            udp_to_node[..38].to_vec(),
            STEERED,
        ),
    ];
    for (name, frame, want) in &cases {
        assert_eq!(run(frame), *want, "{name}");
    }

    // The kernel refuses to test-run frames shorter than an Ethernet header,
    // so 0 and 13 bytes never reach the program (real NICs don't deliver them).
    for len in [0, 13] {
        let err = prog.test_run(&udp_to_node[..len], LO, 0).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EINVAL), "{len} bytes: {err}");
    }

    // Removing entries hands traffic back to the kernel.
    prog.remove_port(17, 8472).unwrap();
    assert_eq!(run(&udp_to_node), NOT_OURS, "port removed");
    prog.remove_port(17, 8472).unwrap(); // absent: fine
    prog.remove_dst4(POD_NET, 24).unwrap();
    assert_eq!(run(&udp_frame(POD, 53)), NOT_OURS, "prefix removed");
    prog.remove_iface(LO).unwrap();
    assert_eq!(run(&tcp_frame(NODE, 30080)), NOT_OURS, "interface removed");
}

#[test]
fn longest_prefix_wins() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&test_config(XDP_DROP)).unwrap();
    prog.set_iface(LO, SteerMode::ByDestination, 0).unwrap();
    // The node's address inside a pod-style range: the /32 PortsOnly entry
    // must shadow the /16 All entry.
    prog.add_dst4(Ipv4Addr::new(192, 168, 0, 0), 16, DstKind::All)
        .unwrap();
    prog.add_dst4(NODE, 32, DstKind::PortsOnly).unwrap();
    assert_eq!(
        prog.test_run(&tcp_frame(NODE, 22), LO, 0).unwrap(),
        NOT_OURS
    );
    assert_eq!(
        prog.test_run(&tcp_frame(Ipv4Addr::new(192, 168, 1, 11), 22), LO, 0)
            .unwrap(),
        STEERED
    );
}

#[test]
fn default_fallback_passes_when_no_socket() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&test_config(XDP_PASS)).unwrap();
    prog.set_iface(LO, SteerMode::All, 0).unwrap();
    assert_eq!(prog.test_run(&udp_frame(POD, 53), LO, 0).unwrap(), XDP_PASS);
}

#[test]
fn map_arguments_are_checked() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&test_config(XDP_PASS)).unwrap();
    // 8 interfaces * 4 queues = 32 slots.
    assert!(prog.set_iface(LO, SteerMode::All, 32).is_err());
    assert!(prog.clear_socket(32).is_err());
    prog.clear_socket(31).unwrap(); // empty slot: fine
    let not_a_socket = std::fs::File::open("/dev/null").unwrap();
    let err = prog.set_socket(0, not_a_socket.as_fd()).unwrap_err();
    assert!(err.to_string().contains("kxdp_xsks"), "{err}");
    assert!(err.errno().is_some(), "{err}");
    assert!(prog.add_dst4(NODE, 33, DstKind::All).is_err());
    assert!(prog.add_port(1, 0).is_err());
    // kxdp_ifaces holds 8 interfaces.
    for ifindex in 100..108 {
        prog.set_iface(ifindex, SteerMode::All, 0).unwrap();
    }
    let err = prog.set_iface(108, SteerMode::All, 0).unwrap_err();
    assert_eq!(err.errno(), Some(libc::E2BIG), "{err}");
}

#[test]
fn attach_to_veth_native_generic_and_auto() {
    if !require_root() {
        return;
    }
    let prog = SteeringProgram::load(&test_config(XDP_PASS)).unwrap();
    let id = prog.info().unwrap().id;
    let ns = TestNetns::new();
    ns.ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    ns.ip(&["link", "set", "veth0", "up"]);
    ns.ip(&["link", "set", "veth1", "up"]);
    let veth0 = ns.ifindex("veth0");
    let show = || ns.ip(&["-d", "link", "show", "dev", "veth0"]);

    for (asked, used, flag) in [
        (XdpMode::Native, XdpMode::Native, " xdp "),
        (XdpMode::Generic, XdpMode::Generic, " xdpgeneric "),
        (XdpMode::Auto, XdpMode::Native, " xdp "),
    ] {
        let att = ns.run_inside(|| prog.attach(veth0, asked)).unwrap();
        assert_eq!(att.mode(), used);
        assert_eq!(att.ifindex(), veth0);
        let out = show();
        assert!(
            out.contains(&format!("prog/xdp id {id} ")),
            "{asked}: {out}"
        );
        assert!(out.contains(flag), "{asked}: expected {flag:?} in {out}");

        // A second program on the same interface is refused, not swapped in.
        let err = ns.run_inside(|| prog.attach(veth0, used)).unwrap_err();
        assert!(matches!(err, BpfError::Attach { .. }), "{err}");
        assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");

        drop(att);
        let out = show();
        assert!(
            !out.contains("prog/xdp"),
            "{asked}: still attached after drop: {out}"
        );
    }

    // The ifindex is looked up in the attaching thread's namespace; an
    // unknown one is EINVAL (bpf_xdp_link_attach), not ENODEV.
    let err = prog.attach(9999, XdpMode::Native).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
}

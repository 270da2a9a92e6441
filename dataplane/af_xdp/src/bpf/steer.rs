//! The steering XDP program: frames the dataplane owns go to its AF_XDP
//! sockets, everything else passes to the kernel, so the node's own traffic
//! (SSH, kubelet, the API server) keeps working while the engine runs.
//!
//! One program, attached to every interface we serve, and four maps:
//! - `kxdp_ifaces` (hash) ifindex → `{u32 mode; u32 xsk_base}`. No entry: pass.
//!   [`SteerMode::All`] steers every frame (pod veths: the engine is the pod's
//!   gateway and answers its ARP). [`SteerMode::ByDestination`] (uplink)
//!   steers IPv4 by destination, below.
//! - `kxdp_xsks` (XSKMAP) `xsk_base + rx_queue_index` → socket. Redirect uses
//!   the fallback action as flags, so an empty slot passes to the kernel
//!   instead of dropping.
//! - `kxdp_dst4` (LPM trie) `{u32 prefixlen; u8 addr[4]}` → [`DstKind`]:
//!   `All` (pod CIDRs, service VIPs) or `PortsOnly` (the node's own address:
//!   only the (protocol, port) pairs in `kxdp_ports`, i.e. VXLAN 8472 and
//!   NodePorts; everything else to that address is the node's).
//! - `kxdp_ports` (hash) `{u8 proto; u8 0; be16 port}` → 1.
//!
//! `bpf/steer.bpf.c` is the same program in C, for reading; the assembly
//! below is what gets loaded. Not yet handled: IPv6 (passes), IPv4 options or
//! fragments to a `PortsOnly` address (pass: the kernel reassembles).

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::asm::{AluOp, Asm, AsmError, Cond, Insn, Reg, Size};
use super::link::{XdpAttachment, XdpMode, attach_xdp};
use super::sys::{BPF_F_NO_PREALLOC, Map, MapSpec, MapType, ProgInfo, Program, UpdateFlags};
use super::test_run::{TestRun, XdpMd};
use super::{BpfError, XDP_PASS, XDP_TX};

/// Helper ids from `enum bpf_func_id`.
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// Field offsets in `struct xdp_md`.
mod xdp_md {
    pub const DATA: i16 = 0;
    pub const DATA_END: i16 = 4;
    pub const INGRESS_IFINDEX: i16 = 12;
    pub const RX_QUEUE_INDEX: i16 = 16;
}

/// Offsets into an untagged Ethernet + IPv4 (IHL 5) + TCP/UDP frame.
mod frame {
    pub const ETHERTYPE: i16 = 12;
    pub const IP_VER_IHL: i16 = 14;
    pub const IP_FRAG: i16 = 14 + 6;
    pub const IP_PROTO: i16 = 14 + 9;
    pub const IP_DADDR: i16 = 14 + 16;
    pub const L4_DPORT: i16 = 14 + 20 + 2;
    /// Ethernet + minimal IPv4 header.
    pub const IP_END: i32 = 14 + 20;
    /// ... + the four port bytes of TCP/UDP.
    pub const PORTS_END: i32 = 14 + 20 + 4;
}

/// Stack slots (offsets from R10) for map keys.
mod stack {
    /// u32 ifindex key of `kxdp_ifaces`.
    pub const IFINDEX: i16 = -4;
    /// LPM key: u32 prefixlen here, the address 4 bytes above.
    pub const LPM: i16 = -16;
    /// `kxdp_ports` key: proto, pad, be16 port.
    pub const PORT: i16 = -20;
}

/// `kxdp_ifaces` value `mode`.
const STEER_ALL: u32 = 1;
const STEER_BY_DST: u32 = 2;
/// `kxdp_dst4` values.
const DST_ALL: u32 = 1;
const DST_PORTS: u32 = 2;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Sizes of the steering maps and the redirect fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteeringConfig {
    /// Interfaces the program can serve (`kxdp_ifaces` entries).
    pub max_ifaces: u32,
    /// RX queues per interface; the XSKMAP has `max_ifaces * max_queues` slots.
    pub max_queues: u32,
    /// IPv4 prefixes in `kxdp_dst4`.
    pub max_dst4: u32,
    /// (protocol, port) pairs in `kxdp_ports`.
    pub max_ports: u32,
    /// What a steered frame gets when its XSKMAP slot is empty:
    /// [`XDP_PASS`] (default, so a not-yet-bound socket never blackholes a
    /// queue) or another action ≤ [`XDP_TX`]. Tests use `XDP_DROP` to tell
    /// "steered" from "not ours" without a socket.
    pub fallback_action: u32,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            max_ifaces: 256,
            max_queues: 64,
            max_dst4: 65536,
            max_ports: 32768,
            fallback_action: XDP_PASS,
        }
    }
}

/// How an interface's frames are steered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteerMode {
    /// Every frame goes to the socket (pod-facing veths).
    All,
    /// IPv4 frames whose destination is in `kxdp_dst4` go to the socket,
    /// the rest pass (the uplink).
    ByDestination,
}

/// What a `kxdp_dst4` prefix steers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstKind {
    /// Every IPv4 packet to the prefix (pod CIDRs, service VIPs).
    All,
    /// Only TCP/UDP to the ports in `kxdp_ports` (the node's own address).
    PortsOnly,
}

/// The loaded steering program and its maps. Attach it with
/// [`attach`](SteeringProgram::attach); the attachments stay valid (and keep
/// the program and maps alive) even if this value is dropped first.
#[derive(Debug)]
pub struct SteeringProgram {
    prog: Program,
    ifaces: Map,
    xsks: Map,
    dst4: Map,
    ports: Map,
    xsk_slots: u32,
    insn_count: usize,
}

impl SteeringProgram {
    /// Creates the maps, assembles the program against them and loads it.
    pub fn load(cfg: &SteeringConfig) -> Result<Self, BpfError> {
        let invalid = |why: String| BpfError::InvalidArgument {
            what: "steering config",
            why,
        };
        if cfg.max_ifaces == 0 || cfg.max_queues == 0 || cfg.max_dst4 == 0 || cfg.max_ports == 0 {
            return Err(invalid(format!("every map size must be non-zero: {cfg:?}")));
        }
        if cfg.fallback_action > XDP_TX {
            return Err(invalid(format!(
                "fallback_action {} is not an XDP action the redirect helper accepts (0..=3)",
                cfg.fallback_action
            )));
        }
        let xsk_slots = cfg.max_ifaces.checked_mul(cfg.max_queues).ok_or_else(|| {
            invalid(format!(
                "max_ifaces * max_queues overflows: {} * {}",
                cfg.max_ifaces, cfg.max_queues
            ))
        })?;

        let ifaces = Map::create(&MapSpec {
            name: "kxdp_ifaces",
            map_type: MapType::Hash,
            key_size: 4,
            value_size: 8,
            max_entries: cfg.max_ifaces,
            flags: 0,
        })?;
        let xsks = Map::create(&MapSpec {
            name: "kxdp_xsks",
            map_type: MapType::XskMap,
            key_size: 4,
            value_size: 4,
            max_entries: xsk_slots,
            flags: 0,
        })?;
        let dst4 = Map::create(&MapSpec {
            name: "kxdp_dst4",
            map_type: MapType::LpmTrie,
            key_size: 8,
            value_size: 4,
            max_entries: cfg.max_dst4,
            flags: BPF_F_NO_PREALLOC,
        })?;
        let ports = Map::create(&MapSpec {
            name: "kxdp_ports",
            map_type: MapType::Hash,
            key_size: 4,
            value_size: 4,
            max_entries: cfg.max_ports,
            flags: 0,
        })?;

        let insns = assemble(
            &MapFds {
                ifaces: ifaces.as_fd().as_raw_fd(),
                xsks: xsks.as_fd().as_raw_fd(),
                dst4: dst4.as_fd().as_raw_fd(),
                ports: ports.as_fd().as_raw_fd(),
            },
            cfg.fallback_action,
        )?;
        let prog = Program::load_xdp("kxdp_steer", &insns, 0)?;
        Ok(SteeringProgram {
            prog,
            ifaces,
            xsks,
            dst4,
            ports,
            xsk_slots,
            insn_count: insns.len(),
        })
    }

    /// Attaches the program to `ifindex` (in the calling thread's network
    /// namespace). One program serves any number of interfaces.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpAttachment, BpfError> {
        attach_xdp(self.prog.as_fd(), ifindex, mode)
    }

    /// Steers `ifindex`'s frames per `steer`, to XSKMAP slots
    /// `xsk_base + rx_queue_index`.
    pub fn set_iface(&self, ifindex: u32, steer: SteerMode, xsk_base: u32) -> Result<(), BpfError> {
        if xsk_base >= self.xsk_slots {
            return Err(BpfError::InvalidArgument {
                what: "xsk_base",
                why: format!("{xsk_base} is past the XSKMAP's {} slots", self.xsk_slots),
            });
        }
        let mode = match steer {
            SteerMode::All => STEER_ALL,
            SteerMode::ByDestination => STEER_BY_DST,
        };
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&mode.to_ne_bytes());
        value[4..].copy_from_slice(&xsk_base.to_ne_bytes());
        self.ifaces
            .update(&ifindex.to_ne_bytes(), &value, UpdateFlags::Any)
    }

    /// Stops steering `ifindex` (its frames pass). Absent is not an error.
    pub fn remove_iface(&self, ifindex: u32) -> Result<(), BpfError> {
        self.ifaces.delete(&ifindex.to_ne_bytes()).map(drop)
    }

    /// Puts the AF_XDP socket `xsk_fd` in XSKMAP slot `key`. The map holds
    /// its own reference to the socket until [`clear_socket`](Self::clear_socket).
    pub fn set_socket(&self, key: u32, xsk_fd: BorrowedFd<'_>) -> Result<(), BpfError> {
        self.check_slot(key)?;
        let fd = xsk_fd.as_raw_fd() as u32;
        self.xsks
            .update(&key.to_ne_bytes(), &fd.to_ne_bytes(), UpdateFlags::Any)
    }

    /// Empties XSKMAP slot `key`; steered frames for it then get the
    /// fallback action. An empty slot is not an error.
    pub fn clear_socket(&self, key: u32) -> Result<(), BpfError> {
        self.check_slot(key)?;
        self.xsks.delete(&key.to_ne_bytes()).map(drop)
    }

    /// Steers IPv4 traffic to `net/prefix_len` per `kind` (host bits of `net`
    /// are ignored). Replaces an existing entry for the same prefix.
    pub fn add_dst4(&self, net: Ipv4Addr, prefix_len: u8, kind: DstKind) -> Result<(), BpfError> {
        let value = match kind {
            DstKind::All => DST_ALL,
            DstKind::PortsOnly => DST_PORTS,
        };
        self.dst4.update(
            &dst4_key(net, prefix_len)?,
            &value.to_ne_bytes(),
            UpdateFlags::Any,
        )
    }

    /// Removes the `net/prefix_len` entry. Absent is not an error.
    pub fn remove_dst4(&self, net: Ipv4Addr, prefix_len: u8) -> Result<(), BpfError> {
        self.dst4.delete(&dst4_key(net, prefix_len)?).map(drop)
    }

    /// Steers `proto` (TCP 6 or UDP 17) to destination `port` on
    /// [`DstKind::PortsOnly`] addresses.
    pub fn add_port(&self, proto: u8, port: u16) -> Result<(), BpfError> {
        self.ports.update(
            &port_key(proto, port)?,
            &1u32.to_ne_bytes(),
            UpdateFlags::Any,
        )
    }

    /// Removes a (protocol, port) pair. Absent is not an error.
    pub fn remove_port(&self, proto: u8, port: u16) -> Result<(), BpfError> {
        self.ports.delete(&port_key(proto, port)?).map(drop)
    }

    /// Runs the program over `frame` as if it arrived on `ingress_ifindex`
    /// queue `rx_queue` (which must exist in the caller's network namespace)
    /// and returns its XDP action. Frames shorter than 14 bytes are refused
    /// by the kernel (EINVAL).
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        rx_queue: u32,
    ) -> Result<u32, BpfError> {
        let out = self.prog.test_run(TestRun {
            data_in: frame,
            ctx_in: Some(XdpMd::for_frame(frame.len(), ingress_ifindex, rx_queue)),
            ..Default::default()
        })?;
        Ok(out.retval)
    }

    /// The loaded program, e.g. for a [`Program::test_run`] with other
    /// options than [`test_run`](Self::test_run) uses.
    pub fn program(&self) -> &Program {
        &self.prog
    }

    /// Kernel id, tag and sizes of the loaded program.
    pub fn info(&self) -> Result<ProgInfo, BpfError> {
        self.prog.info()
    }

    /// Instructions assembled (a `lddw` counts as two).
    pub fn instruction_count(&self) -> usize {
        self.insn_count
    }

    fn check_slot(&self, key: u32) -> Result<(), BpfError> {
        if key < self.xsk_slots {
            Ok(())
        } else {
            Err(BpfError::InvalidArgument {
                what: "XSKMAP slot",
                why: format!("{key} is past the map's {} slots", self.xsk_slots),
            })
        }
    }
}

/// `kxdp_dst4` key: u32 prefix length (host order), then the address in
/// network order with its host bits cleared.
fn dst4_key(net: Ipv4Addr, prefix_len: u8) -> Result<[u8; 8], BpfError> {
    if prefix_len > 32 {
        return Err(BpfError::InvalidArgument {
            what: "IPv4 prefix length",
            why: format!("{net}/{prefix_len}: must be 0..=32"),
        });
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    let addr = u32::from(net) & mask;
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&u32::from(prefix_len).to_ne_bytes());
    key[4..].copy_from_slice(&addr.to_be_bytes());
    Ok(key)
}

/// `kxdp_ports` key: protocol, a zero pad byte, the port in network order.
fn port_key(proto: u8, port: u16) -> Result<[u8; 4], BpfError> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(BpfError::InvalidArgument {
            what: "steered protocol",
            why: format!("{proto}: only TCP (6) and UDP (17) carry ports we steer by"),
        });
    }
    let [hi, lo] = port.to_be_bytes();
    Ok([proto, 0, hi, lo])
}

/// Map fds to embed in the program's `lddw` instructions.
struct MapFds {
    ifaces: i32,
    xsks: i32,
    dst4: i32,
    ports: i32,
}

/// Assembles the steering program; see `bpf/steer.bpf.c` for the C reading.
///
/// Register use: R6 = ctx, R7 = data, R8 = data_end, R9 = the interface's
/// `kxdp_ifaces` value. All four are callee-saved, so they survive the map
/// lookups; R1–R5 are clobbered by every call.
fn assemble(maps: &MapFds, fallback_action: u32) -> Result<Vec<Insn>, AsmError> {
    use Reg::{R0, R1, R2, R3, R6, R7, R8, R9, R10};
    // Constants compared against packet bytes loaded as native-endian
    // integers: the wire bytes reinterpreted, so this holds on any host.
    let eth_p_ip = i32::from(u16::from_ne_bytes([0x08, 0x00]));
    // MF flag and 13-bit fragment offset of the IPv4 flags/offset field.
    let ip_frag_mask = i32::from(u16::from_ne_bytes([0x3f, 0xff]));
    // Version 4, IHL 5 (no options).
    let ip_v4_ihl5 = 0x45;

    let mut a = Asm::new();
    let pass = a.label();
    let steer = a.label();
    let has_ports = a.label();

    // Which interface is this, and do we serve it?
    a.emit(Insn::mov64_reg(R6, R1))
        .emit(Insn::ldx(Size::W, R2, R6, xdp_md::INGRESS_IFINDEX))
        .emit(Insn::stx(Size::W, R10, stack::IFINDEX, R2))
        .emit_all(Insn::ld_map_fd(R1, maps.ifaces))
        .emit(Insn::mov64_reg(R2, R10))
        .emit(Insn::alu64_imm(AluOp::Add, R2, stack::IFINDEX.into()))
        .emit(Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM))
        .jmp_imm_to(Cond::Eq, R0, 0, pass)
        .emit(Insn::mov64_reg(R9, R0))
        .emit(Insn::ldx(Size::W, R1, R9, 0))
        .jmp_imm_to(Cond::Eq, R1, STEER_ALL as i32, steer)
        .jmp_imm_to(Cond::Ne, R1, STEER_BY_DST as i32, pass);

    // By destination: untagged IPv4 only. IPv6 is not steered yet, and ARP on
    // the uplink belongs to the kernel (it owns the node's addresses).
    a.emit(Insn::ldx(Size::W, R7, R6, xdp_md::DATA))
        .emit(Insn::ldx(Size::W, R8, R6, xdp_md::DATA_END))
        .emit(Insn::mov64_reg(R1, R7))
        .emit(Insn::alu64_imm(AluOp::Add, R1, frame::IP_END))
        // This bounds check is what lets the verifier accept the loads below.
        .jmp_reg_to(Cond::Gt, R1, R8, pass)
        .emit(Insn::ldx(Size::H, R1, R7, frame::ETHERTYPE))
        .jmp_imm_to(Cond::Ne, R1, eth_p_ip, pass)
        // LPM key {32, daddr}.
        .emit(Insn::ldx(Size::W, R1, R7, frame::IP_DADDR))
        .emit(Insn::stx(Size::W, R10, stack::LPM + 4, R1))
        .emit(Insn::st(Size::W, R10, stack::LPM, 32))
        .emit_all(Insn::ld_map_fd(R1, maps.dst4))
        .emit(Insn::mov64_reg(R2, R10))
        .emit(Insn::alu64_imm(AluOp::Add, R2, stack::LPM.into()))
        .emit(Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM))
        .jmp_imm_to(Cond::Eq, R0, 0, pass)
        .emit(Insn::ldx(Size::W, R1, R0, 0))
        .jmp_imm_to(Cond::Eq, R1, DST_ALL as i32, steer)
        .jmp_imm_to(Cond::Ne, R1, DST_PORTS as i32, pass);

    // Ports only: the ports must sit right after a 20-byte header in an
    // unfragmented datagram; anything else is left to the kernel.
    a.emit(Insn::ldx(Size::B, R1, R7, frame::IP_VER_IHL))
        .jmp_imm_to(Cond::Ne, R1, ip_v4_ihl5, pass)
        .emit(Insn::ldx(Size::H, R1, R7, frame::IP_FRAG))
        .emit(Insn::alu64_imm(AluOp::And, R1, ip_frag_mask))
        .jmp_imm_to(Cond::Ne, R1, 0, pass)
        .emit(Insn::ldx(Size::B, R1, R7, frame::IP_PROTO))
        .jmp_imm_to(Cond::Eq, R1, IPPROTO_TCP.into(), has_ports)
        .jmp_imm_to(Cond::Ne, R1, IPPROTO_UDP.into(), pass)
        .bind(has_ports)
        .emit(Insn::mov64_reg(R2, R7))
        .emit(Insn::alu64_imm(AluOp::Add, R2, frame::PORTS_END))
        .jmp_reg_to(Cond::Gt, R2, R8, pass)
        // Key {proto, 0, dport}; R1 still holds proto.
        .emit(Insn::ldx(Size::H, R2, R7, frame::L4_DPORT))
        .emit(Insn::stx(Size::B, R10, stack::PORT, R1))
        .emit(Insn::st(Size::B, R10, stack::PORT + 1, 0))
        .emit(Insn::stx(Size::H, R10, stack::PORT + 2, R2))
        .emit_all(Insn::ld_map_fd(R1, maps.ports))
        .emit(Insn::mov64_reg(R2, R10))
        .emit(Insn::alu64_imm(AluOp::Add, R2, stack::PORT.into()))
        .emit(Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM))
        .jmp_imm_to(Cond::Eq, R0, 0, pass);

    // return bpf_redirect_map(&kxdp_xsks, xsk_base + rx_queue_index, fallback);
    // A slot past the map or without a socket yields the fallback action.
    a.bind(steer)
        .emit(Insn::ldx(Size::W, R2, R9, 4))
        .emit(Insn::ldx(Size::W, R1, R6, xdp_md::RX_QUEUE_INDEX))
        .emit(Insn::alu32_reg(AluOp::Add, R2, R1))
        .emit_all(Insn::ld_map_fd(R1, maps.xsks))
        // fallback_action ≤ XDP_TX, checked by the caller.
        .emit(Insn::mov64_imm(R3, fallback_action as i32))
        .emit(Insn::call(BPF_FUNC_REDIRECT_MAP))
        .emit(Insn::exit());

    a.bind(pass)
        .emit(Insn::mov64_imm(R0, XDP_PASS as i32))
        .emit(Insn::exit());
    a.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * kxdp steering program -- DOCUMENTATION ONLY.
 *
 * This file is never compiled or loaded. The program that runs is assembled
 * instruction by instruction in Rust (dataplane/af_xdp/src/bpf/steer.rs,
 * fn assemble) and loaded with bpf(BPF_PROG_LOAD); kxdp needs no clang and no
 * libbpf. This C is what that assembly means: what clang -O2 -target bpf
 * would compile to the same logic. Change both together.
 *
 * Purpose: only traffic the dataplane owns goes to its AF_XDP sockets;
 * everything else is XDP_PASSed to the kernel, so the node's own traffic
 * (SSH, kubelet, the API server) keeps working while the engine runs.
 *
 * The Rust loader differs from this file in two ways: map sizes come from
 * SteeringConfig at load time, and FALLBACK (the action for a steered frame
 * whose XSKMAP slot is empty) is SteeringConfig::fallback_action, XDP_PASS
 * unless a test asks for XDP_DROP.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FALLBACK XDP_PASS

/* kxdp_ifaces value mode */
#define STEER_ALL 1    /* every frame: pod-facing veths (we are the pod's gateway, we answer ARP) */
#define STEER_BY_DST 2 /* uplink: decide by IPv4 destination */

/* kxdp_dst4 value */
#define DST_ALL 1   /* every IPv4 packet to the prefix: pod CIDRs, service VIPs */
#define DST_PORTS 2 /* only (proto, dport) in kxdp_ports: the node's own IP (VXLAN, NodePorts) */

struct iface {
	__u32 mode;     /* STEER_ALL or STEER_BY_DST */
	__u32 xsk_base; /* this interface's first kxdp_xsks slot */
};

struct dst4_key {
	__u32 prefixlen; /* always 32 in lookups */
	__u8 addr[4];    /* network byte order */
};

struct port_key {
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;   /* 0 */
	__be16 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* ifindex */
	__type(value, struct iface);
} kxdp_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256 * 64); /* max_ifaces * max_queues */
	__type(key, __u32);            /* xsk_base + rx_queue_index */
	__type(value, __u32);          /* AF_XDP socket fd (from userspace) */
} kxdp_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct dst4_key);
	__type(value, __u32); /* DST_ALL or DST_PORTS */
} kxdp_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct port_key);
	__type(value, __u32); /* 1 */
} kxdp_ports SEC(".maps");

SEC("xdp")
int kxdp_steer(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct iface *iface = bpf_map_lookup_elem(&kxdp_ifaces, &ifindex);
	if (!iface)
		return XDP_PASS; /* not an interface we serve */

	if (iface->mode == STEER_ALL)
		goto steer;
	if (iface->mode != STEER_BY_DST)
		return XDP_PASS;

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end) /* 14 + 20 bytes */
		return XDP_PASS;

	/* IPv4 only: IPv6 steering is not implemented yet, and ARP (and
	 * anything else) on the uplink stays with the kernel, which owns the
	 * node's addresses. VLAN-tagged frames pass too. */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	struct dst4_key key = { .prefixlen = 32 };
	__builtin_memcpy(key.addr, &ip->daddr, 4);
	__u32 *kind = bpf_map_lookup_elem(&kxdp_dst4, &key);
	if (!kind)
		return XDP_PASS;
	if (*kind == DST_ALL)
		goto steer;
	if (*kind != DST_PORTS)
		return XDP_PASS;

	/* The node's own address: steer only registered (proto, dport).
	 * Options (IHL != 5) and fragments (MF or an offset) pass: the kernel
	 * reassembles, and the ports would not be where we look. The compare
	 * against 0x45 also checks version 4. */
	if (*(__u8 *)ip != 0x45)
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(0x3fff)) /* IP_MF | IP_OFFSET */
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__be16 *ports = (void *)(ip + 1); /* [0] sport, [1] dport */
	if ((void *)(ports + 2) > data_end) /* 14 + 20 + 4 bytes */
		return XDP_PASS;

	struct port_key pk = { .proto = ip->protocol, .pad = 0, .port = ports[1] };
	if (!bpf_map_lookup_elem(&kxdp_ports, &pk))
		return XDP_PASS;

steer:
	/* A key past the map or a slot without a socket returns FALLBACK
	 * (the low bits of flags), so a not-yet-bound queue is not blackholed. */
	return bpf_redirect_map(&kxdp_xsks, iface->xsk_base + ctx->rx_queue_index, FALLBACK);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

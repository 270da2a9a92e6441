#!/usr/bin/python3
"""Seed frames for the pipeline_nat fuzz target (see README.md): one byte of port/clock
selection (port = low 2 bits: 0 uplink, 1 pod A, 2 pod B, 3 host), then an Ethernet frame to
the node's router MAC. Run with Debian's python3 (scapy)."""
from scapy.all import Ether, IP, UDP, TCP, ICMP, raw
import os

R = "02:ee:00:00:00:01"
OUT = os.path.join(os.path.dirname(__file__), "pipeline_nat")
os.makedirs(OUT, exist_ok=True)
frames = {
    # pod A -> ClusterIP (TCP SYN, UDP)
    "pod_clusterip_tcp": (1, IP(src="10.244.1.2", dst="10.96.0.10") / TCP(sport=40000, dport=80, flags="S")),
    "pod_clusterip_udp": (1, IP(src="10.244.1.2", dst="10.96.0.10") / UDP(sport=40001, dport=80) / b"q"),
    # outside -> NodePort (source NAT), LB IP (eTP=Local)
    "outside_nodeport": (0, IP(src="198.51.100.9", dst="192.168.1.10") / TCP(sport=5555, dport=30080, flags="S")),
    "outside_lb": (0, IP(src="198.51.100.9", dst="203.0.113.7") / UDP(sport=53, dport=80) / b"q"),
    # replies to a node port from a backend, from outside (masquerade)
    "backend_to_nodeport": (2, IP(src="10.244.1.3", dst="192.168.1.10") / TCP(sport=8080, dport=61003, flags="SA")),
    "outside_to_nodeport_range": (0, IP(src="198.51.100.9", dst="192.168.1.10") / UDP(sport=443, dport=61007) / b"a"),
    # pod leaving the cluster (masquerade), hairpin
    "pod_masquerade": (1, IP(src="10.244.1.2", dst="198.51.100.9") / TCP(sport=41000, dport=443, flags="S")),
    "pod_hairpin": (1, IP(src="10.244.1.2", dst="10.96.0.10") / UDP(sport=40002, dport=80) / b"h"),
    # an ICMP error quoting a translated packet
    "icmp_error": (2, IP(src="10.244.1.3", dst="192.168.1.10") / ICMP(type=3, code=3)
                   / IP(src="192.168.1.10", dst="10.244.1.3") / UDP(sport=61001, dport=8080)),
}
for name, (port, pkt) in frames.items():
    f = raw(Ether(dst=R, src="02:00:00:00:00:99") / pkt)
    with open(os.path.join(OUT, name), "wb") as out:
        out.write(bytes([port]) + f)
print(f"{len(frames)} seeds in {OUT}")

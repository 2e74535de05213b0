//! Types shared by the XDP programs and the userspace loader, and the identity hash
//! shared by the userspace planes.
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so the kernel, the eBPF
//! program and userspace agree byte for byte. Addresses and ports are kept exactly as they
//! appear on the wire (network byte order) so the data path never swaps bytes; an IPv4
//! address uses word 0 of a `[u32; 4]` and leaves the rest zero.
#![no_std]

/// Address family tags used in keys (the values of `AF_INET`/`AF_INET6` on Linux, which
/// `bpf_fib_lookup` also expects).
pub const FAMILY_V4: u8 = 2;
pub const FAMILY_V6: u8 = 10;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_ICMPV6: u8 = 58;

/// A Maglev slot that holds no backend (the VIP has none).
pub const NO_BACKEND: u32 = u32::MAX;

/// VIP forwarding modes (`VipMeta::mode`).
pub const MODE_TUNNEL: u32 = 0;
pub const MODE_NAT: u32 = 1;
/// Direct routing (LVS-DR): the frame goes to the backend's MAC, the IP packet untouched.
pub const MODE_DR: u32 = 2;

/// `Backend::flags`: set while the backend may receive traffic.
pub const BACKEND_ACTIVE: u32 = 1;

/// Default and upper bound of a VIP's Maglev table size (a prime).
pub const DEFAULT_RING_SIZE: u32 = 65537;

/// Key of the `VIPS` map: (address, port, protocol). Port 0 matches every port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    pub addr: [u32; 4],
    /// Network byte order; 0 = any port.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of the `VIPS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipMeta {
    /// Index into the per-VIP counters.
    pub index: u32,
    /// `MODE_TUNNEL`, `MODE_NAT` or `MODE_DR`.
    pub mode: u32,
    /// First slot of this VIP's Maglev table in the shared `MAGLEV` array.
    pub ring_base: u32,
    /// Number of slots (a prime).
    pub ring_size: u32,
}

/// Key of the `VIP_ADDRS` map: every address that carries at least one VIP. It lets the
/// program tell "traffic for a VIP address it cannot forward" (fragments, truncated L4)
/// from traffic that is simply not ours.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of the `BACKENDS` array, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    pub addr: [u32; 4],
    /// NAT mode: destination port to rewrite to (network order); 0 keeps the client's.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
    /// `BACKEND_ACTIVE` or 0.
    pub flags: u32,
    /// Bumped each time the id is given to a new backend, so a connection-table entry that
    /// names a reused id is recognised as stale.
    pub generation: u32,
}

/// A flow's 5-tuple as seen on the wire; key of `CONNTRACK` and `NAT_REVERSE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of `CONNTRACK`: the backend a flow is pinned to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    pub backend: u32,
    pub generation: u32,
}

/// Value of `NAT_REVERSE`: what a reply's source must be rewritten back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatReverse {
    pub vip_addr: [u32; 4],
    /// Network order.
    pub vip_port: u16,
    pub _pad: [u8; 2],
}

/// Per-VIP and per-backend per-CPU counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// Device-wide settings, slot 0 of the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Outer source address of IPIP packets (network order).
    pub tunnel_src_v4: u32,
    pub _pad: u32,
    /// Outer source address of IP6IP6 packets.
    pub tunnel_src_v6: [u32; 4],
}

/// Global counters, indexed by `Counter as u32` in the `GLOBAL` per-CPU array. The ones
/// named `Drop*` are every reason the program drops a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Sent on its way after encapsulation or NAT (`XDP_TX`/`XDP_REDIRECT`).
    Forwarded = 0,
    /// Rewritten, then handed to the kernel because the FIB had no neighbour yet.
    ForwardedViaStack,
    /// NAT replies rewritten back to the VIP.
    NatReplies,
    /// ICMP "fragmentation needed"/"packet too big" sent on to a flow's backend.
    IcmpToBackend,
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    PassNonIp,
    /// 802.1Q/802.1ad tagged: left to the kernel's VLAN devices.
    PassVlan,
    /// IP traffic that is not for a VIP.
    PassNotVip,
    /// To a VIP address but no VIP matches (port/protocol), e.g. L7 VIPs or ping.
    PassVipAddrOther,
    DropTruncatedEth,
    DropMalformedIp,
    DropTruncatedL4,
    DropFragment,
    DropIpv6ExtHeader,
    DropNoBackend,
    /// Encapsulated packet larger than the egress MTU.
    DropTooBig,
    /// Tunnel packet whose next hop has no neighbour entry yet. (The stack cannot forward
    /// it: its outer source is this host's own address.) Userspace keeps backends'
    /// neighbours resolved, so this is rare.
    DropNoNeighbour,
    /// A helper (adjust_head) or map failed.
    DropInternal,
    /// Packets stripped of their tunnel header by the decap program.
    Decapsulated,
    /// ICMP "fragmentation needed"/"packet too big" quoting a VIP flow that is not in the
    /// connection table: dropped, since ICMP never opens a flow (a forged one would pin a
    /// future flow's backend without its NAT reply entry).
    DropIcmpNoFlow,
    /// A tunnel packet too big once encapsulated, answered with ICMP "fragmentation
    /// needed" / ICMPv6 "packet too big" (the MTU the tunnel leaves) back to the client.
    IcmpTooBigSent,
    /// The next hop has no route (blackhole, unreachable, prohibit, none at all).
    DropNoRoute,
    /// Forwarding is off on the interface the packet would leave by.
    DropForwardingOff,
    /// A redirect the kernel failed to deliver (`xdp:xdp_redirect_err` and
    /// `xdp:xdp_devmap_xmit` drops): e.g. a target that cannot take XDP frames.
    DropRedirectFailed,
    /// Direct routing to a backend that is not on a directly connected segment (the FIB's
    /// next hop is a gateway, which would send the VIP's packet back).
    DropDrNotOnLink,
    /// TCP SYNs of flows not in the connection table, hashed without writing it (the
    /// SYN-flood defence): a flood shows here, not in new flows.
    TcpSynStateless,
}

pub const COUNTER_COUNT: u32 = Counter::TcpSynStateless as u32 + 1;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Forwarded,
        Counter::ForwardedViaStack,
        Counter::NatReplies,
        Counter::IcmpToBackend,
        Counter::PassNonIp,
        Counter::PassVlan,
        Counter::PassNotVip,
        Counter::PassVipAddrOther,
        Counter::DropTruncatedEth,
        Counter::DropMalformedIp,
        Counter::DropTruncatedL4,
        Counter::DropFragment,
        Counter::DropIpv6ExtHeader,
        Counter::DropNoBackend,
        Counter::DropTooBig,
        Counter::DropNoNeighbour,
        Counter::DropInternal,
        Counter::Decapsulated,
        Counter::DropIcmpNoFlow,
        Counter::IcmpTooBigSent,
        Counter::DropNoRoute,
        Counter::DropForwardingOff,
        Counter::DropRedirectFailed,
        Counter::DropDrNotOnLink,
        Counter::TcpSynStateless,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::Forwarded => "forwarded",
            Counter::ForwardedViaStack => "forwarded_via_stack",
            Counter::NatReplies => "nat_replies",
            Counter::IcmpToBackend => "icmp_to_backend",
            Counter::PassNonIp => "pass_non_ip",
            Counter::PassVlan => "pass_vlan",
            Counter::PassNotVip => "pass_not_vip",
            Counter::PassVipAddrOther => "pass_vip_addr_other",
            Counter::DropTruncatedEth => "drop_truncated_eth",
            Counter::DropMalformedIp => "drop_malformed_ip",
            Counter::DropTruncatedL4 => "drop_truncated_l4",
            Counter::DropFragment => "drop_fragment",
            Counter::DropIpv6ExtHeader => "drop_ipv6_ext_header",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::DropTooBig => "drop_too_big",
            Counter::DropNoNeighbour => "drop_no_neighbour",
            Counter::DropInternal => "drop_internal",
            Counter::Decapsulated => "decapsulated",
            Counter::DropIcmpNoFlow => "drop_icmp_no_flow",
            Counter::IcmpTooBigSent => "icmp_too_big_sent",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropForwardingOff => "drop_forwarding_off",
            Counter::DropRedirectFailed => "drop_redirect_failed",
            Counter::DropDrNotOnLink => "drop_dr_not_on_link",
            Counter::TcpSynStateless => "tcp_syn_stateless",
        }
    }
}

/// A stable 64-bit hash of identity bytes (FNV-1a, then splitmix64's mixer): the same on
/// every device and in every release, so devices that hash the same key agree. Maglev
/// permutations (L4) and the L7 balancer's map-based hashing both use it.
pub fn identity_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

/// splitmix64's output mixer: spreads any 64-bit input over all 64 bits.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipMeta {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for NatReverse {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for Settings {}
}

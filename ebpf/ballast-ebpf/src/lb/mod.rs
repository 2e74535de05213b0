//! The L4 load balancer: parse → VIP lookup → connection table / Maglev → tunnel or NAT →
//! FIB lookup → TX/redirect. Anything that is not for a VIP is passed untouched.
//!
//! Verdicts for odd frames (each counted in `GLOBAL`, see `ballast_common::Counter`):
//! - shorter than an Ethernet header: DROP (the kernel would drop it too);
//! - not IPv4/IPv6: PASS; 802.1Q/802.1ad tagged: PASS (left to the kernel's VLAN devices);
//! - IPv4/IPv6 header truncated, bad version, IHL < 5, or a length field longer than the
//!   frame: DROP (the kernel's ip_rcv/ipv6_rcv drop these as well);
//! - IPv4 options: parsed past (IHL), forwarded like any other packet;
//! - to a VIP address: fragments DROP, IPv6 extension headers DROP, L4 header shorter than
//!   TCP's 20 / UDP's 8 bytes DROP; other protocols (ICMP echo, GRE, ...) and ports with no
//!   VIP PASS (an L7 VIP's proxy listens there);
//! - ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting an open VIP flow: sent to
//!   that flow's backend; quoting a flow not in the connection table: DROP (ICMP never
//!   opens a flow);
//! - a tunnel packet that would exceed the egress MTU once encapsulated: answered with
//!   ICMP "fragmentation needed" / ICMPv6 "packet too big" carrying the MTU the tunnel
//!   leaves, back out the interface it came by (`icmp_too_big_sent`); an IPv4 packet without DF: DROP (`drop_too_big`);
//! - no route to the next hop: DROP (`drop_no_route`); forwarding off: DROP
//!   (`drop_forwarding_off`).
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ballast_common::{
    AddrKey, Backend, Counter, FlowKey, FlowState, NatReverse, VipKey, VipMeta, BACKEND_ACTIVE, FAMILY_V4,
    FAMILY_V6, MODE_DR, MODE_NAT, NO_BACKEND, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};

use crate::{
    hash::flow_hash,
    maps::{
        add_stats, count, BACKENDS, BACKEND_STATS, CONNTRACK, MAGLEV, NAT_REVERSE, NAT_REVERSE_SYN, VIPS, VIP_ADDRS,
        VIP_STATS,
    },
    parse::*,
};

mod dr;
mod encap;
mod icmp;
mod nat;
mod pmtu;
mod tx;

use encap::{encap_v4, encap_v6};
use icmp::{icmp_v4, icmp_v6};
use nat::{nat_reply_v4, nat_reply_v6, nat_rewrite_v4, nat_rewrite_v6, Side};

const IPV6_NEXTHDR_FRAGMENT: u8 = 44;

#[inline(always)]
fn pass(c: Counter) -> u32 {
    count(c);
    XDP_PASS
}

#[inline(always)]
fn drop(c: Counter) -> u32 {
    count(c);
    XDP_DROP
}

#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropTruncatedEth);
    };
    let proto = u16::from_be(unsafe { (*eth).proto });
    match proto {
        ETH_P_IP => v4(ctx),
        ETH_P_IPV6 => v6(ctx),
        ETH_P_8021Q | ETH_P_8021AD => pass(Counter::PassVlan),
        _ => pass(Counter::PassNonIp),
    }
}

#[inline(always)]
fn v4_words(a: u32) -> [u32; 4] {
    [a, 0, 0, 0]
}

#[inline(always)]
fn is_vip_addr(addr: [u32; 4], family: u8) -> bool {
    let key = AddrKey { addr, family, _pad: [0; 3] };
    unsafe { VIP_ADDRS.get(&key).is_some() }
}

#[inline(always)]
fn find_vip(addr: [u32; 4], port: u16, proto: u8, family: u8) -> Option<VipMeta> {
    let mut key = VipKey { addr, port, proto, family };
    if let Some(m) = unsafe { VIPS.get(&key) } {
        return Some(*m);
    }
    key.port = 0;
    unsafe { VIPS.get(&key) }.copied()
}

/// The backend an open flow is pinned to: its connection-table entry, while that backend
/// is still the one it was pinned to. Reads only.
#[inline(always)]
fn pinned_backend(key: &FlowKey) -> Option<(u32, Backend)> {
    let st = unsafe { CONNTRACK.get(key) }?;
    let (id, generation) = (st.backend, st.generation);
    let b = BACKENDS.get(id)?;
    if b.flags & BACKEND_ACTIVE != 0 && b.generation == generation {
        return Some((id, *b));
    }
    None
}

/// The flow's backend: the one it is pinned to, otherwise the VIP's Maglev slot for the
/// flow's hash (and a new entry, unless `stateless`). Only a packet of the flow itself
/// may call this: it writes the connection table.
#[inline(always)]
fn pick_backend(vip: &VipMeta, key: &FlowKey, stateless: bool) -> Option<(u32, Backend, bool)> {
    if let Some((id, b)) = pinned_backend(key) {
        return Some((id, b, false));
    }
    if vip.ring_size == 0 {
        return None;
    }
    let slot = vip.ring_base + flow_hash(key) % vip.ring_size;
    let id = *MAGLEV.get(slot)?;
    if id == NO_BACKEND {
        return None;
    }
    let b = *BACKENDS.get(id)?;
    if b.flags & BACKEND_ACTIVE == 0 {
        return None;
    }
    if stateless {
        return Some((id, b, false));
    }
    let st = FlowState { backend: id, generation: b.generation };
    let _ = CONNTRACK.insert(key, &st, 0);
    Some((id, b, true))
}

/// A VIP packet's backend, with the per-VIP/per-backend counters bumped and, for a new
/// NAT flow, the reply tuple (backend → client) recorded. `Err` is the verdict to return.
///
/// SYN-flood defence: a bare TCP SYN (`syn`) of a flow not in the table is hashed only,
/// never written to the connection table; the flow gets its entry from its next packet
/// (the handshake's ACK), which Maglev sends to the same backend. A flood of SYNs from
/// spoofed sources, which never send that ACK, so cannot push established flows out of
/// the table. NAT needs the SYN's reply tuple for the SYN-ACK: it goes to a table of its
/// own (`NAT_REVERSE_SYN`), which a flood churns without touching established flows'.
/// The cost: a backend change between a SYN and its ACK can send the ACK elsewhere (the
/// client retries), as with any stateless hash.
#[inline(always)]
fn admit(ctx: &XdpContext, vip: &VipMeta, key: &FlowKey, syn: bool) -> Result<(u32, Backend), u32> {
    let Some((id, backend, new_flow)) = pick_backend(vip, key, syn) else {
        debug!(ctx, "drop: VIP {} has no backend", vip.index);
        return Err(drop(Counter::DropNoBackend));
    };
    let len = frame_len(ctx);
    add_stats(&VIP_STATS, vip.index, len, new_flow);
    add_stats(&BACKEND_STATS, id, len, new_flow);
    if syn {
        count(Counter::TcpSynStateless);
    }
    if vip.mode == MODE_NAT && (new_flow || syn) {
        let reply = FlowKey {
            src: backend.addr,
            dst: key.src,
            sport: if backend.port != 0 { backend.port } else { key.dport },
            dport: key.sport,
            proto: key.proto,
            family: key.family,
            _pad: [0; 2],
        };
        let rev = NatReverse { vip_addr: key.dst, vip_port: key.dport, _pad: [0; 2] };
        if syn {
            let _ = NAT_REVERSE_SYN.insert(&reply, &rev, 0);
        } else {
            let _ = NAT_REVERSE.insert(&reply, &rev, 0);
        }
    }
    Ok((id, backend))
}

/// A TCP segment with SYN set and none of ACK, RST, FIN: a connection's first packet.
#[inline(always)]
fn bare_syn(ctx: &XdpContext, proto: u8, l4_off: usize) -> bool {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    if proto != PROTO_TCP {
        return false;
    }
    let Some(flags) = ptr_at::<u8>(ctx, l4_off + 13) else { return false };
    unsafe { *flags & (FIN | SYN | RST | ACK) == SYN }
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

fn v4(ctx: &XdpContext) -> u32 {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropMalformedIp);
    };
    let h = unsafe { *ip };
    let ihl = (h.vihl & 0x0f) as usize * 4;
    let tot_len = u16::from_be(h.tot_len) as usize;
    let ip_room = ctx.data_end() - ctx.data() - ETH_LEN;
    if h.vihl >> 4 != 4 || ihl < IPV4_LEN || tot_len < ihl || tot_len > ip_room {
        debug!(ctx, "drop: malformed IPv4 header");
        return drop(Counter::DropMalformedIp);
    }
    let fragmented = u16::from_be(h.frag) & 0x3fff != 0;
    let l4_off = ETH_LEN + ihl;
    let dst = v4_words(h.dst);
    if !is_vip_addr(dst, FAMILY_V4) {
        if !fragmented && (h.proto == PROTO_TCP || h.proto == PROTO_UDP) {
            return nat_reply_v4(ctx, l4_off, &h);
        }
        return pass(Counter::PassNotVip);
    }
    if fragmented {
        return drop(Counter::DropFragment);
    }
    if h.proto == PROTO_ICMP {
        return icmp_v4(ctx, l4_off);
    }
    if h.proto != PROTO_TCP && h.proto != PROTO_UDP {
        return pass(Counter::PassVipAddrOther);
    }
    if ctx.data() + l4_off + l4_header_len(h.proto) > ctx.data_end() {
        return drop(Counter::DropTruncatedL4);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    let p = unsafe { *ports };
    let Some(vip) = find_vip(dst, p.dport, h.proto, FAMILY_V4) else {
        return pass(Counter::PassVipAddrOther);
    };
    let key = FlowKey {
        src: v4_words(h.src),
        dst,
        sport: p.sport,
        dport: p.dport,
        proto: h.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let (id, backend) = match admit(ctx, &vip, &key, bare_syn(ctx, h.proto, l4_off)) {
        Ok(b) => b,
        Err(verdict) => return verdict,
    };
    if vip.mode == MODE_NAT {
        return nat_rewrite_v4(ctx, l4_off, h.proto, Side::Dst, backend.addr[0], backend.port);
    }
    if vip.mode == MODE_DR {
        return dr::direct(ctx, FAMILY_V4, key.src, id, &backend, tot_len as u16, true);
    }
    encap_v4(ctx, id, &backend, h.tos, tot_len as u16, true)
}

fn v6(ctx: &XdpContext) -> u32 {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropMalformedIp);
    };
    let h = unsafe { *ip };
    let ip_room = ctx.data_end() - ctx.data() - ETH_LEN;
    let payload = u16::from_be(h.payload_len) as usize;
    if (u32::from_be(h.vtcfl) >> 28) != 6 || IPV6_LEN + payload > ip_room {
        debug!(ctx, "drop: malformed IPv6 header");
        return drop(Counter::DropMalformedIp);
    }
    let l4_off = ETH_LEN + IPV6_LEN;
    if !is_vip_addr(h.dst, FAMILY_V6) {
        if h.nexthdr == PROTO_TCP || h.nexthdr == PROTO_UDP {
            return nat_reply_v6(ctx, &h);
        }
        return pass(Counter::PassNotVip);
    }
    match h.nexthdr {
        PROTO_TCP | PROTO_UDP => {}
        PROTO_ICMPV6 => return icmp_v6(ctx),
        IPV6_NEXTHDR_FRAGMENT => return drop(Counter::DropFragment),
        // Hop-by-hop, routing, destination options, ...: not parsed.
        0 | 43 | 60 | 51 | 50 | 135 | 139 | 140 => return drop(Counter::DropIpv6ExtHeader),
        _ => return pass(Counter::PassVipAddrOther),
    }
    if ctx.data() + l4_off + l4_header_len(h.nexthdr) > ctx.data_end() {
        return drop(Counter::DropTruncatedL4);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    let p = unsafe { *ports };
    let Some(vip) = find_vip(h.dst, p.dport, h.nexthdr, FAMILY_V6) else {
        return pass(Counter::PassVipAddrOther);
    };
    let key = FlowKey {
        src: h.src,
        dst: h.dst,
        sport: p.sport,
        dport: p.dport,
        proto: h.nexthdr,
        family: FAMILY_V6,
        _pad: [0; 2],
    };
    let (id, backend) = match admit(ctx, &vip, &key, bare_syn(ctx, h.nexthdr, l4_off)) {
        Ok(b) => b,
        Err(verdict) => return verdict,
    };
    if vip.mode == MODE_NAT {
        return nat_rewrite_v6(ctx, h.nexthdr, Side::Dst, &backend.addr, backend.port);
    }
    if vip.mode == MODE_DR {
        return dr::direct(ctx, FAMILY_V6, h.src, id, &backend, (IPV6_LEN + payload) as u16, true);
    }
    encap_v6(ctx, id, &backend, payload as u16, true)
}

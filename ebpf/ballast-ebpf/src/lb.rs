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
//! - ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting a VIP flow: sent to that
//!   flow's backend;
//! - a packet that would exceed the egress MTU once encapsulated: DROP (counted).
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ballast_common::{
    AddrKey, Backend, Counter, FlowKey, FlowState, NatReverse, VipKey, VipMeta, BACKEND_ACTIVE, FAMILY_V4,
    FAMILY_V6, MODE_NAT, NO_BACKEND, PROTO_ICMP, PROTO_ICMPV6, PROTO_IPIP, PROTO_IPV6, PROTO_TCP, PROTO_UDP,
};

use crate::{
    csum,
    hash::flow_hash,
    maps::{
        add_stats, count, BACKENDS, BACKEND_STATS, CONNTRACK, MAGLEV, NAT_REVERSE, SETTINGS, VIPS, VIP_ADDRS,
        VIP_STATS,
    },
    parse::*,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const IPV6_NEXTHDR_FRAGMENT: u8 = 44;
const FIB_LKUP_RET_SUCCESS: i64 = 0;
const FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;

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

/// The flow's backend: its connection-table entry while that backend is still the one it
/// was pinned to, otherwise the VIP's Maglev slot for the flow's hash (and a new entry).
#[inline(always)]
fn pick_backend(vip: &VipMeta, key: &FlowKey) -> Option<(u32, Backend, bool)> {
    if let Some(st) = unsafe { CONNTRACK.get(key) } {
        let (id, generation) = (st.backend, st.generation);
        if let Some(b) = BACKENDS.get(id) {
            if b.flags & BACKEND_ACTIVE != 0 && b.generation == generation {
                return Some((id, *b, false));
            }
        }
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
    let st = FlowState { backend: id, generation: b.generation };
    let _ = CONNTRACK.insert(key, &st, 0);
    Some((id, b, true))
}

/// A VIP packet's backend, with the per-VIP/per-backend counters bumped and, for a new
/// NAT flow, the reply tuple (backend → client) recorded. `Err` is the verdict to return.
#[inline(always)]
fn admit(ctx: &XdpContext, vip: &VipMeta, key: &FlowKey) -> Result<Backend, u32> {
    let Some((id, backend, new_flow)) = pick_backend(vip, key) else {
        debug!(ctx, "drop: VIP {} has no backend", vip.index);
        return Err(drop(Counter::DropNoBackend));
    };
    let len = frame_len(ctx);
    add_stats(&VIP_STATS, vip.index, len, new_flow);
    add_stats(&BACKEND_STATS, id, len, new_flow);
    if vip.mode == MODE_NAT && new_flow {
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
        let _ = NAT_REVERSE.insert(&reply, &rev, 0);
    }
    Ok(backend)
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
    let backend = match admit(ctx, &vip, &key) {
        Ok(b) => b,
        Err(verdict) => return verdict,
    };
    if vip.mode == MODE_NAT {
        return nat_rewrite_v4(ctx, l4_off, h.proto, Side::Dst, backend.addr[0], backend.port);
    }
    encap_v4(ctx, &backend, h.tos, tot_len as u16)
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
    let backend = match admit(ctx, &vip, &key) {
        Ok(b) => b,
        Err(verdict) => return verdict,
    };
    if vip.mode == MODE_NAT {
        return nat_rewrite_v6(ctx, h.nexthdr, Side::Dst, &backend.addr, backend.port);
    }
    encap_v6(ctx, &backend, payload as u16)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// Rewrites one side's address (and port, unless 0) of a TCP/UDP IPv4 packet, fixing the
/// IP and L4 checksums incrementally, then sends it on.
#[inline(always)]
fn nat_rewrite_v4(ctx: &XdpContext, l4_off: usize, proto: u8, side: Side, addr: u32, port: u16) -> u32 {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(l4_check) = ptr_at::<u16>(ctx, l4_off + l4_csum_off(proto)) else {
        return drop(Counter::DropInternal);
    };
    unsafe {
        let old_addr = if side == Side::Dst { (*ip).dst } else { (*ip).src };
        let old_port = if side == Side::Dst { (*ports).dport } else { (*ports).sport };
        let new_port = if port != 0 { port } else { old_port };
        if side == Side::Dst {
            (*ip).dst = addr;
            (*ports).dport = new_port;
        } else {
            (*ip).src = addr;
            (*ports).sport = new_port;
        }
        (*ip).check = csum::replace4((*ip).check, old_addr, addr);
        let c = *l4_check;
        // A zero UDP checksum over IPv4 means "none": leave it so.
        if !(proto == PROTO_UDP && c == 0) {
            let mut c = csum::replace4(c, old_addr, addr);
            c = csum::replace2(c, old_port, new_port);
            if proto == PROTO_UDP && c == 0 {
                c = 0xffff;
            }
            *l4_check = c;
        }
        let (src, dst, tot_len) = ((*ip).src, (*ip).dst, u16::from_be((*ip).tot_len));
        transmit(ctx, FAMILY_V4, v4_words(src), v4_words(dst), tot_len, true)
    }
}

#[inline(always)]
fn nat_rewrite_v6(ctx: &XdpContext, proto: u8, side: Side, addr: &[u32; 4], port: u16) -> u32 {
    let l4_off = ETH_LEN + IPV6_LEN;
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(l4_check) = ptr_at::<u16>(ctx, l4_off + l4_csum_off(proto)) else {
        return drop(Counter::DropInternal);
    };
    unsafe {
        let old_addr = if side == Side::Dst { (*ip).dst } else { (*ip).src };
        let old_port = if side == Side::Dst { (*ports).dport } else { (*ports).sport };
        let new_port = if port != 0 { port } else { old_port };
        if side == Side::Dst {
            (*ip).dst = *addr;
            (*ports).dport = new_port;
        } else {
            (*ip).src = *addr;
            (*ports).sport = new_port;
        }
        let mut c = csum::replace16(*l4_check, &old_addr, addr);
        c = csum::replace2(c, old_port, new_port);
        if proto == PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        *l4_check = c;
        let (src, dst) = ((*ip).src, (*ip).dst);
        let tot_len = u16::from_be((*ip).payload_len).wrapping_add(IPV6_LEN as u16);
        transmit(ctx, FAMILY_V6, src, dst, tot_len, true)
    }
}

/// A packet that is not to a VIP address: if it is a NAT backend's reply, its source goes
/// back to the VIP; otherwise it passes.
#[inline(always)]
fn nat_reply_v4(ctx: &XdpContext, l4_off: usize, h: &Ipv4Hdr) -> u32 {
    if ctx.data() + l4_off + l4_header_len(h.proto) > ctx.data_end() {
        return pass(Counter::PassNotVip);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return pass(Counter::PassNotVip);
    };
    let p = unsafe { *ports };
    let key = FlowKey {
        src: v4_words(h.src),
        dst: v4_words(h.dst),
        sport: p.sport,
        dport: p.dport,
        proto: h.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let Some(rev) = (unsafe { NAT_REVERSE.get(&key) }).copied() else {
        return pass(Counter::PassNotVip);
    };
    count(Counter::NatReplies);
    nat_rewrite_v4(ctx, l4_off, h.proto, Side::Src, rev.vip_addr[0], rev.vip_port)
}

#[inline(always)]
fn nat_reply_v6(ctx: &XdpContext, h: &Ipv6Hdr) -> u32 {
    let l4_off = ETH_LEN + IPV6_LEN;
    if ctx.data() + l4_off + l4_header_len(h.nexthdr) > ctx.data_end() {
        return pass(Counter::PassNotVip);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4_off) else {
        return pass(Counter::PassNotVip);
    };
    let p = unsafe { *ports };
    let key = FlowKey {
        src: h.src,
        dst: h.dst,
        sport: p.sport,
        dport: p.dport,
        proto: h.nexthdr,
        family: FAMILY_V6,
        _pad: [0; 2],
    };
    let Some(rev) = (unsafe { NAT_REVERSE.get(&key) }).copied() else {
        return pass(Counter::PassNotVip);
    };
    count(Counter::NatReplies);
    nat_rewrite_v6(ctx, h.nexthdr, Side::Src, &rev.vip_addr, rev.vip_port)
}

/// ICMP "fragmentation needed" to a VIP address. The quoted packet is one the backend
/// sent (VIP → client), so the flow is found with its tuple reversed.
fn icmp_v4(ctx: &XdpContext, l4_off: usize) -> u32 {
    let Some(icmp) = ptr_at::<IcmpHdr>(ctx, l4_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    if kind != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
        return pass(Counter::PassVipAddrOther);
    }
    let inner_off = l4_off + 8;
    let Some(inner) = ptr_at::<Ipv4Hdr>(ctx, inner_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    let ih = unsafe { *inner };
    if ih.vihl != 0x45 || (ih.proto != PROTO_TCP && ih.proto != PROTO_UDP) {
        return pass(Counter::PassVipAddrOther);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, inner_off + IPV4_LEN) else {
        return drop(Counter::DropTruncatedL4);
    };
    let p = unsafe { *ports };
    let Some(vip) = find_vip(v4_words(ih.src), p.sport, ih.proto, FAMILY_V4) else {
        return pass(Counter::PassVipAddrOther);
    };
    let key = FlowKey {
        src: v4_words(ih.dst),
        dst: v4_words(ih.src),
        sport: p.dport,
        dport: p.sport,
        proto: ih.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let Some((_, backend, _)) = pick_backend(&vip, &key) else {
        return drop(Counter::DropNoBackend);
    };
    count(Counter::IcmpToBackend);
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let outer = unsafe { *ip };
    if vip.mode != MODE_NAT {
        return encap_v4(ctx, &backend, outer.tos, u16::from_be(outer.tot_len));
    }
    // NAT: the backend must see its own address (and port) where the VIP's was.
    let Some(icmp) = ptr_at::<IcmpHdr>(ctx, l4_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(inner) = ptr_at::<Ipv4Hdr>(ctx, inner_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(ports) = ptr_at::<Ports>(ctx, inner_off + IPV4_LEN) else {
        return drop(Counter::DropInternal);
    };
    let baddr = backend.addr[0];
    unsafe {
        (*ip).dst = baddr;
        (*ip).check = csum::replace4(outer.check, outer.dst, baddr);
        let mut ic = (*icmp).check;
        let old_inner_check = (*inner).check;
        let new_inner_check = csum::replace4(old_inner_check, ih.src, baddr);
        (*inner).src = baddr;
        (*inner).check = new_inner_check;
        ic = csum::replace4(ic, ih.src, baddr);
        ic = csum::replace2(ic, old_inner_check, new_inner_check);
        if backend.port != 0 {
            (*ports).sport = backend.port;
            ic = csum::replace2(ic, p.sport, backend.port);
        }
        (*icmp).check = ic;
    }
    transmit(ctx, FAMILY_V4, v4_words(outer.src), backend.addr, u16::from_be(outer.tot_len), true)
}

/// ICMPv6 "packet too big" to a VIP address; as `icmp_v4`.
fn icmp_v6(ctx: &XdpContext) -> u32 {
    let l4_off = ETH_LEN + IPV6_LEN;
    let Some(icmp) = ptr_at::<IcmpHdr>(ctx, l4_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    if unsafe { (*icmp).kind } != ICMPV6_PKT_TOOBIG {
        return pass(Counter::PassVipAddrOther);
    }
    let inner_off = l4_off + 8;
    let Some(inner) = ptr_at::<Ipv6Hdr>(ctx, inner_off) else {
        return drop(Counter::DropTruncatedL4);
    };
    let ih = unsafe { *inner };
    if ih.nexthdr != PROTO_TCP && ih.nexthdr != PROTO_UDP {
        return pass(Counter::PassVipAddrOther);
    }
    let Some(ports) = ptr_at::<Ports>(ctx, inner_off + IPV6_LEN) else {
        return drop(Counter::DropTruncatedL4);
    };
    let p = unsafe { *ports };
    let Some(vip) = find_vip(ih.src, p.sport, ih.nexthdr, FAMILY_V6) else {
        return pass(Counter::PassVipAddrOther);
    };
    let key = FlowKey {
        src: ih.dst,
        dst: ih.src,
        sport: p.dport,
        dport: p.sport,
        proto: ih.nexthdr,
        family: FAMILY_V6,
        _pad: [0; 2],
    };
    let Some((_, backend, _)) = pick_backend(&vip, &key) else {
        return drop(Counter::DropNoBackend);
    };
    count(Counter::IcmpToBackend);
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let outer = unsafe { *ip };
    if vip.mode != MODE_NAT {
        return encap_v6(ctx, &backend, u16::from_be(outer.payload_len));
    }
    let Some(icmp) = ptr_at::<IcmpHdr>(ctx, l4_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(inner) = ptr_at::<Ipv6Hdr>(ctx, inner_off) else {
        return drop(Counter::DropInternal);
    };
    let Some(ports) = ptr_at::<Ports>(ctx, inner_off + IPV6_LEN) else {
        return drop(Counter::DropInternal);
    };
    unsafe {
        (*ip).dst = backend.addr;
        (*inner).src = backend.addr;
        // The ICMPv6 checksum covers the pseudo-header (outer dst) and the quoted packet.
        let mut ic = csum::replace16((*icmp).check, &outer.dst, &backend.addr);
        ic = csum::replace16(ic, &ih.src, &backend.addr);
        if backend.port != 0 {
            (*ports).sport = backend.port;
            ic = csum::replace2(ic, p.sport, backend.port);
        }
        (*icmp).check = ic;
    }
    let tot_len = u16::from_be(outer.payload_len).wrapping_add(IPV6_LEN as u16);
    transmit(ctx, FAMILY_V6, outer.src, backend.addr, tot_len, true)
}

/// Prepends an outer IPv4 header (IPIP) addressed to the backend.
#[inline(always)]
fn encap_v4(ctx: &XdpContext, backend: &Backend, tos: u8, inner_len: u16) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return drop(Counter::DropInternal);
    };
    let src = settings.tunnel_src_v4;
    let Some(old_eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropInternal);
    };
    let old_eth = unsafe { *old_eth };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IPV4_LEN as i32)) } != 0 {
        return drop(Counter::DropInternal);
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropInternal);
    };
    unsafe { *eth = old_eth };
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let tot_len = inner_len.wrapping_add(IPV4_LEN as u16);
    let mut hdr = Ipv4Hdr {
        vihl: 0x45,
        tos,
        tot_len: tot_len.to_be(),
        id: 0,
        // DF, so path MTU discovery works through the tunnel.
        frag: 0x4000u16.to_be(),
        ttl: 64,
        proto: PROTO_IPIP,
        check: 0,
        src,
        dst: backend.addr[0],
    };
    let words: [u16; 10] = unsafe { core::mem::transmute(hdr) };
    hdr.check = csum::ipv4_header(&words);
    unsafe {
        (*eth).proto = ETH_P_IP.to_be();
        *ip = hdr;
    }
    transmit(ctx, FAMILY_V4, v4_words(src), backend.addr, tot_len, false)
}

/// Prepends an outer IPv6 header (IP6IP6) addressed to the backend.
#[inline(always)]
fn encap_v6(ctx: &XdpContext, backend: &Backend, inner_payload: u16) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return drop(Counter::DropInternal);
    };
    let src = settings.tunnel_src_v6;
    let Some(old_eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropInternal);
    };
    let old_eth = unsafe { *old_eth };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IPV6_LEN as i32)) } != 0 {
        return drop(Counter::DropInternal);
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropInternal);
    };
    unsafe { *eth = old_eth };
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let payload = inner_payload.wrapping_add(IPV6_LEN as u16);
    unsafe {
        (*eth).proto = ETH_P_IPV6.to_be();
        *ip = Ipv6Hdr {
            vtcfl: (6u32 << 28).to_be(),
            payload_len: payload.to_be(),
            nexthdr: PROTO_IPV6,
            hop_limit: 64,
            src,
            dst: backend.addr,
        };
    }
    transmit(ctx, FAMILY_V6, src, backend.addr, payload.wrapping_add(IPV6_LEN as u16), false)
}

/// `struct bpf_fib_lookup` (64 bytes) without the unions.
#[repr(C)]
struct FibParams {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    tot_len: u16,
    ifindex: u32,
    tos_flowinfo: u32,
    src: [u32; 4],
    dst: [u32; 4],
    vlan: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// Routes the rewritten packet with the kernel's FIB: known neighbour → new MACs and
/// XDP_TX (same interface) or a redirect; no neighbour yet → the stack forwards it (and
/// resolves the neighbour for the next packets) if `via_stack`, else drop; too big for
/// the egress MTU → drop.
#[inline(always)]
fn transmit(
    ctx: &XdpContext,
    family: u8,
    src: [u32; 4],
    dst: [u32; 4],
    tot_len: u16,
    via_stack: bool,
) -> u32 {
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    let mut p = FibParams {
        family,
        l4_protocol: 0,
        sport: 0,
        dport: 0,
        tot_len,
        ifindex: ingress,
        tos_flowinfo: 0,
        src,
        dst,
        vlan: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut p as *mut FibParams as *mut _,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == FIB_LKUP_RET_SUCCESS {
        let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
            return drop(Counter::DropInternal);
        };
        unsafe {
            (*eth).dst = p.dmac;
            (*eth).src = p.smac;
        }
        count(Counter::Forwarded);
        if p.ifindex == ingress {
            return XDP_TX;
        }
        return unsafe { bpf_redirect(p.ifindex, 0) } as u32;
    }
    if rc == FIB_LKUP_RET_FRAG_NEEDED {
        return drop(Counter::DropTooBig);
    }
    if !via_stack {
        return drop(Counter::DropNoNeighbour);
    }
    count(Counter::ForwardedViaStack);
    XDP_PASS
}

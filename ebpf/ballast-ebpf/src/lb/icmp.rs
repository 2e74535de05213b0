//! ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting an open VIP flow: sent on
//! to that flow's backend, so path MTU discovery works through the load balancer.
//!
//! ICMP never creates flow state: anyone can send it, quoting any tuple. Were a quoted
//! flow not open yet to get a backend and a connection-table entry here, the flow's real
//! first packet would find that entry, take it as an old flow and (NAT) never record its
//! reply tuple, so the backend's answers would leave un-rewritten. A flow not in the table
//! has no path MTU to learn: its ICMP is dropped and counted.
use aya_ebpf::programs::XdpContext;
use ballast_common::{Counter, FlowKey, FAMILY_V4, FAMILY_V6, MODE_DR, MODE_NAT, PROTO_TCP, PROTO_UDP};

use super::{
    drop,
    encap::{encap_v4, encap_v6},
    find_vip, pass, pinned_backend,
    dr,
    tx::transmit,
    v4_words,
};
use crate::{csum, maps::count, parse::*};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;

/// ICMP "fragmentation needed" to a VIP address. The quoted packet is one the backend
/// sent (VIP → client), so the flow is found with its tuple reversed.
pub(super) fn icmp_v4(ctx: &XdpContext, l4_off: usize) -> u32 {
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
    let Some((id, backend)) = pinned_backend(&key) else {
        return drop(Counter::DropIcmpNoFlow);
    };
    count(Counter::IcmpToBackend);
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let outer = unsafe { *ip };
    if vip.mode == MODE_DR {
        return dr::direct(ctx, FAMILY_V4, v4_words(outer.src), id, &backend, u16::from_be(outer.tot_len), false);
    }
    if vip.mode != MODE_NAT {
        return encap_v4(ctx, id, &backend, outer.tos, u16::from_be(outer.tot_len), false);
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
pub(super) fn icmp_v6(ctx: &XdpContext) -> u32 {
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
    let Some((id, backend)) = pinned_backend(&key) else {
        return drop(Counter::DropIcmpNoFlow);
    };
    count(Counter::IcmpToBackend);
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let outer = unsafe { *ip };
    if vip.mode == MODE_DR {
        let tot_len = u16::from_be(outer.payload_len).wrapping_add(IPV6_LEN as u16);
        return dr::direct(ctx, FAMILY_V6, outer.src, id, &backend, tot_len, false);
    }
    if vip.mode != MODE_NAT {
        return encap_v6(ctx, id, &backend, u16::from_be(outer.payload_len), false);
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

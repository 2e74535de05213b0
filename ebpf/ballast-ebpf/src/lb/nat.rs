//! NAT mode: the client → VIP packet rewritten to the backend, and the backend's replies
//! rewritten back to come from the VIP.
use aya_ebpf::programs::XdpContext;
use ballast_common::{Counter, FlowKey, NatReverse, FAMILY_V4, FAMILY_V6, PROTO_UDP};

use super::{drop, pass, tx::transmit, v4_words};
use crate::{
    csum,
    maps::{count, NAT_REVERSE, NAT_REVERSE_SYN},
    parse::*,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

/// Rewrites one side's address (and port, unless 0) of a TCP/UDP IPv4 packet, fixing the
/// IP and L4 checksums incrementally, then sends it on.
#[inline(always)]
pub(super) fn nat_rewrite_v4(
    ctx: &XdpContext,
    l4_off: usize,
    proto: u8,
    side: Side,
    addr: u32,
    port: u16,
) -> u32 {
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
pub(super) fn nat_rewrite_v6(ctx: &XdpContext, proto: u8, side: Side, addr: &[u32; 4], port: u16) -> u32 {
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
pub(super) fn nat_reply_v4(ctx: &XdpContext, l4_off: usize, h: &Ipv4Hdr) -> u32 {
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
    let Some(rev) = reverse(&key) else {
        return pass(Counter::PassNotVip);
    };
    count(Counter::NatReplies);
    nat_rewrite_v4(ctx, l4_off, h.proto, Side::Src, rev.vip_addr[0], rev.vip_port)
}

/// The VIP a backend's reply must come from: an established flow's, or (the SYN-ACK)
/// one seen only as a SYN so far.
#[inline(always)]
fn reverse(key: &FlowKey) -> Option<NatReverse> {
    unsafe { NAT_REVERSE.get(key).or_else(|| NAT_REVERSE_SYN.get(key)) }.copied()
}

#[inline(always)]
pub(super) fn nat_reply_v6(ctx: &XdpContext, h: &Ipv6Hdr) -> u32 {
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
    let Some(rev) = reverse(&key) else {
        return pass(Counter::PassNotVip);
    };
    count(Counter::NatReplies);
    nat_rewrite_v6(ctx, h.nexthdr, Side::Src, &rev.vip_addr, rev.vip_port)
}

//! Answers to a client packet that is too big for the tunnel: ICMP "fragmentation needed"
//! (IPv4) / ICMPv6 "packet too big" with the MTU the encapsulation leaves, built in place
//! from the packet itself and sent back the way it came, as a router on the path
//! would. The client's stack then lowers its path MTU to the VIP and resends smaller
//! segments; without it, every upload larger than one segment stalls.
//!
//! The answer comes from the VIP, the address the client sent to, so that firewalls that
//! pass ICMP related to a flow let it through. It quotes the first `QUOTE` bytes of the
//! packet (its IP header and the ports and sequence number the client's stack matches
//! on). It is smaller than the packet it answers: no amplification.
use aya_ebpf::{
    helpers::{bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use ballast_common::{Counter, PROTO_ICMP, PROTO_ICMPV6};

use super::drop;
use crate::{csum, maps::count, parse::*};

/// Bytes of the offending packet quoted (from its IP header on).
const QUOTE: usize = 64;
const ICMP_LEN: usize = 8;
/// The ICMP header and the quote, as 16-bit words (for the checksum).
const ICMP_WORDS: usize = (ICMP_LEN + QUOTE) / 2;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const IP_DF: u16 = 0x4000;

/// Cuts the frame to its Ethernet header and the quote, then makes room for an IP header
/// of `ip_len` bytes and the ICMP header in front of the quote. Swaps the MACs.
#[inline(always)]
fn reshape(ctx: &XdpContext, ip_len: usize, ethertype: u16) -> Result<(), u32> {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Err(drop(Counter::DropInternal));
    };
    let e = unsafe { *eth };
    let len = ctx.data_end() - ctx.data();
    if len < ETH_LEN + QUOTE {
        return Err(drop(Counter::DropTooBig));
    }
    let cut = (ETH_LEN + QUOTE) as i32 - len as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, cut) } != 0 {
        return Err(drop(Counter::DropInternal));
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((ip_len + ICMP_LEN) as i32)) } != 0 {
        return Err(drop(Counter::DropInternal));
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Err(drop(Counter::DropInternal));
    };
    unsafe {
        *eth = EthHdr { dst: e.src, src: e.dst, proto: ethertype.to_be() };
    }
    Ok(())
}

/// Out of the interface the packet came in by. A redirect, not XDP_TX: a veth flushes
/// its XDP_TX frames to its peer only when the peer runs an XDP program (veth_xdp_flush),
/// so with the peer on GRO alone they sat in its ring undelivered; redirected frames are
/// flushed either way. (An answer to a client is rare: the redirect's cost does not matter.)
#[inline(always)]
fn back(ctx: &XdpContext) -> u32 {
    unsafe { bpf_redirect((*ctx.ctx).ingress_ifindex, 0) as u32 }
}

/// Sums the ICMP header and the quote at `off` (the checksum field must be zero).
#[inline(always)]
fn icmp_sum(ctx: &XdpContext, off: usize) -> Option<u64> {
    let words = ptr_at::<[u16; ICMP_WORDS]>(ctx, off)?;
    let words = unsafe { &*words };
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < ICMP_WORDS {
        sum += words[i] as u64;
        i += 1;
    }
    Some(sum)
}

/// ICMP "fragmentation needed" with next-hop MTU `mtu` for the IPv4 packet in the frame.
/// A packet without DF may be fragmented by the path: it is dropped and counted instead
/// (ballast does not fragment).
#[inline(always)]
pub(super) fn frag_needed_v4(ctx: &XdpContext, mtu: u16) -> u32 {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let h = unsafe { *ip };
    if u16::from_be(h.frag) & IP_DF == 0 {
        return drop(Counter::DropTooBig);
    }
    if let Err(verdict) = reshape(ctx, IPV4_LEN, ETH_P_IP) {
        return verdict;
    }
    let (Some(ip), Some(icmp)) = (ptr_at::<Ipv4Hdr>(ctx, ETH_LEN), ptr_at::<IcmpHdr>(ctx, ETH_LEN + IPV4_LEN)) else {
        return drop(Counter::DropInternal);
    };
    let mut hdr = Ipv4Hdr {
        vihl: 0x45,
        tos: 0,
        tot_len: ((IPV4_LEN + ICMP_LEN + QUOTE) as u16).to_be(),
        id: 0,
        frag: 0,
        ttl: 64,
        proto: PROTO_ICMP,
        check: 0,
        src: h.dst,
        dst: h.src,
    };
    let words: [u16; 10] = unsafe { core::mem::transmute(hdr) };
    hdr.check = csum::ipv4_header(&words);
    unsafe {
        *ip = hdr;
        // "Unused" (2 bytes), then the next-hop MTU.
        *icmp = IcmpHdr { kind: ICMP_DEST_UNREACH, code: ICMP_FRAG_NEEDED, check: 0, rest: (mtu as u32).to_be() };
    }
    let Some(sum) = icmp_sum(ctx, ETH_LEN + IPV4_LEN) else {
        return drop(Counter::DropInternal);
    };
    unsafe { (*icmp).check = !csum::fold(sum) };
    count(Counter::IcmpTooBigSent);
    back(ctx)
}

/// ICMPv6 "packet too big" with MTU `mtu` for the IPv6 packet in the frame.
#[inline(always)]
pub(super) fn packet_too_big_v6(ctx: &XdpContext, mtu: u16) -> u32 {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
        return drop(Counter::DropInternal);
    };
    let h = unsafe { *ip };
    if let Err(verdict) = reshape(ctx, IPV6_LEN, ETH_P_IPV6) {
        return verdict;
    }
    let (Some(ip), Some(icmp)) = (ptr_at::<Ipv6Hdr>(ctx, ETH_LEN), ptr_at::<IcmpHdr>(ctx, ETH_LEN + IPV6_LEN)) else {
        return drop(Counter::DropInternal);
    };
    let payload = (ICMP_LEN + QUOTE) as u16;
    unsafe {
        *ip = Ipv6Hdr {
            vtcfl: (6u32 << 28).to_be(),
            payload_len: payload.to_be(),
            nexthdr: PROTO_ICMPV6,
            hop_limit: 64,
            src: h.dst,
            dst: h.src,
        };
        *icmp = IcmpHdr { kind: ICMPV6_PKT_TOOBIG, code: 0, check: 0, rest: (mtu as u32).to_be() };
    }
    let Some(mut sum) = icmp_sum(ctx, ETH_LEN + IPV6_LEN) else {
        return drop(Counter::DropInternal);
    };
    // The pseudo-header: addresses, upper-layer length (32 bits), next header (32 bits),
    // each word as it would be loaded from packet memory.
    let mut i = 0;
    while i < 4 {
        sum += (h.dst[i] & 0xffff) as u64 + (h.dst[i] >> 16) as u64;
        sum += (h.src[i] & 0xffff) as u64 + (h.src[i] >> 16) as u64;
        i += 1;
    }
    sum += payload.to_be() as u64 + (PROTO_ICMPV6 as u16).to_be() as u64;
    unsafe { (*icmp).check = !csum::fold(sum) };
    count(Counter::IcmpTooBigSent);
    back(ctx)
}

//! Tunnel mode: an outer IPv4 (IPIP) or IPv6 (IP6IP6) header addressed to the backend,
//! which answers the client directly.
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use ballast_common::{Backend, Counter, FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6};

use super::{drop, tx::transmit, v4_words};
use crate::{csum, maps::SETTINGS, parse::*};

/// Prepends an outer IPv4 header (IPIP) addressed to the backend.
#[inline(always)]
pub(super) fn encap_v4(ctx: &XdpContext, backend: &Backend, tos: u8, inner_len: u16) -> u32 {
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
pub(super) fn encap_v6(ctx: &XdpContext, backend: &Backend, inner_payload: u16) -> u32 {
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

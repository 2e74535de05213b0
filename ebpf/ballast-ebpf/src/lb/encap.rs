//! Tunnel mode: an outer IPv4 (IPIP) or IPv6 (IP6IP6) header addressed to the backend,
//! which answers the client directly.
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use ballast_common::{Backend, Counter, FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6};

use super::{
    drop, pmtu,
    tx::{route_to_backend, send, Route},
    v4_words,
};
use crate::{csum, maps::SETTINGS, parse::*};

/// Where the encapsulated packet goes, asked before encapsulating: one too big for the
/// egress MTU is answered (`answer_too_big`) with the MTU the tunnel leaves, so the
/// client's path MTU discovery shrinks its packets, instead of being lost unseen.
#[inline(always)]
fn next_hop(
    ctx: &XdpContext,
    family: u8,
    src: [u32; 4],
    id: u32,
    backend: &Backend,
    tot_len: u16,
    answer_too_big: bool,
) -> Result<(u32, [u8; 6], [u8; 6]), u32> {
    match route_to_backend(ctx, family, src, id, backend, tot_len) {
        Route::Next { ifindex, smac, dmac, .. } => Ok((ifindex, smac, dmac)),
        Route::TooBig(mtu) if answer_too_big && family == FAMILY_V4 => {
            Err(pmtu::frag_needed_v4(ctx, mtu.saturating_sub(IPV4_LEN as u16)))
        }
        Route::TooBig(mtu) if answer_too_big => Err(pmtu::packet_too_big_v6(ctx, mtu.saturating_sub(IPV6_LEN as u16))),
        Route::TooBig(_) => Err(drop(Counter::DropTooBig)),
        // The stack cannot forward it for us: its outer source is this host's own address.
        Route::NoNeighbour => Err(drop(Counter::DropNoNeighbour)),
        Route::Failed(c) => Err(drop(c)),
    }
}

/// Prepends an outer IPv4 header (IPIP) addressed to the backend.
#[inline(always)]
pub(super) fn encap_v4(
    ctx: &XdpContext,
    id: u32,
    backend: &Backend,
    tos: u8,
    inner_len: u16,
    answer_too_big: bool,
) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return drop(Counter::DropInternal);
    };
    let src = settings.tunnel_src_v4;
    let tot_len = inner_len.wrapping_add(IPV4_LEN as u16);
    let (ifindex, smac, dmac) = match next_hop(ctx, FAMILY_V4, v4_words(src), id, backend, tot_len, answer_too_big) {
        Ok(n) => n,
        Err(verdict) => return verdict,
    };
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
    send(ctx, ifindex, smac, dmac)
}

/// Prepends an outer IPv6 header (IP6IP6) addressed to the backend.
#[inline(always)]
pub(super) fn encap_v6(ctx: &XdpContext, id: u32, backend: &Backend, inner_payload: u16, answer_too_big: bool) -> u32 {
    let Some(settings) = SETTINGS.get(0) else {
        return drop(Counter::DropInternal);
    };
    let src = settings.tunnel_src_v6;
    let payload = inner_payload.wrapping_add(IPV6_LEN as u16);
    let tot_len = payload.wrapping_add(IPV6_LEN as u16);
    let (ifindex, smac, dmac) = match next_hop(ctx, FAMILY_V6, src, id, backend, tot_len, answer_too_big) {
        Ok(n) => n,
        Err(verdict) => return verdict,
    };
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
    send(ctx, ifindex, smac, dmac)
}

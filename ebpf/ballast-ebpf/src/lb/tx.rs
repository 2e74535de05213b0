//! Sending a rewritten packet: the kernel's FIB picks the next hop and its MACs, then
//! XDP_TX or a redirect.
use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    helpers::{bpf_fib_lookup, bpf_ktime_get_ns, bpf_redirect},
    programs::XdpContext,
};
use ballast_common::{Backend, Counter};

use super::drop;
use crate::{
    hash::pair_hash,
    maps::{count, NextHop, NEXT_HOPS, ROUTES, ROUTE_SLOTS},
    parse::*,
};

/// How long a backend's next hop is trusted without asking the FIB again: a neighbour's
/// new MAC or a new route reaches the data path within this.
const NEXT_HOP_TTL_NS: u64 = 1_000_000_000;

const FIB_LKUP_RET_SUCCESS: i64 = 0;
const FIB_LKUP_RET_FWD_DISABLED: i64 = 5;
const FIB_LKUP_RET_NO_NEIGH: i64 = 7;
const FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;

/// `struct bpf_fib_lookup` (64 bytes) without the unions.
#[repr(C)]
struct FibParams {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    /// In: the packet's length; out, on FRAG_NEEDED: the egress MTU (`mtu_result`).
    tot_len: u16,
    ifindex: u32,
    tos_flowinfo: u32,
    src: [u32; 4],
    dst: [u32; 4],
    vlan: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// Where the FIB sends a packet.
pub(super) enum Route {
    /// Known neighbour: out of `ifindex` with these MACs; `on_link` when that neighbour is
    /// the destination itself, not a gateway.
    Next { ifindex: u32, smac: [u8; 6], dmac: [u8; 6], on_link: bool },
    /// Larger than the egress MTU (the MTU).
    TooBig(u16),
    /// A route, but no neighbour entry yet.
    NoNeighbour,
    /// No way out: no route, forwarding off, ... (the counter that says which).
    Failed(Counter),
}

/// Asks the kernel's FIB how a `tot_len`-byte packet from `src` to `dst` leaves.
#[inline(always)]
pub(super) fn route(ctx: &XdpContext, family: u8, src: [u32; 4], dst: [u32; 4], tot_len: u16) -> Route {
    let mut p = FibParams {
        family,
        l4_protocol: 0,
        sport: 0,
        dport: 0,
        tot_len,
        ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
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
    match rc {
        // The FIB writes the gateway's address over the destination when there is one.
        FIB_LKUP_RET_SUCCESS => Route::Next { ifindex: p.ifindex, smac: p.smac, dmac: p.dmac, on_link: p.dst == dst },
        FIB_LKUP_RET_FRAG_NEEDED => Route::TooBig(p.tot_len),
        FIB_LKUP_RET_NO_NEIGH => Route::NoNeighbour,
        FIB_LKUP_RET_FWD_DISABLED => Route::Failed(Counter::DropForwardingOff),
        // Blackhole, unreachable, prohibit, no route (not forwarded), no source address.
        _ => Route::Failed(Counter::DropNoRoute),
    }
}

/// `route` to a backend, through a per-CPU cache of its next hop (interface, MACs, and the
/// largest packet the FIB let through): the FIB lookup is most of a VIP packet's cost.
/// An entry also lapses with the backend's generation (a new backend in its slot).
#[inline(always)]
pub(super) fn route_to_backend(
    ctx: &XdpContext,
    family: u8,
    src: [u32; 4],
    id: u32,
    backend: &Backend,
    tot_len: u16,
) -> Route {
    match NEXT_HOPS.get_ptr_mut(id) {
        Some(hop) => route_cached(ctx, hop, backend.generation, family, src, backend.addr, tot_len),
        None => route(ctx, family, src, backend.addr, tot_len),
    }
}

/// `route` through the per-CPU `ROUTES` cache, for packets with no backend slot: NAT
/// packets both ways (to the backend, and its replies to the client).
#[inline(always)]
fn route_any(ctx: &XdpContext, family: u8, src: [u32; 4], dst: [u32; 4], tot_len: u16) -> Route {
    let slot = pair_hash(&src, &dst) & (ROUTE_SLOTS - 1);
    match ROUTES.get_ptr_mut(slot) {
        Some(hop) => route_cached(ctx, hop, 0, family, src, dst, tot_len),
        None => route(ctx, family, src, dst, tot_len),
    }
}

/// `route`, answered from `hop` while it is fresh: the same family, source, destination,
/// generation and ingress, younger than `NEXT_HOP_TTL_NS`, and a packet no larger than one
/// the FIB already let through. Only successful answers are kept.
#[inline(always)]
fn route_cached(
    ctx: &XdpContext,
    hop: *mut NextHop,
    generation: u32,
    family: u8,
    src: [u32; 4],
    dst: [u32; 4],
    tot_len: u16,
) -> Route {
    let hop = unsafe { &mut *hop };
    let now = unsafe { bpf_ktime_get_ns() };
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    let fresh = hop.expires > now
        && hop.generation == generation
        && hop.ingress == ingress
        && hop.family == family
        && same_addr(&hop.dst, &dst)
        && same_addr(&hop.src, &src);
    if fresh && tot_len as u32 <= hop.max_len {
        return Route::Next { ifindex: hop.ifindex, smac: hop.smac, dmac: hop.dmac, on_link: hop.on_link != 0 };
    }
    let r = route(ctx, family, src, dst, tot_len);
    if let Route::Next { ifindex, smac, dmac, on_link } = r {
        // Larger packets seen to fit widen the entry; a changed hop starts it anew.
        let same = fresh && hop.ifindex == ifindex && hop.dmac == dmac;
        let max_len = if same && hop.max_len > tot_len as u32 { hop.max_len } else { tot_len as u32 };
        let expires = if same { hop.expires } else { now + NEXT_HOP_TTL_NS };
        *hop = NextHop {
            expires,
            src,
            dst,
            generation,
            ingress,
            ifindex,
            max_len,
            smac,
            dmac,
            on_link: on_link as u8,
            family,
            _pad: [0; 2],
        };
    }
    r
}

/// Word by word: `==` on the arrays crashes bpf-linker's LLVM 22 (SIGSEGV in its post-RA
/// pseudo-instruction expansion).
#[inline(always)]
fn same_addr(a: &[u32; 4], b: &[u32; 4]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}

/// Sends the frame as it is now out of `ifindex` with the given MACs.
#[inline(always)]
pub(super) fn send(ctx: &XdpContext, ifindex: u32, smac: [u8; 6], dmac: [u8; 6]) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return drop(Counter::DropInternal);
    };
    unsafe {
        (*eth).dst = dmac;
        (*eth).src = smac;
    }
    count(Counter::Forwarded);
    if ifindex == unsafe { (*ctx.ctx).ingress_ifindex } {
        return XDP_TX;
    }
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// Routes the rewritten packet with the kernel's FIB (through `ROUTES`): known neighbour → new MACs and
/// XDP_TX (same interface) or a redirect; no neighbour yet → the stack forwards it (and
/// resolves the neighbour for the next packets) if `via_stack`, else drop; too big for
/// the egress MTU, no route, forwarding off → drop, each with its counter.
#[inline(always)]
pub(super) fn transmit(
    ctx: &XdpContext,
    family: u8,
    src: [u32; 4],
    dst: [u32; 4],
    tot_len: u16,
    via_stack: bool,
) -> u32 {
    match route_any(ctx, family, src, dst, tot_len) {
        Route::Next { ifindex, smac, dmac, .. } => send(ctx, ifindex, smac, dmac),
        Route::TooBig(_) => drop(Counter::DropTooBig),
        Route::NoNeighbour if via_stack => {
            count(Counter::ForwardedViaStack);
            XDP_PASS
        }
        Route::NoNeighbour => drop(Counter::DropNoNeighbour),
        Route::Failed(c) => drop(c),
    }
}

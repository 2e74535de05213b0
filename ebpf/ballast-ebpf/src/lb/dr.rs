//! Direct routing (LVS-DR): the frame is sent to the backend's MAC on a shared segment,
//! the IP packet untouched (no encapsulation, so no MTU cost). The backend holds the VIP
//! on a loopback, does not answer ARP/ND for it, and answers the client directly.
use aya_ebpf::programs::XdpContext;
use ballast_common::{Backend, Counter, FAMILY_V4};

use super::{
    drop, pmtu,
    tx::{route_to_backend, send, Route},
};

#[inline(always)]
/// Sends the frame to `backend`'s MAC. A packet too big for the private side is answered
/// with ICMP if `answer_too_big` (a client's packet), else dropped (an ICMP passed on).
pub(super) fn direct(
    ctx: &XdpContext,
    family: u8,
    src: [u32; 4],
    id: u32,
    backend: &Backend,
    tot_len: u16,
    answer_too_big: bool,
) -> u32 {
    match route_to_backend(ctx, family, src, id, backend, tot_len) {
        Route::Next { ifindex, smac, dmac, on_link: true } => send(ctx, ifindex, smac, dmac),
        // Through a gateway, the VIP's packet would be routed back to the VIP.
        Route::Next { .. } => drop(Counter::DropDrNotOnLink),
        // The private side's MTU is smaller than the public side's.
        Route::TooBig(_) if !answer_too_big => drop(Counter::DropTooBig),
        Route::TooBig(mtu) if family == FAMILY_V4 => pmtu::frag_needed_v4(ctx, mtu),
        Route::TooBig(mtu) => pmtu::packet_too_big_v6(ctx, mtu),
        // The stack cannot send a VIP's packet to the backend's MAC for us; userspace keeps
        // backends' neighbours resolved.
        Route::NoNeighbour => drop(Counter::DropNoNeighbour),
        Route::Failed(c) => drop(c),
    }
}

//! Sending a rewritten packet: the kernel's FIB picks the next hop and its MACs, then
//! XDP_TX or a redirect.
use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use ballast_common::Counter;

use super::drop;
use crate::{maps::count, parse::*};

const FIB_LKUP_RET_SUCCESS: i64 = 0;
const FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;

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
pub(super) fn transmit(
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

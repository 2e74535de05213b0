//! ballast's XDP programs: `ballast_lb` forwards VIP traffic (Maglev + connection table,
//! IPIP/IP6IP6 tunnel or NAT) and passes everything else; `ballast_decap` strips tunnel
//! headers on backends whose kernel has no ipip device.
#![no_std]
#![no_main]

mod csum;
mod decap;
mod hash;
mod lb;
mod maps;
mod parse;
mod redirect_watch;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{tracepoint, xdp},
    programs::{TracePointContext, XdpContext},
};

#[xdp]
pub fn ballast_lb(ctx: XdpContext) -> u32 {
    lb::run(&ctx)
}

#[xdp]
pub fn ballast_decap(ctx: XdpContext) -> u32 {
    decap::run(&ctx)
}

/// Passes everything: attached to a veth peer, it makes the kernel deliver frames that
/// another veth's XDP program redirects into it (native veth XDP needs a program there).
#[xdp]
pub fn ballast_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// On `xdp:xdp_redirect_err`: a redirect of ours the kernel refused at once.
#[tracepoint]
pub fn ballast_redirect_err(ctx: TracePointContext) -> u32 {
    redirect_watch::redirect_err(&ctx);
    0
}

/// On `xdp:xdp_devmap_xmit`: frames a redirect target's driver dropped.
#[tracepoint]
pub fn ballast_devmap_xmit(ctx: TracePointContext) -> u32 {
    redirect_watch::devmap_xmit(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// bpf_fib_lookup and bpf_redirect are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

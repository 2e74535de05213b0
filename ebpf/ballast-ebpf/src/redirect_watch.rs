//! Redirects the kernel failed to deliver. `bpf_redirect` only queues a frame: whether
//! the target takes it is known later, in the kernel, and reported on two tracepoints.
//! Counting them is what makes a layout that cannot deliver (a bridge, or a veth whose
//! peer has no XDP program and no GRO, as a redirect target) visible in `ballast stats`.
//!
//! Tracepoints are global: `xdp_redirect_err` names the program, so only ours is counted;
//! `xdp_devmap_xmit` names only the interfaces, so it is counted when the frame came in on
//! an interface `ballast_lb` is attached to (by index: an interface of the same index in
//! another network namespace would be counted too).
use aya_ebpf::programs::TracePointContext;
use ballast_common::Counter;

use crate::maps::{count_n, WATCH_IFINDEX, WATCH_PROG};

// Offsets from /sys/kernel/tracing/events/xdp/*/format.
const REDIRECT_ERR_PROG_ID: usize = 8;
const DEVMAP_XMIT_FROM_IFINDEX: usize = 8;
const DEVMAP_XMIT_DROPS: usize = 20;

pub fn redirect_err(ctx: &TracePointContext) {
    let Ok(prog) = (unsafe { ctx.read_at::<u32>(REDIRECT_ERR_PROG_ID) }) else { return };
    if WATCH_PROG.get(0).is_some_and(|id| *id != 0 && *id == prog) {
        count_n(Counter::DropRedirectFailed, 1);
    }
}

pub fn devmap_xmit(ctx: &TracePointContext) {
    let Ok(from) = (unsafe { ctx.read_at::<u32>(DEVMAP_XMIT_FROM_IFINDEX) }) else { return };
    let Ok(drops) = (unsafe { ctx.read_at::<i32>(DEVMAP_XMIT_DROPS) }) else { return };
    if drops > 0 && unsafe { WATCH_IFINDEX.get(&from) }.is_some() {
        count_n(Counter::DropRedirectFailed, drops as u64);
    }
}

//! Backend-side decapsulation: IPIP, IP6IP6 (and the 4-in-6 / 6-in-4 mixes) are stripped
//! to the inner packet, which then goes up the stack as if it had arrived bare. Everything
//! else passes untouched. Like an `ipip` device with `remote any`, it trusts any sender on
//! the link: attach it only to the interface facing the load balancers.
use aya_ebpf::{bindings::xdp_action::XDP_PASS, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use ballast_common::{Counter, PROTO_IPIP, PROTO_IPV6};

use crate::{
    maps::count,
    parse::{ptr_at, EthHdr, Ipv4Hdr, Ipv6Hdr, ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, IPV6_LEN},
};

#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return XDP_PASS;
    };
    let proto = u16::from_be(unsafe { (*eth).proto });
    if proto == ETH_P_IP {
        let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
            return XDP_PASS;
        };
        let (vihl, frag, inner) = unsafe { ((*ip).vihl, (*ip).frag, (*ip).proto) };
        // Fragmented or optioned outer headers are left to the kernel.
        if vihl != 0x45 || u16::from_be(frag) & 0x3fff != 0 {
            return XDP_PASS;
        }
        match inner {
            PROTO_IPIP => strip(ctx, IPV4_LEN as i32, ETH_P_IP),
            PROTO_IPV6 => strip(ctx, IPV4_LEN as i32, ETH_P_IPV6),
            _ => XDP_PASS,
        }
    } else if proto == ETH_P_IPV6 {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
            return XDP_PASS;
        };
        match unsafe { (*ip).nexthdr } {
            PROTO_IPV6 => strip(ctx, IPV6_LEN as i32, ETH_P_IPV6),
            PROTO_IPIP => strip(ctx, IPV6_LEN as i32, ETH_P_IP),
            _ => XDP_PASS,
        }
    } else {
        XDP_PASS
    }
}

#[inline(always)]
fn strip(ctx: &XdpContext, len: i32, inner_proto: u16) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return XDP_PASS;
    };
    let mut hdr = unsafe { *eth };
    hdr.proto = inner_proto.to_be();
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, len) } != 0 {
        return XDP_PASS;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return XDP_PASS;
    };
    unsafe { *eth = hdr };
    count(Counter::Decapsulated);
    XDP_PASS
}

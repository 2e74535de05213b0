//! A namespace in which the LB program's `bpf_fib_lookup` finds routes and neighbours:
//! a "public" veth (in0: 203.0.113.1, 2001:db8:1::1; client 203.0.113.2 / 2001:db8:1::2 at
//! 02:00:00:00:00:02) and a "private" veth (out0: 10.0.0.1, fd00::1; backends .11-.13 /
//! ::11-::13 at 02:00:00:00:00:11-13), for BPF_PROG_TEST_RUN with `ingress_ifindex` set.
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::Netns;

pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

pub struct FibNet {
    pub ns: Netns,
    pub in_if: u32,
    pub out_if: u32,
    pub in_mac: [u8; 6],
    pub out_mac: [u8; 6],
}

impl FibNet {
    pub fn new(tag: &str) -> FibNet {
        let ns = Netns::new(tag);
        for cmd in [
            "ip link add in0 type veth peer name in1",
            "ip link add out0 type veth peer name out1",
            "ip addr add 203.0.113.1/24 dev in0",
            "ip addr add 2001:db8:1::1/64 dev in0 nodad",
            "ip addr add 10.0.0.1/24 dev out0",
            "ip addr add fd00::1/64 dev out0 nodad",
            "ip link set in0 up",
            "ip link set in1 up",
            "ip link set out0 up",
            "ip link set out1 up",
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.ipv6.conf.all.forwarding=1",
            "ip neigh replace 203.0.113.2 lladdr 02:00:00:00:00:02 dev in0 nud permanent",
            "ip neigh replace 2001:db8:1::2 lladdr 02:00:00:00:00:02 dev in0 nud permanent",
        ] {
            ns.exec(cmd);
        }
        for last in [0x11u8, 0x12, 0x13] {
            ns.exec(&format!(
                "ip neigh replace 10.0.0.{last:x} lladdr 02:00:00:00:00:{last:x} dev out0 nud permanent"
            ));
            ns.exec(&format!(
                "ip neigh replace fd00::{last:x} lladdr 02:00:00:00:00:{last:x} dev out0 nud permanent"
            ));
        }
        FibNet {
            in_if: ns.ifindex("in0"),
            out_if: ns.ifindex("out0"),
            in_mac: ns.mac("in0"),
            out_mac: ns.mac("out0"),
            ns,
        }
    }

    /// Runs `prog` on `frame` as if it arrived on `ifindex`: (verdict, output frame, the
    /// kernel's measured run time).
    pub fn run(&self, prog: &Xdp, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>, Duration) {
        self.ns.enter(|| {
            let mut out = vec![0u8; frame.len() + 256];
            let mut ctx = Vec::with_capacity(24);
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue, egress.
            for v in [0u32, frame.len() as u32, 0, ifindex, 0, 0] {
                ctx.extend_from_slice(&v.to_ne_bytes());
            }
            let opts = TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            };
            let r = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
            out.truncate(r.data_size_out as usize);
            (r.return_value, out, r.duration)
        })
    }
}

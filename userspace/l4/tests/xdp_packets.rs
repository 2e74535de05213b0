//! Packet-level tests of the XDP program with BPF_PROG_TEST_RUN (aya `test_run`), in the
//! style of Katran's fixtures: a crafted input frame, the expected verdict, and checks on
//! the output frame (addresses, encapsulation, checksums) and on the counters.
//!
//! The program routes rewritten packets with `bpf_fib_lookup`, so each test builds a
//! namespace with an "public" and a "private" veth, static neighbours for the client and
//! the backends, and runs the program from a thread inside it with `ingress_ifindex` set.

use std::collections::{BTreeMap, BTreeSet};

use aya::programs::{TestRun, TestRunOptions};
use ballast_l4::{
    config::L4Config,
    dataplane::{read_counters, Dataplane, PROG_LB},
};
use ballast_testkit::fibnet::{FibNet, CLIENT_MAC};
use ballast_testkit::{need_root, packet::*};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const CONFIG: &str = r#"
[device]
tunnel_source_v4 = "10.0.0.1"
tunnel_source_v6 = "fd00::1"
max_vips = 16
max_table_size = 1009

[[vip]]
name = "web4"
address = "198.51.100.10"
port = 80
protocol = "tcp"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "dns4"
address = "198.51.100.10"
port = 53
protocol = "udp"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "web6"
address = "2001:db8:100::10"
port = 80
protocol = "tcp"
backends = [{ address = "fd00::11" }, { address = "fd00::12" }, { address = "fd00::13" }]

[[vip]]
name = "dns6"
address = "2001:db8:100::10"
port = 53
protocol = "udp"
backends = [{ address = "fd00::11" }, { address = "fd00::12" }, { address = "fd00::13" }]

[[vip]]
name = "nat4"
address = "198.51.100.20"
port = 80
protocol = "tcp"
mode = "nat"
backends = [{ address = "10.0.0.11", port = 8080 }, { address = "10.0.0.12", port = 8080 }]

[[vip]]
name = "nat4u"
address = "198.51.100.20"
port = 53
protocol = "udp"
mode = "nat"
backends = [{ address = "10.0.0.13" }]

[[vip]]
name = "nat6"
address = "2001:db8:100::20"
port = 53
protocol = "udp"
mode = "nat"
backends = [{ address = "fd00::11", port = 5353 }]

[[vip]]
name = "nat6t"
address = "2001:db8:100::20"
port = 80
protocol = "tcp"
mode = "nat"
backends = [{ address = "fd00::12", port = 8080 }]

[[vip]]
name = "empty"
address = "198.51.100.30"
port = 80
protocol = "tcp"

[[vip]]
name = "noneigh"
address = "198.51.100.50"
port = 80
protocol = "tcp"
backends = [{ address = "10.0.0.77" }]

[[vip]]
name = "natnoneigh"
address = "198.51.100.60"
port = 80
protocol = "tcp"
mode = "nat"
backends = [{ address = "10.0.0.77" }]

[[vip]]
name = "anyport"
address = "198.51.100.40"
port = 0
protocol = "udp"
backends = [{ address = "10.0.0.13" }]
"#;

struct Fixture {
    net: FibNet,
    dp: Dataplane,
    in_if: u32,
    out_if: u32,
    in_mac: [u8; 6],
    out_mac: [u8; 6],
}

fn backend_mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

fn fixture(tag: &str, config: &str) -> Fixture {
    let net = FibNet::new(tag);
    let cfg = L4Config::parse(config).expect("test config");
    let mut dp = Dataplane::load(&cfg.device, 0).expect("load XDP object");
    dp.apply(cfg).expect("apply config");
    Fixture { in_if: net.in_if, out_if: net.out_if, in_mac: net.in_mac, out_mac: net.out_mac, net, dp }
}

impl Fixture {
    /// Runs the LB program on `frame` as if it arrived on `ifindex`.
    fn run(&self, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        let (v, out, _) = self.net.run(self.dp.program(PROG_LB).expect("program"), frame, ifindex);
        (v, out)
    }

    fn client_frame(&self, ip_packet: &[u8], v6: bool) -> Vec<u8> {
        eth(self.in_mac, CLIENT_MAC, if v6 { ETH_IPV6 } else { ETH_IP }, ip_packet)
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        read_counters(&self.dp.ebpf).unwrap()
    }

    /// Runs and checks the verdict and that exactly `counter` moved (by one).
    fn expect(&self, what: &str, frame: &[u8], ifindex: u32, verdict: u32, counter: &str) -> Vec<u8> {
        let before = self.counters();
        let (v, out) = self.run(frame, ifindex);
        let after = self.counters();
        assert_eq!(v, verdict, "{what}: verdict");
        let moved: Vec<String> = after
            .iter()
            .filter(|(k, n)| before.get(*k) != Some(n))
            .map(|(k, n)| format!("{k}+{}", n - before[k]))
            .collect();
        assert!(
            moved.contains(&format!("{counter}+1")),
            "{what}: counters moved {moved:?}, wanted {counter}+1"
        );
        out
    }
}

/// Checks an IPIP/IP6IP6 frame: MACs for `backend`, outer header, inner packet intact.
fn check_tunnel(fx: &Fixture, what: &str, out: &[u8], inner: &[u8], v6: bool) -> String {
    let ethertype = u16::from_be_bytes([out[12], out[13]]);
    assert_eq!(ethertype, if v6 { ETH_IPV6 } else { ETH_IP }, "{what}: ethertype");
    assert_eq!(out[6..12], fx.out_mac, "{what}: source MAC is the private interface's");
    let outer = parse_ip(&out[14..]);
    assert_eq!(outer.proto, if v6 { 41 } else { 4 }, "{what}: outer protocol");
    let backend = outer.dst.to_string();
    let expected_src = if v6 { "fd00::1" } else { "10.0.0.1" };
    assert_eq!(outer.src.to_string(), expected_src, "{what}: tunnel source");
    assert_eq!(outer.payload, inner, "{what}: inner packet unchanged");
    if !v6 {
        checksums_ok(&out[14..]).unwrap_or_else(|e| panic!("{what}: outer {e}"));
        assert_eq!(out[14 + 6] & 0x40, 0x40, "{what}: DF set on the outer header");
    }
    let mac_last = match outer.dst {
        // 10.0.0.11 and fd00::11 have MAC 02:00:00:00:00:11 (the decimal 11 read as hex).
        std::net::IpAddr::V4(a) => u8::from_str_radix(&a.octets()[3].to_string(), 16).unwrap(),
        std::net::IpAddr::V6(a) => (a.segments()[7] & 0xff) as u8,
    };
    assert_eq!(out[0..6], backend_mac(mac_last), "{what}: destination MAC is the backend's neighbour entry");
    backend
}

#[test]
fn tunnel_mode_encapsulates_ipv4_and_ipv6_tcp_and_udp() {
    if !need_root("tunnel_mode_encapsulates_ipv4_and_ipv6_tcp_and_udp") {
        return;
    }
    let fx = fixture("tun", CONFIG);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "v4 tcp",
            ipv4(
                "203.0.113.2",
                "198.51.100.10",
                6,
                &tcp("203.0.113.2", "198.51.100.10", 40000, 80, 0x02, b""),
            ),
            false,
        ),
        (
            "v4 udp",
            ipv4(
                "203.0.113.2",
                "198.51.100.10",
                17,
                &udp("203.0.113.2", "198.51.100.10", 40000, 53, b"query"),
            ),
            false,
        ),
        (
            "v6 tcp",
            ipv6(
                "2001:db8:1::2",
                "2001:db8:100::10",
                6,
                &tcp("2001:db8:1::2", "2001:db8:100::10", 40000, 80, 0x02, b""),
            ),
            true,
        ),
        (
            "v6 udp",
            ipv6(
                "2001:db8:1::2",
                "2001:db8:100::10",
                17,
                &udp("2001:db8:1::2", "2001:db8:100::10", 40000, 53, b"q"),
            ),
            true,
        ),
        (
            "v4 any-port VIP",
            ipv4("203.0.113.2", "198.51.100.40", 17, &udp("203.0.113.2", "198.51.100.40", 40000, 4242, b"x")),
            false,
        ),
    ];
    for (what, inner, v6) in &cases {
        let out = fx.expect(what, &fx.client_frame(inner, *v6), fx.in_if, XDP_REDIRECT, "forwarded");
        check_tunnel(&fx, what, &out, inner, *v6);
    }
    // Many flows spread over all three backends. (Their ACKs: a bare SYN is hashed
    // without a table entry, so it is no new flow yet.)
    let mut seen = BTreeSet::new();
    for port in 1000..1060u16 {
        let inner = ipv4(
            "203.0.113.2",
            "198.51.100.10",
            6,
            &tcp("203.0.113.2", "198.51.100.10", port, 80, 0x10, b""),
        );
        let (v, out) = fx.run(&fx.client_frame(&inner, false), fx.in_if);
        assert_eq!(v, XDP_REDIRECT);
        seen.insert(parse_ip(&out[14..]).dst.to_string());
    }
    assert_eq!(seen.len(), 3, "60 flows reached {seen:?}");
    let stats = fx.dp.stats().unwrap();
    let web4 = stats.vips.iter().find(|v| v.name == "web4").unwrap();
    assert!(web4.packets >= 61 && web4.new_flows >= 60, "web4 stats: {web4:?}");
    let per_backend: u64 = web4.backends.iter().map(|b| b.packets).sum();
    assert_eq!(per_backend, web4.packets, "backend counters add up to the VIP's");
    // No neighbour entry for the backend yet. A tunnel packet cannot be left to the stack
    // (its outer source is this host's address, a martian there): dropped and counted.
    let inner =
        ipv4("203.0.113.2", "198.51.100.50", 6, &tcp("203.0.113.2", "198.51.100.50", 40000, 80, 0x02, b""));
    fx.expect(
        "tunnel, no neighbour",
        &fx.client_frame(&inner, false),
        fx.in_if,
        XDP_DROP,
        "drop_no_neighbour",
    );
    // A NAT packet can: it goes up rewritten, still addressed to this host's MAC, and the
    // stack forwards it (resolving the neighbour).
    let inner =
        ipv4("203.0.113.2", "198.51.100.60", 6, &tcp("203.0.113.2", "198.51.100.60", 40000, 80, 0x02, b""));
    let out = fx.expect(
        "nat, no neighbour",
        &fx.client_frame(&inner, false),
        fx.in_if,
        XDP_PASS,
        "forwarded_via_stack",
    );
    assert_eq!(out[0..6], fx.in_mac, "destination MAC still this host's");
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst.to_string(), "10.0.0.77");
    checksums_ok(&out[14..]).unwrap();
    // IPv4 options are parsed past and carried inside the tunnel untouched.
    let opts = ipv4_opts(
        "203.0.113.2",
        "198.51.100.10",
        6,
        &[1, 1, 1, 0],
        &tcp("203.0.113.2", "198.51.100.10", 40001, 80, 0x02, b""),
        0,
    );
    let out =
        fx.expect("v4 with options", &fx.client_frame(&opts, false), fx.in_if, XDP_REDIRECT, "forwarded");
    check_tunnel(&fx, "v4 with options", &out, &opts, false);
}

#[test]
fn connection_table_keeps_flows_and_moves_only_a_removed_backends_flows() {
    if !need_root("connection_table_keeps_flows_and_moves_only_a_removed_backends_flows") {
        return;
    }
    let mut fx = fixture("ct", CONFIG);
    let flow = |port: u16| {
        ipv4("203.0.113.2", "198.51.100.10", 6, &tcp("203.0.113.2", "198.51.100.10", port, 80, 0x10, b""))
    };
    let backend_of = |fx: &Fixture, port: u16| {
        let (v, out) = fx.run(&fx.client_frame(&flow(port), false), fx.in_if);
        assert_eq!(v, XDP_REDIRECT);
        parse_ip(&out[14..]).dst.to_string()
    };
    let before: Vec<(u16, String)> = (2000..2200).map(|p| (p, backend_of(&fx, p))).collect();
    // Remove 10.0.0.12 and add 10.0.0.14 (new neighbour too).
    fx.net.ns.exec("ip neigh replace 10.0.0.20 lladdr 02:00:00:00:00:20 dev out0 nud permanent");
    let changed = CONFIG.replacen(
        r#"{ address = "10.0.0.12" }, { address = "10.0.0.13" }]"#,
        r#"{ address = "10.0.0.13" }, { address = "10.0.0.20" }]"#,
        1,
    );
    let summary = fx.dp.apply(L4Config::parse(&changed).unwrap()).unwrap();
    assert_eq!((summary.backends_added, summary.backends_removed), (1, 1));
    let mut moved_from_removed = 0;
    for (port, old) in &before {
        let now = backend_of(&fx, *port);
        if old == "10.0.0.12" {
            assert_ne!(now, "10.0.0.12", "flow {port} still on the removed backend");
            moved_from_removed += 1;
        } else {
            assert_eq!(&now, old, "flow {port} moved although its backend stayed");
        }
    }
    assert!(moved_from_removed > 20, "only {moved_from_removed} of 200 flows were on 10.0.0.12");
    // New flows do reach the new backend.
    let fresh: BTreeSet<String> = (3000..3100).map(|p| backend_of(&fx, p)).collect();
    assert!(fresh.contains("10.0.0.20"), "new flows: {fresh:?}");
}

#[test]
fn nat_mode_rewrites_both_ways_with_valid_checksums() {
    if !need_root("nat_mode_rewrites_both_ways_with_valid_checksums") {
        return;
    }
    let fx = fixture("nat", CONFIG);
    // v4 TCP, port 80 -> 8080.
    let syn = ipv4(
        "203.0.113.2",
        "198.51.100.20",
        6,
        &tcp("203.0.113.2", "198.51.100.20", 41000, 80, 0x02, b"hello"),
    );
    let out = fx.expect("nat v4 tcp", &fx.client_frame(&syn, false), fx.in_if, XDP_REDIRECT, "forwarded");
    let ip = parse_ip(&out[14..]);
    let backend = ip.dst.to_string();
    assert!(backend == "10.0.0.11" || backend == "10.0.0.12", "{backend}");
    assert_eq!(ip.src.to_string(), "203.0.113.2");
    assert_eq!(u16::from_be_bytes([ip.payload[2], ip.payload[3]]), 8080);
    checksums_ok(&out[14..]).unwrap();
    assert_eq!(out[6..12], fx.out_mac);
    // The reply comes back from the backend on the private side and leaves as the VIP.
    let reply = ipv4(&backend, "203.0.113.2", 6, &tcp(&backend, "203.0.113.2", 8080, 41000, 0x12, b"world"));
    let bmac = backend_mac(if backend.ends_with("11") { 0x11 } else { 0x12 });
    let out = fx.expect(
        "nat v4 reply",
        &eth(fx.out_mac, bmac, ETH_IP, &reply),
        fx.out_if,
        XDP_REDIRECT,
        "nat_replies",
    );
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.src.to_string(), "198.51.100.20");
    assert_eq!(u16::from_be_bytes([ip.payload[0], ip.payload[1]]), 80);
    checksums_ok(&out[14..]).unwrap();
    assert_eq!(out[0..6], CLIENT_MAC, "reply goes to the client's MAC");
    assert_eq!(out[6..12], fx.in_mac);

    // v4 UDP keeping the port.
    let q = ipv4("203.0.113.2", "198.51.100.20", 17, &udp("203.0.113.2", "198.51.100.20", 41001, 53, b"q"));
    let out = fx.expect("nat v4 udp", &fx.client_frame(&q, false), fx.in_if, XDP_REDIRECT, "forwarded");
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst.to_string(), "10.0.0.13");
    assert_eq!(u16::from_be_bytes([ip.payload[2], ip.payload[3]]), 53);
    checksums_ok(&out[14..]).unwrap();

    // v6 UDP 53 -> 5353 and back.
    let q = ipv6(
        "2001:db8:1::2",
        "2001:db8:100::20",
        17,
        &udp("2001:db8:1::2", "2001:db8:100::20", 41002, 53, b"q6"),
    );
    let out = fx.expect("nat v6 udp", &fx.client_frame(&q, true), fx.in_if, XDP_REDIRECT, "forwarded");
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst.to_string(), "fd00::11");
    assert_eq!(u16::from_be_bytes([ip.payload[2], ip.payload[3]]), 5353);
    checksums_ok(&out[14..]).unwrap();
    let r = ipv6("fd00::11", "2001:db8:1::2", 17, &udp("fd00::11", "2001:db8:1::2", 5353, 41002, b"a6"));
    let out = fx.expect(
        "nat v6 reply",
        &eth(fx.out_mac, backend_mac(0x11), ETH_IPV6, &r),
        fx.out_if,
        XDP_REDIRECT,
        "nat_replies",
    );
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.src.to_string(), "2001:db8:100::20");
    assert_eq!(u16::from_be_bytes([ip.payload[0], ip.payload[1]]), 53);
    checksums_ok(&out[14..]).unwrap();

    // v6 TCP 80 -> 8080.
    let s = ipv6(
        "2001:db8:1::2",
        "2001:db8:100::20",
        6,
        &tcp("2001:db8:1::2", "2001:db8:100::20", 41003, 80, 0x02, b""),
    );
    let out = fx.expect("nat v6 tcp", &fx.client_frame(&s, true), fx.in_if, XDP_REDIRECT, "forwarded");
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst.to_string(), "fd00::12");
    checksums_ok(&out[14..]).unwrap();

    // A packet from a backend that matches no NAT flow passes untouched.
    let stray = ipv4("10.0.0.11", "203.0.113.2", 6, &tcp("10.0.0.11", "203.0.113.2", 8080, 9999, 0x10, b""));
    let frame = eth(fx.out_mac, backend_mac(0x11), ETH_IP, &stray);
    let out = fx.expect("stray backend packet", &frame, fx.out_if, XDP_PASS, "pass_not_vip");
    assert_eq!(out, frame);
}

#[test]
fn non_vip_and_malformed_frames_get_their_documented_verdict() {
    if !need_root("non_vip_and_malformed_frames_get_their_documented_verdict") {
        return;
    }
    let fx = fixture("mal", CONFIG);
    let c = |p: Vec<u8>| fx.client_frame(&p, false);
    let c6 = |p: Vec<u8>| fx.client_frame(&p, true);
    let t = |dst: &str, port: u16| tcp("203.0.113.2", dst, 40000, port, 0x02, b"");
    let good = ipv4("203.0.113.2", "198.51.100.10", 6, &t("198.51.100.10", 80));

    let mut bad_version = good.clone();
    bad_version[0] = 0x55;
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    let mut long_total = good.clone();
    long_total[2..4].copy_from_slice(&1400u16.to_be_bytes());
    let vlan = {
        let mut f = eth(fx.in_mac, CLIENT_MAC, 0x8100, &[0, 10, 0x08, 0x00]);
        f.extend_from_slice(&good);
        f
    };
    let arp = eth([0xff; 6], CLIENT_MAC, 0x0806, &[0u8; 28]);
    let mut truncated_tcp = good.clone();
    truncated_tcp.truncate(20 + 10);
    truncated_tcp[2..4].copy_from_slice(&30u16.to_be_bytes());
    let fixed = csum_fold(csum_add(0, &{
        let mut h = truncated_tcp[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    truncated_tcp[10..12].copy_from_slice(&fixed.to_be_bytes());
    let frag_first = ipv4_opts("203.0.113.2", "198.51.100.10", 6, &[], &t("198.51.100.10", 80), 0x2000);
    let frag_later = ipv4_opts("203.0.113.2", "198.51.100.10", 6, &[], &[0u8; 16], 0x0010);
    let frag_not_vip = ipv4_opts("203.0.113.2", "192.0.2.1", 6, &[], &[0u8; 16], 0x2000);
    let v6_frag =
        ipv6("2001:db8:1::2", "2001:db8:100::10", 44, &[6, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v6_hbh = ipv6("2001:db8:1::2", "2001:db8:100::10", 0, &[6, 0, 1, 4, 0, 0, 0, 0]);
    let mut v6_long = ipv6(
        "2001:db8:1::2",
        "2001:db8:100::10",
        6,
        &tcp("2001:db8:1::2", "2001:db8:100::10", 1, 80, 2, b""),
    );
    v6_long[4..6].copy_from_slice(&1000u16.to_be_bytes());

    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        // (A frame shorter than 14 bytes would be dropped as drop_truncated_eth, but
        // BPF_PROG_TEST_RUN refuses such input with EINVAL, so it cannot be shown here.)
        ("ARP", arp, XDP_PASS, "pass_non_ip"),
        ("802.1Q tagged", vlan, XDP_PASS, "pass_vlan"),
        ("IPv4 header cut short", c(good[..12].to_vec()), XDP_DROP, "drop_malformed_ip"),
        ("IPv4 version 5", c(bad_version), XDP_DROP, "drop_malformed_ip"),
        ("IPv4 IHL 4", c(short_ihl), XDP_DROP, "drop_malformed_ip"),
        ("IPv4 total length beyond frame", c(long_total), XDP_DROP, "drop_malformed_ip"),
        ("IPv6 payload length beyond frame", c6(v6_long), XDP_DROP, "drop_malformed_ip"),
        (
            "IPv6 header cut short",
            c6(ipv6("2001:db8:1::2", "2001:db8:100::10", 6, &[])[..30].to_vec()),
            XDP_DROP,
            "drop_malformed_ip",
        ),
        ("TCP header cut short to a VIP", c(truncated_tcp), XDP_DROP, "drop_truncated_l4"),
        ("first fragment to a VIP", c(frag_first), XDP_DROP, "drop_fragment"),
        ("later fragment to a VIP", c(frag_later), XDP_DROP, "drop_fragment"),
        ("fragment not to a VIP", c(frag_not_vip), XDP_PASS, "pass_not_vip"),
        ("IPv6 fragment header to a VIP", c6(v6_frag), XDP_DROP, "drop_fragment"),
        ("IPv6 hop-by-hop to a VIP", c6(v6_hbh), XDP_DROP, "drop_ipv6_ext_header"),
        ("not a VIP", c(ipv4("203.0.113.2", "192.0.2.1", 6, &t("192.0.2.1", 80))), XDP_PASS, "pass_not_vip"),
        (
            "VIP address, other port",
            c(ipv4("203.0.113.2", "198.51.100.10", 6, &t("198.51.100.10", 443))),
            XDP_PASS,
            "pass_vip_addr_other",
        ),
        (
            "ping to a VIP address",
            c(ipv4("203.0.113.2", "198.51.100.10", 1, &icmp4(8, 0, 1, b"ping"))),
            XDP_PASS,
            "pass_vip_addr_other",
        ),
        (
            "VIP without backends",
            c(ipv4("203.0.113.2", "198.51.100.30", 6, &t("198.51.100.30", 80))),
            XDP_DROP,
            "drop_no_backend",
        ),
    ];
    for (what, frame, verdict, counter) in cases {
        let out = fx.expect(what, &frame, fx.in_if, verdict, counter);
        if verdict == XDP_PASS {
            assert_eq!(out, frame, "{what}: passed frames are untouched");
        }
    }
}

/// Checks an ICMP "too big" answer to `sent` (a client frame): back out the way it came,
/// from the VIP to the client, with `mtu`, valid checksums, quoting the packet's start.
fn check_too_big_answer(fx: &Fixture, what: &str, out: &[u8], sent: &[u8], v6: bool, mtu: u32) {
    assert_eq!(out[0..6], sent[6..12], "{what}: back to the MAC it came from");
    assert_eq!(out[6..12], sent[0..6], "{what}: from the MAC it was sent to");
    let ip = parse_ip(&out[14..]);
    let orig = parse_ip(&sent[14..]);
    assert_eq!((ip.src, ip.dst), (orig.dst, orig.src), "{what}: from the VIP to the client");
    checksums_ok(&out[14..]).unwrap_or_else(|e| panic!("{what}: {e}"));
    let icmp = ip.payload;
    let (kind, code) = if v6 { (2, 0) } else { (3, 4) };
    assert_eq!((icmp[0], icmp[1]), (kind, code), "{what}: ICMP type and code");
    assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), mtu, "{what}: the MTU the tunnel leaves");
    assert_eq!(icmp[8..], sent[14..14 + 64], "{what}: quotes the packet's first 64 bytes");
    let _ = fx;
}

#[test]
fn tunnel_packets_too_big_once_encapsulated_are_answered_with_the_tunnels_mtu() {
    if !need_root("tunnel_packets_too_big_once_encapsulated_are_answered_with_the_tunnels_mtu") {
        return;
    }
    let fx = fixture("pmtu", CONFIG);
    // A full-size segment (1500 bytes on a 1500-MTU path) does not fit once 20 (IPIP) or
    // 40 (IP6IP6) bytes are added: the client is told the MTU the tunnel leaves.
    let seg4 = tcp("203.0.113.2", "198.51.100.10", 40005, 80, 0x10, &[7u8; 1460]);
    let big4 = fx.client_frame(&ipv4("203.0.113.2", "198.51.100.10", 6, &seg4), false);
    assert_eq!(big4.len(), 14 + 1500);
    let out = fx.expect("1500-byte IPv4 packet into a 1500-MTU tunnel", &big4, fx.in_if, XDP_REDIRECT, "icmp_too_big_sent");
    check_too_big_answer(&fx, "IPv4", &out, &big4, false, 1480);

    let seg6 = tcp("2001:db8:1::2", "2001:db8:100::10", 40005, 80, 0x10, &[7u8; 1440]);
    let big6 = fx.client_frame(&ipv6("2001:db8:1::2", "2001:db8:100::10", 6, &seg6), true);
    assert_eq!(big6.len(), 14 + 1500);
    let out = fx.expect("1500-byte IPv6 packet into a 1500-MTU tunnel", &big6, fx.in_if, XDP_REDIRECT, "icmp_too_big_sent");
    check_too_big_answer(&fx, "IPv6", &out, &big6, true, 1460);

    // UDP too (DNS over a large EDNS answer's request, say).
    let dgram = udp("203.0.113.2", "198.51.100.10", 40006, 53, &[1u8; 1472]);
    let big_udp = fx.client_frame(&ipv4("203.0.113.2", "198.51.100.10", 17, &dgram), false);
    let out = fx.expect("1500-byte UDP datagram", &big_udp, fx.in_if, XDP_REDIRECT, "icmp_too_big_sent");
    check_too_big_answer(&fx, "UDP", &out, &big_udp, false, 1480);

    // Without DF the path may fragment it; ballast does not: dropped and counted.
    let no_df = fx.client_frame(&ipv4_opts("203.0.113.2", "198.51.100.10", 6, &[], &seg4, 0), false);
    fx.expect("1500-byte packet without DF", &no_df, fx.in_if, XDP_DROP, "drop_too_big");

    // One that fits (1480 + 20) goes on, encapsulated.
    let fits = ipv4("203.0.113.2", "198.51.100.10", 6, &tcp("203.0.113.2", "198.51.100.10", 40005, 80, 0x10, &[7u8; 1440]));
    let out = fx.expect("1480-byte packet", &fx.client_frame(&fits, false), fx.in_if, XDP_REDIRECT, "forwarded");
    check_tunnel(&fx, "1480-byte packet", &out, &fits, false);
}

#[test]
fn next_hop_failures_are_counted_by_cause() {
    if !need_root("next_hop_failures_are_counted_by_cause") {
        return;
    }
    let cfg = format!(
        "{CONFIG}\n[[vip]]\nname = \"noroute\"\naddress = \"198.51.100.70\"\nport = 80\nprotocol = \"tcp\"\nbackends = [{{ address = \"192.0.2.77\" }}]\n"
    );
    let fx = fixture("fibfail", &cfg);
    let syn = |vip: &str| fx.client_frame(&ipv4("203.0.113.2", vip, 6, &tcp("203.0.113.2", vip, 40009, 80, 0x02, b"")), false);
    // No route to the backend: not a missing neighbour.
    fx.expect("backend without a route", &syn("198.51.100.70"), fx.in_if, XDP_DROP, "drop_no_route");
    // Forwarding turned off on the way out.
    // (bpf_fib_lookup asks the interface the packet came in by.)
    fx.net.ns.exec("sysctl -qw net.ipv4.conf.in0.forwarding=0");
    fx.expect("forwarding off", &syn("198.51.100.10"), fx.in_if, XDP_DROP, "drop_forwarding_off");
}

#[test]
fn dr_mode_sends_the_packet_untouched_to_the_backends_mac() {
    if !need_root("dr_mode_sends_the_packet_untouched_to_the_backends_mac") {
        return;
    }
    let cfg = format!(
        "{CONFIG}
[[vip]]
name = \"dr4\"
address = \"198.51.100.80\"
port = 80
protocol = \"tcp\"
mode = \"dr\"
backends = [{{ address = \"10.0.0.11\" }}, {{ address = \"10.0.0.12\" }}]

[[vip]]
name = \"dr6\"
address = \"2001:db8:100::80\"
port = 80
protocol = \"tcp\"
mode = \"dr\"
backends = [{{ address = \"fd00::13\" }}]

[[vip]]
name = \"drfar\"
address = \"198.51.100.81\"
port = 80
protocol = \"tcp\"
mode = \"dr\"
backends = [{{ address = \"192.0.2.5\" }}]
"
    );
    let fx = fixture("dr", &cfg);
    // 192.0.2.0/24 is behind a router on the private side: not a segment of the LB's.
    fx.net.ns.exec("ip route add 192.0.2.0/24 via 10.0.0.11");
    for (what, src, vip, v6) in [
        ("DR IPv4", "203.0.113.2", "198.51.100.80", false),
        ("DR IPv6", "2001:db8:1::2", "2001:db8:100::80", true),
    ] {
        let packet = if v6 {
            ipv6(src, vip, 6, &tcp(src, vip, 40010, 80, 0x02, b""))
        } else {
            ipv4(src, vip, 6, &tcp(src, vip, 40010, 80, 0x02, b""))
        };
        let out = fx.expect(what, &fx.client_frame(&packet, v6), fx.in_if, XDP_REDIRECT, "forwarded");
        assert_eq!(out[14..], packet[..], "{what}: the IP packet is untouched");
        assert_eq!(out[6..12], fx.out_mac, "{what}: from the private interface's MAC");
        let last = out[5];
        assert!(
            if v6 { last == 0x13 } else { last == 0x11 || last == 0x12 },
            "{what}: to a backend's MAC: {:02x?}",
            &out[0..6]
        );
    }
    let far = ipv4("203.0.113.2", "198.51.100.81", 6, &tcp("203.0.113.2", "198.51.100.81", 40011, 80, 0x02, b""));
    fx.expect("DR backend behind a router", &fx.client_frame(&far, false), fx.in_if, XDP_DROP, "drop_dr_not_on_link");
}

#[test]
fn icmp_too_big_reaches_the_flows_backend() {
    if !need_root("icmp_too_big_reaches_the_flows_backend") {
        return;
    }
    let fx = fixture("icmp", CONFIG);
    // v4 tunnel: open the flow (its ACK: a bare SYN makes no table entry), then send the
    // ICMP a router would send to the VIP.
    let syn =
        ipv4("203.0.113.2", "198.51.100.10", 6, &tcp("203.0.113.2", "198.51.100.10", 42000, 80, 0x10, b""));
    let (_, out) = fx.run(&fx.client_frame(&syn, false), fx.in_if);
    let backend = parse_ip(&out[14..]).dst;
    let quoted = ipv4(
        "198.51.100.10",
        "203.0.113.2",
        6,
        &tcp("198.51.100.10", "203.0.113.2", 80, 42000, 0x10, &[0u8; 8]),
    );
    let icmp = ipv4("203.0.113.254", "198.51.100.10", 1, &icmp4(3, 4, 1400, &quoted));
    let out = fx.expect(
        "v4 frag needed",
        &fx.client_frame(&icmp, false),
        fx.in_if,
        XDP_REDIRECT,
        "icmp_to_backend",
    );
    let outer = parse_ip(&out[14..]);
    assert_eq!(outer.proto, 4);
    assert_eq!(outer.dst, backend, "ICMP goes to the flow's backend");
    assert_eq!(outer.payload, &icmp[..]);

    // v6 tunnel.
    let syn = ipv6(
        "2001:db8:1::2",
        "2001:db8:100::10",
        6,
        &tcp("2001:db8:1::2", "2001:db8:100::10", 42001, 80, 0x10, b""),
    );
    let (_, out) = fx.run(&fx.client_frame(&syn, true), fx.in_if);
    let backend = parse_ip(&out[14..]).dst;
    let quoted = ipv6(
        "2001:db8:100::10",
        "2001:db8:1::2",
        6,
        &tcp("2001:db8:100::10", "2001:db8:1::2", 80, 42001, 0x10, &[0u8; 8]),
    );
    let icmp = ipv6(
        "2001:db8:1::fe",
        "2001:db8:100::10",
        58,
        &icmp6("2001:db8:1::fe", "2001:db8:100::10", 2, 0, 1280, &quoted),
    );
    let out = fx.expect(
        "v6 packet too big",
        &fx.client_frame(&icmp, true),
        fx.in_if,
        XDP_REDIRECT,
        "icmp_to_backend",
    );
    let outer = parse_ip(&out[14..]);
    assert_eq!(outer.proto, 41);
    assert_eq!(outer.dst, backend);

    // v4 NAT: outer destination and the quoted source become the backend, checksums hold.
    let syn =
        ipv4("203.0.113.2", "198.51.100.20", 6, &tcp("203.0.113.2", "198.51.100.20", 42002, 80, 0x10, b""));
    let (_, out) = fx.run(&fx.client_frame(&syn, false), fx.in_if);
    let backend = parse_ip(&out[14..]).dst;
    let quoted = ipv4(
        "198.51.100.20",
        "203.0.113.2",
        6,
        &tcp("198.51.100.20", "203.0.113.2", 80, 42002, 0x10, &[0u8; 8]),
    );
    let icmp = ipv4("203.0.113.254", "198.51.100.20", 1, &icmp4(3, 4, 1400, &quoted));
    let out = fx.expect(
        "v4 NAT frag needed",
        &fx.client_frame(&icmp, false),
        fx.in_if,
        XDP_REDIRECT,
        "icmp_to_backend",
    );
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst, backend);
    checksums_ok(&out[14..]).unwrap();
    let inner = parse_ip(&ip.payload[8..]);
    assert_eq!(inner.src, backend, "quoted source is the backend");
    assert_eq!(&ip.payload[8 + 20..8 + 22], &8080u16.to_be_bytes(), "quoted source port is the backend's");
    assert_eq!(csum_fold(csum_add(0, inner.header)), 0, "quoted IPv4 header checksum");

    // v6 NAT.
    let q = ipv6(
        "2001:db8:1::2",
        "2001:db8:100::20",
        17,
        &udp("2001:db8:1::2", "2001:db8:100::20", 42003, 53, b"q"),
    );
    fx.run(&fx.client_frame(&q, true), fx.in_if);
    let quoted = ipv6(
        "2001:db8:100::20",
        "2001:db8:1::2",
        17,
        &udp("2001:db8:100::20", "2001:db8:1::2", 53, 42003, b"a"),
    );
    let icmp = ipv6(
        "2001:db8:1::fe",
        "2001:db8:100::20",
        58,
        &icmp6("2001:db8:1::fe", "2001:db8:100::20", 2, 0, 1280, &quoted),
    );
    let out = fx.expect(
        "v6 NAT packet too big",
        &fx.client_frame(&icmp, true),
        fx.in_if,
        XDP_REDIRECT,
        "icmp_to_backend",
    );
    let ip = parse_ip(&out[14..]);
    assert_eq!(ip.dst.to_string(), "fd00::11");
    checksums_ok(&out[14..]).unwrap();
    let inner = parse_ip(&ip.payload[8..]);
    assert_eq!(inner.src.to_string(), "fd00::11");
    assert_eq!(&ip.payload[8 + 40..8 + 42], &5353u16.to_be_bytes());
}

/// A forged ICMP "fragmentation needed" / "packet too big" quoting a flow that is not open
/// yet must not open it: the flow's real first packet is then a new flow, so NAT records
/// its reply tuple and the backend's answers leave as the VIP. (Before the fix the ICMP
/// picked a backend and wrote the connection-table entry; the first packet found it, no
/// reply entry was made, and answers left from the backend's own address.)
#[test]
fn forged_icmp_opens_no_flow() {
    if !need_root("forged_icmp_opens_no_flow") {
        return;
    }
    let fx = fixture("icmpforge", CONFIG);
    let client4 = "203.0.113.2";
    let client6 = "2001:db8:1::2";
    // (v6, protocol, VIP, VIP port, client port, the port the backend answers from)
    let cases = [
        (false, 6, "198.51.100.20", 80, 43000, 8080),
        (false, 17, "198.51.100.20", 53, 43001, 53),
        (true, 17, "2001:db8:100::20", 53, 43002, 5353),
        (true, 6, "2001:db8:100::20", 80, 43003, 8080),
    ];
    for (v6, proto, vip, vport, cport, bport) in cases {
        let what = format!(
            "{} {} {vip}:{vport}",
            if v6 { "v6" } else { "v4" },
            if proto == 6 { "tcp" } else { "udp" }
        );
        let client = if v6 { client6 } else { client4 };
        let l4 = |src: &str, dst: &str, sport: u16, dport: u16, flags: u8| match proto {
            6 => tcp(src, dst, sport, dport, flags, b""),
            _ => udp(src, dst, sport, dport, b"x"),
        };
        let ip = |src: &str, dst: &str, payload: &[u8]| {
            if v6 {
                ipv6(src, dst, proto, payload)
            } else {
                ipv4(src, dst, proto, payload)
            }
        };
        // What a router would quote: a packet of the flow from the VIP to the client.
        let quoted = ip(vip, client, &l4(vip, client, vport, cport, 0x10));
        let forged = if v6 {
            ipv6("2001:db8:1::fe", vip, 58, &icmp6("2001:db8:1::fe", vip, 2, 0, 1280, &quoted))
        } else {
            ipv4("203.0.113.254", vip, 1, &icmp4(3, 4, 576, &quoted))
        };
        fx.expect(
            &format!("{what}: forged ICMP"),
            &fx.client_frame(&forged, v6),
            fx.in_if,
            XDP_DROP,
            "drop_icmp_no_flow",
        );

        let first = ip(client, vip, &l4(client, vip, cport, vport, 0x02));
        let out = fx.expect(
            &format!("{what}: first packet"),
            &fx.client_frame(&first, v6),
            fx.in_if,
            XDP_REDIRECT,
            "forwarded",
        );
        let backend = parse_ip(&out[14..]).dst.to_string();
        let reply = ip(&backend, client, &l4(&backend, client, bport, cport, 0x12));
        let last = u8::from_str_radix(&backend[backend.len() - 2..], 16).unwrap();
        let frame = eth(fx.out_mac, backend_mac(last), if v6 { ETH_IPV6 } else { ETH_IP }, &reply);
        let out = fx.expect(
            &format!("{what}: the backend's reply"),
            &frame,
            fx.out_if,
            XDP_REDIRECT,
            "nat_replies",
        );
        let ip_out = parse_ip(&out[14..]);
        assert_eq!(ip_out.src.to_string(), vip, "{what}: the reply leaves as the VIP");
        assert_eq!(
            u16::from_be_bytes([ip_out.payload[0], ip_out.payload[1]]),
            vport,
            "{what}: from the VIP's port"
        );
        checksums_ok(&out[14..]).unwrap();
    }

    // Tunnel mode: the same forged ICMP is dropped too.
    let quoted =
        ipv4("198.51.100.10", client4, 6, &tcp("198.51.100.10", client4, 80, 43010, 0x10, &[0u8; 8]));
    let forged = ipv4("203.0.113.254", "198.51.100.10", 1, &icmp4(3, 4, 576, &quoted));
    fx.expect(
        "tunnel: forged ICMP",
        &fx.client_frame(&forged, false),
        fx.in_if,
        XDP_DROP,
        "drop_icmp_no_flow",
    );
}

#[test]
fn decap_program_strips_tunnel_headers() {
    if !need_root("decap_program_strips_tunnel_headers") {
        return;
    }
    let fx = fixture("dec", CONFIG);
    let prog = fx.dp.program(ballast_l4::dataplane::PROG_DECAP).unwrap();
    let run = |frame: &[u8]| {
        let mut out = vec![0u8; frame.len() + 64];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .unwrap();
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    };
    let inner4 = ipv4("203.0.113.2", "198.51.100.10", 6, &tcp("203.0.113.2", "198.51.100.10", 1, 80, 2, b""));
    let inner6 =
        ipv6("2001:db8:1::2", "2001:db8:100::10", 17, &udp("2001:db8:1::2", "2001:db8:100::10", 1, 53, b"x"));
    let m1 = [2, 0, 0, 0, 0, 0x11];
    let m2 = [2, 0, 0, 0, 0, 0x01];
    let cases = [
        ("ipip", eth(m1, m2, ETH_IP, &ipv4("10.0.0.1", "10.0.0.11", 4, &inner4)), Some((ETH_IP, &inner4))),
        (
            "ip6ip6",
            eth(m1, m2, ETH_IPV6, &ipv6("fd00::1", "fd00::11", 41, &inner6)),
            Some((ETH_IPV6, &inner6)),
        ),
        ("6in4", eth(m1, m2, ETH_IP, &ipv4("10.0.0.1", "10.0.0.11", 41, &inner6)), Some((ETH_IPV6, &inner6))),
        ("4in6", eth(m1, m2, ETH_IPV6, &ipv6("fd00::1", "fd00::11", 4, &inner4)), Some((ETH_IP, &inner4))),
        ("plain", eth(m1, m2, ETH_IP, &inner4), None),
    ];
    for (what, frame, want) in cases {
        let (v, out) = run(&frame);
        assert_eq!(v, XDP_PASS, "{what}");
        match want {
            Some((ethertype, inner)) => {
                assert_eq!(out[..12], frame[..12], "{what}: MACs kept");
                assert_eq!(u16::from_be_bytes([out[12], out[13]]), ethertype, "{what}: ethertype");
                assert_eq!(&out[14..], &inner[..], "{what}: inner packet");
            }
            None => assert_eq!(out, frame, "{what}: untouched"),
        }
    }
}

/// A bounded fuzz of the parser through the verifier-checked program: valid frames with
/// random bytes flipped, cut short or padded never abort, never hit an internal error.
#[test]
fn mutated_frames_never_abort() {
    if !need_root("mutated_frames_never_abort") {
        return;
    }
    let fx = fixture("fuzz", CONFIG);
    let seeds: Vec<Vec<u8>> = vec![
        fx.client_frame(
            &ipv4("203.0.113.2", "198.51.100.10", 6, &tcp("203.0.113.2", "198.51.100.10", 1, 80, 2, b"abc")),
            false,
        ),
        fx.client_frame(
            &ipv4("203.0.113.2", "198.51.100.20", 17, &udp("203.0.113.2", "198.51.100.20", 1, 53, b"abc")),
            false,
        ),
        fx.client_frame(
            &ipv6(
                "2001:db8:1::2",
                "2001:db8:100::10",
                6,
                &tcp("2001:db8:1::2", "2001:db8:100::10", 1, 80, 2, b""),
            ),
            true,
        ),
        fx.client_frame(
            &ipv6(
                "2001:db8:1::2",
                "2001:db8:100::20",
                17,
                &udp("2001:db8:1::2", "2001:db8:100::20", 1, 53, b""),
            ),
            true,
        ),
        fx.client_frame(
            &ipv4(
                "203.0.113.9",
                "198.51.100.10",
                1,
                &icmp4(
                    3,
                    4,
                    1400,
                    &ipv4(
                        "198.51.100.10",
                        "203.0.113.2",
                        6,
                        &tcp("198.51.100.10", "203.0.113.2", 80, 1, 0x10, b""),
                    ),
                ),
            ),
            false,
        ),
        fx.client_frame(
            &ipv6(
                "2001:db8:1::9",
                "2001:db8:100::20",
                58,
                &icmp6(
                    "2001:db8:1::9",
                    "2001:db8:100::20",
                    2,
                    0,
                    1280,
                    &ipv6(
                        "2001:db8:100::20",
                        "2001:db8:1::2",
                        17,
                        &udp("2001:db8:100::20", "2001:db8:1::2", 53, 1, b""),
                    ),
                ),
            ),
            true,
        ),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut verdicts = [0usize; 5];
    for i in 0..3000 {
        let mut f = seeds[i % seeds.len()].clone();
        match rnd() % 4 {
            0 => f.truncate(14 + (rnd() as usize % (f.len() - 13))),
            1 => f.extend((0..rnd() % 64).map(|_| rnd() as u8)),
            _ => {}
        }
        for _ in 0..1 + rnd() % 6 {
            // Mostly headers: that is where the parser looks.
            let at = 12 + (rnd() as usize % (f.len() - 12).min(80));
            f[at] = rnd() as u8;
        }
        let (v, _) = fx.run(&f, fx.in_if);
        assert!((1..=4).contains(&v), "frame {i} gave verdict {v}: {f:02x?}");
        verdicts[v as usize] += 1;
    }
    let c = fx.counters();
    assert_eq!(c["drop_internal"], 0, "{c:?}");
    println!(
        "3000 mutated frames: drop {} pass {} tx {} redirect {}",
        verdicts[1], verdicts[2], verdicts[3], verdicts[4]
    );
}

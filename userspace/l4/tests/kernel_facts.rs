//! Measured facts about native XDP on veth on this kernel, which shape the test network
//! (scripts/topo.sh) and the docs:
//! 1. a frame XDP_REDIRECTed into a veth reaches the peer only if the peer runs an XDP
//!    program or has GRO on;
//! 2. packets sent from a namespace with tx checksum offload on carry partial checksums,
//!    which a redirect loses: the receiver drops them as bad checksums.
//!
//! The workarounds (XDP program or GRO on the receiving peer; `ethtool -K dev tx off` on the
//! sender) are asserted. The failures without them are measured and printed, not asserted,
//! so a kernel that fixes them does not fail the suite.

use std::{net::UdpSocket, time::Duration};

use ballast_l4::{
    config::L4Config,
    dataplane::{self, AttachMode, Dataplane, PROG_LB, PROG_PASS},
};
use ballast_testkit::{enter, need_root, Netns};

const CONFIG: &str = r#"
[[vip]]
name = "probe"
address = "198.51.100.1"
port = 9
protocol = "udp"
mode = "nat"
backends = [{ address = "10.9.0.2" }]
"#;

/// Sends `n` datagrams tagged `tag` from the client namespace to the VIP; returns how
/// many the backend socket received, waiting up to 2 s for them (a late datagram of an
/// earlier phase has another tag and is not counted).
fn delivered(client: &Netns, backend: &UdpSocket, n: usize, tag: u8) -> usize {
    enter(&client.name, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            s.send_to(&[b'f', tag], "198.51.100.1:9").unwrap();
        }
    });
    let mut got = 0;
    let mut buf = [0u8; 64];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        backend.set_read_timeout(Some(left)).unwrap();
        match backend.recv(&mut buf) {
            Ok(2) if buf[..2] == [b'f', tag] => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn veth_native_xdp_redirect_and_partial_checksum_facts() {
    if !need_root("veth_native_xdp_redirect_and_partial_checksum_facts") {
        return;
    }
    let (c, r, d) = (Netns::new("fc"), Netns::new("fr"), Netns::new("fd"));
    ballast_testkit::run(&format!("ip link add c0 netns {} type veth peer name r0 netns {}", c.name, r.name));
    ballast_testkit::run(&format!("ip link add r1 netns {} type veth peer name d0 netns {}", r.name, d.name));
    for cmd in
        ["ip addr add 203.0.113.2/24 dev c0", "ip link set c0 up", "ip route add default via 203.0.113.1"]
    {
        c.exec(cmd);
    }
    for cmd in [
        "ip addr add 203.0.113.1/24 dev r0",
        "ip addr add 10.9.0.1/24 dev r1",
        "ip link set r0 up",
        "ip link set r1 up",
        "sysctl -qw net.ipv4.ip_forward=1",
    ] {
        r.exec(cmd);
    }
    for cmd in ["ip addr add 10.9.0.2/24 dev d0", "ip link set d0 up", "ethtool -K d0 gro off"] {
        d.exec(cmd);
    }
    let d_mac = d.exec("cat /sys/class/net/d0/address");
    r.exec(&format!("ip neigh replace 10.9.0.2 lladdr {} dev r1 nud permanent", d_mac.trim()));
    let c_mac = c.exec("cat /sys/class/net/c0/address");
    let r_mac = r.exec("cat /sys/class/net/r0/address");
    r.exec(&format!("ip neigh replace 203.0.113.2 lladdr {} dev r0 nud permanent", c_mac.trim()));
    c.exec(&format!("ip neigh replace 203.0.113.1 lladdr {} dev c0 nud permanent", r_mac.trim()));

    let cfg = L4Config::parse(CONFIG).unwrap();
    let mut dp = Dataplane::load(&cfg.device, 0).unwrap();
    dp.apply(cfg).unwrap();
    enter(&r.name, || dataplane::attach(&mut dp.ebpf, PROG_LB, "r0", AttachMode::Native).unwrap());
    let backend = enter(&d.name, || UdpSocket::bind("10.9.0.2:9").unwrap());
    let n = 5;

    c.exec("ethtool -K c0 tx off");
    let bare = delivered(&c, &backend, n, 0);
    d.exec("ethtool -K d0 gro on");
    let with_gro = delivered(&c, &backend, n, 1);
    d.exec("ethtool -K d0 gro off");
    let mut pass = dataplane::load_object(None, 0).unwrap();
    enter(&d.name, || dataplane::attach(&mut pass, PROG_PASS, "d0", AttachMode::Native).unwrap());
    let with_xdp = delivered(&c, &backend, n, 2);
    c.exec("ethtool -K c0 tx on");
    let partial = delivered(&c, &backend, n, 3);
    let csum_errors = d.exec("cat /proc/net/snmp");

    println!("facts about this kernel ({}):", ballast_testkit::run("uname -r").trim());
    println!("  redirect into a veth whose peer has no XDP program, GRO off: {bare}/{n} delivered");
    println!("  same, peer GRO on:                                          {with_gro}/{n} delivered");
    println!("  same, peer runs an XDP program (ballast pass):              {with_xdp}/{n} delivered");
    println!("  sender with tx checksum offload on (partial checksums):    {partial}/{n} delivered");
    let udp_line = csum_errors.lines().filter(|l| l.starts_with("Udp:")).nth(1).unwrap_or("");
    println!("  receiver's Udp counters after that: {udp_line}");
    assert_eq!(with_gro, n, "GRO on the receiving veth must make redirects deliver");
    assert_eq!(with_xdp, n, "an XDP program on the receiving veth must make redirects deliver");
    if bare > 0 {
        println!("  note: this kernel delivers redirects to a veth without XDP/GRO");
    }
    if partial == n {
        println!("  note: this kernel keeps partial checksums across XDP redirect");
    }
}

//! End to end in network namespaces: client → lb (`ballast lb`, native XDP on veth) →
//! bridge → backends, for tunnel (IPIP/IP6IP6, with `ballast decap` on the backends), NAT
//! and direct routing, over IPv4 and IPv6. Real sockets, real kernel forwarding, the real
//! binary.
mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{atomic::AtomicBool, Arc},
};

use common::{
    enter, need_root, sh,
    servers::{self, ask_on, tcp_ask, tcp_upload, udp_ask, udp_flow},
    topo::{ballast_bin, Topo},
    Child,
};

struct Variant {
    label: &'static str,
    vip: &'static str,
    mode: &'static str,
}

const VARIANTS: [Variant; 6] = [
    Variant { label: "t4", vip: "198.51.100.10", mode: "tunnel" },
    Variant { label: "t6", vip: "2001:db8:100::10", mode: "tunnel" },
    Variant { label: "n4", vip: "198.51.100.20", mode: "nat" },
    Variant { label: "n6", vip: "2001:db8:100::20", mode: "nat" },
    Variant { label: "d4", vip: "198.51.100.30", mode: "dr" },
    Variant { label: "d6", vip: "2001:db8:100::30", mode: "dr" },
];

/// Tells the test's servers to stop when the test ends, passed or failed.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn backend_addr(v: &Variant, i: usize) -> String {
    if v.vip.contains(':') {
        format!("fd00::1{i}")
    } else {
        format!("10.0.0.1{i}")
    }
}

/// The L4 config with, for each variant, the backends `pick(label)` names (1-based).
fn config(pick: &dyn Fn(&str) -> Vec<usize>) -> String {
    let mut s = String::from(
        "[device]\ntunnel_source_v4 = \"10.0.0.1\"\ntunnel_source_v6 = \"fd00::1\"\nmax_vips = 16\n",
    );
    for v in &VARIANTS {
        for (proto, port) in [("tcp", 80u16), ("udp", 53)] {
            let backends: Vec<String> = pick(v.label)
                .into_iter()
                .map(|i| {
                    // NAT TCP also shows the port rewrite: backends listen on 8080 as well.
                    let port = if v.mode == "nat" && proto == "tcp" { ", port = 8080" } else { "" };
                    format!("{{ address = \"{}\"{port} }}", backend_addr(v, i))
                })
                .collect();
            s.push_str(&format!(
                "\n[[vip]]\nname = \"{}-{proto}\"\naddress = \"{}\"\nport = {port}\nprotocol = \"{proto}\"\nmode = \"{}\"\nbackends = [{}]\n",
                v.label,
                v.vip,
                v.mode,
                backends.join(", ")
            ));
        }
    }
    // A VIP with no backend: its packets are dropped, and the XDP program says so through
    // aya-log (a debug line, so the LB runs with --bpf-log-level 4).
    s.push_str("\n[[vip]]\nname = \"nobody\"\naddress = \"198.51.100.99\"\nport = 9\nprotocol = \"udp\"\n");
    s
}

fn sock(addr: &str, port: u16) -> SocketAddr {
    if addr.contains(':') {
        format!("[{addr}]:{port}").parse().unwrap()
    } else {
        format!("{addr}:{port}").parse().unwrap()
    }
}

fn shares(counts: &BTreeMap<String, usize>, total: usize) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k}={n} ({:.0}%)", *n as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_spread(what: &str, counts: &BTreeMap<String, usize>, total: usize, expect: &[&str]) {
    let got: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(got, expect, "{what}: backends reached: {}", shares(counts, total));
    for (b, n) in counts {
        let share = *n as f64 / total as f64;
        assert!(
            (0.20..=0.47).contains(&share),
            "{what}: {b} got {:.1}%: {}",
            share * 100.0,
            shares(counts, total)
        );
    }
    println!("{what}: {}", shares(counts, total));
}

#[test]
fn vip_traffic_is_balanced_in_namespaces_tunnel_nat_and_dr_ipv4_and_ipv6() {
    if !need_root("vip_traffic_is_balanced_in_namespaces_tunnel_nat_and_dr_ipv4_and_ipv6") {
        return;
    }
    let topo = Topo::up("e2e", 4);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_servers = StopOnDrop(stop.clone());

    // Tunnel and DR VIPs live on the backends' loopback (as with LVS-TUN / LVS-DR), which
    // do not answer ARP for them (topo.sh sets arp_ignore / arp_announce).
    topo.vips_on_backends(&["198.51.100.10", "2001:db8:100::10", "198.51.100.30", "2001:db8:100::30"]);
    let mut decaps: Vec<Child> = Vec::new();
    for i in 1..=4 {
        let ns = topo.backend_ns(i);
        let name = format!("b{i}");
        let tcp = vec![sock("::", 80), sock("::", 8080)];
        let udp = vec![
            sock("198.51.100.10", 53),
            sock("2001:db8:100::10", 53),
            sock("198.51.100.30", 53),
            sock("2001:db8:100::30", 53),
            sock(&format!("10.0.0.1{i}"), 53),
            sock(&format!("fd00::1{i}"), 53),
        ];
        servers::start(&ns, &name, tcp, udp, stop.clone());
        // Backend 4 runs the decap program in generic (skb) mode, the others native.
        let mode = if i == 4 { "generic" } else { "native" };
        decaps.push(topo.ballast(&ns, &format!("decap{i}.log"), &["decap", "--iface", "b0", "--mode", mode]));
    }

    let cfg_path = topo.dir.join("l4.toml");
    let socket = topo.dir.join("lb.sock");
    std::fs::write(&cfg_path, config(&|_| vec![1, 2, 3])).unwrap();
    let _lb = topo.ballast(
        &topo.ns("l"),
        "lb.log",
        &[
            "lb",
            "--iface",
            "l0",
            "--also",
            "l1",
            "--mode",
            "native",
            "--config",
            cfg_path.to_str().unwrap(),
            "--control",
            socket.to_str().unwrap(),
            "--bpf-log-level",
            "4",
        ],
    );
    topo.wait_for_lb(&socket);
    for i in 1..=4 {
        let log = format!("decap{i}.log");
        topo.wait_for("ballast decap to attach", 20, || topo.log(&log).contains("attached"));
    }
    let client = topo.ns("c");
    let reload = |text: String| {
        std::fs::write(&cfg_path, text).unwrap();
        let out = std::process::Command::new(ballast_bin())
            .args(["reload", "--control", socket.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stdout));
    };

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for v in &VARIANTS {
            let tcp_vip = sock(v.vip, 80);
            let udp_vip = sock(v.vip, 53);

            // 300 short TCP connections spread over the three backends.
            let counts = enter(&client, || {
                let mut c = BTreeMap::new();
                for n in 0..300 {
                    let who = tcp_ask(tcp_vip)
                        .unwrap_or_else(|e| panic!("{}: TCP connection {n} to {tcp_vip}: {e}", v.label));
                    *c.entry(who).or_insert(0) += 1;
                }
                c
            });
            assert_spread(&format!("{} TCP 300 connections", v.label), &counts, 300, &["b1", "b2", "b3"]);

            // Uploads of many full-size segments. Through a tunnel they do not fit once
            // encapsulated: the LB answers "too big" with the tunnel's MTU and the client's
            // TCP resends smaller segments (it stalled before).
            for len in [4_000usize, 200_000] {
                let answer = enter(&client, || tcp_upload(tcp_vip, len))
                    .unwrap_or_else(|e| panic!("{}: upload of {len} bytes to {tcp_vip}: {e}", v.label));
                assert!(answer.ends_with(&format!(" {len}")), "{}: upload of {len} bytes: {answer}", v.label);
            }

            // 300 UDP flows, kept open to check later which ones moved.
            let flows = enter(&client, || (0..300).map(|_| udp_flow(udp_vip)).collect::<Vec<_>>());
            let before: Vec<String> = flows
                .iter()
                .enumerate()
                .map(|(n, f)| {
                    udp_ask(f).unwrap_or_else(|e| panic!("{}: UDP flow {n} to {udp_vip}: {e}", v.label))
                })
                .collect();
            let mut counts = BTreeMap::new();
            for b in &before {
                *counts.entry(b.clone()).or_insert(0) += 1;
            }
            assert_spread(&format!("{} UDP 300 flows", v.label), &counts, 300, &["b1", "b2", "b3"]);

            // A long-lived connection survives another backend's removal and a new one's arrival.
            let mut long = enter(&client, || std::net::TcpStream::connect(tcp_vip).unwrap());
            let home = ask_on(&mut long).unwrap();
            let home_i: usize = home[1..].parse().unwrap();
            let removed = if home_i == 1 { 2 } else { 1 };
            let kept: Vec<usize> = [1, 2, 3].into_iter().filter(|&i| i != removed).chain([4]).collect();
            reload(config(&|l| {
                if l == v.label {
                    kept.clone()
                } else {
                    vec![1, 2, 3]
                }
            }));
            for n in 0..5 {
                let again = ask_on(&mut long).unwrap_or_else(|e| {
                    panic!("{}: long-lived connection broke after reload ({n}): {e}", v.label)
                });
                assert_eq!(again, home, "{}: long-lived connection changed backend", v.label);
            }

            // Only the removed backend's UDP flows moved.
            let removed_name = format!("b{removed}");
            let mut moved = 0;
            for (n, (f, old)) in flows.iter().zip(&before).enumerate() {
                let now =
                    udp_ask(f).unwrap_or_else(|e| panic!("{}: UDP flow {n} after reload: {e}", v.label));
                if *old == removed_name {
                    assert_ne!(now, removed_name, "{}: flow {n} still on the removed backend", v.label);
                    moved += 1;
                } else {
                    assert_eq!(
                        &now, old,
                        "{}: flow {n} moved from {old} to {now} although {old} stayed",
                        v.label
                    );
                }
            }
            println!(
                "{}: removed {removed_name}: its {moved} UDP flows moved, the other {} stayed",
                v.label,
                300 - moved
            );

            // New connections now reach the new backend b4 and never the removed one.
            let counts = enter(&client, || {
                let mut c = BTreeMap::new();
                for _ in 0..60 {
                    *c.entry(tcp_ask(tcp_vip).unwrap()).or_insert(0) += 1;
                }
                c
            });
            assert!(
                counts.contains_key("b4") && !counts.contains_key(&removed_name),
                "{}: after reload: {counts:?}",
                v.label
            );
        }

        // A bad config is refused whole, naming the field; traffic goes on as before.
        let good = std::fs::read_to_string(&cfg_path).unwrap();
        std::fs::write(&cfg_path, good.replace("address = \"10.0.0.13\"", "address = \"10.0.0.x\"")).unwrap();
        let out = std::process::Command::new(ballast_bin())
            .args(["reload", "--control", socket.to_str().unwrap()])
            .output()
            .unwrap();
        let reply = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "bad config accepted: {reply}");
        assert!(reply.contains(r#"backends[2].address: \"10.0.0.x\" is not an IP address"#), "{reply}");
        std::fs::write(&cfg_path, good).unwrap();
        let counts = enter(&client, || {
            (0..30).map(|_| tcp_ask(sock("198.51.100.10", 80)).unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(counts.len(), 30);

        // aya-log: the program's debug line about the VIP without backends reaches the log.
        enter(&client, || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"x", "198.51.100.99:9").unwrap();
        });
        topo.wait_for("the eBPF log line in lb.log", 10, || topo.log("lb.log").contains("has no backend"));
    }));

    // What the LB counted, for the log (and a check that stats see the traffic).
    let stats = std::process::Command::new(ballast_bin())
        .args(["stats", "--control", socket.to_str().unwrap()])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&stats.stdout));
    if let Err(e) = result {
        eprintln!("--- lb.log ---\n{}", topo.log("lb.log"));
        std::panic::resume_unwind(e);
    }
    let json = std::process::Command::new(ballast_bin())
        .args(["stats", "--json", "--control", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let report: ballast_l4::dataplane::StatsReport = serde_json::from_slice(&json.stdout).unwrap();
    for v in report.vips.iter().filter(|v| v.name != "nobody") {
        assert!(v.new_flows >= 300, "{}: only {} flows counted", v.name, v.new_flows);
    }
    let counter = |name: &str| report.counters.get(name).copied().unwrap_or(0);
    assert!(counter("icmp_too_big_sent") > 0, "the tunnel uploads were never told the MTU: {:?}", report.counters);
    assert_eq!(counter("drop_redirect_failed"), 0, "{:?}", report.counters);
    drop(decaps);
    for i in 1..=4 {
        let log = topo.log(&format!("decap{i}.log"));
        assert!(!log.contains("decapsulated 0 packets"), "backend {i} decapsulated nothing: {log}");
    }
}

/// `ballast stats --json` counters of the LB behind `socket`.
fn lb_counters(socket: &std::path::Path) -> BTreeMap<String, u64> {
    let json = std::process::Command::new(ballast_bin())
        .args(["stats", "--json", "--control", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let report: ballast_l4::dataplane::StatsReport =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("stats: {e}"));
    report.counters
}

#[test]
fn failed_redirects_are_counted_and_auto_never_mixes_native_and_generic() {
    if !need_root("failed_redirects_are_counted_and_auto_never_mixes_native_and_generic") {
        return;
    }
    let topo = Topo::up("rdr", 1);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_servers = StopOnDrop(stop.clone());
    servers::start(&topo.backend_ns(1), "b1", vec![], vec![sock("10.0.0.11", 53)], stop.clone());
    let cfg_path = topo.dir.join("l4.toml");
    std::fs::write(
        &cfg_path,
        "[device]\n\n[[vip]]\nname = \"dns\"\naddress = \"198.51.100.20\"\nport = 53\nprotocol = \"udp\"\nmode = \"nat\"\nbackends = [{ address = \"10.0.0.11\" }]\n",
    )
    .unwrap();
    let client = topo.ns("c");
    let lb_ns = topo.ns("l");
    let start_lb = |log: &str, socket: &std::path::Path, ifaces: &[&str], mode: &str| {
        let mut args = vec!["lb", "--iface", ifaces[0]];
        for i in &ifaces[1..] {
            args.extend(["--also", i]);
        }
        args.extend(["--mode", mode, "--config", cfg_path.to_str().unwrap(), "--control", socket.to_str().unwrap()]);
        let lb = topo.ballast(&lb_ns, log, &args);
        topo.wait_for_lb(&socket);
        lb
    };
    let ask = || enter(&client, || udp_ask(&udp_flow(sock("198.51.100.20", 53))));

    // 1. Native on both sides, but the private veth's peer runs neither XDP nor GRO: the
    //    kernel drops every frame redirected into it. The drops show in the counters.
    sh(&["ip", "netns", "exec", &topo.ns("s"), "ethtool", "-K", "s0", "gro", "off"]);
    let socket = topo.dir.join("lb1.sock");
    let lb = start_lb("lb1.log", &socket, &["l0", "l1"], "native");
    for _ in 0..5 {
        assert!(ask().is_err(), "answered although the redirect target cannot take XDP frames");
    }
    let counters = lb_counters(&socket);
    println!("native into a veth without XDP or GRO: {counters:?}");
    assert!(counters["drop_redirect_failed"] > 0, "the failed redirects were not counted: {counters:?}");
    drop(lb);

    // 2. The private side is a Linux bridge on the LB (backends behind it), which has no
    //    native XDP. `auto` attaches generic mode everywhere, not native on the public side
    //    (whose redirects to a bridge would all fail), and the VIP answers.
    sh(&["ip", "netns", "exec", &topo.ns("s"), "ethtool", "-K", "s0", "gro", "on"]);
    for cmd in [
        "ip link add lbr type bridge",
        "ip addr flush dev l1",
        "ip link set l1 master lbr",
        "ip addr add 10.0.0.1/24 dev lbr",
        "ip link set lbr up",
    ] {
        let args: Vec<&str> = ["ip", "netns", "exec", lb_ns.as_str()].into_iter().chain(cmd.split(' ')).collect();
        sh(&args);
    }
    let socket = topo.dir.join("lb2.sock");
    let _lb = start_lb("lb2.log", &socket, &["l0", "lbr"], "auto");
    let log = topo.log("lb2.log");
    assert!(
        log.contains("attached to l0 (generic mode)") && log.contains("attached to lbr (generic mode)"),
        "auto left a mix: {log}"
    );
    let answers: Vec<String> = (0..5).map(|n| ask().unwrap_or_else(|e| panic!("ask {n} through the bridge: {e}"))).collect();
    assert!(answers.iter().all(|a| a == "b1"), "{answers:?}");
    let counters = lb_counters(&socket);
    assert_eq!(counters["drop_redirect_failed"], 0, "{counters:?}");
    assert!(counters["forwarded"] >= 5, "{counters:?}");
}

/// Sends `count` TCP SYNs to `vips` (port 80, in turn) from spoofed sources in
/// 100.64.0.0/16 through a raw socket, stopping early after `limit`. Returns how many left.
fn syn_flood(vips: &[&str], count: u32, limit: std::time::Duration) -> u32 {
    use common::packet::{ipv4, tcp};
    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let start = std::time::Instant::now();
    let mut sent = 0;
    for n in 0..count {
        if start.elapsed() > limit {
            break;
        }
        let src = format!("100.64.{}.{}", (n >> 8) & 0xff, n & 0xff);
        let vip = vips[n as usize % vips.len()];
        let sport = 1024 + (n % 60000) as u16;
        let pkt = ipv4(&src, vip, 6, &tcp(&src, vip, sport, 80, 0x02, b""));
        let dst: std::net::Ipv4Addr = vip.parse().unwrap();
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(dst.octets()) },
            sin_zero: [0; 8],
        };
        let rc = unsafe {
            libc::sendto(
                fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc > 0 {
            sent += 1;
        }
    }
    unsafe { libc::close(fd) };
    sent
}

#[test]
fn a_syn_flood_keeps_established_flows_and_lets_new_ones_in() {
    if !need_root("a_syn_flood_keeps_established_flows_and_lets_new_ones_in") {
        return;
    }
    let topo = Topo::up("syn", 3);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_servers = StopOnDrop(stop.clone());
    topo.vips_on_backends(&["198.51.100.10"]);
    let mut decaps = Vec::new();
    for i in 1..=3 {
        let ns = topo.backend_ns(i);
        servers::start(&ns, &format!("b{i}"), vec![sock("0.0.0.0", 80), sock("0.0.0.0", 8080)], vec![], stop.clone());
        decaps.push(topo.ballast(&ns, &format!("decap{i}.log"), &["decap", "--iface", "b0", "--mode", "native"]));
    }
    // The smallest connection table there is, so a flood of a few times its size would
    // push everything else out of it.
    let config = |backends: &str| {
        format!(
            "[device]\ntunnel_source_v4 = \"10.0.0.1\"\nconntrack_size = 1024\n\n\
             [[vip]]\nname = \"tun\"\naddress = \"198.51.100.10\"\nport = 80\nprotocol = \"tcp\"\nbackends = [{}]\n\n\
             [[vip]]\nname = \"nat\"\naddress = \"198.51.100.20\"\nport = 80\nprotocol = \"tcp\"\nmode = \"nat\"\nbackends = [{}]\n",
            backends.replace("PORT", ""),
            backends.replace("PORT", ", port = 8080"),
        )
    };
    let two = "{ address = \"10.0.0.11\"PORT }, { address = \"10.0.0.12\"PORT }";
    let three = "{ address = \"10.0.0.11\"PORT }, { address = \"10.0.0.12\"PORT }, { address = \"10.0.0.13\"PORT }";
    let cfg_path = topo.dir.join("l4.toml");
    let socket = topo.dir.join("lb.sock");
    std::fs::write(&cfg_path, config(two)).unwrap();
    let _lb = topo.ballast(
        &topo.ns("l"),
        "lb.log",
        &["lb", "--iface", "l0", "--also", "l1", "--mode", "native", "--config", cfg_path.to_str().unwrap(), "--control", socket.to_str().unwrap()],
    );
    topo.wait_for_lb(&socket);
    for i in 1..=3 {
        topo.wait_for("ballast decap to attach", 20, || topo.log(&format!("decap{i}.log")).contains("attached"));
    }
    let client = topo.ns("c");
    let vips = ["198.51.100.10", "198.51.100.20"];

    // 40 established connections per VIP, each knowing its backend.
    let mut held: Vec<(std::net::TcpStream, String, &str)> = Vec::new();
    for vip in vips {
        for _ in 0..40 {
            let mut s = enter(&client, || std::net::TcpStream::connect(sock(vip, 80)).unwrap());
            let who = ask_on(&mut s).unwrap();
            held.push((s, who, vip));
        }
    }

    // The flood (60 times the table's size), with new legitimate connections meanwhile.
    let flood = common::spawn_in(&client, move || syn_flood(&vips, 60_000, std::time::Duration::from_secs(30)));
    let during = enter(&client, || {
        (0..40).map(|n| tcp_ask(sock(vips[n % 2], 80)).map_err(|e| format!("new connection {n} to {}: {e}", vips[n % 2]))).collect::<Vec<_>>()
    });
    let sent = flood.join().unwrap();
    println!("SYN flood: {sent} SYNs sent");
    for r in &during {
        assert!(r.is_ok(), "during the flood: {r:?}");
    }

    // A third backend arrives: a flow the flood had pushed out of the table would be hashed
    // again on the new Maglev table and could land on b3, which knows nothing of it.
    std::fs::write(&cfg_path, config(three)).unwrap();
    let out = std::process::Command::new(ballast_bin())
        .args(["reload", "--control", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stdout));
    let mut broken = Vec::new();
    for (n, (s, who, vip)) in held.iter_mut().enumerate() {
        match ask_on(s) {
            Ok(now) if now == *who => {}
            other => broken.push(format!("{vip} connection {n} (on {who}): {other:?}")),
        }
    }
    let counters = lb_counters(&socket);
    println!("counters after the flood: {counters:?}");
    assert!(broken.is_empty(), "{} of {} established connections broke: {broken:?}", broken.len(), held.len());
    // New connections after it, too; and the flood shows in the counters.
    let after = enter(&client, || (0..20).filter(|n| tcp_ask(sock(vips[n % 2], 80)).is_ok()).count());
    assert_eq!(after, 20, "new connections after the flood");
    // (Not every SYN sent reaches the program: the veth's queue drops some of a burst.)
    let seen = counters.get("tcp_syn_stateless").copied().unwrap_or(0);
    assert!(seen >= 10 * 1024, "the flood was not many times the table's size: {seen} of {sent} SYNs seen");
    println!("{seen} of {sent} SYNs reached the LB, hashed without a table entry");
    drop(decaps);
}

/// Katran's usual layout: one arm. The LB has a single interface on the segment where
/// clients and backends are, so a VIP's packet leaves by the interface it came in by
/// (`XDP_TX`), and the backends answer the client directly. On a veth, `XDP_TX` frames
/// reach the peer only when the peer runs an XDP program (`ballast pass`).
#[test]
fn one_arm_lb_sends_with_xdp_tx_for_tunnel_and_dr() {
    if !need_root("one_arm_lb_sends_with_xdp_tx_for_tunnel_and_dr") {
        return;
    }
    let topo = Topo::up("arm", 2);
    // The client's second NIC (10.0.0.2) on the backends' segment; it reaches the VIPs
    // through the LB's only interface there (l1, 10.0.0.1).
    sh(&["bash", &common::topo::script(), "dsr", &topo.prefix]);
    let client = topo.ns("c");
    sh(&["ip", "netns", "exec", &client, "ip", "route", "add", "198.51.100.0/24", "via", "10.0.0.1", "dev", "c1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_servers = StopOnDrop(stop.clone());
    topo.vips_on_backends(&["198.51.100.10", "198.51.100.30"]);
    let mut decaps = Vec::new();
    for i in 1..=2 {
        let ns = topo.backend_ns(i);
        let udp = vec![sock("198.51.100.10", 53), sock("198.51.100.30", 53)];
        servers::start(&ns, &format!("b{i}"), vec![sock("0.0.0.0", 80)], udp, stop.clone());
        decaps.push(topo.ballast(&ns, &format!("decap{i}.log"), &["decap", "--iface", "b0", "--mode", "native"]));
    }
    let backends = "[{ address = \"10.0.0.11\" }, { address = \"10.0.0.12\" }]";
    let mut cfg = String::from("[device]\ntunnel_source_v4 = \"10.0.0.1\"\n");
    for (name, vip, mode) in [("tun", "198.51.100.10", "tunnel"), ("dr", "198.51.100.30", "dr")] {
        for (proto, port) in [("tcp", 80), ("udp", 53)] {
            cfg.push_str(&format!(
                "\n[[vip]]\nname = \"{name}-{proto}\"\naddress = \"{vip}\"\nport = {port}\nprotocol = \"{proto}\"\nmode = \"{mode}\"\nbackends = {backends}\n"
            ));
        }
    }
    let cfg_path = topo.dir.join("l4.toml");
    let socket = topo.dir.join("lb.sock");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _lb = topo.ballast(
        &topo.ns("l"),
        "lb.log",
        &["lb", "--iface", "l1", "--mode", "native", "--config", cfg_path.to_str().unwrap(), "--control", socket.to_str().unwrap()],
    );
    topo.wait_for_lb(&socket);
    for i in 1..=2 {
        topo.wait_for("ballast decap to attach", 20, || topo.log(&format!("decap{i}.log")).contains("attached"));
    }
    let ask = |vip: &str| enter(&client, || udp_ask(&udp_flow(sock(vip, 53))));

    // Without an XDP program on the switch's end of l1 (GRO is on there), as the kernel has it.
    let bare = (0..5).filter(|_| ask("198.51.100.10").is_ok()).count();
    let before = lb_counters(&socket);
    println!("one arm, peer without an XDP program: {bare}/5 answered; counters {before:?}");

    let _pass = topo.ballast(&topo.ns("s"), "pass.log", &["pass", "--iface", "s0"]);
    topo.wait_for("ballast pass to attach", 20, || topo.log("pass.log").contains("attached"));
    for (label, vip) in [("tunnel", "198.51.100.10"), ("dr", "198.51.100.30")] {
        let counts = enter(&client, || {
            let mut c = BTreeMap::new();
            for n in 0..200 {
                let who = tcp_ask(sock(vip, 80)).unwrap_or_else(|e| panic!("one arm {label}: TCP connection {n}: {e}"));
                *c.entry(who).or_insert(0) += 1;
            }
            c
        });
        println!("one arm {label}: {}", shares(&counts, 200));
        assert_eq!(counts.keys().map(String::as_str).collect::<Vec<_>>(), ["b1", "b2"], "one arm {label}");
        for n in 0..20 {
            ask(vip).unwrap_or_else(|e| panic!("one arm {label}: UDP flow {n}: {e}"));
        }
    }
    let after = lb_counters(&socket);
    println!("counters: {after:?}");
    let sent = after["forwarded"] - before["forwarded"];
    assert!(sent >= 2 * 200 * 3, "forwarded {sent}: {after:?}");
    assert_eq!(after["drop_redirect_failed"], 0, "{after:?}");
    drop(decaps);
}

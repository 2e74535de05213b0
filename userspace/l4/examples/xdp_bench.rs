//! Micro-benchmarks of the L4 data plane (not a test): ns per packet of the XDP program as
//! the kernel times it in BPF_PROG_TEST_RUN, and the Maglev table build time.
//! Run as root: `cargo run --release --example xdp_bench [runs]` (bench/xdp.sh does).
use std::time::{Duration, Instant};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use ballast_l4::{
    config::L4Config,
    dataplane::{Dataplane, PROG_LB, PROG_PASS},
    maglev,
};
use ballast_testkit::{
    fibnet::{FibNet, CLIENT_MAC},
    packet::{eth, ipv4, tcp, ETH_IP},
};

const CONFIG: &str = r#"
[device]
tunnel_source_v4 = "10.0.0.1"
max_vips = 4

[[vip]]
name = "tunnel"
address = "198.51.100.10"
port = 80
protocol = "tcp"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "nat"
address = "198.51.100.20"
port = 80
protocol = "tcp"
mode = "nat"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "dr"
address = "198.51.100.30"
port = 80
protocol = "tcp"
mode = "dr"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]
"#;

/// Builds the i-th frame of a case.
type FrameFn = Box<dyn Fn(usize) -> Vec<u8> + Sync>;

/// Runs the program once per frame that `frame(i)` returns, `runs` times, inside the
/// namespace; returns the kernel-measured durations.
fn time_runs(
    net: &FibNet,
    prog: &Xdp,
    runs: usize,
    frame: &(dyn Fn(usize) -> Vec<u8> + Sync),
) -> Vec<Duration> {
    let ifindex = net.in_if;
    net.ns.enter(|| {
        let mut out = vec![0u8; 2048];
        let mut ctx = Vec::with_capacity(24);
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs {
            let f = frame(i);
            ctx.clear();
            for v in [0u32, f.len() as u32, 0, ifindex, 0, 0] {
                ctx.extend_from_slice(&v.to_ne_bytes());
            }
            let opts = TestRunOptions {
                data_in: Some(&f),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            };
            times.push(prog.test_run(opts).expect("BPF_PROG_TEST_RUN").duration);
        }
        times
    })
}

fn summary(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    let median = t[t.len() / 2].as_nanos() as f64;
    let mean = t.iter().map(|d| d.as_nanos() as f64).sum::<f64>() / t.len() as f64;
    (median, mean)
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let net = FibNet::new("xb");
    let cfg = L4Config::parse(CONFIG)?;
    let mut dp = Dataplane::load(&cfg.device, 0)?;
    dp.apply(cfg)?;
    let prog = dp.program(PROG_LB).expect("program");
    let in_mac = net.in_mac;
    let syn = move |dst: &str, sport: u16, src_host: u8| {
        let src = format!("203.0.{}.{}", 113, src_host);
        eth(in_mac, CLIENT_MAC, ETH_IP, &ipv4(&src, dst, 6, &tcp(&src, dst, sport, 80, 0x10, b"")))
    };
    let non_vip = syn("192.0.2.1", 1000, 2);
    // The kernel's timer costs something per call; a non-VIP packet is left untouched, so
    // it can also run with `repeat`, which shows the program's time without that cost.
    let repeated = {
        let f = non_vip.clone();
        let ifindex = net.in_if;
        net.ns.enter(|| {
            let mut ctx = Vec::new();
            for v in [0u32, f.len() as u32, 0, ifindex, 0, 0] {
                ctx.extend_from_slice(&v.to_ne_bytes());
            }
            let mut out = vec![0u8; 2048];
            let opts = TestRunOptions {
                data_in: Some(&f),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat: runs as u32,
                ..Default::default()
            };
            prog.test_run(opts).expect("BPF_PROG_TEST_RUN").duration
        })
    };
    let hit_tunnel = syn("198.51.100.10", 1000, 2);
    let hit_nat = syn("198.51.100.20", 1000, 2);
    let hit_dr = syn("198.51.100.30", 1000, 2);
    // The empty program (XDP_PASS and nothing else) on the same frame, timed the same way:
    // what every case costs before ballast does anything.
    let empty = {
        let f = syn("192.0.2.1", 1000, 2);
        let pass = dp.program(PROG_PASS).expect("program");
        time_runs(&net, pass, 1000.min(runs), &|_| f.clone());
        summary(time_runs(&net, pass, runs, &|_| f.clone())).0
    };
    // New flows: every run a source port/host never seen before.
    let cases: Vec<(&str, FrameFn)> = vec![
        ("non_vip_pass", Box::new(move |_| non_vip.clone())),
        ("vip_conntrack_hit_tunnel", Box::new(move |_| hit_tunnel.clone())),
        ("vip_conntrack_hit_nat", Box::new(move |_| hit_nat.clone())),
        ("vip_conntrack_hit_dr", Box::new(move |_| hit_dr.clone())),
        (
            "vip_new_flow_tunnel",
            Box::new(move |i| syn("198.51.100.10", 1024 + (i % 60000) as u16, 3 + (i / 60000) as u8)),
        ),
    ];
    println!("kind,case,runs,median_ns,mean_ns,net_of_empty_ns");
    println!("xdp,empty_program,{runs},{empty:.0},,0");
    println!("xdp,non_vip_pass_repeat,{runs},,{},", repeated.as_nanos());
    for (name, f) in &cases {
        // Warm-up (and, for the hit cases, creates the connection-table entry).
        time_runs(&net, prog, 1000.min(runs), f.as_ref());
        let (median, mean) = summary(time_runs(&net, prog, runs, f.as_ref()));
        println!("xdp,{name},{runs},{median:.0},{mean:.1},{:.0}", median - empty);
    }

    // Connection-table memory, as the kernel accounts it (fdinfo's memlock) for this
    // process's LRU hash maps: CONNTRACK (value: backend id + generation, 8 bytes),
    // NAT_REVERSE and NAT_REVERSE_SYN.
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        let field = |k: &str| {
            info.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse::<u64>().unwrap_or(0)))
        };
        if field("map_type:") != Some(9) {
            continue;
        }
        let (Some(entries), Some(memlock)) = (field("max_entries:"), field("memlock:")) else { continue };
        let value = field("value_size:").unwrap_or(0);
        let what = if value == 8 { "conntrack" } else { "nat_reverse" };
        println!(
            "memory,{what}_lru_{entries}_flows_value_{value}b,1,{memlock},{:.1},",
            memlock as f64 / entries as f64
        );
    }

    let entries: Vec<maglev::Entry> = (0..100)
        .map(|i| maglev::Entry {
            key: maglev::identity_hash(format!("10.1.{}.{}:80", i / 250, i % 250).as_bytes()),
            weight: 1,
        })
        .collect();
    let mut builds = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        std::hint::black_box(maglev::build(&entries, 65537));
        builds.push(t.elapsed());
    }
    let (median, mean) = summary(builds);
    println!("maglev,build_65537_slots_100_backends,10,{median:.0},{mean:.1},");
    Ok(())
}

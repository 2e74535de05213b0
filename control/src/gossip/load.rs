//! A device's load as it rides on gossip: CPU busy %, established TCP connections and
//! bytes/s through its interfaces, read from /proc, and the new connections per second of
//! each VIP it serves (its agent counts them: XDP flows, L7 sessions). Parsing is pure;
//! sampling keeps the previous reading to turn counters into rates.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub cpu_pct: f32,
    pub connections: u64,
    pub bytes_per_s: u64,
    /// New connections per second through each VIP this device serves (the busiest
    /// first, at most [`MAX_VIP_RATES`]).
    #[serde(default)]
    pub vips: Vec<VipRate>,
    /// The L4 backend checks this device runs and whether each passes here.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Packets and bytes per second its XDP program forwarded for its VIPs.
    #[serde(default)]
    pub xdp_pps: u64,
    #[serde(default)]
    pub xdp_bps: u64,
    /// Whether the device holds a lease right now (it may serve its VIPs): DNS answers
    /// only the VIPs of devices that say so.
    #[serde(default)]
    pub lease_held: bool,
    /// The L7 proxy's open client sessions and its requests per second (sessions per
    /// second in `mode tcp`), over all its frontends.
    #[serde(default)]
    pub l7_sessions: u64,
    #[serde(default)]
    pub l7_rps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub backend: crate::state::lb::CheckKey,
    pub up: bool,
}

/// Checks a report carries at most.
pub const MAX_CHECKS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VipRate {
    pub vip: IpAddr,
    pub conn_rate: f32,
}

/// A gossip packet carries a report: a bounded number of VIPs keeps it small.
pub const MAX_VIP_RATES: usize = 16;

impl Load {
    /// New connections per second through all this device's VIPs.
    pub fn conn_rate(&self) -> f32 {
        self.vips.iter().map(|v| v.conn_rate).sum()
    }
}

/// `(busy, total)` jiffies from the first line of /proc/stat.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    // idle + iowait are not busy.
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Established connections in a /proc/net/tcp{,6} table (state 01).
pub fn count_established(table: &str) -> u64 {
    table.lines().skip(1).filter(|l| l.split_whitespace().nth(3) == Some("01")).count() as u64
}

/// Total rx + tx bytes of every interface but loopback, from /proc/net/dev.
pub fn parse_dev_bytes(dev: &str) -> u64 {
    dev.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            Some(f.first().copied().unwrap_or(0) + f.get(8).copied().unwrap_or(0))
        })
        .sum()
}

/// Turns successive /proc readings into a [`Load`].
#[derive(Default)]
pub struct Sampler {
    last: Option<(u64, u64, u64, std::time::Instant)>,
}

impl Sampler {
    pub fn sample(&mut self) -> Load {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let (busy, total) = parse_cpu(&read("/proc/stat")).unwrap_or((0, 0));
        let bytes = parse_dev_bytes(&read("/proc/net/dev"));
        let connections =
            count_established(&read("/proc/net/tcp")) + count_established(&read("/proc/net/tcp6"));
        let now = std::time::Instant::now();
        let mut load = Load { connections, ..Load::default() };
        if let Some((b0, t0, by0, at)) = self.last {
            if total > t0 {
                load.cpu_pct = (busy.saturating_sub(b0)) as f32 * 100.0 / (total - t0) as f32;
            }
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                load.bytes_per_s = (bytes.saturating_sub(by0) as f64 / secs) as u64;
            }
        }
        self.last = Some((busy, total, bytes, now));
        load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load report goes through gossip as postcard, which cannot skip fields: one with
    /// VIP rates and checks (with and without a path) must come back the same.
    #[test]
    fn a_full_report_survives_postcard() {
        let l = Load {
            cpu_pct: 12.5,
            connections: 3,
            bytes_per_s: 1000,
            vips: vec![VipRate { vip: "198.51.100.1".parse().unwrap(), conn_rate: 2.5 }],
            checks: vec![
                CheckResult { backend: crate::state::lb::CheckKey { addr: "10.0.0.1:80".parse().unwrap(), path: None }, up: false },
                CheckResult {
                    backend: crate::state::lb::CheckKey { addr: "[2001:db8::1]:80".parse().unwrap(), path: Some("/h".into()) },
                    up: true,
                },
            ],
            xdp_pps: 120_000,
            xdp_bps: 9_000_000,
            lease_held: true,
            l7_sessions: 40,
            l7_rps: 2500,
        };
        let back: Load = postcard::from_bytes(&postcard::to_stdvec(&l).unwrap()).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn proc_parsing() {
        assert_eq!(parse_cpu("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3 4\n"), Some((20, 100)));
        assert_eq!(parse_cpu("garbage"), None);
        let tcp = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:1F90 0100007F:D1C2 01 0\n";
        assert_eq!(count_established(tcp), 1);
        let dev = "Inter-|   Receive\n face |bytes    packets\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n";
        assert_eq!(parse_dev_bytes(dev), 1500);
        assert_eq!(parse_dev_bytes(""), 0);
    }
}

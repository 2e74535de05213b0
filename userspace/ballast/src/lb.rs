//! `ballast lb` (the L4 daemon from a TOML file), and `ballast stats` / `ballast reload`,
//! which talk to it through its admin socket.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use ballast_l4::{
    admin_socket,
    config::L4Config,
    dataplane::{self, AttachMode, Dataplane, StatsReport},
    neighbours,
};
use clap::{Args, ValueEnum};
use tokio::io::{unix::AsyncFd, Interest};

use crate::lifecycle::{self, Event, Signals};

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Driver (native) XDP; fail if the driver cannot.
    Native,
    /// Generic (skb) XDP: works everywhere, slower.
    Generic,
    /// Native, falling back to generic.
    Auto,
}

impl From<ModeArg> for AttachMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Native => AttachMode::Native,
            ModeArg::Generic => AttachMode::Generic,
            ModeArg::Auto => AttachMode::Auto,
        }
    }
}

#[derive(Args)]
pub struct LbArgs {
    /// Interface the VIP traffic arrives on.
    #[arg(short, long)]
    iface: String,
    /// L4 config (TOML): device settings, VIPs and backends.
    #[arg(short, long)]
    config: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    /// Extra interfaces to attach to (e.g. the private side, for NAT replies).
    #[arg(long = "also")]
    also: Vec<String>,
    /// Admin socket for `ballast stats` / `ballast reload`.
    #[arg(long, default_value = admin_socket::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Only validate the config and exit (0 = valid).
    #[arg(long)]
    check: bool,
    /// eBPF log level (0 off, 1 error .. 5 trace); lines go to this process's log.
    #[arg(long, default_value_t = 2)]
    bpf_log_level: u8,
    /// Print the stats every N seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    stats_every: u64,
}

/// Warns of interfaces too small for the config's IPv6 tunnel VIPs (`ipv6_tunnel_mtu_short`).
fn warn_ipv6_tunnel_mtu<'a>(cfg: &L4Config, ifaces: impl Iterator<Item = &'a String>) {
    let mtus: Vec<(String, u32)> = ifaces
        .filter_map(|i| {
            let mtu = std::fs::read_to_string(format!("/sys/class/net/{i}/mtu")).ok()?;
            Some((i.clone(), mtu.trim().parse().ok()?))
        })
        .collect();
    for (iface, mtu) in cfg.ipv6_tunnel_mtu_short(&mtus) {
        log::warn!(
            "{iface} has an MTU of {mtu}: if IPv6 tunnel VIPs reach their backends through it, clients' \
             1280-byte packets (IPv6's minimum, below which no host lowers its path MTU) cannot get \
             through; give the backends' link an MTU of at least {}",
            ballast_l4::config::IPV6_TUNNEL_MIN_MTU
        );
    }
}

pub fn run(a: LbArgs) -> Result<()> {
    let cfg = L4Config::load(&a.config)?;
    if a.check {
        println!("{}: valid, {} VIPs", a.config.display(), cfg.vips.len());
        return Ok(());
    }
    lifecycle::runtime(1)?.block_on(serve(a, cfg))
}

async fn serve(a: LbArgs, cfg: L4Config) -> Result<()> {
    let mut signals = Signals::install()?;
    let mut dp = Dataplane::load(&cfg.device, a.bpf_log_level).context("loading the XDP programs")?;
    let logger = match aya_log::EbpfLogger::init(&mut dp.ebpf) {
        // SAFETY: the logger owns its ring buffer's fd and keeps it open, unchanged, for its
        // whole life, which the AsyncFd now holds.
        Ok(l) => Some(
            unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }
                .map_err(std::io::Error::from)
                .context("watching the eBPF log ring")?,
        ),
        Err(e) => {
            log::warn!("eBPF logs unavailable: {e}");
            None
        }
    };
    warn_ipv6_tunnel_mtu(&cfg, std::iter::once(&a.iface).chain(&a.also));
    let summary = dp.apply(cfg).context("programming the maps")?;
    log::info!("maps programmed: {summary:?}");
    let mode = a.mode.into();
    let ifaces: Vec<String> = std::iter::once(&a.iface).chain(&a.also).cloned().collect();
    let modes = dataplane::attach_all(&mut dp.ebpf, dataplane::PROG_LB, &ifaces, mode)?;
    for (dev, how) in ifaces.iter().zip(modes) {
        log::info!("ballast_lb attached to {dev} ({how} mode)");
    }
    dataplane::watch_redirects(&mut dp.ebpf, &ifaces)?;
    neighbours::warm(dp.backend_addrs());
    let dp = Arc::new(Mutex::new(dp));
    admin_socket::serve(&a.control, dp.clone(), a.config.clone())
        .with_context(|| format!("admin socket {}", a.control.display()))?;
    log::info!("serving; admin socket {}", a.control.display());
    lifecycle::ready("lb");
    let mut warm = tokio::time::interval(Duration::from_secs(10));
    let mut stats = (a.stats_every > 0).then(|| tokio::time::interval(Duration::from_secs(a.stats_every)));
    let mut logger = logger;
    loop {
        tokio::select! {
            event = signals.next() => match event {
                Event::Stop => break,
                Event::Reload => {
                    admin_socket::reload(&dp, &a.config);
                }
            },
            Some(()) = flush_when_readable(logger.as_mut()) => {}
            _ = warm.tick() => {
                let addrs = lock(&dp).backend_addrs();
                neighbours::warm(addrs);
            }
            Some(_) = tick(stats.as_mut()) => {
                if let Ok(s) = lock(&dp).stats() {
                    print!("{}", s.render());
                }
            }
        }
    }
    lifecycle::stopping();
    let _ = std::fs::remove_file(&a.control);
    if let Ok(s) = lock(&dp).stats() {
        print!("{}", s.render());
    }
    log::info!("stopping; XDP programs detach as the process exits");
    Ok(())
}

fn lock(dp: &Mutex<Dataplane>) -> std::sync::MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves the eBPF program's log lines into this process's log when its ring signals;
/// without a logger, never completes.
async fn flush_when_readable(
    logger: Option<&mut AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
) -> Option<()> {
    let logger = logger?;
    let mut ready = logger.readable_mut().await.ok()?;
    ready.get_inner_mut().flush();
    ready.clear_ready();
    Some(())
}

async fn tick(interval: Option<&mut tokio::time::Interval>) -> Option<tokio::time::Instant> {
    match interval {
        Some(i) => Some(i.tick().await),
        None => std::future::pending().await,
    }
}

/// `ballast stats`: the running `ballast lb`'s counters, as a table or JSON.
pub fn stats(control: &Path, json: bool) -> Result<()> {
    let reply = admin_socket::request(control, "stats")?;
    if json {
        println!("{reply}");
    } else {
        let report: StatsReport =
            serde_json::from_str(&reply).with_context(|| format!("unexpected reply: {reply}"))?;
        print!("{}", report.render());
    }
    Ok(())
}

/// `ballast reload`: the running `ballast lb` re-reads its config.
pub fn reload(control: &Path) -> Result<()> {
    let reply = admin_socket::request(control, "reload")?;
    println!("{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).context("unexpected reply")?;
    if v["ok"] != serde_json::Value::Bool(true) {
        bail!("reload failed");
    }
    Ok(())
}

/// `ballast decap` / `ballast pass`: one XDP program attached until stopped.
pub fn run_attached(prog: &str, iface: &str, mode: AttachMode) -> Result<()> {
    lifecycle::runtime(1)?.block_on(async {
        let signals = Signals::install()?;
        let mut ebpf = dataplane::load_object(None, 2).context("loading the XDP programs")?;
        let how = dataplane::attach(&mut ebpf, prog, iface, mode)?;
        log::info!("{prog} attached to {iface} ({how} mode); running until SIGTERM");
        lifecycle::ready(prog);
        signals.stopped(prog).await;
        lifecycle::stopping();
        let counters = dataplane::read_counters(&ebpf)?;
        log::info!(
            "{prog} on {iface}: decapsulated {} packets",
            counters.get("decapsulated").copied().unwrap_or(0)
        );
        Ok(())
    })
}

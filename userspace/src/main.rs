//! `ballast`: the daemon and CLI of a ballast load-balancer device.
mod cli_control;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context as _, Result};
use ballast::{
    control,
    daemon::{self, install_signal_handlers, stopping, take_reload, wait_readable},
    dataplane::{self, AttachMode, Dataplane, StatsReport},
    l4config::L4Config,
};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "ballast", version, about = "Kernel-accelerated L4/L7 load balancer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
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

#[derive(Subcommand)]
enum Command {
    /// Run the L4 load balancer: attach XDP to an interface and serve the VIPs of a config
    /// file. SIGHUP or `ballast reload` re-reads the file and applies only what changed.
    Lb {
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
        /// Control socket for `ballast stats` / `ballast reload`.
        #[arg(long, default_value = control::DEFAULT_SOCKET)]
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
    },
    /// On a backend: strip IPIP / IP6IP6 headers from tunnel-mode traffic in XDP, for
    /// kernels without an ipip device. Runs until stopped.
    Decap {
        #[arg(short, long)]
        iface: String,
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeArg,
    },
    /// Attach a pass-everything XDP program, so a veth peer accepts native XDP redirects.
    Pass {
        #[arg(short, long)]
        iface: String,
    },
    /// Run the L7 proxy from HAProxy-style configuration files (like `haproxy -f`).
    Proxy {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Check HAProxy-style configuration files, like `haproxy -c -f FILE`: prints every
    /// warning and alert with file:line; exit 0 when the configuration is valid.
    Check {
        /// Configuration file(s), read in order as one configuration.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Print only alerts.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the per-VIP / per-backend counters of a running `ballast lb`.
    Stats {
        #[arg(long, default_value = control::DEFAULT_SOCKET)]
        control: PathBuf,
        /// Raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a running `ballast lb` re-read its config.
    Reload {
        #[arg(long, default_value = control::DEFAULT_SOCKET)]
        control: PathBuf,
    },
    /// Run a control-plane agent (like `consul agent`): Raft server or client, HTTP API.
    Agent(cli_control::AgentArgs),
    /// Read and write the replicated KV store (like `consul kv`).
    Kv {
        #[command(subcommand)]
        command: cli_control::KvCommand,
    },
    /// Gossip members with status and load (like `consul members`).
    Members {
        #[command(flatten)]
        api: cli_control::ApiArgs,
    },
    /// Manage the gossip encryption keys on every member (like `consul keyring`).
    Keyring(cli_control::KeyringArgs),
    /// Run a handler when a key or a key prefix changes (like `consul watch`).
    Watch(cli_control::WatchArgs),
    /// Cluster operations (like `consul operator`).
    Operator {
        #[command(subcommand)]
        command: cli_control::OperatorCommand,
    },
}

// glibc's malloc was a tenth of the proxy's profile (per-connection buffers, hyper's
// per-stream maps). A/B on the bench's loads: new connections +13% req/s and -13% CPU per
// request, HTTP/2 -5% CPU per request, keep-alive unchanged; RSS 19 -> 30 MB.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // eBPF log lines are already filtered in the kernel by --bpf-log-level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,ballast_ebpf=trace"))
        .init();
    let args = cli_control::normalize_args(std::env::args().collect());
    if let Err(e) = run(Cli::parse_from(args)) {
        eprintln!("ballast: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Lb { iface, config, mode, also, control, check, bpf_log_level, stats_every } => {
            let cfg = L4Config::load(&config)?;
            if check {
                println!("{}: valid, {} VIPs", config.display(), cfg.vips.len());
                return Ok(());
            }
            run_lb(&iface, &config, cfg, mode.into(), &also, &control, bpf_log_level, stats_every)
        }
        Command::Decap { iface, mode } => run_attached(dataplane::PROG_DECAP, &iface, mode.into()),
        Command::Pass { iface } => run_attached(dataplane::PROG_PASS, &iface, AttachMode::Native),
        Command::Check { files, quiet } => check(&files, quiet),
        Command::Proxy { files, threads } => run_proxy(&files, threads),
        Command::Stats { control, json } => {
            let reply = control::request(&control, "stats")?;
            if json {
                println!("{reply}");
            } else {
                let report: StatsReport =
                    serde_json::from_str(&reply).with_context(|| format!("unexpected reply: {reply}"))?;
                print!("{}", report.render());
            }
            Ok(())
        }
        Command::Agent(a) => cli_control::agent(a),
        Command::Kv { command } => cli_control::kv(command),
        Command::Operator { command } => cli_control::operator(command),
        Command::Members { api } => cli_control::members(api),
        Command::Keyring(a) => cli_control::keyring(a),
        Command::Watch(a) => cli_control::watch(a),
        Command::Reload { control } => {
            let reply = control::request(&control, "reload")?;
            println!("{reply}");
            let v: serde_json::Value = serde_json::from_str(&reply).context("unexpected reply")?;
            if v["ok"] != serde_json::Value::Bool(true) {
                bail!("reload failed");
            }
            Ok(())
        }
    }
}

fn read_files(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            Ok((f.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

fn load_l7(files: &[PathBuf]) -> Result<ballast::haproxy::L7Config> {
    let parsed = ballast::haproxy::parse_files(&read_files(files)?);
    for d in &parsed.diags {
        log::warn!("{d}");
    }
    let alerts: Vec<String> = parsed.alerts().map(|d| d.to_string()).collect();
    parsed
        .config
        .ok_or_else(|| anyhow::anyhow!("{}\nFatal errors found in configuration.", alerts.join("\n")))
}

fn run_proxy(files: &[PathBuf], threads: Option<usize>) -> Result<()> {
    let config = load_l7(files)?;
    // Traffic runs on the proxy's worker threads; this runtime does checks, reloads and
    // the runtime API.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let files = files.to_vec();
    rt.block_on(async move {
        let socket = config.global.stats_socket.clone();
        let proxy = ballast::proxy::Proxy::start(config, threads).await?;
        if let Some(path) = socket {
            serve_runtime_api(proxy.clone(), path, files.clone())?;
        }
        log::info!("proxy started");
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => match reload_proxy(&proxy, &files).await {
                    Ok(()) => log::info!("reloaded"),
                    Err(e) => log::error!("reload refused, the running configuration is unchanged: {e}"),
                },
            }
        }
        log::info!("stopping");
        proxy.stop();
        Ok::<_, anyhow::Error>(())
    })
}

async fn reload_proxy(
    proxy: &std::sync::Arc<ballast::proxy::Proxy>,
    files: &[PathBuf],
) -> Result<(), String> {
    let config = load_l7(files).map_err(|e| format!("{e:#}"))?;
    proxy.reload(config).await.map_err(|e| e.to_string())
}

/// The runtime API on a unix socket: one command line per connection.
fn serve_runtime_api(
    proxy: std::sync::Arc<ballast::proxy::Proxy>,
    path: PathBuf,
    files: Vec<PathBuf>,
) -> Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener =
        tokio::net::UnixListener::bind(&path).with_context(|| format!("stats socket {}", path.display()))?;
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        while let Ok((stream, _)) = listener.accept().await {
            let (proxy, files) = (proxy.clone(), files.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut r = tokio::io::BufReader::new(r.take(4096));
                if r.read_line(&mut line).await.is_err() {
                    return;
                }
                let reply =
                    ballast::proxy::runtime::execute(&proxy, line.trim(), || reload_proxy(&proxy, &files))
                        .await;
                let _ = w.write_all(reply.as_bytes()).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(())
}

fn check(files: &[PathBuf], quiet: bool) -> Result<()> {
    let parsed = ballast::haproxy::parse_files(&read_files(files)?);
    for d in &parsed.diags {
        if !quiet || d.level == ballast::haproxy::Level::Alert {
            eprintln!("{d}");
        }
    }
    match parsed.config {
        Some(_) => {
            println!("Configuration file is valid");
            Ok(())
        }
        None => bail!("Fatal errors found in configuration."),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_lb(
    iface: &str,
    path: &std::path::Path,
    cfg: L4Config,
    mode: AttachMode,
    also: &[String],
    socket: &std::path::Path,
    bpf_log_level: u8,
    stats_every: u64,
) -> Result<()> {
    install_signal_handlers();
    let mut dp = Dataplane::load(&cfg.device, bpf_log_level).context("loading the XDP programs")?;
    let logger = match aya_log::EbpfLogger::init(&mut dp.ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("eBPF logs unavailable: {e}");
            None
        }
    };
    let summary = dp.apply(cfg).context("programming the maps")?;
    log::info!("maps programmed: {summary:?}");
    for dev in std::iter::once(iface).chain(also.iter().map(String::as_str)) {
        let how = dataplane::attach(&mut dp.ebpf, dataplane::PROG_LB, dev, mode)?;
        log::info!("ballast_lb attached to {dev} ({how} mode)");
    }
    ballast::neighbours::warm(dp.backend_addrs());
    let dp = Arc::new(Mutex::new(dp));
    daemon::serve_control(socket, dp.clone(), path.to_path_buf())
        .with_context(|| format!("control socket {}", socket.display()))?;
    log::info!("serving; control socket {}", socket.display());
    let mut logger = logger;
    let fd = daemon::logger_fd(&logger);
    let mut last_stats = std::time::Instant::now();
    let mut last_warm = std::time::Instant::now();
    while !stopping() {
        if wait_readable(fd, 200) {
            if let Some(l) = logger.as_mut() {
                l.flush();
            }
        }
        if take_reload() {
            daemon::reload(&dp, path);
        }
        if last_warm.elapsed().as_secs() >= 10 {
            last_warm = std::time::Instant::now();
            let addrs = dp.lock().unwrap_or_else(|p| p.into_inner()).backend_addrs();
            ballast::neighbours::warm(addrs);
        }
        if stats_every > 0 && last_stats.elapsed().as_secs() >= stats_every {
            last_stats = std::time::Instant::now();
            if let Ok(s) = dp.lock().unwrap_or_else(|p| p.into_inner()).stats() {
                print!("{}", s.render());
            }
        }
    }
    let _ = std::fs::remove_file(socket);
    let dp = dp.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(s) = dp.stats() {
        print!("{}", s.render());
    }
    log::info!("stopping; XDP programs detach as the process exits");
    Ok(())
}

fn run_attached(prog: &str, iface: &str, mode: AttachMode) -> Result<()> {
    install_signal_handlers();
    let mut ebpf = dataplane::load_object(None, 2).context("loading the XDP programs")?;
    let how = dataplane::attach(&mut ebpf, prog, iface, mode)?;
    log::info!("{prog} attached to {iface} ({how} mode); running until SIGTERM");
    while !stopping() {
        wait_readable(None, 200);
    }
    let counters = dataplane::read_counters(&ebpf)?;
    log::info!(
        "{prog} on {iface}: decapsulated {} packets",
        counters.get("decapsulated").copied().unwrap_or(0)
    );
    Ok(())
}

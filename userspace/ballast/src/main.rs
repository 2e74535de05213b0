//! `ballast`: the daemon and CLI of a ballast load-balancer device. Argument parsing and
//! dispatch; each subcommand lives in its own module.
mod agent;
mod api_cli;
mod lb;
mod lifecycle;
mod proxy;

use std::path::PathBuf;

use anyhow::Result;
use ballast_l4::{admin_socket, dataplane};
use clap::{Parser, Subcommand};
use lb::ModeArg;

#[derive(Parser)]
#[command(name = "ballast", version, about = "Kernel-accelerated L4/L7 load balancer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the L4 load balancer: attach XDP to an interface and serve the VIPs of a config
    /// file. SIGHUP or `ballast reload` re-reads the file and applies only what changed.
    Lb(lb::LbArgs),
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
        #[arg(long, default_value = admin_socket::DEFAULT_SOCKET)]
        control: PathBuf,
        /// Raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a running `ballast lb` re-read its config.
    Reload {
        #[arg(long, default_value = admin_socket::DEFAULT_SOCKET)]
        control: PathBuf,
    },
    /// Run a control-plane agent (like `consul agent`): Raft server or client, HTTP API.
    Agent(agent::AgentArgs),
    /// Read and write the replicated KV store (like `consul kv`).
    Kv {
        #[command(subcommand)]
        command: api_cli::kv::KvCommand,
    },
    /// Gossip members with status and load (like `consul members`).
    Members {
        #[command(flatten)]
        api: api_cli::ApiArgs,
    },
    /// Print a new cluster key for `encrypt` (like `consul keygen`): 32 random bytes, base64.
    Keygen,
    /// LB devices: list, put (ranges, NICs), drain, undrain, remove.
    Device {
        #[command(subcommand)]
        command: api_cli::lb::DeviceCommand,
    },
    /// LB groups of accounts: create (flags or a JSON/TOML file), show, list, delete.
    Group {
        #[command(subcommand)]
        command: api_cli::lb::GroupCommand,
    },
    /// A group's backends: add, remove, weight.
    Backend {
        #[command(subcommand)]
        command: api_cli::lb::BackendCommand,
    },
    /// VIPs: list with owner and epoch, assign to a device.
    Vip {
        #[command(subcommand)]
        command: api_cli::lb::VipCommand,
    },
    /// Webhooks for LB events (to the IaaS): list, add, delete.
    Hook {
        #[command(subcommand)]
        command: api_cli::lb::HookCommand,
    },
    /// LB events: devices, groups, VIP placements and moves, with their phases' times.
    Events {
        #[arg(long)]
        since: Option<u64>,
        #[command(flatten)]
        api: api_cli::ApiArgs,
    },
    /// Create LB groups from a seed-style haproxy.cfg (`listen NAME`, `bind VIP:PORT`,
    /// `server` lines): each listen section becomes a group whose VIPs are its binds.
    Import {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// The account of every group (default: the name's last '-' part, as the seed's
        /// lb-cluster01-Acco01 names them).
        #[arg(long)]
        account: Option<String>,
        /// Print the groups instead of creating them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: api_cli::ApiArgs,
    },
    /// Manage the gossip encryption keys on every member (like `consul keyring`).
    Keyring(api_cli::keyring::KeyringArgs),
    /// Run a handler when a key or a key prefix changes (like `consul watch`).
    Watch(api_cli::watch::WatchArgs),
    /// Run a command while holding a lock on a KV prefix (like `consul lock`).
    Lock(api_cli::lock::LockArgs),
    /// Cluster operations (like `consul operator`).
    Operator {
        #[command(subcommand)]
        command: api_cli::operator::OperatorCommand,
    },
}

// glibc's malloc was a tenth of the proxy's profile (per-connection buffers, hyper's
// per-stream maps). A/B on the bench's loads: new connections +13% req/s and -13% CPU per
// request, HTTP/2 -5% CPU per request, keep-alive unchanged; RSS 19 -> 30 MB.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // eBPF log lines are already filtered in the kernel by --bpf-log-level.
    // Milliseconds: failover phases are read off these lines.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,ballast_ebpf=trace"))
        .format_timestamp_millis()
        .init();
    lifecycle::raise_open_file_limit();
    let args = api_cli::normalize_args(std::env::args().collect());
    if let Err(e) = run(Cli::parse_from(args)) {
        eprintln!("ballast: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Lb(a) => lb::run(a),
        Command::Decap { iface, mode } => lb::run_attached(dataplane::PROG_DECAP, &iface, mode.into()),
        Command::Pass { iface } => lb::run_attached(dataplane::PROG_PASS, &iface, ModeArg::Native.into()),
        Command::Check { files, quiet } => proxy::check(&files, quiet),
        Command::Proxy { files, threads } => proxy::run(&files, threads),
        Command::Stats { control, json } => lb::stats(&control, json),
        Command::Reload { control } => lb::reload(&control),
        Command::Agent(a) => agent::run(a),
        Command::Kv { command } => api_cli::kv::run(command),
        Command::Operator { command } => api_cli::operator::run(command),
        Command::Members { api } => api_cli::members::run(api),
        Command::Keyring(a) => api_cli::keyring::run(a),
        Command::Device { command } => api_cli::lb::device(command),
        Command::Group { command } => api_cli::lb::group(command),
        Command::Backend { command } => api_cli::lb::backend(command),
        Command::Vip { command } => api_cli::lb::vip(command),
        Command::Events { since, api } => api_cli::lb::events(since, api),
        Command::Hook { command } => api_cli::lb::hook(command),
        Command::Import { files, account, dry_run, api } => {
            let cfg = proxy::load(&files)?;
            let groups = api_cli::lb::import_groups(&cfg, account.as_deref())?;
            if dry_run {
                println!("{}", serde_json::to_string_pretty(&groups)?);
                return Ok(());
            }
            api_cli::lb::import(groups, api)
        }
        Command::Keygen => {
            println!("{}", ballast_control::gossip::keyring::generate_key()?);
            Ok(())
        }
        Command::Watch(a) => api_cli::watch::run(a),
        Command::Lock(a) => api_cli::lock::run(a),
    }
}

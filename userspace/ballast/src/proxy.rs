//! `ballast proxy` (the L7 daemon from HAProxy-style files, like `haproxy -f`) and `ballast
//! check` (like `haproxy -c -f`).
use std::{path::PathBuf, sync::Arc};

use anyhow::{bail, Context as _, Result};
use ballast_l7::haproxy::{self, L7Config, Level};
use ballast_proxy::Proxy;

use crate::lifecycle::{self, Event, Signals};

fn read_files(files: &[PathBuf]) -> Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            Ok((f.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

pub fn load(files: &[PathBuf]) -> Result<L7Config> {
    let parsed = haproxy::parse_files(&read_files(files)?).resolve_hosts();
    for d in &parsed.diags {
        log::warn!("{d}");
    }
    let alerts: Vec<String> = parsed.alerts().map(|d| d.to_string()).collect();
    parsed
        .config
        .ok_or_else(|| anyhow::anyhow!("{}\nFatal errors found in configuration.", alerts.join("\n")))
}

/// `ballast check`: prints every warning and alert with file:line; Ok when valid.
pub fn check(files: &[PathBuf], quiet: bool) -> Result<()> {
    let parsed = haproxy::parse_files(&read_files(files)?).resolve_hosts();
    for d in &parsed.diags {
        if !quiet || d.level == Level::Alert {
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

pub fn run(files: &[PathBuf], threads: Option<usize>) -> Result<()> {
    let config = load(files)?;
    // Traffic runs on the proxy's worker threads; this runtime does checks, reloads and
    // the runtime API.
    // --threads, else the config's `nbthread`, else one per CPU (HAProxy's default too).
    let threads = threads
        .or(config.global.nbthread.map(|n| n.max(1) as usize))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let files = files.to_vec();
    lifecycle::runtime(1)?.block_on(async move {
        let mut signals = Signals::install()?;
        let socket = config.global.stats_socket.clone();
        let proxy = Proxy::start(config, threads).await?;
        if let Some(path) = socket {
            serve_runtime_api(proxy.clone(), path, files.clone())?;
        }
        log::info!("proxy started");
        lifecycle::ready("proxy");
        while signals.next().await == Event::Reload {
            match reload(&proxy, &files).await {
                Ok(()) => log::info!("reloaded"),
                Err(e) => log::error!("reload refused, the running configuration is unchanged: {e}"),
            }
        }
        lifecycle::stopping();
        log::info!("stopping");
        proxy.stop();
        Ok::<_, anyhow::Error>(())
    })
}

async fn reload(proxy: &Arc<Proxy>, files: &[PathBuf]) -> Result<(), String> {
    let config = load(files).map_err(|e| format!("{e:#}"))?;
    proxy.reload(config).await.map_err(|e| e.to_string())
}

/// The runtime API on a unix socket: one command line per connection.
fn serve_runtime_api(proxy: Arc<Proxy>, path: PathBuf, files: Vec<PathBuf>) -> Result<()> {
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
                    ballast_proxy::runtime::execute(&proxy, line.trim(), || reload(&proxy, &files)).await;
                let _ = w.write_all(reply.as_bytes()).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(())
}

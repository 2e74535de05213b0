//! `ballast watch`: run a handler when a key or a key prefix changes, like `consul watch`.
use anyhow::{bail, Context as _, Result};
use ballast_control::{
    client::{escape_key, ApiClient},
    config::{WatchHandler, WatchSpec, WatchWhat},
};
use bytes::Bytes;
use clap::Args;
use hyper::{Method, StatusCode};

use super::{runtime, ApiArgs};

#[derive(Args)]
pub struct WatchArgs {
    /// `key` (one key), `keyprefix` (everything under a prefix) or `event` (the LB
    /// events: moves, scale-out and -in, devices; the handler gets the recent ones, as
    /// Consul's event watch does, each time one is added or gains a phase).
    #[arg(long = "type")]
    kind: String,
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    prefix: Option<String>,
    /// POST the JSON to this URL instead of running a command.
    #[arg(long = "http-handler")]
    http_handler: Option<String>,
    /// Read from any server (`?stale`).
    #[arg(long)]
    stale: bool,
    /// The handler command, run by `sh -c` with the JSON on standard input.
    #[arg(trailing_var_arg = true)]
    handler: Vec<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// `ballast watch`: a blocking-query loop that runs the handler once at start and then
/// once per real change of the watched data (an index bump with the same data, such as
/// a write elsewhere that moved a shared index, does not fire).
pub fn run(a: WatchArgs) -> Result<()> {
    let what = match (a.kind.as_str(), &a.key, &a.prefix) {
        ("key", Some(k), _) => WatchWhat::Key(k.clone()),
        ("keyprefix", _, Some(p)) => WatchWhat::KeyPrefix(p.clone()),
        ("event", _, _) => WatchWhat::Event,
        ("key", None, _) => bail!("-type key needs -key"),
        ("keyprefix", _, None) => bail!("-type keyprefix needs -prefix"),
        (t, _, _) => bail!("unsupported watch type {t:?} (key, keyprefix, event)"),
    };
    let handler = match (&a.http_handler, a.handler.is_empty()) {
        (Some(url), _) => WatchHandler::Http {
            url: url.clone(),
            method: "POST".into(),
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(10),
            tls_skip_verify: false,
        },
        (None, false) => WatchHandler::Shell(a.handler.join(" ")),
        (None, true) => bail!("give a handler command or -http-handler URL"),
    };
    let spec = WatchSpec { what, handler, token: None };
    runtime()?.block_on(async move {
        let c = ApiClient::new(&a.api.http_addr, a.api.token.clone());
        watch_loop(&c, &spec, a.stale).await
    })
}

/// The blocking-query loop of one watch, until an error that retrying cannot mend. The
/// agent runs its config's `watches` through it too.
pub async fn watch_loop(c: &ApiClient, spec: &WatchSpec, stale: bool) -> Result<()> {
    let (path, single) = match &spec.what {
        WatchWhat::Key(k) => (format!("/v1/kv/{}", escape_key(k)), true),
        WatchWhat::KeyPrefix(p) => (format!("/v1/kv/{}?recurse", escape_key(p)), false),
        WatchWhat::Event => ("/v1/lb/events".to_string(), false),
    };
    {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut index = 0u64;
        let mut last: Option<serde_json::Value> = None;
        let mut failures = 0u32;
        loop {
            let mut q = format!("{path}{sep}index={index}&wait=5m");
            if stale {
                q.push_str("&stale");
            }
            let r = match c.call(Method::GET, &q, Bytes::new()).await {
                Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => {
                    failures = 0;
                    r
                }
                other => {
                    failures += 1;
                    let why = match other {
                        Ok(r) => format!("{}: {}", r.status, String::from_utf8_lossy(&r.body).trim()),
                        Err(e) => e,
                    };
                    log::warn!("watch: {why}; retrying");
                    // Back off up to 10 s, like Consul's watch retry.
                    tokio::time::sleep(std::time::Duration::from_secs(u64::from(failures.min(10)))).await;
                    continue;
                }
            };
            let new_index = r.index.unwrap_or(0);
            // An index that went backwards (a restored snapshot): start over.
            index = if new_index < index { 0 } else { new_index };
            let data: serde_json::Value = if r.status == StatusCode::NOT_FOUND {
                if single {
                    serde_json::Value::Null
                } else {
                    serde_json::json!([])
                }
            } else {
                let v: serde_json::Value = serde_json::from_slice(&r.body).context("watch reply")?;
                if single {
                    v.get(0).cloned().unwrap_or(serde_json::Value::Null)
                } else {
                    v
                }
            };
            if last.as_ref() == Some(&data) {
                // A reply without a new index (no X-Consul-Index, or the wait ran out):
                // do not spin against the agent.
                if new_index <= index.max(1) && r.index.is_none() {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                continue;
            }
            let body = serde_json::to_vec(&data)?;
            last = Some(data);
            match &spec.handler {
                WatchHandler::Http { url, method, headers, timeout, tls_skip_verify } => {
                    if let Err(e) = http_handler(url, method, headers, *timeout, *tls_skip_verify, index, body).await {
                        log::warn!("watch: http handler {url}: {e}");
                    }
                }
                WatchHandler::Shell(command) => {
                    run_handler(tokio::process::Command::new("sh").arg("-c").arg(command), &body).await
                }
                WatchHandler::Args(args) => {
                    let mut cmd = tokio::process::Command::new(&args[0]);
                    cmd.args(&args[1..]);
                    run_handler(&mut cmd, &body).await
                }
            }
        }
    }
}

async fn run_handler(command: &mut tokio::process::Command, input: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let child = command.stdin(std::process::Stdio::piped()).spawn();
    match child {
        Ok(mut ch) => {
            if let Some(mut stdin) = ch.stdin.take() {
                let _ = stdin.write_all(input).await;
            }
            match ch.wait().await {
                Ok(s) if !s.success() => log::warn!("watch: handler exited with {s}"),
                Err(e) => log::warn!("watch: handler: {e}"),
                _ => {}
            }
        }
        Err(e) => log::warn!("watch: cannot run handler: {e}"),
    }
}

/// The JSON as a request's body, with `X-Consul-Index` as Consul's http handlers send it.
async fn http_handler(
    url: &str,
    method: &str,
    headers: &[(String, String)],
    timeout: std::time::Duration,
    tls_skip_verify: bool,
    index: u64,
    body: Vec<u8>,
) -> Result<(), String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method {method:?}: {e}"))?;
    let mut headers = headers.to_vec();
    headers.push(("X-Consul-Index".into(), index.to_string()));
    headers.push(("Content-Type".into(), "application/json".into()));
    let status = if url.starts_with("https://") {
        super::https_handler::send(url, method, &headers, Bytes::from(body), timeout, tls_skip_verify).await?
    } else {
        let rest = url.strip_prefix("http://").ok_or("an http:// or https:// URL")?;
        let (addr, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
        ApiClient::new(addr, None).send(method, &path, &headers, Bytes::from(body), timeout).await?.status
    };
    if !status.is_success() {
        return Err(format!("{status}"));
    }
    Ok(())
}

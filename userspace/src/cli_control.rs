//! The control-plane commands of the `ballast` binary, shaped like consul's CLI:
//! `ballast agent`, `ballast kv put|get|delete`, `ballast operator raft list-peers`.
//! Consul spells flags with one dash (`-config-file`, `-recurse`); both work here.
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use ballast_control::client::{escape_key, ApiClient};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};

/// Where the CLI finds the agent's API (consul's `-http-addr` / `CONSUL_HTTP_ADDR`).
#[derive(Args, Clone)]
pub struct ApiArgs {
    #[arg(long = "http-addr", env = "CONSUL_HTTP_ADDR", default_value = "127.0.0.1:8500", global = true)]
    http_addr: String,
    #[arg(long, env = "CONSUL_HTTP_TOKEN", global = true)]
    token: Option<String>,
}

#[derive(Args)]
pub struct AgentArgs {
    /// A JSON config file (repeatable; later files override earlier keys).
    #[arg(long = "config-file")]
    config_file: Vec<PathBuf>,
    /// A directory whose *.json files are read in name order.
    #[arg(long = "config-dir")]
    config_dir: Vec<PathBuf>,
    /// Node name (overrides node_name).
    #[arg(long)]
    node: Option<String>,
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Write a value (`-cas -modify-index N` for check-and-set, `-flags N`).
    Put {
        key: String,
        /// The value; `-` reads standard input; absent = empty.
        value: Option<String>,
        #[arg(long)]
        flags: Option<u64>,
        #[arg(long)]
        cas: bool,
        #[arg(long = "modify-index")]
        modify_index: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Read a value (`-recurse` for a prefix as key:value lines, `-detailed` for metadata).
    Get {
        key: String,
        #[arg(long)]
        recurse: bool,
        #[arg(long)]
        keys: bool,
        #[arg(long)]
        separator: Option<String>,
        #[arg(long)]
        detailed: bool,
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a key (`-recurse` for a prefix, `-cas -modify-index N`).
    Delete {
        key: String,
        #[arg(long)]
        recurse: bool,
        #[arg(long)]
        cas: bool,
        #[arg(long = "modify-index")]
        modify_index: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Raft operations.
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
}

#[derive(Subcommand)]
pub enum RaftCommand {
    /// The Raft servers, their addresses, who leads and who votes.
    ListPeers {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Args)]
pub struct KeyringArgs {
    /// Install a new key on every member.
    #[arg(long, group = "op")]
    install: Option<String>,
    /// Make an installed key the primary (encrypting) key everywhere.
    #[arg(long = "use", group = "op")]
    use_key: Option<String>,
    /// Remove a key from every member.
    #[arg(long, group = "op")]
    remove: Option<String>,
    /// List the keys members have, with how many members have each.
    #[arg(long, group = "op")]
    list: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct WatchArgs {
    /// `key` (one key) or `keyprefix` (everything under a prefix).
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

/// consul's single-dash long flags (`-config-file x`) become clap's `--config-file x`.
/// Only the flag names these commands know are rewritten, so a watch handler's own
/// arguments (`curl -fsS ...`) pass through untouched.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    const CONSUL_STYLE: [&str; 6] = ["agent", "kv", "operator", "members", "keyring", "watch"];
    const FLAGS: [&str; 22] = [
        "config-file",
        "config-dir",
        "node",
        "http-addr",
        "token",
        "recurse",
        "keys",
        "separator",
        "detailed",
        "stale",
        "cas",
        "modify-index",
        "flags",
        "type",
        "key",
        "prefix",
        "http-handler",
        "install",
        "use",
        "remove",
        "list",
        "help",
    ];
    if !args.get(1).is_some_and(|c| CONSUL_STYLE.contains(&c.as_str())) {
        return args;
    }
    let mut rest_verbatim = false;
    args.into_iter()
        .map(|a| {
            if rest_verbatim || a == "--" {
                rest_verbatim = true;
                return a;
            }
            let name =
                a.strip_prefix('-').filter(|n| !n.starts_with('-')).map(|n| n.split('=').next().unwrap_or(n));
            if name.is_some_and(|n| FLAGS.contains(&n)) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
}

pub fn agent(a: AgentArgs) -> Result<()> {
    let mut files = a.config_file;
    files.extend(a.config_dir);
    if files.is_empty() {
        bail!("give -config-file FILE or -config-dir DIR");
    }
    let cfg = ballast_control::config::load(&files, a.node.as_deref())?;
    runtime()?.block_on(ballast_control::agent::run(cfg))
}

fn expect_ok(r: &ballast_control::client::Reply) -> Result<()> {
    if r.status.is_success() {
        return Ok(());
    }
    bail!("{}: {}", r.status, String::from_utf8_lossy(&r.body).trim())
}

pub fn kv(cmd: KvCommand) -> Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            KvCommand::Put { key, value, flags, cas, modify_index, api } => {
                let c = ApiClient::new(&api.http_addr, api.token);
                let body = match value.as_deref() {
                    Some("-") => {
                        let mut v = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                        v
                    }
                    Some(v) => v.as_bytes().to_vec(),
                    None => Vec::new(),
                };
                let mut q = Vec::new();
                if let Some(f) = flags {
                    q.push(format!("flags={f}"));
                }
                if cas {
                    q.push(format!("cas={}", modify_index.unwrap_or(0)));
                }
                let path = format!("/v1/kv/{}?{}", escape_key(&key), q.join("&"));
                let r = c.call(Method::PUT, &path, Bytes::from(body)).await.map_err(anyhow::Error::msg)?;
                expect_ok(&r)?;
                if r.body.as_ref() == b"true" {
                    println!("Success! Data written to: {key}");
                    Ok(())
                } else {
                    bail!("Error! Did not write to {key}: CAS failed")
                }
            }
            KvCommand::Get { key, recurse, keys, separator, detailed, stale, api } => {
                let c = ApiClient::new(&api.http_addr, api.token);
                let mut q = Vec::new();
                if recurse {
                    q.push("recurse".to_string());
                }
                if keys {
                    q.push("keys".to_string());
                    q.push(format!("separator={}", escape_key(separator.as_deref().unwrap_or("/"))));
                }
                if stale {
                    q.push("stale".to_string());
                }
                let path = format!("/v1/kv/{}?{}", escape_key(&key), q.join("&"));
                let r = c.call(Method::GET, &path, Bytes::new()).await.map_err(anyhow::Error::msg)?;
                if r.status == StatusCode::NOT_FOUND {
                    if recurse || keys {
                        return Ok(());
                    }
                    bail!("Error! No key exists at: {key}");
                }
                expect_ok(&r)?;
                if keys {
                    let list: Vec<String> = serde_json::from_slice(&r.body).context("keys reply")?;
                    for k in list {
                        println!("{k}");
                    }
                    return Ok(());
                }
                let entries: Vec<ballast_control::api::kv::DirEntry> =
                    serde_json::from_slice(&r.body).context("kv reply")?;
                for e in entries {
                    let v = e.value.as_deref().map(ballast_control::b64::decode).transpose()?.unwrap_or_default();
                    let v = String::from_utf8_lossy(&v);
                    if detailed {
                        println!(
                            "CreateIndex      {}\nFlags            {}\nKey              {}\nLockIndex        {}\nModifyIndex      {}\nValue            {v}",
                            e.create_index, e.flags, e.key, e.lock_index, e.modify_index
                        );
                    } else if recurse {
                        println!("{}:{v}", e.key);
                    } else {
                        println!("{v}");
                    }
                }
                Ok(())
            }
            KvCommand::Delete { key, recurse, cas, modify_index, api } => {
                let c = ApiClient::new(&api.http_addr, api.token);
                let mut q = Vec::new();
                if recurse {
                    q.push("recurse".to_string());
                }
                if cas {
                    q.push(format!("cas={}", modify_index.unwrap_or(0)));
                }
                let path = format!("/v1/kv/{}?{}", escape_key(&key), q.join("&"));
                let r = c.call(Method::DELETE, &path, Bytes::new()).await.map_err(anyhow::Error::msg)?;
                expect_ok(&r)?;
                if r.body.as_ref() == b"true" {
                    println!("Success! Deleted key{}: {key}", if recurse { "s under" } else { "" });
                    Ok(())
                } else {
                    bail!("Error! Did not delete key {key}: CAS failed")
                }
            }
        }
    })
}

pub fn operator(cmd: OperatorCommand) -> Result<()> {
    let OperatorCommand::Raft { command: RaftCommand::ListPeers { api } } = cmd;
    runtime()?.block_on(async move {
        let c = ApiClient::new(&api.http_addr, api.token);
        let r = c
            .call(Method::GET, "/v1/operator/raft/configuration", Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        expect_ok(&r)?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("raft configuration reply")?;
        println!("{:<20} {:<22} {:<24} {:<9} {:<6}", "Node", "ID", "Address", "State", "Voter");
        for s in v["Servers"].as_array().into_iter().flatten() {
            println!(
                "{:<20} {:<22} {:<24} {:<9} {:<6}",
                s["Node"].as_str().unwrap_or("?"),
                s["ID"].as_str().unwrap_or("?"),
                s["Address"].as_str().unwrap_or("?"),
                if s["Leader"].as_bool() == Some(true) { "leader" } else { "follower" },
                s["Voter"].as_bool().unwrap_or(false)
            );
        }
        Ok(())
    })
}

pub fn members(api: ApiArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let c = ApiClient::new(&api.http_addr, api.token);
        let r = c.call(Method::GET, "/v1/agent/members", Bytes::new()).await.map_err(anyhow::Error::msg)?;
        expect_ok(&r)?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("members reply")?;
        println!(
            "{:<16} {:<22} {:<8} {:<7} {:<10} {:>6} {:>7} {:>12}",
            "Node", "Address", "Status", "Type", "DC", "CPU%", "Conns", "Bytes/s"
        );
        for m in v.as_array().into_iter().flatten() {
            let load = &m["Load"];
            println!(
                "{:<16} {:<22} {:<8} {:<7} {:<10} {:>6.1} {:>7} {:>12}",
                m["Name"].as_str().unwrap_or("?"),
                format!("{}:{}", m["Addr"].as_str().unwrap_or("?"), m["Port"]),
                m["StatusText"].as_str().unwrap_or("?"),
                if m["Tags"]["role"] == "consul" { "server" } else { "client" },
                m["Tags"]["dc"].as_str().unwrap_or("?"),
                load["cpu_pct"].as_f64().unwrap_or(0.0),
                load["connections"].as_u64().unwrap_or(0),
                load["bytes_per_s"].as_u64().unwrap_or(0),
            );
        }
        Ok(())
    })
}

pub fn keyring(a: KeyringArgs) -> Result<()> {
    let (method, key, what) = match (&a.install, &a.use_key, &a.remove, a.list) {
        (Some(k), _, _, _) => (Method::POST, Some(k.clone()), "Installing new gossip encryption key"),
        (_, Some(k), _, _) => (Method::PUT, Some(k.clone()), "Changing primary gossip encryption key"),
        (_, _, Some(k), _) => (Method::DELETE, Some(k.clone()), "Removing gossip encryption key"),
        (_, _, _, true) => (Method::GET, None, "Gathering installed encryption keys"),
        _ => bail!("give one of -install KEY, -use KEY, -remove KEY, -list"),
    };
    runtime()?.block_on(async move {
        println!("==> {what}...");
        let c = ApiClient::new(&a.api.http_addr, a.api.token);
        let body = key.map(|k| serde_json::json!({ "Key": k }).to_string()).unwrap_or_default();
        let r =
            c.call(method, "/v1/operator/keyring", Bytes::from(body)).await.map_err(anyhow::Error::msg)?;
        expect_ok(&r)?;
        if a.list {
            let v: serde_json::Value = serde_json::from_slice(&r.body).context("keyring reply")?;
            for ring in v.as_array().into_iter().flatten() {
                let n = ring["NumNodes"].as_u64().unwrap_or(0);
                println!("\n{} (LAN):", ring["Datacenter"].as_str().unwrap_or("?"));
                for (k, count) in ring["Keys"].as_object().into_iter().flatten() {
                    let primary = ring["PrimaryKeys"].get(k).is_some();
                    println!("  {k} [{count}/{n}]{}", if primary { " (primary)" } else { "" });
                }
            }
        }
        Ok(())
    })
}

/// `ballast watch`: a blocking-query loop that runs the handler once at start and then
/// once per real change of the watched data (an index bump with the same data, such as
/// a write elsewhere that moved a shared index, does not fire).
pub fn watch(a: WatchArgs) -> Result<()> {
    let (path, single) = match (a.kind.as_str(), &a.key, &a.prefix) {
        ("key", Some(k), _) => (format!("/v1/kv/{}", escape_key(k)), true),
        ("keyprefix", _, Some(p)) => (format!("/v1/kv/{}?recurse", escape_key(p)), false),
        ("key", None, _) => bail!("-type key needs -key"),
        ("keyprefix", _, None) => bail!("-type keyprefix needs -prefix"),
        (t, _, _) => bail!("unsupported watch type {t:?} (key, keyprefix)"),
    };
    if a.handler.is_empty() && a.http_handler.is_none() {
        bail!("give a handler command or -http-handler URL");
    }
    let command = a.handler.join(" ");
    runtime()?.block_on(async move {
        let c = ApiClient::new(&a.api.http_addr, a.api.token.clone());
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut index = 0u64;
        let mut last: Option<serde_json::Value> = None;
        let mut failures = 0u32;
        loop {
            let mut q = format!("{path}{sep}index={index}&wait=5m");
            if a.stale {
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
            if let Some(url) = &a.http_handler {
                if let Err(e) = post_handler(url, body).await {
                    log::warn!("watch: http handler {url}: {e}");
                }
            } else {
                run_handler(&command, &body).await;
            }
        }
    })
}

async fn run_handler(command: &str, input: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let child =
        tokio::process::Command::new("sh").arg("-c").arg(command).stdin(std::process::Stdio::piped()).spawn();
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

async fn post_handler(url: &str, body: Vec<u8>) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// handlers are supported")?;
    let (addr, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let c = ApiClient::new(addr, None);
    let r = c.call(Method::POST, &path, Bytes::from(body)).await?;
    if !r.status.is_success() {
        return Err(format!("{}", r.status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_args;

    fn n(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn consul_flags_only() {
        assert_eq!(
            n(&["b", "agent", "-config-file", "x", "-node=a"]),
            ["b", "agent", "--config-file", "x", "--node=a"]
        );
        assert_eq!(
            n(&["b", "watch", "-type", "key", "-key", "k", "curl", "-fsS", "-X", "POST"]),
            ["b", "watch", "--type", "key", "--key", "k", "curl", "-fsS", "-X", "POST"]
        );
        assert_eq!(n(&["b", "watch", "--", "-type"]), ["b", "watch", "--", "-type"]);
        // Other commands keep clap's own syntax.
        assert_eq!(n(&["b", "proxy", "-f", "x"]), ["b", "proxy", "-f", "x"]);
        assert_eq!(n(&["b", "kv", "put", "k", "-1"]), ["b", "kv", "put", "k", "-1"]);
    }
}

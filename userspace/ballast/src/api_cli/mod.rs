//! The commands that talk to an agent's HTTP API, shaped like consul's CLI: `ballast kv
//! put|get|delete`, `ballast members`, `ballast keyring`, `ballast watch`, `ballast operator
//! raft list-peers`.
//! Consul spells flags with one dash (`-config-file`, `-recurse`); both work here.
use anyhow::{bail, Context as _, Result};
use clap::Args;

mod https_handler;
pub mod keyring;
pub mod kv;
pub mod lb;
pub mod lock;
pub mod members;
pub mod operator;
pub mod watch;

/// Where the CLI finds the agent's API (consul's `-http-addr` / `CONSUL_HTTP_ADDR`).
#[derive(Args, Clone)]
pub struct ApiArgs {
    #[arg(long = "http-addr", env = "CONSUL_HTTP_ADDR", default_value = "127.0.0.1:8500", global = true)]
    http_addr: String,
    #[arg(long, env = "CONSUL_HTTP_TOKEN", global = true)]
    token: Option<String>,
}

/// consul's single-dash long flags (`-config-file x`) become clap's `--config-file x`.
/// Only the flag names these commands know are rewritten, so a watch handler's own
/// arguments (`curl -fsS ...`) pass through untouched.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    const CONSUL_STYLE: [&str; 8] = ["agent", "kv", "operator", "members", "keyring", "watch", "keygen", "lock"];
    const FLAGS: [&str; 28] = [
        "config-file",
        "config-dir",
        "node",
        "dev-insecure-rpc",
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
        "name",
        "ttl",
        "lock-delay",
        "timeout",
        "kill-timeout",
    ];
    // `lock PREFIX COMMAND...`: the command's own arguments start at the first positional.
    const TAKES_VALUE: [&str; 7] = ["http-addr", "token", "name", "ttl", "lock-delay", "timeout", "kill-timeout"];
    let is_lock = args.get(1).is_some_and(|c| c == "lock");
    if !args.get(1).is_some_and(|c| CONSUL_STYLE.contains(&c.as_str())) {
        return args;
    }
    let mut rest_verbatim = false;
    let mut value_next = false;
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if rest_verbatim || a == "--" {
                rest_verbatim = true;
                return a;
            }
            let name = a
                .trim_start_matches('-')
                .split('=')
                .next()
                .filter(|_| a.starts_with('-'))
                .map(String::from);
            if is_lock && i >= 2 && name.is_none() && !std::mem::take(&mut value_next) {
                rest_verbatim = true; // the prefix: everything after it is the command's
                return a;
            }
            value_next = is_lock && !a.contains('=') && name.as_deref().is_some_and(|n| TAKES_VALUE.contains(&n));
            let single =
                a.strip_prefix('-').filter(|n| !n.starts_with('-')).map(|n| n.split('=').next().unwrap_or(n));
            if single.is_some_and(|n| FLAGS.contains(&n)) {
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

fn expect_ok(r: &ballast_control::client::Reply) -> Result<()> {
    if r.status.is_success() {
        return Ok(());
    }
    bail!("{}: {}", r.status, String::from_utf8_lossy(&r.body).trim())
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
        // consul lock's flags before the prefix; the command's own after it, untouched.
        assert_eq!(
            n(&["b", "lock", "-name", "x", "-ttl=20s", "svc", "tool", "-name", "-timeout", "1"]),
            ["b", "lock", "--name", "x", "--ttl=20s", "svc", "tool", "-name", "-timeout", "1"]
        );
        // Other commands keep clap's own syntax.
        assert_eq!(n(&["b", "proxy", "-f", "x"]), ["b", "proxy", "-f", "x"]);
        assert_eq!(n(&["b", "kv", "put", "k", "-1"]), ["b", "kv", "put", "k", "-1"]);
    }
}

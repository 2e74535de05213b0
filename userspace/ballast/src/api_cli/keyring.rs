//! `ballast keyring`: the gossip encryption keys of every member, like `consul keyring`.
use anyhow::{bail, Context as _, Result};
use ballast_control::client::ApiClient;
use bytes::Bytes;
use clap::Args;
use hyper::Method;

use super::{expect_ok, runtime, ApiArgs};

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

pub fn run(a: KeyringArgs) -> Result<()> {
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

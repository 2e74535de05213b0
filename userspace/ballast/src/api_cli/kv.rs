//! `ballast kv put|get|delete`, like `consul kv`.
use anyhow::{bail, Context as _, Result};
use ballast_control::client::{escape_key, ApiClient};
use bytes::Bytes;
use clap::Subcommand;
use hyper::{Method, StatusCode};

use super::{expect_ok, runtime, ApiArgs};

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

pub fn run(cmd: KvCommand) -> Result<()> {
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

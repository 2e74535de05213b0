//! `ballast members`: gossip members with status and load, like `consul members`.
use anyhow::{Context as _, Result};
use ballast_control::client::ApiClient;
use bytes::Bytes;
use hyper::Method;

use super::{expect_ok, runtime, ApiArgs};

pub fn run(api: ApiArgs) -> Result<()> {
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

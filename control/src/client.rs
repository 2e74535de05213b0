//! The CLI's side of the API (`ballast kv ...`, `ballast operator raft list-peers`):
//! a small blocking-free HTTP client over hyper.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

use crate::raft::network::{http_client, HttpClient};

pub struct ApiClient {
    http: HttpClient,
    /// `host:port` of the agent's API (`CONSUL_HTTP_ADDR` / `-http-addr`).
    addr: String,
    token: Option<String>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub index: Option<u64>,
    pub body: Bytes,
}

impl ApiClient {
    pub fn new(addr: &str, token: Option<String>) -> ApiClient {
        let addr = addr.trim_start_matches("http://").trim_end_matches('/').to_string();
        ApiClient { http: http_client(), addr, token }
    }

    pub async fn call(&self, method: Method, path_and_query: &str, body: Bytes) -> Result<Reply, String> {
        self.send(method, path_and_query, &[], body, Duration::from_secs(660)).await
    }

    /// [`ApiClient::call`] with extra headers and a time limit.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Bytes,
        limit: Duration,
    ) -> Result<Reply, String> {
        let mut b = Request::builder().method(method).uri(format!("http://{}{path_and_query}", self.addr));
        if let Some(t) = &self.token {
            b = b.header("X-Consul-Token", t);
        }
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(limit, self.http.request(req))
            .await
            .map_err(|_| format!("{}: timed out", self.addr))?
            .map_err(|e| format!("{}: {e}", self.addr))?;
        let status = resp.status();
        let index = resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()?.parse().ok());
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status, index, body })
    }
}

/// Escapes a key for a URL path (keeps `/`).
pub fn escape_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

//! Raft RPCs between servers: JSON over HTTP/1.1 to the peer's cluster RPC address
//! (`ports.server`, `POST /v1/internal/raft/{append,vote,snapshot}`). The body of a reply is the
//! handler's `Result`, so a remote Raft error comes back as itself.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable},
    network::{RPCOption, RPCTypes},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
        VoteRequest, VoteResponse,
    },
    RaftNetwork, RaftNetworkFactory,
};
use serde::{de::DeserializeOwned, Serialize};

use super::{Node, NodeId, TypeConfig};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(c)
}

/// Header carrying the cluster token on internal requests (see `Keyring::rpc_token`).
pub const CLUSTER_TOKEN: &str = "x-ballast-cluster";

#[derive(Clone)]
pub struct Network {
    pub client: HttpClient,
    pub gossip: std::sync::Arc<crate::gossip::Gossip>,
}

pub struct Peer {
    client: HttpClient,
    gossip: std::sync::Arc<crate::gossip::Gossip>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer { client: self.client.clone(), gossip: self.gossip.clone(), target, addr: node.rpc.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

enum Fail {
    Unreachable(String),
    Network(String),
    Timeout,
}

/// POSTs `body` as JSON and decodes the JSON reply.
pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    body: &Req,
    ttl: Duration,
    token: Option<&str>,
) -> Result<Resp, String> {
    match post(client, addr, path, body, ttl, token).await {
        Ok(r) => Ok(r),
        Err(Fail::Unreachable(m) | Fail::Network(m)) => Err(m),
        Err(Fail::Timeout) => Err(format!("{addr}{path}: timed out after {ttl:?}")),
    }
}

/// Largest reply accepted from a peer (a snapshot chunk reply is tiny; an append reply
/// too): a confused or hostile peer cannot make us buffer without bound.
pub const MAX_REPLY: usize = 16 << 20;

async fn post<Req: Serialize, Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    body: &Req,
    ttl: Duration,
    token: Option<&str>,
) -> Result<Resp, Fail> {
    let bytes = serde_json::to_vec(body).map_err(|e| Fail::Network(format!("encode: {e}")))?;
    let mut req = hyper::Request::post(format!("http://{addr}{path}"))
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(CLUSTER_TOKEN, t);
    }
    let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| Fail::Network(format!("request: {e}")))?;
    let call = async {
        let resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                Fail::Unreachable(format!("{addr}: {e}"))
            } else {
                Fail::Network(format!("{addr}: {e}"))
            }
        })?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| Fail::Network(format!("{addr}: body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(Fail::Network(format!("{addr}{path}: {status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| Fail::Network(format!("{addr}{path}: decode: {e}")))
    };
    tokio::time::timeout(ttl, call).await.unwrap_or(Err(Fail::Timeout))
}

/// GETs and decodes JSON from another agent.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> Result<T, String> {
    use http_body_util::BodyExt;
    let mut req = hyper::Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header(CLUSTER_TOKEN, t);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    let call = async {
        let resp = client.request(req).await.map_err(|e| format!("{addr}: {e}"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{addr}{path}: {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{addr}{path}: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: timed out")))
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let token = self.gossip.rpc_token();
        match post::<_, Result<Resp, RaftError<NodeId, E>>>(
            &self.client,
            &self.addr,
            path,
            rpc,
            ttl,
            token.as_deref(),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(Fail::Unreachable(m)) => Err(RPCError::Unreachable(Unreachable::new(&Msg(m)))),
            Err(Fail::Network(m)) => Err(RPCError::Network(NetworkError::new(&Msg(m)))),
            Err(Fail::Timeout) => {
                Err(RPCError::Timeout(Timeout { action, id: self.target, target: self.target, timeout: ttl }))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/v1/internal/raft/append", RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/v1/internal/raft/vote", RPCTypes::Vote, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("/v1/internal/raft/snapshot", RPCTypes::InstallSnapshot, &rpc, &option).await
    }
}

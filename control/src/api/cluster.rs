//! Cluster endpoints: `/v1/status/leader|peers`, `/v1/operator/raft/configuration`,
//! `/v1/agent/self`, and the servers' internal ones (Raft RPCs, self-description, join).
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use openraft::{
    error::{InstallSnapshotError, RaftError},
    raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest},
};
use serde::de::DeserializeOwned;

use super::{forward_to_leader, json, read_body, ApiError, Body, MAX_INTERNAL_BODY};
use crate::{
    agent::{Agent, JoinRequest},
    raft::{NodeId, TypeConfig},
};

pub async fn route(agent: &Agent, req: Request<Incoming>, path: &str) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(super::method_not_allowed(req.method()));
    }
    match path {
        "/v1/status/leader" => {
            // Consul answers a JSON string, "" when there is no leader.
            let leader = match &agent.raft {
                Some(_) => agent.leader_addr().unwrap_or_default(),
                None => return forward_any(agent, req).await,
            };
            Ok(json(StatusCode::OK, &leader))
        }
        "/v1/status/peers" => {
            if agent.raft.is_none() {
                return forward_any(agent, req).await;
            }
            let peers: Vec<String> =
                agent.peers().into_iter().filter(|(_, _, voter)| *voter).map(|(_, a, _)| a).collect();
            Ok(json(StatusCode::OK, &peers))
        }
        "/v1/operator/raft/configuration" => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, 0).await?;
            if let Some(r) = forward_to_leader(agent, &parts, &body).await? {
                return Ok(r);
            }
            if !agent.authorizer(&parts).operator_read() {
                return Err(super::forbidden());
            }
            let leader = agent.raft.as_ref().and_then(|r| r.metrics().borrow().current_leader);
            let index = agent.raft.as_ref().and_then(|r| r.metrics().borrow().last_applied).map(|l| l.index);
            let servers: Vec<serde_json::Value> = agent
                .peers()
                .into_iter()
                .map(|(id, addr, voter)| {
                    serde_json::json!({
                        "ID": id.to_string(),
                        "Node": node_name_hint(agent, id),
                        "Address": addr,
                        "Leader": leader == Some(id),
                        "Voter": voter,
                        "ProtocolVersion": "3",
                    })
                })
                .collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "Servers": servers, "Index": index.unwrap_or(0) })))
        }
        "/v1/agent/self" => {
            let me = agent.self_info();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "Config": {
                        "NodeName": me.name,
                        "NodeID": me.id.to_string(),
                        "Datacenter": me.datacenter,
                        "Server": me.server,
                    },
                    "Member": { "Name": me.name, "Addr": me.addr },
                }),
            ))
        }
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"))),
    }
}

/// Node names are known for this agent only until gossip spreads them.
fn node_name_hint(agent: &Agent, id: NodeId) -> String {
    if id == agent.cfg.node_id {
        agent.cfg.node_name.clone()
    } else {
        id.to_string()
    }
}

async fn forward_any(agent: &Agent, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, 0).await?;
    let addr = agent.cfg.join.first().ok_or_else(ApiError::no_leader)?;
    super::forward_to(agent, addr, &parts, &body).await
}

async fn decode<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req.into_body(), MAX_INTERNAL_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad request body: {e}")))
}

pub async fn internal(
    agent: &Agent,
    req: Request<Incoming>,
    rest: String,
) -> Result<Response<Body>, ApiError> {
    if rest == "self" {
        return Ok(json(StatusCode::OK, &agent.self_info()));
    }
    let raft = agent.raft.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "not a server".into()))?;
    if req.method() != Method::POST {
        return Err(super::method_not_allowed(req.method()));
    }
    match rest.as_str() {
        "raft/append" => {
            let rpc: AppendEntriesRequest<TypeConfig> = decode(req).await?;
            Ok(json(StatusCode::OK, &raft.append_entries(rpc).await))
        }
        "raft/vote" => {
            let rpc: VoteRequest<NodeId> = decode(req).await?;
            Ok(json(StatusCode::OK, &raft.vote(rpc).await))
        }
        "raft/snapshot" => {
            let rpc: InstallSnapshotRequest<TypeConfig> = decode(req).await?;
            let r: Result<_, RaftError<NodeId, InstallSnapshotError>> = raft.install_snapshot(rpc).await;
            Ok(json(StatusCode::OK, &r))
        }
        "join" => {
            let j: JoinRequest = decode(req).await?;
            Ok(json(StatusCode::OK, &agent.add_server(j).await))
        }
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: /v1/internal/{rest}"))),
    }
}

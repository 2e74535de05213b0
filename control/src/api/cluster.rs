//! Cluster endpoints: `/v1/status/leader|peers`, `/v1/operator/raft/configuration`,
//! `/v1/agent/self`, and the servers' internal ones (Raft RPCs, self-description, join).
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use openraft::{
    error::{InstallSnapshotError, RaftError},
    raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest},
};
use serde::de::DeserializeOwned;

use super::{
    authorizer, authorizer_for, forward_to_leader, json, read_body, ApiError, Body, MAX_INTERNAL_BODY,
};
use crate::{
    plane::{ControlPlane, JoinRequest},
    raft::{NodeId, TypeConfig},
};

pub async fn route(
    plane: &ControlPlane,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    if path == "/v1/operator/keyring" {
        return keyring(plane, req).await;
    }
    // An unknown endpoint is a 404 whatever the method, as in Consul: a 405 would tell the
    // client that another method works there.
    const GET_ONLY: &[&str] = &[
        "/metrics",
        "/ui",
        "/ui/",
        "/v1/agent/metrics",
        "/v1/agent/members",
        "/v1/agent/self",
        "/v1/status/leader",
        "/v1/status/peers",
        "/v1/operator/raft/configuration",
    ];
    if !GET_ONLY.contains(&path) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")));
    }
    if req.method() != Method::GET {
        return Err(super::method_not_allowed(req.method()));
    }
    // Prometheus: /metrics, and Consul's /v1/agent/metrics?format=prometheus. With ACLs
    // on, a token with operator read (as a Bearer token in the scrape config).
    let prometheus = path == "/metrics"
        || (path == "/v1/agent/metrics" && req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "format=prometheus")));
    if path == "/ui" || path == "/ui/" {
        // The page is static; what it shows comes from API calls made with its token.
        let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::from_static(include_bytes!("ui.html"))));
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html; charset=utf-8"));
        return Ok(r);
    }
    if prometheus {
        let (parts, _) = req.into_parts();
        if !authorizer(plane, &parts).operator_read() {
            return Err(super::forbidden());
        }
        return Ok(metrics_page(plane));
    }
    match path {
        "/v1/agent/members" => {
            let out: Vec<serde_json::Value> = plane.gossip.members().iter().map(member_json).collect();
            Ok(json(StatusCode::OK, &out))
        }
        "/v1/status/leader" => {
            // Consul answers a JSON string, "" when there is no leader.
            let leader = match &plane.raft {
                Some(_) => plane.leader_addr().unwrap_or_default(),
                None => return forward_any(plane, req).await,
            };
            Ok(json(StatusCode::OK, &leader))
        }
        "/v1/status/peers" => {
            if plane.raft.is_none() {
                return forward_any(plane, req).await;
            }
            let peers: Vec<String> =
                plane.peers().into_iter().filter(|(_, _, voter)| *voter).map(|(_, a, _)| a).collect();
            Ok(json(StatusCode::OK, &peers))
        }
        "/v1/operator/raft/configuration" => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, 0).await?;
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            if !authorizer(plane, &parts).operator_read() {
                return Err(super::forbidden());
            }
            let leader = plane.raft.as_ref().and_then(|r| r.metrics().borrow().current_leader);
            let index = plane.raft.as_ref().and_then(|r| r.metrics().borrow().last_applied).map(|l| l.index);
            let servers: Vec<serde_json::Value> = plane
                .peers()
                .into_iter()
                .map(|(id, addr, voter)| {
                    serde_json::json!({
                        "ID": id.to_string(),
                        "Node": node_name_hint(plane, id),
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
            let me = plane.self_info();
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
                    "Stats": {
                        "gossip": {
                            "dropped_packets": plane.gossip.dropped.load(std::sync::atomic::Ordering::Relaxed),
                            "members": plane.gossip.members().len(),
                            "encrypted": plane.gossip.primary_key().is_some(),
                        },
                    },
                }),
            ))
        }
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"))),
    }
}

/// Consul's member JSON (serf status codes: 1 alive, 3 left, 4 failed), plus the load
/// the member gossips.
fn member_json(m: &crate::gossip::MemberView) -> serde_json::Value {
    use crate::gossip::Status;
    let (code, text) = match m.status {
        Status::Alive => (1, "alive"),
        Status::Suspect => (1, "suspect"),
        Status::Left => (3, "left"),
        Status::Failed => (4, "failed"),
    };
    let id = &m.ident;
    serde_json::json!({
        "Name": id.name,
        "Addr": id.addr.ip().to_string(),
        "Port": id.addr.port(),
        "Tags": {
            "role": if id.server { "consul" } else { "node" },
            "dc": id.dc,
            "id": id.node_id.to_string(),
            "http": id.http.to_string(),
        },
        "Status": code,
        "StatusText": text,
        "Load": m.load,
    })
}

#[derive(serde::Deserialize, serde::Serialize)]
struct KeyOp {
    #[serde(rename = "Op")]
    op: String,
    #[serde(rename = "Key", default)]
    key: String,
}

/// `/v1/operator/keyring`: GET lists the keys of every alive member; POST installs,
/// PUT makes primary, DELETE removes — on every alive member, answering which failed.
async fn keyring(plane: &ControlPlane, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let authz = authorizer_for(plane, req.headers(), req.uri());
    let op = match *req.method() {
        Method::GET => "list",
        Method::POST => "install",
        Method::PUT => "use",
        Method::DELETE => "remove",
        ref m => return Err(super::method_not_allowed(m)),
    };
    let allowed = if op == "list" { authz.operator_read() } else { authz.acl_write() };
    if !allowed {
        return Err(super::forbidden());
    }
    let token = req.headers().get("x-consul-token").cloned();
    let body = read_body(req.into_body(), 4096).await?;
    let key = if op == "list" {
        String::new()
    } else {
        #[derive(serde::Deserialize)]
        struct K {
            #[serde(rename = "Key")]
            key: String,
        }
        let k: K = super::consul_json::decode(&body)
            .map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?;
        crate::gossip::keyring::decode_key(&k.key).map_err(|e| ApiError::bad(e.to_string()))?;
        k.key
    };
    let body = KeyOp { op: op.into(), key };
    let members: Vec<_> = plane.gossip.alive().collect();
    let mut keys: std::collections::BTreeMap<String, usize> = Default::default();
    let mut primary: std::collections::BTreeMap<String, usize> = Default::default();
    let mut errors: Vec<String> = Vec::new();
    for m in &members {
        let addr = m.ident.rpc.to_string();
        let mut req = hyper::Request::post(format!("http://{addr}/v1/internal/keyring"))
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &token {
            req = req.header("x-consul-token", t);
        }
        if let Some(t) = plane.gossip.rpc_token() {
            req = req.header(crate::raft::network::CLUSTER_TOKEN, t);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                serde_json::to_vec(&body).unwrap_or_default(),
            )))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), plane.client.request(req)).await;
        let reply = match got {
            Ok(Ok(r)) => {
                let ok = r.status().is_success();
                let b = http_body_util::BodyExt::collect(r.into_body())
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                if ok {
                    serde_json::from_slice::<Vec<String>>(&b).map_err(|e| e.to_string())
                } else {
                    Err(String::from_utf8_lossy(&b).into_owned())
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        };
        match reply {
            Ok(list) => {
                if let Some(p) = list.first() {
                    *primary.entry(p.clone()).or_default() += 1;
                }
                for k in list {
                    *keys.entry(k).or_default() += 1;
                }
            }
            Err(e) => errors.push(format!("{}: {e}", m.ident.name)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::internal(format!(
            "{} of {} members failed: {}",
            errors.len(),
            members.len(),
            errors.join("; ")
        )));
    }
    if op != "list" {
        return Ok(json(StatusCode::OK, &true));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!([{
            "WAN": false, "Datacenter": plane.cfg.datacenter, "Segment": "",
            "Keys": keys, "PrimaryKeys": primary, "NumNodes": members.len(),
        }]),
    ))
}

/// Node names are known for this agent only until gossip spreads them.
fn node_name_hint(plane: &ControlPlane, id: NodeId) -> String {
    if id == plane.cfg.node_id {
        plane.cfg.node_name.clone()
    } else {
        id.to_string()
    }
}

async fn forward_any(plane: &ControlPlane, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, 0).await?;
    let addr = plane.any_server().ok_or_else(ApiError::no_leader)?;
    super::forward_to(plane, &addr, &parts, &body).await
}

/// Largest snapshot accepted from a leader.
const MAX_SNAPSHOT: u64 = 1 << 30;

async fn decode<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req.into_body(), MAX_INTERNAL_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad request body: {e}")))
}

pub async fn internal(
    plane: &ControlPlane,
    req: Request<Incoming>,
    rest: String,
) -> Result<Response<Body>, ApiError> {
    if rest == "self" {
        return Ok(json(StatusCode::OK, &plane.self_info()));
    }
    if rest == "keyring" {
        let authz = authorizer_for(plane, req.headers(), req.uri());
        if !authz.operator_read() && !authz.acl_write() {
            return Err(super::forbidden());
        }
        let body = read_body(req.into_body(), 4096).await?;
        let op: KeyOp =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad request body: {e}")))?;
        let allowed = if op.op == "list" { authz.operator_read() } else { authz.acl_write() };
        if !allowed {
            return Err(super::forbidden());
        }
        if op.op != "list" {
            plane.gossip.keyring_op(&op.op, &op.key).map_err(|e| ApiError::bad(e.to_string()))?;
        }
        return Ok(json(StatusCode::OK, &plane.gossip.keys()));
    }
    if rest == "lb/state" {
        return lb_state(plane, req).await;
    }
    let raft = plane.raft.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "not a server".into()))?;
    if rest == "lease" {
        #[derive(serde::Deserialize)]
        struct LeaseRequest {
            device: String,
        }
        let r: LeaseRequest = decode(req).await?;
        return match plane.grant_lease(&r.device).await {
            Ok(g) => Ok(json(StatusCode::OK, &g)),
            Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("no lease: {e}"))),
        };
    }
    if rest == "lb/admin" {
        // An agent drains itself when it stops gracefully, and undoes it when it comes back.
        #[derive(serde::Deserialize)]
        struct AdminRequest {
            device: String,
            admin: crate::state::lb::Admin,
        }
        let r: AdminRequest = decode(req).await?;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let write = crate::state::lb::LbWrite::SetAdmin { name: r.device, admin: r.admin };
        return match raft.client_write(crate::state::Command::Lb { write, at_ms }).await {
            Ok(resp) => Ok(json(StatusCode::OK, &resp.data)),
            Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("raft: {e}"))),
        };
    }
    if rest == "lb/phase" {
        #[derive(serde::Deserialize)]
        struct PhaseRequest {
            event: u64,
            phase: String,
            at_ms: u64,
        }
        let r: PhaseRequest = decode(req).await?;
        let at_ms = r.at_ms;
        let write = crate::state::lb::LbWrite::Phase { event: r.event, phase: r.phase, at_ms };
        return match raft.client_write(crate::state::Command::Lb { write, at_ms }).await {
            Ok(resp) => Ok(json(StatusCode::OK, &resp.data)),
            Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("raft: {e}"))),
        };
    }
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
            // The receiving buffer grows to offset + len: bound what a chunk may claim.
            if rpc.offset.checked_add(rpc.data.len() as u64).is_none_or(|end| end > MAX_SNAPSHOT) {
                return Err(ApiError::bad(format!("snapshot chunk beyond the {MAX_SNAPSHOT}-byte limit")));
            }
            let r: Result<_, RaftError<NodeId, InstallSnapshotError>> = raft.install_snapshot(rpc).await;
            Ok(json(StatusCode::OK, &r))
        }
        "join" => {
            let j: JoinRequest = decode(req).await?;
            Ok(json(StatusCode::OK, &plane.add_server(j).await))
        }
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: /v1/internal/{rest}"))),
    }
}

/// `GET /v1/internal/lb/state?index=N`: the LB state for client agents (`{applied, state}`,
/// `applied` being this server's last applied log index), blocking until the state is past
/// `N` (at most 60 s).
async fn lb_state(plane: &ControlPlane, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let store = plane.store.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "not a server".into()))?;
    let index: u64 = super::query::parse_query(req.uri().query().unwrap_or(""))
        .map_err(|e| ApiError::bad(format!("bad query: {e}")))?
        .into_iter()
        .find(|(k, _)| k == "index")
        .and_then(|(_, v)| v?.parse().ok())
        .unwrap_or(0);
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        changes.borrow_and_update();
        let timed_out = tokio::time::Instant::now() >= deadline;
        let reply = store.read(|a: &crate::raft::state_machine::Applied| {
            (a.state.lb.modify_index > index || timed_out)
                .then(|| (a.last_applied.map(|l| l.index).unwrap_or(0), a.state.lb.clone()))
        });
        if let Some((applied, state)) = reply {
            return Ok(json(StatusCode::OK, &serde_json::json!({ "applied": applied, "state": state })));
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_ok_and(|r| r.is_err()) {
            return Err(ApiError::internal("store closed"));
        }
    }
}

fn metrics_page(plane: &ControlPlane) -> Response<Body> {
    let lb = plane.store.as_ref().map(|s| s.read(|a| a.state.lb.clone()));
    let (term, applied, leader) = match &plane.raft {
        Some(r) => {
            let m = r.metrics().borrow().clone();
            (m.current_term, m.last_applied.map(|l| l.index).unwrap_or(0), plane.is_leader())
        }
        None => (0, 0, false),
    };
    let members = plane.gossip.members();
    let empty = crate::state::lb::LbState::default();
    let view = crate::metrics::ControlView {
        node: &plane.cfg.node_name,
        leader,
        term,
        last_applied: applied,
        members: &members,
        gossip_dropped: plane.gossip.dropped.load(std::sync::atomic::Ordering::Relaxed),
        lb: lb.as_ref().unwrap_or(&empty),
    };
    let mut page = crate::metrics::Page::default();
    crate::metrics::control(&mut page, &view);
    let mut text = page.into_text();
    text.push_str(&plane.plane_metrics.lock().unwrap_or_else(|p| p.into_inner()));
    let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

//! The HTTP API (JSON), shaped like Consul's: `/v1/kv`, `/v1/txn`, `/v1/status/*`,
//! `/v1/operator/raft/configuration`; and, on a listener of its own (the cluster RPC port,
//! as Consul's server port 8300), the internal endpoints: Raft, join, keyring changes.
//!
//! Where a request is served: writes and default/`consistent` reads on the Raft leader
//! (a follower forwards the request as is), `stale` reads on any server.
pub mod acl;
pub mod cluster;
mod consul_json;
pub mod kv;
pub mod lb;
pub mod query;
pub mod session;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, header, service::service_fn, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::plane::ControlPlane;

pub type Body = Full<Bytes>;

/// Marks a request a server already forwarded, so that it is never forwarded twice.
const FORWARDED: &str = "x-ballast-forwarded";
/// Largest internal (Raft) request body: entries and snapshot chunks.
const MAX_INTERNAL_BODY: usize = 64 << 20;

/// Most API connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 4096;

/// Which requests a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    /// The HTTP API (`client_addr`, `ports.http`): never cluster RPC.
    Api,
    /// Cluster RPC (`bind_addr`, `ports.server`): `/v1/internal/*` only, authenticated.
    Rpc,
}

/// Serves the HTTP API on `listener` until the process ends.
pub async fn serve(plane: Arc<ControlPlane>, listener: TcpListener) {
    serve_port(plane, listener, Port::Api).await
}

/// Serves cluster RPC (Raft, join, keyring changes) on `listener` until the process ends.
pub async fn serve_rpc(plane: Arc<ControlPlane>, listener: TcpListener) {
    serve_port(plane, listener, Port::Rpc).await
}

async fn serve_port(plane: Arc<ControlPlane>, listener: TcpListener, port: Port) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("api accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let plane = plane.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let plane = plane.clone();
                async move {
                    Ok::<_, Infallible>(match port {
                        Port::Api => handle(plane, req).await,
                        Port::Rpc => handle_rpc(plane, req).await,
                    })
                }
            });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// An API error: a status and a plain-text message, as Consul answers.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
    }
    pub fn no_leader() -> ApiError {
        ApiError::internal("No cluster leader")
    }
}

pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    match serde_json::to_vec(v) {
        Ok(b) => {
            let mut r = Response::new(Full::new(Bytes::from(b)));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the reply: {e}")),
    }
}

/// Reads a body up to `limit` bytes; more is 413.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large, max size: {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad(format!("reading the request body: {e}"))),
    }
}

async fn handle(plane: Arc<ControlPlane>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let res = if let Some(key) = path.strip_prefix("/v1/kv/") {
        match query::percent_decode(key, false) {
            Ok(key) => kv::kv(&plane, req, key).await,
            Err(e) => Err(ApiError::bad(format!("invalid key: {e}"))),
        }
    } else if path == "/v1/kv" {
        kv::kv(&plane, req, String::new()).await
    } else if let Some(rest) = path.strip_prefix("/v1/acl/") {
        acl::route(&plane, req, rest.to_string()).await
    } else if let Some(rest) = path.strip_prefix("/v1/lb/") {
        lb::route(&plane, req, rest).await
    } else if let Some(rest) = path.strip_prefix("/v1/session/") {
        session::route(&plane, req, rest).await
    } else if path == "/v1/txn" {
        kv::txn(&plane, req).await
    } else if path.starts_with("/v1/internal/") {
        // Cluster RPC has its own listener on the cluster address; the API never serves it.
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path} (cluster RPC is on ports.server)"),
        ))
    } else {
        cluster::route(&plane, req, &path).await
    };
    res.unwrap_or_else(|ApiError(s, m)| text(s, m))
}

/// A cluster RPC request: only cluster members (holders of a gossip key) may speak Raft,
/// join or change keys; checked before any body is read.
async fn handle_rpc(plane: Arc<ControlPlane>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let res = match path.strip_prefix("/v1/internal/") {
        Some(rest) => {
            let token = req.headers().get(crate::raft::network::CLUSTER_TOKEN).and_then(|v| v.to_str().ok());
            if plane.rpc_allowed(token) {
                cluster::internal(&plane, req, rest.to_string()).await
            } else {
                Err(ApiError(StatusCode::FORBIDDEN, "cluster RPC: missing or bad cluster token".into()))
            }
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path} (this is the cluster RPC port)"),
        )),
    };
    res.unwrap_or_else(|ApiError(s, m)| text(s, m))
}

/// Sends the request to the leader and returns its answer, or None when this server
/// should answer itself (it is the leader, or the request was already forwarded).
pub async fn forward_to_leader(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<Option<Response<Body>>, ApiError> {
    if plane.raft.is_none() {
        // A client agent: any server will do; the server forwards on to its leader.
        return forward_to(plane, &plane.any_server().ok_or_else(ApiError::no_leader)?, parts, body)
            .await
            .map(Some);
    }
    if plane.is_leader() || parts.headers.contains_key(FORWARDED) {
        return Ok(None);
    }
    let leader = plane.leader_addr().ok_or_else(ApiError::no_leader)?;
    forward_to(plane, &leader, parts, body).await.map(Some)
}

pub async fn forward_to(
    plane: &ControlPlane,
    addr: &str,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = Request::builder().method(parts.method.clone()).uri(format!("http://{addr}{pq}"));
    // The body may have been rewritten (a session's Node filled in): its length is the
    // body's own, set by the client, not the original request's.
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONNECTION && k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            b = b.header(k, v);
        }
    }
    // Only a server marks what it forwards: a client agent's request may still need
    // the server it reaches to forward it on to the leader.
    if plane.raft.is_some() {
        b = b.header(FORWARDED, "1");
    }
    let req = b.body(Full::new(body.clone())).map_err(|e| ApiError::internal(e.to_string()))?;
    // Blocking queries may hold the request for up to 10 minutes (+ jitter); it is
    // abandoned when its target stops being the leader (or, from a client agent, dies).
    // Half a second of it, not one look: a leader named by a ForwardToLeader answer may
    // reach this server's own view a moment later.
    let gone = async {
        let mut misses = 0;
        while misses < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            misses = if plane.forward_target_holds(addr) { 0 } else { misses + 1 };
        }
    };
    let sent = tokio::select! {
        r = tokio::time::timeout(std::time::Duration::from_secs(700), plane.client.request(req)) => r,
        // Not "no leader": the request may have reached it and been applied, so the
        // answer must not say it was not (a client would take a done write for undone).
        _ = gone => {
            return Err(ApiError::internal(format!(
                "forwarding to {addr}: abandoned, it is no longer the leader or alive; the request may or may not have been applied"
            )));
        }
    };
    let resp = sent
        .map_err(|_| ApiError::internal(format!("forwarding to {addr}: timed out")))?
        .map_err(|e| {
            if e.is_connect() {
                // Never delivered: the leader we knew is gone and no other is known yet.
                log::debug!("forwarding to {addr}: {e}");
                ApiError::no_leader()
            } else {
                ApiError::internal(format!("forwarding to {addr}: {e}"))
            }
        })?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        Limited::new(body, crate::raft::network::MAX_REPLY).collect(),
    )
    .await
    .map_err(|_| ApiError::internal(format!("from {addr}: reply body timed out")))?
    .map_err(|e| ApiError::internal(format!("from {addr}: {e}")))?
    .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Proposes a command through Raft on the leader, forwarding the whole request there
/// when this server is not the leader: Ok(Ok(outcome)) when applied here, Ok(Err(reply))
/// when another server answered.
pub async fn propose(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    cmd: crate::state::Command,
) -> Result<Result<crate::state::Outcome, Response<Body>>, ApiError> {
    if let Some(r) = forward_to_leader(plane, parts, body).await? {
        return Ok(Err(r));
    }
    let raft = plane.raft.as_ref().ok_or_else(ApiError::no_leader)?;
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(Ok(resp.data)),
        Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
            // Leadership moved while proposing: the new leader decides (never twice).
            match f.leader_node {
                Some(n) if !parts.headers.contains_key(FORWARDED) => {
                    forward_to(plane, &n.api, parts, body).await.map(Err)
                }
                _ => Err(ApiError::no_leader()),
            }
        }
        Err(e) => Err(ApiError::internal(format!("raft: {e}"))),
    }
}

pub fn forbidden() -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "Permission denied".into())
}

/// The secret a request carries: `X-Consul-Token`, `Authorization: Bearer`, or `?token=`.
pub fn request_token(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> Option<String> {
    if let Some(t) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_string());
    }
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    {
        return Some(t.trim().to_string());
    }
    query::parse_query(uri.query().unwrap_or(""))
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .and_then(|(_, v)| v)
}

/// What the request's token may do on this device.
pub fn authorizer(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
) -> crate::state::acl::Authorizer {
    authorizer_for(plane, &parts.headers, &parts.uri)
}

pub fn authorizer_for(
    plane: &ControlPlane,
    headers: &hyper::HeaderMap,
    uri: &hyper::Uri,
) -> crate::state::acl::Authorizer {
    plane.authorizer(request_token(headers, uri))
}

pub fn method_not_allowed(m: &Method) -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, format!("method {m} not allowed"))
}

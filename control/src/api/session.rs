//! `/v1/session/*` in Consul's shapes: create, destroy, renew, info, node, list. Changes
//! go through Raft; a session's TTL is tracked by the leader (renew runs there), which
//! destroys lapsed sessions and those whose node gossip declares failed
//! (`sessions.rs`). Reads answer with `X-Consul-Index` and block like KV reads.
use std::time::Duration;

use bytes::Bytes;
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::{authorizer, forbidden, forward_to, forward_to_leader, json, method_not_allowed, read_body, ApiError, Body};
use crate::{
    plane::ControlPlane,
    state::{
        session::{Behavior, Session, SessionResult, SessionWrite, DEFAULT_LOCK_DELAY_MS, SERF_HEALTH},
        Command, Outcome,
    },
};

const MAX_BODY: usize = 16 * 1024;
const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    node: Option<String>,
    /// A duration string, or a number: seconds below 1000, else nanoseconds (Consul).
    #[serde(default)]
    lock_delay: Option<serde_json::Value>,
    #[serde(default)]
    behavior: Option<String>,
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
    #[serde(default)]
    checks: Option<Vec<String>>,
    #[serde(default)]
    node_checks: Option<Vec<String>>,
    #[serde(default)]
    service_checks: Option<serde_json::Value>,
}

fn lock_delay_ms(v: &serde_json::Value) -> Result<u64, ApiError> {
    let bad = || ApiError::bad(format!("Request decode failed: LockDelay {v}"));
    match v {
        serde_json::Value::String(s) => {
            crate::duration::parse_duration(s).map(|d| d.as_millis() as u64).map_err(|_| bad())
        }
        serde_json::Value::Number(n) => {
            let n = n.as_u64().ok_or_else(bad)?;
            Ok(if n < 1000 { n * 1000 } else { n / 1_000_000 })
        }
        _ => Err(bad()),
    }
}

/// The session as Consul shows it.
pub fn session_json(s: &Session) -> serde_json::Value {
    serde_json::json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay_ms * 1_000_000,
        "Behavior": s.behavior.as_str(),
        "TTL": s.ttl_ms.map(|t| format!("{}s", t / 1000)).unwrap_or_default(),
        "NodeChecks": s.node_checks,
        "Checks": s.node_checks,
        "ServiceChecks": null,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.create_index,
    })
}

fn wall_ms() -> u64 {
    crate::failover::wall_ms()
}

async fn propose(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    write: SessionWrite,
) -> Result<Option<Response<Body>>, ApiError> {
    match super::propose(plane, parts, body, Command::Session { write, at_ms: wall_ms() }).await? {
        Ok(Outcome::Session(SessionResult::Ok)) => Ok(None),
        Ok(Outcome::Session(SessionResult::Refused(why))) => Err(ApiError::bad(why)),
        Ok(_) => Err(ApiError::internal("unexpected reply from the state machine")),
        Err(forwarded) => Ok(Some(forwarded)),
    }
}

pub async fn route(plane: &ControlPlane, req: Request<Incoming>, rest: &str) -> Result<Response<Body>, ApiError> {
    let segs: Vec<String> = rest.split('/').map(String::from).collect();
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_BODY).await?;
    match (&parts.method, segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
        (&Method::PUT, ["create"]) => create(plane, &parts, &body).await,
        (&Method::PUT, ["destroy", id]) => {
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
            if let Some(node) = store.read(|a| a.state.sessions.get(id).map(|s| s.node.clone())) {
                if authorizer(plane, &parts).session_access(&node) != crate::state::acl::Access::Write {
                    return Err(forbidden());
                }
            }
            if let Some(r) = propose(plane, &parts, &body, SessionWrite::Destroy { id: id.to_string() }).await? {
                return Ok(r);
            }
            plane.session_timers.lock().unwrap_or_else(|p| p.into_inner()).remove(*id);
            Ok(json(StatusCode::OK, &true))
        }
        (&Method::PUT, ["renew", id]) => {
            // The TTL timers live on the leader.
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
            let Some(s) = store.read(|a| a.state.sessions.get(id).cloned()) else {
                return Err(ApiError(StatusCode::NOT_FOUND, format!("Session id '{id}' not found")));
            };
            if authorizer(plane, &parts).session_access(&s.node) != crate::state::acl::Access::Write {
                return Err(forbidden());
            }
            plane.session_timers.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), std::time::Instant::now());
            Ok(json(StatusCode::OK, &[session_json(&s)]))
        }
        (&Method::GET, ["info", id]) => {
            let id = id.to_string();
            read(plane, &parts, &body, move |s| s.id == id).await
        }
        (&Method::GET, ["node", node]) => {
            let node = node.to_string();
            read(plane, &parts, &body, move |s| s.node == node).await
        }
        (&Method::GET, ["list"]) => read(plane, &parts, &body, |_| true).await,
        (m, ["create" | "destroy" | "renew" | "info" | "node" | "list", ..]) => Err(method_not_allowed(m)),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: /v1/session/{rest}"))),
    }
}

async fn create(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        super::consul_json::decode(body).map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))?
    };
    // The agent that got the request owns sessions without a Node (Consul's default),
    // so it names itself before the request goes on to the leader.
    let node = b.node.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| plane.cfg.node_name.clone());
    let ttl_ms = match b.ttl.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => {
            let d = crate::duration::parse_duration(t).map_err(|e| ApiError::bad(format!("Invalid Session TTL '{t}': {e}")))?;
            (!d.is_zero()).then_some(d.as_millis() as u64)
        }
    };
    let behavior = match b.behavior.as_deref().unwrap_or("release") {
        "release" | "" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => return Err(ApiError::bad(format!("Invalid Behavior setting '{other}'"))),
    };
    if b.service_checks.as_ref().is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::bad("ServiceChecks: ballast has no service catalog"));
    }
    let node_checks = match (b.node_checks, b.checks) {
        (Some(n), _) => n,
        (None, Some(c)) => c,
        (None, None) => vec![SERF_HEALTH.to_string()],
    };
    let mut s = Session {
        id: String::new(),
        name: b.name,
        node,
        lock_delay_ms: b.lock_delay.as_ref().map(lock_delay_ms).transpose()?.unwrap_or(DEFAULT_LOCK_DELAY_MS),
        behavior,
        ttl_ms,
        node_checks,
        create_index: 0,
    };
    // Resolved here; the leader gets the full session (with its Node) as the body.
    let resolved = serde_json::json!({
        "Name": s.name, "Node": s.node, "LockDelay": format!("{}ms", s.lock_delay_ms),
        "Behavior": s.behavior.as_str(), "TTL": s.ttl_ms.map(|t| format!("{t}ms")).unwrap_or_default(),
        "NodeChecks": s.node_checks,
    });
    let resolved = Bytes::from(serde_json::to_vec(&resolved).map_err(|e| ApiError::internal(e.to_string()))?);
    if plane.raft.is_none() {
        let server = plane.any_server().ok_or_else(ApiError::no_leader)?;
        return forward_to(plane, &server, parts, &resolved).await;
    }
    if let Some(r) = forward_to_leader(plane, parts, &resolved).await? {
        return Ok(r);
    }
    if authorizer(plane, parts).session_access(&s.node) != crate::state::acl::Access::Write {
        return Err(forbidden());
    }
    // Consul refuses a session on a node whose checks are not passing.
    if s.node_checks.iter().any(|c| c == SERF_HEALTH) && !plane.gossip.alive().any(|m| m.ident.name == s.node) {
        return Err(ApiError::internal(format!(
            "Check '{SERF_HEALTH}' is in critical state: node {:?} is not an alive member",
            s.node
        )));
    }
    s.id = super::acl::uuid()?;
    let id = s.id.clone();
    s.validate().map_err(ApiError::bad)?;
    if let Some(r) = propose(plane, parts, &resolved, SessionWrite::Create(s)).await? {
        return Ok(r);
    }
    plane.session_timers.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), std::time::Instant::now());
    Ok(json(StatusCode::OK, &serde_json::json!({ "ID": id })))
}

/// info, node and list: the matching sessions the token may read, blocking on
/// `?index=` until the sessions change.
async fn read(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    want: impl Fn(&Session) -> bool,
) -> Result<Response<Body>, ApiError> {
    let (mut index, mut wait, mut stale) = (0u64, Duration::from_secs(300), false);
    for (k, v) in super::query::parse_query(parts.uri.query().unwrap_or("")).map_err(|e| ApiError::bad(format!("bad query: {e}")))? {
        match k.as_str() {
            "index" => index = v.as_deref().unwrap_or("").parse().map_err(|_| ApiError::bad("Invalid X-Consul-Index"))?,
            "wait" => {
                wait = crate::duration::parse_duration(v.as_deref().unwrap_or(""))
                    .map_err(|e| ApiError::bad(format!("Invalid wait time: {e}")))?
                    .min(MAX_WAIT)
            }
            "stale" => stale = true,
            _ => {}
        }
    }
    if plane.store.is_none() || !stale {
        if let Some(r) = forward_to_leader(plane, parts, body).await? {
            return Ok(r);
        }
    }
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let authz = authorizer(plane, parts);
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changes.borrow_and_update();
        let (at, list) = store.read(|a| {
            let list: Vec<serde_json::Value> = a
                .state
                .sessions
                .by_id
                .values()
                .filter(|s| want(s) && authz.session_access(&s.node) >= crate::state::acl::Access::Read)
                .map(session_json)
                .collect();
            (a.state.sessions.index.max(1), list)
        });
        if index == 0 || at > index || tokio::time::Instant::now() >= deadline {
            let mut r = json(StatusCode::OK, &list);
            r.headers_mut().insert("X-Consul-Index", at.into());
            return Ok(r);
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_ok_and(|r| r.is_err()) {
            return Err(ApiError::internal("store closed"));
        }
    }
}

//! `/v1/kv/<key>` and `/v1/txn` with Consul's semantics: values are raw bodies on PUT
//! and base64 in JSON; `X-Consul-Index` on every read; blocking reads with
//! `?index=&wait=` wake only on a change under the key or prefix read.
use std::time::Duration;

use bytes::Bytes;
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::{
    authorizer, forbidden, forward_to_leader, json, method_not_allowed, query, read_body, ApiError, Body,
};
use crate::{
    plane::ControlPlane,
    raft::state_machine::Applied,
    state::acl::Authorizer,
    state::kv::{Entry, Kv, KvError, TxnOp, Write, WriteResult, MAX_TXN_OPS, MAX_VALUE_SIZE},
    state::{Command, Outcome},
};

/// Consul's default and longest `wait` of a blocking query.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Largest `/v1/txn` body (Consul's `txn_max_req_len` default is 512 KiB; base64 values
/// of up to `MAX_VALUE_SIZE` need more).
pub const MAX_TXN_BODY: usize = 1 << 20;

/// Consul's `DirEntry` JSON.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DirEntry {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    pub value: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
    /// The session holding the key's lock (left out when none, as Consul does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl DirEntry {
    pub fn new(key: &str, e: &Entry, with_value: bool) -> DirEntry {
        DirEntry {
            lock_index: e.lock_index,
            session: e.session.clone(),
            key: key.to_string(),
            flags: e.flags,
            value: (with_value && !e.value.is_empty()).then(|| crate::b64::encode(&e.value)),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// The query parameters of a KV request.
#[derive(Debug, Default)]
struct Params {
    recurse: bool,
    keys: bool,
    raw: bool,
    separator: Option<String>,
    flags: u64,
    cas: Option<u64>,
    index: u64,
    wait: Option<Duration>,
    stale: bool,
    consistent: bool,
    lock: Option<Lock>,
}

#[derive(Debug, PartialEq)]
enum Lock {
    Acquire(String),
    Release(String),
}

fn params(q: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let num = |k: &str, v: &Option<String>| -> Result<u64, ApiError> {
        v.as_deref().unwrap_or("").parse().map_err(|_| ApiError::bad(format!("Invalid {k} value: {v:?}")))
    };
    for (k, v) in query::parse_query(q.unwrap_or("")).map_err(|e| ApiError::bad(format!("bad query: {e}")))? {
        match k.as_str() {
            "recurse" => p.recurse = true,
            "keys" => p.keys = true,
            "raw" => p.raw = true,
            "separator" => p.separator = v,
            "flags" => p.flags = num("flags", &v)?,
            "cas" => p.cas = Some(num("cas", &v)?),
            "index" => p.index = num("index", &v).map_err(|_| ApiError::bad("Invalid X-Consul-Index"))?,
            "wait" => {
                let d = crate::duration::parse_duration(v.as_deref().unwrap_or(""))
                    .map_err(|e| ApiError::bad(format!("Invalid wait time: {e}")))?;
                p.wait = Some(d.min(MAX_WAIT));
            }
            "stale" => p.stale = true,
            "consistent" => p.consistent = true,
            "acquire" | "release" => {
                let id = v.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad(format!("?{k}= needs a session")))?;
                // As Consul's KVSPut: release wins over acquire, either over cas.
                if k == "release" || !matches!(p.lock, Some(Lock::Release(_))) {
                    p.lock = Some(if k == "acquire" { Lock::Acquire(id) } else { Lock::Release(id) });
                }
            }
            // dc, ns, partition, token and others Consul clients may send: one datacenter here.
            _ => {}
        }
    }
    if p.stale && p.consistent {
        return Err(ApiError::bad("Cannot specify ?stale with ?consistent, conflicting semantics."));
    }
    Ok(p)
}

pub async fn kv(
    plane: &ControlPlane,
    req: Request<Incoming>,
    key: String,
) -> Result<Response<Body>, ApiError> {
    let p = params(req.uri().query())?;
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_VALUE_SIZE).await?;
    let w = match parts.method {
        Method::GET => return read(plane, &parts, &body, &key, &p).await,
        Method::PUT | Method::POST => {
            if key.is_empty() {
                return Err(ApiError::bad("Missing key name"));
            }
            match p.lock {
                Some(Lock::Acquire(session)) => Write::Acquire { key, value: body.to_vec(), flags: p.flags, session },
                Some(Lock::Release(session)) => Write::Release { key, value: body.to_vec(), flags: p.flags, session },
                None => Write::Set { key, value: body.to_vec(), flags: p.flags, cas: p.cas },
            }
        }
        Method::DELETE => {
            if key.is_empty() && !p.recurse {
                return Err(ApiError::bad("Missing key name"));
            }
            Write::Delete { key, recurse: p.recurse, cas: p.cas }
        }
        ref m => return Err(method_not_allowed(m)),
    };
    w.validate().map_err(|e| ApiError::bad(e.to_string()))?;
    // The server that applies the write checks the token against its ACL state.
    if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
        return Ok(r);
    }
    let authz = authorizer(plane, &parts);
    let allowed = match &w {
        Write::Set { key, .. } | Write::Acquire { key, .. } | Write::Release { key, .. } => authz.key_write(key),
        Write::Delete { key, recurse: true, .. } => authz.key_write_prefix(key),
        Write::Delete { key, .. } => authz.key_write(key),
        Write::Txn(_) => false,
    };
    if !allowed {
        return Err(forbidden());
    }
    // A key whose holder's session was invalidated cannot be acquired during the lock
    // delay (checked on the leader, before the write, as Consul does).
    if let (Write::Acquire { key, .. }, Some(store)) = (&w, plane.store.as_ref()) {
        if let Some(until) = store.read(|a| a.state.sessions.delayed_until(key, crate::failover::wall_ms())) {
            log::debug!("acquire of {key:?} refused: lock delay until {until}");
            return Ok(json(StatusCode::OK, &false));
        }
    }
    write(plane, &parts, &body, w).await
}

/// Proposes a KV write through Raft on the leader (forwarding there if needed).
async fn propose(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    w: Write,
) -> Result<Result<WriteResult, Response<Body>>, ApiError> {
    w.validate().map_err(|e| ApiError::bad(e.to_string()))?;
    match super::propose(plane, parts, body, Command::Kv(w)).await? {
        Ok(Outcome::Kv(r)) => Ok(Ok(r)),
        Ok(_) => Err(ApiError::internal("unexpected reply from the state machine")),
        Err(forwarded) => Ok(Err(forwarded)),
    }
}

async fn write(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    w: Write,
) -> Result<Response<Body>, ApiError> {
    match propose(plane, parts, body, w).await? {
        Ok(WriteResult::Applied(ok)) => Ok(json(StatusCode::OK, &ok)),
        // Consul answers 500 for an acquire with a session that does not exist.
        Ok(WriteResult::Refused(why)) => Err(ApiError::internal(why)),
        Ok(WriteResult::Txn(_)) => Err(ApiError::internal("unexpected transaction reply")),
        Err(forwarded) => Ok(forwarded),
    }
}

/// A read's answer and the index it stands at.
enum ReadOut {
    Found(Response<Body>),
    NotFound,
}

fn compute(kv: &Kv, key: &str, p: &Params, authz: &Authorizer) -> (u64, ReadOut) {
    if p.keys {
        let idx = kv.prefix_index(key);
        let mut keys = kv.keys(key, p.separator.as_deref());
        keys.retain(|k| authz.key_list(k));
        let out =
            if keys.is_empty() { ReadOut::NotFound } else { ReadOut::Found(json(StatusCode::OK, &keys)) };
        (idx, out)
    } else if p.recurse {
        let idx = kv.prefix_index(key);
        let list: Vec<DirEntry> =
            kv.list(key).filter(|(k, _)| authz.key_read(k)).map(|(k, e)| DirEntry::new(k, e, true)).collect();
        let out =
            if list.is_empty() { ReadOut::NotFound } else { ReadOut::Found(json(StatusCode::OK, &list)) };
        (idx, out)
    } else {
        let idx = kv.key_index(key);
        let out = match kv.get(key) {
            None => ReadOut::NotFound,
            Some(e) if p.raw => {
                let mut r = Response::new(http_body_util::Full::new(Bytes::from(e.value.clone())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/octet-stream"),
                );
                ReadOut::Found(r)
            }
            Some(e) => ReadOut::Found(json(StatusCode::OK, &[DirEntry::new(key, e, true)])),
        };
        (idx, out)
    }
}

async fn read(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    key: &str,
    p: &Params,
) -> Result<Response<Body>, ApiError> {
    if plane.store.is_none() || !p.stale {
        if let Some(r) = forward_to_leader(plane, parts, body).await? {
            return Ok(r);
        }
    }
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let authz = authorizer(plane, parts);
    if !p.keys && !p.recurse && !authz.key_read(key) {
        return Err(forbidden());
    }
    if p.consistent {
        plane.linearizable().await.map_err(|e| ApiError::internal(format!("consistent read: {e}")))?;
    }
    let mut changes = store.subscribe();
    let wait = p.wait.unwrap_or(DEFAULT_WAIT);
    // Consul adds up to wait/16 of jitter so that many watchers do not return at once.
    let jitter = Duration::from_nanos(
        (wait.as_nanos() as u64 / 16).saturating_mul(u64::from(std::process::id() % 97)) / 97,
    );
    let deadline = tokio::time::Instant::now() + wait + jitter;
    loop {
        changes.borrow_and_update();
        let (index, out) = store.read(|a: &Applied| compute(&a.state.kv, key, p, &authz));
        let index = index.max(1);
        let done = p.index == 0 || index > p.index || tokio::time::Instant::now() >= deadline;
        if done {
            let mut r = match out {
                ReadOut::Found(r) => r,
                ReadOut::NotFound => super::text(StatusCode::NOT_FOUND, ""),
            };
            let h = r.headers_mut();
            h.insert("X-Consul-Index", header::HeaderValue::from(index));
            let known = plane.leader_addr().is_some();
            h.insert(
                "X-Consul-KnownLeader",
                header::HeaderValue::from_static(if known { "true" } else { "false" }),
            );
            h.insert("X-Consul-LastContact", header::HeaderValue::from_static("0"));
            return Ok(r);
        }
        // Woken by any apply; the loop re-checks this key's own index.
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_ok_and(|r| r.is_err()) {
            return Err(ApiError::internal("store closed"));
        }
    }
}

/// One `/v1/txn` operation as Consul's JSON has it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnKvOp {
    verb: String,
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    index: u64,
    #[serde(default)]
    session: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxnItem {
    #[serde(rename = "KV")]
    kv: Option<TxnKvOp>,
}

fn txn_op(i: usize, item: TxnItem) -> Result<TxnOp, ApiError> {
    let op =
        item.kv.ok_or_else(|| ApiError::bad(format!("operation {i}: only KV operations are supported")))?;
    let value = || -> Result<Vec<u8>, ApiError> {
        crate::b64::decode(op.value.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad(format!("operation {i}: Value is not valid base64: {e}")))
    };
    let key = op.key.clone();
    Ok(match op.verb.as_str() {
        "set" => TxnOp::Set { key, value: value()?, flags: op.flags },
        "cas" => TxnOp::Cas { key, value: value()?, flags: op.flags, index: op.index },
        "get" => TxnOp::Get { key },
        "get-or-empty" => TxnOp::GetOrEmpty { key },
        "get-tree" => TxnOp::GetTree { key },
        "check-index" => TxnOp::CheckIndex { key, index: op.index },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Delete { key },
        "delete-tree" => TxnOp::DeleteTree { key },
        "delete-cas" => TxnOp::DeleteCas { key, index: op.index },
        "lock" | "unlock" => {
            let session = op
                .session
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::bad(format!("operation {i}: {} needs a Session", op.verb)))?;
            let (value, flags) = (value()?, op.flags);
            if op.verb == "lock" {
                TxnOp::Lock { key, value, flags, session }
            } else {
                TxnOp::Unlock { key, value, flags, session }
            }
        }
        "check-session" => TxnOp::CheckSession { key, session: op.session.clone().unwrap_or_default() },
        v => return Err(ApiError::bad(format!("operation {i}: unknown KV verb {v:?}"))),
    })
}

/// Parses a `/v1/txn` body into operations (errors are 400s with a reason).
pub fn parse_txn(body: &[u8]) -> Result<Vec<TxnOp>, ApiError> {
    let items: Vec<TxnItem> =
        super::consul_json::decode(body).map_err(|e| ApiError::bad(format!("Failed to parse body: {e}")))?;
    items.into_iter().enumerate().map(|(i, it)| txn_op(i, it)).collect()
}

pub async fn txn(plane: &ControlPlane, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::PUT && req.method() != Method::POST {
        return Err(method_not_allowed(req.method()));
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_TXN_BODY).await?;
    let w = Write::Txn(parse_txn(&body)?);
    w.validate().map_err(|e| match e {
        // Consul answers 413 Request Entity Too Large for too many operations.
        KvError::TooManyOps(n) => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Transaction contains too many operations ({n} > {MAX_TXN_OPS})"),
        ),
        e => ApiError::bad(e.to_string()),
    })?;
    if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
        return Ok(r);
    }
    let authz = authorizer(plane, &parts);
    let Write::Txn(ops) = &w else { return Err(ApiError::internal("not a transaction")) };
    let denied = ops.iter().any(|op| match op {
        TxnOp::Set { key, .. }
        | TxnOp::Cas { key, .. }
        | TxnOp::Lock { key, .. }
        | TxnOp::Unlock { key, .. }
        | TxnOp::Delete { key }
        | TxnOp::DeleteCas { key, .. } => !authz.key_write(key),
        TxnOp::DeleteTree { key } => !authz.key_write_prefix(key),
        TxnOp::Get { key }
        | TxnOp::GetOrEmpty { key }
        | TxnOp::CheckSession { key, .. }
        | TxnOp::CheckIndex { key, .. }
        | TxnOp::CheckNotExists { key } => {
            !authz.key_read(key)
        }
        TxnOp::GetTree { key } => !authz.key_read(key),
    });
    if denied {
        return Err(forbidden());
    }
    match propose(plane, &parts, &body, w).await? {
        Ok(WriteResult::Txn(Ok(results))) => {
            let results: Vec<serde_json::Value> = results
                .iter()
                .filter_map(|(k, e)| {
                    e.as_ref().map(|e| serde_json::json!({ "KV": DirEntry::new(k, e, true) }))
                })
                .collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "Results": results, "Errors": null })))
        }
        Ok(WriteResult::Txn(Err(errors))) => {
            let errors: Vec<serde_json::Value> =
                errors.iter().map(|e| serde_json::json!({ "OpIndex": e.op_index, "What": e.what })).collect();
            Ok(json(StatusCode::CONFLICT, &serde_json::json!({ "Results": null, "Errors": errors })))
        }
        Ok(WriteResult::Applied(_) | WriteResult::Refused(_)) => Err(ApiError::internal("unexpected reply")),
        Err(forwarded) => Ok(forwarded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_reject() {
        let p = params(Some("recurse&index=12&wait=10s&separator=%2F")).unwrap();
        assert!(p.recurse && p.index == 12 && p.wait == Some(Duration::from_secs(10)));
        assert_eq!(p.separator.as_deref(), Some("/"));
        assert!(params(Some("index=abc")).is_err());
        assert!(params(Some("wait=forever")).is_err());
        assert!(params(Some("stale&consistent")).is_err());
        assert!(params(Some("cas=-1")).is_err());
        assert_eq!(params(Some("acquire=abc")).unwrap().lock, Some(Lock::Acquire("abc".into())));
        assert_eq!(params(Some("release=a&acquire=b")).unwrap().lock, Some(Lock::Release("a".into())));
        assert!(params(Some("acquire=")).is_err());
        assert_eq!(params(Some("wait=1h")).unwrap().wait, Some(MAX_WAIT));
    }

    #[test]
    fn txn_ops_parse() {
        let items: Vec<TxnItem> = serde_json::from_str(
            r#"[{"KV":{"Verb":"set","Key":"a","Value":"aGk=","Flags":3}},{"KV":{"Verb":"check-index","Key":"a","Index":4}}]"#,
        )
        .unwrap();
        let ops: Vec<TxnOp> = items.into_iter().enumerate().map(|(i, t)| txn_op(i, t).unwrap()).collect();
        assert_eq!(ops[0], TxnOp::Set { key: "a".into(), value: b"hi".to_vec(), flags: 3 });
        assert_eq!(ops[1], TxnOp::CheckIndex { key: "a".into(), index: 4 });
        let bad: Vec<TxnItem> =
            serde_json::from_str(r#"[{"KV":{"Verb":"set","Key":"a","Value":"%%%"}}]"#).unwrap();
        assert!(txn_op(0, bad.into_iter().next().unwrap()).is_err());
        let node: Vec<TxnItem> = serde_json::from_str(r#"[{"Node":{"Verb":"get"}}]"#).unwrap();
        assert!(txn_op(0, node.into_iter().next().unwrap()).is_err());
    }
}

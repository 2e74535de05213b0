//! The LB API under `/v1/lb/`: devices and their ranges (operator rights), accounts' LB
//! groups (a tenant's token sees and changes only its account's), VIPs with owner and
//! epoch, events, and the whole LB state (what agents reconcile from). Reads block like
//! `/v1/kv` (`?index=&wait=`, `X-Consul-Index`); writes go through the leader, which
//! places a new group's VIPs before proposing it.
use std::{net::IpAddr, time::Duration};

use bytes::Bytes;
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde::Serialize;

use super::{
    authorizer, forbidden, forward_to_leader, json, method_not_allowed, propose, query, read_body, ApiError,
    Body,
};
use crate::{
    plane::ControlPlane,
    raft::state_machine::Applied,
    scheduler,
    state::{
        acl::Authorizer,
        lb::{Admin, DeviceSpec, GroupSpec, LbResult, LbState, LbWrite, Move},
        Command, Outcome,
    },
};

const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Largest body: a group with its listeners and backends.
const MAX_BODY: usize = 1 << 20;

#[derive(Default)]
struct Params {
    index: u64,
    wait: Option<Duration>,
    stale: bool,
    cas: Option<u64>,
    to: Option<String>,
    since: Option<u64>,
}

fn params(q: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let num = |k: &str, v: &Option<String>| -> Result<u64, ApiError> {
        v.as_deref().unwrap_or("").parse().map_err(|_| ApiError::bad(format!("Invalid {k} value: {v:?}")))
    };
    for (k, v) in query::parse_query(q.unwrap_or("")).map_err(|e| ApiError::bad(format!("bad query: {e}")))? {
        match k.as_str() {
            "index" => p.index = num("index", &v)?,
            "wait" => {
                let d = crate::duration::parse_duration(v.as_deref().unwrap_or(""))
                    .map_err(|e| ApiError::bad(format!("Invalid wait time: {e}")))?;
                p.wait = Some(d.min(MAX_WAIT));
            }
            "stale" => p.stale = true,
            "cas" => p.cas = Some(num("cas", &v)?),
            "to" => p.to = v,
            "since" => p.since = Some(num("since", &v)?),
            _ => {}
        }
    }
    Ok(p)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub async fn route(
    plane: &ControlPlane,
    req: Request<Incoming>,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let p = params(req.uri().query())?;
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_BODY).await?;
    let segs: Vec<&str> = rest.split('/').collect();
    let m = &parts.method;
    match (m, segs.as_slice()) {
        (&Method::GET, ["state"]) => {
            read(plane, &parts, &body, &p, |s, a| a.operator_read().then(|| serde_json::to_value(s).unwrap_or_default()))
                .await
        }
        (&Method::GET, ["devices"]) => {
            let alive = plane.alive_devices();
            read(plane, &parts, &body, &p, move |s, a| {
                a.operator_read().then(|| {
                    let list: Vec<serde_json::Value> = s
                        .devices
                        .values()
                        .map(|d| {
                            let mut v = serde_json::to_value(d).unwrap_or_default();
                            v["alive"] = alive.contains(&d.spec.name).into();
                            v["vips"] = s.vips.values().filter(|x| x.owner == d.spec.name).count().into();
                            v
                        })
                        .collect();
                    serde_json::to_value(list).unwrap_or_default()
                })
            })
            .await
        }
        (&Method::PUT, ["device", name]) => {
            let mut spec: DeviceSpec = decode(&body)?;
            if spec.name.is_empty() {
                spec.name = name.to_string();
            }
            if spec.name != *name {
                return Err(ApiError::bad(format!("name: {:?} in the body, {name:?} in the path", spec.name)));
            }
            spec.validate().map_err(|e| ApiError::bad(e.to_string()))?;
            operator_write(plane, &parts, &body, LbWrite::PutDevice(spec)).await
        }
        (&Method::DELETE, ["device", name]) => {
            operator_write(plane, &parts, &body, LbWrite::RemoveDevice { name: name.to_string() }).await
        }
        (&Method::PUT, ["device", name, action @ ("drain" | "undrain")]) => {
            let admin = if *action == "drain" { Admin::Draining } else { Admin::Active };
            operator_write(plane, &parts, &body, LbWrite::SetAdmin { name: name.to_string(), admin }).await
        }
        (&Method::GET, ["groups"]) => {
            read(plane, &parts, &body, &p, |s, a| {
                let list: Vec<serde_json::Value> =
                    s.groups.values().filter(|g| a.account_read(&g.spec.account)).map(|g| group_json(s, &g.spec.id())).collect();
                Some(serde_json::to_value(list).unwrap_or_default())
            })
            .await
        }
        (&Method::GET, ["group", account, name]) => {
            let id = format!("{account}/{name}");
            let account = account.to_string();
            read(plane, &parts, &body, &p, move |s, a| {
                if !a.account_read(&account) {
                    return None;
                }
                Some(if s.groups.contains_key(&id) { group_json(s, &id) } else { serde_json::Value::Null })
            })
            .await
        }
        (&Method::PUT, ["group", account, name]) => put_group(plane, &parts, &body, account, name, &p).await,
        (&Method::DELETE, ["group", account, name]) => {
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            if !authorizer(plane, &parts).account_write(account) {
                return Err(forbidden());
            }
            commit(plane, &parts, &body, LbWrite::DeleteGroup { id: format!("{account}/{name}") }).await
        }
        (&Method::GET, ["vips"]) => {
            read(plane, &parts, &body, &p, |s, a| {
                let list: Vec<serde_json::Value> = s
                    .vips
                    .iter()
                    .filter(|(_, x)| a.account_read(x.group.split('/').next().unwrap_or("")))
                    .map(|(vip, x)| {
                        serde_json::json!({"vip": vip, "group": x.group, "owner": x.owner, "epoch": x.epoch,
                                           "extra": x.extra, "retiring_ms": x.retiring_ms})
                    })
                    .collect();
                Some(serde_json::to_value(list).unwrap_or_default())
            })
            .await
        }
        (&Method::PUT, ["vip", addr]) => {
            let vip: IpAddr = addr.parse().map_err(|_| ApiError::bad(format!("vip: {addr:?} is not an address")))?;
            let to = p.to.clone().ok_or_else(|| ApiError::bad("to: the device to move the VIP to (?to=NAME)"))?;
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            if !authorizer(plane, &parts).operator_write() {
                return Err(forbidden());
            }
            let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
            let a = store
                .read(|x: &Applied| x.state.lb.vips.get(&vip).cloned())
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("vip: {vip} is not assigned")))?;
            let mv = Move { vip, from: a.owner, to, epoch: a.epoch };
            commit(plane, &parts, &body, LbWrite::MoveVips { moves: vec![mv], reason: "assigned by an operator".into(), detected_ms: None }).await
        }
        (&Method::GET, ["events"]) => {
            let since = p.since.unwrap_or(0);
            read(plane, &parts, &body, &p, move |s, a| {
                let list: Vec<&crate::state::lb::Event> = s
                    .events
                    .iter()
                    .filter(|e| e.id >= since)
                    .filter(|e| {
                        a.operator_read()
                            || e.group.as_deref().is_some_and(|g| a.account_read(g.split('/').next().unwrap_or("")))
                    })
                    .collect();
                Some(serde_json::to_value(list).unwrap_or_default())
            })
            .await
        }
        (&Method::GET, ["hooks"]) => {
            read(plane, &parts, &body, &p, |s, a| {
                let list: Vec<&crate::state::lb::Hook> = s
                    .hooks
                    .values()
                    .filter(|h| if h.account == "*" { a.operator_read() } else { a.account_read(&h.account) })
                    .collect();
                // A hook's secret is write-only: reads say whether one is set.
                let mut v = serde_json::to_value(list).unwrap_or_default();
                for h in v.as_array_mut().into_iter().flatten() {
                    let set = h.get("secret").is_some_and(|s| !s.is_null());
                    if let Some(o) = h.as_object_mut() {
                        o.remove("secret");
                        o.insert("secret_set".into(), set.into());
                    }
                }
                Some(v)
            })
            .await
        }
        (&Method::PUT | &Method::DELETE, ["hook", account, name]) => {
            if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
                return Ok(r);
            }
            let a = authorizer(plane, &parts);
            let allowed = if *account == "*" { a.operator_write() } else { a.account_write(account) };
            if !allowed {
                return Err(forbidden());
            }
            let write = if parts.method == Method::DELETE {
                LbWrite::DeleteHook { id: format!("{account}/{name}") }
            } else {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct HookBody {
                    url: String,
                    #[serde(default)]
                    events: Vec<crate::state::lb::EventKind>,
                    #[serde(default)]
                    secret: Option<String>,
                }
                let b: HookBody = decode(&body)?;
                let h = crate::state::lb::Hook {
                    account: account.to_string(),
                    name: name.to_string(),
                    url: b.url,
                    events: b.events,
                    next: 0,
                    secret: b.secret,
                };
                h.validate().map_err(|e| ApiError::bad(e.to_string()))?;
                crate::hook_target::target_allowed(&h.url, &plane.cfg.hook_allow)
                    .map_err(|e| ApiError::bad(format!("url: {e}")))?;
                LbWrite::PutHook(h)
            };
            commit(plane, &parts, &body, write).await
        }
        // A known endpoint asked with another method: 405; anything else: 404.
        (m, ["state" | "devices" | "groups" | "vips" | "events" | "hooks"])
        | (m, ["device" | "vip", _])
        | (m, ["device", _, "drain" | "undrain"])
        | (m, ["group" | "hook", _, _]) => Err(method_not_allowed(m)),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no such endpoint: /v1/lb/{rest}"))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad request body: {e}")))
}

/// A group with its VIPs (address, owner, epoch).
fn group_json(s: &LbState, id: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(&s.groups[id]).unwrap_or_default();
    v["vips"] = s
        .group_vips(id)
        .map(|(vip, a)| serde_json::json!({"vip": vip, "owner": a.owner, "epoch": a.epoch}))
        .collect::<Vec<_>>()
        .into();
    v
}

/// A blocking read of the LB state: `view` gives the answer, None when the token may not
/// see it (403).
async fn read(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    p: &Params,
    view: impl Fn(&LbState, &Authorizer) -> Option<serde_json::Value>,
) -> Result<Response<Body>, ApiError> {
    if plane.store.is_none() || !p.stale {
        if let Some(r) = forward_to_leader(plane, parts, body).await? {
            return Ok(r);
        }
    }
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let authz = authorizer(plane, parts);
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + p.wait.unwrap_or(DEFAULT_WAIT);
    loop {
        changes.borrow_and_update();
        let (index, out) =
            store.read(|a: &Applied| (a.state.lb.modify_index.max(1), view(&a.state.lb, &authz)));
        if p.index == 0 || index > p.index || tokio::time::Instant::now() >= deadline {
            let Some(v) = out else { return Err(forbidden()) };
            let status = if v.is_null() { StatusCode::NOT_FOUND } else { StatusCode::OK };
            let mut r = json(status, &v);
            r.headers_mut().insert("X-Consul-Index", header::HeaderValue::from(index));
            return Ok(r);
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_ok_and(|r| r.is_err()) {
            return Err(ApiError::internal("store closed"));
        }
    }
}

async fn operator_write(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    w: LbWrite,
) -> Result<Response<Body>, ApiError> {
    if let Some(r) = forward_to_leader(plane, parts, body).await? {
        return Ok(r);
    }
    if !authorizer(plane, parts).operator_write() {
        return Err(forbidden());
    }
    commit(plane, parts, body, w).await
}

#[derive(Serialize)]
struct Committed {
    index: u64,
}

/// Proposes `w`; 200 with the index, or 4xx with the field and reason it was refused for.
async fn commit(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    w: LbWrite,
) -> Result<Response<Body>, ApiError> {
    match propose(plane, parts, body, Command::Lb { write: w, at_ms: now_ms() }).await? {
        Err(forwarded) => Ok(forwarded),
        Ok(Outcome::Lb(LbResult::Ok { index })) => {
            let mut r = json(StatusCode::OK, &Committed { index });
            r.headers_mut().insert("X-Consul-Index", header::HeaderValue::from(index));
            Ok(r)
        }
        Ok(Outcome::Lb(LbResult::Refused(e))) => {
            // Unknown names are 404; clashes with the current state 409; the rest 400.
            let status = if e.msg.starts_with("no ") {
                StatusCode::NOT_FOUND
            } else if ["taken", "exists", "epoch", "still serves", "is assigned"]
                .iter()
                .any(|w| e.msg.contains(w))
            {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ApiError(status, e.to_string()))
        }
        Ok(_) => Err(ApiError::internal("unexpected reply from the state machine")),
    }
}

/// Creates a group (its VIPs placed by the scheduler, or the body's `vips`), or updates
/// one's listeners and backends (`?cas=<modify index>` for a read-modify-write).
async fn put_group(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    account: &str,
    name: &str,
    p: &Params,
) -> Result<Response<Body>, ApiError> {
    let mut v: serde_json::Value = decode(body)?;
    let explicit: Vec<IpAddr> = match v.as_object_mut().and_then(|o| o.remove("vips")) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(x) => serde_json::from_value(x).map_err(|e| ApiError::bad(format!("vips: {e}")))?,
    };
    if let Some(o) = v.as_object_mut() {
        o.entry("account").or_insert_with(|| account.into());
        o.entry("name").or_insert_with(|| name.into());
    }
    let spec: GroupSpec =
        serde_json::from_value(v).map_err(|e| ApiError::bad(format!("bad request body: {e}")))?;
    if spec.account != account || spec.name != name {
        return Err(ApiError::bad(format!(
            "account/name: {} in the body, {account}/{name} in the path",
            spec.id()
        )));
    }
    spec.validate().map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(r) = forward_to_leader(plane, parts, body).await? {
        return Ok(r);
    }
    if !authorizer(plane, parts).account_write(account) {
        return Err(forbidden());
    }
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let id = spec.id();
    let (exists, modify) =
        store.read(|a: &Applied| a.state.lb.groups.get(&id).map_or((false, 0), |g| (true, g.modify_index)));
    if let Some(cas) = p.cas {
        if cas != modify {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("cas: the group is at index {modify}, not {cas}"),
            ));
        }
    }
    if exists {
        if !explicit.is_empty() {
            return Err(ApiError::bad("vips: a group's VIPs change through VIP assignment, not an update"));
        }
        return commit(plane, parts, body, LbWrite::UpdateGroup { spec }).await;
    }
    let alive = plane.alive_devices();
    let placement = store
        .read(|a: &Applied| scheduler::place(&a.state.lb, &spec, &alive, &explicit))
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    commit(plane, parts, body, LbWrite::CreateGroup { spec, placement }).await
}

//! `/v1/acl/*`: bootstrap, policies and tokens, in Consul's JSON shapes. Changes go
//! through Raft like any write; reading or changing ACLs needs a management token (or
//! `acl = "read"/"write"` rules).
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::{authorizer, forbidden, forward_to_leader, json, propose, read_body, ApiError, Body};
use crate::{
    plane::ControlPlane,
    state::acl::{parse_rules, AclResult, AclWrite, Policy, Role, Token},
    state::{Command, Outcome},
};

/// The built-in policy a management token shows, as Consul names it.
const GLOBAL_MANAGEMENT: (&str, &str) = ("00000000-0000-0000-0000-000000000001", "global-management");
const MAX_ACL_BODY: usize = 64 * 1024;

/// A random UUID (v4) for token and policy ids; secrets must be unguessable, so no
/// randomness is an error, never a fixed value.
pub fn uuid() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| ApiError::internal("no randomness for a new id"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

fn policy_json(p: &Policy) -> serde_json::Value {
    serde_json::json!({ "ID": p.id, "Name": p.name, "Description": p.description, "Rules": p.rules })
}

fn token_json(plane: &ControlPlane, t: &Token) -> serde_json::Value {
    let policies: Vec<serde_json::Value> = if t.management {
        vec![serde_json::json!({ "ID": GLOBAL_MANAGEMENT.0, "Name": GLOBAL_MANAGEMENT.1 })]
    } else {
        let names = plane.store.as_ref().map(|s| {
            s.read(|a| {
                t.policies
                    .iter()
                    .map(|id| (id.clone(), a.state.acl.policies.get(id).map(|p| p.name.clone())))
                    .collect::<Vec<_>>()
            })
        });
        names
            .unwrap_or_default()
            .into_iter()
            .map(|(id, name)| serde_json::json!({ "ID": id, "Name": name.unwrap_or_default() }))
            .collect()
    };
    let roles: Vec<serde_json::Value> = plane
        .store
        .as_ref()
        .map(|s| s.read(|a| t.roles.iter().map(|id| link_json(id, a.state.acl.roles.get(id).map(|r| r.name.as_str()))).collect()))
        .unwrap_or_default();
    serde_json::json!({
        "AccessorID": t.accessor_id, "SecretID": t.secret_id, "Description": t.description,
        "Policies": policies, "Roles": roles, "Local": false, "CreateIndex": t.create_index,
        "ModifyIndex": t.create_index,
    })
}

fn link_json(id: &str, name: Option<&str>) -> serde_json::Value {
    serde_json::json!({ "ID": id, "Name": name.unwrap_or_default() })
}

fn role_json(store: &crate::raft::state_machine::StoreView, r: &Role) -> serde_json::Value {
    let policies: Vec<serde_json::Value> = store.read(|a| {
        r.policies.iter().map(|id| link_json(id, a.state.acl.policies.get(id).map(|p| p.name.as_str()))).collect()
    });
    serde_json::json!({
        "ID": r.id, "Name": r.name, "Description": r.description, "Policies": policies,
        "CreateIndex": r.create_index, "ModifyIndex": r.modify_index,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleBody {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<PolicyLink>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyBody {
    #[serde(default)]
    #[serde(rename = "ID")]
    id: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rules: String,
}

#[derive(Deserialize)]
struct PolicyLink {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Name", default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenBody {
    #[serde(rename = "AccessorID", default)]
    accessor_id: Option<String>,
    #[serde(rename = "SecretID", default)]
    secret_id: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<PolicyLink>,
    #[serde(default)]
    roles: Vec<PolicyLink>,
}

/// Role links (by ID or by Name) as role ids.
fn role_ids(store: &crate::raft::state_machine::StoreView, links: &[PolicyLink]) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    for l in links {
        let id = match (&l.id, &l.name) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => store
                .read(|a| a.state.acl.roles.values().find(|r| r.name == *name).map(|r| r.id.clone()))
                .ok_or_else(|| ApiError::bad(format!("cannot find role {name:?}")))?,
            (None, None) => return Err(ApiError::bad("a role link needs an ID or a Name")),
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Policy links (by ID or by Name) as policy ids.
fn policy_ids(store: &crate::raft::state_machine::StoreView, links: &[PolicyLink]) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    for l in links {
        let id = match (&l.id, &l.name) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => store
                .read(|a| a.state.acl.policies.values().find(|p| p.name == *name).map(|p| p.id.clone()))
                .ok_or_else(|| ApiError::bad(format!("cannot find policy {name:?}")))?,
            (None, None) => return Err(ApiError::bad("a policy link needs an ID or a Name")),
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Writes a token and answers it as stored.
async fn put_token(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &bytes::Bytes,
    t: Token,
) -> Result<Response<Body>, ApiError> {
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let secret = t.secret_id.clone();
    if let Some(r) = apply(plane, parts, body, AclWrite::SetToken(t)).await? {
        return Ok(r);
    }
    let t = store.read(|a| a.state.acl.tokens.get(&secret).cloned()).ok_or_else(|| ApiError::internal("token lost"))?;
    Ok(json(StatusCode::OK, &token_json(plane, &t)))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    super::consul_json::decode(body).map_err(|e| ApiError::bad(format!("Failed to decode request body: {e}")))
}

async fn apply(
    plane: &ControlPlane,
    parts: &hyper::http::request::Parts,
    body: &bytes::Bytes,
    w: AclWrite,
) -> Result<Option<Response<Body>>, ApiError> {
    match propose(plane, parts, body, Command::Acl(w)).await? {
        Ok(Outcome::Acl(AclResult::Ok)) => Ok(None),
        Ok(Outcome::Acl(AclResult::Refused(why))) => Err(ApiError::bad(why)),
        Ok(_) => Err(ApiError::internal("unexpected reply from the state machine")),
        Err(forwarded) => Ok(Some(forwarded)),
    }
}

pub async fn route(
    plane: &ControlPlane,
    req: Request<Incoming>,
    rest: String,
) -> Result<Response<Body>, ApiError> {
    let Some(acl) = plane.cfg.acl.clone() else {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "ACL support disabled".into()));
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body, MAX_ACL_BODY).await?;
    // Reads of ACL data and every change run on the leader: fresh and in one place.
    if let Some(r) = forward_to_leader(plane, &parts, &body).await? {
        return Ok(r);
    }
    let store = plane.store.as_ref().ok_or_else(ApiError::no_leader)?;
    let authz = authorizer(plane, &parts);
    let segs: Vec<&str> = rest.split('/').collect();
    match (&parts.method, segs.as_slice()) {
        (&Method::PUT, ["bootstrap"]) => {
            let token = Token {
                accessor_id: uuid()?,
                secret_id: uuid()?,
                description: "Bootstrap Token (Global Management)".into(),
                policies: Vec::new(),
                management: true,
                create_index: 0,
                roles: Vec::new(),
            };
            let secret = token.secret_id.clone();
            if let Some(r) = apply(plane, &parts, &body, AclWrite::Bootstrap { token })
                .await
                .map_err(|e| ApiError(StatusCode::FORBIDDEN, format!("Permission denied: {}", e.1)))?
            {
                return Ok(r);
            }
            let t = store
                .read(|a| a.state.acl.tokens.get(&secret).cloned())
                .ok_or_else(|| ApiError::internal("token lost"))?;
            Ok(json(StatusCode::OK, &token_json(plane, &t)))
        }
        (&Method::PUT, ["policy"]) | (&Method::PUT, ["policy", _]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let b: PolicyBody = parse(&body)?;
            if b.name.is_empty() {
                return Err(ApiError::bad("Invalid Policy: no Name is set"));
            }
            let parsed =
                parse_rules(&b.rules).map_err(|e| ApiError::bad(format!("Invalid Policy Rules: {e}")))?;
            let id = segs.get(1).map(|s| s.to_string()).or(b.id);
            let id = match id {
                Some(i) => i,
                None => uuid()?,
            };
            let p =
                Policy { id: id.clone(), name: b.name, description: b.description, rules: b.rules, parsed };
            if let Some(r) = apply(plane, &parts, &body, AclWrite::SetPolicy(p)).await? {
                return Ok(r);
            }
            let p = store
                .read(|a| a.state.acl.policies.get(&id).cloned())
                .ok_or_else(|| ApiError::internal("policy lost"))?;
            Ok(json(StatusCode::OK, &policy_json(&p)))
        }
        // Roles: create (PUT role), update (PUT role/ID), read by ID or name, delete, list.
        (&Method::PUT, ["role"]) | (&Method::PUT, ["role", _]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let b: RoleBody = parse(&body)?;
            let id = match segs.get(1).map(|s| s.to_string()).or(b.id) {
                Some(i) => {
                    if segs.len() == 2 && store.read(|a| !a.state.acl.roles.contains_key(&i)) {
                        return Err(ApiError(StatusCode::NOT_FOUND, format!("Cannot find role {i:?}")));
                    }
                    i
                }
                None => uuid()?,
            };
            let r = Role {
                id: id.clone(),
                name: b.name,
                description: b.description,
                policies: policy_ids(store, &b.policies)?,
                create_index: 0,
                modify_index: 0,
            };
            if let Some(resp) = apply(plane, &parts, &body, AclWrite::SetRole(r)).await? {
                return Ok(resp);
            }
            let r = store.read(|a| a.state.acl.roles.get(&id).cloned()).ok_or_else(|| ApiError::internal("role lost"))?;
            Ok(json(StatusCode::OK, &role_json(store, &r)))
        }
        (&Method::GET, ["role", "name", name]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            match store.read(|a| a.state.acl.roles.values().find(|r| r.name == *name).cloned()) {
                Some(r) => Ok(json(StatusCode::OK, &role_json(store, &r))),
                None => Err(ApiError(StatusCode::NOT_FOUND, "ACL not found".into())),
            }
        }
        (&Method::GET, ["role", id]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            match store.read(|a| a.state.acl.roles.get(*id).cloned()) {
                Some(r) => Ok(json(StatusCode::OK, &role_json(store, &r))),
                None => Err(ApiError(StatusCode::NOT_FOUND, "ACL not found".into())),
            }
        }
        (&Method::DELETE, ["role", id]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            if let Some(r) = apply(plane, &parts, &body, AclWrite::DeleteRole { id: id.to_string() }).await? {
                return Ok(r);
            }
            Ok(json(StatusCode::OK, &true))
        }
        (&Method::GET, ["roles"]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            // ?policy=ID: the roles that link that policy.
            let want = super::query::parse_query(parts.uri.query().unwrap_or(""))
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "policy")
                .and_then(|(_, v)| v);
            let all: Vec<Role> = store.read(|a| {
                a.state.acl.roles.values().filter(|r| want.as_ref().is_none_or(|p| r.policies.contains(p))).cloned().collect()
            });
            Ok(json(StatusCode::OK, &all.iter().map(|r| role_json(store, r)).collect::<Vec<_>>()))
        }
        (&Method::GET, ["policy", "name", name]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            match store.read(|a| a.state.acl.policies.values().find(|p| p.name == *name).cloned()) {
                Some(p) => Ok(json(StatusCode::OK, &policy_json(&p))),
                None => Err(ApiError(StatusCode::NOT_FOUND, "ACL not found".into())),
            }
        }
        (&Method::GET, ["policy", id]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            match store.read(|a| a.state.acl.policies.get(*id).cloned()) {
                Some(p) => Ok(json(StatusCode::OK, &policy_json(&p))),
                None => Err(ApiError(StatusCode::NOT_FOUND, "ACL not found".into())),
            }
        }
        (&Method::DELETE, ["policy", id]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            if let Some(r) =
                apply(plane, &parts, &body, AclWrite::DeletePolicy { id: id.to_string() }).await?
            {
                return Ok(r);
            }
            Ok(json(StatusCode::OK, &true))
        }
        (&Method::GET, ["policies"]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            let all: Vec<serde_json::Value> =
                store.read(|a| a.state.acl.policies.values().map(policy_json).collect());
            Ok(json(StatusCode::OK, &all))
        }
        (&Method::PUT, ["token"]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let b: TokenBody = parse(&body)?;
            let ids = policy_ids(store, &b.policies)?;
            let t = Token {
                accessor_id: match b.accessor_id {
                    Some(a) => a,
                    None => uuid()?,
                },
                secret_id: match b.secret_id {
                    Some(s) => s,
                    None => uuid()?,
                },
                description: b.description,
                policies: ids,
                management: false,
                create_index: 0,
                roles: role_ids(store, &b.roles)?,
            };
            put_token(plane, &parts, &body, t).await
        }
        // Update: the description and policies are replaced by the body's; the secret
        // cannot change (a SecretID in the body must be the token's own).
        (&Method::PUT, ["token", accessor]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let b: TokenBody = parse(&body)?;
            if b.accessor_id.as_deref().is_some_and(|a| a != *accessor) {
                return Err(ApiError::bad("Token AccessorID in the body does not match the URL"));
            }
            let old = store
                .read(|a| a.state.acl.token_by_accessor(accessor).cloned())
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "ACL not found".into()))?;
            if b.secret_id.as_deref().is_some_and(|s| s != old.secret_id) {
                return Err(ApiError::bad("Changing a token's SecretID is not allowed"));
            }
            let t = Token {
                description: b.description,
                policies: policy_ids(store, &b.policies)?,
                roles: role_ids(store, &b.roles)?,
                ..old
            };
            put_token(plane, &parts, &body, t).await
        }
        // Clone: a new accessor and secret with the same policies; the description is the
        // body's, or the original's when the body has none.
        (&Method::PUT, ["token", accessor, "clone"]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let b: TokenBody = if body.is_empty() { parse(b"{}")? } else { parse(&body)? };
            let old = store
                .read(|a| a.state.acl.token_by_accessor(accessor).cloned())
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "ACL not found".into()))?;
            let t = Token {
                accessor_id: uuid()?,
                secret_id: uuid()?,
                description: if b.description.is_empty() { old.description } else { b.description },
                create_index: 0,
                ..old
            };
            put_token(plane, &parts, &body, t).await
        }
        (&Method::GET, ["token", "self"]) => {
            let secret = super::request_token(&parts.headers, &parts.uri)
                .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "ACL not found".into()))?;
            if Some(&secret) == acl.initial_management.as_ref() {
                let t = Token {
                    accessor_id: "initial-management".into(),
                    secret_id: secret,
                    description: "Initial Management Token".into(),
                    policies: Vec::new(),
                    management: true,
                    create_index: 0,
                    roles: Vec::new(),
                };
                return Ok(json(StatusCode::OK, &token_json(plane, &t)));
            }
            match store.read(|a| a.state.acl.tokens.get(&secret).cloned()) {
                Some(t) => Ok(json(StatusCode::OK, &token_json(plane, &t))),
                None => Err(ApiError(StatusCode::FORBIDDEN, "ACL not found".into())),
            }
        }
        (&Method::GET, ["token", accessor]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            match store.read(|a| a.state.acl.token_by_accessor(accessor).cloned()) {
                Some(t) => Ok(json(StatusCode::OK, &token_json(plane, &t))),
                None => Err(ApiError(StatusCode::NOT_FOUND, "ACL not found".into())),
            }
        }
        (&Method::DELETE, ["token", accessor]) => {
            if !authz.acl_write() {
                return Err(forbidden());
            }
            let w = AclWrite::DeleteToken { accessor_id: accessor.to_string() };
            if let Some(r) = apply(plane, &parts, &body, w).await? {
                return Ok(r);
            }
            Ok(json(StatusCode::OK, &true))
        }
        (&Method::GET, ["tokens"]) => {
            if !authz.acl_read() {
                return Err(forbidden());
            }
            let all: Vec<Token> = store.read(|a| a.state.acl.tokens.values().cloned().collect());
            let mut out: Vec<serde_json::Value> = all.iter().map(|t| token_json(plane, t)).collect();
            // Listing shows accessors, never secrets.
            for t in &mut out {
                t["SecretID"] = serde_json::Value::String(String::new());
            }
            Ok(json(StatusCode::OK, &out))
        }
        (m, _) => Err(ApiError(StatusCode::NOT_FOUND, format!("no such ACL endpoint: {m} /v1/acl/{rest}"))),
    }
}

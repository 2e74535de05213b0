//! The HTTP request path: stats page, routing, persistence, balancing, the server's
//! `maxconn` slot (queueing up to `timeout queue`, then 503), retries and `redispatch`,
//! `X-Forwarded-For`, the persistence cookie, and an `httplog` line.
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Instant,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Body as _,
    header::{self, HeaderValue},
    Method, Request, Response, StatusCode,
};

use crate::{
    body_pump::ClientGone,
    conn::ClientTimeouts,
    httplog::{log_request, Outcome},
    queue,
    recv_body::RecvBody,
    sample::{self, H2Request, ResponseHeaders},
    state::{BackendRt, Body, Counters, FrontendRt, ServerRt, ServerSession, Shared},
    stats,
    upstream::{self, Outgoing, SendError, ServerBody},
};
use ballast_l7::{
    acl::Sample,
    balance::Key,
    cookie::{self, CookieServer},
    haproxy::model::{Balance, ProxySection},
    route::backend_for,
    rules::{edited, request_rules, response_rules, Edits, Verdict},
    termination::{Cause, Phase, Termination},
};

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1). Names, not strings: removing
/// by a string parses it again on every request.
const HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub fn local_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes())).map_err(|e: Infallible| match e {}).boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// HAProxy's default error page for `status` (one of the codes it has pages for; 502
/// for any other).
pub(super) fn error_page(status: StatusCode) -> Response<Body> {
    let body = match status.as_u16() {
        200 => "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n",
        400 => "<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n",
        401 => "<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n",
        403 => "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n",
        404 => "<html><body><h1>404 Not Found</h1>\nThe resource could not be found.\n</body></html>\n",
        405 => "<html><body><h1>405 Method Not Allowed</h1>\nA request was made of a resource using a request method not supported by that resource\n</body></html>\n",
        407 => "<html><body><h1>407 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n",
        408 => "<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n",
        410 => "<html><body><h1>410 Gone</h1>\nThe resource is no longer available and will not be available again.\n</body></html>\n",
        413 => "<html><body><h1>413 Payload Too Large</h1>\nThe request entity exceeds the maximum allowed.\n</body></html>\n",
        425 => "<html><body><h1>425 Too Early</h1>\nYour browser sent early data.\n</body></html>\n",
        429 => "<html><body><h1>429 Too Many Requests</h1>\nYou have sent too many requests in a given amount of time.\n</body></html>\n",
        500 => "<html><body><h1>500 Internal Server Error</h1>\nAn internal server error occurred.\n</body></html>\n",
        501 => "<html><body><h1>501 Not Implemented</h1>\n.The server does not support the functionality required to fulfill the request.\n</body></html>\n",
        503 => "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
        504 => "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n",
        _ => return local_response(StatusCode::BAD_GATEWAY, "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n"),
    };
    local_response(status, body)
}

/// The answer to a request a rule answered (`deny`, `return`, `redirect`).
pub(super) fn rule_answer(v: Verdict) -> Response<Body> {
    let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match v {
        Verdict::Deny { status: s } => error_page(status(s)),
        Verdict::Return { status: s, content_type, body, headers } => {
            let mut r =
                Response::new(Full::new(Bytes::from(body)).map_err(|e: Infallible| match e {}).boxed());
            *r.status_mut() = status(s);
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            add_headers(r.headers_mut(), headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            r
        }
        Verdict::Redirect { status: s, location } => {
            let mut r = Response::new(Full::new(Bytes::new()).map_err(|e: Infallible| match e {}).boxed());
            *r.status_mut() = status(s);
            if let Ok(l) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, l);
            }
            // As HAProxy's redirects: a temporary one must not be cached (301 and 308 may).
            if matches!(s, 302 | 303 | 307) {
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            }
            r
        }
        Verdict::Continue | Verdict::Allowed => error_page(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// Appends headers (names and values that are not valid HTTP are left out).
pub(super) fn add_headers<'a>(
    map: &mut header::HeaderMap,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) {
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (header::HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            map.append(n, v);
        }
    }
}

/// Applies rule edits to a header map.
pub(super) fn apply_edits(map: &mut header::HeaderMap, edits: &Edits) {
    let removed: Vec<header::HeaderName> = map.keys().filter(|n| !edits.keeps(n.as_str())).cloned().collect();
    for n in removed {
        map.remove(n);
    }
    add_headers(map, edits.added());
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    fe: Arc<FrontendRt>,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Option<Arc<str>>>,
    req: Request<RecvBody>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let line = if fe.cfg.settings.httplog {
        format!("{} {} {:?}", req.method(), req.uri(), req.version())
    } else {
        String::new()
    };
    let session = fe.counters.session();
    let (resp, out) = route(&shared, &fe, peer, local, tls, req).await;
    drop(session);
    fe.counters.response(resp.status().as_u16());
    if out.request_error {
        fe.counters.ereq.fetch_add(1, Relaxed);
    }
    if fe.cfg.settings.httplog {
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        log_request(&shared, &fe, peer, start, &out, &bytes, &line);
    }
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn route(
    shared: &Shared,
    fe: &FrontendRt,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Option<Arc<str>>>,
    mut req: Request<RecvBody>,
) -> (Response<Body>, Outcome) {
    let mut out = Outcome::new(&fe.cfg.name);
    if let Some(st) = &fe.cfg.stats {
        if let Some(uri) = &st.uri {
            if req.uri().path().starts_with(uri.as_str()) {
                fe.counters.intercepted.fetch_add(1, Relaxed);
                let r = stats::serve(shared, st, &req);
                out.server = "<STATS>".into();
                out.status = r.status().as_u16();
                return (r, out);
            }
        }
    }
    let mut edits = Edits::default();
    let tls = tls.as_ref().map(|s| s.as_deref());
    let view = H2Request { req: &req, peer, local, tls };
    if let Some(r) = run_request_rules(&fe.cfg, &fe.counters, &view, &mut edits, &mut out) {
        return (r, out);
    }
    let Some(be) = backend_for(&fe.cfg, &edited(&view, &edits)).and_then(|n| shared.backends.get(n)).cloned()
    else {
        out.status = 503;
        out.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
        return (error_page(StatusCode::SERVICE_UNAVAILABLE), out);
    };
    out.backend = be.cfg.name.clone();
    if be.cfg.name != fe.cfg.name {
        if let Some(r) = run_request_rules(&be.cfg, &be.counters, &view, &mut edits, &mut out) {
            return (r, out);
        }
    }
    if !edits.is_empty() {
        apply_edits(req.headers_mut(), &edits);
        let url = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        // A new path and query; the scheme and authority (the Host) stay.
        if let Some(pq) = edits.target(&url).and_then(|t| t.parse::<hyper::http::uri::PathAndQuery>().ok()) {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(u) = hyper::Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    let session = be.counters.session();
    let client_timeout = ClientTimeouts::of(&fe.cfg.settings.timeouts).client;
    let mut r =
        forward(&be, fe.cfg.settings.forwardfor.as_deref(), peer, local, req, client_timeout, &mut out).await;
    drop(session);
    // On the server's answer only: HAProxy's own error pages skip http-response rules.
    if out.termination == Termination::NORMAL {
        let resp = sample::ServerResponse { headers: ResponseHeaders::Map(r.headers()), peer, local, tls };
        let resp_edits = response_edits(&fe.cfg, &be.cfg, &resp);
        if !resp_edits.is_empty() {
            apply_edits(r.headers_mut(), &resp_edits);
        }
    }
    be.counters.response(r.status().as_u16());
    out.status = r.status().as_u16();
    (r, out)
}

/// Runs a proxy's `http-request` rules (when it has any); the answer when one answers the
/// request (`deny`: counted in the proxy's `dreq`, logged `PR`; `return`, `redirect`:
/// logged `LR`).
pub(super) fn run_request_rules(
    px: &ProxySection,
    counters: &Counters,
    req: &dyn Sample,
    edits: &mut Edits,
    out: &mut Outcome,
) -> Option<Response<Body>> {
    if px.http_request.is_empty() {
        return None;
    }
    let v = request_rules(px, req, edits);
    if !v.answered() {
        return None;
    }
    let cause = if matches!(v, Verdict::Deny { .. }) {
        counters.dreq.fetch_add(1, Relaxed);
        Cause::Proxy
    } else {
        Cause::Local
    };
    out.termination = Termination::new(cause, Phase::Request);
    let r = rule_answer(v);
    out.status = r.status().as_u16();
    Some(r)
}

/// The response's header changes: the backend's `http-response` rules, then the
/// frontend's, as HAProxy runs them, on the server's response.
pub(super) fn response_edits(fe: &ProxySection, be: &ProxySection, resp: &dyn Sample) -> Edits {
    let mut edits = Edits::default();
    response_rules(be, resp, &mut edits);
    if fe.name != be.name {
        response_rules(fe, resp, &mut edits);
    }
    edits
}

/// The answer and termination state of a request whose server failed it: 503 `SC` when
/// no connection could be made, 504 `sH` when the answer did not come in time, else 502
/// `SH`, as HAProxy answers.
pub(super) fn server_failure(e: &SendError) -> (StatusCode, Termination) {
    match e {
        SendError::Connect => {
            (StatusCode::SERVICE_UNAVAILABLE, Termination::new(Cause::ServerAbort, Phase::Connect))
        }
        SendError::Timeout => {
            (StatusCode::GATEWAY_TIMEOUT, Termination::new(Cause::ServerTimeout, Phase::Headers))
        }
        _ => (StatusCode::BAD_GATEWAY, Termination::new(Cause::ServerAbort, Phase::Headers)),
    }
}

/// A server for a request (`path`: None in TCP mode, where `balance uri` falls back to
/// round robin as in HAProxy), not `exclude` if another can take it.
pub(super) fn pick(
    be: &BackendRt,
    peer: SocketAddr,
    path: Option<&str>,
    hdr: Option<&str>,
    exclude: Option<usize>,
) -> Option<usize> {
    let cands: Vec<_> = be.servers.iter().map(|s| s.candidate()).collect();
    let key = Key { source: Some(peer.ip()), path, header: hdr };
    be.balancer.lock().ok()?.pick_avoiding(&cands, &key, exclude)
}

/// Why a request got no server.
pub(super) enum Unassigned {
    /// No server can take requests (all down): 503 at once.
    NoServer,
    /// It waited `timeout queue` for a slot: 503 (`sQ`).
    QueueTimeout,
}

/// A server and its `maxconn` slot for a request. A server chosen beforehand (`bound`: the
/// client's persistence cookie, or a retry's) and the hashing algorithms (source, uri,
/// hdr), whose choice is the point, keep their server and wait in its own queue. The
/// others pick among the servers with a free slot, and when every usable server is full
/// the request waits in the backend's queue until a slot frees on any of them (HAProxy's
/// `pendconn` on the proxy), up to `timeout queue`. Backup servers still serve only when
/// no active one is up, not when the active ones are busy.
pub(super) async fn assign(
    be: &BackendRt,
    bound: Option<usize>,
    peer: SocketAddr,
    path: Option<&str>,
    hdr: Option<&str>,
) -> Result<(usize, queue::Slot), Unassigned> {
    let wait = be.queue_timeout();
    let fixed =
        bound.or_else(|| be.cfg.settings.balance.hashes().then(|| pick(be, peer, path, hdr, None)).flatten());
    if bound.is_some() || be.cfg.settings.balance.hashes() {
        let idx = fixed.ok_or(Unassigned::NoServer)?;
        let server = &be.servers[idx];
        let slot = queue::acquire(
            server.slots.as_ref(),
            &be.freed,
            wait,
            &server.counters.qcur,
            &server.counters.qmax,
        )
        .await
        .map_err(|_| Unassigned::QueueTimeout)?;
        return Ok((idx, slot));
    }
    let take = || {
        let mut cands: Vec<_> = be.servers.iter().map(|s| s.candidate()).collect();
        if !cands.iter().any(|c| c.usable) {
            return Some(queue::Assigned::NoServer);
        }
        if cands.iter().any(|c| c.usable && !c.backup) {
            cands.iter_mut().filter(|c| c.backup).for_each(|c| c.usable = false);
        }
        for (c, s) in cands.iter_mut().zip(&be.servers) {
            if s.slots.as_ref().is_some_and(|sem| sem.available_permits() == 0) {
                c.usable = false;
            }
        }
        if !cands.iter().any(|c| c.usable) {
            return None;
        }
        let key = Key { source: Some(peer.ip()), path, header: hdr };
        let idx = be.balancer.lock().ok()?.pick(&cands, &key)?;
        // Taken by another request since the look: look again.
        queue::try_take(be.servers[idx].slots.as_ref(), &be.freed)
            .map(|slot| queue::Assigned::Got((idx, slot)))
    };
    match queue::backend_queue(&be.freed, wait, &be.counters.qcur, &be.counters.qmax, take).await {
        Ok(queue::Assigned::Got(x)) => Ok(x),
        Ok(queue::Assigned::NoServer) => Err(Unassigned::NoServer),
        Err(_) => Err(Unassigned::QueueTimeout),
    }
}

/// Cookie persistence: the server the client's cookie designates (if it may take the
/// request) and the client's cookie value.
pub(super) fn persistence<'h>(be: &BackendRt, cookies: &[&'h str]) -> (Option<usize>, Option<&'h str>) {
    let Some(c) = &be.cfg.settings.cookie else { return (None, None) };
    let servers: Vec<CookieServer> = be
        .servers
        .iter()
        .map(|sv| CookieServer { value: sv.cfg.cookie.as_deref(), accepts: sv.is_up() })
        .collect();
    (cookie::designated(c, cookies, &servers), cookie::find(&c.name, cookies))
}

/// Counts a failed try on `server`: a connect error (econ, only when no retry follows:
/// HAProxy counts a request's connection failure once, when it gives up), a request the
/// client abandoned on its way (cli_abrt: not the server's fault; a bad body is not
/// counted here), else a bad response (eresp).
pub(super) fn count_failure(be: &BackendRt, server: &ServerRt, e: &SendError, retrying: bool) {
    match e {
        SendError::Connect if retrying => {}
        SendError::Connect => {
            server.counters.econ.fetch_add(1, Relaxed);
            be.counters.econ.fetch_add(1, Relaxed);
        }
        // A bad body is a request error (the frontend's ereq), not an abort.
        SendError::Client(ClientGone::Invalid) => {}
        SendError::Client(_) => {
            server.counters.cli_abrt.fetch_add(1, Relaxed);
            be.counters.cli_abrt.fetch_add(1, Relaxed);
        }
        _ => {
            server.counters.eresp.fetch_add(1, Relaxed);
        }
    }
}

/// Counts a retry after a failed connect on server `idx` and returns the server of the
/// next try, as HAProxy 2.6 does (checked against it): with `option redispatch` the retry
/// goes to another server when this one is down, on the last retry, or at once when the
/// balancing does not hash (roundrobin, static-rr, leastconn, random) and no cookie
/// chose the server (`persisted`); it is then logged `+N`. A retry on the same server
/// first waits min(`timeout connect`, 1 s), HAProxy's turn-around timer, so that a
/// server that is restarting is not hammered.
pub(super) async fn retry(
    be: &BackendRt,
    idx: usize,
    tries_left: u32,
    peer: SocketAddr,
    path: Option<&str>,
    hdr: Option<&str>,
    persisted: bool,
) -> Retry {
    let server = &be.servers[idx];
    let move_now = !server.is_up() || tries_left == 0 || (!be.cfg.settings.balance.hashes() && !persisted);
    if be.cfg.settings.redispatch && move_now {
        if let Some(other) = pick(be, peer, path, hdr, Some(idx)) {
            if other != idx {
                // A retry elsewhere is a redispatch, not a retry (HAProxy's counting).
                server.counters.wredis.fetch_add(1, Relaxed);
                be.counters.wredis.fetch_add(1, Relaxed);
                return Retry { server: other, redispatched: true };
            }
        }
    }
    server.counters.wretr.fetch_add(1, Relaxed);
    be.counters.wretr.fetch_add(1, Relaxed);
    tokio::time::sleep(be.connect_timeout().min(std::time::Duration::from_secs(1))).await;
    Retry { server: idx, redispatched: false }
}

/// Where the next try goes.
pub(super) struct Retry {
    pub server: usize,
    /// To another server than the last try's (HAProxy logs the retries as `+N`).
    pub redispatched: bool,
}

/// `fe_forwardfor`: the frontend's `option forwardfor` header, used when the backend has none.
async fn forward(
    be: &Arc<BackendRt>,
    fe_forwardfor: Option<&str>,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<RecvBody>,
    client_timeout: std::time::Duration,
    out: &mut Outcome,
) -> Response<Body> {
    let s = &be.cfg.settings;
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    // Persistence work only for backends that use a cookie.
    let cookies: Vec<String> = if s.cookie.is_some() {
        parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    } else {
        Vec::new()
    };
    let cookie_refs: Vec<&str> = cookies.iter().map(String::as_str).collect();
    let (persisted, client_cookie) = persistence(be, &cookie_refs);
    let hdr_value = match &s.balance {
        Balance::Hdr(name) => {
            parts.headers.get(name.as_str()).and_then(|v| v.to_str().ok()).map(String::from)
        }
        _ => None,
    };
    // (A Uri clone shares its buffers: no copy.)
    let uri = parts.uri.clone();
    let path_q = uri.path_and_query().map_or("/", |p| p.as_str());
    // `balance uri` hashes the target as HAProxy sees it: absolute over HTTP/2
    // (`<scheme>://<authority><path>`), as received over HTTP/1.
    let target = if matches!(s.balance, Balance::Uri) { uri.to_string() } else { String::new() };

    // The request as the server will see it.
    for h in &HOP {
        parts.headers.remove(h);
    }
    if let Some(c) = &s.cookie {
        if c.indirect {
            parts.headers.remove(header::COOKIE);
            if let Some(rest) =
                cookies.iter().filter_map(|h| cookie::strip(c, h)).reduce(|a, b| format!("{a}; {b}"))
            {
                if let Ok(v) = HeaderValue::from_str(&rest) {
                    parts.headers.insert(header::COOKIE, v);
                }
            }
        }
    }
    if let Some(name) = s.forwardfor.as_deref().or(fe_forwardfor) {
        if let (Ok(n), Ok(v)) =
            (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&peer.ip().to_string()))
        {
            parts.headers.append(n, v);
        }
    }
    if parts.headers.get(header::HOST).is_none() {
        if let Some(a) = parts.uri.authority().cloned() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    // The request goes to servers as HTTP/1.1: a body of unknown length goes chunked.
    let has_body = !body.is_end_stream();
    // (h2 refuses a malformed Content-Length, and checks the DATA frames add up to it.)
    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let chunked = has_body && length.is_none();
    let head = upstream::request_head(&parts.method, path_q, &parts.headers, chunked);
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    // Streamed once: kept between tries only while no attempt has read it.
    let mut body = has_body.then_some(body);

    let mut tries_left = s.retries;
    let mut bound = persisted;
    loop {
        // maxconn: a server with a free slot, or a wait for one up to `timeout queue`.
        let t0 = Instant::now();
        let (idx, permit) = match assign(be, bound, peer, Some(&target), hdr_value.as_deref()).await {
            Ok(x) => x,
            Err(Unassigned::NoServer) => {
                out.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
                return error_page(StatusCode::SERVICE_UNAVAILABLE);
            }
            Err(Unassigned::QueueTimeout) => {
                out.termination = Termination::new(Cause::ServerTimeout, Phase::Queue);
                out.t_queue = Some(t0.elapsed().as_millis());
                return error_page(StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let server = be.servers[idx].clone();
        out.server = server.cfg.name.clone();
        out.t_queue = Some(t0.elapsed().as_millis());
        let session = ServerSession::new(server.clone());
        let t1 = Instant::now();
        let mut req =
            Outgoing { head: &head, body: body.take(), length, idempotent, client_timeout, peer, local };
        let res = upstream::exchange(be, &server, &mut req).await;
        body = req.body.take();
        // A connect that failed has no response time (-1, as HAProxy logs it).
        out.t_connect_resp = (!matches!(res, Err(SendError::Connect))).then(|| t1.elapsed().as_millis());
        match res {
            Ok((io, mut sbuf, r, upload)) => {
                server.counters.response(r.status);
                let rhead = sbuf.split_to(r.len).freeze();
                let mut headers = upstream::response_headers(&rhead, &r);
                if let Some(c) = &s.cookie {
                    let chosen = CookieServer { value: server.cfg.cookie.as_deref(), accepts: true };
                    if let Some((set, nocache)) = cookie::insert(c, client_cookie, &chosen) {
                        if let Ok(v) = HeaderValue::from_str(&set) {
                            headers.append(header::SET_COOKIE, v);
                        }
                        // A response a shared cache could store gets `private` added.
                        let values = |name: &str| -> Vec<String> {
                            headers
                                .get_all(name)
                                .iter()
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .collect()
                        };
                        if nocache && cookie::cacheable(parts.method.as_str(), r.status, &values) {
                            headers.append(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                        }
                    }
                }
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = ServerBody::new(be, session, permit, io, sbuf, &r, upload);
                let mut resp = Response::new(body.boxed());
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                // Answer in the client's protocol, whatever the server spoke.
                *resp.version_mut() = client_version;
                return resp;
            }
            Err(e) => {
                drop(session);
                drop(permit);
                let connect_failed = e == SendError::Connect;
                count_failure(be, &server, &e, connect_failed && tries_left > 0);
                // A failed connect read nothing of the body: it can go to the next try.
                if !(connect_failed && tries_left > 0) {
                    let (status, term) = match e {
                        SendError::Client(gone) => {
                            out.client_gone(gone, false);
                            (StatusCode::BAD_REQUEST, out.termination)
                        }
                        other => server_failure(&other),
                    };
                    out.termination = term;
                    return error_page(status);
                }
                tries_left -= 1;
                out.retries += 1;
                let next =
                    retry(be, idx, tries_left, peer, Some(&target), hdr_value.as_deref(), persisted.is_some())
                        .await;
                bound = Some(next.server);
                out.redispatched |= next.redispatched;
            }
        }
    }
}

//! The stats page at `stats uri`: HTML for people, `;csv` in HAProxy 2.6's exact column
//! order for the tools that read it, and `/metrics` for Prometheus.
use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Request, Response, StatusCode};

use super::state::{Body, Counters, Shared};
use ballast_l7::haproxy::model::{Balance, Mode, Stats};

/// HAProxy 2.6's `show stat` / `;csv` header, verbatim.
pub const CSV_HEADER: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,";

/// One CSV row, filled by column name.
struct Row {
    cols: Vec<String>,
}

fn columns() -> HashMap<&'static str, usize> {
    CSV_HEADER
        .trim_start_matches("# ")
        .trim_end_matches(',')
        .split(',')
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect()
}

impl Row {
    fn new(n: usize) -> Row {
        Row { cols: vec![String::new(); n] }
    }

    fn set(&mut self, idx: &HashMap<&'static str, usize>, name: &str, v: impl ToString) {
        if let Some(&i) = idx.get(name) {
            self.cols[i] = v.to_string();
        }
    }

    fn line(&self) -> String {
        let mut s = self.cols.join(",");
        s.push_str(",\n");
        s
    }
}

fn counters(row: &mut Row, idx: &HashMap<&'static str, usize>, c: &Counters) {
    let g = |a: &AtomicU64| a.load(Relaxed);
    row.set(idx, "scur", c.scur.load(Relaxed));
    row.set(idx, "smax", c.smax.load(Relaxed));
    row.set(idx, "stot", g(&c.stot));
    row.set(idx, "bin", g(&c.bin));
    row.set(idx, "bout", g(&c.bout));
    row.set(idx, "rate", c.rate.load(Relaxed));
    row.set(idx, "rate_max", c.rate_max.load(Relaxed));
    for (i, name) in
        ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"].iter().enumerate()
    {
        row.set(idx, name, g(&c.hrsp[i]));
    }
}

fn algo(b: &Balance) -> String {
    match b {
        Balance::RoundRobin => "roundrobin".into(),
        Balance::StaticRr => "static-rr".into(),
        Balance::LeastConn => "leastconn".into(),
        Balance::Source => "source".into(),
        Balance::Uri => "uri".into(),
        Balance::Hdr(h) => format!("hdr({h})"),
        Balance::Random(n) => format!("random({n})"),
    }
}

/// Column name → position in the CSV (for readers of it, e.g. the runtime API's filters).
pub fn column_index() -> HashMap<&'static str, usize> {
    columns()
}

/// What a reader may see: legends (server addresses, cookies, algorithms), which HAProxy
/// shows on the runtime API and on a page only with `stats show-legends`, and the proxies
/// in `stats scope` (all when empty).
#[derive(Clone, Copy, Default)]
pub struct View<'a> {
    pub legends: bool,
    pub scope: &'a [String],
}

impl View<'_> {
    /// The runtime API's: everything.
    pub const ALL: View<'static> = View { legends: true, scope: &[] };

    fn of(st: &Stats) -> View<'_> {
        View { legends: st.show_legends, scope: &st.scope }
    }
}

/// Columns HAProxy 2.6 fills with 0 for features ballast does not have (compression,
/// cache, response denies, rate limits, ...): 0 here too, not empty.
const ZERO_FE: [&str; 11] =
    ["dresp", "rate_lim", "comp_in", "comp_out", "comp_byp", "comp_rsp", "dses", "wrew", "cache_lookups", "cache_hits", "eint"];
const ZERO_BE: [&str; 12] = [
    "dresp",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "wrew",
    "cache_lookups",
    "cache_hits",
    "eint",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
];
const ZERO_SRV: [&str; 2] = ["wrew", "eint"];

/// A backend's `fullconn` as HAProxy defaults it: a tenth of the maxconn of the frontends
/// that can send to it (rounded up, at least 1).
fn fullconn(shared: &Shared, backend: &str) -> u64 {
    let sum: u64 = shared
        .frontends
        .iter()
        .filter(|f| {
            f.cfg.name == backend
                || f.cfg.default_backend.as_deref() == Some(backend)
                || f.cfg.use_backends.iter().any(|u| u.backend == backend)
        })
        .map(|f| f.maxconn as u64)
        .sum();
    sum.div_ceil(10).max(1)
}

/// The CSV document (also what the runtime API's `show stat` prints).
pub fn csv(shared: &Shared, view: View) -> String {
    let idx = columns();
    let n = idx.len();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for (iid, name) in shared.order.iter().enumerate() {
        let iid = iid + shared.first_iid;
        if !view.scope.is_empty() && !view.scope.iter().any(|s| s == name) {
            continue;
        }
        if let Some(fe) = shared.frontends.iter().find(|f| &f.cfg.name == name) {
            let mut r = Row::new(n);
            r.set(&idx, "pxname", name);
            r.set(&idx, "svname", "FRONTEND");
            counters(&mut r, &idx, &fe.counters);
            r.set(&idx, "slim", fe.maxconn);
            r.set(&idx, "status", "OPEN");
            r.set(&idx, "pid", 1);
            r.set(&idx, "iid", iid);
            r.set(&idx, "sid", 0);
            r.set(&idx, "type", 0);
            r.set(&idx, "req_tot", fe.counters.stot.load(Relaxed));
            r.set(&idx, "ereq", fe.counters.ereq.load(Relaxed));
            r.set(&idx, "dreq", fe.counters.dreq.load(Relaxed));
            r.set(&idx, "dcon", fe.counters.dcon.load(Relaxed));
            r.set(&idx, "req_rate", fe.counters.rate.load(Relaxed));
            r.set(&idx, "req_rate_max", fe.counters.rate_max.load(Relaxed));
            r.set(&idx, "mode", mode(fe.cfg.settings.mode));
            r.set(&idx, "conn_tot", fe.counters.conn_tot.load(Relaxed));
            r.set(&idx, "intercepted", fe.counters.intercepted.load(Relaxed));
            for k in ZERO_FE {
                r.set(&idx, k, 0);
            }
            r.set(&idx, "-", "-");
            out.push_str(&r.line());
        }
        if let Some(be) = shared.backends.get(name) {
            let explicit: Vec<Option<u32>> = be.servers.iter().map(|s| s.cfg.id).collect();
            let ids = ballast_l7::hashing::server_ids(&explicit);
            for (s, sid) in be.servers.iter().zip(ids) {
                let mut r = Row::new(n);
                r.set(&idx, "pxname", name);
                r.set(&idx, "svname", &s.cfg.name);
                counters(&mut r, &idx, &s.counters);
                r.set(&idx, "qcur", s.counters.qcur.load(Relaxed));
                r.set(&idx, "qmax", s.counters.qmax.load(Relaxed));
                if s.cfg.maxconn > 0 {
                    r.set(&idx, "slim", s.cfg.maxconn);
                }
                for k in ["econ", "eresp", "wretr", "wredis", "cli_abrt", "srv_abrt"] {
                    let v = match k {
                        "econ" => &s.counters.econ,
                        "eresp" => &s.counters.eresp,
                        "wretr" => &s.counters.wretr,
                        "cli_abrt" => &s.counters.cli_abrt,
                        "srv_abrt" => &s.counters.srv_abrt,
                        _ => &s.counters.wredis,
                    };
                    r.set(&idx, k, v.load(Relaxed));
                }
                r.set(&idx, "dresp", 0);
                r.set(&idx, "status", s.status());
                r.set(&idx, "weight", s.weight.load(Relaxed));
                r.set(&idx, "act", u8::from(!s.cfg.backup));
                r.set(&idx, "bck", u8::from(s.cfg.backup));
                if s.cfg.check {
                    r.set(&idx, "chkfail", s.chkfail.load(Relaxed));
                    r.set(&idx, "chkdown", s.chkdown.load(Relaxed));
                    let chk = s.last_check.lock().map(|c| c.clone()).unwrap_or_default();
                    let mut words = chk.split_whitespace();
                    let status = words.next().unwrap_or("");
                    r.set(&idx, "check_status", status);
                    // An HTTP check's status code (L7OK 200, L7STS 503).
                    if status.starts_with("L7") {
                        if let Some(code) = words.next().filter(|c| c.parse::<u16>().is_ok()) {
                            r.set(&idx, "check_code", code);
                        }
                    }
                    if let Ok(h) = s.health.lock() {
                        r.set(&idx, "check_health", h.health());
                    }
                    r.set(&idx, "check_desc", chk);
                    r.set(&idx, "check_rise", s.cfg.rise);
                    r.set(&idx, "check_fall", s.cfg.fall);
                }
                r.set(&idx, "lastchg", s.last_change.lock().map(|t| t.elapsed().as_secs()).unwrap_or(0));
                r.set(&idx, "pid", 1);
                r.set(&idx, "iid", iid);
                r.set(&idx, "sid", sid);
                r.set(&idx, "lbtot", s.counters.stot.load(Relaxed));
                r.set(&idx, "type", 2);
                if view.legends {
                    r.set(&idx, "addr", s.cfg.addr);
                    if let Some(c) = &s.cfg.cookie {
                        r.set(&idx, "cookie", c);
                    }
                }
                r.set(&idx, "uweight", s.weight.load(Relaxed));
                r.set(&idx, "connect", s.counters.connect.load(Relaxed));
                r.set(&idx, "reuse", s.counters.reuse.load(Relaxed));
                if be.cfg.settings.mode == Mode::Http {
                    r.set(&idx, "req_tot", s.counters.stot.load(Relaxed));
                }
                for k in ZERO_SRV {
                    r.set(&idx, k, 0);
                }
                r.set(&idx, "-", "-");
                r.set(&idx, "mode", mode(be.cfg.settings.mode));
                out.push_str(&r.line());
            }
            let mut r = Row::new(n);
            r.set(&idx, "pxname", name);
            r.set(&idx, "svname", "BACKEND");
            counters(&mut r, &idx, &be.counters);
            // The backend's own queue (requests no server could take yet), as HAProxy's.
            r.set(&idx, "qcur", be.counters.qcur.load(Relaxed));
            r.set(&idx, "qmax", be.counters.qmax.load(Relaxed));
            r.set(&idx, "econ", be.counters.econ.load(Relaxed));
            r.set(&idx, "dreq", be.counters.dreq.load(Relaxed));
            r.set(&idx, "cli_abrt", be.counters.cli_abrt.load(Relaxed));
            r.set(&idx, "srv_abrt", be.counters.srv_abrt.load(Relaxed));
            r.set(&idx, "wretr", be.counters.wretr.load(Relaxed));
            r.set(&idx, "wredis", be.counters.wredis.load(Relaxed));
            // A backend without servers is UP, as HAProxy shows it.
            let up = be.servers.is_empty() || be.up_servers() > 0;
            r.set(&idx, "status", if up { "UP" } else { "DOWN" });
            // The weight of the servers in use: the active ones, or the backups when no
            // active server is usable (HAProxy's tot_weight).
            let usable = |backup: bool| {
                be.servers.iter().filter(move |s| s.usable() && s.cfg.backup == backup).map(|s| s.weight.load(Relaxed))
            };
            let weight: u32 = if usable(false).next().is_some() { usable(false).sum() } else { usable(true).sum() };
            r.set(&idx, "weight", weight);
            r.set(&idx, "uweight", weight);
            r.set(&idx, "slim", fullconn(shared, name));
            r.set(&idx, "connect", be.counters.connect.load(Relaxed));
            r.set(&idx, "reuse", be.counters.reuse.load(Relaxed));
            r.set(&idx, "eresp", be.servers.iter().map(|s| s.counters.eresp.load(Relaxed)).sum::<u64>());
            if be.cfg.settings.mode == Mode::Http {
                r.set(&idx, "req_tot", be.counters.stot.load(Relaxed));
            }
            for k in ZERO_BE {
                r.set(&idx, k, 0);
            }
            r.set(&idx, "-", "-");
            r.set(&idx, "act", be.servers.iter().filter(|s| !s.cfg.backup && s.is_up()).count());
            r.set(&idx, "bck", be.servers.iter().filter(|s| s.cfg.backup && s.is_up()).count());
            r.set(&idx, "pid", 1);
            r.set(&idx, "iid", iid);
            r.set(&idx, "sid", 0);
            r.set(&idx, "lbtot", be.counters.stot.load(Relaxed));
            r.set(&idx, "type", 1);
            r.set(&idx, "mode", mode(be.cfg.settings.mode));
            if view.legends {
                r.set(&idx, "algo", algo(&be.cfg.settings.balance));
                if let Some(c) = &be.cfg.settings.cookie {
                    r.set(&idx, "cookie", &c.name);
                }
            }
            out.push_str(&r.line());
        }
    }
    out
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The HTML page: one table per proxy, servers coloured by state.
pub fn html(shared: &Shared, refresh: Option<u64>, view: View) -> String {
    let mut h =
        String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ballast statistics</title>");
    if let Some(r) = refresh {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{r}\">");
    }
    h.push_str("<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin-bottom:18px}\
th,td{border:1px solid #999;padding:3px 8px;text-align:right}th{background:#20446d;color:#fff}td.n{text-align:left}\
tr.up td{background:#c0f0c0}tr.down td{background:#f5a0a0}tr.maint td{background:#c0c0ff}tr.drain td{background:#f0d090}\
tr.px td{background:#e0e0e0;font-weight:bold}</style></head><body>");
    let _ = write!(
        h,
        "<h1>ballast statistics</h1><p>Uptime {}s. Rows: frontend, servers, backend.</p>",
        shared.started.elapsed().as_secs()
    );
    let csv = csv(shared, view);
    let idx = columns();
    let col = |cols: &[&str], name: &str| {
        idx.get(name).and_then(|&i| cols.get(i).map(|s| s.to_string())).unwrap_or_default()
    };
    let mut current = String::new();
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let px = col(&cols, "pxname");
        if px != current {
            if !current.is_empty() {
                h.push_str("</table>");
            }
            current = px.clone();
            let _ = write!(h, "<h2>{}</h2><table><tr><th>Name</th><th>Status</th><th>Weight</th><th>Cur sessions</th><th>Max</th><th>Limit</th><th>Rate/s</th><th>Max rate</th><th>Total</th><th>Queue</th><th>2xx</th><th>5xx</th><th>Req errors</th><th>Conn errors</th><th>Resp errors</th><th>Retries</th><th>Redisp</th><th>Last check</th></tr>", esc(&px));
        }
        let sv = col(&cols, "svname");
        let status = col(&cols, "status");
        let class = if sv == "FRONTEND" || sv == "BACKEND" {
            "px"
        } else if status.starts_with("DOWN") {
            "down"
        } else if status == "MAINT" {
            "maint"
        } else if status == "DRAIN" {
            "drain"
        } else {
            "up"
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&sv),
            esc(&status),
            col(&cols, "weight"),
            col(&cols, "scur"),
            col(&cols, "smax"),
            col(&cols, "slim"),
            col(&cols, "rate"),
            col(&cols, "rate_max"),
            col(&cols, "stot"),
            col(&cols, "qcur"),
            col(&cols, "hrsp_2xx"),
            col(&cols, "hrsp_5xx"),
            col(&cols, "ereq"),
            col(&cols, "econ"),
            col(&cols, "eresp"),
            col(&cols, "wretr"),
            col(&cols, "wredis"),
            esc(&col(&cols, "check_desc")),
        );
    }
    if !current.is_empty() {
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

/// One per-server metric family: HELP, TYPE, then a line per server in declaration order.
fn server_metric(
    m: &mut String,
    shared: &Shared,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&super::state::ServerRt) -> u64,
) {
    let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for px in &shared.order {
        if let Some(be) = shared.backends.get(px) {
            for s in &be.servers {
                let _ = writeln!(m, "{name}{{proxy=\"{px}\",server=\"{}\"}} {}", s.cfg.name, value(s));
            }
        }
    }
}

/// Prometheus text format.
pub fn metrics(shared: &Shared) -> String {
    let mut m = String::new();
    server_metric(
        &mut m,
        shared,
        "ballast_server_up",
        "gauge",
        "1 if the server is up (health checks and admin state).",
        |s| u64::from(s.is_up()),
    );
    server_metric(
        &mut m,
        shared,
        "ballast_server_sessions_total",
        "counter",
        "Requests sent to the server.",
        |s| s.counters.stot.load(Relaxed),
    );
    server_metric(
        &mut m,
        shared,
        "ballast_server_current_sessions",
        "gauge",
        "Requests in progress on the server.",
        |s| s.counters.scur.load(Relaxed) as u64,
    );
    m.push_str("# HELP ballast_frontend_http_responses_total Responses by status class.\n# TYPE ballast_frontend_http_responses_total counter\n");
    for fe in &shared.frontends {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx", "other"].iter().enumerate() {
            let _ = writeln!(
                m,
                "ballast_frontend_http_responses_total{{proxy=\"{}\",code=\"{class}\"}} {}",
                fe.cfg.name,
                fe.counters.hrsp[i].load(Relaxed)
            );
        }
    }
    m.push_str("# HELP ballast_frontend_request_errors_total Bad requests, and clients that closed or went silent before their request was whole (HAProxy's ereq).\n# TYPE ballast_frontend_request_errors_total counter\n");
    for fe in &shared.frontends {
        let _ = writeln!(
            m,
            "ballast_frontend_request_errors_total{{proxy=\"{}\"}} {}",
            fe.cfg.name,
            fe.counters.ereq.load(Relaxed)
        );
    }
    m
}

fn respond(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    r
}

fn authorized<B>(st: &Stats, req: &Request<B>) -> bool {
    if st.auth.is_empty() {
        return true;
    }
    let Some(v) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v.strip_prefix("Basic ") else { return false };
    let Some(decoded) = base64_decode(b64.trim()) else { return false };
    st.auth.iter().any(|(u, p)| decoded == format!("{u}:{p}").into_bytes())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

pub fn serve<B>(shared: &Shared, st: &Stats, req: &Request<B>) -> Response<Body> {
    if !authorized(st, req) {
        let mut r = respond(
            StatusCode::UNAUTHORIZED,
            "text/html",
            "<html><body><h1>401 Unauthorized</h1></body></html>\n".into(),
        );
        let realm = st.realm.clone().unwrap_or_else(|| "HAProxy Statistics".into());
        if let Ok(v) = header::HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    let uri = st.uri.as_deref().unwrap_or("/");
    let rest = &req.uri().path()[uri.len().min(req.uri().path().len())..];
    let query = req.uri().query().unwrap_or("");
    if rest.starts_with(";csv") || query.contains(";csv") || rest.ends_with("/csv") {
        respond(StatusCode::OK, "text/plain", csv(shared, View::of(st)))
    } else if rest.trim_end_matches('/').ends_with("metrics") {
        respond(StatusCode::OK, "text/plain; version=0.0.4", metrics(shared))
    } else {
        respond(StatusCode::OK, "text/html", html(shared, st.refresh.map(|d| d.as_secs()), View::of(st)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_haproxy_columns_in_order() {
        let idx = columns();
        assert_eq!(idx["pxname"], 0);
        assert_eq!(idx["svname"], 1);
        assert_eq!(idx["status"], 17);
        assert_eq!(idx["hrsp_2xx"], 40);
        assert_eq!(idx["check_desc"], 65);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
    }
}

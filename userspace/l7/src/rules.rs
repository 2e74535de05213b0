//! Applying a proxy's `http-request`, `http-response` and `tcp-request connection` rules,
//! as HAProxy does: in order, each rule whose condition holds; `allow` ends the list,
//! `deny`, `return` and `redirect` end it with an answer; header and path changes are seen
//! by the rules after them. The caller applies the resulting [`Edits`] to what it sends.
use std::net::SocketAddr;

use crate::{
    acl::{applies, query_of, render, Connection, Sample},
    haproxy::model::{ConnectionAction, ProxySection, Redirect, RedirectKind, RequestAction, ResponseAction},
};

/// A change to the header list, in the order the rules made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Removes every occurrence, then adds this one.
    Set(String, String),
    Add(String, String),
    /// Removes every occurrence.
    Del(String),
}

impl HeaderEdit {
    fn name(&self) -> &str {
        match self {
            HeaderEdit::Set(n, _) | HeaderEdit::Add(n, _) | HeaderEdit::Del(n) => n,
        }
    }
}

/// What the rules changed: headers, and the path (the query stays).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    pub headers: Vec<HeaderEdit>,
    pub path: Option<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.path.is_none()
    }

    /// Whether an original header `name` is still sent (not removed or replaced).
    pub fn keeps(&self, name: &str) -> bool {
        !self.headers.iter().any(|e| {
            matches!(e, HeaderEdit::Set(..) | HeaderEdit::Del(_)) && e.name().eq_ignore_ascii_case(name)
        })
    }

    /// The headers the edits add, in order: for each name, those after its last removal.
    pub fn added(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().enumerate().filter_map(move |(i, e)| {
            let (n, v) = match e {
                HeaderEdit::Set(n, v) | HeaderEdit::Add(n, v) => (n, v),
                HeaderEdit::Del(_) => return None,
            };
            let removed_later = self.headers[i + 1..].iter().any(|l| {
                matches!(l, HeaderEdit::Set(..) | HeaderEdit::Del(_)) && l.name().eq_ignore_ascii_case(n)
            });
            (!removed_later).then_some((n.as_str(), v.as_str()))
        })
    }

    /// The request target with the new path, the query kept.
    pub fn target(&self, url: &str) -> Option<String> {
        let p = self.path.as_ref()?;
        Some(match url.split_once('?') {
            Some((_, q)) => format!("{p}?{q}"),
            None => p.clone(),
        })
    }
}

/// A request as the rules after some edits see it (and routing, after all of them).
pub struct Edited<'a> {
    base: &'a dyn Sample,
    edits: &'a Edits,
    target: Option<String>,
}

impl Sample for Edited<'_> {
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        if !self.edits.headers.iter().any(|e| e.name().eq_ignore_ascii_case(name)) {
            return self.base.any_header(name, f);
        }
        (self.edits.keeps(name) && self.base.any_header(name, f))
            || self.edits.added().filter(|(n, _)| n.eq_ignore_ascii_case(name)).any(|(_, v)| f(v))
    }
    fn method(&self) -> Option<&str> {
        self.base.method()
    }
    fn path(&self) -> Option<&str> {
        self.edits.path.as_deref().or_else(|| self.base.path())
    }
    fn url(&self) -> Option<&str> {
        self.target.as_deref().or_else(|| self.base.url())
    }
    fn version(&self) -> Option<&str> {
        self.base.version()
    }
    fn src(&self) -> Option<SocketAddr> {
        self.base.src()
    }
    fn dst(&self) -> Option<SocketAddr> {
        self.base.dst()
    }
    fn tls(&self) -> Option<Option<&str>> {
        self.base.tls()
    }
}

pub fn edited<'a>(req: &'a dyn Sample, edits: &'a Edits) -> Edited<'a> {
    let target = req.url().and_then(|u| edits.target(u));
    Edited { base: req, edits, target }
}

/// How the request goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// To the next step (the next proxy's rules, routing, a server).
    Continue,
    /// `allow`: the rest of this proxy's `http-request` rules are skipped.
    Allowed,
    /// Answer HAProxy's error page for `status` (`deny`).
    Deny { status: u16 },
    /// Answer this (`return`).
    Return { status: u16, content_type: Option<String>, body: String, headers: Vec<(String, String)> },
    /// Answer a redirect (`redirect`).
    Redirect { status: u16, location: String },
}

impl Verdict {
    /// Whether the request is answered by the proxy.
    pub fn answered(&self) -> bool {
        !matches!(self, Verdict::Continue | Verdict::Allowed)
    }
}

fn redirect_location(r: &Redirect, req: &dyn Sample) -> String {
    let value = render(&r.value, req);
    let url = req.url().unwrap_or("/");
    let mut path = req.path().unwrap_or("/").to_string();
    if r.append_slash && !path.ends_with('/') {
        path.push('/');
    }
    let query = if r.drop_query { "" } else { query_of(url) };
    let q = if query.is_empty() { String::new() } else { format!("?{query}") };
    match r.kind {
        RedirectKind::Location => value,
        // `prefix /` keeps the path as it is, as HAProxy does.
        RedirectKind::Prefix if value == "/" => format!("{path}{q}"),
        RedirectKind::Prefix => format!("{}{path}{q}", value.trim_end_matches('/')),
        RedirectKind::Scheme => {
            let mut host = String::new();
            req.any_header("host", &mut |h| {
                host = h.to_string();
                true
            });
            format!("{value}://{host}{path}{q}")
        }
    }
}

/// Runs `proxy`'s `http-request` rules on `req`, adding to `edits` (which earlier
/// proxies' rules may have started).
pub fn request_rules(proxy: &ProxySection, req: &dyn Sample, edits: &mut Edits) -> Verdict {
    for rule in &proxy.http_request {
        let view = edited(req, edits);
        if !applies(proxy, rule.cond.as_ref(), &view) {
            continue;
        }
        match &rule.action {
            RequestAction::Allow => return Verdict::Allowed,
            RequestAction::Deny { status } => return Verdict::Deny { status: *status },
            RequestAction::Return { status, content_type, body, headers } => {
                return Verdict::Return {
                    status: *status,
                    content_type: content_type.clone(),
                    body: body.as_ref().map(|b| render(b, &view)).unwrap_or_default(),
                    headers: headers.iter().map(|(n, v)| (n.clone(), render(v, &view))).collect(),
                }
            }
            RequestAction::Redirect(r) => {
                return Verdict::Redirect { status: r.code, location: redirect_location(r, &view) }
            }
            RequestAction::SetHeader { name, value } => {
                let v = render(value, &view);
                edits.headers.push(HeaderEdit::Set(name.clone(), v));
            }
            RequestAction::AddHeader { name, value } => {
                let v = render(value, &view);
                edits.headers.push(HeaderEdit::Add(name.clone(), v));
            }
            RequestAction::DelHeader { name } => edits.headers.push(HeaderEdit::Del(name.clone())),
            RequestAction::SetPath(f) => {
                let p = render(f, &view);
                edits.path = Some(p);
            }
        }
    }
    Verdict::Continue
}

/// Runs `proxy`'s `http-response` rules; `req` is the request (conditions read it),
/// `edits` collects the response's header changes.
pub fn response_rules(proxy: &ProxySection, req: &dyn Sample, edits: &mut Edits) {
    for rule in &proxy.http_response {
        if !applies(proxy, rule.cond.as_ref(), req) {
            continue;
        }
        match &rule.action {
            ResponseAction::Allow => return,
            ResponseAction::SetHeader { name, value } => {
                edits.headers.push(HeaderEdit::Set(name.clone(), render(value, req)))
            }
            ResponseAction::AddHeader { name, value } => {
                edits.headers.push(HeaderEdit::Add(name.clone(), render(value, req)))
            }
            ResponseAction::DelHeader { name } => edits.headers.push(HeaderEdit::Del(name.clone())),
        }
    }
}

/// Whether `tcp-request connection` rules let a connection in (the first rule that applies
/// decides; none: accepted).
pub fn connection_accepted(proxy: &ProxySection, src: SocketAddr, dst: SocketAddr) -> bool {
    let conn = Connection { src, dst };
    for rule in &proxy.tcp_request_connection {
        if applies(proxy, rule.cond.as_ref(), &conn) {
            return rule.action == ConnectionAction::Accept;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{haproxy::parse, route::tests::Req};

    fn proxy(lines: &str) -> ProxySection {
        let cfg = format!("defaults\n mode http\nlisten web\n bind :80\n{lines} server s 10.0.0.1:80\n");
        let p = parse("r.cfg", &cfg);
        assert_eq!(p.alerts().count(), 0, "{:?}", p.diags);
        p.config.unwrap().proxies.remove(0)
    }

    #[test]
    fn deny_allow_and_order() {
        let px = proxy(" acl admin path_beg /admin\n acl office src 10.0.0.0/8\n http-request allow if office\n http-request deny if admin\n");
        let mut req = Req::get(Some("x"), "/admin/users");
        assert_eq!(request_rules(&px, &req, &mut Edits::default()), Verdict::Deny { status: 403 });
        req.src = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(request_rules(&px, &req, &mut Edits::default()), Verdict::Allowed, "allow stops the list");
        let px = proxy(" http-request deny deny_status 429 unless { src 192.0.2.0/24 }\n");
        assert_eq!(request_rules(&px, &Req::get(None, "/"), &mut Edits::default()), Verdict::Continue);
        let mut req = Req::get(None, "/");
        req.src = "203.0.113.9:1".parse().unwrap();
        assert_eq!(request_rules(&px, &req, &mut Edits::default()), Verdict::Deny { status: 429 });
    }

    #[test]
    fn header_edits_are_seen_by_later_rules() {
        let px = proxy(
            " http-request set-header X-Proto https if { ssl_fc }\n http-request add-header X-Client %[src]\n\
             http-request del-header X-Secret\n http-request deny if { req.hdr(x-proto) https } { path /no }\n\
             http-request set-path /v2%[path]\n",
        );
        let mut req = Req::get(Some("a"), "/x?q=1");
        req.headers.push(("x-secret", "s"));
        req.tls = Some(None);
        let mut e = Edits::default();
        assert_eq!(request_rules(&px, &req, &mut e), Verdict::Continue);
        assert!(!e.keeps("x-secret") && !e.keeps("X-Proto") && e.keeps("host"));
        let added: Vec<_> = e.added().collect();
        assert_eq!(added, [("X-Proto", "https"), ("X-Client", "192.0.2.7")]);
        assert_eq!(e.target("/x?q=1").as_deref(), Some("/v2/x?q=1"));
        let mut no = Req::get(Some("a"), "/no");
        no.tls = Some(None);
        assert_eq!(request_rules(&px, &no, &mut Edits::default()), Verdict::Deny { status: 403 });
        no.tls = None;
        assert_eq!(request_rules(&px, &no, &mut Edits::default()), Verdict::Continue);
    }

    #[test]
    fn return_and_redirects() {
        let px = proxy(
            " http-request return status 200 content-type text/plain lf-string \"ok %[path]\" hdr X-A 1 if { path_beg /health }\n\
             http-request redirect scheme https code 301 unless { ssl_fc }\n",
        );
        assert_eq!(
            request_rules(&px, &Req::get(None, "/health"), &mut Edits::default()),
            Verdict::Return {
                status: 200,
                content_type: Some("text/plain".into()),
                body: "ok /health".into(),
                headers: vec![("X-A".into(), "1".into())]
            }
        );
        assert_eq!(
            request_rules(&px, &Req::get(Some("a.test:8080"), "/p?q"), &mut Edits::default()),
            Verdict::Redirect { status: 301, location: "https://a.test:8080/p?q".into() }
        );
        let px = proxy(" http-request redirect prefix /new drop-query append-slash\n");
        assert_eq!(
            request_rules(&px, &Req::get(None, "/p?q"), &mut Edits::default()),
            Verdict::Redirect { status: 302, location: "/new/p/".into() }
        );
    }

    #[test]
    fn response_and_connection_rules() {
        let px = proxy(
            " http-response set-header Strict-Transport-Security max-age=31536000\n http-response del-header Server\n\
             tcp-request connection reject if { src 203.0.113.0/24 }\n",
        );
        let mut e = Edits::default();
        response_rules(&px, &Req::get(None, "/"), &mut e);
        assert!(!e.keeps("server") && !e.keeps("strict-transport-security"));
        let dst = "198.51.100.1:80".parse().unwrap();
        assert!(!connection_accepted(&px, "203.0.113.5:1".parse().unwrap(), dst));
        assert!(connection_accepted(&px, "192.0.2.5:1".parse().unwrap(), dst));
    }
}

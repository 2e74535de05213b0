//! Which backend a request goes to: the frontend's `use_backend ... if|unless <cond>` rules
//! in order, then `default_backend`, then (for a `listen`) its own servers.
use crate::haproxy::model::{Acl, AclCriterion, Condition, Match, ProxySection};

/// What ACLs can look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Host header without the port.
    pub host: Option<&'a str>,
    pub path: &'a str,
}

fn matches(m: Match, ci: bool, subject: &str, value: &str) -> bool {
    let (s, v) = if ci {
        (subject.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (subject.into(), value.into())
    };
    match m {
        Match::Exact => s == v,
        Match::Begins => s.starts_with(&v),
        Match::Ends => s.ends_with(&v),
        Match::Contains => s.contains(&v),
    }
}

fn acl_true(acl: &Acl, req: &RequestView) -> bool {
    let (m, subject) = match acl.criterion {
        AclCriterion::Host(m) => (m, req.host),
        AclCriterion::Path(m) => (m, Some(req.path)),
    };
    let Some(subject) = subject else { return false };
    acl.values.iter().any(|v| matches(m, acl.case_insensitive, subject, v))
}

/// An ACL name is true if any of its lines is (lines with the same name are ORed).
fn named_true(proxy: &ProxySection, name: &str, req: &RequestView) -> bool {
    proxy.acls.iter().filter(|a| a.name == name).any(|a| acl_true(a, req))
}

pub fn condition_true(proxy: &ProxySection, cond: &Condition, req: &RequestView) -> bool {
    let any =
        cond.any_of.iter().any(|all| all.iter().all(|(neg, name)| named_true(proxy, name, req) != *neg));
    any != cond.negate_all
}

/// The backend name for a request arriving at `frontend`, or None (→ 503).
pub fn backend_for<'p>(frontend: &'p ProxySection, req: &RequestView) -> Option<&'p str> {
    for ub in &frontend.use_backends {
        if condition_true(frontend, &ub.cond, req) {
            return Some(&ub.backend);
        }
    }
    if let Some(d) = &frontend.default_backend {
        return Some(d);
    }
    frontend.kind.has_backend().then_some(frontend.name.as_str())
}

/// The host part of a Host header (`example.com:8080` → `example.com`, `[::1]:80` → `[::1]`).
pub fn host_only(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map(|(a, _)| &h[..a.len() + 1]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::parse;

    const CFG: &str = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
frontend fe\n bind :80\n acl api path_beg /api\n acl b hdr(host) -i B.example\n acl b hdr_end(host) .b.example\n\
 use_backend api if api !b\n use_backend bsite if b or api\n use_backend never unless api or b\n default_backend web\n\
backend api\n server a 10.0.0.1:80\nbackend bsite\n server b 10.0.0.2:80\nbackend web\n server w 10.0.0.3:80\nbackend never\n server n 10.0.0.4:80\n";

    fn route(host: Option<&str>, path: &str) -> String {
        let c = parse("r", CFG).config.unwrap();
        backend_for(c.proxy("fe").unwrap(), &RequestView { host, path }).unwrap().to_string()
    }

    #[test]
    fn rules_in_order_then_default() {
        assert_eq!(route(Some("a.example"), "/api/x"), "api");
        assert_eq!(route(Some("b.example"), "/api/x"), "bsite");
        assert_eq!(route(Some("www.b.example"), "/"), "bsite");
        assert_eq!(route(Some("B.EXAMPLE"), "/"), "bsite", "hdr(host) -i is case-insensitive");
        assert_eq!(route(Some("a.example"), "/"), "never", "unless (api or b) is true for neither");
        assert_eq!(route(None, "/"), "never");
    }

    #[test]
    fn listen_routes_to_itself() {
        let c = parse("l", "listen x\n bind :80\n server s 10.0.0.1:80\n").config.unwrap();
        assert_eq!(backend_for(c.proxy("x").unwrap(), &RequestView { host: None, path: "/" }), Some("x"));
    }

    #[test]
    fn host_only_strips_ports() {
        assert_eq!(host_only("example.com:8080"), "example.com");
        assert_eq!(host_only("example.com"), "example.com");
        assert_eq!(host_only("[::1]:80"), "[::1]");
    }
}

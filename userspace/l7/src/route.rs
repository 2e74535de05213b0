//! Which backend a request goes to: the frontend's `use_backend ... if|unless <cond>` rules
//! in order, then `default_backend`, then (for a `listen`) its own servers.
use crate::{
    acl::{condition_true, Sample},
    haproxy::model::ProxySection,
};

/// The backend name for a request arriving at `frontend`, or None (→ 503).
pub fn backend_for<'p>(frontend: &'p ProxySection, req: &dyn Sample) -> Option<&'p str> {
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

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::haproxy::parse;

    /// A request for tests: headers, method, target, addresses, TLS.
    pub struct Req {
        pub headers: Vec<(&'static str, &'static str)>,
        pub method: &'static str,
        pub url: &'static str,
        pub src: SocketAddr,
        pub tls: Option<Option<&'static str>>,
    }

    impl Req {
        pub fn get(host: Option<&'static str>, url: &'static str) -> Req {
            Req {
                headers: host.map(|h| ("host", h)).into_iter().collect(),
                method: "GET",
                url,
                src: "192.0.2.7:40000".parse().unwrap(),
                tls: None,
            }
        }
    }

    impl Sample for Req {
        fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).any(|(_, v)| f(v))
        }
        fn method(&self) -> Option<&str> {
            Some(self.method)
        }
        fn path(&self) -> Option<&str> {
            self.url.split('?').next()
        }
        fn url(&self) -> Option<&str> {
            Some(self.url)
        }
        fn version(&self) -> Option<&str> {
            Some("1.1")
        }
        fn src(&self) -> Option<SocketAddr> {
            Some(self.src)
        }
        fn dst(&self) -> Option<SocketAddr> {
            Some("198.51.100.1:80".parse().unwrap())
        }
        fn tls(&self) -> Option<Option<&str>> {
            self.tls
        }
    }

    const CFG: &str = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
frontend fe\n bind :80\n acl api path_beg /api\n acl b hdr(host) -i B.example\n acl b hdr_end(host) .b.example\n\
 use_backend api if api !b\n use_backend bsite if b or api\n use_backend never unless api or b\n default_backend web\n\
backend api\n server a 10.0.0.1:80\nbackend bsite\n server b 10.0.0.2:80\nbackend web\n server w 10.0.0.3:80\nbackend never\n server n 10.0.0.4:80\n";

    fn route(host: Option<&'static str>, path: &'static str) -> String {
        let c = parse("r", CFG).config.unwrap();
        backend_for(c.proxy("fe").unwrap(), &Req::get(host, path)).unwrap().to_string()
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
        assert_eq!(backend_for(c.proxy("x").unwrap(), &Req::get(None, "/")), Some("x"));
    }

    /// HAProxy 2.6's host matching: `hdr(host)` sees the header as sent (port included),
    /// case-sensitive without `-i`; `hdr_dom` matches whole labels.
    #[test]
    fn host_acls_as_haproxy() {
        let cfg = "defaults\n mode http\nfrontend fe\n bind :80\n acl exact hdr(host) dom.test\n\
 acl dom hdr_dom(host) dom.test\n use_backend e if exact\n use_backend d if dom\n default_backend z\n\
backend e\n server a 10.0.0.1:80\nbackend d\n server b 10.0.0.2:80\nbackend z\n server c 10.0.0.3:80\n";
        let c = parse("h", cfg).config.unwrap();
        let fe = c.proxy("fe").unwrap();
        let to = |host: &'static str| backend_for(fe, &Req::get(Some(host), "/")).unwrap().to_string();
        assert_eq!(to("dom.test"), "e");
        assert_eq!(to("dom.test:8080"), "d", "hdr(host) sees the port; hdr_dom still matches the labels");
        assert_eq!(to("DOM.test"), "z", "case-sensitive without -i");
        assert_eq!(to("www.dom.test"), "d");
        assert_eq!(to("wwwdom.test"), "z", "whole labels only");
    }
}

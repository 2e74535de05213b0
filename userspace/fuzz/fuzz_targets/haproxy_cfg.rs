#![no_main]
// The HAProxy config parser must turn any input into diagnostics, never a panic; a config
// that loads must route and run its rules on a request without panicking either.
use std::net::SocketAddr;

use ballast_l7::{acl::Sample, route::backend_for, rules};
use libfuzzer_sys::fuzz_target;

/// A fixed request: Host, path and query, a header, addresses, TLS with SNI.
struct Req;

impl Sample for Req {
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match name {
            "host" => f("example.com:8080"),
            "x-forwarded-for" => f("192.0.2.1, 198.51.100.2"),
            _ => false,
        }
    }
    fn method(&self) -> Option<&str> {
        Some("GET")
    }
    fn path(&self) -> Option<&str> {
        Some("/a/b")
    }
    fn url(&self) -> Option<&str> {
        Some("/a/b?c=d")
    }
    fn version(&self) -> Option<&str> {
        Some("1.1")
    }
    fn src(&self) -> Option<SocketAddr> {
        Some("192.0.2.7:40000".parse().unwrap())
    }
    fn dst(&self) -> Option<SocketAddr> {
        Some("198.51.100.1:443".parse().unwrap())
    }
    fn tls(&self) -> Option<Option<&str>> {
        Some(Some("example.com"))
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = ballast_l7::haproxy::parse("fuzz.cfg", &text);
    if let Some(c) = parsed.config {
        for p in &c.proxies {
            let mut edits = rules::Edits::default();
            let _ = rules::request_rules(p, &Req, &mut edits);
            let _ = backend_for(p, &rules::edited(&Req, &edits));
            rules::response_rules(p, &Req, &mut rules::Edits::default());
            let _ = rules::connection_accepted(p, Req.src().unwrap(), Req.dst().unwrap());
        }
    }
});

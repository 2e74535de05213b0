//! What ACLs, rules and log-formats read from a request ([`ballast_l7::acl::Sample`]),
//! on each path: an HTTP/1 head parsed in place, and an HTTP/2 stream's request.
use std::net::SocketAddr;

use ballast_l7::{acl::Sample, http1::RequestHead};
use hyper::Request;

/// An HTTP/1 request head, read in place.
pub struct H1Request<'a> {
    pub head: &'a [u8],
    pub h: &'a RequestHead,
    /// The target as sent, and its path without the query.
    pub url: &'a str,
    pub path: &'a str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<Option<&'a str>>,
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

impl Sample for H1Request<'_> {
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.h
            .fields
            .iter()
            .filter(|x| self.head[x.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .any(|x| f(text(&self.head[x.value.clone()])))
    }
    fn method(&self) -> Option<&str> {
        Some(text(&self.head[self.h.method.clone()]))
    }
    fn path(&self) -> Option<&str> {
        Some(self.path)
    }
    fn url(&self) -> Option<&str> {
        Some(self.url)
    }
    fn version(&self) -> Option<&str> {
        Some(if self.h.minor == 0 { "1.0" } else { "1.1" })
    }
    fn src(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }
    fn dst(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
    fn tls(&self) -> Option<Option<&str>> {
        self.tls
    }
}

/// An HTTP/2 stream's request (its `:authority` is the Host HAProxy sees).
pub struct H2Request<'a, B> {
    pub req: &'a Request<B>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<Option<&'a str>>,
}

impl<B> Sample for H2Request<'_, B> {
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        if name == "host" && !self.req.headers().contains_key(hyper::header::HOST) {
            if let Some(a) = self.req.uri().authority() {
                return f(a.as_str());
            }
        }
        self.req.headers().get_all(name).iter().any(|v| f(v.to_str().unwrap_or("")))
    }
    fn method(&self) -> Option<&str> {
        Some(self.req.method().as_str())
    }
    fn path(&self) -> Option<&str> {
        Some(self.req.uri().path())
    }
    fn url(&self) -> Option<&str> {
        Some(self.req.uri().path_and_query().map_or("/", |p| p.as_str()))
    }
    fn version(&self) -> Option<&str> {
        Some("2.0")
    }
    fn src(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }
    fn dst(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
    fn tls(&self) -> Option<Option<&str>> {
        self.tls
    }
}

/// A server's response, as `http-response` rules read it: `hdr()` is the response's
/// headers; the connection's addresses and TLS are there; the request's path, method and
/// the like are not (as in HAProxy, where they never match in response rules).
pub struct ServerResponse<'a> {
    pub headers: ResponseHeaders<'a>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<Option<&'a str>>,
}

/// Response headers: an HTTP/1 head read in place, or a header map.
pub enum ResponseHeaders<'a> {
    Head { head: &'a [u8], fields: &'a [ballast_l7::http1::Field] },
    Map(&'a hyper::HeaderMap),
}

impl Sample for ServerResponse<'_> {
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match &self.headers {
            ResponseHeaders::Head { head, fields } => fields
                .iter()
                .filter(|x| head[x.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
                .any(|x| f(text(&head[x.value.clone()]))),
            ResponseHeaders::Map(m) => m.get_all(name).iter().any(|v| f(v.to_str().unwrap_or(""))),
        }
    }
    fn method(&self) -> Option<&str> {
        None
    }
    fn path(&self) -> Option<&str> {
        None
    }
    fn url(&self) -> Option<&str> {
        None
    }
    fn version(&self) -> Option<&str> {
        None
    }
    fn src(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }
    fn dst(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
    fn tls(&self) -> Option<Option<&str>> {
        self.tls
    }
}

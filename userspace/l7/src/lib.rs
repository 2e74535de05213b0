//! The L7 proxy's pure logic (no sockets, no tokio): the HAProxy configuration (parse and
//! model), server selection, cookie persistence, health state, routing, the PROXY
//! protocol, HTTP/1 framing, the HTTP/2 protocol and HPACK. The proxy's I/O
//! (`ballast-proxy`) builds on these.
pub mod acl;
pub mod balance;
pub mod cookie;
pub mod haproxy;
pub mod hashing;
pub mod health;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod proxy_protocol;
pub mod route;
pub mod rules;
pub mod termination;

//! The L7 proxy's pure logic (no sockets, no tokio): server selection, cookie persistence,
//! health state, HTTP/1 framing, the HTTP/2 protocol and HPACK. The I/O side (listeners,
//! rustls, the proxy's connections) builds on these.
pub mod balance;
pub mod cookie;
pub mod h1;
pub mod h2;
pub mod health;
pub mod hpack;
pub mod proxy_protocol;
pub mod route;

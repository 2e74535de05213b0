//! Servers written with a host name: resolved once the configuration is parsed, at start
//! and at each reload, as HAProxy resolves them (libc, the first address; a name that does
//! not resolve refuses the configuration). Apart from the parser, which stays pure (the
//! fuzzer never waits on DNS).
use std::net::ToSocketAddrs;

use super::{Diag, Level, Parsed};

impl Parsed {
    pub fn resolve_hosts(mut self) -> Parsed {
        let Some(cfg) = self.config.as_mut() else { return self };
        let mut failed = Vec::new();
        for px in &mut cfg.proxies {
            for s in px.servers.iter_mut() {
                let Some(host) = &s.host else { continue };
                match (host.as_str(), s.addr.port()).to_socket_addrs().map(|mut a| a.next()) {
                    Ok(Some(addr)) => s.addr = addr,
                    Ok(None) => failed.push((s.file.clone(), s.line, format!("server '{}/{}': could not resolve address '{host}': no address", px.name, s.name))),
                    Err(e) => failed.push((s.file.clone(), s.line, format!("server '{}/{}': could not resolve address '{host}': {e}", px.name, s.name))),
                }
            }
        }
        if !failed.is_empty() {
            self.config = None;
            for (file, line, msg) in failed {
                self.diags.push(Diag { file, line, level: Level::Alert, msg });
            }
        }
        self
    }
}

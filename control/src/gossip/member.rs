//! Who a gossip member is (its foca identity) and what it broadcasts about itself.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use super::load::Load;

/// A member's identity: its gossip address plus what others need to reach and place it.
/// `bump` (start time) makes a restarted agent a new identity that wins over its old one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ident {
    pub addr: SocketAddr,
    pub bump: u64,
    pub name: String,
    pub node_id: u64,
    pub http: SocketAddr,
    /// Its cluster RPC address (`ports.server`): Raft, join, keyring changes.
    pub rpc: SocketAddr,
    pub server: bool,
    pub dc: String,
}

impl Ident {
    /// A stand-in for an address we only know from `retry_join`: announcing to it makes
    /// the real member answer with its real identity.
    pub fn placeholder(addr: SocketAddr) -> Ident {
        Ident {
            addr,
            bump: 0,
            name: String::new(),
            node_id: 0,
            http: addr,
            rpc: addr,
            server: false,
            dc: String::new(),
        }
    }
}

impl foca::Identity for Ident {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Ident { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// What a member broadcasts about itself: its load, versioned so newer reports replace
/// older ones, and whether it is leaving (so others say "left", not "failed").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub addr: SocketAddr,
    pub bump: u64,
    pub version: u64,
    pub load: Load,
    pub leaving: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportKey {
    addr: SocketAddr,
    bump: u64,
    version: u64,
}

impl foca::Invalidates for ReportKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && (self.bump, self.version) > (other.bump, other.version)
    }
}

/// The latest report of each member, shared with the API.
pub type Reports = Arc<Mutex<HashMap<SocketAddr, Report>>>;

pub struct Reporter {
    pub reports: Reports,
}

#[derive(Debug, thiserror::Error)]
#[error("bad load report: {0}")]
pub struct BadReport(String);

impl foca::BroadcastHandler<Ident> for Reporter {
    type Key = ReportKey;
    type Error = BadReport;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&Ident>) -> Result<Option<ReportKey>, BadReport> {
        let r: Report = postcard::from_bytes(data).map_err(|e| BadReport(e.to_string()))?;
        let mut all = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let newer = all.get(&r.addr).is_none_or(|o| (r.bump, r.version) > (o.bump, o.version));
        if !newer {
            return Ok(None);
        }
        let key = ReportKey { addr: r.addr, bump: r.bump, version: r.version };
        all.insert(r.addr, r);
        Ok(Some(key))
    }
}

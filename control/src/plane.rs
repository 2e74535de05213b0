//! The control plane of one device, as a handle the API serves from: gossip membership
//! (joined through `retry_join`), the Raft store (servers) and the bootstrap/join loop.
//! Starting it and serving the API is the agent's job (`ballast-agent`).
//!
//! Bootstrap (like Consul's `bootstrap_expect`): a server that is not in a Raft cluster
//! yet asks every server that gossip shows alive who it is; once it knows
//! `bootstrap_expect` servers and none of them is in a cluster, the one with the lowest
//! node id initializes Raft with all of them. A server that finds an existing cluster
//! asks its leader to add it as a voter.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{
    config::AgentConfig,
    gossip::{member::Ident, Gossip, GossipConfig},
    raft::{
        self,
        log_store::LogStore,
        network::{get_json, http_client, post_json, HttpClient, Network},
        state_machine::{StateMachine, StoreView},
        Node, NodeId, Raft,
    },
};

/// What an agent says about itself at `/v1/internal/self`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfInfo {
    pub id: NodeId,
    pub name: String,
    pub datacenter: String,
    /// Its API address.
    pub addr: String,
    /// Its cluster RPC address.
    pub rpc: String,
    pub server: bool,
    pub bootstrap_expect: u32,
    /// Whether this server is part of an initialized Raft cluster.
    pub in_cluster: bool,
    /// The leader's API and cluster RPC addresses, when this server knows them.
    pub leader: Option<Node>,
}

/// Asks the leader to add a server as a voter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub node: Node,
}

/// A lease the leader granted: valid on the device for `duration_ms` from when it sent
/// the request, once its state has applied `commit_index` (so a lease never covers a
/// state older than the leader's when it granted).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub duration_ms: u64,
    pub commit_index: u64,
}

/// The leader's record of lease grants (its monotonic clock), for the current term.
#[derive(Debug, Default)]
pub struct LeaseBook {
    pub term: u64,
    /// When this server became leader in `term`.
    pub leader_since: Option<std::time::Instant>,
    pub grants: std::collections::HashMap<String, std::time::Instant>,
}

impl LeaseBook {
    /// Starts a new record when the term changed (grants of another term are unknown).
    pub fn note_term(&mut self, term: u64, now: std::time::Instant) {
        if self.term != term || self.leader_since.is_none() {
            *self = LeaseBook { term, leader_since: Some(now), grants: Default::default() };
        }
    }
}

pub struct ControlPlane {
    pub cfg: AgentConfig,
    /// Lease timing (see `scheduler::LeaseTiming` for why it is safe).
    pub lease: crate::scheduler::LeaseTiming,
    /// Leaders only: the grants made in the current term.
    pub leases: std::sync::Mutex<LeaseBook>,
    /// On the leader: when each session was created or last renewed (its TTL counts
    /// from there; a new leader starts every session's TTL afresh, as Consul does).
    pub session_timers: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Servers only.
    pub raft: Option<Raft>,
    pub store: Option<StoreView>,
    pub client: HttpClient,
    pub gossip: Arc<Gossip>,
    /// The leader term in which this process committed a no-op (see `linearizable`).
    barrier_term: tokio::sync::Mutex<Option<u64>>,
    /// The agent's planes' metrics (Prometheus text), refreshed by its reconciler; the
    /// API's /metrics adds them to the control plane's.
    pub plane_metrics: std::sync::Mutex<String>,
}

impl ControlPlane {
    /// Starts gossip, opens the store and starts Raft (servers); does not serve yet.
    pub async fn open(cfg: AgentConfig) -> Result<Arc<ControlPlane>> {
        let client = http_client();
        std::fs::create_dir_all(cfg.data_dir.join("serf"))
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        let bump = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let ident = Ident {
            addr: cfg.advertise_gossip,
            bump,
            name: cfg.node_name.clone(),
            node_id: cfg.node_id,
            http: cfg.advertise_http,
            rpc: cfg.advertise_rpc,
            server: cfg.server,
            dc: cfg.datacenter.clone(),
        };
        let gossip = Gossip::start(GossipConfig {
            bind: cfg.gossip_bind,
            ident,
            join: cfg.join.clone(),
            keys: cfg.encrypt.iter().cloned().collect(),
            keyring_file: Some(cfg.data_dir.join("serf/local.keyring")),
            timing: cfg.gossip_timing.clone(),
        })
        .await?;
        if cfg.server && !gossip.has_keys() && !cfg.insecure_rpc {
            anyhow::bail!(
                "a server needs a cluster key to authenticate cluster RPC (Raft, join, keyring): set \"encrypt\" \
                 to a key from `ballast keygen`, or start with -dev-insecure-rpc to run without one (development \
                 only: anyone who reaches the RPC port could then speak Raft)"
            );
        }
        let (raft, store) = if cfg.server {
            let dir = cfg.data_dir.join("raft");
            let log = LogStore::open(&dir).with_context(|| format!("raft log in {}", dir.display()))?;
            let sm =
                StateMachine::open(&dir).with_context(|| format!("raft snapshot in {}", dir.display()))?;
            let view = sm.view();
            let rc = Arc::new(raft::lan_config(cfg.snapshot_threshold, &cfg.timing)?);
            let r = Raft::new(
                cfg.node_id,
                rc,
                Network { client: client.clone(), gossip: gossip.clone() },
                log,
                sm,
            )
            .await
            .context("starting raft")?;
            (Some(r), Some(view))
        } else {
            (None, None)
        };
        Ok(Arc::new(ControlPlane {
            lease: crate::scheduler::LeaseTiming { duration_ms: cfg.timing.lease_ms, ..Default::default() },
            leases: Default::default(),
            session_timers: Default::default(),
            cfg,
            raft,
            store,
            client,
            gossip,
            barrier_term: tokio::sync::Mutex::new(None),
            plane_metrics: std::sync::Mutex::new(String::new()),
        }))
    }

    pub fn self_info(&self) -> SelfInfo {
        let (in_cluster, leader) = match &self.raft {
            Some(r) => {
                let m = r.metrics().borrow().clone();
                let in_cluster = m.membership_config.membership().voter_ids().next().is_some();
                (in_cluster, self.leader_node())
            }
            None => (false, None),
        };
        SelfInfo {
            id: self.cfg.node_id,
            name: self.cfg.node_name.clone(),
            datacenter: self.cfg.datacenter.clone(),
            addr: self.cfg.advertise_http.to_string(),
            rpc: self.cfg.advertise_rpc.to_string(),
            server: self.cfg.server,
            bootstrap_expect: self.cfg.bootstrap_expect,
            in_cluster,
            leader,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.as_ref().is_some_and(|r| r.metrics().borrow().current_leader == Some(self.cfg.node_id))
    }

    /// The leader's API address, if this server knows one.
    pub fn leader_addr(&self) -> Option<String> {
        self.leader_node().map(|n| n.api)
    }

    /// The leader's addresses, if this server knows them.
    pub fn leader_node(&self) -> Option<Node> {
        let r = self.raft.as_ref()?;
        let m = r.metrics().borrow().clone();
        let id = m.current_leader?;
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Whether cluster RPC is served here: by servers (Raft), and by any agent holding a
    /// key (keyring changes reach every member).
    pub fn serves_rpc(&self) -> bool {
        self.cfg.server || self.gossip.has_keys()
    }

    /// Whether a cluster RPC request carrying `token` may be served: the token must come
    /// from a key of the ring; without any key, only under the development flag.
    pub fn rpc_allowed(&self, token: Option<&str>) -> bool {
        if self.gossip.has_keys() {
            self.gossip.rpc_token_valid(token)
        } else {
            self.cfg.insecure_rpc
        }
    }

    /// Makes the local state machine current for a linearizable read.
    ///
    /// openraft 0.9 lets a leader that restarts keep its leadership without appending a
    /// new entry, and then takes its read index from the commit index it restored —
    /// which may be behind what it had acknowledged before the crash (we keep that index
    /// only as a hint). Committing one no-op in the current term per process makes the
    /// commit index current; after that, openraft's read index is safe. The fault test
    /// (`control_faults.rs`) caught this as stale `?consistent` reads.
    pub async fn linearizable(&self) -> Result<(), String> {
        let raft = self.raft.as_ref().ok_or("not a server")?;
        let term = raft.metrics().borrow().current_term;
        {
            let mut done = self.barrier_term.lock().await;
            if *done != Some(term) {
                tokio::time::timeout(Duration::from_secs(10), raft.client_write(crate::state::Command::Noop))
                    .await
                    .map_err(|_| "timed out committing a read barrier".to_string())?
                    .map_err(|e| e.to_string())?;
                *done = Some(term);
            }
        }
        raft.ensure_linearizable().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// What a request with `token` (from its headers or query, see
    /// `api::request_token`) may do here (ACLs off: everything).
    pub fn authorizer(&self, token: Option<String>) -> crate::state::acl::Authorizer {
        let Some(acl) = &self.cfg.acl else { return crate::state::acl::Authorizer::management() };
        let token = token.or_else(|| acl.default_token.clone());
        if token.is_some() && token == acl.initial_management {
            return crate::state::acl::Authorizer::management();
        }
        match &self.store {
            Some(s) => s.read(|a| a.state.acl.authorizer(token.as_deref(), acl.default_allow)),
            None => crate::state::acl::Authorizer {
                management: false,
                rules: Vec::new(),
                default_allow: acl.default_allow,
            },
        }
    }

    /// Grants `device` a lease: only after confirming with a quorum that this server leads
    /// (a deposed leader grants nothing), recorded for the failover timing.
    pub async fn grant_lease(&self, device: &str) -> Result<LeaseGrant, String> {
        let raft = self.raft.as_ref().ok_or("not a server")?;
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        self.linearizable().await?;
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(self.cfg.node_id) {
            return Err("not the leader".into());
        }
        let term = m.current_term;
        // The replicated bound covers this lease before it is granted (a later leader with
        // a shorter `lb.lease` must still wait this one out).
        let bound = self.store.as_ref().map_or(0, |st| st.read(|a| a.state.lb.lease_bound_ms));
        if bound < self.lease.duration_ms {
            let write = crate::state::lb::LbWrite::LeaseBound { ms: self.lease.duration_ms };
            let at_ms = crate::wall::wall_ms();
            raft.client_write(crate::state::Command::Lb { write, at_ms }).await.map_err(|e| e.to_string())?;
        }
        // Still the leader of the same term after that write (it may have lost it meanwhile).
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(self.cfg.node_id) || m.current_term != term {
            return Err("not the leader".into());
        }
        // The newest change of VIP ownership, not Raft's last applied entry: the lease
        // fences ownership, and a device whose view lags the leader's by a heartbeat (a
        // follower learns a commit with the next one; a client agent reads a follower)
        // would otherwise be unable to use any lease granted after an unrelated write
        // (an event's phase, a key), and drop its VIPs if the leader then died.
        let commit_index = self.store.as_ref().map_or(0, |st| st.read(|a| a.state.lb.ownership_index()));
        let now = std::time::Instant::now();
        let mut book = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        book.note_term(m.current_term, now);
        book.grants.insert(device.to_string(), now);
        Ok(LeaseGrant { duration_ms: self.lease.duration_ms, commit_index })
    }

    /// The devices gossip shows alive (this one included).
    pub fn alive_devices(&self) -> std::collections::BTreeSet<String> {
        let mut alive: std::collections::BTreeSet<String> =
            self.gossip.alive().map(|m| m.ident.name.clone()).collect();
        alive.insert(self.cfg.node_name.clone());
        alive
    }

    /// Devices that may serve their VIPs now as far as this agent knows: alive in gossip
    /// and, by their last report, holding a lease (this agent's own flag is read live).
    pub fn serving_devices(&self) -> std::collections::BTreeSet<String> {
        let me = &self.cfg.node_name;
        let mut out: std::collections::BTreeSet<String> = self
            .gossip
            .alive()
            .filter(|m| m.ident.name != *me && m.load.as_ref().is_some_and(|l| l.lease_held))
            .map(|m| m.ident.name)
            .collect();
        if self.gossip.lease_held.load(std::sync::atomic::Ordering::Relaxed) {
            out.insert(me.clone());
        }
        out
    }

    /// The leader's cluster RPC address: from Raft on a server, from a server's
    /// self-description on a client agent.
    pub async fn leader_rpc(&self) -> Option<String> {
        if self.raft.is_some() {
            return self.leader_node().map(|n| n.rpc);
        }
        for m in self.servers_alive_first() {
            let token = self.gossip.rpc_token();
            let got: Result<SelfInfo, String> =
                get_json(&self.client, &m.ident.rpc.to_string(), "/v1/internal/self", token.as_deref()).await;
            if let Some(l) = got.ok().and_then(|i| i.leader) {
                return Some(l.rpc);
            }
        }
        None
    }

    /// This datacenter's servers gossip sees alive or suspect, the alive ones first: a
    /// suspect may have died, and a request to it waits for its timeout.
    pub fn servers_alive_first(&self) -> Vec<crate::gossip::MemberView> {
        let mut servers: Vec<_> =
            self.gossip.alive().filter(|m| m.ident.server && m.ident.dc == self.cfg.datacenter).collect();
        servers.sort_by_key(|m| m.status != crate::gossip::Status::Alive);
        servers
    }

    /// The API address of some alive server (for client agents, which hold no store).
    pub fn any_server(&self) -> Option<String> {
        self.servers_alive_first().first().map(|m| m.ident.http.to_string())
    }

    /// Whether a request forwarded to `addr` (an API address) still has a reason to be
    /// waited for: on a server, `addr` is still the leader it knows; on a client agent,
    /// gossip still sees that server alive. A forwarded request whose target died without
    /// a reset (its links down) would otherwise hang until its timeout.
    pub fn forward_target_holds(&self, addr: &str) -> bool {
        if self.raft.is_some() {
            // During an election no leader is known: the request may still be answered.
            return self.leader_addr().is_none_or(|l| l == addr);
        }
        self.gossip
            .members()
            .iter()
            .any(|m| m.status == crate::gossip::Status::Alive && m.ident.http.to_string() == addr)
    }

    /// Voters and learners with their API addresses.
    pub fn peers(&self) -> Vec<(NodeId, String, bool)> {
        let Some(r) = &self.raft else { return Vec::new() };
        let m = r.metrics().borrow().clone();
        let mem = m.membership_config.membership();
        let voters: Vec<NodeId> = mem.voter_ids().collect();
        mem.nodes().map(|(id, n)| (*id, n.api.clone(), voters.contains(id))).collect()
    }

    /// Bootstraps or joins, retrying every second until this server is in a cluster.
    pub async fn join_loop(self: Arc<Self>) {
        let Some(raft) = self.raft.clone() else { return };
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if self.self_info().in_cluster {
                // Already a member (restart, or bootstrapped): nothing to do.
                return;
            }
            let mut servers: BTreeMap<NodeId, SelfInfo> = BTreeMap::new();
            let me = self.self_info();
            servers.insert(me.id, me.clone());
            let mut existing_leader = None;
            let candidates: Vec<String> = self
                .gossip
                .alive()
                .filter(|m| {
                    m.ident.server && m.ident.dc == me.datacenter && m.ident.rpc.to_string() != me.rpc
                })
                .map(|m| m.ident.rpc.to_string())
                .collect();
            for addr in &candidates {
                let token = self.gossip.rpc_token();
                let got: Result<SelfInfo, String> =
                    get_json(&self.client, addr, "/v1/internal/self", token.as_deref()).await;
                match got {
                    // A reply claiming our own id is not another server.
                    Ok(info) if info.id == me.id => {}
                    Ok(info) if info.server && info.datacenter == me.datacenter => {
                        if info.in_cluster {
                            existing_leader = existing_leader.or(info.leader.clone());
                        }
                        servers.insert(info.id, info);
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("join {addr}: {e}"),
                }
            }
            if let Some(leader) = existing_leader.map(|n: Node| n.rpc) {
                let req = JoinRequest { id: me.id, node: Node { api: me.addr.clone(), rpc: me.rpc.clone() } };
                match post_json::<_, Result<(), String>>(
                    &self.client,
                    &leader,
                    "/v1/internal/join",
                    &req,
                    Duration::from_secs(30),
                    self.gossip.rpc_token().as_deref(),
                )
                .await
                {
                    Ok(Ok(())) => log::info!("joined the cluster through leader {leader}"),
                    Ok(Err(e)) | Err(e) => log::warn!("join through {leader}: {e}"),
                }
                continue;
            }
            let expect = self.cfg.bootstrap_expect as usize;
            if expect == 0 || servers.len() < expect {
                continue;
            }
            if servers.keys().next() != Some(&me.id) {
                // The lowest id bootstraps; the others wait to be replicated to.
                continue;
            }
            let members: BTreeMap<NodeId, Node> = servers
                .values()
                .take(expect.max(1))
                .map(|s| (s.id, Node { api: s.addr.clone(), rpc: s.rpc.clone() }))
                .collect();
            match raft.initialize(members.clone()).await {
                Ok(()) => {
                    log::info!("bootstrapped a cluster of {} servers: {:?}", members.len(), members.keys())
                }
                Err(e) => log::warn!("bootstrap: {e}"),
            }
        }
    }

    /// Leader side of a join: add as learner (catching up), then promote to voter.
    pub async fn add_server(&self, req: JoinRequest) -> Result<(), String> {
        let raft = self.raft.as_ref().ok_or("not a server")?;
        if self.peers().iter().any(|(id, _, voter)| *id == req.id && *voter) {
            return Ok(());
        }
        // Bounded: a server that never catches up must not pin this request forever.
        tokio::time::timeout(Duration::from_secs(60), raft.add_learner(req.id, req.node.clone(), true))
            .await
            .map_err(|_| "timed out adding the learner".to_string())?
            .map_err(|e| e.to_string())?;
        let add: std::collections::BTreeSet<NodeId> = [req.id].into();
        raft.change_membership(openraft::ChangeMembers::AddVoterIds(add), false)
            .await
            .map_err(|e| e.to_string())?;
        log::info!("server {} ({}) added as a voter", req.id, req.node);
        Ok(())
    }
}

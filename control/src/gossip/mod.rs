//! Gossip membership (SWIM, with foca) over UDP: who is in the cluster, alive, suspect,
//! failed or left, and each member's load. Packets are sealed with the key ring.
//!
//! Tasks: a receiver (UDP → open → driver), a driver that owns foca (input → foca →
//! sends, timers, notifications, member table), a timer scheduler (one heap, so timers
//! fire in order), a joiner (announces to `retry_join` until joined, then heals
//! partitions) and a load reporter (a custom broadcast every second).
pub mod keyring;
pub mod load;
pub mod member;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PeriodicParams, PostcardCodec, State, Timer};
use serde::Serialize;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use keyring::{KeyError, Keyring};
use load::Load;
use member::{Ident, Report, Reporter, Reports};

/// Timing of failure detection. Defaults suit a LAN: a dead member is suspected within
/// a probe round and declared down `suspect` later (about a second in small clusters).
#[derive(Debug, Clone)]
pub struct Timing {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    pub report_every: Duration,
    /// How often to announce to the join addresses until joined (Consul's `retry_interval`).
    pub join_retry: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(150),
            suspect_to_down: Duration::from_millis(600),
            report_every: Duration::from_secs(1),
            join_retry: Duration::from_secs(1),
        }
    }
}

pub struct GossipConfig {
    pub bind: SocketAddr,
    pub ident: Ident,
    /// `host:port` gossip addresses to join through.
    pub join: Vec<String>,
    /// Base64 keys, primary first (empty: no encryption).
    pub keys: Vec<String>,
    /// Where installed keys are kept across restarts (Consul's local.keyring).
    pub keyring_file: Option<PathBuf>,
    pub timing: Timing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    Alive,
    Suspect,
    Failed,
    Left,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub ident: Ident,
    pub status: Status,
    pub load: Option<Load>,
}

enum Input {
    Data(Vec<u8>),
    Timer(Timer<Ident>),
    Announce(SocketAddr),
    Broadcast(Vec<u8>),
    Leave(oneshot::Sender<()>),
}

/// A running gossip member.
pub struct Gossip {
    pub ident: Ident,
    tx: mpsc::UnboundedSender<Input>,
    members: watch::Receiver<Vec<MemberView>>,
    keyring: Arc<RwLock<Keyring>>,
    keyring_file: Option<PathBuf>,
    /// Packets dropped because no installed key opened them (or they were not sealed).
    pub dropped: Arc<AtomicU64>,
    /// Per-VIP connection rates, set by the agent, sent with each load report.
    pub vip_rates: Arc<std::sync::Mutex<Vec<load::VipRate>>>,
    /// The device's XDP packets and bytes per second through its VIPs (its agent's).
    pub xdp_rates: Arc<std::sync::Mutex<(u64, u64)>>,
    /// The L7 proxy's open sessions and requests per second (the agent's reconciler).
    pub l7_rates: Arc<std::sync::Mutex<(u64, u64)>>,
    /// Whether this device holds a lease now (the agent's reconciler sets it).
    pub lease_held: Arc<std::sync::atomic::AtomicBool>,
    /// The agent's L4 backend check results, sent with each load report.
    pub checks: Arc<std::sync::Mutex<Vec<load::CheckResult>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("keyring: {0}")]
    Key(#[from] KeyError),
    #[error("keyring file {path}: {msg}")]
    KeyringFile { path: String, msg: String },
}

fn load_keyring_file(path: &PathBuf) -> Result<Option<Vec<String>>, GossipError> {
    let err = |msg: String| GossipError::KeyringFile { path: path.display().to_string(), msg };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

impl Gossip {
    pub async fn start(cfg: GossipConfig) -> Result<Arc<Gossip>, GossipError> {
        // Keys installed at runtime win over the config's `encrypt`, as in Consul.
        let keys = match &cfg.keyring_file {
            Some(p) => load_keyring_file(p)?.unwrap_or(cfg.keys.clone()),
            None => cfg.keys.clone(),
        };
        let keyring = Arc::new(RwLock::new(Keyring::new(&keys)?));
        let socket = Arc::new(
            UdpSocket::bind(cfg.bind).await.map_err(|source| GossipError::Bind { addr: cfg.bind, source })?,
        );
        let (tx, rx) = mpsc::unbounded_channel();
        // Packets from the network wait in a bounded queue: a flood is dropped and
        // counted instead of growing memory.
        let (data_tx, data_rx) = mpsc::channel(1024);
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let me = MemberView { ident: cfg.ident.clone(), status: Status::Alive, load: None };
        let (members_tx, members) = watch::channel(vec![me]);
        let reports: Reports = Arc::new(Mutex::new(HashMap::new()));
        let dropped = Arc::new(AtomicU64::new(0));

        let t = &cfg.timing;
        let mut fc = foca::Config::new_lan(NonZeroU32::new(8).expect("non-zero"));
        fc.probe_period = t.probe_period;
        fc.probe_rtt = t.probe_rtt;
        fc.suspect_to_down_after = t.suspect_to_down;
        fc.max_packet_size = NonZeroUsize::new(1400 - keyring::OVERHEAD).expect("non-zero");
        fc.remove_down_after = Some(Duration::from_secs(120));
        fc.notify_down_members = true;
        fc.periodic_gossip = Some(PeriodicParams {
            frequency: Duration::from_millis(100),
            num_members: NonZeroUsize::new(3).expect("non-zero"),
        });
        fc.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        });
        // Down members are asked again now and then: a healed partition rejoins.
        fc.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        let rng: rand::rngs::StdRng = rand::make_rng();
        let foca = Foca::with_custom_broadcast(
            cfg.ident.clone(),
            fc,
            rng,
            PostcardCodec,
            Reporter { reports: reports.clone() },
        );

        tokio::spawn(drive(
            foca,
            rx,
            data_rx,
            socket.clone(),
            keyring.clone(),
            sched_tx,
            members_tx,
            reports,
        ));
        tokio::spawn(schedule(sched_rx, tx.clone()));
        tokio::spawn(receive(socket, keyring.clone(), data_tx, dropped.clone()));
        let g = Arc::new(Gossip {
            ident: cfg.ident.clone(),
            tx,
            members,
            keyring,
            keyring_file: cfg.keyring_file,
            dropped,
            vip_rates: Arc::default(),
            xdp_rates: Arc::default(),
            lease_held: Arc::default(),
            l7_rates: Arc::default(),
            checks: Arc::default(),
        });
        tokio::spawn(join(g.clone(), cfg.join, t.join_retry));
        tokio::spawn(report(g.clone(), t.report_every));
        Ok(g)
    }

    /// Every member this agent knows, itself included.
    pub fn members(&self) -> Vec<MemberView> {
        self.members.borrow().clone()
    }

    pub fn alive(&self) -> impl Iterator<Item = MemberView> {
        self.members().into_iter().filter(|m| m.status == Status::Alive || m.status == Status::Suspect)
    }

    /// Tells the cluster this agent is leaving (members show it as left, not failed).
    pub async fn leave(&self) {
        let r = Report {
            addr: self.ident.addr,
            bump: self.ident.bump,
            version: u64::MAX,
            load: Load::default(),
            leaving: true,
        };
        if let Ok(b) = postcard::to_stdvec(&r) {
            let _ = self.tx.send(Input::Broadcast(b));
        }
        // Let the broadcast go out with the next gossip round before saying goodbye.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (done, wait) = oneshot::channel();
        if self.tx.send(Input::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }

    pub fn rpc_token(&self) -> Option<String> {
        self.keyring.read().unwrap_or_else(|p| p.into_inner()).rpc_token()
    }

    pub fn rpc_token_valid(&self, token: Option<&str>) -> bool {
        self.keyring.read().unwrap_or_else(|p| p.into_inner()).rpc_token_valid(token)
    }

    /// Whether the ring holds a key (gossip is encrypted, cluster RPC authenticated).
    pub fn has_keys(&self) -> bool {
        self.primary_key().is_some()
    }

    pub fn keys(&self) -> Vec<String> {
        self.keyring.read().unwrap_or_else(|p| p.into_inner()).list()
    }

    pub fn primary_key(&self) -> Option<String> {
        self.keyring.read().unwrap_or_else(|p| p.into_inner()).primary()
    }

    /// `install`, `use` or `remove` a key on this agent (and remember it).
    /// The change is kept on disk before it takes effect; a failed write changes nothing.
    pub fn keyring_op(&self, op: &str, key: &str) -> Result<(), KeyError> {
        let mut k = self.keyring.write().unwrap_or_else(|p| p.into_inner());
        if !k.enabled() && op != "install" {
            return Err(KeyError::Disabled);
        }
        let mut next = Keyring::new(&k.list())?;
        match op {
            "install" => next.install(key)?,
            "use" => next.use_key(key)?,
            "remove" => next.remove(key)?,
            _ => return Err(KeyError::NotInstalled),
        }
        let keys = next.list();
        if let Some(p) = &self.keyring_file {
            let bytes = serde_json::to_vec(&keys).unwrap_or_default();
            crate::files::replace(p, &bytes, true)
                .map_err(|e| KeyError::Persist(format!("{}: {e}", p.display())))?;
        }
        *k = next;
        log::info!("keyring: {op} done, {} key(s) installed", keys.len());
        Ok(())
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    keyring: Arc<RwLock<Keyring>>,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                log::debug!("gossip recv: {e}");
                continue;
            }
        };
        let opened = keyring.read().unwrap_or_else(|p| p.into_inner()).open(&buf[..n]);
        match opened {
            Ok(plain) => match tx.try_send(plain) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Err(why) => {
                let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first and then every 100th: a misconfigured peer sends a lot.
                if total == 1 || total % 100 == 0 {
                    log::warn!("gossip packet from {from} dropped: {why} ({total} dropped so far)");
                }
            }
        }
    }
}

async fn schedule(
    mut rx: mpsc::UnboundedReceiver<(Instant, Timer<Ident>)>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Timer<Ident>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|Reverse((at, _, _))| *at);
        tokio::select! {
            m = rx.recv() => match m {
                Some((at, t)) => {
                    seq += 1;
                    heap.push(Reverse((at, seq, t)));
                }
                None => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    let Some(Reverse((_, _, t))) = heap.pop() else { break };
                    if tx.send(Input::Timer(t)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

type Member = Foca<Ident, PostcardCodec, rand::rngs::StdRng, Reporter>;

#[allow(clippy::too_many_arguments)]
async fn drive(
    mut foca: Member,
    mut rx: mpsc::UnboundedReceiver<Input>,
    mut data: mpsc::Receiver<Vec<u8>>,
    socket: Arc<UdpSocket>,
    keyring: Arc<RwLock<Keyring>>,
    sched: mpsc::UnboundedSender<(Instant, Timer<Ident>)>,
    members: watch::Sender<Vec<MemberView>>,
    reports: Reports,
) {
    let mut rt = AccumulatingRuntime::new();
    let mut leaving = false;
    loop {
        // Own inputs (timers, broadcasts, leave) first: a packet flood cannot starve them.
        let input = tokio::select! {
            biased;
            i = rx.recv() => match i { Some(i) => i, None => return },
            d = data.recv() => match d { Some(d) => Input::Data(d), None => return },
        };
        let mut done = None;
        let res = match input {
            Input::Data(d) => foca.handle_data(&d, &mut rt),
            Input::Timer(t) => foca.handle_timer(t, &mut rt),
            Input::Announce(addr) => foca.announce(Ident::placeholder(addr), &mut rt),
            Input::Broadcast(b) => foca.add_broadcast(&b).map(|_| ()),
            Input::Leave(d) => {
                done = Some(d);
                leaving = true;
                foca.leave_cluster(&mut rt)
            }
        };
        if let Err(e) = res {
            // Malformed or stale packets are expected on a network: note and go on.
            log::debug!("gossip: {e}");
        }
        while let Some((to, data)) = rt.to_send() {
            let pkt = keyring.read().unwrap_or_else(|p| p.into_inner()).seal(&data);
            if let Err(e) = socket.send_to(&pkt, to.addr).await {
                log::debug!("gossip send to {}: {e}", to.addr);
            }
        }
        let now = Instant::now();
        while let Some((after, t)) = rt.to_schedule() {
            let at = now.checked_add(after).unwrap_or(now + Duration::from_secs(3600));
            let _ = sched.send((at, t));
        }
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    log::info!("gossip: member {} ({}) is alive", id.name, id.addr)
                }
                OwnedNotification::MemberDown(id) => {
                    log::warn!("gossip: member {} ({}) is down", id.name, id.addr)
                }
                OwnedNotification::Rejoin(id) => {
                    log::info!("gossip: rejoined as {} (bump {})", id.addr, id.bump)
                }
                OwnedNotification::Defunct if leaving => {}
                OwnedNotification::Defunct => {
                    log::warn!("gossip: declared down by the cluster; rejoining");
                    let _ = foca.reuse_down_identity();
                }
                _ => {}
            }
        }
        publish(&foca, &members, &reports);
        if let Some(d) = done {
            let _ = d.send(());
        }
    }
}

fn publish(foca: &Member, members: &watch::Sender<Vec<MemberView>>, reports: &Reports) {
    let me = foca.identity().clone();
    let reports = {
        let mut all = reports.lock().unwrap_or_else(|p| p.into_inner());
        // Reports only for addresses foca knows: broadcasts cannot grow the map forever.
        let known: std::collections::HashSet<SocketAddr> =
            foca.iter_membership_state().map(|m| m.id().addr).chain([me.addr]).collect();
        all.retain(|a, _| known.contains(a));
        all.clone()
    };
    // Newest identity per address (a restarted member replaces its old self).
    let mut by_addr: HashMap<SocketAddr, (Ident, State)> = HashMap::new();
    for m in foca.iter_membership_state() {
        let id = m.id().clone();
        if id.addr == me.addr || id.name.is_empty() {
            continue;
        }
        let newer = by_addr.get(&id.addr).is_none_or(|(o, _)| id.bump > o.bump);
        if newer {
            by_addr.insert(id.addr, (id, m.state()));
        }
    }
    let mut out: Vec<MemberView> = by_addr
        .into_values()
        .map(|(ident, state)| {
            let report = reports.get(&ident.addr).filter(|r| r.bump == ident.bump);
            let status = match state {
                State::Alive => Status::Alive,
                State::Suspect => Status::Suspect,
                State::Down if report.is_some_and(|r| r.leaving) => Status::Left,
                State::Down => Status::Failed,
            };
            MemberView { load: report.map(|r| r.load.clone()), ident, status }
        })
        .collect();
    let my_load = reports.get(&me.addr).map(|r| r.load.clone());
    out.push(MemberView { ident: me, status: Status::Alive, load: my_load });
    out.sort_by(|a, b| a.ident.name.cmp(&b.ident.name));
    members.send_replace(out);
}

async fn resolve(addrs: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in addrs {
        match tokio::net::lookup_host(a.as_str()).await {
            Ok(found) => out.extend(found.filter(|s| s.is_ipv4()).take(1)),
            Err(e) => log::debug!("retry_join {a}: {e}"),
        }
    }
    out
}

/// Announces to the join addresses until some member answers, then every 30 s to join
/// addresses that are not alive members (a partition that healed).
async fn join(g: Arc<Gossip>, addrs: Vec<String>, retry: Duration) {
    if addrs.is_empty() {
        return;
    }
    let mut joined = false;
    loop {
        let targets: Vec<SocketAddr> =
            resolve(&addrs).await.into_iter().filter(|a| *a != g.ident.addr).collect();
        let alive: Vec<SocketAddr> = g.alive().map(|m| m.ident.addr).filter(|a| *a != g.ident.addr).collect();
        if !alive.is_empty() && !joined {
            log::info!("gossip: joined, {} other member(s)", alive.len());
            joined = true;
        }
        for t in targets.iter().filter(|t| !alive.contains(t)) {
            let _ = g.tx.send(Input::Announce(*t));
        }
        tokio::time::sleep(if joined { Duration::from_secs(30) } else { retry }).await;
        if joined && g.alive().count() <= 1 {
            joined = false;
        }
    }
}

async fn report(g: Arc<Gossip>, every: Duration) {
    let mut sampler = load::Sampler::default();
    let mut version = 0u64;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        version += 1;
        let mut load = sampler.sample();
        load.vips = g.vip_rates.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (load.xdp_pps, load.xdp_bps) = *g.xdp_rates.lock().unwrap_or_else(|p| p.into_inner());
        load.lease_held = g.lease_held.load(std::sync::atomic::Ordering::Relaxed);
        (load.l7_sessions, load.l7_rps) = *g.l7_rates.lock().unwrap_or_else(|p| p.into_inner());
        load.vips.sort_by(|a, b| b.conn_rate.total_cmp(&a.conn_rate));
        load.vips.truncate(load::MAX_VIP_RATES);
        load.checks = g.checks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Failing ones first: if there are too many to carry, those matter.
        load.checks.sort_by(|a, b| (a.up, &a.backend).cmp(&(b.up, &b.backend)));
        load.checks.truncate(load::MAX_CHECKS);
        let r = Report { addr: g.ident.addr, bump: g.ident.bump, version, load, leaving: false };
        match postcard::to_stdvec(&r) {
            Ok(b) => {
                if g.tx.send(Input::Broadcast(b)).is_err() {
                    return;
                }
            }
            Err(e) => log::warn!("load report: {e}"),
        }
    }
}

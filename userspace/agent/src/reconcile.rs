//! Makes this device's addresses, XDP maps and L7 listeners match its desired state, and
//! keeps them so: on every change of the replicated state or of the lease, when the
//! lease would lapse, and every 30 s in full (anti-entropy). Only the difference is
//! applied, in order: a VIP gained gets its maps and listeners, then its address and
//! announcements; a VIP lost loses its address (and any announcement still to come)
//! first, then its maps and listeners.
//!
//! Hand-over: a VIP moved here from a failed device is taken at once (the leader moved it
//! only once that device's lease must have lapsed). One moved from a live device (drain,
//! an operator's assignment) is taken once that device says it released it, or once a
//! full lease period has passed since this device saw the move: any lease the old owner
//! still holds was granted before the move (and lapses within that period), or after it
//! (and then only covers a state in which the VIP has moved).
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use ballast_control::{
    gossip::Status,
    plane::ControlPlane,
    state::lb::{EventKind, LbState},
};
use ballast_l4::{
    config::L4Config,
    dataplane::{self, AttachMode, Dataplane},
};
use ballast_proxy::Proxy;
use tokio::{sync::watch, time::Instant};

use crate::{addresses::Addresses, announce, desired, lease::Lease};

/// The replicated LB state as this device last saw it, with the log index applied.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub lb: LbState,
    pub applied: u64,
}

const RESYNC: Duration = Duration::from_secs(30);

/// How long a graceful hand-over lets the VIP's connections finish requests in flight
/// before they end and the new owner may take the VIP.
const HANDOVER_GRACE: Duration = Duration::from_millis(200);

/// Ends the TCP connections whose local address is `vip` (the kernel's SOCK_DESTROY,
/// through `ss -K`), once none is left or `grace` has passed. Listening sockets stay.
async fn end_connections(vip: IpAddr, grace: Duration) {
    let src = vip.to_string();
    let connected = |kill: bool| {
        let mut c = tokio::process::Command::new("ss");
        c.args(if kill { ["-K", "-H", "-t", "-n"] } else { ["-H", "-t", "-n", "-n"] });
        c.args(["state", "connected", "src", &src]);
        c
    };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match connected(false).output().await {
            Ok(o) if o.stdout.iter().filter(|b| **b == b'\n').count() == 0 => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                log::warn!("listing {vip}'s connections (ss): {e}");
                break;
            }
        }
    }
    match connected(true).output().await {
        Ok(o) => {
            let n = o.stdout.iter().filter(|b| **b == b'\n').count();
            if n > 0 {
                log::info!("{vip} released: {n} connection(s) ended");
            }
        }
        Err(e) => log::warn!("ending {vip}'s connections (ss -K): {e}"),
    }
}

/// The address and the `port/protocol` of a VIP as the XDP stats name it
/// (`198.51.100.150:80/tcp`, `[2001:db8::1]:443/udp`).
fn stats_vip(s: &str) -> Option<(IpAddr, String)> {
    let (sock, proto) = s.rsplit_once('/')?;
    let sock: std::net::SocketAddr = sock.parse().ok()?;
    Some((sock.ip(), format!("{}/{proto}", sock.port())))
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct Reconciler {
    plane: Arc<ControlPlane>,
    me: String,
    addresses: Option<Addresses>,
    dataplane: Option<Dataplane>,
    proxy: Option<Arc<Proxy>>,
    applied_l4: Option<String>,
    applied_l7: Option<Option<String>>,
    /// VIPs whose address this device holds.
    held: BTreeSet<IpAddr>,
    /// NAT gateways (`desired::gateways`) on the private interface.
    gateways: Option<Addresses>,
    /// When each wanted gateway not yet held was first seen wanted.
    gateway_seen: HashMap<IpAddr, Instant>,
    /// When the kernel drops the first of the held addresses unless their lifetime is
    /// renewed (pushed forward with the lease: see `addresses`).
    kernel_until: Option<Instant>,
    /// When this device first saw each (VIP, epoch) assigned to it.
    first_seen: HashMap<(IpAddr, u64), Instant>,
    /// When the lease of this agent's previous run ends (same boot, still ahead).
    predecessor_until: Option<Instant>,
    /// The VIPs whose repeated announcements may still go out.
    announcing: HashMap<IpAddr, Arc<std::sync::Mutex<bool>>>,
    /// VIPs gained and not yet served: their traffic count when the address went up, and
    /// when that was (the wait for a first packet is bounded).
    unserved: HashMap<IpAddr, (u64, Instant)>,
    /// The connection counts of the served VIPs at the last load report, and when.
    rates_at: (Instant, HashMap<IpAddr, u64>),
    /// XDP packets and bytes through the VIPs at the last report.
    xdp_at: (u64, u64),
    /// The L7 proxy's total requests at the last report.
    l7_at: u64,
    /// Health checks of the served VIPs' L4 backends, and those failing.
    checker: crate::health::Checker,
    down: watch::Receiver<BTreeSet<crate::desired::Check>>,
}

/// The kernel lifetime of a VIP address: what is left of the lease, in whole seconds
/// rounded up (at least 1).
fn lifetime_s(until: Option<Instant>, now: Instant) -> u32 {
    let left = until.map(|u| u.saturating_duration_since(now)).unwrap_or_default();
    (left.as_millis().div_ceil(1000) as u32).max(1)
}

/// How often the served VIPs' connection rates go to gossip (the load reports' period).
const RATES_EVERY: Duration = Duration::from_secs(1);

/// How often a gained VIP's counters are read until its first packet, and for how long.
const FIRST_PACKET_POLL: Duration = Duration::from_millis(20);
const FIRST_PACKET_WAIT: Duration = Duration::from_secs(30);

impl Reconciler {
    pub fn new(plane: Arc<ControlPlane>) -> Reconciler {
        let me = plane.cfg.node_name.clone();
        let predecessor_until = crate::lease::predecessor_until(
            &crate::lease::record_path(&plane),
            Duration::from_millis(plane.cfg.timing.lease_ms),
        );
        let (checker, down) = crate::health::Checker::new();
        Reconciler {
            checker,
            down,
            plane,
            me,
            addresses: None,
            gateways: None,
            gateway_seen: HashMap::new(),
            dataplane: None,
            proxy: None,
            applied_l4: None,
            applied_l7: None,
            held: BTreeSet::new(),
            kernel_until: None,
            first_seen: HashMap::new(),
            predecessor_until,
            announcing: HashMap::new(),
            unserved: HashMap::new(),
            rates_at: (Instant::now(), HashMap::new()),
            xdp_at: (0, 0),
            l7_at: 0,
        }
    }

    /// Runs until `stop` turns true; then withdraws every VIP.
    pub async fn run(
        mut self,
        mut state: watch::Receiver<View>,
        mut lease: watch::Receiver<Option<Lease>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_full = Instant::now();
        // The newest lease this device's state has caught up with. A newer grant names a
        // commit index not applied yet (a client agent reading through blocking queries
        // lags the leader): until it is, the previous lease still covers what the state
        // says, and dropping every VIP for that moment would be a flap, not fencing.
        let mut usable: Option<Lease> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let view = state.borrow_and_update().clone();
            let newest = *lease.borrow_and_update();
            let now = Instant::now();
            usable = crate::lease::usable(usable, newest, now, view.applied);
            if newest.is_some_and(|n| n.grant.commit_index > view.applied) {
                log::debug!("lease at index {} not usable yet: the state seen is at {}", newest.map_or(0, |n| n.grant.commit_index), view.applied);
            }
            let l = usable;
            let until = l.map(|l| l.until());
            // Gossiped: other agents' DNS answers this device's VIPs only while it is set.
            self.plane.gossip.lease_held.store(until.is_some_and(|u| u > now), std::sync::atomic::Ordering::Relaxed);
            let full = now.duration_since(last_full) >= RESYNC;
            if full {
                last_full = now;
                self.applied_l4 = None;
                self.applied_l7 = None;
            }
            let pending = match self.step(&view.lb, until, full).await {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("reconcile: {e:#}");
                    true
                }
            };
            let mut wake = now + RESYNC;
            if let Some(l) = l {
                wake = wake.min(l.until());
            }
            if pending {
                wake = wake.min(now + Duration::from_millis(100));
            }
            self.check_first_packets(&view.lb);
            if now.duration_since(self.rates_at.0) >= RATES_EVERY {
                self.report_rates();
            }
            wake = wake.min(self.rates_at.0 + RATES_EVERY);
            if !self.unserved.is_empty() {
                wake = wake.min(now + FIRST_PACKET_POLL);
            }
            // The predecessor's addresses go the moment its lease ends, not a poll later.
            if let Some(u) = self.predecessor_until.filter(|u| *u > now) {
                wake = wake.min(u);
            }
            tokio::select! {
                _ = state.changed() => {}
                _ = lease.changed() => {}
                _ = stop.changed() => {}
                _ = self.down.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        // Withdraw everything: with the last state seen (it names this device's interface,
        // which opens the addresses even if no VIP was served in this run).
        let last = state.borrow().lb.clone();
        if let Err(e) = self.step(&last, None, true).await {
            log::warn!("withdrawing the VIPs: {e:#}");
        }
        if let Some(p) = &self.proxy {
            p.stop();
        }
    }

    /// Whether a VIP assigned here may be taken now (see the module's hand-over rule).
    fn may_take(&mut self, lb: &LbState, vip: IpAddr, epoch: u64, now: Instant) -> bool {
        let seen = *self.first_seen.entry((vip, epoch)).or_insert(now);
        let wait = Duration::from_millis(self.plane.lease.bounded(lb.lease_bound_ms).reassign_after_ms());
        let Some(e) = lb
            .events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::VipMoved && e.vip == Some(vip) && e.epoch == Some(epoch))
        else {
            // First assigned here. An address another group had (deleted, or a scale-out
            // VIP scaled in) may still be held by a device whose view lags: wait as for a
            // move without a release. Otherwise nobody held it.
            let reused =
                lb.events.iter().any(|e| e.vip == Some(vip) && matches!(e.kind, EventKind::VipReleased | EventKind::ScaledIn));
            return !reused || now.duration_since(seen) >= wait;
        };
        let failed = e.reason.as_deref().is_some_and(|r| r.ends_with(" failed"));
        failed || e.phases.contains_key("released") || now.duration_since(seen) >= wait
    }

    /// One reconciliation; true when something waits (a hand-over) and it should run
    /// again soon.
    /// `until`: when the lease that lets this device serve ends (None: it holds none).
    async fn step(&mut self, lb: &LbState, until: Option<Instant>, full: bool) -> Result<bool> {
        let want = desired::desired(lb, &self.me, until.is_some());
        let now = Instant::now();
        let mut pending = false;
        let mut serve = BTreeSet::new();
        for (vip, s) in &want.vips {
            if self.held.contains(vip) || self.may_take(lb, *vip, s.epoch, now) {
                serve.insert(*vip);
            } else {
                pending = true;
            }
        }
        self.first_seen.retain(|(v, e), _| want.vips.get(v).is_some_and(|s| s.epoch == *e));
        if self.addresses.is_none() {
            // Until this run's first lease, what a previous run holds stays (a restart
            // does not flap the VIPs), but only while that run's lease lasts: after, its
            // VIPs may have moved, and this run must not answer for them.
            if serve.is_empty() && !full && self.predecessor_until.is_some_and(|u| now < u) {
                return Ok(true);
            }
            let Some(iface) =
                lb.devices.get(&self.me).map(|d| d.spec.public.iface.clone()).filter(|i| !i.is_empty())
            else {
                return Ok(pending);
            };
            let record = self.plane.cfg.data_dir.join("vips.held");
            let mut a = Addresses::open(&iface, record).await?;
            // What a previous run left and nobody wants now goes.
            for stale in a.held().clone() {
                if !serve.contains(&stale) {
                    a.remove(stale).await?;
                }
            }
            self.held = a.held().clone();
            self.addresses = Some(a);
        }
        let removed: Vec<IpAddr> = self.held.difference(&serve).copied().collect();
        let added: Vec<IpAddr> = serve.difference(&self.held).copied().collect();
        // The address is the switch. A VIP lost loses it first: from then on a client's
        // SYN is not answered here (no reset from a listener being closed), and its next
        // try reaches the new owner once that one has announced the VIP. A VIP gained
        // gets its maps and listeners first (they bind with transparent) and its address
        // last, so the first SYN the announcement draws finds them ready.
        if !removed.is_empty() {
            let keep: BTreeSet<IpAddr> = self.held.intersection(&serve).copied().collect();
            if let Err(e) = self.remove_gateways(lb, &keep).await {
                log::warn!("NAT gateways: {e:#}");
            }
        }
        for vip in removed {
            self.stop_announcing(vip);
            self.addresses.as_mut().expect("opened").remove(vip).await?;
            // Nothing may leave this device from the VIP once it is released (a socket
            // bound with transparent can still send): its connections end before the
            // release is recorded, at once when the lease lapsed (another device may take
            // the VIP), after a short grace for requests in flight in a graceful hand-over
            // (never past the lease). The new owner waits for the release, so the grace is
            // short: a second, as it was, held every new client off for that second
            // whenever one connection hung (its client's packets no longer reach here).
            let grace = until.map_or(Duration::ZERO, |u| HANDOVER_GRACE.min(u.saturating_duration_since(Instant::now())));
            end_connections(vip, grace).await;
            self.held.remove(&vip);
            self.unserved.remove(&vip);
            log::info!("released {vip}");
            self.phase(lb, vip, false, "released");
        }
        if !added.is_empty() {
            self.configure(lb, &serve).await;
        }
        for vip in added {
            // Configuring the planes may have taken a while (loading XDP, starting the
            // proxy): the lease must still hold when the address appears.
            if !until.is_some_and(|u| Instant::now() < u) {
                return Ok(true);
            }
            let iface = self.add_address(false, vip, until).await?;
            self.held.insert(vip);
            let served = self.counted(vip, self.l4_stats().as_ref(), |v| v.packets);
            self.unserved.insert(vip, (served, Instant::now()));
            self.phase(lb, vip, true, "address_added");
            match self.announce(iface.clone(), vip) {
                Ok(()) => self.phase(lb, vip, true, "arp_sent"),
                Err(e) => log::warn!("announcing {vip} on {iface}: {e}"),
            }
            log::info!("serving {vip} on {iface}");
        }
        self.configure(lb, &serve).await;
        self.renew_lifetimes(until).await?;
        // A gateway's trouble (no private interface, say) must not stop the VIPs' renewals.
        match self.sync_gateways(lb, until, now).await {
            Ok(waits) => pending |= waits,
            Err(e) => log::warn!("NAT gateways: {e:#}"),
        }
        Ok(pending)
    }

    /// Adds `addr` (a VIP, or a NAT gateway if `gateway`) with the lease's lifetime;
    /// returns its interface.
    async fn add_address(&mut self, gateway: bool, addr: IpAddr, until: Option<Instant>) -> Result<String> {
        let a = if gateway { self.gateways.as_mut() } else { self.addresses.as_mut() }.expect("opened");
        let secs = lifetime_s(until, Instant::now());
        a.add(addr, secs).await?;
        let iface = a.iface.clone();
        self.note_kernel_end(secs);
        Ok(iface)
    }

    /// Announces `addr` on `iface` now, and again over the next seconds.
    fn announce(&mut self, iface: String, addr: IpAddr) -> std::io::Result<()> {
        let first = announce::announce(&iface, addr);
        self.announce_again(iface, addr);
        first
    }

    /// More announcements of `addr` over the next seconds, for caches that missed the
    /// first, and none once it is released (the flag is cleared under the lock before the
    /// address goes): a late one would pull traffic from the new owner.
    fn announce_again(&mut self, iface: String, addr: IpAddr) {
        let live = Arc::new(std::sync::Mutex::new(true));
        self.announcing.insert(addr, live.clone());
        tokio::spawn(async move {
            for ms in [50u64, 250, 500, 1000, 2000] {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let still = live.lock().unwrap_or_else(|p| p.into_inner());
                if !*still {
                    return;
                }
                let _ = announce::announce(&iface, addr);
            }
        });
    }

    /// An address just added ends in `secs` unless renewed.
    fn note_kernel_end(&mut self, secs: u32) {
        let end = Instant::now() + Duration::from_secs(secs.into());
        self.kernel_until = Some(self.kernel_until.map_or(end, |k| k.min(end)));
    }

    fn stop_announcing(&mut self, addr: IpAddr) {
        if let Some(live) = self.announcing.remove(&addr) {
            *live.lock().unwrap_or_else(|p| p.into_inner()) = false;
        }
    }

    /// The private interface's addresses of ballast's (NAT gateways), opened once this
    /// device wants a gateway or a previous run left some (its record exists).
    async fn gateway_addresses(&mut self, lb: &LbState, wanted: bool) -> Result<Option<&mut Addresses>> {
        if self.gateways.is_none() {
            let record = self.plane.cfg.data_dir.join("gateways.held");
            if !wanted && !record.exists() {
                return Ok(None);
            }
            let iface = lb
                .devices
                .get(&self.me)
                .map(|d| d.spec.private.iface.clone())
                .filter(|i| !i.is_empty())
                .context("a NAT gateway needs this device's private interface")?;
            self.gateways = Some(Addresses::open(&iface, record).await?);
        }
        Ok(self.gateways.as_mut())
    }

    /// Removes the gateways that the VIPs staying here (`keep`) do not need: before those
    /// VIPs' addresses go and their release is recorded, so that the device taking one
    /// over never finds its gateway still held here.
    async fn remove_gateways(&mut self, lb: &LbState, keep: &BTreeSet<IpAddr>) -> Result<()> {
        let want = desired::gateways(lb, keep);
        let Some(a) = self.gateway_addresses(lb, false).await? else { return Ok(()) };
        let gone: Vec<IpAddr> = a.held().difference(&want).copied().collect();
        for gw in gone {
            self.stop_announcing(gw);
            let a = self.gateways.as_mut().expect("opened");
            a.remove(gw).await?;
            log::info!("released gateway {gw}");
        }
        Ok(())
    }

    /// The gateways of the VIPs held: those nobody wants go (a previous run's, a group's
    /// old one), the others are added and announced as VIPs are, under the lease. A
    /// gateway another group gave up is taken as a reused VIP is: after a lease, since a
    /// device whose view lags may still hold it. True when one waits.
    async fn sync_gateways(&mut self, lb: &LbState, until: Option<Instant>, now: Instant) -> Result<bool> {
        let want = desired::gateways(lb, &self.held);
        self.gateway_seen.retain(|g, _| want.contains(g));
        self.remove_gateways(lb, &self.held.clone()).await?;
        let Some(a) = self.gateway_addresses(lb, !want.is_empty()).await? else { return Ok(false) };
        let new: Vec<IpAddr> = want.difference(a.held()).copied().collect();
        let wait = Duration::from_millis(self.plane.lease.bounded(lb.lease_bound_ms).reassign_after_ms());
        let mut waits = false;
        for gw in new {
            let seen = *self.gateway_seen.entry(gw).or_insert(now);
            let reused = lb.events.iter().any(|e| e.vip == Some(gw) && e.kind == EventKind::VipReleased);
            if reused && now.duration_since(seen) < wait {
                waits = true;
                continue;
            }
            if !until.is_some_and(|u| Instant::now() < u) {
                return Ok(true);
            }
            let iface = self.add_address(true, gw, until).await?;
            if let Err(e) = self.announce(iface.clone(), gw) {
                log::warn!("announcing gateway {gw} on {iface}: {e}");
            }
            log::info!("serving gateway {gw} on {iface}");
        }
        Ok(waits)
    }

    /// Pushes the held addresses' kernel lifetime forward once the lease reaches past it.
    /// The kernel counts whole seconds, so an address ends less than a second after the
    /// lease. (Waiting for the lease to pass the kernel's end by a second, as this did,
    /// let every address lapse for 300 ms of each 1.3 s with a lease under a second.)
    async fn renew_lifetimes(&mut self, until: Option<Instant>) -> Result<()> {
        let (Some(until), Some(a)) = (until, self.addresses.as_mut()) else { return Ok(()) };
        if self.held.is_empty() {
            self.kernel_until = None;
            return Ok(());
        }
        if self.kernel_until.is_some_and(|k| until <= k) {
            return Ok(());
        }
        let now = Instant::now();
        let secs = lifetime_s(Some(until), now);
        for vip in self.held.clone() {
            a.add(vip, secs).await?;
        }
        if let Some(g) = self.gateways.as_mut() {
            for gw in g.held().clone() {
                g.add(gw, secs).await?;
            }
        }
        self.kernel_until = Some(now + Duration::from_secs(secs.into()));
        Ok(())
    }

    /// The L4 maps and the L7 listeners for `vips`, changed only where they differ.
    async fn configure(&mut self, lb: &LbState, vips: &BTreeSet<IpAddr>) {
        self.checker.set(&desired::l4_checks(lb, &self.me, vips));
        let down = self.down.borrow_and_update().clone();
        let d = desired::for_vips(lb, &self.me, vips, &down);
        if self.applied_l4.as_deref() != Some(d.l4.as_str()) {
            match self.apply_l4(lb, &d.l4) {
                Ok(()) => self.applied_l4 = Some(d.l4),
                Err(e) => log::warn!("L4: {e:#}"),
            }
        }
        if self.applied_l7.as_ref() != Some(&d.l7) {
            match self.apply_l7(d.l7.as_deref()).await {
                Ok(()) => self.applied_l7 = Some(d.l7),
                Err(e) => log::warn!("L7: {e:#}"),
            }
        }
    }

    fn apply_l4(&mut self, lb: &LbState, toml: &str) -> Result<()> {
        let cfg = L4Config::parse(toml).context("the L4 configuration")?;
        if self.dataplane.is_none() {
            if cfg.vips.is_empty() {
                return Ok(());
            }
            let dev = lb.devices.get(&self.me).context("this device is not declared")?;
            let mut dp = Dataplane::load(&cfg.device, 2).context("loading the XDP programs")?;
            let ifaces: Vec<String> = [&dev.spec.public.iface, &dev.spec.private.iface]
                .into_iter()
                .filter(|i| !i.is_empty())
                .cloned()
                .collect();
            let modes = dataplane::attach_all(&mut dp.ebpf, dataplane::PROG_LB, &ifaces, AttachMode::Auto)
                .with_context(|| format!("attaching XDP to {}", ifaces.join(", ")))?;
            for (iface, how) in ifaces.iter().zip(modes) {
                log::info!("ballast_lb attached to {iface} ({how} mode)");
            }
            dataplane::watch_redirects(&mut dp.ebpf, &ifaces).context("watching failed redirects")?;
            self.dataplane = Some(dp);
        }
        let dp = self.dataplane.as_mut().expect("loaded");
        let summary = dp.apply(cfg).context("programming the maps")?;
        ballast_l4::neighbours::warm(dp.backend_addrs());
        log::info!("L4 maps: {summary:?}");
        Ok(())
    }

    async fn apply_l7(&mut self, cfg: Option<&str>) -> Result<()> {
        let text = cfg.unwrap_or("");
        let parsed = ballast_l7::haproxy::parse("agent.cfg", text);
        let config = parsed.config.with_context(|| {
            let alerts: Vec<String> = parsed.diags.iter().map(|d| d.to_string()).collect();
            format!("the L7 configuration: {}", alerts.join("; "))
        })?;
        match &self.proxy {
            Some(p) => p.reload(config).await.context("reloading the proxy")?,
            None if cfg.is_none() => {}
            None => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                self.proxy = Some(Proxy::start(config, threads).await.context("starting the proxy")?);
            }
        }
        Ok(())
    }

    /// A counter of `vip` summed over this device's planes: `xdp`'s field of its XDP
    /// entries (L4, from `l4`, read once by the caller) and the sessions of listeners
    /// bound to it (L7).
    fn counted(
        &self,
        vip: IpAddr,
        l4: Option<&ballast_l4::dataplane::StatsReport>,
        xdp: fn(&ballast_l4::dataplane::VipStats) -> u64,
    ) -> u64 {
        let mut n = 0;
        if let Some(stats) = l4 {
            let ours = stats.vips.iter().filter(|v| stats_vip(&v.vip).is_some_and(|(ip, _)| ip == vip));
            n += ours.map(xdp).sum::<u64>();
        }
        if let Some(p) = &self.proxy {
            let shared = p.current();
            let ours = shared.frontends.iter().filter(|f| f.cfg.binds.iter().any(|b| b.addr.ip() == vip));
            n += ours.map(|f| f.counters.stot.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>();
        }
        n
    }

    fn l4_stats(&self) -> Option<ballast_l4::dataplane::StatsReport> {
        self.dataplane.as_ref().and_then(|d| d.stats().ok())
    }

    /// Puts each held VIP's new connections per second since the last report where the
    /// gossip load report takes it (the leader's scale-out reads it there).
    fn report_rates(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.rates_at.0).as_secs_f32().max(0.001);
        let l4 = self.l4_stats();
        let counts: HashMap<IpAddr, u64> =
            self.held.iter().map(|v| (*v, self.counted(*v, l4.as_ref(), |s| s.new_flows))).collect();
        let rates = counts
            .iter()
            .map(|(vip, n)| {
                // A counter that went back (a reload rebuilt it) counts from zero.
                let before = self.rates_at.1.get(vip).copied().filter(|b| b <= n).unwrap_or(*n);
                ballast_control::gossip::load::VipRate { vip: *vip, conn_rate: (n - before) as f32 / secs }
            })
            .collect();
        *self.plane.gossip.vip_rates.lock().unwrap_or_else(|p| p.into_inner()) = rates;
        // XDP packets and bytes through all the VIPs, as rates (a counter that went back
        // counts from zero).
        let totals = l4.as_ref().map_or((0, 0), |s| {
            (s.vips.iter().map(|v| v.packets).sum::<u64>(), s.vips.iter().map(|v| v.bytes).sum::<u64>())
        });
        let (p0, b0) = self.xdp_at;
        let rate = |now: u64, before: u64| (now.checked_sub(before).unwrap_or(now) as f32 / secs) as u64;
        *self.plane.gossip.xdp_rates.lock().unwrap_or_else(|p| p.into_inner()) =
            (rate(totals.0, p0), rate(totals.1, b0));
        self.xdp_at = totals;
        let (sessions, requests) = self.proxy.as_ref().map_or((0, 0), |p| {
            let shared = p.current();
            let c = shared.frontends.iter().map(|f| &f.counters);
            c.fold((0u64, 0u64), |(s, r), c| {
                (s + u64::from(c.scur.load(std::sync::atomic::Ordering::Relaxed)), r + c.stot.load(std::sync::atomic::Ordering::Relaxed))
            })
        });
        *self.plane.gossip.l7_rates.lock().unwrap_or_else(|p| p.into_inner()) = (sessions, rate(requests, self.l7_at));
        self.l7_at = requests;
        self.rates_at = (now, counts);
        let down = self.down.borrow().clone();
        let checks = self
            .checker
            .checks()
            .map(|c| ballast_control::gossip::load::CheckResult {
                backend: ballast_control::state::lb::CheckKey { addr: c.addr, path: c.path.clone() },
                up: !down.contains(c),
            })
            .collect();
        *self.plane.gossip.checks.lock().unwrap_or_else(|p| p.into_inner()) = checks;
        let text = self.plane_metrics(l4.as_ref());
        *self.plane.plane_metrics.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// This device's planes for Prometheus: XDP counters per VIP and backend, the L4
    /// backends' health here, the proxy's frontends and servers.
    fn plane_metrics(&self, l4: Option<&ballast_l4::dataplane::StatsReport>) -> String {
        use ballast_control::metrics::{Kind::*, Page};
        use std::sync::atomic::Ordering::Relaxed;
        let mut page = Page::default();
        if let Some(st) = l4 {
            for v in &st.vips {
                let (ip, listener) = stats_vip(&v.vip).map(|(ip, l)| (ip.to_string(), l)).unwrap_or_default();
                let l = [("vip", ip.as_str()), ("listener", listener.as_str()), ("name", v.name.as_str()), ("mode", v.mode.as_str())];
                page.sample("ballast_l4_vip_packets_total", Counter, "Packets XDP forwarded for a VIP.", &l, v.packets as f64);
                page.sample("ballast_l4_vip_bytes_total", Counter, "Bytes XDP forwarded for a VIP.", &l, v.bytes as f64);
                page.sample("ballast_l4_vip_flows_total", Counter, "New flows XDP saw for a VIP.", &l, v.new_flows as f64);
                for b in &v.backends {
                    // A tunnel keeps the VIP's port: the backend is its address alone.
                    let backend = match b.port {
                        Some(port) => format!("{}:{port}", b.address),
                        None => b.address.to_string(),
                    };
                    let l = [("vip", ip.as_str()), ("listener", listener.as_str()), ("backend", backend.as_str())];
                    page.sample("ballast_l4_backend_packets_total", Counter, "Packets XDP sent to a backend.", &l, b.packets as f64);
                    page.sample("ballast_l4_backend_flows_total", Counter, "New flows XDP sent to a backend.", &l, b.new_flows as f64);
                    page.sample("ballast_l4_backend_weight", Gauge, "A backend's weight in this device's maps (0: drained or down here).", &l, f64::from(b.weight));
                    page.sample("ballast_l4_backend_slots", Gauge, "A backend's Maglev slots.", &l, b.slots as f64);
                }
            }
            for (name, n) in &st.counters {
                page.sample("ballast_l4_events_total", Counter, "The XDP program's global counters (drops, passes, errors).", &[("counter", name)], *n as f64);
            }
        }
        let down = self.down.borrow().clone();
        for c in self.checker.checks() {
            let backend = c.addr.to_string();
            let up = !down.contains(c);
            page.sample("ballast_l4_backend_up", Gauge, "1 if an L4 backend passes its check from this device.", &[("backend", &backend)], up as u8 as f64);
        }
        if let Some(p) = &self.proxy {
            let shared = p.current();
            for f in &shared.frontends {
                let l = [("frontend", f.cfg.name.as_str())];
                page.sample("ballast_l7_frontend_sessions_total", Counter, "Sessions (HTTP: requests) a listener took.", &l, f.counters.stot.load(Relaxed) as f64);
                page.sample("ballast_l7_frontend_current_sessions", Gauge, "Sessions open on a listener.", &l, f64::from(f.counters.scur.load(Relaxed)));
                page.sample("ballast_l7_frontend_received_bytes_total", Counter, "Bytes from clients.", &l, f.counters.bin.load(Relaxed) as f64);
                page.sample("ballast_l7_frontend_sent_bytes_total", Counter, "Bytes to clients.", &l, f.counters.bout.load(Relaxed) as f64);
            }
            for (name, b) in &shared.backends {
                for s in &b.servers {
                    let l = [("backend", name.as_str()), ("server", s.cfg.name.as_str())];
                    let up = s.health.lock().unwrap_or_else(|p| p.into_inner()).is_up();
                    page.sample("ballast_l7_server_up", Gauge, "1 if an L7 server passes its checks (or has none).", &l, up as u8 as f64);
                    page.sample("ballast_l7_server_sessions_total", Counter, "Sessions sent to a server.", &l, s.counters.stot.load(Relaxed) as f64);
                    page.sample("ballast_l7_server_current_sessions", Gauge, "Sessions open to a server.", &l, f64::from(s.counters.scur.load(Relaxed)));
                }
            }
        }
        let held = self.held.len();
        page.sample("ballast_vips_held", Gauge, "VIP addresses this device holds now.", &[], held as f64);
        page.into_text()
    }

    /// Records `first_packet` for each gained VIP whose counters moved since its address
    /// went up (to within [`FIRST_PACKET_POLL`]); a VIP nobody uses stops being watched
    /// after [`FIRST_PACKET_WAIT`].
    fn check_first_packets(&mut self, lb: &LbState) {
        let now = Instant::now();
        let mut served = Vec::new();
        let vips: Vec<IpAddr> = self.unserved.keys().copied().collect();
        if vips.is_empty() {
            return;
        }
        // One read of the XDP counters for all the VIPs waiting.
        let l4 = self.l4_stats();
        for vip in vips {
            let count = self.counted(vip, l4.as_ref(), |v| v.packets);
            let (base, since) = self.unserved[&vip];
            if count > base {
                served.push(vip);
            } else if now.duration_since(since) >= FIRST_PACKET_WAIT {
                self.unserved.remove(&vip);
            } else if count < base {
                // A reload rebuilt the counters: count from their new start.
                self.unserved.insert(vip, (count, since));
            }
        }
        for vip in served {
            self.unserved.remove(&vip);
            self.phase(lb, vip, true, "first_packet");
        }
    }

    /// Records a phase of the move that brought `vip` here (`gained`) or took it away.
    fn phase(&self, lb: &LbState, vip: IpAddr, gained: bool, phase: &'static str) {
        let Some(e) = lb.events.iter().rev().find(|e| {
            e.kind == EventKind::VipMoved
                && e.vip == Some(vip)
                && if gained {
                    e.device.as_deref() == Some(&self.me)
                } else {
                    e.from.as_deref() == Some(&self.me)
                }
        }) else {
            return;
        };
        let (event, plane) = (e.id, self.plane.clone());
        let at_ms = wall_ms();
        // Tried for a few seconds: a `released` the new owner waits for must not be lost to
        // an election (it would then wait out a whole lease).
        tokio::spawn(async move {
            let body = serde_json::json!({ "event": event, "phase": phase, "at_ms": at_ms });
            for _ in 0..50 {
                let r: Result<serde_json::Value, String> = match plane.leader_rpc().await {
                    Some(leader) => {
                        ballast_control::raft::network::post_json(
                            &plane.client,
                            &leader,
                            "/v1/internal/lb/phase",
                            &body,
                            Duration::from_secs(2),
                            plane.gossip.rpc_token().as_deref(),
                        )
                        .await
                    }
                    None => Err("no leader known".into()),
                };
                match r {
                    Ok(_) => return,
                    Err(e) => log::debug!("recording {phase} of event {event}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// Feeds `tx` with the LB state: from the local store on a server, by long polling a
/// server's cluster RPC on a client agent.
pub async fn watch_state(plane: Arc<ControlPlane>, tx: watch::Sender<View>) {
    if let Some(store) = plane.store.clone() {
        let mut changes = store.subscribe();
        loop {
            let view = store.read(|a| View {
                lb: a.state.lb.clone(),
                applied: a.last_applied.map(|l| l.index).unwrap_or(0),
            });
            tx.send_if_modified(|old| {
                let changed = old.applied != view.applied || old.lb != view.lb;
                *old = view;
                changed
            });
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
    let mut index = 0;
    loop {
        match poll_state(&plane, index).await {
            // A server that lags (another answered before) must not move the view back.
            Ok(view) if view.applied < tx.borrow().applied => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(view) => {
                index = view.lb.modify_index;
                tx.send_replace(view);
            }
            Err(e) => {
                log::debug!("LB state: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn poll_state(plane: &ControlPlane, index: u64) -> Result<View, String> {
    use http_body_util::BodyExt;
    // An alive server, or a suspect if none is (one may be only slow).
    let server = plane.servers_alive_first().into_iter().next().ok_or("no server alive")?;
    let mut req =
        hyper::Request::get(format!("http://{}/v1/internal/lb/state?index={index}", server.ident.rpc));
    if let Some(t) = plane.gossip.rpc_token() {
        req = req.header(ballast_control::raft::network::CLUSTER_TOKEN, t);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    // A blocking query to a server that dies (its links down: no reset comes) would hang
    // until its timeout while the state moves on elsewhere, and the lease this device gets
    // from the new leader names a state it has not seen: it would drop its VIPs. So the
    // query is abandoned as soon as gossip no longer sees that server alive.
    let name = server.ident.name.clone();
    let gone = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Failed, left or gone: a suspect may yet answer (and is declared down soon).
            let there = plane
                .gossip
                .members()
                .into_iter()
                .any(|m| m.ident.name == name && matches!(m.status, Status::Alive | Status::Suspect));
            if !there {
                return;
            }
        }
    };
    let resp = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(70), plane.client.request(req)) => {
            r.map_err(|_| "timed out".to_string())?.map_err(|e| e.to_string())?
        }
        _ = gone => return Err(format!("{name} is no longer alive")),
    };
    if !resp.status().is_success() {
        return Err(format!("{}", resp.status()));
    }
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    #[derive(serde::Deserialize)]
    struct Reply {
        applied: u64,
        state: LbState,
    }
    let r: Reply = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(View { lb: r.state, applied: r.applied })
}

#[cfg(test)]
mod tests {
    use super::stats_vip;

    #[test]
    fn xdp_stats_name_vips_with_port_and_protocol() {
        assert_eq!(stats_vip("198.51.100.150:80/tcp"), Some(("198.51.100.150".parse().unwrap(), "80/tcp".into())));
        assert_eq!(stats_vip("[2001:db8::1]:443/udp"), Some(("2001:db8::1".parse().unwrap(), "443/udp".into())));
        assert_eq!(stats_vip("198.51.100.150"), None);
    }
}

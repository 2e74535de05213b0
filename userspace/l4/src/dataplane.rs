//! The XDP side of a device: loads the programs, attaches them, and keeps the maps in line
//! with the L4 config by executing the planner's writes. Stats are read from here too.
use std::{collections::BTreeMap, fmt::Write as _};

use aya::{
    maps::{Array, HashMap, MapError, PerCpuArray, PerCpuValues},
    programs::{ProgramError, TracePoint, Xdp, XdpMode},
    Ebpf, EbpfError, EbpfLoader,
};
use ballast_common::{AddrKey, Backend, Counter, Counters, Settings, VipKey, VipMeta};
use serde::Serialize;

use crate::{
    config::{ConfigError, DeviceSpec, L4Config},
    plan::{Layout, MapContents, Op, PlanError, Summary},
};

/// The compiled XDP object (built by build.rs from ebpf/ballast-ebpf).
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast-ebpf"));

pub const PROG_LB: &str = "ballast_lb";
pub const PROG_DECAP: &str = "ballast_decap";
pub const PROG_PASS: &str = "ballast_pass";
/// Tracepoint programs counting the LB's failed redirects (see `watch_redirects`).
const TRACEPOINTS: [(&str, &str); 2] =
    [("ballast_redirect_err", "xdp_redirect_err"), ("ballast_devmap_xmit", "xdp_devmap_xmit")];

/// Large aya errors are boxed so `Result<_, DataplaneError>` stays small.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object: {0}")]
    Load(Box<EbpfError>),
    #[error("program {name}: {source}")]
    Program { name: String, source: Box<ProgramError> },
    #[error("attaching {prog} to {iface} ({mode}): {source}")]
    Attach { prog: String, iface: String, mode: &'static str, source: Box<ProgramError> },
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: Box<MapError> },
    #[error("map {0} is missing from the XDP object")]
    MissingMap(&'static str),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the number of CPUs: {0}")]
    Cpus(String),
    #[error("enabling forwarding on {iface} ({path}): {source}")]
    Forwarding { iface: String, path: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, DataplaneError>;

/// How to attach: native (driver) mode, generic (skb) mode, or native with generic as a
/// fallback for drivers without XDP support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
    Auto,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source: Box::new(source) }
}

fn prog_err(name: &str) -> impl Fn(ProgramError) -> DataplaneError + '_ {
    move |source| DataplaneError::Program { name: name.into(), source: Box::new(source) }
}

/// Loads the object with map sizes for `device` and the eBPF log level (aya-log's
/// `AYA_LOG_LEVEL`: 0 off .. 5 trace), and verifies all programs.
pub fn load_object(device: Option<&DeviceSpec>, log_level: u8) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.override_global("AYA_LOG_LEVEL", &log_level, false);
    if let Some(d) = device {
        loader
            .map_max_entries("MAGLEV", d.max_vips * d.max_table_size)
            .map_max_entries("CONNTRACK", d.conntrack_size)
            .map_max_entries("NAT_REVERSE", d.conntrack_size)
            .map_max_entries("NAT_REVERSE_SYN", d.conntrack_size);
    } else {
        // Decap / pass only: keep the unused LB maps tiny.
        loader
            .map_max_entries("MAGLEV", 1)
            .map_max_entries("CONNTRACK", 16)
            .map_max_entries("NAT_REVERSE", 16)
            .map_max_entries("NAT_REVERSE_SYN", 16);
    }
    let mut ebpf = loader.load(BPF_OBJECT).map_err(|e| DataplaneError::Load(Box::new(e)))?;
    for name in [PROG_LB, PROG_DECAP, PROG_PASS] {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| prog_err(name)(ProgramError::NotLoaded))?
            .try_into()
            .map_err(prog_err(name))?;
        prog.load().map_err(prog_err(name))?;
    }
    Ok(ebpf)
}

/// Attaches program `prog` of `ebpf` to `iface`. Returns the mode that worked.
///
/// The load balancer's program routes what it rewrote with `bpf_fib_lookup`, which
/// refuses (`FWD_DISABLED`) on an interface where the kernel does not forward: the VIP's
/// packets were silently dropped on a device with forwarding off. So attaching it turns
/// forwarding on for that interface (IPv4 and IPv6), as an IPVS director needs too.
pub fn attach(ebpf: &mut Ebpf, prog: &str, iface: &str, mode: AttachMode) -> Result<&'static str> {
    if prog == PROG_LB {
        enable_forwarding(iface)?;
    }
    let p: &mut Xdp = ebpf
        .program_mut(prog)
        .ok_or_else(|| prog_err(prog)(ProgramError::NotLoaded))?
        .try_into()
        .map_err(prog_err(prog))?;
    let err = |mode: &'static str| {
        let (prog, iface) = (prog.to_string(), iface.to_string());
        move |source| DataplaneError::Attach { prog, iface, mode, source: Box::new(source) }
    };
    match mode {
        AttachMode::Native => p.attach(iface, XdpMode::Driver).map(|_| "native").map_err(err("native")),
        AttachMode::Generic => p.attach(iface, XdpMode::Skb).map(|_| "generic").map_err(err("generic")),
        AttachMode::Auto => match p.attach(iface, XdpMode::Driver) {
            Ok(_) => Ok("native"),
            Err(e) => {
                log::warn!("native XDP on {iface} failed ({e}); falling back to generic mode");
                p.attach(iface, XdpMode::Skb).map(|_| "generic").map_err(err("generic"))
            }
        },
    }
}

/// Attaches `prog` to every interface in `ifaces`; the modes that worked, in order.
///
/// With `Auto`, native everywhere or generic everywhere, never a mix: a frame that came
/// in through native XDP is redirected with the target driver's XDP transmit, which a
/// bridge lacks and a veth only has when its peer runs XDP or GRO, so a native
/// interface redirecting to a generic one can deliver nothing. Generic redirects go
/// through the stack's transmit and reach any interface.
pub fn attach_all(ebpf: &mut Ebpf, prog: &str, ifaces: &[String], mode: AttachMode) -> Result<Vec<&'static str>> {
    if mode != AttachMode::Auto {
        return ifaces.iter().map(|i| attach(ebpf, prog, i, mode)).collect();
    }
    let mut links = Vec::new();
    let mut failed = None;
    for iface in ifaces {
        if prog == PROG_LB {
            enable_forwarding(iface)?;
        }
        match xdp(ebpf, prog)?.attach(iface, XdpMode::Driver) {
            Ok(link) => links.push(link),
            Err(e) => {
                failed = Some((iface.clone(), e));
                break;
            }
        }
    }
    let Some((iface, e)) = failed else {
        return Ok(vec!["native"; ifaces.len()]);
    };
    log::warn!("native XDP on {iface} failed ({e}); every interface falls back to generic mode (a native one could not redirect to it)");
    let p = xdp(ebpf, prog)?;
    for link in links {
        p.detach(link).map_err(prog_err(prog))?;
    }
    ifaces.iter().map(|i| attach(ebpf, prog, i, AttachMode::Generic)).collect()
}

fn xdp<'a>(ebpf: &'a mut Ebpf, prog: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(prog)
        .ok_or_else(|| prog_err(prog)(ProgramError::NotLoaded))?
        .try_into()
        .map_err(prog_err(prog))
}

/// Counts the redirects of `ballast_lb` (attached to `ifaces`) that the kernel failed to
/// deliver into `drop_redirect_failed`, from the `xdp` tracepoints. Without tracefs the
/// failures stay uncounted: a warning says so, the data path is unaffected.
pub fn watch_redirects(ebpf: &mut Ebpf, ifaces: &[String]) -> Result<()> {
    let id = xdp(ebpf, PROG_LB)?.info().map_err(prog_err(PROG_LB))?.id();
    let mut prog: Array<_, u32> = map_of(ebpf, "WATCH_PROG")?;
    prog.set(0, id, 0).map_err(map_err("WATCH_PROG"))?;
    let mut watched: HashMap<_, u32, u8> = map_of(ebpf, "WATCH_IFINDEX")?;
    for iface in ifaces {
        let name = std::ffi::CString::new(iface.as_str()).unwrap_or_default();
        // SAFETY: a NUL-terminated string that lives across the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index != 0 {
            watched.insert(index, 1, 0).map_err(map_err("WATCH_IFINDEX"))?;
        }
    }
    mount_tracefs();
    for (name, event) in TRACEPOINTS {
        let attached = (|| -> std::result::Result<(), ProgramError> {
            let tp: &mut TracePoint = ebpf.program_mut(name).ok_or(ProgramError::NotLoaded)?.try_into()?;
            tp.load()?;
            tp.attach("xdp", event).map(|_| ())
        })();
        if let Err(e) = attached {
            log::warn!("failed redirects will not be counted: tracepoint xdp:{event}: {e}");
        }
    }
    Ok(())
}

/// Tracepoints are found through tracefs, which a fresh /sys lacks (`ip netns exec`
/// mounts one for the namespace; minimal systems do not mount it): mounted at its usual
/// place when missing, as systemd would.
fn mount_tracefs() {
    let dir = "/sys/kernel/tracing";
    if std::path::Path::new(dir).join("events").exists() || std::path::Path::new("/sys/kernel/debug/tracing/events").exists() {
        return;
    }
    let (src, target, fstype) = (c"tracefs", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: NUL-terminated strings that outlive the call; no mount data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        log::warn!("mounting tracefs at {dir}: {}", std::io::Error::last_os_error());
    }
}

fn map_of<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let m = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(m).map_err(map_err(name))
}

/// Turns on IPv4 and IPv6 forwarding on `iface` (of this network namespace), logging a change.
pub fn enable_forwarding(iface: &str) -> Result<()> {
    for family in ["ipv4", "ipv6"] {
        let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
        let err = |source| DataplaneError::Forwarding { iface: iface.into(), path: path.clone(), source };
        let now = match std::fs::read_to_string(&path) {
            Ok(v) => v,
            // IPv6 may be off in the kernel or on the interface: IPv4 alone is enough then.
            Err(e) if family == "ipv6" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(e)),
        };
        if now.trim() != "1" {
            std::fs::write(&path, "1").map_err(err)?;
            log::info!("{family} forwarding turned on for {iface} (XDP routes with the kernel's FIB)");
        }
    }
    Ok(())
}

/// The load balancer's maps and what this process last wrote to them.
pub struct Dataplane {
    pub ebpf: Ebpf,
    state: MapContents,
    config: Option<L4Config>,
    /// Set when a write failed half-way: the next apply rewrites everything.
    dirty: bool,
    nr_cpus: usize,
}

impl Dataplane {
    /// Loads (but does not attach) the programs, sized for `device`.
    pub fn load(device: &DeviceSpec, log_level: u8) -> Result<Self> {
        let ebpf = load_object(Some(device), log_level)?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(m, e)| DataplaneError::Cpus(format!("{m}: {e}")))?;
        let layout = Layout { max_vips: device.max_vips, stride: device.max_table_size };
        Ok(Dataplane { ebpf, state: MapContents::new(layout), config: None, dirty: false, nr_cpus })
    }

    pub fn config(&self) -> Option<&L4Config> {
        self.config.as_ref()
    }

    /// Every backend address of the applied config.
    pub fn backend_addrs(&self) -> Vec<std::net::IpAddr> {
        let mut v: Vec<_> = self
            .config
            .iter()
            .flat_map(|c| c.vips.iter().flat_map(|v| v.backends.iter().map(|b| b.address)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn program(&self, name: &str) -> Option<&Xdp> {
        self.ebpf.program(name).and_then(|p| p.try_into().ok())
    }

    /// Brings the maps to `cfg`, writing only what differs from the last apply. A config
    /// the planner refuses changes nothing.
    pub fn apply(&mut self, cfg: L4Config) -> Result<Summary> {
        let base = if self.dirty { MapContents::new(self.state.layout) } else { self.state.clone() };
        let (next, ops, summary) = base.plan(&cfg)?;
        self.dirty = true;
        for op in &ops {
            self.execute(op)?;
        }
        self.dirty = false;
        self.state = next;
        self.config = Some(cfg);
        Ok(summary)
    }

    fn execute(&mut self, op: &Op) -> Result<()> {
        let nr_cpus = self.nr_cpus;
        let zero = || {
            PerCpuValues::try_from(vec![Counters::default(); nr_cpus])
                .map_err(|e| DataplaneError::Cpus(e.to_string()))
        };
        match op {
            Op::Settings(s) => {
                let mut m: Array<_, Settings> = self.map("SETTINGS")?;
                m.set(0, s, 0).map_err(map_err("SETTINGS"))
            }
            Op::SetBackend { id, backend } => {
                let mut m: Array<_, Backend> = self.map("BACKENDS")?;
                m.set(*id, backend, 0).map_err(map_err("BACKENDS"))
            }
            Op::ResetBackendStats(id) => {
                let z = zero()?;
                let mut m: PerCpuArray<_, Counters> = self.map("BACKEND_STATS")?;
                m.set(*id, z, 0).map_err(map_err("BACKEND_STATS"))
            }
            Op::ResetVipStats(i) => {
                let z = zero()?;
                let mut m: PerCpuArray<_, Counters> = self.map("VIP_STATS")?;
                m.set(*i, z, 0).map_err(map_err("VIP_STATS"))
            }
            Op::SetSlots(slots) => {
                let mut m: Array<_, u32> = self.map("MAGLEV")?;
                for (slot, id) in slots {
                    m.set(*slot, id, 0).map_err(map_err("MAGLEV"))?;
                }
                Ok(())
            }
            Op::SetVipAddr { key, count } => {
                let mut m: HashMap<_, AddrKey, u32> = self.map("VIP_ADDRS")?;
                m.insert(key, count, 0).map_err(map_err("VIP_ADDRS"))
            }
            Op::SetVip { key, meta } => {
                let mut m: HashMap<_, VipKey, VipMeta> = self.map("VIPS")?;
                m.insert(key, meta, 0).map_err(map_err("VIPS"))
            }
            Op::DelVip(key) => {
                let mut m: HashMap<_, VipKey, VipMeta> = self.map("VIPS")?;
                ignore_missing(m.remove(key)).map_err(map_err("VIPS"))
            }
            Op::DelVipAddr(key) => {
                let mut m: HashMap<_, AddrKey, u32> = self.map("VIP_ADDRS")?;
                ignore_missing(m.remove(key)).map_err(map_err("VIP_ADDRS"))
            }
        }
    }

    fn map<'a, T>(&'a mut self, name: &'static str) -> Result<T>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        map_of(&mut self.ebpf, name)
    }

    fn per_cpu_sum(&self, name: &'static str, index: u32) -> Result<Counters> {
        let m = self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
        let m: PerCpuArray<_, Counters> = PerCpuArray::try_from(m).map_err(map_err(name))?;
        let v = m.get(&index, 0).map_err(map_err(name))?;
        Ok(v.iter().fold(Counters::default(), |a, c| Counters {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            new_flows: a.new_flows + c.new_flows,
        }))
    }

    /// Per-VIP and per-backend counters (summed over CPUs) and the global counters.
    pub fn stats(&self) -> Result<StatsReport> {
        let mut vips = Vec::new();
        for (id, v) in &self.state.vips {
            let c = self.per_cpu_sum("VIP_STATS", v.index)?;
            let mut backends = Vec::new();
            for b in &v.backends {
                let bc = self.per_cpu_sum("BACKEND_STATS", b.id)?;
                backends.push(BackendStats {
                    address: b.spec.address.to_string(),
                    port: b.spec.port,
                    weight: b.spec.weight,
                    slots: v.table.iter().filter(|&&x| x == b.id).count(),
                    packets: bc.packets,
                    bytes: bc.bytes,
                    new_flows: bc.new_flows,
                });
            }
            vips.push(VipStats {
                name: v.spec.name.clone(),
                vip: id.to_string(),
                mode: v.spec.mode.to_string(),
                packets: c.packets,
                bytes: c.bytes,
                new_flows: c.new_flows,
                backends,
            });
        }
        Ok(StatsReport { vips, counters: read_counters(&self.ebpf)? })
    }
}

fn ignore_missing(r: std::result::Result<(), MapError>) -> std::result::Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        r => r,
    }
}

/// The `GLOBAL` counters by name, summed over CPUs.
pub fn read_counters(ebpf: &Ebpf) -> Result<BTreeMap<String, u64>> {
    let m = ebpf.map("GLOBAL").ok_or(DataplaneError::MissingMap("GLOBAL"))?;
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(m).map_err(map_err("GLOBAL"))?;
    let mut out = BTreeMap::new();
    for c in Counter::ALL {
        let v = m.get(&(c as u32), 0).map_err(map_err("GLOBAL"))?;
        out.insert(c.name().to_string(), v.iter().sum());
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BackendStats {
    pub address: String,
    pub port: Option<u16>,
    pub weight: u32,
    /// Maglev slots the backend holds.
    pub slots: usize,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct VipStats {
    pub name: String,
    pub vip: String,
    pub mode: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub backends: Vec<BackendStats>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatsReport {
    pub vips: Vec<VipStats>,
    pub counters: BTreeMap<String, u64>,
}

impl StatsReport {
    /// A table for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for v in &self.vips {
            let _ = writeln!(
                s,
                "VIP {} {} ({}): {} packets, {} bytes, {} flows",
                v.name, v.vip, v.mode, v.packets, v.bytes, v.new_flows
            );
            for b in &v.backends {
                let port = b.port.map(|p| format!(":{p}")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  -> {}{port:<6} weight {:<5} slots {:<6} {} packets, {} bytes, {} flows",
                    b.address, b.weight, b.slots, b.packets, b.bytes, b.new_flows
                );
            }
        }
        let nonzero: Vec<String> =
            self.counters.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            s,
            "counters: {}",
            if nonzero.is_empty() { "all zero".into() } else { nonzero.join(" ") }
        );
        s
    }
}

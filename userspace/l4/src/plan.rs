//! From "what is in the maps" and "what the config wants" to the list of map writes that
//! gets there, touching only what changed (Sōzu-style diff). Pure: no maps, no syscalls.
//!
//! Ids are stable: a VIP keeps its index and a backend its id for as long as it stays in
//! the config, so unchanged Maglev slots are not rewritten and connection-table entries
//! stay valid. A backend id given to a new backend gets a new generation, which the data
//! path compares, so a stale connection-table entry never follows a reused id.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ballast_common::{
    AddrKey, Backend, Settings, VipKey, VipMeta, BACKEND_ACTIVE, FAMILY_V4, FAMILY_V6, MODE_DR, MODE_NAT, MODE_TUNNEL,
    NO_BACKEND,
};

use crate::{
    config::{BackendSpec, L4Config, Mode, VipId, VipSpec, HARD_MAX_BACKENDS},
    maglev,
};

/// Map sizes fixed when the program was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub max_vips: u32,
    /// Distance between two VIPs' tables in `MAGLEV` (= the largest table size).
    pub stride: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Settings(Settings),
    SetBackend {
        id: u32,
        backend: Backend,
    },
    ResetBackendStats(u32),
    /// (absolute index in `MAGLEV`, backend id)
    SetSlots(Vec<(u32, u32)>),
    SetVipAddr {
        key: AddrKey,
        count: u32,
    },
    SetVip {
        key: VipKey,
        meta: VipMeta,
    },
    ResetVipStats(u32),
    DelVip(VipKey),
    DelVipAddr(AddrKey),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the device was loaded for {loaded} VIPs of up to {stride} slots; {what} needs a restart of the data plane")]
    LayoutChanged { loaded: u32, stride: u32, what: String },
    #[error("no free backend id (the data path holds {0})")]
    NoBackendIds(u32),
    #[error("no free VIP index (the data path holds {0})")]
    NoVipIndices(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedBackend {
    pub id: u32,
    pub spec: BackendSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedVip {
    pub spec: VipSpec,
    pub index: u32,
    /// Same order as `spec.backends`.
    pub backends: Vec<AppliedBackend>,
    /// Backend id per slot.
    pub table: Vec<u32>,
}

/// What the maps hold (as far as this process wrote them).
#[derive(Clone, Debug)]
pub struct MapContents {
    pub layout: Layout,
    pub settings: Option<Settings>,
    pub vips: BTreeMap<VipId, AppliedVip>,
    free_vips: BTreeSet<u32>,
    free_backends: BTreeSet<u32>,
    generations: Vec<u32>,
}

/// Summary of a plan, for logs and the admin socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub vips_added: usize,
    pub vips_removed: usize,
    pub vips_changed: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
    pub slots_written: usize,
}

pub fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        FAMILY_V4
    } else {
        FAMILY_V6
    }
}

/// Address as the data path keys it: wire order, IPv4 in word 0.
pub fn addr_words(a: &IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

pub fn vip_key(id: &VipId) -> VipKey {
    VipKey {
        addr: addr_words(&id.address),
        port: id.port.to_be(),
        proto: id.protocol.number(),
        family: family(&id.address),
    }
}

pub fn addr_key(a: &IpAddr) -> AddrKey {
    AddrKey { addr: addr_words(a), family: family(a), _pad: [0; 3] }
}

fn settings_of(cfg: &L4Config) -> Settings {
    Settings {
        tunnel_src_v4: cfg.device.tunnel_source_v4.map(|a| u32::from_ne_bytes(a.octets())).unwrap_or(0),
        _pad: 0,
        tunnel_src_v6: cfg.device.tunnel_source_v6.map(|a| addr_words(&IpAddr::V6(a))).unwrap_or([0; 4]),
    }
}

fn backend_key(b: &BackendSpec) -> (IpAddr, Option<u16>) {
    (b.address, b.port)
}

fn maglev_key(b: &BackendSpec) -> u64 {
    maglev::identity_hash(format!("{}:{}", b.address, b.port.unwrap_or(0)).as_bytes())
}

fn vip_meta(spec: &VipSpec, index: u32, layout: Layout) -> VipMeta {
    VipMeta {
        index,
        mode: match spec.mode {
            Mode::Tunnel => MODE_TUNNEL,
            Mode::Nat => MODE_NAT,
            Mode::Dr => MODE_DR,
        },
        ring_base: index * layout.stride,
        ring_size: spec.table_size,
    }
}

impl MapContents {
    pub fn new(layout: Layout) -> Self {
        MapContents {
            layout,
            settings: None,
            vips: BTreeMap::new(),
            free_vips: (0..layout.max_vips).collect(),
            free_backends: (0..HARD_MAX_BACKENDS).collect(),
            generations: vec![0; HARD_MAX_BACKENDS as usize],
        }
    }

    /// The writes that take the maps from `self` to `cfg`, and the state after them.
    pub fn plan(&self, cfg: &L4Config) -> Result<(MapContents, Vec<Op>, Summary), PlanError> {
        let layout = self.layout;
        if cfg.device.max_vips != layout.max_vips || cfg.device.max_table_size != layout.stride {
            return Err(PlanError::LayoutChanged {
                loaded: layout.max_vips,
                stride: layout.stride,
                what: format!(
                    "max_vips = {}, max_table_size = {}",
                    cfg.device.max_vips, cfg.device.max_table_size
                ),
            });
        }
        let mut next = self.clone();
        let mut sum = Summary::default();
        let mut ops = Vec::new();
        let mut slot_writes = Vec::new();
        let mut late = Vec::new(); // deletions and deactivations, after the new state is live

        let settings = settings_of(cfg);
        if self.settings != Some(settings) {
            ops.push(Op::Settings(settings));
            next.settings = Some(settings);
        }

        let wanted: BTreeSet<VipId> = cfg.vips.iter().map(|v| v.id).collect();
        // Backend ids freed by this plan are deactivated at its end, so they must not be
        // handed out again within it.
        let mut freed_backends = Vec::new();
        // VIPs that go away are deleted first and give back their index, so a replacement
        // fits even at max_vips.
        for (id, old) in &self.vips {
            if wanted.contains(id) {
                continue;
            }
            ops.push(Op::DelVip(vip_key(id)));
            for b in &old.backends {
                late.push(Op::SetBackend {
                    id: b.id,
                    backend: inactive(&b.spec, self.generations[b.id as usize]),
                });
                freed_backends.push(b.id);
                sum.backends_removed += 1;
            }
            next.free_vips.insert(old.index);
            next.vips.remove(id);
            sum.vips_removed += 1;
        }

        for spec in &cfg.vips {
            let old = self.vips.get(&spec.id);
            let index = match old {
                Some(o) => o.index,
                None => {
                    let i = *next.free_vips.iter().next().ok_or(PlanError::NoVipIndices(layout.max_vips))?;
                    next.free_vips.remove(&i);
                    ops.push(Op::ResetVipStats(i));
                    sum.vips_added += 1;
                    i
                }
            };
            let old_ids: BTreeMap<(IpAddr, Option<u16>), u32> = old
                .map(|o| o.backends.iter().map(|b| (backend_key(&b.spec), b.id)).collect())
                .unwrap_or_default();
            let mut backends = Vec::with_capacity(spec.backends.len());
            for b in &spec.backends {
                let id = match old_ids.get(&backend_key(b)) {
                    Some(&id) => id,
                    None => {
                        let id = *next
                            .free_backends
                            .iter()
                            .next()
                            .ok_or(PlanError::NoBackendIds(HARD_MAX_BACKENDS))?;
                        next.free_backends.remove(&id);
                        next.generations[id as usize] = next.generations[id as usize].wrapping_add(1);
                        ops.push(Op::ResetBackendStats(id));
                        ops.push(Op::SetBackend { id, backend: active(b, next.generations[id as usize]) });
                        sum.backends_added += 1;
                        id
                    }
                };
                backends.push(AppliedBackend { id, spec: b.clone() });
            }
            if let Some(o) = old {
                let kept: BTreeSet<u32> = backends.iter().map(|b| b.id).collect();
                for b in &o.backends {
                    if !kept.contains(&b.id) {
                        late.push(Op::SetBackend {
                            id: b.id,
                            backend: inactive(&b.spec, next.generations[b.id as usize]),
                        });
                        freed_backends.push(b.id);
                        sum.backends_removed += 1;
                    }
                }
            }

            let entries: Vec<maglev::Entry> = spec
                .backends
                .iter()
                .map(|b| maglev::Entry { key: maglev_key(b), weight: b.weight })
                .collect();
            let table: Vec<u32> = maglev::build(&entries, spec.table_size)
                .into_iter()
                .map(|i| if i == maglev::EMPTY { NO_BACKEND } else { backends[i as usize].id })
                .collect();
            let base = index * layout.stride;
            let before = old.map(|o| o.table.as_slice()).unwrap_or(&[]);
            for (slot, &bid) in table.iter().enumerate() {
                if before.get(slot) != Some(&bid) {
                    slot_writes.push((base + slot as u32, bid));
                }
            }

            let meta = vip_meta(spec, index, layout);
            let changed = match old {
                None => true,
                Some(o) => vip_meta(&o.spec, o.index, layout) != meta,
            };
            if changed {
                ops.push(Op::SetVip { key: vip_key(&spec.id), meta });
            }
            if old.is_some() && (changed || old.map(|o| &o.spec) != Some(spec)) {
                sum.vips_changed += 1;
            }
            next.vips.insert(spec.id, AppliedVip { spec: spec.clone(), index, backends, table });
        }

        next.free_backends.extend(freed_backends);

        // VIP_ADDRS holds how many VIPs sit on each address.
        let count_addrs = |vips: &BTreeMap<VipId, AppliedVip>| {
            let mut m: BTreeMap<IpAddr, u32> = BTreeMap::new();
            for id in vips.keys() {
                *m.entry(id.address).or_default() += 1;
            }
            m
        };
        let (old_addrs, new_addrs) = (count_addrs(&self.vips), count_addrs(&next.vips));
        let mut addr_ops = Vec::new();
        for (a, n) in &new_addrs {
            if old_addrs.get(a) != Some(n) {
                addr_ops.push(Op::SetVipAddr { key: addr_key(a), count: *n });
            }
        }
        for a in old_addrs.keys() {
            if !new_addrs.contains_key(a) {
                late.push(Op::DelVipAddr(addr_key(a)));
            }
        }

        // Order: removed VIPs, settings and new backends, then the slots that name them,
        // then addresses and VIP entries that make them reachable, and last the backends
        // and addresses that went away.
        sum.slots_written = slot_writes.len();
        let (vip_sets, mut ops): (Vec<Op>, Vec<Op>) =
            ops.into_iter().partition(|o| matches!(o, Op::SetVip { .. }));
        if !slot_writes.is_empty() {
            ops.push(Op::SetSlots(slot_writes));
        }
        ops.extend(addr_ops);
        ops.extend(vip_sets);
        ops.extend(late);
        Ok((next, ops, sum))
    }
}

fn backend_value(b: &BackendSpec, generation: u32, flags: u32) -> Backend {
    Backend {
        addr: addr_words(&b.address),
        port: b.port.unwrap_or(0).to_be(),
        family: family(&b.address),
        _pad: 0,
        flags,
        generation,
    }
}

fn active(b: &BackendSpec, generation: u32) -> Backend {
    backend_value(b, generation, BACKEND_ACTIVE)
}

fn inactive(b: &BackendSpec, generation: u32) -> Backend {
    backend_value(b, generation, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[device]
tunnel_source_v4 = "10.0.0.1"
max_vips = 4
max_table_size = 1009

[[vip]]
name = "web"
address = "198.51.100.10"
port = 80
protocol = "tcp"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]
"#;

    fn layout() -> Layout {
        Layout { max_vips: 4, stride: 1009 }
    }

    fn cfg(text: &str) -> L4Config {
        L4Config::parse(text).unwrap()
    }

    fn slots(ops: &[Op]) -> usize {
        ops.iter().map(|o| if let Op::SetSlots(s) = o { s.len() } else { 0 }).sum()
    }

    #[test]
    fn first_apply_writes_everything_in_order() {
        let (st, ops, sum) = MapContents::new(layout()).plan(&cfg(BASE)).unwrap();
        assert_eq!(sum.vips_added, 1);
        assert_eq!(sum.backends_added, 3);
        assert_eq!(slots(&ops), 1009);
        let pos = |f: &dyn Fn(&Op) -> bool| ops.iter().position(f).unwrap();
        let backend = pos(&|o| matches!(o, Op::SetBackend { .. }));
        let slot = pos(&|o| matches!(o, Op::SetSlots(_)));
        let addr = pos(&|o| matches!(o, Op::SetVipAddr { .. }));
        let vip = pos(&|o| matches!(o, Op::SetVip { .. }));
        assert!(backend < slot && slot < addr && addr < vip, "{ops:?}");
        assert_eq!(st.vips.len(), 1);
    }

    #[test]
    fn same_config_writes_nothing() {
        let (st, _, _) = MapContents::new(layout()).plan(&cfg(BASE)).unwrap();
        let (_, ops, sum) = st.plan(&cfg(BASE)).unwrap();
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(sum, Summary::default());
    }

    #[test]
    fn adding_a_backend_writes_only_changed_slots() {
        let (st, _, _) = MapContents::new(layout()).plan(&cfg(BASE)).unwrap();
        let more = BASE.replace(
            r#"{ address = "10.0.0.13" }"#,
            r#"{ address = "10.0.0.13" }, { address = "10.0.0.14" }"#,
        );
        let (st2, ops, sum) = st.plan(&cfg(&more)).unwrap();
        assert_eq!(sum.backends_added, 1);
        // About a quarter of the table moves to the new backend, nothing else.
        let n = slots(&ops);
        assert!(n > 1009 / 4 - 30 && n < 1009 / 4 + 60, "{n} slots written");
        let new_id = st2.vips.values().next().unwrap().backends[3].id;
        for o in &ops {
            if let Op::SetSlots(s) = o {
                assert!(s.iter().filter(|(_, id)| *id != new_id).count() < 40);
            }
        }
        // VIP meta did not change, so it is not rewritten.
        assert!(!ops.iter().any(|o| matches!(o, Op::SetVip { .. })));
    }

    #[test]
    fn removing_a_backend_deactivates_it_after_the_slots_move() {
        let (st, _, _) = MapContents::new(layout()).plan(&cfg(BASE)).unwrap();
        let old_id = st.vips.values().next().unwrap().backends[1].id;
        let fewer = BASE.replace(r#"{ address = "10.0.0.12" }, "#, "");
        let (st2, ops, sum) = st.plan(&cfg(&fewer)).unwrap();
        assert_eq!(sum.backends_removed, 1);
        let slot = ops.iter().position(|o| matches!(o, Op::SetSlots(_))).unwrap();
        let deact = ops
            .iter()
            .position(|o| matches!(o, Op::SetBackend { id, backend } if *id == old_id && backend.flags == 0))
            .unwrap();
        assert!(slot < deact);
        assert!(!st2.vips.values().next().unwrap().table.contains(&old_id));
        // The freed id comes back with a new generation.
        let again = BASE.replace("10.0.0.12", "10.0.0.99");
        let (_, ops, _) = st2.plan(&cfg(&again)).unwrap();
        let gens: Vec<u32> = ops
            .iter()
            .filter_map(|o| match o {
                Op::SetBackend { id, backend } if *id == old_id => Some(backend.generation),
                _ => None,
            })
            .collect();
        assert_eq!(gens, vec![2]);
    }

    #[test]
    fn removing_a_vip_deletes_its_keys() {
        let (st, _, _) = MapContents::new(layout()).plan(&cfg(BASE)).unwrap();
        let empty = "[device]\ntunnel_source_v4 = \"10.0.0.1\"\nmax_vips = 4\nmax_table_size = 1009\n";
        let (st2, ops, sum) = st.plan(&cfg(empty)).unwrap();
        assert_eq!(sum.vips_removed, 1);
        assert!(ops.iter().any(|o| matches!(o, Op::DelVip(_))));
        assert!(ops.iter().any(|o| matches!(o, Op::DelVipAddr(_))));
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::SetBackend { backend, .. } if backend.flags == 0)).count(),
            3
        );
        assert!(st2.vips.is_empty());
    }

    #[test]
    fn layout_change_is_refused() {
        let st = MapContents::new(layout());
        let bigger = BASE.replace("max_vips = 4", "max_vips = 8");
        assert!(matches!(st.plan(&cfg(&bigger)), Err(PlanError::LayoutChanged { .. })));
    }

    #[test]
    fn too_many_vips_for_the_layout_is_refused_before_any_write() {
        let st = MapContents::new(Layout { max_vips: 1, stride: 1009 });
        let two = format!(
            "{}\n[[vip]]\nname = \"b\"\naddress = \"198.51.100.11\"\nport = 80\nprotocol = \"tcp\"\n",
            BASE.replace("max_vips = 4", "max_vips = 1")
        );
        // validate() catches it first (2 VIPs > max_vips 1).
        assert!(L4Config::parse(&two).is_err());
        let (st2, _, _) = st.plan(&cfg(&BASE.replace("max_vips = 4", "max_vips = 1"))).unwrap();
        assert_eq!(st2.vips.len(), 1);
    }

    /// Applies ops to a model of BACKENDS and checks that every backend a table names is
    /// active afterwards, and that no id is active for two different backends.
    fn check_backends_after(st: &MapContents, ops: &[Op], model: &mut BTreeMap<u32, Backend>) {
        for o in ops {
            if let Op::SetBackend { id, backend } = o {
                model.insert(*id, *backend);
            }
        }
        for v in st.vips.values() {
            for b in &v.backends {
                let m = model.get(&b.id).unwrap_or_else(|| panic!("id {} never written", b.id));
                assert_eq!(m.flags, BACKEND_ACTIVE, "{} (id {}) inactive", b.spec.address, b.id);
                assert_eq!(m.addr, addr_words(&b.spec.address), "id {} holds another backend", b.id);
            }
        }
    }

    #[test]
    fn ids_freed_by_one_vip_are_not_reused_by_another_in_the_same_plan() {
        let two = format!(
            "{BASE}\n[[vip]]\nname = \"dns\"\naddress = \"198.51.100.10\"\nport = 53\nprotocol = \"udp\"\nbackends = [{{ address = \"10.0.0.11\" }}, {{ address = \"10.0.0.12\" }}]\n"
        );
        let mut model = BTreeMap::new();
        let (st, ops, _) = MapContents::new(layout()).plan(&cfg(&two)).unwrap();
        check_backends_after(&st, &ops, &mut model);
        // web loses 10.0.0.11, dns gains 10.0.0.14: dns's new backend must not take web's old id.
        let changed = two.replacen(r#"{ address = "10.0.0.11" }, "#, "", 1).replace(
            r#"{ address = "10.0.0.12" }]"#,
            r#"{ address = "10.0.0.12" }, { address = "10.0.0.14" }]"#,
        );
        let (st2, ops, sum) = st.plan(&cfg(&changed)).unwrap();
        assert_eq!((sum.backends_added, sum.backends_removed), (1, 1));
        check_backends_after(&st2, &ops, &mut model);
        // And the id does come back in a later plan.
        let (st3, ops, _) = st2.plan(&cfg(&changed.replace("10.0.0.14", "10.0.0.15"))).unwrap();
        check_backends_after(&st3, &ops, &mut model);
    }

    #[test]
    fn addr_words_are_wire_order() {
        let w = addr_words(&"198.51.100.10".parse().unwrap());
        assert_eq!(w[0].to_ne_bytes(), [198, 51, 100, 10]);
        let w = addr_words(&"2001:db8::1".parse().unwrap());
        assert_eq!(w[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(w[3].to_ne_bytes(), [0, 0, 0, 1]);
    }
}

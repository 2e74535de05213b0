//! The maps shared with userspace. Sizes here are defaults; the loader resizes the big
//! ones (`MAGLEV`, `CONNTRACK`, `NAT_REVERSE`, `NAT_REVERSE_SYN`) from the device config
//! before loading.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use ballast_common::{
    AddrKey, Backend, Counter, Counters, FlowKey, FlowState, NatReverse, Settings, VipKey, VipMeta,
    COUNTER_COUNT,
};

pub const MAX_VIPS: u32 = 512;
pub const MAX_BACKENDS: u32 = 4096;

#[map]
pub static VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map]
pub static VIP_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// All VIPs' Maglev tables back to back; a VIP's slots start at `VipMeta::ring_base`.
#[map]
pub static MAGLEV: Array<u32> = Array::with_max_entries(65537, 0);

/// Shared (not per-CPU) LRU: a flow's packets, and NAT replies, may arrive on any CPU
/// (veth, or NICs whose RSS does not hash both directions alike); a per-CPU table would
/// lose the pinning when a flow lands on another CPU after a backend change.
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// NAT mode: reply 5-tuple (backend -> client) to the VIP it must appear to come from.
/// Kept apart from CONNTRACK so churn of one does not evict the other.
#[map]
pub static NAT_REVERSE: LruHashMap<FlowKey, NatReverse> = LruHashMap::with_max_entries(65536, 0);

/// NAT: reply tuples of flows seen only as a SYN so far (see `admit`): a SYN flood churns
/// this table, never `NAT_REVERSE`.
#[map]
pub static NAT_REVERSE_SYN: LruHashMap<FlowKey, NatReverse> = LruHashMap::with_max_entries(65536, 0);

#[map]
pub static VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map]
pub static BACKEND_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

#[map]
pub static GLOBAL: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// A next hop as the FIB last gave it for `src` → `dst` (`tx::route_cached`), per CPU.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NextHop {
    pub expires: u64,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub generation: u32,
    pub ingress: u32,
    pub ifindex: u32,
    /// The largest packet the FIB let through to this hop.
    pub max_len: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub on_link: u8,
    /// An IPv4 pair is stored as `[a, 0, 0, 0]`: the family tells it from an IPv6 one.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Backends' next hops, by backend slot (tunnel and DR packets).
#[map]
pub static NEXT_HOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Slots of `ROUTES`: a power of two.
pub const ROUTE_SLOTS: u32 = 1024;

/// Other next hops (NAT to a backend, NAT replies to clients), by a hash of source and
/// destination; a slot holds the last pair that hashed to it.
#[map]
pub static ROUTES: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(ROUTE_SLOTS, 0);

/// The `ballast_lb` program's id, and the interfaces it is attached to: which failed
/// redirects are ours (`redirect_watch`).
#[map]
pub static WATCH_PROG: Array<u32> = Array::with_max_entries(1, 0);

#[map]
pub static WATCH_IFINDEX: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

#[inline(always)]
pub fn count(c: Counter) {
    count_n(c, 1);
}

#[inline(always)]
pub fn count_n(c: Counter, n: u64) {
    if let Some(p) = GLOBAL.get_ptr_mut(c as u32) {
        unsafe { *p += n };
    }
}

#[inline(always)]
pub fn add_stats(map: &PerCpuArray<Counters>, index: u32, bytes: u64, new_flow: bool) {
    if let Some(p) = map.get_ptr_mut(index) {
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes;
            if new_flow {
                (*p).new_flows += 1;
            }
        }
    }
}

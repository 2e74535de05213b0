//! HAProxy 2.6's hash-based server selection, bit for bit (`balance source`, `uri`,
//! `hdr(<name>)` with `hash-type`), so that clients keep landing on the same servers when
//! a configuration moves from HAProxy to ballast. Checked against haproxy 2.6 itself
//! (`l7_side_by_side.rs`); the algorithms are those of its lb_map.c, lb_chash.c and
//! backend.c, written anew here.
//!
//! - The key: source address (IPv4 as a big-endian word, IPv6 as the XOR of its four
//!   words; the hash function is not applied), the request target (`uri`, with its
//!   options), or a header's first value (`hdr`, optionally its domain label only).
//! - The function: sdbm (default), djb2, wt6 or crc32, then optionally the avalanche.
//! - Map-based (default): every usable server of the pool gets weight/gcd slots of a map,
//!   interleaved by HAProxy's score algorithm; the server is `map[hash % slots]`.
//! - Consistent: 16 × weight points per server on a ring, keyed by the avalanche of
//!   (server id × 4096 + point); the point closest to the hash wins (ties: the lower one).
//! - One usable server: the hash is 0 (no key needed).
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashFn {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
}

/// `hash-type <map-based|consistent> [<function> [avalanche]]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashType {
    pub consistent: bool,
    pub function: HashFn,
    pub avalanche: bool,
}

/// `balance uri` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UriHash {
    /// `whole`: the query string is hashed too.
    pub whole: bool,
    /// `len N`: only the first N bytes (0: all).
    pub len: u32,
    /// `depth N`: up to the N-th directory (0: all).
    pub depth: u32,
    /// `path-only`: the path of an absolute target, without scheme and authority.
    pub path_only: bool,
}

pub fn sdbm(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |h, &c| (c as u32).wrapping_add(h << 6).wrapping_add(h << 16).wrapping_sub(h))
}

pub fn djb2(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| (h << 5).wrapping_add(h).wrapping_add(c as u32))
}

pub fn wt6(key: &[u8]) -> u32 {
    let (mut h0, mut h1, mut step0, mut step1) = (0xa53c_965au32, 0x5ca6_953au32, 6u32, 18u32);
    for &c in key {
        let t = c as u32;
        h0 = !(h0 ^ t);
        h1 = !(h1.wrapping_add(t));
        let t = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = t;
        let t = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = t & 0x1f;
        step1 = t >> 11;
    }
    h0 ^ h1
}

pub fn crc32(key: &[u8]) -> u32 {
    let mut h = !0u32;
    for &c in key {
        h ^= c as u32;
        for _ in 0..8 {
            h = (h >> 1) ^ if h & 1 != 0 { 0xedb8_8320 } else { 0 };
        }
    }
    !h
}

/// HAProxy's `full_hash` (Bob Jenkins' integer hash, then a multiply): the avalanche.
pub fn full_hash(mut a: u32) -> u32 {
    a = a.wrapping_add(0x7ed5_5d16).wrapping_add(a << 12);
    a = (a ^ 0xc761_c23c) ^ (a >> 19);
    a = a.wrapping_add(0x1656_67b1).wrapping_add(a << 5);
    a = a.wrapping_add(0xd3a2_646c) ^ (a << 9);
    a = a.wrapping_add(0xfd70_46c5).wrapping_add(a << 3);
    a = (a ^ 0xb55a_4f09) ^ (a >> 16);
    a.wrapping_mul(3_221_225_473)
}

impl HashFn {
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashFn::Sdbm => sdbm(key),
            HashFn::Djb2 => djb2(key),
            HashFn::Wt6 => wt6(key),
            HashFn::Crc32 => crc32(key),
        }
    }
}

/// `balance source`'s key: no hash function, only the avalanche if set. An IPv4 client on
/// an IPv6 socket (`::ffff:a.b.c.d`) is hashed as IPv6, as HAProxy does.
pub fn source_key(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4).fold(0, |h, i| h ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
        }
    }
}

/// The path of a request target (`path-only`): the target itself when it starts with '/',
/// what follows the authority of an absolute one, else nothing.
fn target_path(t: &[u8]) -> &[u8] {
    match t.first() {
        None | Some(b'*') => return &[],
        Some(b'/') => return t,
        _ => {}
    }
    let scheme = t.iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.'));
    let Some(s) = scheme else { return &[] };
    if s == 0 || !t[0].is_ascii_alphabetic() || !t[s..].starts_with(b"://") {
        return &[];
    }
    let rest = &t[s + 3..];
    match rest.iter().position(|&c| c == b'/') {
        Some(i) => &rest[i..],
        None => &[],
    }
}

/// `balance uri`'s key: the target (as received; `<scheme>://<authority><path>` for
/// HTTP/2) up to the query string unless `whole`, within `len` bytes and `depth`
/// directories.
pub fn uri_key<'a>(target: &'a str, o: &UriHash) -> &'a [u8] {
    let uri = if o.path_only { target_path(target.as_bytes()) } else { target.as_bytes() };
    let len = if o.len > 0 { uri.len().min(o.len as usize) } else { uri.len() };
    // HAProxy stores `depth N` as N + 1 and stops at that slash.
    let stop = if o.depth > 0 { o.depth + 1 } else { 0 };
    let (mut slashes, mut end) = (0, 0);
    while end < len {
        match uri[end] {
            b'/' => {
                slashes += 1;
                if slashes == stop {
                    break;
                }
            }
            b'?' if !o.whole => break,
            _ => {}
        }
        end += 1;
    }
    &uri[..end]
}

/// `balance hdr(<name>)`'s key from the header's first occurrence: its first
/// comma-separated value (commas in quotes do not split), trimmed; with
/// `use_domain_only`, the label before the last dot. None when empty.
pub fn hdr_key(value: &str, domain_only: bool) -> Option<&[u8]> {
    let v = value.as_bytes();
    let mut quoted = false;
    let end = v
        .iter()
        .position(|&c| {
            if c == b'"' {
                quoted = !quoted;
            }
            c == b',' && !quoted
        })
        .unwrap_or(v.len());
    let v = trim(&v[..end]);
    if v.is_empty() {
        return None;
    }
    if !domain_only {
        return Some(v);
    }
    let len = v.len();
    let (mut i, mut end, mut dohash) = (len, len, false);
    for _ in 0..len {
        if dohash {
            if v[i - 1] == b'.' {
                break;
            }
        } else if i < len && v[i] == b'.' {
            end = i;
            dohash = true;
        }
        i -= 1;
    }
    Some(&v[i..end])
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Server ids as HAProxy assigns them: an explicit `id` is kept; the others get the
/// smallest unused id from a counter that advances with every server, from 1.
pub fn server_ids(explicit: &[Option<u32>]) -> Vec<u32> {
    let used: std::collections::BTreeSet<u32> = explicit.iter().flatten().copied().collect();
    let mut taken = used.clone();
    let mut next = 1u32;
    explicit
        .iter()
        .map(|e| {
            let id = match e {
                Some(id) => *id,
                None => {
                    while taken.contains(&next) {
                        next = next.wrapping_add(1);
                    }
                    taken.insert(next);
                    next
                }
            };
            next = next.wrapping_add(1);
            id
        })
        .collect()
}

/// A server as the hash tables see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashServer {
    /// Up, not in maintenance or drain, weight above 0.
    pub usable: bool,
    pub backup: bool,
    /// Current weight (0..=256).
    pub weight: u32,
    /// Configured weight (the map's common divisor is taken over these).
    pub configured: u32,
    /// HAProxy's server id (`server_ids`).
    pub id: u32,
}

/// A backend's hash table for the servers as they are now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    /// No usable server.
    Empty,
    /// Map-based: server per slot, and the number of usable servers of the pool.
    Map { slots: Vec<usize>, used: usize },
    /// Consistent: sorted (key, server) points of the active servers, and the number of
    /// them in use.
    Ring { points: Vec<(u32, usize)>, used: usize },
    /// Consistent with no active server: the first usable backup, always.
    Backup(usize),
}

fn gcd_of(servers: &[HashServer]) -> u32 {
    let mut it = servers.iter().map(|s| s.configured).filter(|&w| w > 0);
    let Some(mut g) = it.next() else { return 1 };
    for mut w in it {
        if g <= 1 {
            break;
        }
        while w != 0 {
            let t = g % w;
            g = w;
            w = t;
        }
    }
    g
}

impl Table {
    pub fn build(servers: &[HashServer], kind: &HashType) -> Table {
        if kind.consistent {
            return Self::ring(servers);
        }
        let g = gcd_of(servers);
        let eweight = |s: &HashServer| s.weight.div_ceil(g);
        let usable = |s: &HashServer| s.usable && eweight(s) > 0;
        let actives: Vec<usize> = (0..servers.len()).filter(|&i| usable(&servers[i]) && !servers[i].backup).collect();
        let first_backup = (0..servers.len()).find(|&i| usable(&servers[i]) && servers[i].backup);
        let (pool_backup, tot, used) = if !actives.is_empty() {
            (false, actives.iter().map(|&i| eweight(&servers[i])).sum::<u32>(), actives.len())
        } else if let Some(b) = first_backup {
            // The slots are those of the first backup, filled from all usable backups
            // (HAProxy's quirk without `option allbackups`).
            (true, eweight(&servers[b]), 1)
        } else {
            return Table::Empty;
        };
        let tot = tot as i64;
        let mut score = vec![0i64; servers.len()];
        let mut slots = Vec::with_capacity(tot as usize);
        for _ in 0..tot {
            let (mut max, mut best) = (0i64, None);
            for (i, s) in servers.iter().enumerate() {
                if s.backup != pool_backup || !usable(s) {
                    continue;
                }
                if tot == 1 {
                    best = Some(i);
                    break;
                }
                score[i] += eweight(s) as i64;
                let v = (score[i] + tot) / tot;
                if best.is_none() || v > max {
                    max = v;
                    best = Some(i);
                }
            }
            let Some(b) = best else { return Table::Empty };
            slots.push(b);
            score[b] -= tot;
        }
        Table::Map { slots, used }
    }

    fn ring(servers: &[HashServer]) -> Table {
        let actives: Vec<usize> = (0..servers.len()).filter(|&i| servers[i].usable && !servers[i].backup).collect();
        if actives.is_empty() {
            return match (0..servers.len()).find(|&i| servers[i].usable && servers[i].backup) {
                Some(b) => Table::Backup(b),
                None => Table::Empty,
            };
        }
        let mut points = Vec::new();
        for &i in &actives {
            let s = &servers[i];
            for j in 0..16 * s.weight {
                points.push((full_hash(s.id.wrapping_mul(4096).wrapping_add(j)), i));
            }
        }
        // Stable: equal keys keep server order, as the tree keeps insertion order.
        points.sort_by_key(|p| p.0);
        Table::Ring { points, used: actives.len() }
    }

    /// Servers in use (1: the hash need not be computed, it is 0).
    pub fn used(&self) -> usize {
        match self {
            Table::Empty => 0,
            Table::Map { used, .. } | Table::Ring { used, .. } => *used,
            Table::Backup(_) => 1,
        }
    }

    /// The server for `hash`; on a ring, not `avoid` when another point's server can
    /// serve (the map ignores `avoid`, as HAProxy's).
    pub fn lookup(&self, hash: u32, avoid: Option<usize>) -> Option<usize> {
        match self {
            Table::Empty => None,
            Table::Backup(b) => Some(*b),
            Table::Map { slots, .. } => slots.get((hash % slots.len() as u32) as usize).copied(),
            Table::Ring { points, .. } => {
                let n = points.len();
                let next = match points.partition_point(|p| p.0 < hash) {
                    i if i == n => 0,
                    i => i,
                };
                let prev = if next == 0 { n - 1 } else { next - 1 };
                let dp = hash.wrapping_sub(points[prev].0);
                let dn = points[next].0.wrapping_sub(hash);
                let mut at = if dp <= dn { prev } else { next };
                let mut laps = 0;
                while Some(points[at].1) == avoid {
                    at += 1;
                    if at == n {
                        at = 0;
                        laps += 1;
                        if laps > 1 {
                            break;
                        }
                    }
                }
                Some(points[at].1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_functions_match_haproxys_vectors() {
        let cases: [(&str, [u32; 4]); 5] = [
            ("", [0x0000_0000, 0x0000_1505, 0xf99a_0360, 0x0000_0000]),
            ("/", [0x0000_002f, 0x0002_b5d4, 0x7073_cea5, 0x79d3_d2d4]),
            ("/foo/bar", [0x1179_5ffb, 0x925e_459c, 0xf2dd_e5c4, 0x3e3d_618f]),
            ("http://example.com/foo/bar?x=1", [0xce1d_d1b3, 0x9f0c_bcd2, 0xa950_2967, 0x000f_6902]),
            ("1wt", [0x1898_156e, 0x0b87_9321, 0x679c_3ca5, 0xedfe_0ca1]),
        ];
        for (input, [s, d, w, c]) in cases {
            let b = input.as_bytes();
            assert_eq!([sdbm(b), djb2(b), wt6(b), crc32(b)], [s, d, w, c], "{input:?}");
        }
        for (i, o) in [
            (0, 0xab4e_d927),
            (1, 0x3486_81b6),
            (0x0a00_0001, 0x2aa2_6e52),
            (4096, 0x49c2_008b),
            (4097, 0xa497_2c87),
            (8192, 0x405a_fe73),
            (0xffff_ffff, 0x7e64_c182),
        ] {
            assert_eq!(full_hash(i), o, "full_hash({i:#x})");
        }
    }

    #[test]
    fn keys_as_haproxy_cuts_them() {
        let o = UriHash::default();
        assert_eq!(uri_key("/a/b?x=1", &o), b"/a/b");
        assert_eq!(uri_key("/a/b?x=1", &UriHash { whole: true, ..o }), b"/a/b?x=1");
        assert_eq!(uri_key("/a/b/c", &UriHash { depth: 2, ..o }), b"/a/b");
        assert_eq!(uri_key("http://h/a/b", &UriHash { depth: 2, ..o }), b"http://h");
        assert_eq!(uri_key("/abcdef", &UriHash { len: 3, ..o }), b"/ab");
        assert_eq!(uri_key("http://h:80/p?q", &UriHash { path_only: true, ..o }), b"/p");
        assert_eq!(uri_key("http://h?x", &UriHash { path_only: true, ..o }), b"");
        for (v, want) in [
            ("haproxy.1wt.eu", "1wt"),
            ("www.example.com:8080", "example"),
            ("example.com", "example"),
            ("a.b", "a"),
            ("10.1.2.3", "2"),
            ("localhost", "localhost"),
            ("example.com.", "com"),
        ] {
            assert_eq!(hdr_key(v, true), Some(want.as_bytes()), "{v}");
        }
        assert_eq!(hdr_key(" a, b", false), Some(&b"a"[..]));
        assert_eq!(hdr_key("\"a,b\", c", false), Some(&b"\"a,b\""[..]));
        assert_eq!(hdr_key("  ", false), None);
        assert_eq!(source_key("10.0.0.1".parse().unwrap()), 0x0a00_0001);
        assert_eq!(source_key("::ffff:10.0.0.1".parse().unwrap()), 0x0000_ffff ^ 0x0a00_0001);
        assert_eq!(server_ids(&[Some(7), None, Some(1), None]), vec![7, 2, 1, 4]);
    }

    fn srv(weight: u32, backup: bool) -> HashServer {
        HashServer { usable: weight > 0, backup, weight, configured: weight, id: 0 }
    }

    #[test]
    fn the_map_is_filled_as_haproxys() {
        // a=1, b=2, c=3, z=0, d=5 and a backup of weight 1: 11 slots.
        let s = [srv(1, false), srv(2, false), srv(3, false), srv(0, false), srv(5, false), srv(1, true)];
        let Table::Map { slots, used } = Table::build(&s, &HashType::default()) else { panic!() };
        let names: String = slots.iter().map(|&i| ['a', 'b', 'c', 'z', 'd', 'k'][i]).collect();
        assert_eq!((names.as_str(), used), ("abdcdbdcdcd", 4));
        // Actives down, backups 2, 10, 3: two slots, both the second backup's.
        let mut s = [srv(1, false), srv(2, true), srv(10, true), srv(3, true)];
        s[0].usable = false;
        assert_eq!(Table::build(&s, &HashType::default()), Table::Map { slots: vec![2, 2], used: 1 });
        // The divisor counts a backup of weight 3 even when it is not in use: 6 slots.
        let s = [srv(2, false), srv(4, false), HashServer { usable: false, ..srv(3, true) }];
        let Table::Map { slots, .. } = Table::build(&s, &HashType::default()) else { panic!() };
        assert_eq!(slots, vec![0, 1, 1, 0, 1, 1]);
    }

    #[test]
    fn the_ring_is_haproxys() {
        let s: Vec<HashServer> =
            [1, 1, 2].iter().zip(1..).map(|(&w, id)| HashServer { id, ..srv(w, false) }).collect();
        let t = Table::build(&s, &HashType { consistent: true, function: HashFn::Sdbm, avalanche: true });
        let Table::Ring { points, .. } = &t else { panic!() };
        assert_eq!(points.len(), 64);
        let lowest: Vec<(u32, usize)> = points[..6].to_vec();
        assert_eq!(
            lowest,
            vec![(0x02ad_4232, 2), (0x03cc_7881, 2), (0x048e_6a3d, 2), (0x1631_2e7f, 2), (0x18b6_6546, 1), (0x1d80_4ea4, 0)]
        );
        let pick = |ip: &str| t.lookup(full_hash(source_key(ip.parse().unwrap())), None).unwrap();
        assert_eq!([pick("10.0.0.1"), pick("192.168.1.20"), pick("2001:db8::1")], [2, 0, 0]);
        // Avoiding a server walks on to the next point of another.
        let h = full_hash(source_key("10.0.0.1".parse().unwrap()));
        assert_ne!(t.lookup(h, Some(2)), Some(2));
    }
}

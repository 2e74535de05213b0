//! Server selection with HAProxy's `balance` algorithms.
//!
//! - `roundrobin`: smooth weighted round robin (each pick adds every server's weight to its
//!   credit and takes the richest, which then pays the total), so weights 5:1:1 give
//!   a a b a c a a, not a a a a a b c. Runtime weight changes apply at once.
//! - `static-rr`: the same, on the configured weights (runtime changes are ignored).
//! - `leastconn`: fewest active connections relative to weight; ties go round robin.
//! - `source`, `uri`, `hdr(<name>)`: HAProxy 2.6's own hashing, bit for bit (`hashing`:
//!   the same key, function, `hash-type` map or ring, server ids), so clients keep their
//!   servers across a migration; a request without the header falls back to round
//!   robin, as HAProxy does.
//! - `random(<draws>)`: `draws` weighted random picks, the least loaded wins.
//!
//! Backup servers are used only when no regular server is usable, and then only the first
//! usable one (HAProxy without `option allbackups`).
use std::net::IpAddr;

use crate::{
    haproxy::model::Balance,
    hashing::{full_hash, hdr_key, source_key, uri_key, HashServer, HashType, Table, UriHash},
};

/// One server as selection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Up, not in maintenance or drain, and with a non-zero weight.
    pub usable: bool,
    pub backup: bool,
    /// Current (runtime) weight.
    pub weight: u32,
    /// Weight from the configuration (what static-rr uses).
    pub static_weight: u32,
    /// Connections in progress (leastconn, random).
    pub active: u32,
}

/// What a request offers to the hash-based algorithms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Key<'a> {
    pub source: Option<IpAddr>,
    /// The request target as HAProxy hashes it: as received over HTTP/1 (origin or
    /// absolute form), `<scheme>://<authority><path>` over HTTP/2.
    pub path: Option<&'a str>,
    /// The value of the header named by `balance hdr(<name>)`, if the request has it.
    pub header: Option<&'a str>,
}

/// What the hash-based algorithms need besides the servers' state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hashing {
    pub kind: HashType,
    pub uri: UriHash,
    pub domain_only: bool,
    /// HAProxy's server ids, in server order (`hashing::server_ids`).
    pub ids: Vec<u32>,
}

pub struct Balancer {
    algo: Balance,
    hashing: Hashing,
    /// The hash table and the server states it was built for.
    table: Option<(Vec<HashServer>, Table)>,
    /// Smooth round robin credit per server.
    credit: Vec<i64>,
    /// Rotation point for leastconn ties.
    next: usize,
    rng: u64,
}

impl Balancer {
    pub fn new(algo: Balance) -> Self {
        Self::with_hashing(algo, Hashing::default())
    }

    pub fn with_hashing(algo: Balance, hashing: Hashing) -> Self {
        Balancer { algo, hashing, table: None, credit: Vec::new(), next: 0, rng: 0x853c_49e6_748f_ea9b }
    }

    pub fn algo(&self) -> &Balance {
        &self.algo
    }

    /// Index of the chosen server, or None when no server is usable.
    pub fn pick(&mut self, servers: &[Candidate], key: &Key) -> Option<usize> {
        self.pick_avoiding(servers, key, None)
    }

    /// As `pick`, not `avoid` (a retry's failed server) while another is usable. Round
    /// robin still gives the avoided server its turn, as HAProxy's does: the next
    /// request goes to it again, not one further along.
    pub fn pick_avoiding(&mut self, servers: &[Candidate], key: &Key, avoid: Option<usize>) -> Option<usize> {
        if self.credit.len() != servers.len() {
            self.credit = vec![0; servers.len()];
        }
        let regular: Vec<usize> =
            (0..servers.len()).filter(|&i| servers[i].usable && !servers[i].backup).collect();
        let pool = if regular.is_empty() {
            let backup = (0..servers.len()).find(|&i| servers[i].usable && servers[i].backup)?;
            vec![backup]
        } else {
            regular
        };
        let algo = self.algo.clone();
        if algo.hashes() {
            return self.by_haproxy_hash(servers, &pool, key, avoid);
        }
        let avoid = avoid.filter(|x| pool.len() > 1 && pool.contains(x));
        if let Balance::RoundRobin | Balance::StaticRr = algo {
            let stat = matches!(algo, Balance::StaticRr);
            let weight = |c: &Candidate| if stat { c.static_weight.max(1) } else { c.weight };
            return Some(self.smooth_rr_avoiding(servers, &pool, weight, avoid));
        }
        let pool: Vec<usize> = pool.into_iter().filter(|&i| Some(i) != avoid).collect();
        match algo {
            Balance::RoundRobin | Balance::StaticRr => unreachable!("handled above"),
            Balance::LeastConn => Some(self.least_conn(servers, &pool)),
            Balance::Source | Balance::Uri | Balance::Hdr(_) => unreachable!("hashed above"),
            Balance::Random(draws) => Some(self.random(servers, &pool, draws.max(1))),
        }
    }

    /// `source`, `uri`, `hdr`: HAProxy's table for the servers as they are (rebuilt when
    /// their states change), and its hash of the request's key.
    fn by_haproxy_hash(&mut self, servers: &[Candidate], pool: &[usize], key: &Key, avoid: Option<usize>) -> Option<usize> {
        let state: Vec<HashServer> = servers
            .iter()
            .enumerate()
            .map(|(i, c)| HashServer {
                usable: c.usable,
                backup: c.backup,
                weight: c.weight,
                configured: c.static_weight,
                id: self.hashing.ids.get(i).copied().unwrap_or(i as u32 + 1),
            })
            .collect();
        if self.table.as_ref().is_none_or(|(s, _)| *s != state) {
            let table = Table::build(&state, &self.hashing.kind);
            self.table = Some((state, table));
        }
        let (h, table) = (&self.hashing, &self.table.as_ref()?.1);
        if table.used() == 0 {
            return None;
        }
        // One server in use: HAProxy takes it without looking at the request.
        let hash = if table.used() == 1 {
            0
        } else {
            let raw = match &self.algo {
                Balance::Source => key.source.map(source_key),
                Balance::Uri => key.path.map(|t| h.kind.function.hash(uri_key(t, &h.uri))),
                _ => key.header.and_then(|v| hdr_key(v, h.domain_only)).map(|k| h.kind.function.hash(k)),
            };
            match raw {
                Some(x) if h.kind.avalanche => full_hash(x),
                Some(x) => x,
                None => return Some(self.smooth_rr(servers, pool, |c| c.weight)),
            }
        };
        table.lookup(hash, avoid)
    }

    fn smooth_rr(&mut self, servers: &[Candidate], pool: &[usize], weight: impl Fn(&Candidate) -> u32) -> usize {
        self.smooth_rr_avoiding(servers, pool, weight, None)
    }

    fn smooth_rr_avoiding(
        &mut self,
        servers: &[Candidate],
        pool: &[usize],
        weight: impl Fn(&Candidate) -> u32,
        avoid: Option<usize>,
    ) -> usize {
        let total: i64 = pool.iter().map(|&i| weight(&servers[i]) as i64).sum();
        let mut best: Option<usize> = None;
        for &i in pool {
            self.credit[i] += weight(&servers[i]) as i64;
            if Some(i) != avoid && best.is_none_or(|b| self.credit[i] > self.credit[b]) {
                best = Some(i);
            }
        }
        let best = best.unwrap_or(pool[0]);
        self.credit[best] -= total;
        best
    }

    fn least_conn(&mut self, servers: &[Candidate], pool: &[usize]) -> usize {
        // Start the scan at a rotating point so equal loads take turns.
        let start = self.next % pool.len();
        self.next = self.next.wrapping_add(1);
        let mut best = pool[start];
        for k in 1..pool.len() {
            let i = pool[(start + k) % pool.len()];
            let (a, b) = (&servers[i], &servers[best]);
            // a.active / a.weight < b.active / b.weight, without division.
            if (a.active as u64) * (b.weight.max(1) as u64) < (b.active as u64) * (a.weight.max(1) as u64) {
                best = i;
            }
        }
        best
    }

    fn random(&mut self, servers: &[Candidate], pool: &[usize], draws: u32) -> usize {
        let total: u64 = pool.iter().map(|&i| servers[i].weight.max(1) as u64).sum();
        let mut best: Option<usize> = None;
        for _ in 0..draws {
            let r = self.next_rand() % total;
            let i = weighted_slot(servers, pool, r);
            best = match best {
                Some(b) if servers[b].active <= servers[i].active => Some(b),
                _ => Some(i),
            };
        }
        best.unwrap_or(pool[0])
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: selection needs spread, not secrecy.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn weighted_slot(servers: &[Candidate], pool: &[usize], mut r: u64) -> usize {
    for &i in pool {
        let w = servers[i].weight.max(1) as u64;
        if r < w {
            return i;
        }
        r -= w;
    }
    pool[pool.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(weight: u32) -> Candidate {
        Candidate { usable: true, backup: false, weight, static_weight: weight, active: 0 }
    }

    fn counts(b: &mut Balancer, s: &[Candidate], n: usize, key: &Key) -> Vec<usize> {
        let mut c = vec![0; s.len()];
        for _ in 0..n {
            c[b.pick(s, key).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn roundrobin_is_weighted_and_smooth() {
        let s = [up(5), up(1), up(1)];
        let mut b = Balancer::new(Balance::RoundRobin);
        let seq: Vec<usize> = (0..7).map(|_| b.pick(&s, &Key::default()).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(&mut b, &s, 700, &Key::default()), [500, 100, 100]);
        let eq = [up(1), up(1), up(1)];
        let seq: Vec<usize> = (0..6).map(|_| b.pick(&eq, &Key::default()).unwrap()).collect();
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 2);
    }

    #[test]
    fn runtime_weight_applies_to_roundrobin_not_static_rr() {
        let mut s = [up(1), up(1)];
        s[1].weight = 3;
        let mut rr = Balancer::new(Balance::RoundRobin);
        assert_eq!(counts(&mut rr, &s, 400, &Key::default()), [100, 300]);
        let mut st = Balancer::new(Balance::StaticRr);
        assert_eq!(counts(&mut st, &s, 400, &Key::default()), [200, 200]);
    }

    #[test]
    fn unusable_servers_get_nothing_and_backups_only_when_all_are_down() {
        let mut s = [up(1), up(1), Candidate { backup: true, ..up(1) }, Candidate { backup: true, ..up(1) }];
        s[1].usable = false;
        let mut b = Balancer::new(Balance::RoundRobin);
        assert_eq!(counts(&mut b, &s, 10, &Key::default()), [10, 0, 0, 0]);
        s[0].usable = false;
        assert_eq!(counts(&mut b, &s, 10, &Key::default()), [0, 0, 10, 0], "first backup only");
        s[2].usable = false;
        assert_eq!(counts(&mut b, &s, 10, &Key::default()), [0, 0, 0, 10]);
        s[3].usable = false;
        assert_eq!(b.pick(&s, &Key::default()), None);
    }

    #[test]
    fn leastconn_picks_the_least_loaded_relative_to_weight() {
        let mut s = [up(1), up(1), up(2)];
        s[0].active = 3;
        s[1].active = 1;
        s[2].active = 3; // 3/2 = 1.5 per weight
        let mut b = Balancer::new(Balance::LeastConn);
        assert_eq!(b.pick(&s, &Key::default()), Some(1));
        s[1].active = 2; // 2 vs 1.5
        assert_eq!(b.pick(&s, &Key::default()), Some(2));
        // Ties take turns.
        let eq = [up(1), up(1), up(1)];
        assert_eq!(counts(&mut b, &eq, 30, &Key::default()), [10, 10, 10]);
    }

    #[test]
    fn hashes_are_sticky_and_spread() {
        let s = [up(1), up(1), up(1)];
        for algo in [Balance::Source, Balance::Uri, Balance::Hdr("x-user".into())] {
            let mut b = Balancer::new(algo.clone());
            let mut spread = [0; 3];
            for n in 0..300 {
                let ip: IpAddr = format!("203.0.113.{}", n % 250).parse().unwrap();
                let path = format!("/item/{n}");
                let key = Key { source: Some(ip), path: Some(&path), header: Some(&path) };
                let first = b.pick(&s, &key).unwrap();
                assert_eq!(b.pick(&s, &key), Some(first), "{algo:?} not sticky");
                spread[first] += 1;
            }
            assert!(spread.iter().all(|&c| c > 60), "{algo:?}: {spread:?}");
        }
        // hdr() without the header falls back to round robin.
        let mut b = Balancer::new(Balance::Hdr("x-user".into()));
        assert_eq!(counts(&mut b, &s, 30, &Key::default()), [10, 10, 10]);
    }

    #[test]
    fn random_two_draws_avoids_the_loaded_server() {
        let mut s = [up(1), up(1)];
        s[0].active = 50;
        let mut b = Balancer::new(Balance::Random(2));
        let c = counts(&mut b, &s, 1000, &Key::default());
        // With two draws the loaded server wins only when both draws hit it (~1/4).
        assert!(c[0] < 350 && c[1] > 650, "{c:?}");
        let mut one = Balancer::new(Balance::Random(1));
        let c = counts(&mut one, &s, 1000, &Key::default());
        assert!(c[0] > 400 && c[1] > 400, "{c:?}");
    }
}

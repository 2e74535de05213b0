//! Linearizability checker for a key-value store whose keys are independent registers.
//!
//! Algorithm: Wing & Gong's search as refined by Lowe ("WGL"): depth-first search over
//! linearization orders, memoizing every visited (set of linearized ops, register value)
//! so no configuration is explored twice. Linearizability is local (Herlihy & Wing), so
//! the history is split by key and each register is checked on its own.
//!
//! Ops that never returned (ret None or outcome Unknown) get ret = infinity and need not
//! be linearized at all: omitting one is the same as linearizing it last, where nothing
//! observes it. Unanswered reads constrain nothing and are dropped up front.

use std::collections::{BTreeMap, HashMap, HashSet};

/// What a client did to one key, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write(Option<String>),                               // put value (None = delete)
    Read,                                                // GET
    Cas { expect: Option<String>, new: Option<String> }, // compare-and-set (None = absent)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,                   // write acknowledged
    Read(Option<String>), // value read (None = not found)
    CasResult(bool),      // cas acknowledged with this result
    Unknown,              // timed out / connection lost: may or may not have taken effect
}

#[derive(Debug, Clone)]
pub struct Event {
    pub client: usize,
    pub key: String,
    pub op: Op,
    pub call: u64,
    pub ret: Option<u64>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    Violation(Violation),
    /// The search used up `max_steps` on this key before finding or refuting an order.
    Inconclusive {
        key: String,
        steps: u64,
    },
}

/// Per-key step budget used by `check` (a step = one attempt to linearize an op, ~1µs).
/// Linearizable histories usually need tens of steps per op; refutations must exhaust the
/// search space, which is where the budget (and memory, ~100 bytes per state) matters.
pub const DEFAULT_MAX_STEPS: u64 = 5_000_000;

/// Checks every key. An inconclusive search is reported as a Violation whose explanation
/// starts with "inconclusive" (failing loudly beats passing silently); use
/// `check_with_limit` to tell the two apart.
pub fn check(history: &[Event], initial: Option<String>) -> Result<(), Violation> {
    check_with_limit(history, initial, DEFAULT_MAX_STEPS).map_err(|e| match e {
        CheckError::Violation(v) => v,
        CheckError::Inconclusive { key, steps } => {
            Violation { key, explanation: format!("inconclusive: search gave up after {steps} steps") }
        }
    })
}

pub fn check_with_limit(
    history: &[Event],
    initial: Option<String>,
    max_steps: u64,
) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new(); // sorted: deterministic reports
    for e in history {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    for (key, events) in by_key {
        check_key(key, &events, &initial, max_steps)?;
    }
    Ok(())
}

/// A register op with values interned to small ids (0 = absent) so states hash cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Write(u32),
    Read(u32),
    Cas { expect: u32, new: u32, result: Option<bool> }, // result None = outcome unknown
}

struct KOp {
    kind: Kind,
    call: u64,
    ret: u64, // u64::MAX when pending
    pending: bool,
    event: usize, // index into the key's events, for explanations
}

/// Sequential register semantics: the state after `k`, or None if `k`'s observed outcome
/// is impossible in state `s`.
fn apply(k: Kind, s: u32) -> Option<u32> {
    match k {
        Kind::Write(v) => Some(v),
        Kind::Read(v) => (v == s).then_some(s),
        Kind::Cas { expect, new, result } => match (result, s == expect) {
            (Some(r), hit) if r != hit => None,
            (_, hit) => Some(if hit { new } else { s }),
        },
    }
}

fn describe(e: &Event) -> String {
    let ret = e.ret.map_or("never".to_string(), |r| r.to_string());
    format!("client {} {:?} -> {:?} [call {}, ret {}]", e.client, e.op, e.outcome, e.call, ret)
}

fn check_key(key: &str, events: &[&Event], init: &Option<String>, max_steps: u64) -> Result<(), CheckError> {
    let violation = |explanation| CheckError::Violation(Violation { key: key.to_string(), explanation });
    let (mut ids, mut names) = (HashMap::new(), Vec::new());
    let mut intern = |v: &Option<String>| -> u32 {
        *ids.entry(v.clone()).or_insert_with(|| {
            names.push(v.clone());
            names.len() as u32 - 1
        })
    };
    intern(&None); // id 0 = absent
    let init = intern(init);

    let mut ops = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.ret.is_some_and(|r| r < e.call) {
            return Err(violation(format!("malformed event (ret < call): {}", describe(e))));
        }
        let pending = e.ret.is_none() || e.outcome == Outcome::Unknown;
        let result = match (&e.outcome, pending) {
            (Outcome::CasResult(b), false) => Some(*b),
            _ => None,
        };
        let kind = match (&e.op, pending, &e.outcome) {
            (Op::Read, true, _) => continue,
            (Op::Read, false, Outcome::Read(v)) => Kind::Read(intern(v)),
            (Op::Write(v), true, _) | (Op::Write(v), false, Outcome::Ok) => Kind::Write(intern(v)),
            (Op::Cas { expect, new }, ..) if pending || result.is_some() => {
                Kind::Cas { expect: intern(expect), new: intern(new), result }
            }
            _ => return Err(violation(format!("malformed event: {}", describe(e)))),
        };
        let ret = if pending { u64::MAX } else { e.ret.unwrap() };
        ops.push(KOp { kind, call: e.call, ret, pending, event: i });
    }

    // Cheap pre-check with a precise message: a read of a value nothing could have produced.
    let mut producible = HashSet::from([init]);
    for o in &ops {
        if let Kind::Write(v) | Kind::Cas { new: v, .. } = o.kind {
            producible.insert(v);
        }
    }
    if let Some(o) = ops.iter().find(|o| matches!(o.kind, Kind::Read(v) if !producible.contains(&v))) {
        let e = describe(events[o.event]);
        return Err(violation(format!("read returned a value that was never written: {e}")));
    }

    ops.sort_by_key(|o| (o.pending, o.call, o.ret)); // definite ops first (see Search)
    let n_def = ops.iter().filter(|o| !o.pending).count();
    let search = Search { ops: &ops, n_def, dw: n_def.div_ceil(64) };
    match search.run(init, max_steps) {
        Ok(()) => Ok(()),
        Err(None) => Err(CheckError::Inconclusive { key: key.to_string(), steps: max_steps }),
        Err(Some(best)) => Err(violation(search.explain(&best, init, events, &names))),
    }
}

/// Ops 0..n_def have definite outcomes, the rest are pending; both parts sorted by call.
/// In the linearized-set bitset, definite ops use words 0..dw and pending ops the words
/// after, so the memo key can drop the all-ones prefix (everything before the first
/// unlinearized definite op) and all-zero tail, keeping keys a few words long.
struct Search<'a> {
    ops: &'a [KOp],
    n_def: usize,
    dw: usize,
}

struct Frame {
    lo: usize, // first definite op not yet linearized
    cands: Vec<usize>,
    next: usize,
}

impl Search<'_> {
    fn slot(&self, i: usize) -> usize {
        i + if i < self.n_def { 0 } else { self.dw * 64 - self.n_def }
    }
    fn has(&self, lin: &[u64], i: usize) -> bool {
        lin[self.slot(i) / 64] >> (self.slot(i) % 64) & 1 == 1
    }
    fn toggle(&self, lin: &mut [u64], i: usize) {
        lin[self.slot(i) / 64] ^= 1 << (self.slot(i) % 64);
    }
    fn key(&self, lin: &[u64], lo: usize, state: u32) -> (u32, u32, Vec<u64>) {
        let (start, mut end) = (lo / 64, self.dw);
        while end > start && lin[end - 1] == 0 {
            end -= 1;
        }
        (start as u32, state, lin[start..end].iter().chain(&lin[self.dw..]).copied().collect())
    }

    /// Definite ops that may be linearized next: those called no later than the earliest
    /// return among unlinearized ops (else that op would have to precede them; equal
    /// timestamps count as concurrent). Scanning
    /// in call order we can stop at the first call after the running minimum, since every
    /// later op also returns after it. Pending ops (ret = infinity) never lower it.
    fn frontier(&self, lin: &[u64], lo: usize) -> (Vec<usize>, u64) {
        let (mut out, mut min_ret) = (Vec::new(), u64::MAX);
        for i in lo..self.n_def {
            if self.ops[i].call > min_ret {
                break;
            }
            if !self.has(lin, i) {
                min_ret = min_ret.min(self.ops[i].ret);
                out.push(i);
            }
        }
        (out, min_ret)
    }

    fn candidates(&self, lin: &[u64], lo: usize, state: u32) -> Vec<usize> {
        let (mut out, min_ret) = self.frontier(lin, lo);
        // Partial-order reduction: a legal read or failed cas can be moved to the front of
        // any valid completion from here (it changes nothing and no unlinearized op had to
        // precede it), so trying it alone loses no solutions and prunes a lot.
        let no_op =
            |i: &&usize| matches!(self.ops[**i].kind, Kind::Read(_) | Kind::Cas { result: Some(false), .. });
        if let Some(&i) = out.iter().filter(no_op).find(|&&i| apply(self.ops[i].kind, state).is_some()) {
            return vec![i];
        }
        let pend: Vec<usize> = (self.n_def..self.ops.len())
            .take_while(|&i| self.ops[i].call <= min_ret)
            .filter(|&i| !self.has(lin, i))
            .collect();
        if pend.is_empty() {
            return out;
        }
        // Pending ops go last. Any solution can be rewritten so each pending op sits just
        // before the next definite op D, keeping only ops whose result is observed: by D
        // (a read or cas; the state before a write is irrelevant) or by a pending cas that
        // then changes the state. Anything else is equivalent to omitting the op. Without
        // this, lingering never-applied pending writes multiply the state space.
        let (mut wants, mut any_but) = (HashSet::new(), Vec::new());
        for &i in out.iter().chain(&pend) {
            match self.ops[i].kind {
                Kind::Read(v) | Kind::Cas { expect: v, result: Some(true), .. } => {
                    wants.insert(v);
                }
                Kind::Cas { expect, new, result: None } if expect != new => {
                    wants.insert(expect);
                }
                Kind::Cas { expect, result: Some(false), .. } => any_but.push(expect),
                _ => {}
            }
        }
        let observed = |s: u32| wants.contains(&s) || any_but.iter().any(|&e| e != s);
        // Called pending ops with the same effect (e.g. several timed-out deletes) are
        // interchangeable from here on; trying only the first avoids 2^k duplicate subsets.
        let mut kinds = HashSet::new();
        out.extend(pend.into_iter().filter(|&p| {
            let s = apply(self.ops[p].kind, state).unwrap(); // pending ops always apply
            s != state && observed(s) && kinds.insert(self.ops[p].kind)
        }));
        out
    }

    /// Ok if a linearization exists; Err(None) if the step budget ran out; otherwise
    /// Err(Some(longest linearizable prefix found)).
    fn run(&self, init: u32, max_steps: u64) -> Result<(), Option<Vec<usize>>> {
        let mut lin = vec![0u64; self.dw + (self.ops.len() - self.n_def).div_ceil(64)];
        let (mut state, mut done, mut best_done, mut steps) = (init, 0, 0, 0u64);
        let mut path: Vec<(usize, u32)> = Vec::new(); // (op linearized, state before it)
        let mut best: Vec<usize> = Vec::new();
        let mut seen = HashSet::new();
        let mut frames = vec![Frame { lo: 0, cands: self.candidates(&lin, 0, init), next: 0 }];
        while let Some(f) = frames.last_mut() {
            if done == self.n_def {
                return Ok(()); // remaining pending ops are omitted (= linearized last)
            }
            if f.next == f.cands.len() {
                // Dead end: undo the op that led to this frame and resume its parent.
                frames.pop();
                if let Some((i, prev)) = path.pop() {
                    self.toggle(&mut lin, i);
                    state = prev;
                    done -= (i < self.n_def) as usize;
                }
                continue;
            }
            let (i, mut lo) = (f.cands[f.next], f.lo);
            f.next += 1;
            steps += 1;
            if steps > max_steps {
                return Err(None);
            }
            let Some(next) = apply(self.ops[i].kind, state) else { continue };
            self.toggle(&mut lin, i);
            while lo < self.n_def && self.has(&lin, lo) {
                lo += 1;
            }
            if !seen.insert(self.key(&lin, lo, next)) {
                self.toggle(&mut lin, i); // configuration already explored (and failed)
                continue;
            }
            path.push((i, state));
            state = next;
            done += (i < self.n_def) as usize;
            if done > best_done {
                best_done = done;
                best = path.iter().map(|p| p.0).collect();
            }
            frames.push(Frame { lo, cands: self.candidates(&lin, lo, state), next: 0 });
        }
        Err(Some(best))
    }

    fn explain(&self, best: &[usize], init: u32, events: &[&Event], names: &[Option<String>]) -> String {
        let mut lin = vec![0u64; self.dw + (self.ops.len() - self.n_def).div_ceil(64)];
        let mut state = init;
        for &i in best {
            self.toggle(&mut lin, i);
            state = apply(self.ops[i].kind, state).expect("prefix replays");
        }
        let show = |ids: &[usize]| {
            ids.iter().map(|&i| describe(events[self.ops[i].event])).collect::<Vec<_>>().join("; ")
        };
        format!(
            "not linearizable: longest linearizable prefix covers {} of {} completed ops \
             (register then holds {:?}); it ends with [{}]; no valid order continues with any of [{}]",
            best.iter().filter(|&&i| i < self.n_def).count(),
            self.n_def,
            names[state as usize],
            show(&best[best.len().saturating_sub(3)..]),
            show(&self.frontier(&lin, 0).0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses "client key op call ret" events separated by ';'. op is w=v (write), r=v
    /// (read result), c=e>n:true|false (cas); "-" is the absent value; ret "?" = Unknown.
    fn h(spec: &str) -> Vec<Event> {
        let val = |v: &str| (v != "-").then(|| v.to_string());
        let event = |ev: &str| {
            let f: Vec<&str> = ev.split_whitespace().collect();
            let (op, outcome) = match f[2].split_once('=').unwrap() {
                ("w", v) => (Op::Write(val(v)), Outcome::Ok),
                ("r", v) => (Op::Read, Outcome::Read(val(v))),
                (_, v) => {
                    let (e, rest) = v.split_once('>').unwrap();
                    let (n, ok) = rest.split_once(':').unwrap_or((rest, "?"));
                    (Op::Cas { expect: val(e), new: val(n) }, Outcome::CasResult(ok == "true"))
                }
            };
            let (client, call, ret) = (f[0].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().ok());
            let outcome = if ret.is_some() { outcome } else { Outcome::Unknown };
            Event { client, key: f[1].into(), op, call, ret, outcome }
        };
        spec.split(';').map(event).collect()
    }

    fn ok(spec: &str) {
        assert_eq!(check(&h(spec), None), Ok(()), "{spec}");
    }
    fn bad(spec: &str) -> String {
        check(&h(spec), None).expect_err(spec).explanation
    }

    #[test]
    fn valid_histories_pass() {
        ok("0 k r=- 0 1; 0 k w=a 2 3; 1 k r=a 4 5; 0 k c=a>b:true 6 7; 1 k c=a>c:false 8 9; 0 k w=- 10 11");
        // Two concurrent writes, then reads consistent with either order.
        ok("0 k w=a 0 10; 1 k w=b 1 9; 2 k r=a 11 12; 1 k r=a 13 14");
        ok("0 k w=a 0 10; 1 k w=b 1 9; 2 k r=b 11 12; 1 k r=b 13 14");
        // Readers overlapping the writes may also see the intermediate value.
        ok("0 k w=a 0 10; 1 k w=b 1 9; 2 k r=a 2 3; 3 k r=b 4 5; 2 k r=b 11 12");
    }

    #[test]
    fn violations_are_reported() {
        // Stale read after a completed write.
        assert!(bad("0 k w=a 0 1; 1 k r=- 2 3").starts_with("not linearizable"));
        // Read of a value never written.
        assert!(bad("0 k w=a 0 1; 1 k r=zzz 0 3").contains("never written"));
        // Lost acknowledged write: the explanation names the write that must have happened.
        assert!(bad("0 k w=a 0 1; 0 k w=b 2 3; 1 k r=a 4 5").contains("Write(Some(\"b\"))"));
    }

    #[test]
    fn unknown_outcomes() {
        // A timed-out write may show up later...
        ok("0 k w=a 0 1; 1 k w=b 2 ?; 2 k r=a 10 11; 2 k r=b 20 21; 0 k r=b 30 31");
        // ...but not before it was called...
        bad("0 k w=a 0 1; 2 k r=b 2 3; 1 k w=b 4 ?");
        // ...or never at all (an unanswered read constrains nothing).
        ok("0 k w=a 0 1; 1 k w=b 2 ?; 3 k r=b 3 ?; 2 k r=a 10 11; 2 k c=b>c:false 12 13");
        // Chains of pending ops: an unknown write enabling an unknown cas.
        ok("0 k w=x 0 ?; 1 k c=x>y 1 ?; 2 k r=y 5 6");
    }

    #[test]
    fn cas_consistency() {
        bad("0 k w=a 0 1; 1 k c=a>b:true 2 5; 2 k c=a>c:true 3 6"); // both concurrent cas won
        ok("0 k w=a 0 1; 1 k c=a>b:true 2 5; 2 k c=a>c:false 3 6; 0 k r=b 7 8");
        ok("0 k c=->x:true 0 1; 1 k r=x 2 3");
        assert!(check(&h("0 k c=->x:true 0 1"), Some("init".into())).is_err());
    }

    #[test]
    fn keys_are_checked_independently() {
        // Key x is fine; key y loses its acknowledged write.
        let hist = h("0 x w=1 0 1; 1 y w=2 0 1; 2 x r=1 2 3; 2 y r=2 4 5; 0 x w=3 6 7; 1 y r=- 8 9");
        assert_eq!(check(&hist, None).unwrap_err().key, "y");
        assert_eq!(check(&hist[..5], None), Ok(()));
    }

    #[test]
    fn step_limit_gives_inconclusive() {
        let hist = h("0 k w=a 0 10; 1 k w=b 1 9; 2 k r=a 11 12");
        let err = check_with_limit(&hist, None, 1).unwrap_err();
        assert_eq!(err, CheckError::Inconclusive { key: "k".into(), steps: 1 });
        assert_eq!(check(&hist, None), Ok(()));
    }

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// Simulates an atomic register per key: each op takes effect at a random instant
    /// strictly inside its [call, ret] interval, applied in that order. One op in `unk`
    /// times out (Unknown); timed-out writes/cas take effect or not at random.
    fn gen_history(rng: &mut Rng, keys: u64, clients: usize, per_client: usize, unk: u64) -> Vec<Event> {
        let mut plans = Vec::new(); // (effect time, client, key, call, ret, op kind, unknown)
        for c in 0..clients {
            let mut t = rng.below(10);
            for _ in 0..per_client {
                let (call, lin) = (t, t + 1 + rng.below(20));
                let ret = lin + 1 + rng.below(20);
                plans.push((lin, c, rng.below(keys), call, ret, rng.below(10), rng.below(unk) == 0));
                t = ret + 1 + rng.below(10);
            }
        }
        plans.sort_by_key(|p| p.0);
        let (mut reg, mut history) = (HashMap::new(), Vec::new());
        for (n, (_, client, key, call, ret, kind, unknown)) in plans.into_iter().enumerate() {
            let cur: &mut Option<String> = reg.entry(key).or_default();
            let (op, outcome) = match kind {
                0 => (Op::Write(None), Outcome::Ok),
                1..=4 => (Op::Write(Some(format!("v{n}"))), Outcome::Ok), // values are unique
                5..=7 => (Op::Read, Outcome::Read(cur.clone())),
                _ => {
                    let expect = if rng.below(2) == 0 { cur.clone() } else { Some("v1".into()) };
                    let hit = *cur == expect;
                    (Op::Cas { expect, new: Some(format!("v{n}")) }, Outcome::CasResult(hit))
                }
            };
            if !unknown || rng.below(2) == 0 {
                match &op {
                    Op::Write(v) => *cur = v.clone(),
                    Op::Cas { expect, new } if cur == expect => *cur = new.clone(),
                    _ => {}
                }
            }
            let (ret, outcome) = if unknown { (None, Outcome::Unknown) } else { (Some(ret), outcome) };
            history.push(Event { client, key: format!("k{key}"), op, call, ret, outcome });
        }
        history
    }

    #[test]
    fn random_linearizable_histories_pass_and_corruptions_fail() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut stale_cases = 0;
        for round in 0..300 {
            let mut h = gen_history(&mut rng, 3, 5, 30, 15);
            assert_eq!(check(&h, None), Ok(()), "round {round}");
            let done = |e: &Event| e.ret.is_some() && e.outcome != Outcome::Unknown;
            let reads: Vec<usize> = (0..h.len()).filter(|&i| h[i].op == Op::Read && done(&h[i])).collect();

            // Corruption 1: a read returns a value nobody wrote.
            let i = reads[rng.below(reads.len() as u64) as usize];
            let mut bad = h.clone();
            bad[i].outcome = Outcome::Read(Some("never-written".into()));
            assert_eq!(check(&bad, None).unwrap_err().key, h[i].key, "round {round}");

            // Corruption 2 (needs the real search): read R returns the value of write W1
            // though acknowledged write W2 started after W1 returned and finished before R
            // was called. Values are unique, so nothing can bring W1's value back.
            let acked = |e: &Event, k: &str| matches!(e.op, Op::Write(_)) && done(e) && e.key == k;
            let stale = reads.iter().find_map(|&r| {
                let w2 = h.iter().filter(|e2| acked(e2, &h[r].key) && e2.ret.unwrap() < h[r].call);
                let mut w1 = w2.flat_map(|e2| {
                    h.iter().filter(move |e1| {
                        acked(e1, &e2.key) && e1.ret.unwrap() < e2.call && e1.op != Op::Write(None)
                    })
                });
                w1.next().map(|e1| (r, e1.op.clone()))
            });
            if let Some((r, Op::Write(v))) = stale {
                h[r].outcome = Outcome::Read(v);
                assert_eq!(check(&h, None).unwrap_err().key, h[r].key, "round {round}: stale read accepted");
                stale_cases += 1;
            }
        }
        assert!(stale_cases > 100, "only {stale_cases} stale cases generated");
    }

    /// Exhaustive reference checker for tiny histories: every order of the definite ops
    /// plus any subset of the pending ones. Cross-checks the pruning rules in `candidates`.
    fn brute(ops: &[Event], used: &mut [bool], state: &Option<String>) -> bool {
        let pending = |e: &Event| e.ret.is_none() || e.outcome == Outcome::Unknown;
        if (0..ops.len()).all(|i| used[i] || pending(&ops[i])) {
            return true;
        }
        for (i, o) in ops.iter().enumerate() {
            if used[i] || (0..ops.len()).any(|j| !used[j] && !pending(&ops[j]) && ops[j].ret < Some(o.call)) {
                continue; // already placed, or some op that returned before o's call is not
            }
            let next = match (&o.op, &o.outcome) {
                (Op::Write(v), _) => Some(v.clone()),
                (Op::Read, Outcome::Read(v)) => Some(v.clone()).filter(|v| v == state),
                (Op::Cas { expect, new }, out) => {
                    let hit = expect == state;
                    let legal = pending(o) || *out == Outcome::CasResult(hit);
                    legal.then(|| if hit { new.clone() } else { state.clone() })
                }
                _ => None,
            };
            if let Some(s) = next {
                used[i] = true;
                let found = brute(ops, used, &s);
                used[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn agrees_with_brute_force_on_tiny_histories() {
        let mut rng = Rng(12345);
        let val =
            |rng: &mut Rng| [None, Some("a".to_string()), Some("b".into())][rng.below(3) as usize].clone();
        let mut linearizable = 0;
        for round in 0..20_000 {
            let mut ops = Vec::new(); // few values, so duplicates and deletes are common
            for client in 0..1 + rng.below(7) as usize {
                let call = rng.below(20);
                let ret = (rng.below(6) != 0).then(|| call + rng.below(10));
                let (op, outcome) = match rng.below(3) {
                    0 => (Op::Write(val(&mut rng)), Outcome::Ok),
                    1 => (Op::Read, Outcome::Read(val(&mut rng))),
                    _ => (
                        Op::Cas { expect: val(&mut rng), new: val(&mut rng) },
                        Outcome::CasResult(rng.below(2) == 0),
                    ),
                };
                let outcome = if ret.is_none() || rng.below(6) == 0 { Outcome::Unknown } else { outcome };
                ops.push(Event { client, key: "k".into(), op, call, ret, outcome });
            }
            let init = val(&mut rng);
            let want = brute(&ops, &mut vec![false; ops.len()], &init);
            assert_eq!(check(&ops, init).is_ok(), want, "round {round}: {ops:?}");
            linearizable += want as usize;
        }
        assert!((5_000..15_000).contains(&linearizable), "{linearizable} of 20000 linearizable");
    }

    #[test]
    fn large_history_is_fast() {
        let mut rng = Rng(42);
        let h = gen_history(&mut rng, 1, 10, 200, 15); // 2000 events on one key, 10 clients
        let start = std::time::Instant::now();
        assert_eq!(check(&h, None), Ok(()));
        eprintln!("2000-event history checked in {:?}", start.elapsed());
    }
}

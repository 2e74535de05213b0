//! A fault test of the replicated store: 4 clients write, delete, read (`?consistent`)
//! and compare-and-set three keys through random servers of a 3-server cluster while a
//! nemesis kills servers with SIGKILL (restarting them) and freezes the leader with
//! SIGSTOP; and (root: servers in network namespaces) while it cuts the leader's peer
//! link, leaving it reachable by clients but not by the other servers. Every operation is
//! recorded with its call and return time and checked for linearizability with the WGL
//! checker in `ballast_testkit::linearizability`; an acknowledged write that was lost
//! would make a later read impossible to order. Bounded: at most 12 s and 600
//! operations per client.
mod common;

use std::{
    io::ErrorKind,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use ballast_testkit::linearizability::{check, Event, Op, Outcome};
use common::cluster::{http, Cluster, NetCluster, Reply};

const KEYS: [&str; 3] = ["lin/a", "lin/b", "lin/c"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Did the request certainly not run (connection refused), or did we get an answer?
enum Sent {
    NotSent,
    Lost,
    Answer(Reply),
}

fn send(addr: &str, method: &str, path: &str, body: &[u8]) -> Sent {
    match http(addr, method, path, body, Duration::from_secs(3)) {
        // Answered before anything was proposed (no leader known, or the proposal was
        // refused by a former leader: openraft only says so for entries it dropped).
        Ok(r) if r.status == 500 && r.text() == "No cluster leader" => Sent::NotSent,
        Ok(r) => Sent::Answer(r),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Sent::NotSent,
        Err(_) => Sent::Lost,
    }
}

fn value_of(r: &Reply) -> Option<(String, u64)> {
    let e = r.json();
    let e = &e[0];
    let v = e["Value"].as_str().map(|b| String::from_utf8(decode_b64(b)).unwrap()).unwrap_or_default();
    Some((v, e["ModifyIndex"].as_u64()?))
}

fn decode_b64(s: &str) -> Vec<u8> {
    ballast_control::b64::decode(s).expect("base64 from the server")
}

type History = Arc<Mutex<Vec<Event>>>;

/// Four clients doing random reads, writes, deletes and cas on `KEYS` through random
/// servers of `addrs`, recording every operation, until `stop`.
fn spawn_clients(
    addrs: Vec<String>,
    history: History,
    stop: Arc<AtomicBool>,
    start: Instant,
) -> Vec<std::thread::JoinHandle<()>> {
    let now = move || start.elapsed().as_nanos() as u64;
    (0..4)
        .map(|id| {
            let (history, stop, addrs) = (history.clone(), stop.clone(), addrs.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1) * 0x1234_5678);
                let record = |e: Event| history.lock().unwrap().push(e);
                for n in 0..600 {
                    // Paced like a real client, so the history spans all the faults.
                    std::thread::sleep(Duration::from_millis(10));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = KEYS[rng.below(3) as usize];
                    let addr = &addrs[rng.below(addrs.len() as u64) as usize];
                    let pick = rng.below(100);
                    let t0 = now();
                    if pick < 35 {
                        let r = send(addr, "GET", &format!("/v1/kv/{key}?consistent"), b"");
                        let t1 = now();
                        if let Sent::Answer(r) = r {
                            let outcome = match r.status {
                                200 => Outcome::Read(value_of(&r).map(|v| v.0)),
                                404 => Outcome::Read(None),
                                // An error answer says nothing about the value.
                                _ => continue,
                            };
                            record(Event {
                                client: id,
                                key: key.into(),
                                op: Op::Read,
                                call: t0,
                                ret: Some(t1),
                                outcome,
                            });
                        }
                    } else if pick < 85 {
                        let delete = pick >= 75;
                        let value = format!("c{id}-{n}");
                        let r = if delete {
                            send(addr, "DELETE", &format!("/v1/kv/{key}"), b"")
                        } else {
                            send(addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes())
                        };
                        let t1 = now();
                        let op = Op::Write(if delete { None } else { Some(value) });
                        match r {
                            Sent::NotSent => {}
                            Sent::Answer(r) if r.status == 200 => record(Event {
                                client: id,
                                key: key.into(),
                                op,
                                call: t0,
                                ret: Some(t1),
                                outcome: Outcome::Ok,
                            }),
                            // An error answer or a lost connection: it may have happened.
                            _ => record(Event {
                                client: id,
                                key: key.into(),
                                op,
                                call: t0,
                                ret: None,
                                outcome: Outcome::Unknown,
                            }),
                        }
                    } else {
                        // Compare-and-set on what a consistent read returned: values are
                        // unique, so "ModifyIndex unchanged" is "value unchanged".
                        let r = send(addr, "GET", &format!("/v1/kv/{key}?consistent"), b"");
                        let t1 = now();
                        let Sent::Answer(r) = r else { continue };
                        let current = match r.status {
                            200 => value_of(&r),
                            404 => None,
                            _ => continue,
                        };
                        record(Event {
                            client: id,
                            key: key.into(),
                            op: Op::Read,
                            call: t0,
                            ret: Some(t1),
                            outcome: Outcome::Read(current.as_ref().map(|c| c.0.clone())),
                        });
                        let new = format!("c{id}-{n}-cas");
                        let idx = current.as_ref().map(|c| c.1).unwrap_or(0);
                        let t2 = now();
                        let r = send(addr, "PUT", &format!("/v1/kv/{key}?cas={idx}"), new.as_bytes());
                        let t3 = now();
                        let op = Op::Cas { expect: current.map(|c| c.0), new: Some(new) };
                        match r {
                            Sent::NotSent => {}
                            Sent::Answer(r) if r.status == 200 => record(Event {
                                client: id,
                                key: key.into(),
                                op,
                                call: t2,
                                ret: Some(t3),
                                outcome: Outcome::CasResult(r.text() == "true"),
                            }),
                            _ => record(Event {
                                client: id,
                                key: key.into(),
                                op,
                                call: t2,
                                ret: None,
                                outcome: Outcome::Unknown,
                            }),
                        }
                    }
                }
            })
        })
        .collect()
}

/// The clients of one fault test: started against `addrs`, stopped by `finish`.
struct Workload {
    start: Instant,
    history: History,
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Workload {
    fn start(addrs: Vec<String>) -> Workload {
        let start = Instant::now();
        let history: History = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let clients = spawn_clients(addrs, history.clone(), stop.clone(), start);
        Workload { start, history, stop, clients }
    }

    /// Stops the clients, then reads every key through `leader` and checks the history.
    fn finish(self, leader: &str, faults: &str) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.clients {
            t.join().unwrap();
        }
        final_reads_and_check(leader, &self.history, self.start, faults);
    }
}

/// Heals nothing itself: reads every key once more through `leader`, then checks the
/// whole history (and that the checker rejects a corrupted copy of it).
fn final_reads_and_check(leader: &str, history: &History, start: Instant, faults: &str) {
    let now = move || start.elapsed().as_nanos() as u64;
    // Final reads after everything healed: every acknowledged write must show.
    for key in KEYS {
        // Right after a heal the cluster may still be settling (a last election): a read
        // that got no answer changed nothing and is tried again; only the answered one is
        // recorded, with its own call and return times.
        let (t0, r, t1) = (0..10)
            .find_map(|_| {
                let t0 = now();
                match send(leader, "GET", &format!("/v1/kv/{key}?consistent"), b"") {
                    Sent::Answer(r) if r.status != 500 => Some((t0, r, now())),
                    _ => {
                        std::thread::sleep(Duration::from_millis(500));
                        None
                    }
                }
            })
            .unwrap_or_else(|| panic!("final read of {key} failed 10 times"));
        let v = if r.status == 200 { value_of(&r).map(|v| v.0) } else { None };
        history.lock().unwrap().push(Event {
            client: 99,
            key: key.into(),
            op: Op::Read,
            call: t0,
            ret: Some(t1),
            outcome: Outcome::Read(v),
        });
    }

    let h = history.lock().unwrap().clone();
    let acked = h.iter().filter(|e| matches!(e.outcome, Outcome::Ok | Outcome::CasResult(true))).count();
    let unknown = h.iter().filter(|e| e.outcome == Outcome::Unknown).count();
    let reads = h.iter().filter(|e| e.op == Op::Read).count();
    eprintln!(
        "history: {} events ({acked} acknowledged writes, {unknown} unknown, {reads} reads), {faults}",
        h.len()
    );
    assert!(acked >= 50, "too few acknowledged writes for a meaningful check: {acked}");
    if let Err(v) = check(&h, None) {
        let dump = std::env::temp_dir().join(format!("ballast-history-{}.txt", std::process::id()));
        let mut sorted = h.clone();
        sorted.sort_by_key(|e| e.call);
        let text: Vec<String> = sorted.iter().filter(|e| e.key == v.key).map(|e| format!("{e:?}")).collect();
        let _ = std::fs::write(&dump, text.join("\n"));
        panic!("not linearizable on {}: {} (history of the key: {})", v.key, v.explanation, dump.display());
    }

    // The checker is live on this very history: a final read that misses the last
    // acknowledged write must be rejected.
    let mut broken = h.clone();
    let last = broken.len() - 1;
    broken[last].outcome = Outcome::Read(Some("never-written".into()));
    assert!(check(&broken, None).is_err(), "the checker accepted an impossible read");
}

#[test]
fn history_under_kills_and_pauses_is_linearizable() {
    let mut c = Cluster::servers("faults", 3, "");
    c.leader(Duration::from_secs(30));
    let work = Workload::start(c.agents.iter().map(|a| a.addr.clone()).collect());
    let start = work.start;
    // The nemesis: alternately kill a random server (restarting it a second later) and
    // freeze the leader for two seconds.
    let mut rng = Rng(42);
    let mut kills = 0;
    let mut pauses = 0;
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(800));
        if round % 2 == 0 {
            let i = rng.below(3) as usize;
            c.agents[i].kill9();
            kills += 1;
            std::thread::sleep(Duration::from_secs(1));
            c.agents[i].start();
        } else if let Some(pid) = {
            let leader = c.leader(Duration::from_secs(30));
            c.agents[c.index_of(&leader)].proc.as_ref().map(|p| p.0.id() as i32)
        } {
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            pauses += 1;
            std::thread::sleep(Duration::from_secs(2));
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        // At least kill, pause, kill, however long a slow machine takes for them.
        if round >= 2 && start.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let leader = c.leader(Duration::from_secs(30));
    assert!(kills >= 2 && pauses >= 1);
    work.finish(&leader, &format!("{kills} kills, {pauses} leader pauses"));
}

/// Real network partitions: servers in namespaces, the peer link of the leader (or of
/// a follower) cut and restored while clients keep talking to every server, the
/// isolated one included.
#[test]
fn history_under_network_partitions_is_linearizable() {
    if !common::need_root("history_under_network_partitions_is_linearizable") {
        return;
    }
    let net = NetCluster::servers("part", 3);
    let c = &net.cluster;
    c.leader(Duration::from_secs(30));
    let work = Workload::start(c.agents.iter().map(|a| a.addr.clone()).collect());
    let start = work.start;
    let mut rng = Rng(7);
    let mut partitions = 0;
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(800));
        let leader = c.leader(Duration::from_secs(30));
        let li = c.index_of(&leader);
        // Mostly the leader (the interesting case), sometimes a follower.
        let victim = if round % 3 == 2 { (li + 1 + rng.below(2) as usize) % 3 } else { li };
        net.isolate(victim);
        partitions += 1;
        std::thread::sleep(Duration::from_secs(2));
        net.heal(victim);
        if start.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    let leader = c.leader(Duration::from_secs(30));
    let li = c.index_of(&leader);
    work.finish(&c.agents[li].addr, &format!("{partitions} partitions"));
}

/// A `ballast lock` child process, killed when the test ends (its command dies with it).
struct LockProc(std::process::Child);

impl Drop for LockProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `ballast lock` (Consul's `consul lock`) under a node failure: A holds the lock through
/// one agent, B waits through another; A's agent is killed with SIGKILL. A must stop its
/// command (it can no longer prove it holds the lock), the leader invalidates A's session
/// (its node failed), and B may run only after the lock delay that follows: the holders'
/// own log shows A's end before B's start, never both, and B's start at least the lock
/// delay after the kill (a lower bound the protocol guarantees, not a speed).
#[test]
fn lock_holders_agent_killed_never_two_holders_and_the_lock_delay_holds() {
    const DELAY_MS: u64 = 10_000;
    let mut c = Cluster::servers("lockfault", 3, "");
    let leader = c.leader(Duration::from_secs(30));
    // Both through followers, so the kill costs no election.
    let followers: Vec<usize> = (0..3).filter(|i| c.agents[*i].addr != leader).collect();
    let (a, b) = (followers[0], followers[1]);
    let log = c.root.join("holders.log");
    let spawn = |who: &str, addr: &str| {
        let cmd = format!(
            "echo \"start {who} $(date +%s%3N)\" >> {l}; trap 'echo \"end {who} $(date +%s%3N)\" >> {l}; exit 0' TERM; \
             while :; do sleep 0.1; done",
            l = log.display()
        );
        let out = std::fs::File::create(c.root.join(format!("lock-{who}.log"))).unwrap();
        LockProc(
            std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
                .args(["lock", "--lock-delay", &format!("{DELAY_MS}ms"), "--kill-timeout", "2s", "--http-addr", addr])
                .args(["svc/leader", &cmd])
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap(),
        )
    };
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |what: &str, limit: Duration| {
        let t = Instant::now();
        while !lines().contains(what) {
            assert!(t.elapsed() < limit, "no {what:?} within {limit:?}; holders log:\n{}", lines());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut holder_a = spawn("A", &c.agents[a].addr.clone());
    wait_for("start A", Duration::from_secs(30));
    let _holder_b = spawn("B", &c.agents[b].addr.clone());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!lines().contains("start B"), "B started while A held the lock:\n{}", lines());

    let killed = wall_ms();
    c.agents[a].kill9();
    wait_for("start B", Duration::from_secs(60));
    // A's `ballast lock` noticed and exited after stopping its command.
    let t = Instant::now();
    let status = loop {
        if let Some(s) = holder_a.0.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "A's ballast lock is still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "A's ballast lock: {status:?}");

    let text = lines();
    let at = |what: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("no {what:?} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let order: Vec<&str> = text.lines().map(|l| l.rsplit_once(' ').unwrap().0).collect();
    assert_eq!(order, ["start A", "end A", "start B"], "holders log:\n{text}");
    assert!(at("end A") <= at("start B"), "two holders at once:\n{text}");
    assert!(
        at("start B") >= killed + DELAY_MS,
        "B started {} ms after the kill, inside the {DELAY_MS} ms lock delay:\n{text}",
        at("start B") - killed
    );
    eprintln!(
        "lock: A stopped {} ms after its agent was killed, B started {} ms after",
        at("end A") - killed,
        at("start B") - killed
    );
}

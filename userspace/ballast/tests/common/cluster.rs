//! Control-plane test clusters: `ballast agent` processes on loopback ports, each with
//! its own data directory, and a tiny blocking HTTP client for the API.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub use super::eventually;
use super::{free_port, Child};

/// A loopback UDP port (free for TCP as well: see [`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn index(&self) -> u64 {
        self.header("X-Consul-Index").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request (Connection: close); Err on connection failure or timeout.
pub fn http(addr: &str, method: &str, path: &str, body: &[u8], timeout: Duration) -> std::io::Result<Reply> {
    http_with(addr, method, path, body, None, timeout)
}

/// [`http`] with one extra header line (`Name: value`), e.g. a token.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    header: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("socket address"), Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Reply { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < nl + 2 + size {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[(nl + 4 + size).min(b.len())..];
    }
    out
}

pub fn get(addr: &str, path: &str) -> std::io::Result<Reply> {
    http(addr, "GET", path, b"", Duration::from_secs(10))
}

pub fn put(addr: &str, path: &str, body: &[u8]) -> std::io::Result<Reply> {
    http(addr, "PUT", path, body, Duration::from_secs(10))
}

/// A KV write tried again while it fails with a server error or no answer (a Raft
/// election, which a starved heartbeat can start on a slow machine), for at most
/// `limit`: the last outcome. Rewriting the same value is harmless.
pub fn put_retrying(addr: &str, path: &str, body: &[u8], limit: Duration) -> std::io::Result<Reply> {
    let start = Instant::now();
    loop {
        let r = put(addr, path, body);
        if r.as_ref().is_ok_and(|r| r.status < 500) || start.elapsed() >= limit {
            return r;
        }
        eprintln!("PUT {path} on {addr}: {:?}; trying again", r.map(|r| (r.status, r.text())));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A KV write that must succeed ([`put_retrying`] for at most 15 s).
pub fn put_ok(addr: &str, path: &str, body: &[u8]) -> Reply {
    match put_retrying(addr, path, body, Duration::from_secs(15)) {
        Ok(r) if r.status < 500 => r,
        other => panic!("PUT {path} on {addr}: {:?}", other.map(|r| (r.status, r.text()))),
    }
}

/// The cluster key test servers run with unless the test gives its own (`encrypt`): a
/// server refuses to start without one (cluster RPC must be authenticated).
pub const TEST_KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

/// `extra` with the test cluster key added when it names none.
fn with_key(extra: &str) -> String {
    if extra.contains("\"encrypt\"") {
        extra.to_string()
    } else {
        format!(r#"{extra}, "encrypt": "{TEST_KEY}""#)
    }
}

pub struct Agent {
    pub name: String,
    /// Where the test reaches its API.
    pub addr: String,
    /// Its cluster RPC address (`ports.server`).
    pub rpc: String,
    /// The API address it advertises to the cluster (what /v1/status/leader names).
    pub advertise: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub proc: Option<Child>,
    /// Runs inside this network namespace when set.
    pub netns: Option<String>,
}

impl Agent {
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .unwrap();
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the program: the child's pid is the agent's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ballast")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ballast")),
        };
        let child = cmd
            .args(["agent", "-config-file"])
            .arg(&self.config)
            .args(["-node", &self.name])
            .env("RUST_LOG", std::env::var("BALLAST_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ballast agent");
        self.proc = Some(Child(child));
    }

    /// Like kill -9: no goodbye, no flush beyond what was already fsynced.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
            std::mem::forget(c);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

pub struct Cluster {
    pub agents: Vec<Agent>,
    pub root: PathBuf,
    /// Gossip addresses of the servers (`retry_join` of extra agents).
    pub gossip: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.proc.take();
        }
        if std::thread::panicking() {
            for a in &self.agents {
                eprintln!("---- log of {} ----\n{}", a.name, a.log());
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    /// `n` servers with bootstrap_expect = n, each joining all the others.
    pub fn servers(tag: &str, n: usize, extra: &str) -> Cluster {
        let root = std::env::temp_dir().join(format!("ballast-cluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let rpc: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let serf: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let extra = with_key(extra);
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let gossip: Vec<String> = serf.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut agents = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let name = format!("s{}", i + 1);
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("config.json");
            let join: Vec<String> = gossip.iter().map(|a| format!("\"{a}\"")).collect();
            std::fs::write(
                &config,
                format!(
                    r#"{{ "server": true, "bootstrap_expect": {n}, "bind_addr": "127.0.0.1",
                         "data_dir": "{}", "ports": {{ "http": {port}, "serf_lan": {}, "server": {} }},
                         "retry_join": [{}], "datacenter": "test-dc" {extra} }}"#,
                    dir.join("data").display(),
                    serf[i],
                    rpc[i],
                    join.join(", ")
                ),
            )
            .unwrap();
            agents.push(Agent {
                name,
                addr: addrs[i].clone(),
                rpc: format!("127.0.0.1:{}", rpc[i]),
                advertise: addrs[i].clone(),
                dir,
                config,
                proc: None,
                netns: None,
            });
        }
        let mut c = Cluster { agents, root, gossip };
        for a in &mut c.agents {
            a.start();
        }
        c
    }

    /// The leader's address once every running agent agrees on it.
    pub fn leader(&self, limit: Duration) -> String {
        self.leader_not(limit, "")
    }

    /// Like [`Cluster::leader`], for a leader other than `old` (after killing it).
    pub fn leader_not(&self, limit: Duration, old: &str) -> String {
        eventually("agreement on a new leader", limit, || {
            let mut seen = None;
            for a in self.agents.iter().filter(|a| a.proc.is_some()) {
                let r = get(&a.addr, "/v1/status/leader").ok()?;
                let l: String = serde_json::from_slice(&r.body).ok()?;
                if l.is_empty() || l == old || seen.as_ref().is_some_and(|s| *s != l) {
                    return None;
                }
                seen = Some(l);
            }
            seen
        })
    }

    /// Starts one more agent (client unless `extra` says otherwise) joining the servers.
    pub fn add_agent(&mut self, name: &str, extra: &str) -> usize {
        let port = free_port();
        let rpc = free_port();
        let serf = free_udp_port();
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.json");
        let join: Vec<String> = self.gossip.iter().map(|a| format!("\"{a}\"")).collect();
        std::fs::write(
            &config,
            format!(
                r#"{{ "bind_addr": "127.0.0.1", "data_dir": "{}", "ports": {{ "http": {port}, "serf_lan": {serf}, "server": {rpc} }},
                     "retry_join": [{}], "datacenter": "test-dc" {extra} }}"#,
                dir.join("data").display(),
                join.join(", ")
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let mut a = Agent {
            name: name.into(),
            advertise: addr.clone(),
            addr,
            rpc: format!("127.0.0.1:{rpc}"),
            dir,
            config,
            proc: None,
            netns: None,
        };
        a.start();
        self.agents.push(a);
        self.agents.len() - 1
    }

    /// (name, status) of the members agent `i` sees.
    pub fn members(&self, i: usize) -> Vec<(String, String)> {
        let Ok(r) = get(&self.agents[i].addr, "/v1/agent/members") else { return Vec::new() };
        r.json()
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap_or("").to_string(),
                    m["StatusText"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub fn status_of(&self, viewer: usize, name: &str) -> Option<String> {
        self.members(viewer).into_iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    pub fn dropped_packets(&self, i: usize) -> u64 {
        get(&self.agents[i].addr, "/v1/agent/self")
            .map(|r| r.json()["Stats"]["gossip"]["dropped_packets"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn index_of(&self, addr: &str) -> usize {
        self.agents.iter().position(|a| a.addr == addr || a.advertise == addr).expect("agent address")
    }
}

/// Servers in network namespaces with two networks: a peer network (gossip, Raft,
/// forwarding) through a bridge in its own namespace, and a client network through a
/// bridge in the root namespace where the test's clients live. Cutting a server's peer
/// link partitions it from the cluster while clients still reach it: a deposed leader
/// keeps answering them. Everything is deleted on drop.
pub struct NetCluster {
    pub cluster: Cluster,
    switch: super::Netns,
    servers: Vec<super::Netns>,
    client_bridge: String,
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        for a in &mut self.cluster.agents {
            a.proc.take();
        }
        let _ = Command::new("ip").args(["link", "del", &self.client_bridge]).stderr(Stdio::null()).status();
        let _ = (&self.switch, &self.servers);
    }
}

impl NetCluster {
    pub fn servers(tag: &str, n: usize) -> NetCluster {
        use super::{run, Netns};
        let net = 20 + std::process::id() % 200;
        let short = std::process::id() % 100_000;
        let switch = Netns::new(&format!("{tag}sw"));
        switch.exec("ip link add br0 type bridge");
        switch.exec("ip link set br0 up");
        let client_bridge = format!("blc{short}");
        let _ = Command::new("ip").args(["link", "del", &client_bridge]).stderr(Stdio::null()).status();
        run(&format!("ip link add {client_bridge} type bridge"));
        run(&format!("ip addr add 10.78.{net}.1/24 dev {client_bridge}"));
        run(&format!("ip link set {client_bridge} up"));
        let root = std::env::temp_dir().join(format!("ballast-netcluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut servers = Vec::new();
        let mut agents = Vec::new();
        let peer_ip = |i: usize| format!("10.79.{net}.{}", 10 + i);
        let client_ip = |i: usize| format!("10.78.{net}.{}", 10 + i);
        let join: Vec<String> = (0..n).map(|i| format!("\"{}:8301\"", peer_ip(i))).collect();
        for i in 0..n {
            let ns = Netns::new(&format!("{tag}s{i}"));
            // Peer link: p0 in the server, its other end on the switch bridge.
            let sw_end = format!("bp{short}{i}");
            run(&format!(
                "ip link add p0 netns {} type veth peer name {sw_end} netns {}",
                ns.name, switch.name
            ));
            switch.exec(&format!("ip link set {sw_end} master br0"));
            switch.exec(&format!("ip link set {sw_end} up"));
            ns.exec(&format!("ip addr add {}/24 dev p0", peer_ip(i)));
            ns.exec("ip link set p0 up");
            // Client link: c0 in the server, its other end on the root bridge.
            let root_end = format!("bc{short}{i}");
            run(&format!("ip link add c0 netns {} type veth peer name {root_end}", ns.name));
            run(&format!("ip link set {root_end} master {client_bridge}"));
            run(&format!("ip link set {root_end} up"));
            ns.exec(&format!("ip addr add {}/24 dev c0", client_ip(i)));
            ns.exec("ip link set c0 up");
            let name = format!("s{}", i + 1);
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("config.json");
            std::fs::write(
                &config,
                format!(
                    r#"{{ "server": true, "bootstrap_expect": {n}, "bind_addr": "0.0.0.0", "client_addr": "0.0.0.0",
                         "advertise_addr": "{}", "data_dir": "{}", "retry_join": [{}], "datacenter": "test-dc",
                         "encrypt": "{TEST_KEY}" }}"#,
                    peer_ip(i),
                    dir.join("data").display(),
                    join.join(", ")
                ),
            )
            .unwrap();
            agents.push(Agent {
                name,
                addr: format!("{}:8500", client_ip(i)),
                rpc: format!("{}:8300", peer_ip(i)),
                advertise: format!("{}:8500", peer_ip(i)),
                dir,
                config,
                proc: None,
                netns: Some(ns.name.clone()),
            });
            servers.push(ns);
        }
        let mut cluster = Cluster { agents, root, gossip: Vec::new() };
        for a in &mut cluster.agents {
            a.start();
        }
        NetCluster { cluster, switch, servers, client_bridge }
    }

    /// Cuts server `i` off the peer network (clients still reach it).
    pub fn isolate(&self, i: usize) {
        self.servers[i].exec("ip link set p0 down");
    }

    pub fn heal(&self, i: usize) {
        self.servers[i].exec("ip link set p0 up");
    }
}

//! Seed 004's LB cluster in namespaces (scripts/seed_topo.sh): LB01 and LB02 running
//! `ballast agent` as LB devices, a witness, web servers answering with their names, and
//! the operator's console for the API and CLI. Torn down on drop, agents first.
use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use super::{
    cluster::{http_with, Agent, Cluster, Reply, TEST_KEY},
    enter, servers, sh,
};

pub const LIMIT: Duration = Duration::from_secs(30);
pub const ROOT_TOKEN: &str = "root-secret";

pub fn script() -> String {
    format!("{}/../../scripts/seed_topo.sh", env!("CARGO_MANIFEST_DIR"))
}

/// The LB devices (namespace and agent names) and their addresses.
pub const DEVICES: [&str; 2] = ["lb1", "lb2"];

pub fn ctl_ip(name: &str) -> String {
    match name {
        "lb1" => "10.99.0.11",
        "lb2" => "10.99.0.12",
        "wit" => "10.99.0.13",
        // The console's address: a fourth server runs there when LB02 is a client agent.
        "ops" => "10.99.0.2",
        other => panic!("no agent {other}"),
    }
    .to_string()
}

pub struct Seed {
    pub prefix: String,
    /// The agents: lb1, lb2, wit (in that order; "ops" after them when LB02 is a client).
    pub cluster: Cluster,
    stop_servers: Arc<AtomicBool>,
}

impl Drop for Seed {
    fn drop(&mut self) {
        // No graceful stop (a hand-over would wait for devices that are stopping too);
        // the cluster prints the agents' logs when the test failed.
        for a in &mut self.cluster.agents {
            a.kill9();
        }
        self.stop_servers.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = Command::new("bash").args([&script(), "down", &self.prefix]).status();
    }
}

impl Seed {
    /// The topology, web servers web1..web4 on port 80, and the three agents started
    /// (not yet agreed on a leader; [`Seed::ready`] waits for that).
    pub fn up(tag: &str) -> Seed {
        Seed::up_with(tag, "")
    }

    /// Like [`Seed::up`], with `extra` (JSON members, e.g. `"lb": {...}`) in every agent's
    /// configuration.
    pub fn up_with(tag: &str, extra: &str) -> Seed {
        Seed::start(tag, extra, false)
    }

    /// The topology with LB02 as a client agent (no Raft vote; it reads the state through
    /// blocking queries) and a fourth server, in the console's namespace, so that three
    /// servers vote: LB01, the witness and that one ("ops").
    pub fn up_with_client_lb2(tag: &str) -> Seed {
        Seed::start(tag, "", true)
    }

    fn start(tag: &str, extra: &str, client_lb2: bool) -> Seed {
        let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
        let prefix = format!("{tag}{}", std::process::id() % 100_000);
        sh(&["bash", &script(), "up", &prefix]);
        let root = std::env::temp_dir().join(format!("ballast-seed-{prefix}"));
        let _ = std::fs::remove_dir_all(&root);
        let stop_servers = Arc::new(AtomicBool::new(false));
        for i in 1..=4 {
            let addr: SocketAddr = "0.0.0.0:80".parse().unwrap();
            servers::start_http(&format!("{prefix}web{i}"), &format!("web{i}"), addr, stop_servers.clone());
        }
        let names: &[&str] = if client_lb2 { &["lb1", "lb2", "wit", "ops"] } else { &["lb1", "lb2", "wit"] };
        let servers = names.iter().filter(|n| !(client_lb2 && **n == "lb2"));
        let join: Vec<String> = servers.map(|n| format!("\"{}:8301\"", ctl_ip(n))).collect();
        let acl = format!(
            r#""acl": {{ "enabled": true, "default_policy": "deny", "tokens": {{ "initial_management": "{ROOT_TOKEN}" }} }}"#
        );
        let mut agents = Vec::new();
        for &name in names {
            let role = if client_lb2 && name == "lb2" {
                r#""server": false"#
            } else {
                r#""server": true, "bootstrap_expect": 3"#
            };
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("config.json");
            std::fs::write(
                &config,
                format!(
                    r#"{{ {role}, "bind_addr": "{ip}", "data_dir": "{data}",
                         "retry_join": [{join}], "datacenter": "seed", "encrypt": "{TEST_KEY}", "ports": {{ "dns": 53 }}, {acl} {extra} }}"#,
                    ip = ctl_ip(name),
                    data = dir.join("data").display(),
                    join = join.join(", "),
                ),
            )
            .unwrap();
            agents.push(Agent {
                name: name.to_string(),
                addr: format!("{}:8500", ctl_ip(name)),
                rpc: format!("{}:8300", ctl_ip(name)),
                advertise: format!("{}:8500", ctl_ip(name)),
                dir,
                config,
                proc: None,
                netns: Some(format!("{prefix}{name}")),
            });
        }
        let mut cluster = Cluster { agents, root, gossip: Vec::new() };
        for a in &mut cluster.agents {
            a.start();
        }
        Seed { prefix, cluster, stop_servers }
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    pub fn agent(&mut self, name: &str) -> &mut Agent {
        self.cluster.agents.iter_mut().find(|a| a.name == name).expect("agent")
    }

    /// Like a power cut of device `name`: its links go down first (so nothing its dying
    /// agent sends reaches anyone), then its agent is killed with SIGKILL.
    pub fn power_cut(&mut self, name: &str) {
        for nic in ["eth2", "eth0", "eth1"] {
            self.exec(name, &format!("ip link set {nic} down"));
        }
        self.agent(name).kill9();
    }

    /// Runs `cmd` (whitespace-separated) in namespace `role`.
    pub fn exec(&self, role: &str, cmd: &str) -> String {
        let mut args = vec!["ip", "netns", "exec"];
        let ns = self.ns(role);
        args.push(&ns);
        args.extend(cmd.split_whitespace());
        sh(&args)
    }

    /// One API call from the operator's console to agent `to`, as the root token.
    pub fn api(&self, to: &str, method: &str, path: &str, body: &str) -> std::io::Result<Reply> {
        let addr = format!("{}:8500", ctl_ip(to));
        let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
        enter(&self.ns("ops"), move || {
            http_with(
                &addr,
                &method,
                &path,
                body.as_bytes(),
                Some(&format!("X-Consul-Token: {ROOT_TOKEN}")),
                LIMIT,
            )
        })
    }

    /// `ballast ARGS` (the CLI) from the operator's console against agent `to`.
    pub fn cli(&self, to: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns("ops"), env!("CARGO_BIN_EXE_ballast")])
            .args(args)
            .args(["--http-addr", &format!("{}:8500", ctl_ip(to))])
            .env("CONSUL_HTTP_TOKEN", ROOT_TOKEN)
            .output()
            .expect("ballast");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// [`Seed::cli`] that must succeed, tried again (a few times) on a refusal that an
    /// election explains.
    pub fn ok(&self, to: &str, args: &[&str]) -> String {
        let mut last = String::new();
        for _ in 0..20 {
            let (success, text) = self.cli(to, args);
            if success {
                return text;
            }
            if !(text.contains("leader") || text.contains("500") || text.contains("connect")) {
                panic!("ballast {args:?}: {text}");
            }
            last = text;
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("ballast {args:?}: {last}");
    }

    /// Waits for a leader and declares the devices: LB01 and LB02 with seed 004's split of
    /// the VIP range (here in 198.51.100.0/24), the witness as a witness; then waits until
    /// every device is alive.
    pub fn ready(&self) {
        super::eventually("a leader", LIMIT, || {
            let r = self.api("wit", "GET", "/v1/status/leader", "").ok()?;
            let l: String = serde_json::from_slice(&r.body).ok()?;
            (!l.is_empty()).then_some(())
        });
        for (i, name) in DEVICES.iter().enumerate() {
            let n = i + 1;
            let range = if n == 1 { "198.51.100.100-198.51.100.149" } else { "198.51.100.150-198.51.100.199" };
            self.ok(
                "wit",
                &[
                    "device",
                    "put",
                    name,
                    "--range",
                    range,
                    "--public-iface",
                    "eth0",
                    "--public-addr",
                    &format!("198.51.100.1{n}/24"),
                    "--private-iface",
                    "eth1",
                    "--private-addr",
                    &format!("10.10.0.1{n}/24"),
                ],
            );
        }
        self.ok("wit", &["device", "put", "wit", "--witness"]);
        super::eventually("every device alive", LIMIT, || {
            let v = self.api("wit", "GET", "/v1/lb/devices", "").ok()?.json();
            let all = v.as_array()?;
            (all.len() == 3 && all.iter().all(|d| d["alive"] == true)).then_some(())
        });
    }

    /// The owner of `vip` in the LB state (as the witness sees it) and its epoch.
    pub fn owner(&self, vip: Ipv4Addr) -> Option<(String, u64)> {
        let v = self.api("wit", "GET", "/v1/lb/vips", "").ok()?.json();
        v.as_array()?.iter().find(|x| x["vip"] == vip.to_string()).map(|x| {
            (x["owner"].as_str().unwrap_or("").to_string(), x["epoch"].as_u64().unwrap_or(0))
        })
    }

    /// Whether namespace `role` holds `vip` as an address.
    pub fn holds(&self, role: &str, vip: Ipv4Addr) -> bool {
        self.exec(role, "ip -4 -o addr show").split_whitespace().any(|w| w == format!("{vip}/32"))
    }

    /// Partitions `iface` of namespace `role`: the switch stops carrying its frames while
    /// both ends of the link stay up (no daemon sees a link go down).
    pub fn cut(&self, role: &str, iface: &str) {
        sh(&["bash", &script(), "cut", &self.prefix, role, iface]);
    }

    pub fn heal(&self, role: &str, iface: &str) {
        sh(&["bash", &script(), "heal", &self.prefix, role, iface]);
    }

    /// The MAC address of `iface` in namespace `role`.
    pub fn mac(&self, role: &str, iface: &str) -> [u8; 6] {
        super::parse_mac(self.exec(role, &format!("cat /sys/class/net/{iface}/address")).trim())
    }
}

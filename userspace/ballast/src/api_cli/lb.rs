//! The LB commands: `ballast device`, `ballast group`, `ballast backend`, `ballast vip`,
//! `ballast events` and `ballast import`, over the agent's `/v1/lb/` API.
use std::{net::IpAddr, path::PathBuf};

use anyhow::{bail, Context as _, Result};
use ballast_control::{
    client::{ApiClient, Reply},
    state::lb::{Backend, DeviceSpec, GroupSpec, HealthCheck, Listener, Mode, Nic, Protocol, VipRange},
};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use super::{expect_ok, runtime, ApiArgs};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Devices with their ranges, admin state, liveness and VIP count.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Declare or change a device (from flags, or `-f` a JSON or TOML file).
    Put {
        name: String,
        /// VIP range `FIRST-LAST` (repeatable), e.g. 14.14.1.100-14.14.1.199.
        #[arg(long = "range")]
        ranges: Vec<String>,
        #[arg(long = "public-iface", default_value = "")]
        public_iface: String,
        #[arg(long = "public-addr", default_value = "")]
        public_addr: String,
        #[arg(long = "private-iface", default_value = "")]
        private_iface: String,
        #[arg(long = "private-addr", default_value = "")]
        private_addr: String,
        #[arg(long, default_value_t = 100)]
        capacity: u32,
        /// A Raft voter with no data plane.
        #[arg(long)]
        witness: bool,
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Move the device's VIPs away (make-before-break); it takes no new ones.
    Drain {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    Undrain {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    Remove {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Args)]
pub struct GroupFlags {
    /// `PORT[/udp]:MODE` (repeatable), MODE one of tunnel, nat, dr, http, https, tcp.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// `ADDR:PORT[,weight=N][,backup]` (repeatable).
    #[arg(long = "backend")]
    backends: Vec<String>,
    /// VIPs on as many distinct devices (default 1).
    #[arg(long = "vips")]
    vip_count: Option<u32>,
    /// An explicit VIP (repeatable; otherwise the scheduler picks from the ranges).
    #[arg(long = "vip")]
    vips: Vec<IpAddr>,
    /// NAT: the private address the backends route their replies through, held by the
    /// device serving the VIP (the backends' default gateway).
    #[arg(long = "gateway")]
    gateway: Option<IpAddr>,
    /// L7: HAProxy balance algorithm.
    #[arg(long)]
    balance: Option<String>,
    /// L7 http/https: persistence cookie name (`cookie NAME insert indirect nocache`).
    #[arg(long)]
    cookie: Option<String>,
    /// Health-check path (HTTP), or `tcp` for a connect check.
    #[arg(long)]
    check: Option<String>,
    /// L7: per-backend maxconn.
    #[arg(long)]
    maxconn: Option<u32>,
    /// https: a PEM file on the devices (repeatable).
    #[arg(long = "cert")]
    certs: Vec<String>,
    /// A JSON or TOML group file instead of flags.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create an LB group `ACCOUNT/NAME` (its VIPs are placed by the leader).
    Create {
        id: String,
        #[command(flatten)]
        flags: GroupFlags,
        #[command(flatten)]
        api: ApiArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum BackendCommand {
    /// Add `ADDR:PORT` to a group.
    Add {
        id: String,
        backend: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long)]
        backup: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    Remove {
        id: String,
        backend: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set a backend's weight (0 drains it).
    Weight {
        id: String,
        backend: String,
        weight: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum VipCommand {
    /// Every VIP with its group, owner and epoch.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Move a VIP to a device (a new epoch).
    Assign {
        vip: IpAddr,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
pub enum HookCommand {
    /// The webhooks the token may see, with each one's delivery cursor.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create or change ACCOUNT/NAME (`*/NAME`: every event, operators only): events are
    /// POSTed as JSON to URL, in order, at least once.
    Add {
        id: String,
        #[arg(long)]
        url: String,
        /// Only these kinds (repeatable: vip_moved, scaled_out, device_draining, ...).
        #[arg(long = "event")]
        events: Vec<String>,
        /// Sign each delivery: `X-Ballast-Signature: sha256=<HMAC-SHA256 of the body>`
        /// ("" removes the secret; omitted: a changed hook keeps its secret).
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn hook(cmd: HookCommand) -> Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            HookCommand::List { api } => {
                println!("{:<28} {:<40} {:<8} Events", "Hook", "URL", "Next");
                for h in json_of(&call(&client(&api), Method::GET, "/v1/lb/hooks", None).await?)?
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let kinds: Vec<&str> = h["events"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
                    println!(
                        "{:<28} {:<40} {:<8} {}",
                        format!("{}/{}", h["account"].as_str().unwrap_or("?"), h["name"].as_str().unwrap_or("?")),
                        h["url"].as_str().unwrap_or("?"),
                        h["next"],
                        if kinds.is_empty() { "all".to_string() } else { kinds.join(",") }
                    );
                }
                Ok(())
            }
            HookCommand::Add { id, url, events, secret, api } => {
                let (account, name) = id.split_once('/').filter(|(a, n)| !a.is_empty() && !n.is_empty()).with_context(|| format!("{id:?}: a hook is ACCOUNT/NAME"))?;
                let mut body = serde_json::json!({ "url": url, "events": events });
                if let Some(s) = secret {
                    body["secret"] = s.into();
                }
                call(&client(&api), Method::PUT, &format!("/v1/lb/hook/{account}/{name}"), Some(&body)).await?;
                println!("hook {id} -> {url}");
                Ok(())
            }
            HookCommand::Delete { id, api } => {
                call(&client(&api), Method::DELETE, &format!("/v1/lb/hook/{id}"), None).await?;
                println!("hook {id} deleted");
                Ok(())
            }
        }
    })
}

fn split_id(id: &str) -> Result<(&str, &str)> {
    id.split_once('/')
        .filter(|(a, n)| !a.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("{id:?}: a group is ACCOUNT/NAME"))
}

fn parse_range(s: &str) -> Result<VipRange> {
    let (a, b) = s.split_once('-').with_context(|| format!("range {s:?}: FIRST-LAST"))?;
    Ok(VipRange {
        first: a.trim().parse().with_context(|| format!("range {s:?}: first"))?,
        last: b.trim().parse().with_context(|| format!("range {s:?}: last"))?,
    })
}

fn parse_backend(s: &str) -> Result<Backend> {
    let mut parts = s.split(',');
    let addr = parts.next().unwrap_or("");
    let sa: std::net::SocketAddr = addr
        .parse()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 0)))
        .with_context(|| format!("backend {s:?}: ADDR:PORT"))?;
    let mut b = Backend { address: sa.ip(), port: sa.port(), weight: 1, backup: false };
    for opt in parts {
        match opt.split_once('=') {
            Some(("weight", w)) => b.weight = w.parse().with_context(|| format!("backend {s:?}: weight"))?,
            None if opt == "backup" => b.backup = true,
            _ => bail!("backend {s:?}: unknown option {opt:?} (weight=N, backup)"),
        }
    }
    Ok(b)
}

fn parse_listener(s: &str, f: &GroupFlags) -> Result<Listener> {
    let (port_proto, mode) = s.split_once(':').with_context(|| format!("listen {s:?}: PORT[/udp]:MODE"))?;
    let (port, proto) = port_proto.split_once('/').unwrap_or((port_proto, "tcp"));
    let mode: Mode = serde_json::from_value(Value::String(mode.into()))
        .map_err(|_| anyhow::anyhow!("listen {s:?}: mode is one of tunnel, nat, dr, http, https, tcp"))?;
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        p => bail!("listen {s:?}: protocol {p:?} (tcp or udp)"),
    };
    let l7 = !mode.is_l4();
    Ok(Listener {
        port: port.parse().with_context(|| format!("listen {s:?}: port"))?,
        protocol,
        mode,
        balance: f.balance.clone().filter(|_| l7),
        cookie: f.cookie.clone().filter(|_| matches!(mode, Mode::Http | Mode::Https)),
        check: f.check.as_ref().map(|c| HealthCheck {
            path: (c != "tcp" && matches!(mode, Mode::Http | Mode::Https)).then(|| c.clone()),
            interval_ms: 2000,
            rise: 2,
            fall: 3,
        }),
        maxconn: f.maxconn.filter(|_| l7),
        certs: if mode == Mode::Https { f.certs.clone() } else { Vec::new() },
    })
}

/// A JSON or TOML file's contents as JSON.
fn read_spec_file(path: &PathBuf) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        let v: toml::Value = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        return serde_json::to_value(v).context("TOML to JSON");
    }
    serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
}

fn group_body(id: &str, f: &GroupFlags) -> Result<Value> {
    let (account, name) = split_id(id)?;
    if let Some(path) = &f.file {
        let mut v = read_spec_file(path)?;
        if let Some(o) = v.as_object_mut() {
            o.entry("account").or_insert_with(|| account.into());
            o.entry("name").or_insert_with(|| name.into());
        }
        return Ok(v);
    }
    if f.listen.is_empty() {
        bail!("give at least one --listen PORT:MODE (or -f FILE)");
    }
    let spec = GroupSpec {
        account: account.into(),
        name: name.into(),
        listeners: f.listen.iter().map(|l| parse_listener(l, f)).collect::<Result<_>>()?,
        backends: f.backends.iter().map(|b| parse_backend(b)).collect::<Result<_>>()?,
        vip_count: f.vip_count.unwrap_or(if f.vips.is_empty() { 1 } else { f.vips.len() as u32 }),
        gateway: f.gateway,
    };
    let mut v = serde_json::to_value(spec)?;
    if !f.vips.is_empty() {
        v["vips"] = serde_json::to_value(&f.vips)?;
    }
    Ok(v)
}

async fn call(c: &ApiClient, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let r = c.call(method, path, bytes).await.map_err(anyhow::Error::msg)?;
    expect_ok(&r)?;
    Ok(r)
}

fn client(api: &ApiArgs) -> ApiClient {
    ApiClient::new(&api.http_addr, api.token.clone())
}

fn json_of(r: &Reply) -> Result<Value> {
    serde_json::from_slice(&r.body).context("unexpected reply")
}

pub fn device(cmd: DeviceCommand) -> Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            DeviceCommand::List { api } => {
                let v = json_of(&call(&client(&api), Method::GET, "/v1/lb/devices", None).await?)?;
                println!(
                    "{:<12} {:<9} {:<6} {:>5} {:<8} Ranges",
                    "Device", "Admin", "Alive", "VIPs", "Witness"
                );
                for d in v.as_array().into_iter().flatten() {
                    let ranges: Vec<String> = d["ranges"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            format!(
                                "{}-{}",
                                r["first"].as_str().unwrap_or("?"),
                                r["last"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    println!(
                        "{:<12} {:<9} {:<6} {:>5} {:<8} {}",
                        d["name"].as_str().unwrap_or("?"),
                        d["admin"].as_str().unwrap_or("?"),
                        d["alive"].as_bool().unwrap_or(false),
                        d["vips"].as_u64().unwrap_or(0),
                        d["witness"].as_bool().unwrap_or(false),
                        ranges.join(" ")
                    );
                }
                Ok(())
            }
            DeviceCommand::Put {
                name,
                ranges,
                public_iface,
                public_addr,
                private_iface,
                private_addr,
                capacity,
                witness,
                file,
                api,
            } => {
                let body = match file {
                    Some(f) => read_spec_file(&f)?,
                    None => serde_json::to_value(DeviceSpec {
                        name: name.clone(),
                        public: Nic { iface: public_iface, addr: public_addr },
                        private: Nic { iface: private_iface, addr: private_addr },
                        ranges: ranges.iter().map(|r| parse_range(r)).collect::<Result<_>>()?,
                        capacity,
                        witness,
                    })?,
                };
                call(&client(&api), Method::PUT, &format!("/v1/lb/device/{name}"), Some(&body)).await?;
                println!("device {name} stored");
                Ok(())
            }
            DeviceCommand::Drain { name, api } => {
                call(&client(&api), Method::PUT, &format!("/v1/lb/device/{name}/drain"), None).await?;
                println!("device {name} draining: its VIPs move to the other devices");
                Ok(())
            }
            DeviceCommand::Undrain { name, api } => {
                call(&client(&api), Method::PUT, &format!("/v1/lb/device/{name}/undrain"), None).await?;
                println!("device {name} active");
                Ok(())
            }
            DeviceCommand::Remove { name, api } => {
                call(&client(&api), Method::DELETE, &format!("/v1/lb/device/{name}"), None).await?;
                println!("device {name} removed");
                Ok(())
            }
        }
    })
}

fn print_group(g: &Value) {
    println!("{}/{}", g["account"].as_str().unwrap_or("?"), g["name"].as_str().unwrap_or("?"));
    for v in g["vips"].as_array().into_iter().flatten() {
        println!(
            "  vip {:<40} owner {:<12} epoch {}",
            v["vip"].as_str().unwrap_or("?"),
            v["owner"].as_str().unwrap_or("?"),
            v["epoch"]
        );
    }
    for l in g["listeners"].as_array().into_iter().flatten() {
        println!(
            "  listen {}/{} {}",
            l["port"],
            l["protocol"].as_str().unwrap_or("?"),
            l["mode"].as_str().unwrap_or("?")
        );
    }
    for b in g["backends"].as_array().into_iter().flatten() {
        println!(
            "  backend {}:{} weight {}{}",
            b["address"].as_str().unwrap_or("?"),
            b["port"],
            b["weight"],
            if b["backup"].as_bool() == Some(true) { " backup" } else { "" }
        );
    }
}

pub fn group(cmd: GroupCommand) -> Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            GroupCommand::Create { id, flags, api } => {
                let body = group_body(&id, &flags)?;
                let c = client(&api);
                call(&c, Method::PUT, &format!("/v1/lb/group/{id}"), Some(&body)).await?;
                let g = json_of(&call(&c, Method::GET, &format!("/v1/lb/group/{id}"), None).await?)?;
                print_group(&g);
                Ok(())
            }
            GroupCommand::Show { id, api } => {
                split_id(&id)?;
                print_group(&json_of(
                    &call(&client(&api), Method::GET, &format!("/v1/lb/group/{id}"), None).await?,
                )?);
                Ok(())
            }
            GroupCommand::List { api } => {
                for g in json_of(&call(&client(&api), Method::GET, "/v1/lb/groups", None).await?)?
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    print_group(g);
                }
                Ok(())
            }
            GroupCommand::Delete { id, api } => {
                split_id(&id)?;
                call(&client(&api), Method::DELETE, &format!("/v1/lb/group/{id}"), None).await?;
                println!("group {id} deleted, its VIPs released");
                Ok(())
            }
        }
    })
}

pub fn backend(cmd: BackendCommand) -> Result<()> {
    runtime()?.block_on(async move {
        let (id, api) = match &cmd {
            BackendCommand::Add { id, api, .. }
            | BackendCommand::Remove { id, api, .. }
            | BackendCommand::Weight { id, api, .. } => (id.clone(), api),
        };
        split_id(&id)?;
        let c = client(api);
        // Read-modify-write, refused if the group changed in between (cas on its index).
        let g = json_of(&call(&c, Method::GET, &format!("/v1/lb/group/{id}"), None).await?)?;
        let index = g["modify_index"].as_u64().unwrap_or(0);
        let mut spec: GroupSpec = serde_json::from_value(serde_json::json!({
            "account": g["account"], "name": g["name"], "listeners": g["listeners"],
            "backends": g["backends"], "vip_count": g["vip_count"], "gateway": g["gateway"],
        }))
        .context("the group as the API gave it")?;
        let same = |b: &Backend, x: &Backend| b.address == x.address && b.port == x.port;
        match &cmd {
            BackendCommand::Add { backend, weight, backup, .. } => {
                let mut b = parse_backend(backend)?;
                b.weight = *weight;
                b.backup = *backup;
                if spec.backends.iter().any(|x| same(x, &b)) {
                    bail!("{backend} is in {id} already");
                }
                spec.backends.push(b);
            }
            BackendCommand::Remove { backend, .. } => {
                let b = parse_backend(backend)?;
                let before = spec.backends.len();
                spec.backends.retain(|x| !same(x, &b));
                if spec.backends.len() == before {
                    bail!("{backend} is not in {id}");
                }
            }
            BackendCommand::Weight { backend, weight, .. } => {
                let b = parse_backend(backend)?;
                let x = spec
                    .backends
                    .iter_mut()
                    .find(|x| same(x, &b))
                    .with_context(|| format!("{backend} is not in {id}"))?;
                x.weight = *weight;
            }
        }
        let body = serde_json::to_value(&spec)?;
        call(&c, Method::PUT, &format!("/v1/lb/group/{id}?cas={index}"), Some(&body)).await?;
        println!("group {id}: {} backends", spec.backends.len());
        Ok(())
    })
}

pub fn vip(cmd: VipCommand) -> Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            VipCommand::List { api } => {
                println!("{:<40} {:<28} {:<12} Epoch", "VIP", "Group", "Owner");
                for v in json_of(&call(&client(&api), Method::GET, "/v1/lb/vips", None).await?)?
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "{:<40} {:<28} {:<12} {}",
                        v["vip"].as_str().unwrap_or("?"),
                        v["group"].as_str().unwrap_or("?"),
                        v["owner"].as_str().unwrap_or("?"),
                        v["epoch"]
                    );
                }
                Ok(())
            }
            VipCommand::Assign { vip, to, api } => {
                call(&client(&api), Method::PUT, &format!("/v1/lb/vip/{vip}?to={to}"), None).await?;
                println!("{vip} assigned to {to}");
                Ok(())
            }
        }
    })
}

pub fn events(since: Option<u64>, api: ApiArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let path = format!("/v1/lb/events?since={}", since.unwrap_or(0));
        for e in
            json_of(&call(&client(&api), Method::GET, &path, None).await?)?.as_array().into_iter().flatten()
        {
            let phases: Vec<String> = e["phases"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_u64().unwrap_or(0)))
                .collect();
            let field = |k: &str| e[k].as_str().map(|v| format!(" {k}={v}")).unwrap_or_default();
            println!(
                "#{} {}{}{}{}{}{}{} {}",
                e["id"],
                e["kind"].as_str().unwrap_or("?"),
                field("group"),
                field("vip"),
                field("from"),
                field("device"),
                e["epoch"].as_u64().map(|x| format!(" epoch={x}")).unwrap_or_default(),
                field("reason"),
                phases.join(" ")
            );
        }
        Ok(())
    })
}

/// Seed-style `listen NAME` sections (`bind VIP:PORT`, `server` lines) as LB groups whose
/// VIPs are the bind addresses: for users migrating from the seed's setup.
pub fn import_groups(cfg: &ballast_l7::haproxy::L7Config, account: Option<&str>) -> Result<Vec<Value>> {
    use ballast_l7::haproxy::model::{Balance, Mode as L7Mode, ProxyKind};
    let mut out = Vec::new();
    for px in cfg.proxies.iter().filter(|p| p.kind == ProxyKind::Listen) {
        let name = px.name.to_ascii_lowercase();
        // The seed names groups lb-clusterNN-AccoNN: the account is the last part.
        let acct = account
            .map(str::to_string)
            .unwrap_or_else(|| name.rsplit('-').next().unwrap_or(&name).to_string());
        let mut vips: Vec<IpAddr> = Vec::new();
        let mut ports = Vec::new();
        for b in &px.binds {
            if b.addr.ip().is_unspecified() {
                bail!("listen {}: bind {} has no VIP (a wildcard address)", px.name, b.addr);
            }
            if !vips.contains(&b.addr.ip()) {
                vips.push(b.addr.ip());
            }
            if !ports.contains(&b.addr.port()) {
                ports.push(b.addr.port());
            }
        }
        let mode = match px.settings.mode {
            L7Mode::Http if px.binds.iter().any(|b| !b.tls_certs.is_empty()) => Mode::Https,
            L7Mode::Http => Mode::Http,
            L7Mode::Tcp => Mode::Tcp,
        };
        let balance = match &px.settings.balance {
            Balance::RoundRobin => "roundrobin",
            Balance::StaticRr => "static-rr",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
            Balance::Uri => "uri",
            Balance::Random(_) => "random",
            Balance::Hdr(_) => bail!("listen {}: balance hdr() is not an LB group setting", px.name),
        };
        let maxconn = px.servers.iter().map(|s| s.maxconn).find(|m| *m > 0);
        let certs: Vec<String> =
            px.binds.iter().flat_map(|b| b.tls_certs.iter().map(|c| c.display().to_string())).collect();
        let listeners: Vec<Listener> = ports
            .iter()
            .map(|p| Listener {
                port: *p,
                protocol: Protocol::Tcp,
                mode,
                balance: Some(balance.into()),
                cookie: px.settings.cookie.as_ref().map(|c| c.name.clone()).filter(|_| mode != Mode::Tcp),
                check: None,
                maxconn,
                certs: if mode == Mode::Https { certs.clone() } else { Vec::new() },
            })
            .collect();
        let backends: Vec<Backend> = px
            .servers
            .iter()
            .map(|s| Backend {
                address: s.addr.ip(),
                port: s.addr.port(),
                weight: s.weight,
                backup: s.backup,
            })
            .collect();
        let spec = GroupSpec { account: acct, name, listeners, backends, vip_count: vips.len() as u32, gateway: None };
        let mut v = serde_json::to_value(spec)?;
        v["vips"] = serde_json::to_value(&vips)?;
        out.push(v);
    }
    if out.is_empty() {
        bail!("no 'listen' section to import");
    }
    Ok(out)
}

/// `ballast import -f haproxy.cfg`: creates the groups through the API.
pub fn import(groups: Vec<Value>, api: ApiArgs) -> Result<()> {
    runtime()?.block_on(async move {
        let c = client(&api);
        for g in groups {
            let id = format!("{}/{}", g["account"].as_str().unwrap_or(""), g["name"].as_str().unwrap_or(""));
            call(&c, Method::PUT, &format!("/v1/lb/group/{id}"), Some(&g))
                .await
                .with_context(|| format!("group {id}"))?;
            print_group(&json_of(&call(&c, Method::GET, &format!("/v1/lb/group/{id}"), None).await?)?);
        }
        Ok(())
    })
}

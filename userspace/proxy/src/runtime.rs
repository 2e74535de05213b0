//! The runtime API (HAProxy's stats socket, `global` → `stats socket PATH`): one line of
//! commands separated by `;`, each answer followed by an empty line as HAProxy's
//! non-interactive mode prints them, then the connection closes (like `socat` use).
//!
//! Commands: `show stat`, `show info`, `show servers state [B]`, `set server B/S state ready|drain|maint`,
//! `set server B/S weight N[%]` (`set weight B/S N[%]`; a percentage of the configured
//! weight), `get weight B/S`, `enable server B/S`, `disable server B/S`, `reload`, `help`.
use std::sync::{atomic::Ordering::Relaxed, Arc};

use super::{state::Admin, Proxy};

/// `show stat [<iid> <type> <sid>]`: a proxy id (-1: all), a mask of row types (1:
/// frontends, 2: backends, 4: servers), a server id (-1: all).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct StatFilter {
    pub iid: i64,
    pub types: u32,
    pub sid: i64,
}

impl StatFilter {
    pub const ALL: StatFilter = StatFilter { iid: -1, types: 7, sid: -1 };

    /// Keeps the CSV rows the filter selects (and the header).
    fn apply(&self, csv: &str) -> String {
        let idx = super::stats::column_index();
        let mut out = String::new();
        for line in csv.split_inclusive('\n') {
            let f: Vec<&str> = line.split(',').collect();
            let num = |c: &str| idx.get(c).and_then(|&i| f.get(i)).and_then(|v| v.trim().parse::<i64>().ok());
            let keep = line.starts_with('#') || line.trim().is_empty() || {
                let kind = num("type").unwrap_or(-1);
                let bit = match kind {
                    0 => 1,
                    1 => 2,
                    2 => 4,
                    _ => 0,
                };
                (self.iid == -1 || num("iid") == Some(self.iid))
                    && self.types & bit != 0
                    && (self.sid == -1 || kind != 2 || num("sid") == Some(self.sid))
            };
            if keep {
                out.push_str(line);
            }
        }
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    ShowStat(StatFilter),
    ShowInfo,
    ShowServersState(Option<String>),
    SetState { backend: String, server: String, admin: Admin },
    SetWeight { backend: String, server: String, weight: Weight },
    GetWeight { backend: String, server: String },
    Reload,
    Help,
}

/// A weight as given: absolute, or a percentage of the configured one.
#[derive(Debug, PartialEq, Eq)]
pub enum Weight {
    Absolute(u32),
    Percent(u32),
}

pub const HELP: &str = "The following commands are valid at this level:\n  help\n  show stat\n  show info\n  show servers state [<backend>]\n  get weight <backend>/<server>\n  set weight <backend>/<server> <0-256>[%]\n  set server <backend>/<server> state [ready|drain|maint]\n  set server <backend>/<server> weight <0-256>[%]\n  enable server <backend>/<server>\n  disable server <backend>/<server>\n  reload\n";

fn target(s: &str) -> Result<(String, String), String> {
    let (b, sv) = s.split_once('/').ok_or_else(|| format!("'{s}': expected <backend>/<server>"))?;
    if b.is_empty() || sv.is_empty() {
        return Err(format!("'{s}': expected <backend>/<server>"));
    }
    Ok((b.to_string(), sv.to_string()))
}

pub fn parse(line: &str) -> Result<Command, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        ["show", "stat"] => Ok(Command::ShowStat(StatFilter::ALL)),
        ["show", "stat", iid, types, sid, ..] => {
            let bad = || format!("'show stat {iid} {types} {sid}': expects <iid> <type> <sid> (numbers, -1 for all)");
            let iid: i64 = iid.parse().map_err(|_| bad())?;
            let types: i64 = types.parse().map_err(|_| bad())?;
            let sid: i64 = sid.parse().map_err(|_| bad())?;
            let types = if types < 0 { 7 } else { types as u32 };
            Ok(Command::ShowStat(StatFilter { iid, types, sid }))
        }
        ["show", "stat", ..] => Ok(Command::ShowStat(StatFilter::ALL)),
        ["show", "info", ..] => Ok(Command::ShowInfo),
        ["show", "servers", "state"] => Ok(Command::ShowServersState(None)),
        ["show", "servers", "state", b] => Ok(Command::ShowServersState(Some(b.to_string()))),
        ["help"] | [] => Ok(Command::Help),
        ["reload"] => Ok(Command::Reload),
        ["set", "server", t, "state", st] => {
            let (backend, server) = target(t)?;
            let admin = match *st {
                "ready" => Admin::Ready,
                "drain" => Admin::Drain,
                "maint" => Admin::Maint,
                other => return Err(format!("'set server': unknown state '{other}' (ready, drain, maint)")),
            };
            Ok(Command::SetState { backend, server, admin })
        }
        ["set", "server", t, "weight", n] | ["set", "weight", t, n] => {
            let (backend, server) = target(t)?;
            let value: u32 = n.trim_end_matches('%').parse().map_err(|_| format!("'{n}' is not a weight"))?;
            let weight = if n.ends_with('%') { Weight::Percent(value) } else { Weight::Absolute(value) };
            if matches!(weight, Weight::Absolute(w) if w > 256) {
                return Err("weight must be 0..256".into());
            }
            Ok(Command::SetWeight { backend, server, weight })
        }
        ["get", "weight", t] => {
            let (backend, server) = target(t)?;
            Ok(Command::GetWeight { backend, server })
        }
        ["enable", "server", t] => {
            let (backend, server) = target(t)?;
            Ok(Command::SetState { backend, server, admin: Admin::Ready })
        }
        ["disable", "server", t] => {
            let (backend, server) = target(t)?;
            Ok(Command::SetState { backend, server, admin: Admin::Maint })
        }
        _ => Err(format!("Unknown command: '{line}'\n{HELP}")),
    }
}

/// Runs a line of `;`-separated commands; `reload` calls `reload` (which re-reads the
/// config files).
pub async fn execute<F, Fut>(proxy: &Arc<Proxy>, line: &str, reload: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut out = String::new();
    for cmd in line.split(';').map(str::trim) {
        out.push_str(&execute_one(proxy, cmd, &reload).await);
        out.push('\n');
    }
    out
}

async fn execute_one<F, Fut>(proxy: &Arc<Proxy>, line: &str, reload: &F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let cmd = match parse(line) {
        Ok(c) => c,
        Err(e) => return format!("{e}\n"),
    };
    let shared = proxy.current();
    match cmd {
        Command::Help => HELP.into(),
        Command::ShowStat(f) => f.apply(&super::stats::csv(&shared, super::stats::View::ALL)),
        Command::ShowInfo => {
            let loads = proxy.workers.loads();
            format!(
                "Name: ballast\nVersion: {}\nUptime_sec: {}\nNbthread: {}\nMaxconn: {}\nCurrConns: {}\nThreadConns: {}\n{}",
                env!("CARGO_PKG_VERSION"),
                shared.started.elapsed().as_secs(),
                loads.len(),
                proxy.global_maxconn().unwrap_or(0),
                shared.frontends.iter().map(|f| f.counters.scur.load(Relaxed)).sum::<u32>(),
                loads.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                super::tls_counters::info(),
            )
        }
        Command::ShowServersState(backend) => super::servers_state::show(&shared, backend.as_deref()),
        Command::SetState { backend, server, admin } => match shared.server(&backend, &server) {
            Some(s) => {
                s.admin.store(admin as u8, Relaxed);
                log::warn!("Server {backend}/{server} is now in {admin:?} state (runtime API)");
                String::new()
            }
            None => "No such server.\n".into(),
        },
        Command::SetWeight { backend, server, weight } => match shared.server(&backend, &server) {
            Some(s) => {
                let w = match weight {
                    Weight::Absolute(w) => w,
                    Weight::Percent(p) => (s.cfg.weight as u64 * p as u64 / 100) as u32,
                };
                if w > 256 {
                    return "Typed weight is out of range.\n".into();
                }
                s.weight.store(w, Relaxed);
                String::new()
            }
            None => "No such server.\n".into(),
        },
        Command::GetWeight { backend, server } => match shared.server(&backend, &server) {
            Some(s) => format!("{} (initial {})\n", s.weight.load(Relaxed), s.cfg.weight),
            None => "No such server.\n".into(),
        },
        Command::Reload => match reload().await {
            Ok(()) => "Success=1\n".into(),
            Err(e) => format!("Success=0\n{e}\n"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_haproxy_commands() {
        assert_eq!(parse("show stat"), Ok(Command::ShowStat(StatFilter::ALL)));
        assert_eq!(parse("show stat -1 4 -1"), Ok(Command::ShowStat(StatFilter { iid: -1, types: 4, sid: -1 })));
        assert!(parse("show stat x 4 -1").is_err());
        assert_eq!(
            parse("set server web/s1 state drain"),
            Ok(Command::SetState { backend: "web".into(), server: "s1".into(), admin: Admin::Drain })
        );
        assert_eq!(
            parse("set server web/s1 weight 50"),
            Ok(Command::SetWeight { backend: "web".into(), server: "s1".into(), weight: Weight::Absolute(50) })
        );
        assert_eq!(
            parse("set weight web/s1 50%"),
            Ok(Command::SetWeight { backend: "web".into(), server: "s1".into(), weight: Weight::Percent(50) })
        );
        assert_eq!(parse("get weight web/s1"), Ok(Command::GetWeight { backend: "web".into(), server: "s1".into() }));
        assert_eq!(
            parse("disable server web/s2"),
            Ok(Command::SetState { backend: "web".into(), server: "s2".into(), admin: Admin::Maint })
        );
        assert!(parse("set server web state maint").is_err());
        assert!(parse("set server web/s1 state sleepy").is_err());
        assert!(parse("set server web/s1 weight 999").is_err());
        assert!(parse("frobnicate").unwrap_err().starts_with("Unknown command"));
    }
}

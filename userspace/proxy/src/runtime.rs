//! The runtime API (HAProxy's stats socket, `global` → `stats socket PATH`): one command
//! per line, the answer, then the connection closes (like `socat` use of HAProxy's).
//!
//! Commands: `show stat`, `show info`, `set server B/S state ready|drain|maint`,
//! `set server B/S weight N`, `enable server B/S`, `disable server B/S`, `reload`, `help`.
use std::sync::{atomic::Ordering::Relaxed, Arc};

use super::{state::Admin, Proxy};

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    ShowStat,
    ShowInfo,
    SetState { backend: String, server: String, admin: Admin },
    SetWeight { backend: String, server: String, weight: u32 },
    Reload,
    Help,
}

pub const HELP: &str = "The following commands are valid at this level:\n  help\n  show stat\n  show info\n  set server <backend>/<server> state [ready|drain|maint]\n  set server <backend>/<server> weight <0-256>\n  enable server <backend>/<server>\n  disable server <backend>/<server>\n  reload\n";

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
        ["show", "stat", ..] => Ok(Command::ShowStat),
        ["show", "info", ..] => Ok(Command::ShowInfo),
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
            let weight: u32 =
                n.trim_end_matches('%').parse().map_err(|_| format!("'{n}' is not a weight"))?;
            if weight > 256 {
                return Err("weight must be 0..256".into());
            }
            Ok(Command::SetWeight { backend, server, weight })
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

/// Runs a command; `reload` calls `reload` (which re-reads the config files).
pub async fn execute<F, Fut>(proxy: &Arc<Proxy>, line: &str, reload: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let cmd = match parse(line) {
        Ok(c) => c,
        Err(e) => return format!("{e}\n"),
    };
    let shared = proxy.current();
    match cmd {
        Command::Help => HELP.into(),
        Command::ShowStat => super::stats::csv(&shared, super::stats::View::ALL),
        Command::ShowInfo => {
            let loads = proxy.workers.loads();
            format!(
                "Name: ballast\nVersion: {}\nUptime_sec: {}\nNbthread: {}\nMaxconn: {}\nCurrConns: {}\nThreadConns: {}\n",
                env!("CARGO_PKG_VERSION"),
                shared.started.elapsed().as_secs(),
                loads.len(),
                proxy.global_maxconn().unwrap_or(0),
                shared.frontends.iter().map(|f| f.counters.scur.load(Relaxed)).sum::<u32>(),
                loads.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
            )
        }
        Command::SetState { backend, server, admin } => match shared.server(&backend, &server) {
            Some(s) => {
                s.admin.store(admin as u8, Relaxed);
                log::warn!("Server {backend}/{server} is now in {admin:?} state (runtime API)");
                String::new()
            }
            None => format!("No such server: {backend}/{server}.\n"),
        },
        Command::SetWeight { backend, server, weight } => match shared.server(&backend, &server) {
            Some(s) => {
                s.weight.store(weight, Relaxed);
                String::new()
            }
            None => format!("No such server: {backend}/{server}.\n"),
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
        assert_eq!(parse("show stat"), Ok(Command::ShowStat));
        assert_eq!(
            parse("set server web/s1 state drain"),
            Ok(Command::SetState { backend: "web".into(), server: "s1".into(), admin: Admin::Drain })
        );
        assert_eq!(
            parse("set server web/s1 weight 50"),
            Ok(Command::SetWeight { backend: "web".into(), server: "s1".into(), weight: 50 })
        );
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

//! Prometheus text exposition (format 0.0.4), the pure part: a builder that writes each
//! family's HELP and TYPE once and escapes label values, and the control plane's own
//! families (Raft, gossip, the LB state as this agent sees it, the devices' gossiped
//! loads). The agent adds its planes' families (XDP, L7, backend health) to the same page.
use std::{collections::BTreeSet, fmt::Write as _};

use crate::{gossip::MemberView, state::lb::LbState};

/// A page of metrics. Names follow Prometheus' conventions: `ballast_` prefix, base units,
/// `_total` for counters.
#[derive(Default)]
pub struct Page {
    text: String,
    declared: BTreeSet<String>,
}

pub enum Kind {
    Counter,
    Gauge,
}

impl Page {
    /// One sample of family `name`; its HELP and TYPE go before its first sample.
    pub fn sample(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], value: f64) {
        if self.declared.insert(name.to_string()) {
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {t}");
        }
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What the control plane knows, as read at one moment.
pub struct ControlView<'a> {
    pub node: &'a str,
    pub leader: bool,
    pub term: u64,
    pub last_applied: u64,
    pub members: &'a [MemberView],
    pub gossip_dropped: u64,
    pub lb: &'a LbState,
}

/// The control plane's families.
pub fn control(page: &mut Page, v: &ControlView) {
    use Kind::*;
    page.sample("ballast_raft_leader", Gauge, "1 if this agent is the Raft leader.", &[("node", v.node)], v.leader as u8 as f64);
    page.sample("ballast_raft_term", Gauge, "The Raft term this agent is in.", &[], v.term as f64);
    page.sample("ballast_raft_applied_index", Gauge, "The last Raft log index this agent applied.", &[], v.last_applied as f64);
    for status in ["alive", "suspect", "failed", "left"] {
        let n = v.members.iter().filter(|m| format!("{:?}", m.status).eq_ignore_ascii_case(status)).count();
        page.sample("ballast_gossip_members", Gauge, "Gossip members by status.", &[("status", status)], n as f64);
    }
    page.sample(
        "ballast_gossip_dropped_packets_total",
        Counter,
        "Gossip packets no installed key opened.",
        &[],
        v.gossip_dropped as f64,
    );
    for m in v.members {
        let Some(l) = &m.load else { continue };
        let d = m.ident.name.as_str();
        page.sample("ballast_device_cpu_ratio", Gauge, "A member's CPU busy share (0-1), as it gossips it.", &[("device", d)], f64::from(l.cpu_pct) / 100.0);
        page.sample("ballast_device_tcp_connections", Gauge, "A member's established TCP connections.", &[("device", d)], l.connections as f64);
        page.sample("ballast_device_network_bytes_per_second", Gauge, "A member's bytes/s through its interfaces.", &[("device", d)], l.bytes_per_s as f64);
        page.sample("ballast_device_xdp_packets_per_second", Gauge, "Packets/s a member's XDP program forwards for its VIPs, as it gossips it.", &[("device", d)], l.xdp_pps as f64);
        page.sample("ballast_device_xdp_bytes_per_second", Gauge, "Bytes/s a member's XDP program forwards for its VIPs, as it gossips it.", &[("device", d)], l.xdp_bps as f64);
        page.sample("ballast_device_l7_sessions", Gauge, "Client sessions open in a member's L7 proxy, as it gossips it.", &[("device", d)], l.l7_sessions as f64);
        page.sample("ballast_device_l7_requests_per_second", Gauge, "Requests/s through a member's L7 proxy (sessions/s in mode tcp), as it gossips it.", &[("device", d)], l.l7_rps as f64);
        for r in &l.vips {
            let vip = r.vip.to_string();
            page.sample(
                "ballast_vip_new_connections_per_second",
                Gauge,
                "New connections/s through a VIP, as its owner gossips it.",
                &[("device", d), ("vip", &vip)],
                f64::from(r.conn_rate),
            );
        }
    }
    for d in v.lb.devices.values() {
        let draining = d.admin == crate::state::lb::Admin::Draining;
        page.sample("ballast_device_draining", Gauge, "1 if a device is draining.", &[("device", &d.spec.name)], draining as u8 as f64);
    }
    for (vip, a) in &v.lb.vips {
        let vip = vip.to_string();
        let retiring = if a.retiring_ms.is_some() { "true" } else { "false" };
        let extra = if a.extra { "true" } else { "false" };
        let labels = [("vip", vip.as_str()), ("group", a.group.as_str()), ("owner", a.owner.as_str()), ("extra", extra), ("retiring", retiring)];
        page.sample("ballast_vip_epoch", Gauge, "A VIP's assignment epoch (one more at each move), labelled with its owner.", &labels, a.epoch as f64);
    }
    page.sample("ballast_lb_groups", Gauge, "LB groups.", &[], v.lb.groups.len() as f64);
    page.sample("ballast_lb_events_total", Counter, "LB events recorded (moves, scale steps, changes).", &[], v.lb.next_event as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_and_labels_escaped() {
        let mut p = Page::default();
        p.sample("ballast_x_total", Kind::Counter, "X.", &[("a", "b\"c\\d\ne")], 3.0);
        p.sample("ballast_x_total", Kind::Counter, "X.", &[("a", "f")], 0.5);
        p.sample("ballast_y", Kind::Gauge, "Y.", &[], f64::NAN);
        assert_eq!(
            p.into_text(),
            "# HELP ballast_x_total X.\n# TYPE ballast_x_total counter\nballast_x_total{a=\"b\\\"c\\\\d\\ne\"} 3\n\
             ballast_x_total{a=\"f\"} 0.5\n# HELP ballast_y Y.\n# TYPE ballast_y gauge\nballast_y NaN\n"
        );
    }
}

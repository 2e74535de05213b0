//! DNS GSLB, the pure part: which of a group's VIPs a name stands for right now, and the
//! DNS answer (hickory-proto's wire format, no hand-written encoding): A and AAAA records
//! of the VIPs serving, in an order that rotates, with a short TTL; NXDOMAIN for unknown
//! names and NODATA with the SOA (for negative caching) for known names without records of
//! the type asked, as resolvers expect; REFUSED outside the domain. The agent holds the
//! sockets.
//! `<group>.<account>.<domain>` names a group; its records are the VIPs whose owner is
//! serving (alive in gossip and, by its gossiped report, holding a lease: a device cut off
//! from the quorum drops out as its lease lapses), is an LB device and has a backend to
//! send to, and that are not being
//! scaled in (a retiring VIP leaves DNS first, its address later). Seed 004 binds a group's
//! several VIPs (one per device, more on overload) together this way, as ELB does.
use std::{collections::BTreeSet, net::IpAddr};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{
        rdata::{A, AAAA, SOA},
        DNSClass, Name, RData, Record, RecordType,
    },
};

use crate::state::lb::LbState;

/// Short, so that a client follows a VIP that stops serving within seconds.
pub const TTL: u32 = 5;

/// What a name is, under `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not under our domain: we are not authoritative for it.
    Refused,
    /// The domain itself (its SOA).
    Apex,
    /// An account's name: it exists (groups live under it) but has no records.
    Account,
    /// A group's name and the VIPs serving it now (possibly none).
    Group(Vec<IpAddr>),
    NxDomain,
}

/// `qname` and `domain` in any case, with or without the final dot; `alive`: the devices
/// serving now (alive and holding a lease).
pub fn lookup(lb: &LbState, alive: &BTreeSet<String>, domain: &str, qname: &str) -> Lookup {
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let (domain, qname) = (norm(domain), norm(qname));
    if qname == domain {
        return Lookup::Apex;
    }
    let Some(rest) = qname.strip_suffix(&domain).and_then(|r| r.strip_suffix('.')) else {
        return Lookup::Refused;
    };
    if domain.is_empty() {
        return Lookup::Refused;
    }
    let labels: Vec<&str> = rest.split('.').collect();
    let in_account = |acct: &str, g: &&crate::state::lb::Group| g.spec.account.eq_ignore_ascii_case(acct);
    match labels.as_slice() {
        [account] if lb.groups.values().any(|g| in_account(account, &g)) => Lookup::Account,
        [group, account] => {
            let found = lb
                .groups
                .values()
                .find(|g| in_account(account, g) && g.spec.name.eq_ignore_ascii_case(group));
            let Some(g) = found else {
                return Lookup::NxDomain;
            };
            let id = g.spec.id();
            // A backend with weight whose check (on some listener) the cluster does not
            // hold failing; a listener without a check counts its backends up.
            let has_backend = g.spec.backends.iter().any(|b| {
                b.weight > 0
                    && g.spec.listeners.iter().any(|l| l.check_key(b).is_none_or(|k| !lb.backends_down.contains(&k)))
            });
            let vips = lb
                .vips
                .iter()
                .filter(|(_, a)| a.group == id && has_backend && a.retiring_ms.is_none())
                .filter(|(_, a)| {
                    alive.contains(&a.owner) && lb.devices.get(&a.owner).is_some_and(|d| !d.spec.witness)
                })
                .map(|(v, _)| *v)
                .collect();
            Lookup::Group(vips)
        }
        _ => Lookup::NxDomain,
    }
}

/// The answer to `query` (the bytes of a DNS message), or None when it is too broken
/// to answer at all (shorter than a header) or not a query. `max` is the transport's size
/// limit; `turn` rotates the order of the records.
pub fn respond(
    query: &[u8],
    max: usize,
    lb: &LbState,
    alive: &BTreeSet<String>,
    domain: &str,
    turn: usize,
) -> Option<Vec<u8>> {
    let req = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // A header we can read gets FORMERR with its id; less is dropped, and so is
            // a broken response (answering it could start a loop between two servers).
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            if query.get(11).is_none() || query[2] & 0x80 != 0 {
                return None;
            }
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec().ok();
        }
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    let max = match &req.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().clamp(512, 4096));
            resp.set_edns(edns);
            if max > 512 {
                max
            } else {
                usize::from(e.max_payload().clamp(512, 4096))
            }
        }
        None => max,
    };
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp.to_vec().ok();
    }
    let [q] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp.to_vec().ok();
    };
    resp.add_query(q.clone());
    if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp.to_vec().ok();
    }
    let looked = lookup(lb, alive, domain, &q.name().to_ascii());
    let qtype = q.query_type();
    let name = q.name().clone();
    match looked {
        Lookup::Refused => resp.metadata.response_code = ResponseCode::Refused,
        Lookup::NxDomain => {
            resp.metadata.authoritative = true;
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.add_authority(soa(lb, domain));
        }
        Lookup::Apex if matches!(qtype, RecordType::SOA | RecordType::ANY) => {
            resp.metadata.authoritative = true;
            resp.add_answer(soa(lb, domain));
        }
        Lookup::Apex | Lookup::Account => {
            resp.metadata.authoritative = true;
            resp.add_authority(soa(lb, domain));
        }
        Lookup::Group(mut vips) => {
            resp.metadata.authoritative = true;
            vips.retain(|v| match qtype {
                RecordType::A => v.is_ipv4(),
                RecordType::AAAA => v.is_ipv6(),
                RecordType::ANY => true,
                _ => false,
            });
            if vips.is_empty() {
                resp.add_authority(soa(lb, domain));
            } else {
                let turn = turn % vips.len();
                vips.rotate_left(turn);
                for v in vips {
                    let rdata = match v {
                        IpAddr::V4(a) => RData::A(A(a)),
                        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                    };
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, rdata));
                }
            }
        }
    }
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= max {
        return Some(bytes);
    }
    // Too long for UDP: the client asks again over TCP.
    resp.truncate().to_vec().ok()
}

fn soa(lb: &LbState, domain: &str) -> Record {
    let zone = Name::from_ascii(format!("{}.", domain)).unwrap_or_else(|_| Name::root());
    let ns = Name::from_ascii(format!("ns.{}.", domain)).unwrap_or_else(|_| Name::root());
    let mbox = Name::from_ascii(format!("hostmaster.{}.", domain)).unwrap_or_else(|_| Name::root());
    let serial = lb.modify_index as u32;
    // minimum (the negative-caching TTL) is the records' TTL: a name that appears is
    // found within seconds.
    let soa = SOA::new(ns, mbox, serial, 3600, 600, 86400, TTL);
    Record::from_rdata(zone, TTL, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use crate::state::lb::{Backend, DeviceSpec, GroupSpec, LbWrite, Listener, Mode, Protocol, VipRange};

    use super::*;

    fn state() -> LbState {
        let mut s = LbState::default();
        for (i, (name, first)) in [("lb01", "14.14.1.100"), ("lb02", "14.14.1.200")].iter().enumerate() {
            let spec = DeviceSpec {
                name: (*name).into(),
                ranges: vec![VipRange { first: first.parse().unwrap(), last: first.parse().unwrap() }],
                capacity: 100,
                ..Default::default()
            };
            s.apply(i as u64 + 1, 0, &LbWrite::PutDevice(spec));
        }
        let spec = GroupSpec {
            account: "acco01".into(),
            name: "web".into(),
            listeners: vec![Listener {
                port: 80,
                protocol: Protocol::Tcp,
                mode: Mode::Http,
                balance: None,
                cookie: None,
                check: None,
                maxconn: None,
                certs: vec![],
            }],
            backends: vec![Backend {
                address: "172.16.0.1".parse().unwrap(),
                port: 0,
                weight: 1,
                backup: false,
            }],
            vip_count: 2,
            gateway: None,
        };
        let placement = vec![
            ("14.14.1.100".parse().unwrap(), "lb01".into()),
            ("14.14.1.200".parse().unwrap(), "lb02".into()),
        ];
        s.apply(3, 0, &LbWrite::CreateGroup { spec, placement });
        s
    }

    fn alive(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// A query as a stub resolver sends it, and the answer parsed back.
    fn ask(s: &LbState, alive: &BTreeSet<String>, name: &str, t: RecordType, turn: usize) -> Message {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(hickory_proto::op::Query::query(Name::from_ascii(name).unwrap(), t));
        let out = respond(&q.to_vec().unwrap(), 512, s, alive, "ballast", turn).expect("an answer");
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        m
    }

    fn a_records(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_on_the_wire() {
        let s = state();
        let both = alive(&["lb01", "lb02"]);
        let m = ask(&s, &both, "web.acco01.ballast.", RecordType::A, 0);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(a_records(&m), ["14.14.1.100", "14.14.1.200"]);
        assert!(m.answers.iter().all(|r| r.ttl == TTL));
        // The next answer starts from the next VIP.
        assert_eq!(
            a_records(&ask(&s, &both, "web.acco01.ballast.", RecordType::A, 1)),
            ["14.14.1.200", "14.14.1.100"]
        );
        // NODATA: no error, no answer, the SOA in authority.
        let m = ask(&s, &both, "web.acco01.ballast.", RecordType::AAAA, 0);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        let m = ask(&s, &both, "acco01.ballast.", RecordType::A, 0);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        let m = ask(&s, &both, "nope.acco01.ballast.", RecordType::A, 0);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        let m = ask(&s, &both, "ballast.", RecordType::SOA, 0);
        assert!(matches!(m.answers[0].data, RData::SOA(_)));
        let m = ask(&s, &both, "example.com.", RecordType::A, 0);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn broken_queries_get_formerr_or_nothing() {
        let s = state();
        let both = alive(&["lb01", "lb02"]);
        // Too short for a header: nothing.
        assert!(respond(&[1, 2, 3], 512, &s, &both, "ballast", 0).is_none());
        // A header and garbage: FORMERR with the query's id.
        let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0xff; 7]);
        let m = Message::from_vec(&respond(&junk, 512, &s, &both, "ballast", 0).unwrap()).unwrap();
        assert_eq!((m.metadata.id, m.metadata.response_code), (0xabcd, ResponseCode::FormErr));
        // A broken response is not answered (no loops between servers).
        junk[2] |= 0x80;
        assert!(respond(&junk, 512, &s, &both, "ballast", 0).is_none());
        // Two questions: FORMERR.
        let mut q = Message::query();
        for n in ["web.acco01.ballast.", "acco01.ballast."] {
            q.add_query(hickory_proto::op::Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
        }
        let m =
            Message::from_vec(&respond(&q.to_vec().unwrap(), 512, &s, &both, "ballast", 0).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn names_and_what_they_answer() {
        let s = state();
        let both = alive(&["lb01", "lb02"]);
        let vips = |l: Lookup| match l {
            Lookup::Group(v) => v.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(vips(lookup(&s, &both, "ballast", "web.acco01.ballast.")), ["14.14.1.100", "14.14.1.200"]);
        // Case does not matter; the final dot is optional.
        assert_eq!(vips(lookup(&s, &both, "Ballast.", "WEB.Acco01.ballast")).len(), 2);
        // A dead owner's VIP is not served.
        assert_eq!(vips(lookup(&s, &alive(&["lb02"]), "ballast", "web.acco01.ballast")), ["14.14.1.200"]);
        assert_eq!(vips(lookup(&s, &alive(&[]), "ballast", "web.acco01.ballast")), Vec::<String>::new());
        assert_eq!(lookup(&s, &both, "ballast", "acco01.ballast"), Lookup::Account);
        assert_eq!(lookup(&s, &both, "ballast", "ballast."), Lookup::Apex);
        for nx in ["nope.acco01.ballast", "web.acco02.ballast", "acco02.ballast", "x.web.acco01.ballast"] {
            assert_eq!(lookup(&s, &both, "ballast", nx), Lookup::NxDomain, "{nx}");
        }
        for refused in ["example.com", "web.acco01.notballast", "xballast"] {
            assert_eq!(lookup(&s, &both, "ballast", refused), Lookup::Refused, "{refused}");
        }
    }

    #[test]
    fn a_group_without_backends_answers_nothing() {
        let mut s = state();
        let mut spec = s.groups["acco01/web"].spec.clone();
        spec.backends[0].weight = 0;
        s.apply(4, 0, &LbWrite::UpdateGroup { spec });
        assert_eq!(
            lookup(&s, &alive(&["lb01", "lb02"]), "ballast", "web.acco01.ballast"),
            Lookup::Group(vec![])
        );
    }
}

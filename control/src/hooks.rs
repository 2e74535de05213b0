//! Webhooks: the leader POSTs each LB event (JSON) to every hook that wants it, in event
//! order, and commits each acknowledgement (a 2xx) through Raft, so a new leader goes on
//! where the old one stopped: at least once, in order; the `id` lets a receiver drop a
//! duplicate (the leader died between a POST and its commit). A failed POST is retried
//! with back-off (0.5 s doubling to 30 s); one hook's dead receiver does not hold up the
//! others. What the events are: `state::lb::EventKind` (VIP moved, device down
//! (`vip_moved` with reason "failed") and up, scale-out and scale-in, ...).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use crate::{
    failover::wall_ms,
    hook_target::{forbidden, signature, target_allowed, url_host},
    plane::ControlPlane,
    state::{
        lb::{Event, Hook, LbResult, LbWrite},
        Command, Outcome,
    },
};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Events one hook gets per round before the others' turn.
const BATCH: usize = 32;

/// What one hook is sent next: the events from its cursor on that it wants, and the
/// last event id the round covers (events it does not want are passed over). `first`
/// is the oldest event still kept: a cursor before it has missed events.
pub fn pending<'a>(h: &Hook, events: impl Iterator<Item = &'a Event>) -> (Vec<&'a Event>, Option<u64>) {
    let mut out = Vec::new();
    let mut last = None;
    for e in events.filter(|e| e.id >= h.next) {
        if out.len() == BATCH {
            break;
        }
        last = Some(e.id);
        if h.wants(e) {
            out.push(e);
        }
    }
    (out, last)
}

/// The body of one delivery.
pub fn body(h: &Hook, e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["hook"] = h.id().into();
    v
}

/// Runs on every server until the process ends; delivers while this one leads.
pub async fn run(plane: Arc<ControlPlane>) {
    let (Some(raft), Some(store)) = (plane.raft.clone(), plane.store.clone()) else { return };
    let mut retry: HashMap<String, (Instant, Duration)> = HashMap::new();
    let mut changes = store.subscribe();
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
        if !plane.is_leader() {
            retry.clear();
            continue;
        }
        let lb = store.read(|a| a.state.lb.clone());
        retry.retain(|id, _| lb.hooks.contains_key(id));
        // Each hook's round runs on its own, so a receiver that hangs delays only its own.
        let mut rounds = tokio::task::JoinSet::new();
        for (id, h) in &lb.hooks {
            if retry.get(id).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            if let Some(first) = lb.events.front().map(|e| e.id).filter(|f| h.next < *f) {
                log::warn!("hook {id}: events {}..{first} were dropped before delivery (too far behind)", h.next);
            }
            let (events, last) = pending(h, lb.events.iter());
            let Some(last) = last else { continue };
            let bodies: Vec<(u64, serde_json::Value)> = events.iter().map(|e| (e.id, body(h, e))).collect();
            let (plane, id, url, secret) = (plane.clone(), id.clone(), h.url.clone(), h.secret.clone());
            rounds.spawn(async move {
                let mut acked = None;
                for (event, b) in &bodies {
                    if let Err(why) = post(&plane, &url, secret.as_deref(), b).await {
                        return (id, acked, Some(format!("event {event} to {url}: {why}")));
                    }
                    acked = Some(*event);
                }
                // All went: the cursor passes the round's last event (those passed over too).
                (id, Some(last), None)
            });
        }
        while let Some(Ok((id, upto, failed))) = rounds.join_next().await {
            match failed {
                Some(why) => {
                    let wait = retry.get(&id).map_or(FIRST_RETRY, |(_, w)| (*w * 2).min(MAX_RETRY));
                    log::warn!("hook {id}: {why}; again in {wait:?}");
                    retry.insert(id.clone(), (Instant::now() + wait, wait));
                }
                None => {
                    retry.remove(&id);
                }
            }
            let Some(event) = upto else { continue };
            let write = LbWrite::HookDelivered { id: id.clone(), event };
            match raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await {
                Ok(r) if matches!(r.data, Outcome::Lb(LbResult::Refused(_))) => {}
                Ok(_) => {}
                Err(e) => log::warn!("hook {id}: recording the delivery: {e}"),
            }
        }
    }
}

async fn post(plane: &ControlPlane, url: &str, secret: Option<&str>, body: &serde_json::Value) -> Result<(), String> {
    // The allowlist may have changed since the hook was written, and a name's addresses
    // are only known now: checked at every delivery.
    target_allowed(url, &plane.cfg.hook_allow)?;
    if let Some(host) = url_host(url).filter(|h| h.parse::<IpAddr>().is_err()) {
        let port = url.strip_prefix("http://").and_then(|r| r.split('/').next()).and_then(|a| a.rsplit_once(':')).map_or(80, |(_, p)| p.parse().unwrap_or(80));
        let addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| format!("resolving {host}: {e}"))?;
        let allow = &plane.cfg.hook_allow;
        if let Some(bad) = addrs.map(|a| a.ip()).find(|ip| forbidden(*ip) && !allow.iter().any(|a| a.contains(*ip))) {
            return Err(format!("{host} resolves to {bad}, where hooks never post"));
        }
    }
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut req = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("X-Ballast-Event-Id", body["id"].to_string());
    if let Some(s) = secret {
        req = req.header("X-Ballast-Signature", signature(s, &bytes));
    }
    let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| format!("request: {e}"))?;
    let call = async {
        let resp = plane.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // The answer's body is read (bounded) so the connection can be reused.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10).collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), call).await.map_err(|_| "timed out after 10 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::lb::EventKind;

    fn ev(id: u64, kind: EventKind, group: Option<&str>) -> Event {
        Event {
            id,
            index: id,
            kind,
            device: None,
            group: group.map(String::from),
            vip: None,
            from: None,
            epoch: None,
            reason: None,
            phases: Default::default(),
        }
    }

    #[test]
    fn a_hook_gets_its_accounts_events_of_its_kinds_from_its_cursor() {
        let events = vec![
            ev(3, EventKind::GroupCreated, Some("acco01/web")),
            ev(4, EventKind::VipMoved, Some("acco01/web")),
            ev(5, EventKind::VipMoved, Some("acco02/app")),
            ev(6, EventKind::DeviceDraining, None),
            ev(7, EventKind::ScaledOut, Some("acco01/web")),
        ];
        let hook = |account: &str, kinds: Vec<EventKind>, next| Hook {
            account: account.into(),
            name: "h".into(),
            url: "http://10.0.0.1:9000/x".into(),
            events: kinds,
            next,
            secret: None,
        };
        let ids = |(v, last): (Vec<&Event>, Option<u64>)| (v.iter().map(|e| e.id).collect::<Vec<_>>(), last);
        assert_eq!(ids(pending(&hook("acco01", vec![], 0), events.iter())), (vec![3, 4, 7], Some(7)));
        assert_eq!(ids(pending(&hook("acco01", vec![], 5), events.iter())), (vec![7], Some(7)));
        assert_eq!(
            ids(pending(&hook("acco01", vec![EventKind::VipMoved], 0), events.iter())),
            (vec![4], Some(7)),
            "the cursor passes over what the hook does not want"
        );
        assert_eq!(ids(pending(&hook("*", vec![], 5), events.iter())), (vec![5, 6, 7], Some(7)));
        assert_eq!(ids(pending(&hook("acco01", vec![], 8), events.iter())), (vec![], None));
        let b = body(&hook("acco01", vec![], 0), &events[1]);
        assert_eq!((b["id"].as_u64(), b["kind"].as_str(), b["hook"].as_str()), (Some(4), Some("vip_moved"), Some("acco01/h")));
    }

    #[test]
    fn hooks_are_checked_and_keep_their_place() {
        use crate::state::lb::LbState;
        let mut s = LbState::default();
        let h = Hook { account: "acco01".into(), name: "iaas".into(), url: "http://10.0.0.1:9000/e".into(), events: vec![], next: 0, secret: None };
        for (bad, field) in [("ftp://x/", "url"), ("http:///x", "url"), ("http://a b/", "url")] {
            let r = s.apply(1, 0, &LbWrite::PutHook(Hook { url: bad.into(), ..h.clone() }));
            assert!(matches!(&r, LbResult::Refused(e) if e.field == field), "{bad}: {r:?}");
        }
        let r = s.apply(1, 0, &LbWrite::PutHook(Hook { account: "Acco".into(), ..h.clone() }));
        assert!(matches!(&r, LbResult::Refused(e) if e.field == "account"), "{r:?}");
        s.apply(2, 0, &LbWrite::PutHook(h.clone()));
        s.apply(3, 0, &LbWrite::HookDelivered { id: "acco01/iaas".into(), event: 9 });
        assert_eq!(s.hooks["acco01/iaas"].next, 10);
        // Changing the URL keeps the cursor; an older acknowledgement does not move it back.
        s.apply(4, 0, &LbWrite::PutHook(Hook { url: "http://10.0.0.2:9000/e".into(), next: 0, ..h.clone() }));
        s.apply(5, 0, &LbWrite::HookDelivered { id: "acco01/iaas".into(), event: 3 });
        assert_eq!((s.hooks["acco01/iaas"].next, s.hooks["acco01/iaas"].url.as_str()), (10, "http://10.0.0.2:9000/e"));
    }

    #[test]
    fn hook_secrets_stay_put_when_unchanged() {
        use crate::state::lb::LbState;
        let mut s = LbState::default();
        let h = Hook { account: "acco01".into(), name: "iaas".into(), url: "http://10.0.0.1:9000/e".into(), events: vec![], next: 0, secret: Some("s3".into()) };
        s.apply(1, 0, &LbWrite::PutHook(h.clone()));
        // A change without a secret keeps it; "" removes it.
        s.apply(2, 0, &LbWrite::PutHook(Hook { secret: None, url: "http://10.0.0.2:9000/e".into(), ..h.clone() }));
        assert_eq!(s.hooks["acco01/iaas"].secret.as_deref(), Some("s3"));
        s.apply(3, 0, &LbWrite::PutHook(Hook { secret: Some(String::new()), ..h.clone() }));
        assert_eq!(s.hooks["acco01/iaas"].secret, None);
    }
}
